"""The one place litellm is imported (lazily: it takes 3-5 s), and a chunk producer over it.

Nothing about litellm is set globally by calling it: retries (ours honour a deadline and
Retry-After, litellm's would multiply attempts) and dropping unsupported params are passed with
every call. Three things are done to the litellm module when it is first loaded, and only then:
- its price map is read from its offline copy (LITELLM_LOCAL_MODEL_COST_MAP set for the
  duration of the import only, unless the user set it): the import must not reach the network;
- its "Give Feedback / Get Help" banners, printed into the notebook on every error, are
  silenced (`suppress_debug_info`, which litellm reads from its module only);
- the embedded model is registered as litellm's `local` custom provider, so code that calls
  litellm directly can use `local/smollm2` too (an entry named `local` only).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from typing import AsyncIterator

from ..errors import (AUTH, BAD_REQUEST, CONNECTION, CONTEXT_WINDOW, INVALID_RESPONSE,
                      RATE_LIMIT, SERVER, TIMEOUT, LLMError)
from . import Finish, Route

_litellm = None
_import_lock = threading.Lock()

_SKIP = {"timeout", "stream", "deadline", "max_retries", "num_retries", "base_url"}
# Passed with every call: no retries of litellm's own, params a provider lacks dropped.
_PER_CALL = {"num_retries": 0, "max_retries": 0, "drop_params": True}


def loaded() -> bool:
    return _litellm is not None


def get_litellm():
    """Import litellm once (offline price map), silence its banners, register local/smollm2."""
    global _litellm
    with _import_lock:
        if _litellm is None:
            litellm = _import_offline()
            litellm.suppress_debug_info = True
            _register_local_model(litellm)
            _litellm = litellm
    return _litellm


def _import_offline():
    variable = "LITELLM_LOCAL_MODEL_COST_MAP"
    preset = variable in os.environ
    if not preset:
        os.environ[variable] = "True"
    try:
        import litellm
    finally:
        if not preset:
            os.environ.pop(variable, None)
    return litellm


def classify(exc: BaseException) -> LLMError:
    litellm = get_litellm()
    status = getattr(exc, "status_code", None)
    text = f"{exc.__class__.__name__}: {exc}"
    retry_after = None
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            value = headers.get("retry-after")
            retry_after = float(value) if value is not None else None
        except (TypeError, ValueError):
            retry_after = None
    if isinstance(exc, litellm.ContextWindowExceededError):
        kind = CONTEXT_WINDOW
    elif isinstance(exc, litellm.RateLimitError) or status == 429:
        kind = RATE_LIMIT
    elif isinstance(exc, (litellm.AuthenticationError, litellm.PermissionDeniedError)) or status in (401, 403):
        kind = AUTH
    elif isinstance(exc, litellm.Timeout):
        kind = TIMEOUT
    elif isinstance(exc, (litellm.BadRequestError, litellm.NotFoundError)) or (status and 400 <= status < 500):
        kind = BAD_REQUEST
        if "context length" in text.lower() or "context_length" in text.lower():
            kind = CONTEXT_WINDOW
    elif isinstance(exc, litellm.APIConnectionError):
        kind = SERVER if status and status >= 500 else CONNECTION
    elif status and status >= 500:
        kind = SERVER
    elif isinstance(exc, (ValueError, KeyError)):
        kind = INVALID_RESPONSE
    else:
        kind = SERVER
    # Redact before cutting: a key cut in half is no longer recognised, and half a key leaks.
    from ..redact import redact

    return LLMError(redact(text)[:800], kind=kind, status=status, retry_after=retry_after)


async def chunks(route: Route, messages: list[dict], options: dict, *, stream: bool,
                 timeout: float) -> AsyncIterator["str | Finish"]:
    litellm = get_litellm()
    if any(type(m.get("content")) is list for m in messages):
        from ..attachments import expand

        # Attachment references become OpenAI content parts (litellm translates them per
        # provider); the files are read and encoded off the event loop.
        messages = await asyncio.to_thread(expand, messages)
    kwargs = {k: v for k, v in options.items() if k not in _SKIP and v is not None}
    if route.base_url:
        kwargs["api_base"] = route.base_url
    if route.api_key:
        kwargs["api_key"] = route.api_key
    model = route.api_model
    if route.endpoint:  # a named endpoint routed through litellm speaks the OpenAI API
        model = f"openai/{route.api_model}"
    try:
        if not stream:
            resp = await litellm.acompletion(model=model, messages=messages, timeout=timeout,
                                             **_PER_CALL, **kwargs)
            choice = resp.choices[0]
            usage = getattr(resp, "usage", None)
            yield Finish(text=choice.message.content or "", finish_reason=choice.finish_reason,
                         input_tokens=usage.prompt_tokens if usage else None,
                         output_tokens=usage.completion_tokens if usage else None)
            return
        resp = await litellm.acompletion(model=model, messages=messages, timeout=timeout,
                                         stream=True, stream_options={"include_usage": True},
                                         **_PER_CALL, **kwargs)
        finish = Finish()
        parts: list[str] = []
        async for chunk in resp:
            usage = getattr(chunk, "usage", None)
            if usage and getattr(usage, "prompt_tokens", None) is not None:
                finish.input_tokens = usage.prompt_tokens
                finish.output_tokens = usage.completion_tokens
            for choice in chunk.choices or ():
                delta = getattr(choice.delta, "content", None) if choice.delta else None
                if delta:
                    parts.append(delta)
                    yield delta
                if choice.finish_reason:
                    finish.finish_reason = choice.finish_reason
        if finish.finish_reason is None:
            return                       # cut short: the attempt calls it incomplete
        if finish.input_tokens is None:  # a provider that reports no usage for streams
            finish.input_tokens = litellm.token_counter(model=model, messages=messages)
            finish.output_tokens = litellm.token_counter(model=model, text="".join(parts))
        yield finish
    except LLMError:
        raise
    except TimeoutError:
        raise LLMError(f"no answer within {timeout:g} s", kind=TIMEOUT) from None
    except Exception as exc:  # litellm raises many types; classify them all
        raise classify(exc) from None


async def embeddings(route: Route, texts: list[str], *, timeout: float):
    """litellm's `aembedding`: one vector per text, in order."""
    from . import Embedded

    litellm = get_litellm()
    kwargs = {}
    if route.base_url:
        kwargs["api_base"] = route.base_url
    if route.api_key:
        kwargs["api_key"] = route.api_key
    model = f"openai/{route.api_model}" if route.endpoint else route.api_model
    try:
        resp = await litellm.aembedding(model=model, input=texts, timeout=timeout, **_PER_CALL,
                                        **kwargs)
        entries = sorted(resp.data, key=lambda e: _field(e, "index"))
        vectors = [list(_field(e, "embedding")) for e in entries]
    except LLMError:
        raise
    except TimeoutError:
        raise LLMError(f"no embeddings within {timeout:g} s", kind=TIMEOUT) from None
    except Exception as exc:  # litellm raises many types; classify them all
        raise classify(exc) from None
    if len(vectors) != len(texts):
        raise LLMError(f"provider sent {len(vectors)} embeddings for {len(texts)} texts",
                       kind=INVALID_RESPONSE)
    usage = getattr(resp, "usage", None)
    return Embedded(vectors, getattr(usage, "prompt_tokens", None) if usage else None)


