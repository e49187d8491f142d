"""One background asyncio loop thread for sync calls and widget calls.

A notebook cell already runs inside ipykernel's event loop, so `asyncio.run` cannot be used
there; sync APIs submit their coroutine here and wait (interruptibly). Started on first use so
`import llm_notebook` leaves no thread behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import atexit
import threading
from typing import Any, Coroutine

_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_lock = threading.Lock()


def loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None or not _thread or not _thread.is_alive():
            _loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve(lp=_loop):
                asyncio.set_event_loop(lp)
                lp.call_soon(ready.set)
                lp.run_forever()

            _thread = threading.Thread(target=serve, name="llm-notebook-loop", daemon=True)
            _thread.start()
            ready.wait()
            atexit.register(shutdown)
        return _loop


def submit(coro: Coroutine) -> concurrent.futures.Future:
    """Schedule a coroutine on the background loop; returns a concurrent Future."""
    return asyncio.run_coroutine_threadsafe(coro, loop())


def run(coro: Coroutine, *, cancel_grace: float = 2.0) -> Any:
    """Run a coroutine to completion from sync code.

    Ctrl-C (KeyboardInterrupt) cancels the coroutine, waits up to `cancel_grace` seconds for it
    to finish its clean-up (e.g. writing an interrupted row to the log), then re-raises.
    """
    if _in_loop_thread():
        raise RuntimeError("llm_notebook.runner.run() called from its own loop; await the coroutine")
    lp = loop()
    finished = threading.Event()
    holder: dict[str, asyncio.Task] = {}

    async def wrapper():
        holder["task"] = asyncio.current_task()
        try:
            return await coro
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(wrapper(), lp)
    try:
        while True:
            try:
                return future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:
        task = holder.get("task")
        if task is not None:
            lp.call_soon_threadsafe(task.cancel)
        else:
            future.cancel()
        finished.wait(cancel_grace)
        raise


def _in_loop_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def shutdown(timeout: float = 2.0) -> None:
    """Close HTTP sessions and stop the loop (at exit, so nothing complains at shutdown)."""
    global _loop, _thread
    lp, thread = _loop, _thread
    if lp is None or thread is None or not thread.is_alive():
        return

    async def close():
        from .providers import http

        await http.close_all()

    try:
        asyncio.run_coroutine_threadsafe(close(), lp).result(timeout)
    except Exception:
        pass
    lp.call_soon_threadsafe(lp.stop)
    thread.join(timeout)
    _loop = _thread = None
