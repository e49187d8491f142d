"""Turning a batch's input (DataFrame rows and a prompt template, or a list of prompts) into one
request per row, before anything is sent.

Whole-input mistakes (a placeholder naming a column that does not exist, a prompt without
placeholders) fail here with a message that says how to fix them. A bad cell (missing value,
empty text, an oversized prompt) fails only its row: that row becomes an error and the rest of
the batch runs.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass, field

from .. import placeholders
from ..errors import CONTEXT_WINDOW

BAD_INPUT = "bad_input"          # error kind of a row whose cells cannot make a prompt
DEFAULT_MAX_PROMPT_TOKENS = 100_000   # when the model's context window is unknown
_TEMPLATE_REF = re.compile(r"^[\w.-]+(@\d+)?$")


class MissingColumnError(placeholders.PlaceholderError, KeyError):
    """The prompt names a column the DataFrame does not have."""

    def __init__(self, name: str, columns: list, *, series: bool = False):
        self.name = name
        self.columns = columns
        shown = [str(c) for c in columns]
        close = difflib.get_close_matches(name, shown, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        if series:
            placeholders_ = " or ".join(f"{{{c}}}" for c in shown)
            message = (f"the prompt uses {{{name}}} but a Series fills only {placeholders_}{hint}: "
                       "write each value as {value}")
        else:
            listed = ", ".join(shown[:30]) + (f", … ({len(shown) - 30} more)" if len(shown) > 30 else "")
            message = (f"the prompt uses {{{name}}} but the DataFrame has no column '{name}'{hint}. "
                       f"Its columns are: {listed or '(none)'}")
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


@dataclass
class PromptSpec:
    """What to send for every row: the prompt template and the settings that go with it."""
    prompt: str                       # template text (placeholders) or a plain prompt
    system: str | None = None         # may hold placeholders too (saved templates)
    model: str | None = None
    options: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)   # values for variables no column provides
    name: str | None = None           # the saved template's ref, if one was used


@dataclass
class Requests:
    """One request per input row: messages (None for a row that failed here) and its error."""
    messages: list
    prompts: list
    errors: dict                      # row -> (kind, message)


def prompt_spec(session, prompt, *, system: str | None, model: str | None, options: dict) -> PromptSpec:
    """Accept a prompt string, a saved template object, or a saved template's name."""
    template = None
    if isinstance(prompt, str):
        template = _saved_template(session, prompt)
    elif hasattr(prompt, "prompt") and isinstance(getattr(prompt, "prompt"), str):
        template = prompt
    else:
        raise TypeError(f"prompt must be a string with {{column}} placeholders or a saved template, "
                        f"not {type(prompt).__name__}")
    if template is None:
        return PromptSpec(prompt=prompt, system=system, model=model, options=dict(options))
    merged = dict(getattr(template, "options", None) or {})
    merged.update(options)
    return PromptSpec(prompt=template.prompt,
                      system=system if system is not None else getattr(template, "system", None),
                      model=model or getattr(template, "model", None), options=merged,
                      defaults=dict(getattr(template, "defaults", None) or {}),
                      name=getattr(template, "ref", None) or getattr(template, "name", None))


def _saved_template(session, text: str):
    """The saved template `text` names (e.g. "summarize" or "summarize@2"), if there is one."""
    if not _TEMPLATE_REF.match(text):
        return None
    from ..templates import TemplateError, TemplateNotFound
    from ..templates.template import check_name

    try:
        check_name(text.partition("@")[0])
    except TemplateError:  # not a template's name after all: a one-word prompt
        return None
    try:
        return session.templates.get(text)
    except TemplateNotFound:  # no such template: it is a plain prompt
        return None
    # Any other TemplateError is raised: a saved template that may not be used (one carrying a
    # server's address, say) must not silently become the prompt "its name".


def max_prompt_tokens(route) -> int:
    from .. import pricing

    if route.kind == "local":
        from ..providers import local

        return getattr(local, "CONTEXT_WINDOW", 2048)
    return pricing.context_window(route.model) or DEFAULT_MAX_PROMPT_TOKENS


def from_frame(df, spec: PromptSpec, *, max_tokens: int, attach: list | None = None) -> Requests:
    """One request per DataFrame row, filling `{column}` placeholders from that row's cells;
    the cells of the `attach` columns go with the prompt as attachments."""
    try:
        template = placeholders.parse(spec.prompt)
        system_template = placeholders.parse(spec.system) if spec.system else None
    except placeholders.PlaceholderSyntaxError as exc:
        odd = [str(c) for c in df.columns if not str(c).isidentifier()]
        if not odd or exc.kind in ("unmatched_open", "unmatched_close", "empty"):
            raise
        better = re.sub(r"\W+", "_", odd[0]).strip("_") or "column"
        raise placeholders.PlaceholderSyntaxError(
            f"{exc.message}. A placeholder names a column with letters, digits and _ only: "
            f"rename {odd[0]!r} first, e.g. df.rename(columns={{{odd[0]!r}: {better!r}}})",
            exc.line, exc.column, exc.kind) from None
    names = list(template.variables)
    if system_template is not None:
        names += [v for v in system_template.variables if v not in names]
    attach_columns = _attachment_columns(df, attach)
    if not names and not attach_columns:
        raise ValueError(
            "the prompt has no {column} placeholders, so every row would send the same request; "
            "name the column(s) to fill in, e.g. 'Summarize: {text}'. Columns: "
            + ", ".join(str(c) for c in df.columns))
    columns = {}
    for name in names:
        if name in df.columns:
            columns[name] = df[name].tolist()
        elif name not in spec.defaults:
            raise MissingColumnError(name, list(df.columns))
    n = len(df)
    messages: list = [None] * n
    prompts: list = [None] * n
    errors: dict = {}
    constant = {k: v for k, v in spec.defaults.items() if k not in columns}
    limit_chars = max_tokens * 4
    for i in range(n):
        values = dict(constant)
        bad = None
        for name, column in columns.items():
            text = cell_text(column[i])
            if type(text) is not str:
                bad = f"column '{name}' {text.reason}"
                break
            values[name] = text
        if bad is None:
            try:
                prompt = template.render(values)
                system = system_template.render(values) if system_template is not None else None
            except placeholders.PlaceholderError as exc:
                bad = str(exc)
        attached = []
        if bad is None and attach_columns:
            attached, bad = _row_attachments(attach_columns, i)
        if bad is not None:
            errors[i] = (BAD_INPUT, f"{bad}; the row was not sent")
            continue
        size = len(prompt) + (len(system) if system else 0)
        if size > limit_chars:
            longest = max(columns, key=lambda c: len(values[c]))
            errors[i] = (CONTEXT_WINDOW, _oversized(size, max_tokens, f"column '{longest}'"))
            continue
        prompts[i] = prompt
        messages[i] = _messages(system, prompt, attached)
    return Requests(messages, prompts, errors)


