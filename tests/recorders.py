"""A stand-in for a widget's comm in tests without a browser: what the widget would send to the
front-end, checked to be JSON, with the time each message left."""

from __future__ import annotations

import json
import threading
import time

STREAM_TYPES = ("stream.delta", "stream.batch")


class MessageRecorder:
    def __init__(self):
        self.sent: list[dict] = []
        self.times: list[float] = []
        self._lock = threading.Lock()

    def send(self, content, buffers=None):
        now = time.monotonic()
        decoded = json.loads(json.dumps(content))  # everything sent must be JSON
        with self._lock:
            self.sent.append(decoded)
            self.times.append(now)

    def attach(self, widget):
        """Routes `widget.send` here (what would go over the comm); returns the widget."""
        widget.recorder = self
        widget.send = self.send
        return widget

    def of_type(self, *types):
        with self._lock:
            return [m for m in self.sent if m["type"] in types]

    def deltas(self, stream_id=None):
        """Every delta, unpacked from the batches they were coalesced into."""
        out = []
        for m in self.of_type(*STREAM_TYPES):
            batch = m["messages"] if m["type"] == "stream.batch" else [m]
            out.extend(d for d in batch if stream_id is None or d["id"] == stream_id)
        return out

    def delta_times(self):
        """When each rate-limited message (a delta or a batch of them) was sent."""
        with self._lock:
            return [t for m, t in zip(self.sent, self.times) if m["type"] in STREAM_TYPES]

    def response(self, req_id):
        return next((m for m in self.of_type("response") if m["id"] == req_id), None)
