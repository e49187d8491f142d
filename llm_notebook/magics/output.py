"""What a `%%llm` cell shows: a display updated in place while the reply streams, then the final
rendering (sanitized) with a one-line footer and metadata about the call.

Two faces:
- `LiveDisplay` for Jupyter (and anything with a rich display publisher): one output with a
  display_id, updated at most `max_per_second` times a second. jupyter_server drops iopub
  messages past ~1,000/s and each update resends the whole text, so token-per-message
  updates would be both lossy and quadratic.
- `TerminalDisplay` for terminal IPython, whose display publisher just prints text/plain: deltas
  are written to stdout as they come, then the footer.

LLM text is hostile: every text/html payload here comes from `llm_notebook.render` or
`safe_html`, never from the model directly.
"""

from __future__ import annotations

import html
import json
import re
import sys
import time
from typing import Any

from .. import render

FORMATS = ("markdown", "text", "code", "json", "html")
METADATA_KEY = "llm_notebook"

# markdown-it costs ~1 µs per character: re-rendering a long reply 20 times a second would eat
# the kernel. While streaming, an update waits at least RENDER_COST_FACTOR × the last render's
# duration, so rendering never takes more than about a quarter of the time.
RENDER_COST_FACTOR = 4.0

# A fenced code block as CommonMark reads one: an opening fence (3+ backticks, whose info string
# has no backtick, or 3+ tildes) whose info string starts with the language, then the body up to
# a line holding a fence of the same character at least as long, or up to the end of the text (a
# reply cut by max_tokens). Because a block always ends (at its closer or at the end), no opener
# ever searches ahead in vain: one pass, linear in the text. (The old pattern gave up on each
# unclosed opener after searching to the end: minutes for 1 MB of them.)
_FENCED_BLOCK = re.compile(
    r"^ {0,3}(?:(`{3,})[ \t]*([\w+#.-]*)[^`\n]*|(~{3,})[ \t]*([\w+#.-]*)[^\n]*)\n"
    r"(.*?)"
    r"(?:^ {0,3}(?(1)\1`*|\3~*)[ \t]*$|\Z)",
    re.DOTALL | re.MULTILINE)
# Blocks read one by one before the rest are read in one findall (which builds its tuples in C:
# a reply of 100,000 tiny non-Python blocks costs 60 ms that way, twice that in a Python loop).
_FIRST_BLOCKS = 32
_PYTHON_LANGS = {"", "python", "py", "python3", "ipython", "ipython3"}


class Throttle:
    """Allows an event at most `max_per_second` times a second (leading edge)."""

    def __init__(self, max_per_second: float, clock=time.monotonic):
        self.interval = 1.0 / max_per_second
        self._clock = clock
        self._next = 0.0

    def ready(self) -> bool:
        return self._clock() >= self._next

    def done(self, extra_wait: float = 0.0) -> None:
        """Record that the event happened now; the next one waits `interval` (or `extra_wait`)."""
        self._next = self._clock() + max(self.interval, extra_wait)


def extract_code(text: str) -> str:
    """The code in a reply: the first Python (or untagged) fenced block, else the first fenced
    block, else the whole text."""
    first = None
    end = 0
    for count, match in enumerate(_FENCED_BLOCK.finditer(text)):
        if count == _FIRST_BLOCKS:
            break
        fence, lang, _, other_lang, body = match.groups()
        if (lang or other_lang or "").lower() in _PYTHON_LANGS:
            return body.rstrip("\n")
        first = body if first is None else first
        end = match.end()
    else:
        return first.rstrip("\n") if first is not None else text.strip("\n")
    for _, lang, _, other_lang, body in _FENCED_BLOCK.findall(text, end):
        if (lang or other_lang).lower() in _PYTHON_LANGS:
            return body.rstrip("\n")
    return first.rstrip("\n")


def _waiting_bundle(model: str) -> dict:
    note = f"waiting for {model}…"
    return {"text/plain": note,
            "text/html": render.output_block(
                f'<span style="color: var(--jp-ui-font-color2, #888);">{html.escape(note)}</span>',
                "llm-nb-waiting")}


def _partial_bundle(text: str, fmt: str) -> dict:
    body = render.markdown_to_html(text) if fmt == "markdown" else render.escape_text_html(text)
    return {"text/plain": text, "text/html": render.output_block(body, "llm-nb-output llm-nb-streaming")}