def _attachment_columns(df, attach) -> dict:
    """{column: its cells} of the `attachments=` setting (a name or a list of names)."""
    if attach is None:
        return {}
    names = [attach] if isinstance(attach, str) or not hasattr(attach, "__iter__") else list(attach)
    columns = {}
    for name in names:
        if name not in df.columns:
            raise MissingColumnError(str(name), list(df.columns))
        columns[name] = df[name].tolist()
    return columns


def _row_attachments(columns: dict, i: int) -> tuple[list, str | None]:
    """Row i's attachments, or why the row cannot be sent (a missing cell, an unreadable or
    unsupported file: only that row fails)."""
    from ..attachments import load
    from ..errors import AttachmentError

    found = []
    for name, cells in columns.items():
        cell = cells[i]
        if cell is None or (isinstance(cell, float) and math.isnan(cell)) or _is_missing_scalar(cell):
            return [], f"attachment column '{name}' is missing (None/NaN)"
        try:
            found.append(load(cell))
        except AttachmentError as exc:
            return [], f"attachment column '{name}': {exc.message}"
    return found, None


def from_list(items, spec_system: str | None, *, max_tokens: int) -> Requests:
    """One request per prompt of a list (a string, or a list of chat messages)."""
    n = len(items)
    messages: list = [None] * n
    prompts: list = [None] * n
    errors: dict = {}
    limit_chars = max_tokens * 4
    for i, item in enumerate(items):
        if isinstance(item, list) and item and all(isinstance(m, dict) and "role" in m for m in item):
            msgs = list(item)
            if spec_system and not any(m.get("role") == "system" for m in msgs):
                msgs.insert(0, {"role": "system", "content": spec_system})
            last = msgs[-1].get("content")
            prompt = last if isinstance(last, str) else json.dumps(last, default=str)
        else:
            text = cell_text(item)
            if type(text) is not str:
                errors[i] = (BAD_INPUT, f"the prompt {text.reason}; the row was not sent")
                continue
            prompt = text
            msgs = _messages(spec_system, text)
        size = sum(len(str(m.get("content") or "")) for m in msgs)
        if size > limit_chars:
            errors[i] = (CONTEXT_WINDOW, _oversized(size, max_tokens, "the prompt"))
            continue
        prompts[i] = prompt
        messages[i] = msgs
    return Requests(messages, prompts, errors)


def _messages(system: str | None, prompt: str, attached: list = ()) -> list[dict]:
    if attached:
        from ..attachments import user_content

        user = {"role": "user", "content": user_content(prompt, attached)}
    else:
        user = {"role": "user", "content": prompt}
    if system:
        return [{"role": "system", "content": system}, user]
    return [user]


def _oversized(chars: int, max_tokens: int, what: str) -> str:
    return (f"the prompt is about {chars // 4:,} tokens, more than "
            f"the {max_tokens:,} the model accepts; shorten {what} (e.g. df[col].str[:{max_tokens * 2}]); "
            "the row was not sent")


class BadCell:
    """Why a cell cannot go into a prompt (returned, not raised: it fails only its row)."""
    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


_MISSING = BadCell("is missing (None/NaN)")
_EMPTY = BadCell("is empty")


def cell_text(value):
    """A cell as prompt text, or a BadCell saying why it cannot be one."""
    if type(value) is str:
        return value if value.strip() else _EMPTY
    if value is None:
        return _MISSING
    if isinstance(value, float):
        if math.isnan(value):
            return _MISSING
        return str(value)
    if isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, str):  # str subclasses
        return str(value) if value.strip() else _EMPTY
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
        return text if text.strip() else _EMPTY
    if _is_missing_scalar(value):
        return _MISSING
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    if hasattr(value, "item") and not hasattr(value, "__len__"):  # numpy scalars
        return cell_text(value.item())
    if hasattr(value, "tolist"):  # numpy arrays
        return json.dumps(value.tolist(), ensure_ascii=False, default=str)
    return str(value)


def _is_missing_scalar(value) -> bool:
    import pandas as pd

    try:
        return value is pd.NA or value is pd.NaT or bool(pd.isna(value)) is True
    except (TypeError, ValueError):
        return False


__all__ = ["BAD_INPUT", "MissingColumnError", "PromptSpec", "Requests",
           "prompt_spec", "from_frame", "from_list", "cell_text", "max_prompt_tokens"]
