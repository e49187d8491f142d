"""Running a grid's cells through the batch engine, and reporting them as they finish.

Cells are grouped by model (and options: saved templates may carry their own), one batch run
(llm_notebook.batch.engine.BatchRun) per group, all groups at once: each run brings the engine's
concurrency, pacing (rpm/tpm per model), retry policy, cache and log rows. Each run tells which
of its rows it has written (`BatchRun.on_rows`, after every flush); those cells are handed to
the grid with their answer or error and the tokens, cost and latency of their call row (for a
cache hit: the call that made the cached answer). When every group is done, the LLM-judged
checks (rubrics) run as batch runs of their own, one call per distinct request.
"""

from __future__ import annotations

import asyncio
import json

from ..batch import api as batch_api
from . import store

STOPPED = "stopped"


class _Group:
    """The cells one batch run sends."""

    def __init__(self, cells: list, run):
        self.cells = cells
        self.run = run
        self.reported: set[int] = set()
        self.written: list[int] = []        # rows the run has written, not yet reported
        self.reporting: asyncio.Future | None = None


def _options_key(options: dict) -> str:
    return json.dumps(options, sort_keys=True, default=str)


def _run_kwargs(run_options: dict) -> dict:
    return {k: run_options.get(k) for k in ("concurrency", "rpm", "tpm")}


class Execution:
    """One pass over some of a grid's cells (their calls, then their checks)."""

    def __init__(self, grid, cells: list, *, cache: bool, calls: bool = True):
        self.grid = grid
        self.session = grid.session
        self.cells = cells
        self.cache = cache
        self.groups: list[_Group] = []
        self.judge_runs: list = []
        self.stopping = False
        self._lock: asyncio.Lock | None = None
        if not calls:
            return
        by_request: dict[tuple, list] = {}
        for cell in cells:
            if cell.messages is not None:
                by_request.setdefault((cell.model, _options_key(cell.options)), []).append(cell)
        budget = grid.run_options.get("budget")
        share = None if budget is None or not by_request else budget / len(by_request)
        # Everything that can fail before a call (options, budget, concurrency) fails here.
        for (model, _), group in by_request.items():
            run, _ = batch_api.prepare(self.session, prompts=[c.messages for c in group],
                                       model=model, options=dict(group[0].options), cache=cache,
                                       budget=share, **_run_kwargs(grid.run_options))
            self.groups.append(_Group(group, run))
            run.on_rows(lambda rows, g=self.groups[-1]: self._written(g, rows))

    @property
    def spent(self) -> float:
        """USD spent by this pass's calls (cache hits cost nothing)."""
        runs = [g.run for g in self.groups] + self.judge_runs
        return sum(r.counters["cost"] for r in runs)

    def stop(self) -> None:
        """(loop thread) Start no more calls; calls in flight finish and are reported."""
        self.stopping = True
        for r in [g.run for g in self.groups] + self.judge_runs:
            r.cancel()

    async def run(self) -> None:
        self._lock = asyncio.Lock()
        tasks = [asyncio.ensure_future(self._run_group(g)) for g in self.groups]
        try:
            await asyncio.gather(*tasks)
            # Judged once all answers are in: equal requests judged once, and no two judge runs
            # with the same requests at the same time.
            await self._judge(self.cells)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            for g in self.groups:  # report whatever is left (e.g. after Ctrl-C)
                await self._report(g, final=True)

    async def _run_group(self, group: _Group) -> None:
        try:
            await group.run.run()
        finally:
            if group.reporting is not None:
                await asyncio.gather(group.reporting, return_exceptions=True)
            await self._report(group, final=True)

    # -- reporting cells --------------------------------------------------------------------

    def _written(self, group: _Group, rows: list[int]) -> None:
        """(the run's on_rows event) Report the rows the run has just written."""
        group.written.extend(rows)
        if group.reporting is None or group.reporting.done():
            group.reporting = asyncio.ensure_future(self._report(group))

    async def _report(self, group: _Group, *, final: bool = False) -> None:
        """Hand the grid the cells the run has written (all the rest too, when `final`)."""
        async with self._lock:
            run = group.run
            while group.written or final:
                rows, group.written[:] = list(group.written), []
                if final:
                    rows += [j for j in range(len(group.cells)) if run.status[j] is None]
                    final = False
                ready = [j for j in dict.fromkeys(rows) if j not in group.reported]
                if ready:
                    await self._hand_over(group, ready)

    async def _hand_over(self, group: _Group, ready: list[int]) -> None:
        run = group.run
        ids = [run.call_id(j) for j in ready if run.call_id(j) is not None]
        metrics = {}
        if ids:
            loop = asyncio.get_running_loop()
            metrics = await loop.run_in_executor(None, store.call_metrics, self.session.log, ids)
        done = []
        for j in ready:
            group.reported.add(j)
            cell = group.cells[j]
            call_id = run.call_id(j)
            _take(cell, run, j, metrics.get(call_id) if call_id else None)
            done.append(cell)
        self.grid._cells_done(done, judged_later=bool(self.grid.judged_checks))

    # -- LLM-judged checks ------------------------------------------------------------------

    async def _judge(self, cells: list) -> None:
        rubrics = self.grid.judged_checks
        todo = [c for c in cells if c.status == "ok"]
        if not rubrics or not todo:
            return
        jobs: dict[tuple, list] = {}
        for check in rubrics:
            model = check.model or self.session.default_model()
            for cell in todo:
                jobs.setdefault((model, _options_key(check.options)), []).append((cell, check))
        await asyncio.gather(*(self._judge_group(model, pairs) for (model, _), pairs in jobs.items()))

    async def _judge_group(self, model: str, pairs: list) -> None:
        check = pairs[0][1]
        # Cells with the same request and output (e.g. two models that answered alike) share
        # one judge call.
        requests: dict[str, list] = {}
        for cell, c in pairs:
            messages = c.messages(self.grid._check_view(cell))
            key = json.dumps(messages, sort_keys=True)
            requests.setdefault(key, [messages, []])[1].append((cell, c))
        unique = list(requests.values())
        try:
            if self.stopping:
                raise RuntimeError("the run was stopped")
            run, _ = batch_api.prepare(self.session, model=model, cache=self.cache,
                                       prompts=[messages for messages, _ in unique],
                                       options=dict(check.options), **_run_kwargs(self.grid.run_options))
            self.judge_runs.append(run)
            await run.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the judge could not run at all: every verdict says why
            verdicts = [(False, f"not judged: {_one_line(exc)}")] * len(unique)
        else:
            verdicts = [_verdict(run, j, owners[0][1]) for j, (_, owners) in enumerate(unique)]
        self.grid._verdicts([(cell, c.name, verdict) for (_, owners), verdict in zip(unique, verdicts)
                             for cell, c in owners])


