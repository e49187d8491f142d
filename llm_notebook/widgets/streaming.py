"""Streaming text to a widget's front-end as custom messages carrying deltas.

ipywidgets sends a trait's whole value on every set, so `w.value += token` costs bytes quadratic
in the answer's length, and jupyter_server drops iopub messages past 1,000 a second. Instead:

    {"type": "stream.start", "id": ..., "meta": {...}}
    {"type": "stream.delta", "id": ..., "delta": "text since the last delta", "seq": n}
    {"type": "stream.batch", "messages": [<stream.delta>, ...]}   # several streams, one message
    {"type": "stream.end",   "id": ..., "text": "the full final text", "meta": {...}}
    {"type": "stream.error", "id": ..., "error": "one redacted line", "partial": "text so far"}

Deltas pushed faster than the rate limit (20 messages a second per widget, all its streams
together) are joined into one message; a timer sends what is left, so no text waits for the
next push. Each piece of text is sent once as a delta and once in the final snapshot: bytes are
linear in the answer's length. The front-end side is js/src/shared/stream.ts.

Pushes may come from any thread (typically the background asyncio loop of
`llm_notebook.runner`); one lock per sender orders everything it sends.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Protocol

__all__ = ["MAX_MESSAGES_PER_SECOND", "StreamSender", "error_line"]

MAX_MESSAGES_PER_SECOND = 20.0
_MAX_ERROR_CHARS = 500

log = logging.getLogger(__name__)


class _CanSend(Protocol):
    def send(self, content: dict, buffers: Any = None) -> None: ...


def error_line(error: BaseException | str) -> str:
    """One redacted line for the front-end: an exception's type and message, or the text given.

    `UserError` messages (LLMError and the other errors a user can fix) are already written for
    users, so they go as they are; other exceptions get their type name in front, which is what
    a developer needs to recognise them.
    """
    if isinstance(error, BaseException):
        message = str(error).strip()
        if not any(k.__name__ == "UserError" for k in type(error).__mro__):
            message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    else:
        message = str(error)
    line = next((part.strip() for part in message.splitlines() if part.strip()), "")
    line = line or "Unknown error."
    try:
        from llm_notebook.redact import redact

        line = redact(line)
    except ImportError:  # pragma: no cover - redact.py ships with the package
        pass
    if len(line) > _MAX_ERROR_CHARS:
        line = line[: _MAX_ERROR_CHARS - 1] + "…"
    return line


class _Stream:
    __slots__ = ("id", "parts", "pending", "seq")

    def __init__(self, stream_id: str):
        self.id = stream_id
        self.parts: list[str] = []  # everything pushed, for the final snapshot
        self.pending: list[str] = []  # pushed but not sent yet
        self.seq = 0


class StreamSender:
    """Sends streams of text to one widget's front-end, at most `max_rate` messages a second.

    One sender per widget (`LLMWidget.streams`); it can carry several streams at once, e.g. one
    per model of a comparison. With a single open stream, `stream_id` can be left out.

        sid = sender.start(meta={"model": "gpt-4o-mini"})
        for chunk in chunks:
            sender.push(chunk)
        sender.finish(full_text, meta={"output_tokens": 42})   # or sender.fail(exc, partial)
    """

    def __init__(self, widget: _CanSend, *, max_rate: float = MAX_MESSAGES_PER_SECOND):
        if max_rate <= 0:
            raise ValueError("max_rate must be a positive number of messages per second")
        self._widget = widget
        self._interval = 1.0 / max_rate
        # Re-entrant: a send that ends up calling back into the sender must not deadlock.
        self._lock = threading.RLock()
        self._streams: dict[str, _Stream] = {}
        self._dirty: dict[str, _Stream] = {}  # streams with pending text, in push order
        self._last_flush = float("-inf")
        self._timer: threading.Timer | None = None
        self._closed = False

    # -- public API ------------------------------------------------------------------------------

    def start(self, stream_id: str | None = None, meta: dict | None = None) -> str:
        """Opens a stream and tells the front-end; returns its id (a new uuid4 hex by default)."""
        stream_id = stream_id or uuid.uuid4().hex
        with self._lock:
            if stream_id in self._streams:
                raise ValueError(f"stream {stream_id!r} is already open; finish it or use a new id")
            self._streams[stream_id] = _Stream(stream_id)
            self._send({"type": "stream.start", "id": stream_id, "meta": dict(meta or {})})
        return stream_id

    def push(self, delta: str, stream_id: str | None = None) -> bool:
        """Appends text to a stream. Returns False (and drops the text) if the stream is not open,
        e.g. because it was already finished or failed from another thread."""
        with self._lock:
            stream = self._lookup(stream_id)
            if stream is None:
                return False
            if delta:
                stream.parts.append(delta)
                stream.pending.append(delta)
                self._dirty.setdefault(stream.id, stream)
                self._flush_or_schedule()
            return True

    def finish(self, text: str | None = None, meta: dict | None = None, stream_id: str | None = None) -> None:
        """Closes a stream with its full final text (default: everything pushed), which replaces
        whatever the front-end assembled. Text still waiting for the rate limit is not sent as a
        delta: the snapshot carries it."""
        with self._lock:
            stream = self._close_stream(stream_id)
            if stream is None:
                return
            final = "".join(stream.parts) if text is None else text
            self._send({"type": "stream.end", "id": stream.id, "text": final, "meta": dict(meta or {})})

    def fail(self, error: BaseException | str, partial: str | None = None, stream_id: str | None = None) -> None:
        """Closes a stream as failed: one redacted error line and the text received so far
        (default: everything pushed)."""
        with self._lock:
            stream = self._close_stream(stream_id)
            if stream is None:
                return
            text = "".join(stream.parts) if partial is None else partial
            self._send({"type": "stream.error", "id": stream.id, "error": error_line(error), "partial": text})

    def text(self, stream_id: str | None = None) -> str:
        """Everything pushed so far to an open stream."""
        with self._lock:
            stream = self._lookup(stream_id)
            return "".join(stream.parts) if stream else ""

    @property
    def open_streams(self) -> list[str]:
        with self._lock:
            return list(self._streams)

    def close(self) -> None:
        """Stops the timer and forgets every stream without sending anything (widget closed)."""
        with self._lock:
            self._closed = True
            self._streams.clear()
            self._dirty.clear()
            self._cancel_timer()

    # -- internals -------------------------------------------------------------------------------

    def _lookup(self, stream_id: str | None) -> _Stream | None:
        if stream_id is not None:
            return self._streams.get(stream_id)
        if len(self._streams) > 1:
            raise ValueError(f"{len(self._streams)} streams are open: pass stream_id")
        return next(iter(self._streams.values()), None)

    def _close_stream(self, stream_id: str | None) -> _Stream | None:
        stream = self._lookup(stream_id)
        if stream is None:
            return None
        del self._streams[stream.id]
        self._dirty.pop(stream.id, None)
        if not self._dirty:
            self._cancel_timer()
        return stream

    def _flush_or_schedule(self) -> None:
        wait = self._last_flush + self._interval - time.monotonic()
        if wait <= 0:
            self._flush()
        elif self._timer is None and not self._closed:
            timer = threading.Timer(wait, self._on_timer)
            timer.daemon = True
            self._timer = timer
            timer.start()

    def _on_timer(self) -> None:
        try:
            with self._lock:
                self._timer = None
                if self._dirty and not self._closed:
                    self._flush_or_schedule()  # reschedules if the timer fired a little early
        except Exception:  # a timer thread has nobody to report to but the log
            log.warning("llm-notebook: sending stream text failed", exc_info=True)

    def _flush(self) -> None:
        messages = []
        for stream in self._dirty.values():
            messages.append({"type": "stream.delta", "id": stream.id, "delta": "".join(stream.pending), "seq": stream.seq})
            stream.pending.clear()
            stream.seq += 1
        self._dirty.clear()
        self._last_flush = time.monotonic()
        if len(messages) == 1:
            self._send(messages[0])
        elif messages:
            self._send({"type": "stream.batch", "messages": messages})

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _send(self, message: dict) -> None:
        if not self._closed:
            self._widget.send(message)
