"""Shows a widget with its static snapshot beside it, and keeps every output showing it current.

A widget's output carries three representations; each viewer picks the one it can show:

    application/vnd.jupyter.widget-view+json   the live widget (JupyterLab, Notebook, VS Code
                                               with the kernel that made it)
    text/html                                  the snapshot (nbconvert, GitHub, nbviewer, an
                                               untrusted notebook in JupyterLab, js/lab's
                                               fallback when the kernel is gone)
    text/plain                                 a transcript (terminals, PDF/LaTeX exports)

The widget is displayed with a display_id. When its content settles (an answer finished, a
grid run done, a batch run over), `refresh()` rebuilds the snapshot and, if it changed, sends
`update_display_data` for that id, so the notebook JupyterLab saves, or nbclient writes, holds
the final snapshot. The `snapshot` trait gets the same HTML, for a front-end restored from saved
widget state to draw read-only.

An update makes the front-end render the widget again (ipywidgets re-creates the view): the
front-end moves the old view's DOM into the new one (js/src/shared/mount.ts), so nothing typed
or scrolled is lost. But ipywidgets empties the output before the new view takes the DOM over,
and keys pressed in that moment go nowhere (seen: a letter missing from a prompt typed right
after a save, on a busy machine). So while the user works in the widget (the front-end reports
focus, `hold()`), updates wait, and go out SETTLE_SECONDS after the focus leaves, or once the
user has been idle for HOLD_SECONDS. Updates are also kept to settle points; `refresh(delay=...)`
coalesces a burst of changes (a usage panel during a batch run) into one. Headless runs
(nbclient) have no front-end, so nothing ever waits there.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .snapshot import Snapshot

__all__ = ["SETTLE_SECONDS", "SnapshotPublisher"]

log = logging.getLogger(__name__)

# A change made in the widget itself updates the outputs this long after, from a timer thread:
# never on the thread that answers the front-end's request, which would wait for it.
SETTLE_SECONDS = 0.25
# A hold from a front-end lasts this long unless renewed (it renews it every 10 s while the user
# types or clicks in the widget): a page closed with the focus inside does not hold for ever.
HOLD_SECONDS = 30.0

_FAILED = Snapshot("", "")


def _publishing_shell():
    """IPython's shell when it can show rich outputs and update them by display_id, else None.

    IPython's base DisplayPublisher (terminal IPython) only prints text/plain: an update there
    would print the whole transcript again, so terminals get none.
    """
    try:
        from IPython import get_ipython
        from IPython.core.displaypub import DisplayPublisher
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        return None
    shell = get_ipython()
    if shell is None or type(getattr(shell, "display_pub", None)) is DisplayPublisher:
        return None
    return shell


class SnapshotPublisher:
    """The snapshot of one widget: built by `build`, stored in its `snapshot` trait, sent to every
    output that shows the widget."""

    def __init__(self, widget: Any, build: Callable[[], Snapshot]):
        self._widget = widget
        self._build = build
        self.display_id = uuid.uuid4().hex
        self.shown = False
        self._last: Snapshot | None = None          # the latest built (also in the trait)
        self._published: Snapshot | None = None     # the latest the outputs show
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self._closed = False
        self._held_until = 0.0          # monotonic time; updates wait until then
        self._waiting = False           # an update is due once the hold ends

    def current(self) -> Snapshot:
        """Builds the snapshot now and stores it in the trait (the displayed outputs are not
        touched: `refresh()` does that)."""
        with self._lock:
            try:
                snapshot = self._build()
            except Exception:  # a snapshot must never break the widget (e.g. a closed log)
                log.warning("llm-notebook: could not build the snapshot of %s", type(self._widget).__name__,
                            exc_info=True)
                return self._last or _FAILED
            self._store(snapshot)
            return snapshot

    def show(self) -> None:
        """Displays the widget (its own bundle, with the snapshot beside it) with our display_id."""
        from IPython.display import display

        snapshot = self.current()
        data, metadata = self._bundle(snapshot)
        display(data, raw=True, metadata=metadata, display_id=self.display_id)
        with self._lock:
            self.shown = True
            self._published = snapshot

    def refresh(self, delay: float = 0.0, *, force: bool = False) -> None:
        """The content settled: rebuild the snapshot and update the outputs if it changed.

        With `delay`, waits until no refresh was asked for that many seconds (a burst becomes
        one update). Without, updates now, in this thread: a cell that waits for an answer gets
        its output updated before it finishes (nbclient keeps only what a cell sent meanwhile).
        `force`: sends it even if the outputs were sent the same before (from another thread).
        """
        with self._lock:
            if self._closed:
                return
            self._cancel_timer()
            if delay > 0:
                timer = threading.Timer(delay, self._timed)
                timer.daemon = True
                self._timer = timer
                timer.start()
                return
            if force:
                self._published = None
        self._publish()

    def flush(self) -> None:
        """Sends a delayed refresh now, if one is waiting (and no user is at work in it)."""
        with self._lock:
            waiting = self._timer is not None or self._waiting
            if not waiting or self._held():
                return
            self._cancel_timer()
        self._publish()

    def hold(self, inside: bool) -> None:
        """The front-end says the user works in the widget (`inside`) or has left it."""
        with self._lock:
            if inside:
                self._held_until = time.monotonic() + HOLD_SECONDS
                return
            self._held_until = 0.0
            if not self._waiting:
                return
        self.refresh(SETTLE_SECONDS)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cancel_timer()

    # -- internals -------------------------------------------------------------------------------

    def _timed(self) -> None:
        with self._lock:
            self._timer = None
        try:
            self._publish()
        except Exception:  # a timer thread has nobody to report to but the log
            log.warning("llm-notebook: updating a widget's snapshot failed", exc_info=True)

    def _held(self) -> bool:
        return time.monotonic() < self._held_until

    def _publish(self) -> None:
        with self._lock:
            if self._held():
                # The trait may follow now (it re-renders nothing); the outputs wait. Try again
                # when the hold would run out; leaving the widget comes sooner.
                self.current()
                self._waiting = True
                self._cancel_timer()
                timer = threading.Timer(self._held_until - time.monotonic() + 0.05, self._timed)
                timer.daemon = True
                self._timer = timer
                timer.start()
                return
            self._waiting = False
            snapshot = self.current()
            if (snapshot == self._published or snapshot is _FAILED or not self.shown
                    or self._closed):
                return
            shell = _publishing_shell()
            if shell is None:
                return
            from IPython.display import update_display

            data, metadata = self._bundle(snapshot)
            try:
                update_display(data, raw=True, metadata=metadata, display_id=self.display_id)
                self._published = snapshot
            except Exception:  # the outputs keep the previous snapshot; the widget works on
                log.warning("llm-notebook: could not update a widget's output", exc_info=True)

    def _bundle(self, snapshot: Snapshot) -> tuple[dict, dict]:
        # The widget-view is in every update, or the live view would turn into the static HTML.
        data, metadata = self._widget.widget_bundle()
        return {**data, **snapshot.bundle()}, metadata

    def _store(self, snapshot: Snapshot) -> None:
        self._last = snapshot
        try:
            if self._widget.snapshot != snapshot.html:
                self._widget.snapshot = snapshot.html
        except Exception:  # a closed widget has no comm to sync the trait over
            log.debug("llm-notebook: could not set a widget's snapshot trait", exc_info=True)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
