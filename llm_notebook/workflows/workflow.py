"""`Workflow`: an ordered list of steps over a DataFrame, built in Python, run, previewed, saved.

    wf = (Workflow("tickets")
          .llm("Extract the customer and the issue from: {ticket}", schema=Ticket, name="extract")
          .llm("Classify as billing, bug or other: {issue}", output="category")
          .filter("Is this issue urgent? {issue}", name="urgent")
          .python(add_due_date))
    out = wf.run(df)            # df with the new columns, only the rows the filters kept
    wf.preview(df, n=3)         # the same on three rows, each step's columns side by side
    wf.save(message="first")    # a new version in the log; session.workflows.get("tickets")

Each step's result is kept by a key of its definition and its input (keys.py): running again
skips every unchanged step; after an edit of step 2, steps 2..n run (and their LLM rows that
did not change are answered by the cache).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from . import engine, functions
from .errors import WorkflowError
from .steps import Step, check_name


class Workflow:
    """A workflow's name, description and steps; `version` is the saved version it was loaded
    from or saved as (None once edited)."""

    def __init__(self, name: str | None = None, steps: Iterable[Step | dict] = (), *,
                 description: str | None = None):
        self.name = check_name(name, "workflow") if name is not None else None
        self.description = _description(description)
        self.steps: list[Step] = []
        for step in steps:
            self.add(step if isinstance(step, Step) else Step.from_dict(step))
        self.version: int | None = None
        self.tags: tuple[str, ...] = ()
        self.message: str | None = None
        self.created: datetime | None = None

    # -- building ------------------------------------------------------------------------------

    def llm(self, prompt: str | None = None, *, name: str | None = None,
            template: str | None = None, system: str | None = None, model: str | None = None,
            schema: Any = None, output: str | dict | None = None, **options) -> "Workflow":
        """Add an LLM step: `prompt` (or a saved `template`) sent once per row; the answers go to
        the column `output` (default: the step's name), or with a JSON `schema` (dict or pydantic
        model) to one column per field (`output={'field': 'column'}` renames them). `options` are
        generation options (max_tokens, temperature, ...)."""
        default = output if isinstance(output, str) else None
        return self.add(Step(name=name or self._free_name(default or "llm"), kind="llm",
                             prompt=prompt, template=template, system=system, model=model,
                             options=options, schema=schema, output=output))

    def filter(self, condition: str | Callable | None = None, *, name: str | None = None,
               template: str | None = None, system: str | None = None, model: str | None = None,
               **options) -> "Workflow":
        """Add a filter: keep the rows where the model answers yes to `condition` (a prompt with
        {column} placeholders, or a saved `template`), or where a Python predicate returns True
        (`condition` a function DataFrame -> boolean Series, registered by its name)."""
        if callable(condition):
            if system or model or options or template:
                raise WorkflowError("a Python predicate takes no system, model, template or options")
            step_name = name or self._free_name(_own_name(condition) or "filter")
            return self.add(Step(name=step_name, kind="filter",
                                 function=functions.adopt(condition, step_name)))
        return self.add(Step(name=name or self._free_name("filter"), kind="filter",
                             prompt=condition, template=template, system=system, model=model,
                             options=options))

    def python(self, function: Callable | str, *, name: str | None = None) -> "Workflow":
        """Add a Python step: `function(DataFrame) -> DataFrame`, a function (registered under
        its name) or the name of one registered with llm_notebook.workflows.register."""
        if callable(function):
            step_name = name or self._free_name(_own_name(function) or "python")
            registered = functions.adopt(function, step_name)
        else:
            registered = function
            step_name = name or self._free_name(str(function))
        return self.add(Step(name=step_name, kind="python", function=registered))

    def add(self, step: Step, position: int | None = None) -> "Workflow":
        """Insert a Step (at the end, or at `position`)."""
        if not isinstance(step, Step):
            raise WorkflowError(f"add() takes a Step, not {type(step).__name__}")
        if step.name in self.names():
            raise WorkflowError(f"the workflow already has a step named '{step.name}'; step "
                                "names are unique (they name columns, results and errors)")
        self.steps.insert(len(self.steps) if position is None else position, step)
        self._edited()
        return self

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise WorkflowError(f"no step named '{name}'; the steps are: "
                            f"{', '.join(self.names()) or '(none)'}")

    def edit(self, name: str, **changes) -> "Workflow":
        """Change fields of a step (prompt, model, schema, ...) or its generation options, as
        given to .llm(): `wf.edit("classify", prompt=..., max_tokens=8)`."""
        from .steps import KEYS

        index = self.steps.index(self.step(name))
        options = {k: changes.pop(k) for k in list(changes) if k not in KEYS}
        if options:
            changes["options"] = {**(changes.get("options") or self.steps[index].options), **options}
        if "name" in changes and changes["name"] != name and changes["name"] in self.names():
            raise WorkflowError(f"the workflow already has a step named '{changes['name']}'")
        self.steps[index] = self.steps[index].replace(**changes)
        self._edited()
        return self

    def remove(self, name: str) -> "Workflow":
        self.steps.remove(self.step(name))
        self._edited()
        return self

    def move(self, name: str, position: int) -> "Workflow":
        """Move a step to `position` (0 is first)."""
        step = self.step(name)
        self.steps.remove(step)
        self.steps.insert(max(0, min(int(position), len(self.steps))), step)
        self._edited()
        return self

    def names(self) -> list[str]:
        return [step.name for step in self.steps]

    # -- running -------------------------------------------------------------------------------

    def run(self, data, *, session=None, progress=None, **settings):
        """Run every step over `data` (a DataFrame); returns it with the new columns and only the
        rows the filters kept. `.attrs["workflow"]` says what each step did.

        settings (for every LLM step): model (for steps that name none), concurrency, rpm,
        tpm, cache (False runs every step and row again), on_error, budget (USD for the whole
        run), deadline, timeout, max_retries; progress: None (auto), True, False, "widget",
        "text"."""
        from .progress import reporter

        outcome, frame = self.execute(data, session=session, settings=settings,
                                      on_event=reporter(progress, len(self.steps)),
                                      progress=progress)
        out = outcome.frame
        out.attrs = {**out.attrs, "workflow": self._info(outcome.reports, frame)}
        return out

    def preview(self, data, n: int = 3, *, session=None, progress=False, **settings):
        """Run on the first `n` rows; returns a WorkflowPreview with each step's columns side
        by side (`.result`, `.outputs[step]`, `.table`)."""
        from .progress import reporter

        return self.execute(data, session=session, settings=settings, preview_rows=n,
                            on_event=reporter(progress, len(self.steps)), progress=progress)[0]

    def execute(self, data, *, session=None, settings: dict | None = None, progress=False,
                on_event=None, map_rows=None, preview_rows: int | None = None):
        """What run and preview share (the builder widget calls it with its own `map_rows`,
        one it can stop, and `on_event` for per-step progress). Returns (engine Outcome, the
        input frame), or with `preview_rows` (a WorkflowPreview, the sample)."""
        from . import batching
        from .preview import WorkflowPreview

        if preview_rows is not None and (isinstance(preview_rows, bool)
                                         or not isinstance(preview_rows, int) or preview_rows < 1):
            raise WorkflowError(f"n is how many rows to preview, a whole number >= 1; "
                                f"got {preview_rows!r}")
        s, frame, settings, default_model = self._prepare(data, session, dict(settings or {}))
        if preview_rows is not None:
            frame = frame.head(preview_rows)
            if not frame.index.is_unique:
                frame = frame.reset_index(drop=True)
        resolved = engine.resolve(s, self.steps, default_model=default_model)
        engine.check_columns(resolved, frame.columns)
        outcome = engine.execute(s, self.name or "workflow", resolved, frame,
                                 map_rows=map_rows or batching.map_rows,
                                 settings={**settings, "progress": progress},
                                 on_event=on_event, collect=preview_rows is not None)
        if preview_rows is None:
            return outcome, frame
        return WorkflowPreview(frame, self.steps, outcome.frames, outcome.reports,
                               reads(resolved, frame)), frame

    def _prepare(self, data, session, settings: dict):
        import pandas as pd

        from ..session import session as default_session

        if not self.steps:
            raise WorkflowError("the workflow has no steps yet: add some with .llm(...), "
                                ".filter(...) or .python(...)")
        if not isinstance(data, pd.DataFrame):
            raise WorkflowError(f"a workflow runs over a DataFrame, not {type(data).__name__}; "
                                "for a CSV file: pd.read_csv(path)")
        if not data.columns.is_unique:
            twice = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
            raise WorkflowError(f"the DataFrame has more than one column named "
                                f"{', '.join(twice)}; rename them first")
        unknown = set(settings) - engine.RUN_SETTINGS
        if unknown:
            raise WorkflowError(f"unknown setting(s) {', '.join(sorted(unknown))} for a run; a "
                                f"run takes {', '.join(sorted(engine.RUN_SETTINGS))} (a step's "
                                "generation options belong to the step)")
        settings = dict(settings)
        settings.pop("progress", None)
        return session or default_session(), data, settings, settings.pop("model", None)

    def _info(self, reports, frame) -> dict:
        return {"name": self.name, "version": self.version, "rows_in": len(frame),
                "rows_out": reports[-1].rows_out if reports else len(frame),
                "steps": [r.to_dict() for r in reports]}

    # -- saving ---------------------------------------------------------------------------------

    def save(self, *, message: str | None = None, tags: Iterable[str] | str | None = None,
             session=None) -> "Workflow":
        """Save a new version in the log (session.workflows.save); returns this workflow, with
        its new version."""
        from ..session import session as default_session

        saved = (session or default_session()).workflows.save(self, message=message, tags=tags)
        self.version, self.created, self.tags, self.message = (saved.version, saved.created,
                                                               saved.tags, saved.message)
        return self

    def content(self) -> dict:
        """What a save stores: name, description, steps (as data), tags, message."""
        return {"name": self.name, "description": self.description,
                "steps": [step.to_dict() for step in self.steps], "tags": list(self.tags),
                "message": self.message}

    def to_dict(self) -> dict:
        out = self.content()
        out["version"] = self.version
        out["created"] = self.created.isoformat() if self.created else None
        return out

    @classmethod
    def from_row(cls, row: dict) -> "Workflow":
        """A saved version (a row of store.py), checked as any step is."""
        wf = cls(row["name"], [Step.from_dict(s, f"step {i} of workflow '{row['name']}'")
                               for i, s in enumerate(row["steps"], 1)],
                 description=row.get("description"))
        wf.version = row.get("version")
        wf.tags = tuple(row.get("tags") or ())
        wf.message = row.get("message")
        created = row.get("created")
        wf.created = datetime.fromtimestamp(created, tz=UTC) if isinstance(created, (int, float)) \
            else created
        return wf

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}" if self.version else str(self.name)

    # -- helpers -------------------------------------------------------------------------------

    def _edited(self) -> None:
        self.version = None
        self.created = None

    def _free_name(self, base: str) -> str:
        import re

        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("_.-")[:90] or "step"
        taken = set(self.names())
        if base not in taken:
            return base
        n = 2
        while f"{base}_{n}" in taken:
            n += 1
        return f"{base}_{n}"

    def __repr__(self) -> str:
        steps = ", ".join(f"{s.name} ({s.kind})" for s in self.steps) or "no steps"
        return f"<Workflow {self.ref if self.name else '(unnamed)'}: {steps}>"

    def _repr_html_(self) -> str:
        items = "".join(f"<li><b>{html.escape(s.name)}</b> ({s.kind}): "
                        f"{html.escape(_summary(s))}</li>" for s in self.steps)
        title = html.escape(self.ref if self.name else "(unnamed workflow)")
        return f"<div><div>Workflow <b>{title}</b></div><ol>{items}</ol></div>"


def reads(resolved, frame) -> list:
    """The input columns the prompts read (for previews; a Python step reads everything, so it
    adds none)."""
    out: list = []
    for r in resolved:
        for column in (r.reads(frame) or []):
            if column not in out:
                out.append(column)
    return out


def _summary(step: Step) -> str:
    if step.function:
        return f"function {step.function}"
    if step.template:
        return f"template {step.template}"
    text = " ".join((step.prompt or "").split())
    return text if len(text) <= 80 else text[:77] + "..."


def _own_name(fn) -> str | None:
    name = getattr(fn, "__name__", None)
    return None if name in (None, "<lambda>") else name


def _description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise WorkflowError(f"a workflow's description is text, not {type(value).__name__}")
    return value.strip() or None
