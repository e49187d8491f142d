"""The one placeholder syntax: used by the ``%%llm`` magic, saved templates and ``df.llm.map``.

    {name}          the value of variable ``name`` (inserted with ``str()`` or a ``convert`` hook)
    {In[3]}         one subscript on a variable: an integer (may be negative) ...
    {d['key']}      ... or a quoted string key (no escapes inside the quotes)
    {{  and  }}     a literal ``{`` and ``}``

Nothing else is allowed inside braces. The syntax looks like ``str.format`` on purpose, but it is a
separate, much smaller grammar: ``str.format`` would allow ``{x.__class__.__init__.__globals__}``,
``{x!r}`` and ``{x:{y}}``, and a template may come from someone else (a shared template, a
dataset, an LLM). Here those are syntax errors, values are looked up with ``mapping[name]`` and
subscripts are applied only to lists, tuples, dicts and other ``Sequence``/``Mapping`` values:
``getattr`` is never called.

Parsing is cached (``df.llm.map`` renders one template for every row), and rendering is a join
of precompiled literal parts and looked-up values.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .errors import UserError

__all__ = [
    "MissingVariableError",
    "Placeholder",
    "PlaceholderError",
    "PlaceholderLookupError",
    "PlaceholderSyntaxError",
    "Template",
    "escape",
    "from_llm_style",
    "parse",
    "render",
    "variables",
]

_ESCAPE_HINT = "To write a literal brace use '{{' and '}}'"
_FORMS = "placeholders look like {name}, {name[0]} or {name['key']}"
_MISSING_MODES = ("error", "keep", "empty")
_AVAILABLE_SHOWN = 20

Key = int | str | None


# --- errors -------------------------------------------------------------------------------------


class PlaceholderError(UserError, ValueError):
    """Base class of every placeholder error (a ValueError, never a KeyError)."""


class PlaceholderSyntaxError(PlaceholderError):
    """The template text is not valid placeholder syntax.

    ``str(err)`` is ``"line L, column C: <message>"``; ``err.message``, ``err.line`` and
    ``err.column`` (both 1-based, column counted in characters) are also available, and
    ``err.kind`` names the problem (``unmatched_open``, ``unmatched_close``, ``empty``,
    ``invalid_name``, ``positional``, ``attribute``, ``conversion``, ``format_spec``, ``call``,
    ``subscript``, ``unexpected``).
    """

    def __init__(self, message: str, line: int, column: int, kind: str = "syntax"):
        super().__init__(message, line, column, kind)
        self.message = message
        self.line = line
        self.column = column
        self.kind = kind

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


class MissingVariableError(PlaceholderError):
    """A placeholder names a variable that the values do not contain."""

    def __init__(
        self,
        name: str,
        available: Iterable[str] | None = None,
        *,
        line: int | None = None,
        column: int | None = None,
    ):
        self.name = name
        self.available = list(available) if available is not None else None
        self.line = line
        self.column = column
        super().__init__(_missing_message(name, self.available))

    def __reduce__(self):
        return (_rebuild_missing, (self.name, self.available, self.line, self.column))


def _rebuild_missing(name, available, line, column):
    return MissingVariableError(name, available, line=line, column=column)


class PlaceholderLookupError(PlaceholderError):
    """A subscript placeholder like ``{Out[7]}`` could not be applied to its value."""

    def __init__(self, message: str, name: str = "", key: Key = None):
        super().__init__(message)
        self.name = name
        self.key = key

    def __reduce__(self):
        return (type(self), (self.args[0], self.name, self.key))


def _missing_message(name: str, available: list[str] | None) -> str:
    message = f"unknown variable '{name}' in prompt"
    if available:
        close = difflib.get_close_matches(name, available, n=1)
        if close:
            message += f" (did you mean '{close[0]}'?)"
        shown = ", ".join(available[:_AVAILABLE_SHOWN])
        if len(available) > _AVAILABLE_SHOWN:
            shown += f", … ({len(available) - _AVAILABLE_SHOWN} more)"
        message += f"; available: {shown}"
    elif available is not None:
        message += "; no variables are available"
    return f"{message}. {_ESCAPE_HINT}"


# --- parsed form --------------------------------------------------------------------------------


class Placeholder(NamedTuple):
    """One ``{...}`` in a template (for editors that highlight or list placeholders)."""

    name: str  # the variable: "In" for {In[3]}
    key: Key  # the subscript, or None when there is none
    source: str  # the text between the braces: "In[3]"
    start: int  # offset of "{" in the template text
    end: int  # offset just past "}"
    line: int  # 1-based line of "{"
    column: int  # 1-based column of "{"


_NO_KEY = object()  # internal marker: a slot without subscript (None is never a parsed key)


class Template:
    """A parsed template. Immutable and shared through the ``parse`` cache: don't mutate it."""

    __slots__ = ("_parts", "_slots", "_variables", "placeholders", "source")

    def __init__(self, source: str, literals: list[str], placeholders: list[Placeholder]):
        self.source = source
        self.placeholders: tuple[Placeholder, ...] = tuple(placeholders)
        # _parts interleaves literals and slots: literal, slot, literal, ..., literal. Slots are
        # filled by index into a copy of _parts, then joined: one join per render.
        parts: list[str] = []
        slots = []
        for literal, ph in zip(literals, placeholders):
            parts.append(literal)
            slots.append((len(parts), ph.name, _NO_KEY if ph.key is None else ph.key, ph))
            parts.append("")
        parts.append(literals[-1])
        self._parts = tuple(parts)
        self._slots = tuple(slots)
        self._variables = tuple(dict.fromkeys(ph.name for ph in placeholders))

    @property
    def variables(self) -> list[str]:
        """Variable names in order of first use, each once (``In`` for ``{In[3]}``)."""
        return list(self._variables)

    def render(
        self,
        values: Mapping[str, Any],
        *,
        missing: str = "error",
        convert: Callable[[str, object], str] | None = None,
        available: Iterable[str] | None = None,
    ) -> str:
        """Fill the placeholders from ``values`` (looked up with ``values[name]``).

        ``missing``: ``"error"`` raises MissingVariableError (or PlaceholderLookupError for a
        subscript that finds nothing), ``"keep"`` leaves the placeholder text as written,
        ``"empty"`` inserts nothing.
        ``convert(source, value) -> str`` turns each value into text (default ``str``);
        ``source`` is the placeholder's text, e.g. ``"df"`` or ``"Out[3]"``.
        ``available``: names to list in a MissingVariableError; by default the public string
        keys of ``values``.
        """
        if missing not in _MISSING_MODES:
            raise ValueError(f"missing must be one of {', '.join(_MISSING_MODES)}; got {missing!r}")
        if not self._slots:
            return self._parts[0]
        out = list(self._parts)
        for index, name, key, ph in self._slots:
            try:
                value = values[name]
            except KeyError:
                if missing == "error":
                    if available is None:
                        available = _public_names(values)
                    raise MissingVariableError(
                        name, available, line=ph.line, column=ph.column
                    ) from None
                out[index] = "{" + ph.source + "}" if missing == "keep" else ""
                continue
            if key is not _NO_KEY:
                try:
                    value = _subscript(ph, value)
                except _NotFound as exc:
                    if missing == "error":
                        raise PlaceholderLookupError(str(exc), name, ph.key) from None
                    out[index] = "{" + ph.source + "}" if missing == "keep" else ""
                    continue
            if convert is not None:
                text = convert(ph.source, value)
                out[index] = text if type(text) is str else str(text)
            else:
                out[index] = value if type(value) is str else str(value)
        return "".join(out)

    def __repr__(self) -> str:
        preview = self.source if len(self.source) <= 60 else self.source[:57] + "..."
        return f"Template({preview!r}, variables={list(self._variables)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