def _verdict(run, j: int, check) -> tuple[bool, str]:
    if run.status[j] == "ok":
        return check.verdict(run.texts[j] or "")
    if run.status[j] == "error":
        return False, f"the judge's call failed: {run.errors.get(j, ('', 'failed'))[1]}"
    return False, "not judged: the run was stopped"


def _take(cell, run, j: int, metrics: dict | None) -> None:
    """Copy row j of a batch run into its cell."""
    status = run.status[j]
    cell.call_id = run.call_id(j)
    if status == "ok":
        cell.status, cell.output = "ok", run.texts[j] or ""
        cell.error = cell.error_kind = None
    elif status == "error":
        kind, message = run.errors.get(j, ("error", "failed"))
        cell.status, cell.error_kind, cell.error = "error", kind, message
        cell.output = run.texts[j]
    else:
        cell.status, cell.error_kind = "error", STOPPED
        cell.error = "not sent: the run was stopped; grid.rerun() sends it"
    cell.cached = j in run.cached
    if metrics:
        cell.input_tokens = metrics["input_tokens"]
        cell.output_tokens = metrics["output_tokens"]
        cell.cost = metrics["cost"]
        cell.latency = None if metrics["duration_ms"] is None else metrics["duration_ms"] / 1000


def _one_line(exc: BaseException) -> str:
    from ..widgets.streaming import error_line

    return error_line(exc)
