"""`llm_notebook.compare(...)` and its result, the ComparisonGrid widget.

The grid is the Python object and the widget: cells live here, the front-end
(js/src/widgets/grid.ts) gets them through

    {"type": "grid.update", "cells": [<cell>...], "progress": {...}, "seq": n}   Python → JS
    requests (widgets/_base.py): state, rate, detail, export, rerun, stop       JS → Python

A `state` request answers every cell, so a reloaded page shows the grid as it is; updates carry
only the cells that changed, each with a version (the front-end keeps the newest). Updates are
sent at most once per scan of the runs (10 a second) plus one per rating.

The grid's snapshot (widgets/snapshot.py) is refreshed when a run ends and after a rating, so a
saved notebook shows the answers where no kernel runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import traitlets

from ..widgets._base import SETTLE_SECONDS, LLMWidget, rpc
from ..widgets.snapshot import Snapshot, grid_snapshot
from . import checks as checks_mod
from . import export as export_mod
from . import spec as spec_mod
from . import store
from .run import Execution

__all__ = ["ComparisonGrid", "compare"]

_UNSET: Any = object()
_MAX_COMMENT = 10_000
_THUMBS = {"up": 1, "down": -1, "none": None, "": None, "👍": 1, "👎": -1}


def compare(prompts, models, inputs=None, *, checks=None, system: str | None = None,
            cache: bool = True, concurrency: int | None = None, rpm: float | None = None,
            tpm: float | None = None, budget: float | None = None, **options) -> ComparisonGrid:
    """Run every prompt × model × input and show the results side by side.

    prompts: a prompt string with {column} placeholders, a saved template's name, a list of
        them, or a dict {label: prompt}.
    models: model ids, e.g. ["openai/gpt-4o-mini", "local/smollm2"].
    inputs: a DataFrame (one row per test case; columns fill the placeholders), a list of dicts,
        a list of values (filling {input}), or None (each prompt is sent once).
    checks: llm_notebook.checks.* objects, dicts like {"contains": "Paris"}, or functions.
    system, temperature=, max_tokens=, ...: sent with every call. cache (default True), and the
        batch engine's concurrency / rpm / tpm (per model) and budget (USD, split evenly across
        models).

    Returns at once with the grid, which fills in as cells finish (display it to watch).
    `grid.wait()` blocks until all are done; `to_pandas()`, `summary()` and `export()` wait by
    themselves.
    """
    grid = ComparisonGrid(prompts, models, inputs, checks=checks, system=system, cache=cache,
                          concurrency=concurrency, rpm=rpm, tpm=tpm, budget=budget, **options)
    return grid.run()


class ComparisonGrid(LLMWidget):
    """Prompts × models × inputs, side by side: outputs, checks, ratings, diffs, export.

        grid = llm_notebook.compare(["Capital of {country}?", "Name the capital of {country}."],
                                    ["openai/gpt-4o-mini", "local/smollm2"],
                                    inputs=[{"country": "France"}, {"country": "Japan"}],
                                    checks=[llm_notebook.checks.contains("Paris")])
        grid                                   # the widget: rate, diff, filter, export
        grid.to_pandas()                       # one row per cell
        grid.rate((0, 0, "local/smollm2"), thumb="up", score=0.8, comment="good")
        grid.rerun(failed_only=True)           # re-send the cells that failed
        grid.export("report.html")             # or .csv / .json

    `ComparisonGrid(...)` takes compare()'s arguments and sends nothing until `.run()`.
    """

    _bundle = "grid"

    spec = traitlets.Dict(help="Prompts, models, input rows (as shown) and check names.").tag(sync=True)

    def __init__(self, prompts, models, inputs=None, *, checks=None, system: str | None = None,
                 cache: bool = True, concurrency: int | None = None, rpm: float | None = None,
                 tpm: float | None = None, budget: float | None = None, **options) -> None:
        import llm_notebook

        from .. import context as ctx

        session = llm_notebook.session()
        for wrong, right in (("model", "models"), ("prompt", "prompts"), ("input", "inputs"),
                             ("check", "checks")):
            if wrong in options:
                raise TypeError(f"compare() takes {right}=, not {wrong}= (e.g. {right}=[...])")
        options = {k: v for k, v in options.items() if v is not None}
        plan = spec_mod.build(session, prompts, models, inputs, system=system, options=options)
        check_list = checks_mod.normalize(checks)
        for check in check_list:
            if check.judged and check.model:
                session.resolve(check.model)  # a judge's unknown model fails here
        if not isinstance(cache, bool):
            raise ValueError(f"cache must be True or False, got {cache!r}")
        comparison_id = uuid.uuid4().hex[:12]
        super().__init__(spec=_spec_json(comparison_id, plan, check_list))
        self.id = comparison_id
        self.session = session
        self.plan = plan
        self.checks = check_list
        self.cache = cache
        self.run_options = {"concurrency": concurrency, "rpm": rpm, "tpm": tpm, "budget": budget}
        self._lock = threading.RLock()
        self._execution: Execution | None = None
        self._future: concurrent.futures.Future | None = None
        self._error: str | None = None
        self._active = False
        self._seq = 0
        self._spent = 0.0
        log = session.log
        saved = store.ratings_for(log, [c.key for c in plan.cells])
        for cell in plan.cells:
            rating = saved.get(cell.key)
            if rating:
                cell.thumb, cell.score, cell.comment = rating["thumb"], rating["score"], rating["comment"]
            if cell.bad is not None:
                self._evaluate(cell, judged_later=False)
        store.create_comparison(log, {
            "id": comparison_id, "prompts": [p.label for p in plan.prompts], "models": plan.models,
            "inputs": len(plan.rows) if plan.has_inputs else 0,
            "checks": [c.name for c in check_list], "cells": len(plan.cells),
            "notebook": ctx.notebook_path(), "cell_id": ctx.cell_id(),
            "kernel_session": session.kernel_session})

    # -- running ---------------------------------------------------------------------------

    @property
    def judged_checks(self) -> list:
        return [c for c in self.checks if c.judged]

    @property
    def running(self) -> bool:
        return self._active

    @property
    def done(self) -> bool:
        return not self.running

    def run(self, *, cache: bool | None = None) -> ComparisonGrid:
        """Send every cell (cached answers are reused unless cache=False); returns at once."""
        return self._start([c for c in self.plan.cells if c.messages is not None], cache=cache)

    def rerun(self, failed_only: bool = True, *, cache: bool | None = None) -> ComparisonGrid:
        """Send again the cells whose call failed (failed_only=True), or every cell. Answers in
        the cache are reused unless cache=False, so a full re-run costs nothing new."""
        cells = [c for c in self.plan.cells if c.messages is not None
                 and (not failed_only or c.status == "error")]
        return self._start(cells, cache=cache)

    def recheck(self, checks=_UNSET) -> ComparisonGrid:
        """Evaluate the checks again on the outputs the grid has (LLM judges are asked again,
        from the cache when they were asked before); `checks=` replaces the grid's checks."""
        if self.running:
            raise RuntimeError("the grid is still running; grid.wait() or grid.stop() first")
        if checks is not _UNSET:
            check_list = checks_mod.normalize(checks)
            for check in check_list:
                if check.judged and check.model:
                    self.session.resolve(check.model)
            with self._lock:
                self.checks = check_list
                self.spec = {**self.spec, "checks": [c.name for c in check_list]}
        with self._lock:
            for cell in self.plan.cells:
                if cell.status != "pending":
                    cell.checks = {}
                    self._evaluate(cell, judged_later=bool(self.judged_checks))
                    cell.version += 1
        return self._start(self.plan.cells, cache=None, calls=False)

    def _start(self, cells: list, *, cache: bool | None, calls: bool = True) -> ComparisonGrid:
        from .. import runner

        use_cache = self.cache if cache is None else cache
        with self._lock:
            if self.running:
                raise RuntimeError("the grid is still running; grid.wait() or grid.stop() first")
            execution = Execution(self, cells, cache=use_cache, calls=calls)
            if calls:
                for cell in cells:
                    cell.reset_result()
            self._execution = execution
            self._error = None
            self._active = True
            self._future = runner.submit(self._drive(execution))
        self._publish(cells)
        return self

    async def _drive(self, execution: Execution) -> None:
        """Run a pass on the background loop; its end is recorded before anyone waiting wakes."""
        error = None
        try:
            await execution.run()
        except BaseException as exc:
            from ..widgets.streaming import error_line

            error = "interrupted" if isinstance(exc, asyncio.CancelledError) else error_line(exc)
            raise
        finally:
            self._finished(execution, error)

    def _finished(self, execution: Execution, error: str | None) -> None:
        with self._lock:
            self._error = error
            self._spent += execution.spent
            self._active = False
        try:
            ok = sum(c.status == "ok" for c in self.plan.cells)
            errors = sum(c.status == "error" for c in self.plan.cells)
            cost = sum(c.cost or 0.0 for c in self.plan.cells)
            store.update_comparison(self.session.log, self.id, ok=ok, errors=errors, cost=cost,
                                    checks=[c.name for c in self.checks])
        except Exception:  # the grid still works without its summary row in the log
            pass
        self._publish([])
        self.refresh_snapshot()

    def wait(self, timeout: float | None = None) -> ComparisonGrid:
        """Block until every cell (and every judged check) is done; Ctrl-C stops the run."""
        future = self._future
        if future is None:
            return self
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                try:
                    future.result(timeout=0.2)
                    break
                except concurrent.futures.TimeoutError:
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"the grid is still running after {timeout:g} s") from None
        except KeyboardInterrupt:
            future.cancel()
            try:
                future.result(timeout=2.0)
            except BaseException:
                pass
            p = self.progress()
            raise KeyboardInterrupt(f"comparison interrupted: {p['done']} of {p['total']} cells "
                                    "finished; grid.rerun() sends the others") from None
        return self

    def stop(self) -> None:
        """Start no more calls; calls in flight finish. The cells not sent show 'stopped'."""
        from .. import runner

        execution = self._execution
        if execution is not None and self.running:
            runner.loop().call_soon_threadsafe(execution.stop)

    # -- called by the execution (background loop thread) ---------------------------------------

    def _cells_done(self, cells: list, *, judged_later: bool) -> None:
        with self._lock:
            for cell in cells:
                self._evaluate(cell, judged_later=judged_later)
                cell.version += 1
        self._publish(cells)

    def _verdicts(self, verdicts: list) -> None:
        changed = {}
        with self._lock:
            for cell, name, verdict in verdicts:
                cell.checks[name] = verdict
                cell.version += 1
                changed[cell.index] = cell
        self._publish(list(changed.values()))

    def _evaluate(self, cell, *, judged_later: bool) -> None:
        """Run the checks that need no model; judged ones wait (None) or fail without output."""
        view = self._check_view(cell) if cell.status == "ok" else None
        for check in self.checks:
            if view is None:
                cell.checks[check.name] = (False, "no output: the call failed")
            elif check.judged:
                if judged_later:
                    cell.checks[check.name] = (None, "judging…")
            else:
                cell.checks[check.name] = check.run(view)

    def _check_view(self, cell) -> dict:
        """What a check sees of a cell (also what custom check functions get)."""
        p = self.plan.prompts[cell.prompt_index]
        tokens = None
        if cell.input_tokens is not None or cell.output_tokens is not None:
            tokens = (cell.input_tokens or 0) + (cell.output_tokens or 0)
        return {"output": cell.output or "", "input": self.plan.rows[cell.input_index],
                "model": cell.model, "prompt": p.label, "prompt_text": cell.prompt_text,
                "latency": cell.latency, "cost": cell.cost, "input_tokens": cell.input_tokens,
                "output_tokens": cell.output_tokens, "tokens": tokens, "cached": cell.cached}

    # -- to the front-end -----------------------------------------------------------------------

    def progress(self) -> dict:
        with self._lock:
            cells = self.plan.cells
            judging = sum(1 for c in cells for v in c.checks.values() if v[0] is None)
            execution = self._execution
            spent = self._spent + (execution.spent if execution is not None and self.running else 0.0)
            return {"total": len(cells), "done": sum(c.status != "pending" for c in cells),
                    "ok": sum(c.status == "ok" for c in cells),
                    "errors": sum(c.status == "error" for c in cells),
                    "cached": sum(c.cached for c in cells), "judging": judging,
                    "running": self.running, "spent": round(spent, 10), "error": self._error}

    def _cell_json(self, cell) -> dict:
        return {"index": cell.index, "version": cell.version, "status": cell.status,
                "output": cell.output, "error": cell.error, "error_kind": cell.error_kind,
                "input_tokens": cell.input_tokens, "output_tokens": cell.output_tokens,
                "cost": cell.cost, "latency": cell.latency, "cached": cell.cached,
                "checks": [list(cell.checks[c.name]) if c.name in cell.checks else None
                           for c in self.checks],
                "thumb": cell.thumb, "score": cell.score, "comment": cell.comment}

    def _publish(self, cells: list) -> None:
        with self._lock:
            self._seq += 1
            message = {"type": "grid.update", "seq": self._seq,
                       "cells": [self._cell_json(c) for c in cells], "progress": self.progress()}
            try:
                self.send(message)
            except Exception:  # no front-end (closed widget, no kernel): the grid still works
                pass

    @rpc
    def state(self) -> dict:
        with self._lock:
            return {"seq": self._seq, "cells": [self._cell_json(c) for c in self.plan.cells],
                    "progress": self.progress()}

    @rpc
    def detail(self, index: int) -> dict:
        cell = self._cell(index)
        return {"index": cell.index, "messages": cell.messages or [], "error": cell.error,
                "model": cell.model, "call_id": cell.call_id, "key": cell.key}

    @rpc("rate")
    def _rate_rpc(self, index: int, **fields) -> dict:
        unknown = set(fields) - {"thumb", "score", "comment"}
        if unknown:
            raise ValueError(f"rate takes thumb, score and comment, not {sorted(unknown)}")
        self._rate(index, **fields)
        self.refresh_snapshot(delay=SETTLE_SECONDS)
        with self._lock:
            return self._cell_json(self._cell(index))

    @rpc("export")
    def _export_rpc(self, format: str) -> dict:
        content, mime, suffix = export_mod.render(self, format)
        return {"filename": f"comparison-{self.id}{suffix}", "mime": mime, "content": content}

    @rpc("rerun")
    def _rerun_rpc(self, failed_only: bool = True) -> dict:
        self.rerun(failed_only=bool(failed_only))
        return self.progress()

    @rpc("stop")
    def _stop_rpc(self) -> dict:
        self.stop()
        return self.progress()

    # -- ratings --------------------------------------------------------------------------------

    def rate(self, cell, *, thumb=_UNSET, score=_UNSET, comment=_UNSET) -> None:
        """Rate a cell — by index, or (input_index, prompt index or label, model index or id) —
        with thumb ("up"/"down"/None), score (0–1 or None) and/or comment. Saved in the log
        under the cell's request, so a new grid over the same prompts/models/inputs shows it."""
        self._rate(cell, thumb=thumb, score=score, comment=comment)
        self.refresh_snapshot()

    def _rate(self, cell, *, thumb=_UNSET, score=_UNSET, comment=_UNSET) -> None:
        target = self._cell(cell)
        thumb = target.thumb if thumb is _UNSET else _thumb(thumb)
        score = target.score if score is _UNSET else _score(score)
        comment = target.comment if comment is _UNSET else _comment(comment)
        with self._lock:
            target.thumb, target.score, target.comment = thumb, score, comment
            target.version += 1
            store.save_rating(self.session.log, target.key, thumb=thumb, score=score,
                              comment=comment, model=target.model, prompt=target.prompt_text,
                              output=target.output, call_id=target.call_id, comparison_id=self.id)
        self._publish([target])

    def _cell(self, ref):
        cells = self.plan.cells
        if isinstance(ref, bool):
            raise TypeError("a cell is an index or (input, prompt, model), not a bool")
        if isinstance(ref, int):
            if not 0 <= ref < len(cells):
                raise IndexError(f"cell {ref} does not exist; the grid has cells 0–{len(cells) - 1}")
            return cells[ref]
        if isinstance(ref, (tuple, list)) and len(ref) == 3:
            i, p, m = ref
            plan = self.plan
            p = _position(p, [x.label for x in plan.prompts], "prompt")
            m = _position(m, plan.models, "model")
            if not isinstance(i, int) or not 0 <= i < len(plan.rows):
                raise IndexError(f"input {i!r} does not exist; inputs are 0–{len(plan.rows) - 1}")
            return cells[plan.index(i, p, m)]
        raise TypeError("a cell is an index, or (input index, prompt index or label, model "
                        f"index or id); got {ref!r}")

    # -- results --------------------------------------------------------------------------------

    def to_pandas(self, *, wait: bool = True):
        """One row per cell: prompt, model, input columns, output, tokens, cost, latency (s),
        check results (one column per check, plus failed_checks), rating, score, comment."""
        if wait:
            self.wait()
        return export_mod.frame(self)

    def summary(self, *, wait: bool = True):
        """One row per (prompt, model): cells, errors, pass rate, mean latency, total cost,
        thumbs up/down and mean score."""
        if wait:
            self.wait()
        import pandas as pd

        return pd.DataFrame(export_mod.summary_rows(self))

    def to_json(self, *, wait: bool = True) -> str:
        if wait:
            self.wait()
        return export_mod.render(self, "json")[0]

    def to_html(self, *, wait: bool = True) -> str:
        """A self-contained HTML report (no scripts, no remote resources)."""
        if wait:
            self.wait()
        return export_mod.render(self, "html")[0]

    def export(self, path, format: str | None = None, *, wait: bool = True) -> Path:
        """Write the grid to `path` as CSV, JSON or a self-contained HTML report (format from the
        file's extension unless given); returns the path."""
        if wait:
            self.wait()
        return export_mod.write(self, path, format)

    def _build_snapshot(self) -> Snapshot:
        return grid_snapshot(self)

    def __repr__(self) -> str:
        p = self.progress()
        state = "running" if p["running"] else "done"
        return (f"<ComparisonGrid {self.id}: {len(self.plan.prompts)} prompt(s) × "
                f"{len(self.plan.models)} model(s) × {len(self.plan.rows)} input(s) = {p['total']} "
                f"cells; {p['ok']} ok, {p['errors']} errors; {state}>")


