"""A lean client for OpenAI-compatible endpoints (aiohttp): a chunk producer for the call pipeline.

litellm spends about 5 ms of CPU per call, which caps a 2-core machine far below what the
network allows at high concurrency. For endpoints that speak the OpenAI chat API (custom
endpoints, the loopback test server, local servers) this client does one POST with a
pre-serialised body and parses one JSON document or an SSE stream, at a fraction of that cost.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import AsyncIterator

from .. import options as call_options
from ..errors import (AUTH, BAD_REQUEST, CONNECTION, CONTEXT_WINDOW, INCOMPLETE, INVALID_RESPONSE,
                      RATE_LIMIT, SERVER, TIMEOUT, LLMError)
from . import Finish, Route, without_userinfo

_sessions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()


def _session():
    import aiohttp

    loop = asyncio.get_running_loop()
    sess = _sessions.get(loop)
    if sess is None or sess.closed:
        # No connection cap here: the batch engine bounds concurrency itself.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        sess = aiohttp.ClientSession(connector=connector, raise_for_status=False,
                                     json_serialize=json.dumps)
        _sessions[loop] = sess
    return sess


def build_body(route: Route, messages: list[dict], options: dict, stream: bool) -> bytes:
    from ..attachments import expand

    # Attachment references become content parts (images and PDFs as data: URLs) only here.
    body = {"model": route.api_model, "messages": expand(messages)}
    # Never a key, a URL or a header in the body (llm_notebook.options says which those are).
    body.update(call_options.body_options(options))
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode("utf-8")


def classify(status: int, text: str, retry_after: str | None) -> LLMError:
    message = text.strip()
    try:
        err = json.loads(text).get("error")
        if isinstance(err, dict):
            message = err.get("message") or message
            code = err.get("code") or err.get("type") or ""
        else:
            code = ""
            message = str(err or message)
    except (ValueError, AttributeError):
        code = ""
    lowered = f"{code} {message}".lower()
    ra = None
    if retry_after:
        try:
            ra = float(retry_after)
        except ValueError:
            ra = None
    if status == 429:
        kind = RATE_LIMIT
    elif status in (401, 403):
        kind = AUTH
    elif "context_length" in lowered or "maximum context length" in lowered:
        kind = CONTEXT_WINDOW
    elif 400 <= status < 500:
        kind = BAD_REQUEST
    else:
        kind = SERVER
    # Redact before cutting: a key cut in half is no longer recognised, and half a key leaks.
    from ..redact import redact

    return LLMError(f"HTTP {status} from provider: {redact(message)[:500]}", kind=kind,
                    status=status, retry_after=ra)


async def chunks(route: Route, messages: list[dict], options: dict, *, stream: bool,
                 timeout: float) -> AsyncIterator["str | Finish"]:
    """One attempt: POST the request; yield the stream's text deltas and a Finish, or one Finish
    holding a whole (non-streamed) answer. A stream cut short ends without a Finish."""
    import aiohttp

    url = route.base_url.rstrip("/") + "/chat/completions"
    # Headers the caller's own code asked for (templates and cells cannot carry any).
    headers = {**call_options.request_headers(options), "Content-Type": "application/json"}
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    if any(type(m.get("content")) is list for m in messages):
        # Attachments are read from disk and encoded: not on the event loop.
        body = await asyncio.to_thread(build_body, route, messages, options, stream)
    else:
        body = build_body(route, messages, options, stream)
    # The attempt (llm_notebook/call/attempt.py) cuts the wait for each chunk and the deadline;
    # aiohttp only bounds connecting (no read timer of its own: one timer a request is enough).
    limits = aiohttp.ClientTimeout(total=None, sock_connect=timeout)
    try:
        async with _session().post(url, data=body, headers=headers, timeout=limits) as resp:
            if resp.status >= 400:
                raise classify(resp.status, await resp.text(), resp.headers.get("Retry-After"))
            if not stream:
                yield _whole_answer(await resp.read())
                return
            finish = Finish()
            done = False
            pieces = 0
            async for line in resp.content:
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(payload)
                except ValueError:
                    raise LLMError("provider sent an unreadable stream chunk",
                                   kind=INVALID_RESPONSE) from None
                if chunk.get("usage"):
                    _usage(finish, chunk["usage"])
                for choice in chunk.get("choices") or ():
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        pieces += 1
                        yield delta
                    if choice.get("finish_reason"):
                        finish.finish_reason = choice["finish_reason"]
            if done or finish.finish_reason is not None:
                if finish.input_tokens is None:
                    _counted(finish, messages, pieces)
                yield finish
    except LLMError:
        raise
    except TimeoutError:  # connecting (the attempt itself cuts every other wait)
        raise LLMError(f"could not connect to {without_userinfo(route.base_url)} within {timeout:g} s",
                       kind=CONNECTION) from None
    except aiohttp.ClientPayloadError:
        raise LLMError("the connection dropped mid-response", kind=INCOMPLETE) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise LLMError(f"connection to {without_userinfo(route.base_url)} failed: "
                       f"{exc.__class__.__name__}: {exc}", kind=CONNECTION) from None


async def embeddings(route: Route, texts: list[str], *, timeout: float):
    """POST /embeddings: one vector per text (matched back by `index`)."""
    import aiohttp

    from . import Embedded

    url = route.base_url.rstrip("/") + "/embeddings"
    headers = {"Content-Type": "application/json"}
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    body = json.dumps({"model": route.api_model, "input": texts, "encoding_format": "float"})
    limits = aiohttp.ClientTimeout(total=timeout)
    try:
        async with _session().post(url, data=body.encode("utf-8"), headers=headers,
                                   timeout=limits) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise classify(resp.status, raw.decode("utf-8", "replace"),
                               resp.headers.get("Retry-After"))
    except LLMError:
        raise
    except TimeoutError:
        raise LLMError(f"no embeddings from {without_userinfo(route.base_url)} within {timeout:g} s",
                       kind=TIMEOUT) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise LLMError(f"connection to {without_userinfo(route.base_url)} failed: "
                       f"{exc.__class__.__name__}: {exc}", kind=CONNECTION) from None
    try:
        data = json.loads(raw)
        entries = sorted(data["data"], key=lambda e: e["index"])
        vectors = [e["embedding"] for e in entries]
        usage = data.get("usage") or {}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LLMError(f"provider sent unreadable embeddings ({exc.__class__.__name__})",
                       kind=INVALID_RESPONSE) from None
    if len(vectors) != len(texts) or not all(isinstance(v, list) for v in vectors):
        raise LLMError(f"provider sent {len(vectors)} embeddings for {len(texts)} texts",
                       kind=INVALID_RESPONSE)
    return Embedded(vectors, usage.get("prompt_tokens"))


def _whole_answer(raw: bytes) -> Finish:
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        finish = Finish(text=choice["message"].get("content") or "",
                        finish_reason=choice.get("finish_reason"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise LLMError(f"provider sent an unreadable response ({exc.__class__.__name__})",
                       kind=INVALID_RESPONSE) from None
    _usage(finish, data.get("usage"))
    return finish


def _counted(finish: Finish, messages: list[dict], pieces: int) -> None:
    """Token counts for a stream whose server reported no usage (llama.cpp's server ignores
    stream_options): its prompt estimated as budgets estimate it, its output one token per
    chunk (how such servers stream), as litellm counts streams without usage."""
    from ..tokens import estimate_prompt

    finish.input_tokens = estimate_prompt(messages)
    finish.output_tokens = pieces


def _usage(finish: Finish, usage: dict | None) -> None:
    if usage:
        finish.input_tokens = usage.get("prompt_tokens")
        finish.output_tokens = usage.get("completion_tokens")


def list_models(base_url: str, api_key: str | None, *, timeout: float = 3.0) -> list[str]:
    """The model ids an OpenAI-compatible server lists at GET /models (blocking: for
    Session.models() and the model picker). Raises LLMError, redacted."""
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(base_url.rstrip("/") + "/models", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            data = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise classify(exc.code, exc.read().decode("utf-8", "replace"),
                       exc.headers.get("Retry-After")) from None
    except (OSError, ValueError) as exc:
        raise LLMError(f"could not list the models of {without_userinfo(base_url)}: "
                       f"{exc.__class__.__name__}",
                       kind=CONNECTION) from None
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise LLMError(f"{without_userinfo(base_url)}/models did not answer with a model list",
                       kind=INVALID_RESPONSE)
    return [str(e["id"]) for e in entries if isinstance(e, dict) and e.get("id")]


async def close_all() -> None:
    loop = asyncio.get_running_loop()
    sess = _sessions.pop(loop, None)
    if sess is not None:
        await sess.close()