def _field(entry, name: str):
    return entry[name] if isinstance(entry, dict) else getattr(entry, name)


# -- the embedded model as litellm's `local` custom provider --------------------------------------

def _register_local_model(litellm) -> None:
    """Make `litellm.completion(model="local/smollm2", ...)` run the embedded model."""
    from . import local

    class SmolLM2Provider(litellm.CustomLLM):
        def completion(self, *args, **kwargs):
            text, finish = _collect(local.generate(_messages(args, kwargs), _options(kwargs),
                                                   threading.Event()))
            return litellm.ModelResponse(
                model="local/smollm2",
                choices=[{"index": 0, "finish_reason": finish.finish_reason or "stop",
                          "message": {"role": "assistant", "content": text}}],
                usage=_usage(finish))

        async def acompletion(self, *args, **kwargs):
            return await asyncio.get_running_loop().run_in_executor(
                local.worker(), lambda: self.completion(*args, **kwargs))

        def streaming(self, *args, **kwargs):
            events: queue.Queue = queue.Queue()
            stop = threading.Event()
            generation = local.generate(_messages(args, kwargs), _options(kwargs), stop)

            def produce():
                try:
                    for piece in generation:
                        events.put(piece)
                except BaseException as exc:  # handed to the consumer, raised there
                    events.put(exc)
                events.put(None)

            local.worker().submit(produce)
            try:
                while (piece := events.get()) is not None:
                    if isinstance(piece, BaseException):
                        raise piece
                    yield _stream_chunk(piece)
            finally:
                stop.set()  # an abandoned stream stops generating at the next token

        async def astreaming(self, *args, **kwargs):
            async for piece in local.chunks(None, _messages(args, kwargs), _options(kwargs),
                                            stream=True, timeout=0):
                yield _stream_chunk(piece)

    handler = SmolLM2Provider()
    others = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != "local"]
    litellm.custom_provider_map = others + [{"provider": "local", "custom_handler": handler}]


