"""`llm_notebook.WorkflowBuilder(workflow, data=df)`: build a workflow's steps, preview them on a
few rows side by side, run with per-step progress, and save versions.

The front-end lives in the template editor's bundle (js/src/widgets/template_editor/builder.ts,
drawn when `kind` is "workflow_builder"): a step's prompt is edited in the same CodeMirror
editor with the same placeholder highlighting, and CodeMirror, the largest part of any bundle,
is shipped once (benchmarks/bundle_size.py: a second bundle with it would not fit the budget).

The draft steps live in the browser and come with every request as plain step dicts; each is
checked here exactly as a saved step is (workflows/steps.py), so the builder refuses what a
save would refuse, naming the step. Requests:

    load()                      the workflow, its versions, the data's columns, registered functions
    check(name, steps)          the steps as Python normalizes them, or the first problem
    preview(name, steps, n)     the first n rows through every step, side by side
    run(name, steps, run_id)    the whole data; events {"type": "workflow.event"} per step and
                                batch progress; `stop` ends it within ~2 s keeping finished rows
    save(name, steps, message)  a new version; diff(v1, v2)

Runs go through the batch engine (the log, the cache, budgets) on a worker thread, so the kernel
stays free; the last run's DataFrame is `builder.result`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import traitlets

from ._base import SETTLE_SECONDS, LLMWidget, rpc
from .snapshot import Snapshot, workflow_snapshot

__all__ = ["WorkflowBuilder"]

MAX_PREVIEW_ROWS = 20


def _session():
    import llm_notebook

    return llm_notebook.session()


class WorkflowBuilder(LLMWidget):
    """A builder for a workflow: steps listed (add, remove, reorder with the keyboard or by
    dragging), each step's prompt edited with placeholder highlighting, a preview on a few rows
    with each step's outputs side by side, a run with per-step progress, and versions.

        b = llm_notebook.WorkflowBuilder("tickets", data=df)   # a saved one, or a Workflow, or None
        b                                                      # show it
        b.workflow    # the steps as last checked, previewed, run or saved
        b.result      # the DataFrame of the last run
    """

    _bundle = "template_editor"

    kind = traitlets.Unicode("workflow_builder",
                             help="Which view the shared front-end bundle draws.").tag(sync=True)
    name = traitlets.Unicode(None, allow_none=True,
                             help="The workflow's name (None until it has one).").tag(sync=True)
    version = traitlets.Int(None, allow_none=True,
                            help="The version loaded or last saved.").tag(sync=True)

    def __init__(self, workflow: Any = None, data: Any = None, *, version: int | None = None,
                 rows: int = 3, **settings) -> None:
        from ..workflows import Workflow
        from ..workflows.engine import RUN_SETTINGS
        from ..workflows.errors import WorkflowError

        if isinstance(workflow, str):
            workflow = _session().workflows.get(workflow, version)  # a typo fails here
        elif workflow is None:
            workflow = Workflow()
        elif not isinstance(workflow, Workflow):
            raise WorkflowError(f"WorkflowBuilder takes a Workflow, a saved workflow's name or "
                                f"None, not {type(workflow).__name__}")
        unknown = set(settings) - RUN_SETTINGS
        if unknown:
            raise WorkflowError(f"unknown setting(s) {', '.join(sorted(unknown))}; the builder "
                                f"takes {', '.join(sorted(RUN_SETTINGS))}")
        super().__init__(name=workflow.name, version=workflow.version)
        self.workflow = workflow
        self.data = data
        self.rows = max(1, min(int(rows), MAX_PREVIEW_ROWS))
        self.settings = settings
        self.result = None
        self._last: dict | None = None          # what the last preview or run did (snapshot)
        self._stop: threading.Event | None = None

    def __repr__(self) -> str:
        return f"<WorkflowBuilder {self.workflow!r}>"

    # -- requests --------------------------------------------------------------------------------

    @rpc
    def load(self) -> dict:
        from ..workflows import registered

        return {"workflow": self._workflow_dict(self.workflow), "versions": self._versions(),
                "columns": self._columns(), "rows": None if self.data is None else len(self.data),
                "preview_rows": self.rows, "functions": registered()}

    @rpc
    def check(self, steps: list, name: str | None = None) -> dict:
        wf = self._draft(name, steps)
        return {"workflow": self._workflow_dict(wf)}

    @rpc("preview")
    async def _preview(self, steps: list, name: str | None = None, n: int | None = None) -> dict:
        wf = self._draft(name, steps)
        count = self.rows if n is None else max(1, min(int(n), MAX_PREVIEW_ROWS))
        preview = await self._in_thread(wf, lambda mapper, on_event: wf.execute(
            self._data(), settings=self.settings, map_rows=mapper, on_event=on_event,
            preview_rows=count)[0], None)
        self.workflow = wf
        self._last = {"what": "preview", "reports": [r.to_dict() for r in preview.reports],
                      "rows_in": len(preview.sample), "rows_out": len(preview.result)}
        self.refresh_snapshot(delay=SETTLE_SECONDS)
        return preview.to_dict()

    @rpc("run")
    async def _run(self, steps: list, name: str | None = None, run_id: str | None = None) -> dict:
        wf = self._draft(name, steps)

        def execute(mapper, on_event):
            outcome, frame = wf.execute(self._data(), settings=self.settings, map_rows=mapper,
                                        on_event=on_event)
            out = outcome.frame
            out.attrs = {**out.attrs, "workflow": wf._info(outcome.reports, frame)}
            return out

        out = await self._in_thread(wf, execute, run_id)
        self.workflow, self.result = wf, out
        info = out.attrs["workflow"]
        self._last = {"what": "run", "reports": info["steps"], "rows_in": info["rows_in"],
                      "rows_out": info["rows_out"]}
        self.refresh_snapshot(delay=SETTLE_SECONDS)
        return {"run_id": run_id, **info}

    @rpc
    def stop(self) -> bool:
        """Stops the running preview or run (its finished rows stay logged and cached)."""
        if self._stop is None:
            return False
        self._stop.set()
        return True

    @rpc("save")
    def _save(self, steps: list, name: str | None = None, message: str | None = None) -> dict:
        wf = self._draft(name, steps)
        saved = _session().workflows.save(wf, message=message)
        self.workflow, self.name, self.version = saved, saved.name, saved.version
        self.refresh_snapshot(delay=SETTLE_SECONDS)
        return {"workflow": self._workflow_dict(saved), "versions": self._versions()}

    @rpc
    def diff(self, v1: int | None = None, v2: int | None = None) -> dict:
        from ..workflows.errors import WorkflowError

        if not self.name or self.version is None:
            raise WorkflowError("save the workflow first: there are no versions to compare yet")
        return {"text": _session().workflows.diff(self.name, v1, v2)}

    def _build_snapshot(self) -> Snapshot:
        return workflow_snapshot(self._workflow_dict(self.workflow), self._last)

    # -- helpers ---------------------------------------------------------------------------------

    async def _in_thread(self, wf, work, run_id):
        """Runs `work(map_rows, on_event)` on a worker thread (the batch engine waits on the
        runner's loop, where this handler runs), with a map the Stop button can end."""
        from ..workflows.batching import StoppableMap

        if self._stop is not None:
            from ..workflows.errors import WorkflowError

            raise WorkflowError("a preview or run is going on: stop it or wait for it to end")
        stop = self._stop = threading.Event()
        current = {"index": 0}

        def on_event(event: dict) -> None:
            if event["type"] == "start":
                current["index"] = event["index"]
            self._tell({**event, "type": "workflow.event", "run": run_id,
                        "event": event["type"]})

        def on_progress(snapshot: dict) -> None:
            self._tell({"type": "workflow.event", "run": run_id, "event": "progress",
                        "index": current["index"], "done": snapshot["done"],
                        "total": snapshot["total"], "errors": snapshot["errors"],
                        "cached": snapshot["cached"]})

        mapper = StoppableMap(stop, on_progress)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: work(mapper, on_event))
        except asyncio.CancelledError:
            stop.set()        # the request was cancelled: the batch in the thread ends too
            raise
        finally:
            self._stop = None

    def _tell(self, message: dict) -> None:
        try:
            self.send(message)
        except Exception:  # noqa: BLE001 - a closed comm must not stop the run
            pass

    def _data(self):
        from ..workflows.errors import WorkflowError

        if self.data is None:
            raise WorkflowError("the builder has no data to run on: "
                                "WorkflowBuilder(workflow, data=df)")
        return self.data

    def _draft(self, name: Any, steps: Any):
        """The browser's draft as a Workflow, every step checked as a saved one is."""
        from ..workflows import Step, Workflow
        from ..workflows.errors import WorkflowError

        if not isinstance(steps, list):
            raise WorkflowError("steps must be a list of steps")
        name = (name or "").strip() if isinstance(name, str) else name
        wf = Workflow(name or None, [Step.from_dict(s, f"step {i}") for i, s in enumerate(steps, 1)],
                      description=self.workflow.description)
        if wf.content()["steps"] == self.workflow.content()["steps"] and wf.name == self.workflow.name:
            wf.version, wf.created = self.workflow.version, self.workflow.created
        return wf

    def _columns(self) -> list[str]:
        return [] if self.data is None else [str(c) for c in self.data.columns][:500]

    def _versions(self) -> list[dict]:
        if not self.name or self.name not in _session().workflows:
            return []
        return [{"version": v.version, "message": v.message,
                 "created": v.created.isoformat() if v.created else None,
                 "steps": len(v.steps)} for v in _session().workflows.versions(self.name)]

    @staticmethod
    def _workflow_dict(wf) -> dict:
        return {"name": wf.name, "version": wf.version, "description": wf.description,
                "steps": [s.to_dict() for s in wf.steps]}
