"""Sanitized markdown → HTML on the Python side (``%%llm`` output, HTML reports).

LLM text is hostile input: JupyterLab runs scripts and inline event handlers in *trusted*
``text/html`` output, and a cell's own output is trusted. So there are two lines of defence:

1. markdown-it-py (CommonMark + tables + strikethrough) with raw HTML **off**: ``<script>`` in
   the source comes out as visible, escaped text. Links are kept only for http, https and mailto
   (anything else stays plain text); images never load — ``![alt](url)`` becomes the text
   ``[image: alt — url]``, since a remote image is a tracking beacon and ``data:`` URLs can
   carry anything.
2. nh3 (ammonia) on the result, with an allow-list of tags and attributes and a filter on every
   attribute value, in case a markdown-it rule (or a future plugin) ever emits something we did
   not intend.

markdown-it-py costs roughly 1 µs per character of prose but 5–20 µs per line or per markup
character, so 1 MB of hostile markdown (all "[" or one-word lines) would take 5–20 s. Large input
is therefore rendered in chunks cut at block boundaries, against a budget of work estimated from
each chunk's size and markup (not the clock: the same answer renders the same on a busy machine, in
a replay and in a saved notebook compared by CI); whatever is left when the budget runs out is
shown as escaped plain text, so the kernel never hangs on a reply.

Nothing is imported from markdown-it or nh3 until first use: importing this module is cheap.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["ALLOWED_URL_SCHEMES", "escape_text_html", "footer_html", "markdown_to_html",
           "output_block"]

ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
# JupyterLab typesets TeX in every HTML output with MathJax, after our sanitizer has run: an
# answer's $...$ (with \href, \class, \style, \require...) would become markup the sanitizer
# never saw. Every output of ours is marked for MathJax (3: mathjax_ignore, 2: tex2jax_ignore)
# to leave alone.
NO_MATH_CLASSES = "mathjax_ignore tex2jax_ignore"

_SAFE_HREF = re.compile(r"(?:https?|mailto):", re.IGNORECASE)
_LANG = re.compile(r"[A-Za-z0-9_+#.-]{1,40}")
_CODE_CLASS = re.compile(r"language-[A-Za-z0-9_+#.-]{1,40}")
_ALIGN_STYLE = re.compile(r"\s*text-align\s*:\s*(?:left|right|center)\s*;?\s*", re.IGNORECASE)
_IMAGE_CLASS = "llm-nb-image"

_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code",
    "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
    "span",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "code": {"class"},
    "span": {"class"},
}

_LINK_REL = "noopener noreferrer"
_LINK_EXTRAS = {("rel", _LINK_REL), ("target", "_blank")}

# Input up to _CHUNK_HARD characters renders in one go (worst case about 1 s on hostile markup).
# Larger input is cut, preferably at a blank line followed by an unindented line outside a code
# fence (so no list, quote, table or fence is split) once a chunk reaches _CHUNK_TARGET, and at a
# line (or, for one giant line, at a space) when it reaches _CHUNK_HARD.
_CHUNK_TARGET = 32_000
_CHUNK_HARD = 64_000
# The work budget, in estimated microseconds of markdown-it + nh3 on these 2-core machines under
# load (about 2 s; under 1 s idle): prose costs ~0.05 µs a character, each line or markup
# character up to ~20 µs (measured: runs of "[", "*a", table rows, one-word lines, links).
_WORK_BUDGET = 2_000_000
_MARKUP = re.compile(r"[\[\]()*_`<>|#!\\&~\n]")
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})([^\n]*)")
_PLAIN_REST_NOTE = (
    '<p class="llm-nb-note"><em>The rest is shown as plain text: '
    "it was too long to format in time.</em></p>"
)

_lock = threading.Lock()
_markdown: Any = None  # the configured MarkdownIt instance, built on first use
_clean: Any = None  # the configured nh3 clean function, built on first use


def _safe_href(url: str) -> bool:
    # markdown-it hands us the URL already entity-decoded and percent-encoded (so "java\tscript:"
    # is "java%09script:"): a prefix check on the scheme is enough.
    return bool(_SAFE_HREF.match(url.strip()))


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "href":
        return value if _safe_href(value) else None
    if attribute == "class":
        if tag == "code" and _CODE_CLASS.fullmatch(value):
            return value
        if tag == "span" and value == _IMAGE_CLASS:
            return value
        return None
    if attribute == "style":
        return value if _ALIGN_STYLE.fullmatch(value) else None
    if attribute == "start":
        return value if value.isdigit() and len(value) <= 9 else None
    if attribute == "title":
        return value
    # ammonia runs this filter on the rel/target it adds itself, too.
    if tag == "a" and (attribute, value) in _LINK_EXTRAS:
        return value
    return None


def _build_markdown():
    from markdown_it import MarkdownIt
    from markdown_it.common.utils import escapeHtml

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    # Consulted for links, autolinks, reference definitions and images: a rejected URL leaves
    # the markdown source as plain text.
    md.validateLink = _safe_href

    def image(self, tokens, idx, options, env):
        token = tokens[idx]
        alt = self.renderInlineAsText(token.children or [], options, env)
        url = md.normalizeLinkText(token.attrGet("src") or "")
        label = f"[image: {alt} — {url}]" if alt else f"[image: {url}]"
        return f'<span class="{_IMAGE_CLASS}">{escapeHtml(label)}</span>'

    def fence(self, tokens, idx, options, env):
        token = tokens[idx]
        words = token.info.split(None, 1) if token.info else []
        lang = words[0] if words and _LANG.fullmatch(words[0]) else ""
        attrs = f' class="language-{lang}"' if lang else ""
        return f"<pre><code{attrs}>{escapeHtml(token.content)}</code></pre>\n"

    # With html off these rules only say "no"; disabled, raw HTML cannot even become a token.
    md.disable(["html_block", "html_inline"])
    md.add_render_rule("image", image)
    md.add_render_rule("fence", fence)
    return md


def _build_clean():
    import nh3

    options = {
        "tags": _TAGS,
        "attributes": _ATTRIBUTES,
        "attribute_filter": _filter_attribute,
        "url_schemes": set(ALLOWED_URL_SCHEMES),
        "link_rel": _LINK_REL,
        "set_tag_attribute_values": {"a": {"target": "_blank"}},
        "strip_comments": True,
    }
    cleaner_class = getattr(nh3, "Cleaner", None)  # nh3 ≥ 0.3: compile the options once
    if cleaner_class is not None:
        return cleaner_class(**options).clean
    return lambda fragment: nh3.clean(fragment, **options)


def _ensure_built():
    global _markdown, _clean
    if _markdown is None:
        with _lock:
            if _markdown is None:
                _clean = _build_clean()
                _markdown = _build_markdown()
    return _markdown, _clean


def markdown_to_html(text: str) -> str:
    """Render untrusted markdown to an HTML fragment that is safe in trusted output."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    md, clean = _ensure_built()
    if len(text) <= _CHUNK_HARD:
        return clean(md.render(text))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    left = _WORK_BUDGET
    env: dict = {}  # shared, so reference definitions carry over to later chunks
    rendered: list[str] = []
    rest = ""
    for start, chunk in _chunks(text):
        left -= render_cost(chunk)
        if left < 0:
            rest = text[start:]
            break
        rendered.append(md.render(chunk, env))
    html_out = clean("".join(rendered))
    if rest:
        html_out += _PLAIN_REST_NOTE + escape_text_html(rest)
    return html_out


