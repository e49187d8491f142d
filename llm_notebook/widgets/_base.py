"""The base of every llm-notebook widget: its front-end bundle, requests from it, streams to it.

Front-end: a subclass names its bundle, `_bundle = "chat"`, and gets `_esm`/`_css` pointing at
`llm_notebook/static/chat.js` / `chat.css` (built from js/src/widgets/chat.ts by `npm run build`,
or by `pip install`). Paths, so anywidget reads the files (and reloads them when ANYWIDGET_HMR=1).

Requests: the front-end calls Python handlers by name (js/src/shared/rpc.ts) and always gets an
answer, even when the handler raises:

    JS → Python  {"type": "request", "id": <uuid hex>, "method": "ask", "params": {...}}
    Python → JS  {"type": "response", "id": ..., "ok": true, "result": <JSON>}
                 {"type": "response", "id": ..., "ok": false, "error": "one redacted line"}
    JS → Python  {"type": "request.cancel", "id": ...}     # the answer is then ok=false

Handlers are methods marked with `@rpc`, called with the params as keyword arguments. Plain
functions run at once in the kernel thread, so keep them quick. `async def` handlers (LLM calls)
run on `llm_notebook.runner`'s background loop and answer when done, so the kernel stays free.
Every widget answers `ping`: the front-end's first answer tells it a kernel holds this widget.

Snapshots: a subclass builds what it shows as static HTML and text (`_build_snapshot`, with the
functions of widgets/snapshot.py) and calls `refresh_snapshot()` when its content settles; the
widget is displayed with that snapshot beside the live view (widgets/display.py).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import anywidget
import traitlets

from .display import SETTLE_SECONDS, SnapshotPublisher
from .snapshot import Snapshot
from .streaming import StreamSender, error_line

__all__ = ["STATIC_DIR", "LLMWidget", "rpc"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_RPC_ATTR = "_llm_rpc_method"

# Shown instead of the widget when its bundle was never built (a source checkout without npm).
_MISSING_BUNDLE_ESM = "export default {{ render({{ el }}) {{ el.textContent = {message}; }} }};\n"


def rpc(name: str | F | None = None) -> Any:
    """Marks a widget method as a handler the front-end can call, by its name or the one given.

        class Chat(LLMWidget):
            @rpc
            def models(self): ...

            @rpc("ask")
            async def _ask(self, prompt: str): ...
    """

    def mark(fn: F, method: str | None) -> F:
        setattr(fn, _RPC_ATTR, method or fn.__name__)
        return fn

    if callable(name):
        return mark(name, None)
    return lambda fn: mark(fn, name)


def _bundle_esm(bundle: str) -> Path | str:
    path = STATIC_DIR / f"{bundle}.js"
    if path.is_file():
        return path
    message = (
        f"llm-notebook: the front-end of this widget ({path.name}) is missing. Build it with "
        "`npm ci && npm run build` in the js/ folder of the source checkout, or reinstall llm-notebook."
    )
    log.warning(message)
    return _MISSING_BUNDLE_ESM.format(message=json.dumps(message))


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):  # datetime, date, time, pandas Timestamp
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _background_submit() -> Callable[[Any], Any] | None:
    """`llm_notebook.runner.submit` (coroutine → concurrent Future on the background loop).

    The hook for async handlers; without it they would run to completion in the kernel thread.
    """
    try:
        from llm_notebook import runner
    except ImportError:  # pragma: no cover - runner.py ships with the package
        return None
    return getattr(runner, "submit", None)


def _run_to_completion(coro: Any) -> Any:
    """Fallback when there is no background loop: run the coroutine here, blocking the caller."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called inside a running loop (the kernel's): asyncio.run is not allowed here, so use a thread.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name="llm-notebook-handler")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