class _NotFound(Exception):
    """A subscript found no item: subject to the ``missing`` policy."""


def _subscript(ph: Placeholder, value: Any) -> Any:
    name, key = ph.name, ph.key
    if not isinstance(value, (list, tuple, dict, Mapping, Sequence)):
        raise PlaceholderLookupError(
            f"{{{ph.source}}}: '{name}' has type {type(value).__name__}, which cannot be indexed in "
            "a placeholder; only lists, tuples, dicts and other sequences or mappings can",
            name,
            key,
        )
    try:
        return value[key]
    except IndexError:
        raise _NotFound(
            f"{{{ph.source}}}: index {key} is out of range ('{name}' has {len(value)} items)"
        ) from None
    except KeyError:
        keys = ""
        if isinstance(value, Mapping):
            shown = [repr(k) for k in list(value.keys())[:_AVAILABLE_SHOWN]]
            keys = f"; its keys: {', '.join(shown)}" if shown else "; it is empty"
        raise _NotFound(f"{{{ph.source}}}: '{name}' has no key {key!r}{keys}") from None
    except TypeError:
        kind = "an integer index" if isinstance(key, str) else "a quoted key"
        raise PlaceholderLookupError(
            f"{{{ph.source}}}: '{name}' has type {type(value).__name__}; index it with {kind}",
            name,
            key,
        ) from None