def render_cost(chunk: str) -> float:
    """Estimated microseconds to render and clean `chunk` (see _WORK_BUDGET)."""
    return 0.05 * len(chunk) + 20 * len(_MARKUP.findall(chunk))


def _chunks(
    text: str, target: int = _CHUNK_TARGET, hard: int = _CHUNK_HARD
) -> Iterator[tuple[int, str]]:
    """Cut normalized markdown into ``(offset, chunk)`` pieces that render independently.

    ``offset`` is where the chunk's own text starts in ``text``. A fence split by a hard cut is
    closed at the end of one chunk and reopened (same opening line) at the start of the next.
    """
    if len(text) <= hard:
        yield 0, text
        return
    start = 0  # offset in text where the current chunk's own text starts
    prefix = ""  # a reopened fence line the current chunk starts with
    fence: tuple[str, int, str] | None = None  # (char, length, opening line) while inside one
    previous_blank = False
    pos = 0
    n = len(text)
    while pos < n:
        end = text.find("\n", pos)
        end = n if end == -1 else end + 1
        if pos > start:
            safe = (
                pos - start >= target
                and fence is None
                and previous_blank
                and text[pos] not in " \t\n"
            )
            if safe or end - start > hard:
                chunk = prefix + text[start:pos]
                prefix = ""
                if fence is not None:
                    chunk += fence[0] * fence[1] + "\n"
                    prefix = fence[2]
                yield start, chunk
                start = pos
        if end - pos > hard:
            # One giant line: cut at the last space before the limit (or at the limit).
            limit = pos + hard
            cut = text.rfind(" ", pos + hard // 2, limit)
            end = limit if cut == -1 else cut + 1
            chunk = prefix + text[pos:end]
            prefix = ""
            if fence is not None:
                chunk += "\n" + fence[0] * fence[1] + "\n"
                prefix = fence[2]
            yield pos, chunk
            start = pos = end
            previous_blank = False
            continue
        line = text[pos:end]
        stripped = line.strip()
        if fence is None:
            match = _FENCE_OPEN.match(line)
            # A backtick fence's info string cannot contain a backtick (that is inline code).
            if match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
                opening = line if line.endswith("\n") else line + "\n"
                fence = (match.group(1)[0], len(match.group(1)), opening)
        elif (
            len(stripped) >= fence[1]
            and stripped.strip(fence[0]) == ""
            and not line.startswith("    ")
        ):
            fence = None
        previous_blank = not stripped
        pos = end
    if start < n:
        yield start, prefix + text[start:]


def output_block(inner: str, classes: str = "llm-nb-output") -> str:
    """Sanitized HTML (from this module) wrapped as one output that MathJax skips."""
    return f'<div class="{classes} {NO_MATH_CLASSES}">{inner}</div>'


def escape_text_html(text: str) -> str:
    """Untrusted text shown verbatim (``-f text``): escaped inside a wrapping ``<pre>``."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    return (
        '<pre class="llm-nb-text" style="white-space: pre-wrap; overflow-wrap: anywhere;">'
        f"{html.escape(text)}</pre>"
    )


def footer_html(parts: Iterable[Any]) -> str:
    """A muted one-line footer, e.g. ``model · 12+30 tokens · $0.0001 · 1.2 s``.

    Empty parts are skipped; every part is escaped. Returns ``""`` when nothing is left.
    """
    shown = [html.escape(str(part)) for part in parts if part is not None and str(part) != ""]
    if not shown:
        return ""
    return (
        '<div class="llm-nb-footer" style="color: var(--jp-ui-font-color2, #888); '
        'font-size: 0.85em; margin-top: 0.4em;">' + " · ".join(shown) + "</div>"
    )
