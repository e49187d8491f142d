"""Running a workflow: each step in turn over the DataFrame, skipping steps that ran on this input.

    1. Everything that can fail before a request is sent fails first: the steps' templates,
       models (resolved in this kernel) and Python functions are looked up, and each prompt's
       {column} placeholders are checked against the columns the DataFrame will have at its step
       (as far as the first Python step, after which columns are the function's to decide).
    2. For each step, its key (keys.py) is looked up among the results of earlier runs
       (results.py); a hit is applied without running the step. Otherwise the step runs: an LLM
       step or judgement through the batch engine (batching.py, judge.py), a Python step or
       predicate in this thread. A step whose every row got an answer is kept for next time; a
       step with failed rows is not, so the next run tries those rows again (the batch cache
       answers the others without sending them).

Events (`on_event`): {"type": "start" | "progress" | "done", "index", ...} for progress displays.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Callable
from typing import Any

from .. import placeholders
from . import functions, judge, keys, results
from .errors import WorkflowError
from .steps import Step, output_columns, schema_columns

# Settings a run passes to every LLM step (the batch engine's; see batch/settings.py).
RUN_SETTINGS = frozenset({"model", "concurrency", "rpm", "tpm", "cache", "on_error", "budget",
                          "progress", "deadline", "timeout", "max_retries"})
_JUDGE = {"schema": judge.ANSWER_SCHEMA, "instruction": judge.INSTRUCTION}


@dataclasses.dataclass
class StepReport:
    """What one step did in a run."""
    step: str
    kind: str
    status: str = "pending"        # ran | skipped (same definition and input as before) | failed
    rows_in: int = 0
    rows_out: int = 0
    requests: int = 0              # sent to a provider
    cached: int = 0                # answered by the log's cache or the notebook's recordings
    errors: int = 0                # rows without an answer
    cost: float = 0.0
    job_id: str | None = None
    seconds: float = 0.0
    note: str | None = None

    def line(self, position: str = "", *, timing: bool = False) -> str:
        head = f"{position}{self.step} ({self.kind})"
        if self.status == "skipped":
            body = f"unchanged, skipped · {self.rows_out:,} rows"
        elif self.status == "failed":
            body = "failed"
        else:
            body = f"{self.rows_in:,} rows"
            if self.rows_out != self.rows_in:
                body += f" → {self.rows_out:,} kept"
            if self.job_id:
                body += f" · {self.requests:,} sent · {self.cached:,} cached · {self.errors:,} errors"
        if timing:
            body += f" · {self.seconds:.1f} s"
        if self.note:
            body += f" · {self.note}"
        return f"{head}: {body}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Resolved:
    """A step made ready to run in this kernel."""
    step: Step
    definition: dict                 # what the key covers (besides the input)
    prompt: Any = None               # text, or the saved Template it names
    variables: tuple = ()            # placeholders of prompt and system
    defaults: dict = dataclasses.field(default_factory=dict)
    settings: dict = dataclasses.field(default_factory=dict)   # model, system, options for map
    function: Callable | None = None

    def reads(self, frame) -> list | None:
        """The columns the step reads (None: all of them)."""
        if self.function is not None:
            return None
        return [v for v in self.variables if v in frame.columns]


@dataclasses.dataclass
class Outcome:
    frame: Any
    reports: list
    frames: list                     # each step's output, when collected (preview)


def resolve(session, steps: list[Step], *, default_model: str | None = None) -> list[Resolved]:
    """Every step ready to run, or the first problem as a WorkflowError naming its step."""
    return [_resolve_step(session, step, default_model) for step in steps]


def _resolve_step(session, step: Step, default_model: str | None) -> Resolved:
    where = f"step '{step.name}'"
    if step.function is not None:
        functions.lookup(step.function, step.name)
        definition = {"kind": step.kind, "function": step.function,
                      "code": functions.fingerprint(step.function)}
        return Resolved(step, definition, function=functions.lookup(step.function, step.name))
    template = None
    if step.template is not None:
        from ..templates import TemplateError

        try:
            template = session.templates.get(step.template)
        except TemplateError as exc:
            raise WorkflowError(f"{where}: {exc}") from None
    prompt_text = template.prompt if template is not None else step.prompt
    system = step.system or (template.system if template is not None else None)
    model = step.model or (template.model if template is not None else None) or default_model
    options = {**(template.options if template is not None else {}), **step.options}
    try:
        route = session.resolve(model, options)
    except Exception as exc:
        from ..errors import UserError

        if isinstance(exc, UserError):
            raise WorkflowError(f"{where}: {exc}") from None
        raise
    variables = placeholders.parse(prompt_text).variables
    if system:
        variables += [v for v in placeholders.parse(system).variables if v not in variables]
    definition = {"kind": step.kind, "prompt": prompt_text, "system": system,
                  "model": route.model, "endpoint": route.base_url or route.endpoint,
                  "options": options, "schema": step.schema,
                  "defaults": dict(template.defaults) if template is not None else {}}
    if step.kind == "filter":
        definition["judge"] = _JUDGE
    settings = {"model": model, "system": step.system, **step.options}
    if template is None:
        settings["system"] = system
    return Resolved(step, definition, prompt=template if template is not None else prompt_text,
                    variables=tuple(variables),
                    defaults=dict(template.defaults) if template is not None else {},
                    settings={k: v for k, v in settings.items() if v is not None})


def check_columns(resolved: list[Resolved], columns) -> None:
    """Each prompt's placeholders name columns the data has at its step (up to the first
    Python step); fails before anything is sent."""
    known = [str(c) for c in columns]
    for r in resolved:
        if r.step.kind == "python":
            return
        for name in r.variables:
            if name not in known and name not in r.defaults:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                listed = ", ".join(known[:30]) + (" …" if len(known) > 30 else "")
                raise WorkflowError(f"step '{r.step.name}' uses {{{name}}}, but the data has no "
                                    f"column '{name}' at that step{hint}; its columns are: "
                                    f"{listed or '(none)'}")
        known += [c for c in output_columns(r.step) if c not in known]


def execute(session, name: str, resolved: list[Resolved], frame, *, map_rows: Callable,
            settings: dict, on_event: Callable[[dict], None] | None = None,
            collect: bool = False) -> Outcome:
    """Run the resolved steps over `frame` (see the module's docstring)."""
    emit = on_event or (lambda event: None)
    budget = settings.get("budget")
    use_results = settings.get("cache", True) is not False
    reports: list[StepReport] = []
    frames: list = []
    spent = 0.0
    for index, r in enumerate(resolved):
        step = r.step
        report = StepReport(step.name, step.kind, rows_in=len(frame))
        reports.append(report)
        emit({"type": "start", "index": index, "step": step.name, "kind": step.kind,
              "rows": len(frame)})
        started = time.monotonic()
        key = keys.step_key(r.definition, keys.frame_fingerprint(frame, r.reads(frame)))
        found = results.recall(session, key, persistent=step.kind != "python") \
            if use_results else None
        try:
            if found is not None and _fits(found, frame):
                frame = _apply(r, frame, found)
                report.status = "skipped"
            else:
                run_settings = dict(settings)
                if budget is not None:
                    run_settings["budget"] = max(float(budget) - spent, 0.0)
                frame, result = _run_step(session, r, frame, report, map_rows, run_settings)
                spent += report.cost
                report.status = "ran"
                if result is not None and report.errors == 0 and use_results:
                    results.keep(session, key, result, workflow=name, step=step.name,
                                 kind=step.kind, rows=report.rows_in)
        except BaseException:
            report.status = "failed"
            report.seconds = time.monotonic() - started
            emit({"type": "done", "index": index, "report": report.to_dict()})
            raise
        report.rows_out = len(frame)
        report.seconds = time.monotonic() - started
        if collect:
            frames.append(frame)
        emit({"type": "done", "index": index, "report": report.to_dict()})
    return Outcome(frame, reports, frames)


def _run_step(session, r: Resolved, frame, report: StepReport, map_rows: Callable, settings: dict):
    """Runs one step; returns (its output, its result to keep or None)."""
    step = r.step
    if step.kind == "python":
        out = r.function(frame.copy())
        _check_frame(out, step)
        return out, out
    if step.kind == "filter" and r.function is not None:
        kept = _predicate_positions(r.function(frame.copy()), frame, step)
        return frame.iloc[kept], {"kept": kept}
    call_settings = {**settings, **r.settings}

    def rows(data, prompt, **kw):
        return map_rows(session, data, prompt, **kw)

    if step.kind == "filter":
        mask = judge.judge(frame, r.prompt, map_rows=rows, **call_settings)
        _count(report, mask.attrs.get("llm", {}))
        kept = [i for i, v in enumerate(mask.tolist()) if v is True]
        unanswered = int(mask.isna().sum())
        if unanswered:
            report.note = f"{unanswered:,} rows without a judgement left out"
        return frame.iloc[kept], {"kept": kept}
    answers = rows(frame, r.prompt, schema=step.schema, **call_settings)
    _count(report, answers.attrs.get("llm", {}))
    if step.schema is None:
        columns = {"answer": _plain(answers)}
    else:
        columns = {field: _plain(answers[field]) for field in schema_columns(step.schema)}
    result = {"columns": columns}
    return _apply(r, frame, result), result


def _count(report: StepReport, info: dict) -> None:
    report.job_id = info.get("job_id")
    report.requests = int(info.get("requests") or 0)
    report.cached = int(info.get("cached") or 0) + int(info.get("replayed") or 0)
    report.errors = int(info.get("error") or 0) + int(info.get("not_run") or 0)
    report.cost = float(info.get("cost") or 0.0)


def _plain(values) -> list:
    """A column's values as JSON values (None for missing), in row order."""
    import pandas as pd

    out = []
    for v in values.tolist():
        if v is None or (not isinstance(v, (list, dict)) and pd.isna(v)):
            out.append(None)
        elif hasattr(v, "item") and not isinstance(v, (list, dict, str)):
            out.append(v.item())
        else:
            out.append(v)
    return out


def _fits(found, frame) -> bool:
    """A kept result matches this input's rows (always, unless the log was edited by hand)."""
    if hasattr(found, "iloc"):
        return True
    if "kept" in found:
        return all(isinstance(i, int) and 0 <= i < len(frame) for i in found["kept"])
    return all(len(v) == len(frame) for v in (found.get("columns") or {}).values())


def _apply(r: Resolved, frame, found):
    """The step's output from its kept result and this input."""
    import pandas as pd

    if hasattr(found, "iloc"):
        return found
    if "kept" in found:
        return frame.iloc[list(found["kept"])]
    step = r.step
    names = output_columns(step)
    raw = list(found["columns"])
    added = pd.DataFrame({name: found["columns"][field] for name, field in zip(names, raw)},
                         index=range(len(frame))).convert_dtypes()
    if step.schema is None:
        added = added.astype("string")
    out = frame.copy()
    for name in names:
        out[name] = added[name].array
    return out


def _check_frame(out, step: Step) -> None:
    import pandas as pd

    if not isinstance(out, pd.DataFrame):
        raise WorkflowError(f"step '{step.name}': the function '{step.function}' returned "
                            f"{type(out).__name__}, not a DataFrame; a Python step takes the "
                            "DataFrame and returns one")


def _predicate_positions(result, frame, step: Step) -> list[int]:
    """The positions of the rows a predicate's answer keeps (True; False and <NA> drop)."""
    import numpy as np
    import pandas as pd

    if isinstance(result, pd.Series):
        if not result.index.equals(frame.index):
            if not result.index.is_unique or not frame.index.is_unique:
                raise WorkflowError(f"step '{step.name}': the predicate '{step.function}' returned"
                                    " a Series on another index; return one aligned to the "
                                    "DataFrame it was given (e.g. df['x'] > 3)")
            result = result.reindex(frame.index)
        values = result.tolist()
    else:
        values = list(np.asarray(result, dtype=object).ravel()) if not isinstance(result, bool) else [result]
    if len(values) != len(frame):
        raise WorkflowError(f"step '{step.name}': the predicate '{step.function}' returned "
                            f"{len(values)} values for {len(frame)} rows; return one True/False "
                            "per row (e.g. df['x'] > 3)")
    for value in values:
        if not (isinstance(value, (bool, np.bool_)) or value is None or value is pd.NA):
            raise WorkflowError(f"step '{step.name}': the predicate '{step.function}' returned "
                                f"{value!r} for a row, not True/False; return a boolean Series "
                                "(e.g. df['x'] > 3)")
    return [i for i, value in enumerate(values)
            if value is not None and value is not pd.NA and bool(value)]
