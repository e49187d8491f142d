"""Query-parameter validation for the REST handlers.

Every handler declares the parameters it accepts; anything else, or a value that does not fit,
is a `BadParam`, which the handlers turn into a 400 with a one-line JSON message. A handler
never gets to run SQL with a value it has not checked, so a bad request cannot become a 500.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

# Jupyter accepts the token as a query parameter; it is never one of ours.
_AUTH_PARAMS = {"token", "_xsrf"}
# JupyterLab's ServerConnection appends `?<Date.now()>` (a bare number) to GET requests to defeat
# caches; it carries no meaning and is ignored.
_CACHE_BUSTER = re.compile(r"\d{1,20}")
MAX_SQLITE_INT = 2**63 - 1


class BadParam(ValueError):
    """A query parameter a client must fix; the message says how."""


@dataclass(frozen=True)
class Param:
    name: str
    parse: Callable[[str, str], Any]
    default: Any = None


def text(max_len: int = 500) -> Callable[[str, str], str | None]:
    def parse(name: str, raw: str) -> str | None:
        if "\x00" in raw:
            raise BadParam(f"'{name}' must not contain NUL characters")
        if len(raw) > max_len:
            raise BadParam(f"'{name}' is {len(raw)} characters long; the limit is {max_len}")
        return raw if raw.strip() else None

    return parse


def integer(low: int, high: int = MAX_SQLITE_INT) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip(), 10)
        except ValueError:
            raise BadParam(f"'{name}' must be a whole number, got {raw[:40]!r}") from None
        if not low <= value <= high:
            raise BadParam(f"'{name}' must be between {low} and {high}, got {value}")
        return value

    return parse


def timestamp(name: str, raw: str) -> float:
    """Unix time in seconds (what `Date.now() / 1000` gives in the browser)."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise BadParam(f"'{name}' must be a unix time in seconds, got {raw[:40]!r}") from None
    if not math.isfinite(value) or not 0 <= value <= 1e11:
        raise BadParam(f"'{name}' must be a unix time in seconds between 0 and 1e11")
    return value


def choice(options: Sequence[str]) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in options:
            raise BadParam(f"'{name}' must be one of {', '.join(options)}; got {raw[:40]!r}")
        return raw

    return parse


def parse_query(arguments: Mapping[str, list[bytes]], accepted: Sequence[Param]) -> dict[str, Any]:
    """Check tornado's `request.query_arguments` against `accepted`; returns name → value."""
    by_name = {p.name: p for p in accepted}
    values = {p.name: p.default for p in accepted}
    for name, raw_values in arguments.items():
        if name in _AUTH_PARAMS or (_CACHE_BUSTER.fullmatch(name) and raw_values == [b""]):
            continue
        param = by_name.get(name)
        if param is None:
            allowed = ", ".join(sorted(by_name)) or "none"
            raise BadParam(f"unknown parameter '{name[:40]}'; accepted: {allowed}")
        if len(raw_values) != 1:
            raise BadParam(f"'{name}' was given {len(raw_values)} times; give it once")
        try:
            raw = raw_values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise BadParam(f"'{name}' is not valid UTF-8") from None
        parsed = param.parse(name, raw)
        values[name] = param.default if parsed is None else parsed
    return values