def _thumb(value) -> int | None:
    if isinstance(value, str) and value.strip().lower() in _THUMBS:
        return _THUMBS[value.strip().lower()]
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (1, -1, 0):
        return int(value) or None
    raise ValueError(f"thumb must be 'up', 'down' or None (or 1, -1, 0), got {value!r}")


def _score(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"score must be a number from 0 to 1 (or None), got {value!r}")
    return float(value)


def _comment(value) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"comment must be text (or None), got {type(value).__name__}")
    value = (value or "").strip() or None
    if value is not None and len(value) > _MAX_COMMENT:
        raise ValueError(f"comment is {len(value):,} characters; keep it under {_MAX_COMMENT:,}")
    return value


def _position(value, names: list[str], what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < len(names):
            raise IndexError(f"{what} {value} does not exist; there are {len(names)}")
        return value
    if value in names:
        return names.index(value)
    raise KeyError(f"no {what} {value!r}; the grid's {what}s are {names}")


def _spec_json(comparison_id: str, plan, check_list: list) -> dict:
    return {
        "id": comparison_id,
        "prompts": [{"label": p.label, "template": p.template, "system": p.system, "ref": p.ref}
                    for p in plan.prompts],
        "models": list(plan.models),
        "columns": list(plan.columns),
        "inputs": [[spec_mod.shown(row.get(c)) for c in plan.columns] for row in plan.rows],
        "checks": [c.name for c in check_list],
    }