class LLMWidget(anywidget.AnyWidget):
    """Base class: bundle by name, request handlers, a stream sender (`self.streams`), and a
    static snapshot shown beside the live view."""

    _bundle: ClassVar[str | None] = None
    _rpc_methods: ClassVar[dict[str, str]] = {}

    snapshot = traitlets.Unicode(
        "", help="Sanitized static HTML of what the widget shows: drawn read-only by a front-end "
        "restored from saved widget state until a kernel answers. Never holds keys.").tag(sync=True)
    # Lets the front-end find this widget's earlier view when an output update renders it again
    # (js/src/shared/mount.ts); a view gets no other handle on its model that lasts.
    _view_key = traitlets.Unicode("").tag(sync=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        bundle = cls.__dict__.get("_bundle")
        if bundle:
            # Set before anywidget's __init_subclass__, which turns the Paths into file contents.
            if "_esm" not in cls.__dict__:
                cls._esm = _bundle_esm(bundle)
            css = STATIC_DIR / f"{bundle}.css"
            if "_css" not in cls.__dict__ and css.is_file():
                cls._css = css
        methods: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                method = getattr(value, _RPC_ATTR, None)
                if isinstance(method, str):
                    methods[method] = attr
        cls._rpc_methods = methods
        super().__init_subclass__(**kwargs)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("_view_key", uuid.uuid4().hex)
        super().__init__(**kwargs)
        self._publisher = SnapshotPublisher(self, lambda: self._build_snapshot())
        self._handlers: dict[str, Callable[..., Any]] = {
            method: getattr(self, attr) for method, attr in self._rpc_methods.items()
        }
        self._inflight: dict[str, Any] = {}
        self._inflight_lock = threading.Lock()
        self._stream_sender: StreamSender | None = None
        self.on_msg(self._on_custom_msg)

    # -- public API ------------------------------------------------------------------------------

    @property
    def streams(self) -> StreamSender:
        """This widget's stream sender (created on first use)."""
        if self._stream_sender is None:
            self._stream_sender = StreamSender(self)
        return self._stream_sender

    def register(self, method: str, handler: Callable[..., Any]) -> None:
        """Adds a request handler to this one widget (for handlers that are not methods)."""
        self._handlers[method] = handler

    def on_custom_message(self, content: dict, buffers: list) -> None:
        """Called with custom messages that are not requests; override to handle your own."""

    # -- snapshot and display --------------------------------------------------------------------

    def _build_snapshot(self) -> Snapshot:
        """What the widget shows, as sanitized static HTML and text; subclasses say more."""
        return Snapshot("", repr(self))

    def refresh_snapshot(self, delay: float = 0.0) -> None:
        """Call when the content settles: updates the `snapshot` trait and every output showing
        this widget (after `delay` seconds without another call, if given)."""
        publisher = getattr(self, "_publisher", None)
        if publisher is not None:
            publisher.refresh(delay)

    def republish_snapshot(self) -> None:
        """Sends the outputs' current snapshot again, from the calling thread."""
        publisher = getattr(self, "_publisher", None)
        if publisher is not None:
            publisher.refresh(force=True)

    def flush_snapshot(self) -> None:
        """Sends a delayed snapshot update now: Python API calls end with it, so a cell that
        waited for an answer has its output updated before it ends."""
        publisher = getattr(self, "_publisher", None)
        if publisher is not None:
            publisher.flush()

    def widget_bundle(self) -> tuple[dict, dict]:
        """anywidget's own display data (the widget-view, without its text/plain) and metadata
        (which tells Colab where its widget manager is)."""
        result = super()._repr_mimebundle_()
        data, metadata = result if isinstance(result, tuple) else (result or {}, {})
        return {k: v for k, v in data.items() if k != "text/plain"}, dict(metadata or {})

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict]:
        data, metadata = self.widget_bundle()
        return {**data, **self._publisher.current().bundle()}, metadata

    def _ipython_display_(self) -> None:
        self._publisher.show()

    @rpc
    def ping(self) -> bool:
        return True

    def close(self) -> None:
        # Also runs from __del__, possibly on an object whose __init__ failed half-way.
        publisher = getattr(self, "_publisher", None)
        if publisher is not None:
            publisher.close()
        lock = getattr(self, "_inflight_lock", None)
        if lock is not None:
            with lock:
                inflight = list(self._inflight.values())
            for future in inflight:
                future.cancel()
        sender = getattr(self, "_stream_sender", None)
        if sender is not None:
            sender.close()
        super().close()

    # -- requests --------------------------------------------------------------------------------

    def _on_custom_msg(self, _widget: Any, content: Any, buffers: list) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "request":
            self._handle_request(content)
        elif kind == "request.cancel":
            self._cancel_request(content.get("id"))
        elif kind == "focus":
            self._publisher.hold(content.get("inside") is True)
        else:
            self.on_custom_message(content, buffers)

    def _handle_request(self, msg: dict) -> None:
        request_id = msg.get("id") if isinstance(msg.get("id"), str) else ""
        method = msg.get("method")
        params = msg.get("params")
        params = {} if params is None else params
        handler = self._handlers.get(method) if isinstance(method, str) else None
        if handler is None:
            known = ", ".join(sorted(self._handlers)) or "none"
            self._reply_error(request_id, f"Unknown method {method!r} (this widget handles: {known}).")
            return
        if not isinstance(params, dict):
            self._reply_error(request_id, f"{method}: params must be a JSON object, not {type(params).__name__}.")
            return
        try:
            result = handler(**params)
        except Exception as exc:  # noqa: BLE001 - every request gets an answer
            self._reply_exception(request_id, method, exc)
            return
        if inspect.isawaitable(result):
            self._run_async(request_id, method, result)
        else:
            self._reply_ok(request_id, result)

    def _run_async(self, request_id: str, method: str, awaitable: Any) -> None:
        async def call() -> Any:
            return await awaitable

        submit = _background_submit()
        if submit is None:
            try:
                result = _run_to_completion(call())
            except Exception as exc:  # noqa: BLE001 - every request gets an answer
                self._reply_exception(request_id, method, exc)
            else:
                self._reply_ok(request_id, result)
            return
        coro = call()
        try:
            future = submit(coro)
        except Exception as exc:  # noqa: BLE001 - every request gets an answer
            coro.close()
            self._reply_exception(request_id, method, exc)
            return
        with self._inflight_lock:
            self._inflight[request_id] = future
        future.add_done_callback(lambda f: self._on_done(request_id, method, f))

    def _on_done(self, request_id: str, method: str, future: Any) -> None:
        with self._inflight_lock:
            self._inflight.pop(request_id, None)
        if future.cancelled():
            self._reply_error(request_id, f"{method} was cancelled.")
            return
        exc = future.exception()
        if exc is not None:
            self._reply_exception(request_id, method, exc)
        else:
            self._reply_ok(request_id, future.result())

    def _cancel_request(self, request_id: Any) -> None:
        with self._inflight_lock:
            future = self._inflight.get(request_id) if isinstance(request_id, str) else None
        if future is not None:
            future.cancel()  # its done-callback answers "cancelled"

    def _reply_ok(self, request_id: str, result: Any) -> None:
        try:
            # What is validated is what is sent: the kernel's own serializer would fail later,
            # where nobody answers the request.
            payload = json.loads(json.dumps(result, default=_json_default))
        except (TypeError, ValueError) as exc:
            self._reply_error(request_id, f"The handler's result could not be sent: {error_line(exc)}")
            return
        self._send_response({"type": "response", "id": request_id, "ok": True, "result": payload})

    def _reply_exception(self, request_id: str, method: str, exc: BaseException) -> None:
        is_user_error = any(k.__name__ == "UserError" for k in type(exc).__mro__)
        log.log(logging.DEBUG if is_user_error else logging.WARNING,
                "llm-notebook: widget request %r failed", method, exc_info=exc)
        self._reply_error(request_id, error_line(exc))

    def _reply_error(self, request_id: str, error: str) -> None:
        self._send_response({"type": "response", "id": request_id, "ok": False, "error": error_line(error)})

    def _send_response(self, message: dict) -> None:
        try:
            self.send(message)
        except Exception:
            log.warning("llm-notebook: could not send a widget response", exc_info=True)