def final_bundle(text: str, fmt: str, footer: str, *, value: Any = None) -> dict:
    """The finished output. `value` is the parsed object for `json`."""
    if fmt == "markdown":
        body = render.markdown_to_html(text)
    elif fmt == "html":
        from .safe_html import sanitize_html

        body = sanitize_html(text)
    elif fmt == "code":
        code = extract_code(text)
        body = ('<pre class="llm-nb-code"><code class="language-python">'
                f"{html.escape(code)}</code></pre>")
        text = code
    elif fmt == "json" and value is not None:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
        body = render.escape_text_html(text)
    else:
        body = render.escape_text_html(text)
    footer_html = render.footer_html([footer]) if footer else ""
    plain = f"{text}\n\n{footer}" if footer else text
    return {"text/plain": plain,
            "text/html": render.output_block(body + footer_html)}


def call_metadata(response, fmt: str) -> dict:
    """What the saved notebook records about the call behind an output."""
    return {METADATA_KEY: {
        "model": response.model, "id": response.id, "status": response.status,
        "input_tokens": response.input_tokens, "output_tokens": response.output_tokens,
        "cost": response.cost, "cached": response.cached, "replayed": response.replayed,
        "format": fmt,
        "conversation_id": response.conversation_id,
    }}


class LiveDisplay:
    """One output in the cell, updated in place (throttled) while a reply streams."""

    def __init__(self, model: str, fmt: str, max_per_second: float = 20.0):
        from IPython.display import display

        self.fmt = fmt
        self.updates = 0
        self._parts: list[str] = []  # joined only when drawn: `text += delta` is quadratic
        self._dirty = False
        self._throttle = Throttle(max_per_second)
        self._handle = display(_waiting_bundle(model), raw=True, display_id=True)

    @property
    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def add(self, delta: str) -> None:
        self._parts.append(delta)
        self._dirty = True
        if self._throttle.ready():
            self.flush()

    def flush(self) -> None:
        if not self._dirty:
            return
        started = time.perf_counter()
        self._handle.update(_partial_bundle(self.text, self.fmt), raw=True)
        self.updates += 1
        self._dirty = False
        self._throttle.done(RENDER_COST_FACTOR * (time.perf_counter() - started))

    def finish(self, text: str, footer: str, *, metadata: dict | None = None,
               value: Any = None, fmt: str | None = None) -> None:
        self._parts[:] = [text]
        self._handle.update(final_bundle(text, fmt or self.fmt, footer, value=value), raw=True,
                            metadata=metadata or {})
        self._dirty = False

    def fail(self, note: str) -> None:
        """The call failed before any text: replace the waiting line with a short note."""
        self._handle.update({"text/plain": note,
                             "text/html": render.output_block(render.footer_html([note]))}, raw=True)


class TerminalDisplay:
    """Terminal IPython: print deltas as they arrive, then the footer."""

    def __init__(self, model: str, fmt: str, max_per_second: float = 20.0):
        self.fmt = fmt
        self.updates = 0
        self._seen = 0  # characters already printed
        self.text = ""

    def add(self, delta: str) -> None:
        self._seen += len(delta)
        sys.stdout.write(delta)
        sys.stdout.flush()
        self.updates += 1

    def flush(self) -> None:
        pass

    def finish(self, text: str, footer: str, *, metadata: dict | None = None,
               value: Any = None, fmt: str | None = None) -> None:
        if not self._seen and text:  # not streamed (--no-stream)
            sys.stdout.write(text)
        sys.stdout.write(f"\n\n[{footer}]\n" if footer else "\n")
        sys.stdout.flush()
        self.text = text

    def fail(self, note: str) -> None:
        if self._seen:
            sys.stdout.write("\n")
        sys.stdout.flush()


def open_display(shell, model: str, fmt: str, max_per_second: float):
    """The right face for this shell: in-place updates need a frontend that keeps display ids."""
    from IPython.core.displaypub import DisplayPublisher

    plain_terminal = type(getattr(shell, "display_pub", None)) is DisplayPublisher
    cls = TerminalDisplay if plain_terminal else LiveDisplay
    return cls(model, fmt, max_per_second)