def _public_names(values: Any) -> list[str]:
    keys = getattr(values, "keys", None)
    if not callable(keys):  # a row-like object without keys(): nothing to suggest
        return []
    return [k for k in keys() if isinstance(k, str) and not k.startswith("_")]


# --- parser -------------------------------------------------------------------------------------

_BRACE = re.compile(r"[{}]")
_NAME = re.compile(r"[^\W\d]\w*")
_INT = re.compile(r"-?\d+")


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _error(text: str, offset: int, message: str, kind: str) -> PlaceholderSyntaxError:
    line, column = _position(text, offset)
    return PlaceholderSyntaxError(message, line, column, kind)


@functools.lru_cache(maxsize=512)
def parse(text: str) -> Template:
    """Parse template text; raises PlaceholderSyntaxError with the line and column of the problem."""
    if not isinstance(text, str):
        raise TypeError(f"a template must be a str, not {type(text).__name__}")
    literals: list[str] = []
    placeholders: list[Placeholder] = []
    pending: list[str] = []  # pieces of the current literal, split at escaped braces
    literal_start = 0
    search_from = 0
    while True:
        match = _BRACE.search(text, search_from)
        if match is None:
            break
        at = match.start()
        if text[at] == "}":
            if text.startswith("}", at + 1):
                pending.append(text[literal_start : at + 1])
                literal_start = search_from = at + 2
                continue
            raise _error(
                text, at, "unmatched '}' — write '}}' for a literal brace", "unmatched_close"
            )
        if text.startswith("{", at + 1):
            pending.append(text[literal_start : at + 1])
            literal_start = search_from = at + 2
            continue
        close = text.find("}", at + 1)
        # A placeholder never spans lines: "{" with no "}" on its line is a literal brace the
        # author forgot to double (JSON examples in prompts are the usual case).
        if close == -1 or text.find("\n", at + 1, close) != -1:
            raise _error(
                text, at, "unmatched '{' — write '{{' for a literal brace", "unmatched_open"
            )
        name, key = _parse_inside(text, at, close)
        line, column = _position(text, at)
        pending.append(text[literal_start:at])
        literals.append("".join(pending))
        pending = []
        placeholders.append(
            Placeholder(name, key, text[at + 1 : close], at, close + 1, line, column)
        )
        literal_start = search_from = close + 1
    pending.append(text[literal_start:])
    literals.append("".join(pending))
    return Template(text, literals, placeholders)


def _parse_inside(text: str, open_at: int, close: int) -> tuple[str, Key]:
    """Validate the text between ``{`` at ``open_at`` and ``}`` at ``close``."""
    start = open_at + 1
    if start == close:
        raise _error(
            text,
            open_at,
            "empty placeholder '{}' — put a variable name inside, like {text}, "
            "or write '{{}}' for literal braces",
            "empty",
        )
    name_match = _NAME.match(text, start, close)
    if name_match is None:
        first = text[start]
        if first.isdigit():
            raise _error(
                text,
                start,
                "positional placeholders like {0} are not supported — use a variable name, "
                "like {text}",
                "positional",
            )
        raise _error(
            text,
            start,
            f"'{{{text[start:close]}}}' is not a placeholder: {_FORMS}. "
            f"For a literal brace write '{{{{' and '}}}}'",
            "invalid_name",
        )
    name = name_match.group()
    pos = name_match.end()
    if pos == close:
        return name, None
    key: Key = None
    if text[pos] == "[":
        key, pos = _parse_subscript(text, pos, close)
        if pos == close:
            return name, key
        if text[pos] == "[":
            raise _error(
                text,
                pos,
                "only one subscript is allowed in a placeholder, like {In[3]}",
                "subscript",
            )
    raise _unexpected(text, pos, close)


