"""One line per step as a run goes: in a notebook under each step's batch progress widget, on a
terminal's stderr beside its text bars. The lines hold no times (a notebook's saved output is the
same on every run); the command line prints the times in its last line."""

from __future__ import annotations

import sys

_MODES = (None, True, False, "auto", "widget", "text", "none")


def reporter(progress, total_steps: int):
    """An `on_event` callback printing each finished step's line, or None for no lines."""
    from ..batch.progress import _in_kernel, _stderr_is_tty

    if progress not in _MODES:
        raise ValueError(f"progress must be True, False, 'widget', 'text' or None (auto), "
                         f"not {progress!r}")
    if progress is False or progress == "none":
        return None
    in_kernel = _in_kernel()
    if in_kernel and progress != "text":
        stream = sys.stdout
    elif progress in (True, "text", "widget") or _stderr_is_tty():
        stream = sys.stderr
    else:
        return None

    def on_event(event: dict) -> None:
        if event["type"] != "done":
            return
        from .engine import StepReport

        report = StepReport(**event["report"])
        try:
            stream.write(report.line(f"[{event['index'] + 1}/{total_steps}] ") + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    return on_event
