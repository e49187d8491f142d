"""What a comparison asks: prompts × models × inputs turned into cells, before anything is sent.

Whole-grid mistakes (an unknown model, a placeholder no input column fills, an empty input)
fail here with a message that says how to fix them. A bad value in one input row fails only the
cells of that row: they show the reason and the rest of the grid runs.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .. import placeholders
from ..batch import inputs as batch_inputs
from ..errors import UserError
from ..cache import _NOT_SEMANTIC

BAD_INPUT = batch_inputs.BAD_INPUT
MAX_SHOWN_CHARS = 500     # input values shown in the widget's row labels


class MissingInputError(UserError, KeyError):
    """A prompt names a placeholder that no input column (nor a template default) fills."""

    def __init__(self, label: str, name: str, columns: list[str]):
        close = difflib.get_close_matches(name, columns, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        super().__init__(f"the prompt {_short(label)!r} uses {{{name}}} but the inputs have no "
                         f"column '{name}'{hint}; input columns: {', '.join(columns) or '(none)'}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


@dataclass(frozen=True)
class PromptDef:
    """One prompt of the grid: its label and what every cell of it sends."""
    label: str
    template: str                      # prompt text, with {column} placeholders
    system: str | None = None          # may hold placeholders too (saved templates)
    options: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    ref: str | None = None             # the saved template's name@version, if one was used


@dataclass
class Cell:
    """One prompt × model × input: its request, then its result, checks and rating."""
    index: int
    input_index: int
    prompt_index: int
    model_index: int
    model: str
    messages: list | None              # None: the input row could not fill the prompt
    options: dict
    key: str                           # stable across grids: ratings are saved under it
    bad: str | None = None             # why the cell could not be sent
    status: str = "pending"            # pending | ok | error
    output: str | None = None
    error: str | None = None
    error_kind: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    latency: float | None = None       # seconds
    cached: bool = False
    call_id: int | None = None
    checks: dict = field(default_factory=dict)   # check name -> (passed or None, reason)
    thumb: int | None = None           # 1 up, -1 down
    score: float | None = None         # 0..1
    comment: str | None = None
    version: int = 0                   # bumped on every change; the front-end keeps the newest

    @property
    def prompt_text(self) -> str:
        if not self.messages:
            return ""
        content = self.messages[-1].get("content")
        return content if isinstance(content, str) else json.dumps(content, default=str)

    def reset_result(self) -> None:
        self.status = "pending"
        self.output = self.error = self.error_kind = None
        self.input_tokens = self.output_tokens = self.cost = self.latency = self.call_id = None
        self.cached = False
        self.checks = {}
        self.version += 1


@dataclass
class Plan:
    prompts: list[PromptDef]
    models: list[str]
    columns: list[str]                 # input column names
    rows: list[dict]                   # input rows (column -> value)
    cells: list[Cell]
    has_inputs: bool

    def index(self, input_index: int, prompt_index: int, model_index: int) -> int:
        return (input_index * len(self.prompts) + prompt_index) * len(self.models) + model_index


def build(session, prompts, models, inputs, *, system: str | None, options: dict) -> Plan:
    prompt_defs = _prompt_defs(session, prompts, system, options)
    model_list = _models(session, models, options)
    columns, rows, has_inputs = input_rows(inputs)
    for p in prompt_defs:
        _check_variables(p, columns, has_inputs)
    cells: list[Cell] = []
    for i, row in enumerate(rows):
        for pi, p in enumerate(prompt_defs):
            messages, bad = _messages(p, row)
            for mi, model in enumerate(model_list):
                key = (cell_key(model, messages, p.options) if messages is not None
                       else _bad_cell_key(model, p, row))
                cell = Cell(index=len(cells), input_index=i, prompt_index=pi, model_index=mi,
                            model=model, messages=messages, options=p.options, key=key, bad=bad)
                if bad is not None:
                    cell.status, cell.error_kind, cell.error = "error", BAD_INPUT, bad
                cells.append(cell)
    return Plan(prompt_defs, model_list, columns, rows, cells, has_inputs)


def cell_key(model: str, messages: list, options: dict) -> str:
    """The key a cell's rating is saved under: its model (as the user named it), messages and
    the options that change the answer. Unlike the cache key it leaves out the endpoint URL, so
    a local server that moved to another port keeps its ratings."""
    semantic = {k: v for k, v in options.items() if k not in _NOT_SEMANTIC and v is not None}
    payload = json.dumps({"model": model, "messages": messages, "options": semantic},
                         sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(b"compare-cell\0" + payload.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _bad_cell_key(model: str, prompt: PromptDef, row: dict) -> str:
    payload = json.dumps({"model": model, "template": prompt.template, "row": row},
                         sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(b"compare-bad\0" + payload.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# -- prompts ------------------------------------------------------------------------------------

def _prompt_defs(session, prompts, system: str | None, options: dict) -> list[PromptDef]:
    if isinstance(prompts, dict):
        items = [(str(label), p) for label, p in prompts.items()]
    elif isinstance(prompts, str) or hasattr(prompts, "prompt"):
        items = [(None, prompts)]
    elif isinstance(prompts, (list, tuple)):
        items = [(None, p) for p in prompts]
    else:
        raise TypeError("prompts must be a prompt string, a saved template's name, a list of "
                        f"them, or a dict of label -> prompt; not {type(prompts).__name__}")
    if not items:
        raise ValueError("prompts is empty; give at least one prompt, e.g. compare('Capital of "
                         "{country}?', models=[...], inputs=[{'country': 'France'}])")
    defs: list[PromptDef] = []
    for n, (label, prompt) in enumerate(items):
        if isinstance(prompt, str) and not prompt.strip():
            raise ValueError(f"prompt {n + 1} is empty; write something to send")
        spec = batch_inputs.prompt_spec(session, prompt, system=system, model=None, options=options)
        for text, what in ((spec.prompt, "prompt"), (spec.system, "system text")):
            if text:
                try:
                    placeholders.parse(text)
                except placeholders.PlaceholderError as exc:
                    raise ValueError(f"prompt {n + 1}: its {what} has a placeholder error: {exc}; "
                                     "write literal braces as {{ and }}") from None
        defs.append(PromptDef(label=label or spec.name or spec.prompt, template=spec.prompt,
                              system=spec.system, options=dict(spec.options),
                              defaults=dict(spec.defaults), ref=spec.name))
    return defs


def _models(session, models, options: dict) -> list[str]:
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, (list, tuple)) or not models:
        raise ValueError("models must be a non-empty list of model ids, e.g. "
                         "['openai/gpt-4o-mini', 'local/smollm2']")
    out = []
    for m in models:
        if not isinstance(m, str) or not m.strip():
            raise ValueError(f"each model must be a model id string, got {m!r}")
        session.resolve(m, options)  # an unknown model or a missing key fails here, before any call
        out.append(m)
    return out


# -- inputs -------------------------------------------------------------------------------------

def input_rows(inputs) -> tuple[list[str], list[dict], bool]:
    """(column names, rows, whether inputs were given) from a DataFrame, a list of dicts (or of
    plain values, which become the column `input`), a dict of equal-length lists, or None."""
    if inputs is None:
        return [], [{}], False
    if hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):  # a DataFrame
        columns = [str(c) for c in inputs.columns]
        if len(set(columns)) != len(columns):
            raise ValueError("inputs has duplicate column names; rename them so each "
                             "placeholder names one column")
        rows = [{str(k): v for k, v in r.items()} for r in inputs.to_dict("records")]
    elif isinstance(inputs, dict):
        lengths = {len(v) for v in inputs.values() if isinstance(v, (list, tuple))}
        if len(lengths) != 1 or not all(isinstance(v, (list, tuple)) for v in inputs.values()):
            raise ValueError("inputs as a dict must map each column to a list of values, all of "
                             "the same length, e.g. {'country': ['France', 'Italy']}")
        columns = [str(c) for c in inputs]
        n = lengths.pop()
        rows = [{str(c): inputs[c][i] for c in inputs} for i in range(n)]
    elif isinstance(inputs, (list, tuple)):
        if all(isinstance(r, dict) for r in inputs):
            rows = [{str(k): v for k, v in r.items()} for r in inputs]
            columns = list(dict.fromkeys(k for r in rows for k in r))
        elif not any(isinstance(r, dict) for r in inputs):
            rows = [{"input": r} for r in inputs]
            columns = ["input"]
        else:
            raise TypeError("inputs mixes dicts and plain values; make every row a dict, e.g. "
                            "[{'text': ...}, {'text': ...}]")
    else:
        raise TypeError("inputs must be a DataFrame, a list of dicts, a list of values, or None; "
                        f"not {type(inputs).__name__}")
    if not rows:
        raise ValueError("inputs has no rows; give at least one, or inputs=None to send each "
                         "prompt once")
    return columns, rows, True


def _variables(p: PromptDef) -> list[str]:
    names = placeholders.parse(p.template).variables
    if p.system:
        names += [v for v in placeholders.parse(p.system).variables if v not in names]
    return names


def _check_variables(p: PromptDef, columns: list[str], has_inputs: bool) -> None:
    names = _variables(p)
    unfilled = [n for n in names if n not in columns and n not in p.defaults]
    if unfilled and not has_inputs:
        example = ", ".join(f"'{n}': ..." for n in unfilled)
        raise ValueError(f"the prompt {_short(p.label)!r} uses {{{unfilled[0]}}} but no inputs "
                         f"were given; pass inputs=[{{{example}}}, ...] (one dict per test case)")
    if unfilled:
        raise MissingInputError(p.label, unfilled[0], columns)
    if has_inputs and not names:
        raise ValueError(f"the prompt {_short(p.label)!r} has no {{column}} placeholders, so every "
                         "input row would send the same request; name the input column(s) to "
                         "fill in, e.g. 'Summarize: {text}'. Input columns: " + ", ".join(columns))


def _messages(p: PromptDef, row: dict) -> tuple[list | None, str | None]:
    values = dict(p.defaults)
    for name in _variables(p):
        if name in row:
            value = row[name]
            # Unlike a batch prompt, a value filling part of a prompt may be empty on purpose.
            text = value if isinstance(value, str) else batch_inputs.cell_text(value)
            if not isinstance(text, str):
                return None, f"input column '{name}' {text.reason}; the cell was not sent"
            values[name] = text
    try:
        prompt = placeholders.parse(p.template).render(values)
        system = placeholders.parse(p.system).render(values) if p.system else None
    except placeholders.PlaceholderError as exc:
        return None, f"{exc}; the cell was not sent"
    messages = [{"role": "user", "content": prompt}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages, None


def shown(value: Any) -> str:
    """An input value as the widget shows it in a row label (cut to MAX_SHOWN_CHARS)."""
    text = batch_inputs.cell_text(value)
    text = text if type(text) is str else ""
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS - 1] + "…"


def _short(text: str, n: int = 60) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= n else flat[:n - 1] + "…"
