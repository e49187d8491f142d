"""Turning a batch's input (DataFrame rows and a prompt template, or a list of prompts) into one
request per row: `FrameRows` and `ListRows` check the whole input when made and build requests a
chunk of rows at a time (`build(start, stop)`), as the run needs them.

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
DIGEST_ROWS = 16_384                  # rows hashed at a time for a run's fingerprint
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


class FrameRows:
    """A DataFrame's rows as requests, `{column}` placeholders filled from each row's cells.

    Whole-input mistakes fail when it is made; requests are built a chunk of rows at a time
    (`build(start, stop)`), so a run of a million rows never holds a million message lists."""

    def __init__(self, df, spec: PromptSpec, *, max_tokens: int, attach=None):
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
        # The cells of the `attachments=` columns go with the prompt as attachments.
        self.attach = _attachment_columns(df, attach)
        if not names and not self.attach:
            raise ValueError(
                "the prompt has no {column} placeholders, so every row would send the same request; "
                "name the column(s) to fill in, e.g. 'Summarize: {text}'. Columns: "
                + ", ".join(str(c) for c in df.columns))
        self.columns = {}
        for name in names:
            if name in df.columns:
                self.columns[name] = df[name]
            elif name not in spec.defaults:
                raise MissingColumnError(name, list(df.columns))
        self.frame = df
        self.spec = spec
        self.template = template
        self.system_template = system_template
        self.constant = {k: v for k, v in spec.defaults.items() if k not in self.columns}
        self.limit_chars = max_tokens * 4
        self.n = len(df)
        self.label = spec.name or spec.prompt

    def build(self, start: int, stop: int) -> Requests:
        """The requests of rows [start, stop): lists indexed from `start`, errors by row."""
        count = stop - start
        messages: list = [None] * count
        prompts: list = [None] * count
        errors: dict = {}
        cells = {name: column.iloc[start:stop].tolist() for name, column in self.columns.items()}
        attach = {name: column.iloc[start:stop].tolist() for name, column in self.attach.items()}
        template, system_template = self.template, self.system_template
        for j in range(count):
            values = dict(self.constant)
            bad = None
            for name, column in cells.items():
                text = cell_text(column[j])
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
            if bad is None and attach:
                attached, bad = _row_attachments(attach, j)
            if bad is not None:
                errors[start + j] = (BAD_INPUT, f"{bad}; the row was not sent")
                continue
            size = len(prompt) + (len(system) if system else 0)
            if size > self.limit_chars:
                longest = max(cells, key=lambda c: len(values[c]))
                errors[start + j] = (CONTEXT_WINDOW, _oversized(size, self.limit_chars // 4,
                                                                f"column '{longest}'"))
                continue
            prompts[j] = prompt
            messages[j] = _messages(system, prompt, attached)
        return Requests(messages, prompts, errors)

    def digest(self, h) -> None:
        """Feed what decides every row's request into hash `h`: the templates, the constant
        values and the cells of the columns they use (hashed by pandas, vectorised)."""
        import pandas as pd

        h.update(json.dumps([self.spec.prompt, self.spec.system, self.constant, self.n],
                            sort_keys=True, default=str).encode())
        for name, column in {**self.columns, **self.attach}.items():
            h.update(name.encode() + b"\0")
            # A slice at a time: pandas' hashing of text makes a few hundred bytes of scratch per
            # cell, which a whole million-row column would turn into the run's high-water mark.
            for start in range(0, self.n, DIGEST_ROWS):
                part = column.iloc[start:start + DIGEST_ROWS]
                try:
                    hashed = pd.util.hash_pandas_object(part, index=False)
                except TypeError:  # unhashable cells (lists, dicts): hashed as their text
                    hashed = pd.util.hash_pandas_object(part.map(repr), index=False)
                h.update(hashed.to_numpy().tobytes())


class ListRows:
    """A list of prompts (strings, or lists of chat messages) as requests, a chunk at a time."""

    def __init__(self, items: list, system: str | None, *, max_tokens: int):
        self.items = items
        self.system = system
        self.limit_chars = max_tokens * 4
        self.n = len(items)
        first = next((p for p in items if isinstance(p, str)), None)
        if first is None and items and isinstance(items[0], list) and items[0]:
            last = items[0][-1]
            first = last.get("content") if isinstance(last, dict) else None
        self.label = first if isinstance(first, str) else None

    def build(self, start: int, stop: int) -> Requests:
        count = stop - start
        messages: list = [None] * count
        prompts: list = [None] * count
        errors: dict = {}
        spec_system, limit_chars = self.system, self.limit_chars
        for j, item in enumerate(self.items[start:stop]):
            i = start + j
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
                errors[i] = (CONTEXT_WINDOW, _oversized(size, limit_chars // 4, "the prompt"))
                continue
            prompts[j] = prompt
            messages[j] = msgs
        return Requests(messages, prompts, errors)

    def digest(self, h) -> None:
        h.update(json.dumps([self.system, self.n], default=str).encode())
        for item in self.items:
            h.update(b"\0" + (item.encode("utf-8", "surrogatepass") if type(item) is str
                              else json.dumps(item, sort_keys=True, default=str).encode(
                                  "utf-8", "surrogatepass")))


def first_error(rows, chunk: int = 10_000) -> tuple[int, int, tuple] | None:
    """(row, number of bad rows, (kind, message) of the first) when any row cannot make a
    request, else None: a pass over the input that keeps nothing (on_error='raise')."""
    found, count = None, 0
    for start in range(0, rows.n, chunk):
        errors = rows.build(start, min(rows.n, start + chunk)).errors
        if errors:
            count += len(errors)
            if found is None:
                i = min(errors)
                found = (i, errors[i])
    return None if found is None else (found[0], count, found[1])


def from_frame(df, spec: PromptSpec, *, max_tokens: int) -> Requests:
    """Every row's request at once (small inputs; runs build theirs a chunk at a time)."""
    rows = FrameRows(df, spec, max_tokens=max_tokens)
    return rows.build(0, rows.n)


def _attachment_columns(df, attach) -> dict:
    """{column: the Series} of the `attachments=` setting (a name or a list of names)."""
    if attach is None:
        return {}
    names = [attach] if isinstance(attach, str) or not hasattr(attach, "__iter__") else list(attach)
    columns = {}
    for name in names:
        if name not in df.columns:
            raise MissingColumnError(str(name), list(df.columns))
        columns[name] = df[name]
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
    rows = ListRows(list(items), spec_system, max_tokens=max_tokens)
    return rows.build(0, rows.n)


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


__all__ = ["BAD_INPUT", "MissingColumnError", "PromptSpec", "Requests", "FrameRows", "ListRows",
           "prompt_spec", "from_frame", "from_list", "first_error", "cell_text",
           "max_prompt_tokens"]
