"""Live progress of a batch run: a widget in a notebook, a text bar in a terminal, nothing else.

Updates come from the thread that waits for the run, at most 5 a second, and only when a number
changed: one small comm message per update, far below what jupyter_server drops (1,000/s).

The widget's Stop button interrupts the kernel through the Jupyter server's REST API (the same
request as the toolbar's ■ button). A comm message could not work: the kernel reads comm messages
only between cells, and the cell running the batch is still running. The interrupt arrives as
Ctrl-C, which the run turns into a clean stop within 2 s with every finished row saved.
A background job's Stop is the other way round: interrupting the kernel would stop whatever cell
runs, not the job, so it sends a comm message ("cancel"), which the kernel reads at once while
idle (background.py cancels the job: no new rows, those in flight finish).

The widget's output also carries a static snapshot of the numbers (no rate or ETA), updated when
the run ends, for a notebook read where no kernel runs (widgets/display.py).
"""

from __future__ import annotations

import os
import re
import sys
import time

_MODES = (None, True, False, "auto", "widget", "text", "none")


def open_display(mode, run, *, background: bool = False):
    """The progress display `mode` asks for. A background job shows a widget in a notebook and
    nothing elsewhere unless asked for text (a bar rewriting itself under the prompt of a
    terminal the user is typing in would be in the way)."""
    if mode not in _MODES:
        raise ValueError(f"progress must be True, False, 'widget', 'text' or None (auto), not {mode!r}")
    if mode is False or mode == "none":
        return None
    if mode == "text":
        return TextBar(run)
    in_kernel = _in_kernel()
    if mode == "widget" or (mode in (None, True, "auto") and in_kernel):
        try:
            return WidgetBar(run, background=background)
        except Exception:  # no anywidget/ipywidgets frontend: fall back to text
            return None if background else TextBar(run, stream=sys.stdout)
    if background:
        return None
    if mode is True or _stderr_is_tty():
        return TextBar(run)
    return None


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def describe(s: dict, *, timing: bool = True) -> str:
    """One line: rows done / total · errors · cached · rate · ETA · cost. Without `timing`, no
    rate or ETA: the line a saved notebook keeps is the same on every run."""
    parts = [f"{s['done']:,}/{s['total']:,} rows"]
    if s["errors"]:
        parts.append(f"{s['errors']:,} errors")
    if s["cached"]:
        parts.append(f"{s['cached']:,} cached")
    if timing and s.get("rate"):
        parts.append(f"{s['rate']:,.1f} rows/s")
    if timing and s["status"] == "running" and s.get("eta") is not None and s["done"] < s["total"]:
        parts.append(f"ETA {_clock(s['eta'])}")
    if s["cost"] or not s.get("unpriced"):
        parts.append(f"${s['cost']:.4f}")
    else:
        parts.append("price unknown")
    if s.get("provider"):
        parts.append(f"provider batch: {s['provider']}")
    if s["status"] != "running":
        parts.append(s["status"])
    elif s.get("stopping"):
        parts.append("stopping…")
    return " · ".join(parts)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TextBar:
    """`[#####-----] 812/2,000 rows · ...` on stderr, rewritten in place with \\r."""

    WIDTH = 24
    MIN_GAP = 0.2

    def __init__(self, run, stream=None):
        self.stream = stream or sys.stderr
        self._last = ""
        self._last_at = 0.0
        self.update(run.snapshot())

    def _line(self, s: dict) -> str:
        filled = int(self.WIDTH * s["done"] / s["total"]) if s["total"] else self.WIDTH
        return f"\r[{'#' * filled}{'-' * (self.WIDTH - filled)}] {describe(s)}"

    def update(self, s: dict) -> None:
        line = self._line(s)
        now = time.monotonic()
        if line == self._last or now - self._last_at < self.MIN_GAP:
            return
        pad = " " * max(0, len(self._last) - len(line))
        self._last, self._last_at = line, now
        try:
            self.stream.write(line + pad)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def close(self, s: dict) -> None:
        self._last_at = 0.0
        self._last = self._last + "\0"  # force the final line out
        self.update(s)
        try:
            self.stream.write("\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass


def _kernel_id() -> str:
    """This kernel's id (from its connection file name), for the Stop button's interrupt."""
    try:
        from ipykernel.connect import get_connection_file

        match = re.match(r"kernel-(.+)\.json$", os.path.basename(get_connection_file()))
        return match.group(1) if match else ""
    except Exception:
        return ""


_ESM = r"""
function pageConfig() {
  const el = document.getElementById("jupyter-config-data");
  try { return el ? JSON.parse(el.textContent) : {}; } catch (e) { return {}; }
}
function cookie(name) {
  const m = document.cookie.match("\\b" + name + "=([^;]*)\\b");
  return m ? m[1] : undefined;
}
async function interruptKernel(kernelId) {
  if (!kernelId) throw new Error("no kernel id");
  const cfg = pageConfig();
  let base = cfg.baseUrl || document.body.dataset.baseUrl || "/";
  if (!base.endsWith("/")) base += "/";
  const headers = {};
  const xsrf = cookie("_xsrf");
  if (xsrf !== undefined) headers["X-XSRFToken"] = xsrf;
  if (cfg.token) headers["Authorization"] = "token " + cfg.token;
  const r = await fetch(base + "api/kernels/" + encodeURIComponent(kernelId) + "/interrupt",
                        { method: "POST", headers, credentials: "same-origin" });
  if (!r.ok) throw new Error("HTTP " + r.status);
}
function render({ model, el }) {
  const root = document.createElement("div");
  // llmnb-view: js/lab hides the saved snapshot beside a view that renders.
  root.className = "llmnb-batch llmnb-view";
  root.style.cssText = "display:flex;align-items:center;gap:8px;font-family:var(--jp-ui-font-family,sans-serif);font-size:var(--jp-ui-font-size1,13px);color:var(--jp-ui-font-color1,inherit);padding:2px 0;";
  const bar = document.createElement("progress");
  bar.style.cssText = "width:220px;height:14px;";
  const text = document.createElement("span");
  text.className = "llmnb-batch-text";
  const stop = document.createElement("button");
  stop.className = "llmnb-batch-stop";
  stop.textContent = "Stop";
  stop.title = "Stop the run: rows in flight are cancelled, finished rows are kept";
  stop.style.cssText = "cursor:pointer;";
  const note = document.createElement("span");
  note.style.cssText = "opacity:0.7;";
  stop.addEventListener("click", async () => {
    stop.disabled = true;
    stop.textContent = "Stopping…";
    if (model.get("background")) {
      // A background job: cancel the job, not the cell the kernel is running.
      model.send({ type: "cancel" });
      return;
    }
    try {
      await interruptKernel(model.get("kernel_id"));
    } catch (e) {
      stop.disabled = false;
      stop.textContent = "Stop";
      note.textContent = "could not stop from here: use the notebook's interrupt (■) button";
    }
  });
  root.append(bar, text, stop, note);
  el.appendChild(root);
  const update = () => {
    const total = model.get("total"), done = model.get("done");
    bar.max = Math.max(total, 1);
    bar.value = done;
    text.textContent = model.get("line");
    const running = model.get("status") === "running" || model.get("status") === "queued";
    stop.style.display = running ? "" : "none";
    if (!running) note.textContent = "";
    root.dataset.status = model.get("status");
  };
  model.on("change", update);
  update();
}
export default { render };
"""


def _widget_class():
    import traitlets as t

    from ..widgets._base import LLMWidget
    from ..widgets.snapshot import batch_snapshot

    class BatchProgress(LLMWidget):
        _esm = _ESM
        total = t.Int(0).tag(sync=True)
        done = t.Int(0).tag(sync=True)
        errors = t.Int(0).tag(sync=True)
        cached = t.Int(0).tag(sync=True)
        cost = t.Float(0.0).tag(sync=True)
        status = t.Unicode("running").tag(sync=True)
        line = t.Unicode("").tag(sync=True)
        job_id = t.Unicode("").tag(sync=True)
        kernel_id = t.Unicode("").tag(sync=True)
        background = t.Bool(False).tag(sync=True)

        settled_line = ""  # describe() without timings: what the snapshot shows
        stop_handler = None

        def on_custom_message(self, content, buffers):
            if content.get("type") == "cancel" and self.stop_handler is not None:
                self.stop_handler()

        def __repr__(self) -> str:
            return f"batch {self.job_id}: {self.line}" if self.job_id else f"batch: {self.line}"

        def _build_snapshot(self):
            return batch_snapshot(self.settled_line)

    BatchProgress.__qualname__ = "BatchProgress"
    return BatchProgress


_WIDGET_CLASS = None


class WidgetBar:
    """The notebook display: a progress bar, the numbers, and a Stop button."""

    def __init__(self, run, *, background: bool = False):
        global _WIDGET_CLASS
        if _WIDGET_CLASS is None:
            _WIDGET_CLASS = _widget_class()
        from IPython.display import display

        s = run.snapshot()
        self.widget = _WIDGET_CLASS(total=s["total"], kernel_id=_kernel_id(),
                                    background=background)
        self._last = None
        self.update(s)
        display(self.widget)

    def update(self, s: dict) -> None:
        state = {"total": s["total"], "done": s["done"], "errors": s["errors"],
                 "cached": s["cached"], "cost": float(s["cost"]), "status": s["status"],
                 "line": describe(s), "job_id": s["job_id"] or ""}
        self.widget.settled_line = describe(s, timing=False)
        if state == self._last:
            return
        self._last = state
        with self.widget.hold_sync():
            for key, value in state.items():
                setattr(self.widget, key, value)

    def on_stop(self, handler) -> None:
        """A background job's Stop button calls `handler` (in the kernel)."""
        self.widget.stop_handler = handler

    def close(self, s: dict) -> None:
        self.update(s)
        # The run is over: the saved output keeps its final numbers.
        self.widget.refresh_snapshot()

    def show_again(self) -> None:
        """Sends the output's snapshot again from this thread (a background job's widget is
        updated from the loop thread, whose messages a headless runner such as nbclient files
        under no running cell and drops; a cell waiting for the job sends it as its own)."""
        self.widget.republish_snapshot()