def _parse_subscript(text: str, bracket: int, close: int) -> tuple[Key, int]:
    pos = bracket + 1
    key: Key
    int_match = _INT.match(text, pos, close)
    if int_match is not None:
        key = int(int_match.group())
        pos = int_match.end()
    elif pos < close and text[pos] in "'\"":
        quote = text[pos]
        end = text.find(quote, pos + 1, close)
        if end == -1:
            raise _error(text, pos, f"unterminated string key: close it with {quote}", "subscript")
        key = text[pos + 1 : end]
        pos = end + 1
    else:
        raise _error(
            text,
            pos,
            "a subscript must be an integer like {In[3]} or a quoted key like {d['key']}",
            "subscript",
        )
    if pos >= close or text[pos] != "]":
        raise _error(text, pos, "missing ']' to close the subscript", "subscript")
    return key, pos + 1


def _unexpected(text: str, pos: int, close: int) -> PlaceholderSyntaxError:
    char = text[pos]
    if char == ".":
        return _error(
            text,
            pos,
            "attribute access (.) is not allowed in placeholders — put the value in a variable "
            "and write {name}",
            "attribute",
        )
    if char == "!":
        return _error(
            text,
            pos,
            "conversions like '!r' are not allowed in placeholders — values are inserted with "
            "str(); convert the value in Python first",
            "conversion",
        )
    if char == ":":
        return _error(
            text,
            pos,
            "format specs like ':>10' are not allowed in placeholders — format the value in "
            "Python first",
            "format_spec",
        )
    if char == "(":
        return _error(
            text,
            pos,
            "calls are not allowed in placeholders — compute the value in Python and write {name}",
            "call",
        )
    if char == "{":
        return _error(
            text, pos, "'{' inside a placeholder — write '{{' for a literal brace", "unexpected"
        )
    shown = "a space" if char.isspace() else repr(char)
    return _error(
        text,
        pos,
        f"unexpected {shown} in placeholder: {_FORMS}. For a literal brace write '{{{{' and '}}}}'",
        "unexpected",
    )


# --- conveniences -------------------------------------------------------------------------------


def variables(text: str) -> list[str]:
    """The variable names a template uses, in order of first use, each once."""
    return parse(text).variables


def render(text: str, values: Mapping[str, Any], **kwargs: Any) -> str:
    """``parse(text).render(values, **kwargs)``."""
    return parse(text).render(values, **kwargs)


def escape(text: str) -> str:
    """Make literal text safe to embed in a template: ``{`` → ``{{`` and ``}`` → ``}}``."""
    return text.replace("{", "{{").replace("}", "}}")


# simonw/llm templates use string.Template: $name, ${name}, $$ (same identifier rule as its
# default idpattern: ASCII, case-insensitive). A "$" that starts none of these stays literal,
# as string.Template.safe_substitute leaves it.
_LLM_STYLE = re.compile(
    r"\$(?:(?P<dollar>\$)|(?P<named>[_a-z][_a-z0-9]*)|\{(?P<braced>[_a-z][_a-z0-9]*)\})"
    r"|(?P<brace>[{}])",
    re.IGNORECASE | re.ASCII,
)


def _from_llm_match(match: re.Match) -> str:
    if match.group("dollar"):
        return "$"
    brace = match.group("brace")
    if brace:
        return brace * 2
    return "{" + (match.group("named") or match.group("braced")) + "}"


def from_llm_style(text: str) -> str:
    """Convert simonw/llm template text (``$var``, ``${var}``, ``$input``, ``$$``) to ours.

    ``$var`` and ``${var}`` become ``{var}``, ``$$`` becomes ``$``, and literal braces in the
    source are doubled so they stay literal.
    """
    return _LLM_STYLE.sub(_from_llm_match, text)
