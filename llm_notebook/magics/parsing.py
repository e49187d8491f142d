"""Argument parsing shared by `%%llm` and the `%llm` subcommands.

IPython's `@magic_arguments` builds the parsers (so `%llm?` shows their help). On top of it:
`--help`/`-h` print the help instead of failing, a parse error becomes a one-line UsageError
that ends with the command's usage, and `key=value` pairs are read with JSON values.
"""

from __future__ import annotations

import json
import re

from IPython.core.error import UsageError
from IPython.utils.process import arg_split

_HELP_FLAGS = {"-h", "--help"}
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def split(line: str) -> list[str]:
    # POSIX rules, as in a shell: -s 'Be terse.' gives "Be terse." without the quotes
    # (IPython's parse_argstring keeps them).
    try:
        return arg_split(line, posix=True)
    except ValueError as exc:  # shlex: an unclosed quote
        raise UsageError(f"cannot read the arguments ({exc}); check the quotes") from None


def wants_help(line: str) -> bool:
    return any(token in _HELP_FLAGS for token in split(line))


def usage_line(spec) -> str:
    """The command's usage on one line, e.g. `%llm history [-q TEXT] [-n N]`."""
    text = spec.parser.format_usage()
    text = text.replace("::", "", 1)  # MagicHelpFormatter's reST prefix
    return " ".join(text.split())


def help_text(spec) -> str:
    return spec.parser.format_help().replace("::\n\n  ", "Usage: ", 1)


def parse(spec, line: str):
    """Parsed arguments for `spec` (a @magic_arguments function), or None if help was shown."""
    if wants_help(line):
        print(help_text(spec))
        return None
    try:
        return spec.parser.parse_args(split(line))
    except UsageError as exc:
        message = str(exc).rstrip(".")
        raise UsageError(f"{message}. Usage: {usage_line(spec)} (add --help for details)") from None


def key_values(pairs: list[str] | None, flag: str, *, json_values: bool = True) -> dict:
    """`["top_p=0.9", "api_base=http://x"]` → `{"top_p": 0.9, "api_base": "http://x"}`.

    With `json_values`, a value that parses as JSON (numbers, true/false/null, lists, objects,
    quoted strings) is used as such; anything else is kept as a string.
    """
    out: dict = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise UsageError(f"{flag} takes key=value (e.g. {flag} top_p=0.9), got {pair!r}")
        out[key] = _value(raw) if json_values else raw
    return out


def _value(raw: str):
    try:
        return json.loads(raw)
    except ValueError:
        return raw
