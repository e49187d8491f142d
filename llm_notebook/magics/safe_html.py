"""`%%llm -f html`: the model's HTML, cleaned to an allow-list before it is shown.

A cell's own output is trusted in JupyterLab, so raw model HTML could run scripts or inline
handlers, or load remote resources (tracking pixels, CSS `url()`): nothing of that survives here.
Kept: structure and text formatting, tables, lists, and http(s)/mailto links. Dropped: scripts,
styles, every `on*` handler and `style` attribute, images, media, iframes, forms.
"""

from __future__ import annotations

import re
import threading
from typing import Any

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del", "details",
    "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "ins", "kbd",
    "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub",
    "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "ol": {"start"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
}
_SAFE_HREF = re.compile(r"(?:https?|mailto):", re.IGNORECASE)
_SMALL_INT = re.compile(r"\d{1,4}")

_lock = threading.Lock()
_clean: Any = None


def _filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "href":
        return value if _SAFE_HREF.match(value.strip()) else None
    if attribute in ("start", "colspan", "rowspan"):
        return value if _SMALL_INT.fullmatch(value) else None
    if attribute == "scope":
        return value if value in ("row", "col", "rowgroup", "colgroup") else None
    if attribute == "title":
        return value
    if tag == "a" and (attribute, value) in (("rel", "noopener noreferrer"), ("target", "_blank")):
        return value  # ammonia runs the filter on the attributes it adds, too
    return None


def _build():
    import nh3

    options = {
        "tags": _TAGS, "attributes": _ATTRIBUTES, "attribute_filter": _filter,
        "url_schemes": {"http", "https", "mailto"}, "link_rel": "noopener noreferrer",
        "set_tag_attribute_values": {"a": {"target": "_blank"}}, "strip_comments": True,
        # Drop the *content* of these, not just the tags: a script's source shown as text would
        # be noise, and <style> text must not leak into the page either.
        "clean_content_tags": {"script", "style", "noscript", "template", "iframe", "object",
                               "svg", "math"},
    }
    cleaner = getattr(nh3, "Cleaner", None)  # nh3 ≥ 0.3 compiles the options once
    if cleaner is not None:
        return cleaner(**options).clean
    return lambda fragment: nh3.clean(fragment, **options)


def sanitize_html(fragment: str) -> str:
    """An HTML fragment from an untrusted source, reduced to harmless markup."""
    global _clean
    if _clean is None:
        with _lock:
            if _clean is None:
                _clean = _build()
    return _clean(fragment if isinstance(fragment, str) else str(fragment or ""))