def _messages(args, kwargs) -> list[dict]:
    return kwargs.get("messages") or (args[1] if len(args) > 1 else [])


def _options(kwargs) -> dict:
    return dict(kwargs.get("optional_params") or {})


def _collect(generation) -> tuple[str, Finish]:
    parts, finish = [], Finish()
    for piece in generation:
        if isinstance(piece, Finish):
            finish = piece
        else:
            parts.append(piece)
    return "".join(parts), finish


def _usage(finish: Finish) -> dict:
    tin, tout = finish.input_tokens or 0, finish.output_tokens or 0
    return {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}


def _stream_chunk(piece: "str | Finish") -> dict:
    """A litellm GenericStreamingChunk: one delta, or the end with its usage."""
    if isinstance(piece, Finish):
        return {"text": "", "is_finished": True, "finish_reason": piece.finish_reason or "stop",
                "index": 0, "tool_use": None, "usage": _usage(piece)}
    return {"text": piece, "is_finished": False, "finish_reason": "", "usage": None, "index": 0,
            "tool_use": None}


# -- the Batch API through litellm's batch functions ------------------------------------------------

class LitellmBatches:
    """A provider's Batch API through litellm (create_file / create_batch / retrieve_batch /
    file_content / cancel_batch), for providers.LITELLM_BATCH_PROVIDERS and named endpoints
    routed through litellm. The same five operations as http_batches.HttpBatches."""

    def __init__(self, route: Route):
        self.route = route
        # A named endpoint speaks OpenAI's API at its own base URL.
        self.provider = "openai" if route.endpoint else route.provider
        self.kwargs = {"custom_llm_provider": self.provider}
        if route.base_url:
            self.kwargs["api_base"] = route.base_url
        if route.api_key:
            self.kwargs["api_key"] = route.api_key

    async def _call(self, name: str, *args, **kwargs):
        litellm = get_litellm()
        try:
            return await getattr(litellm, name)(*args, **self.kwargs, **kwargs)
        except LLMError:
            raise
        except Exception as exc:  # litellm raises many types; classify them all
            raise classify(exc) from None

    async def upload(self, data: bytes, filename: str) -> str:
        answer = await self._call("acreate_file", file=(filename, data, "application/jsonl"),
                                  purpose="batch")
        return answer.id

    async def create(self, input_file_id: str, metadata: dict | None = None) -> dict:
        answer = await self._call("acreate_batch", completion_window="24h",
                                  endpoint="/v1/chat/completions", input_file_id=input_file_id,
                                  metadata=metadata)
        return _plain(answer)

    async def retrieve(self, batch_id: str) -> dict:
        return _plain(await self._call("aretrieve_batch", batch_id=batch_id))

    async def content(self, file_id: str) -> bytes:
        answer = await self._call("afile_content", file_id=file_id)
        return answer.content if hasattr(answer, "content") else bytes(answer)

    async def cancel(self, batch_id: str) -> dict:
        return _plain(await self._call("acancel_batch", batch_id=batch_id))


def _plain(batch) -> dict:
    """litellm's batch object (pydantic) as the plain dict the OpenAI API answers with."""
    if isinstance(batch, dict):
        return batch
    dump = getattr(batch, "model_dump", None)
    return dump() if dump is not None else dict(vars(batch))
