"""The kernel's side of a cluster run: the batch engine's rows go to the workers as tasks and
their outcomes come back to the engine, which logs them (batch/engine.py `rows_elsewhere`).

The run's feed (batch/feed.py) hands over the rows a chunk at a time, with every row the log
answers (cache, an earlier run's answers, recordings) already taken and equal requests set
aside, so only rows without an answer are sent. A task is a
few rows (their messages; the run's route and options without credentials, secrets.py), so
progress moves as tasks come back and a lost worker costs only its tasks' rows: distributed
runs a task again elsewhere when its worker dies, and an outcome is taken once per row
(`take_outcome`), so a row answered twice is logged once.

A stop (the widget's, on_error='raise') closes the run's gate, so no attempt starts any more,
and still takes what the tasks bring back. After Ctrl-C the kernel does not wait: the rows in
flight then are not logged, and the next run sends them again.
"""

from __future__ import annotations

import asyncio
import collections
import math
import uuid

from ..errors import BUDGET, UNKNOWN
from ..redact import redact
from . import gate as gates
from . import secrets
from .rows import RowsJob, RowsWorker, run_rows

TASKS_PER_WORKER = 4          # tasks per worker thread over a run: short tails, steady progress
MAX_ROWS_PER_TASK = 200       # a lost worker re-runs at most this many rows
LOCAL_ROWS_IN_FLIGHT = 1_000_000   # the embedded model: no cluster-wide limit (see below)


class ClusterRows:
    """`run.rows_elsewhere` for a distributed.Client; afterwards `workers` counts the rows
    each worker answered."""

    def __init__(self, client, *, rows_per_task: int | None = None):
        if rows_per_task is not None and (isinstance(rows_per_task, bool) or not isinstance(
                rows_per_task, int) or rows_per_task < 1):
            raise ValueError(f"rows_per_task must be a whole number >= 1, got {rows_per_task!r}")
        self.client = client
        self.rows_per_task = rows_per_task
        self.workers: collections.Counter = collections.Counter()
        self.tasks = 0
        self._pending: dict = {}                 # task key -> (future, chunk, rows)
        self._closed = False

    async def __call__(self, run, feed) -> None:
        client = self.client
        run_id = f"{run.job_id}-{uuid.uuid4().hex[:8]}"
        route, options, secret_id, secret = secrets.split(run.route, run.options)
        job = RowsJob(run=run_id, route=route, options=options, policy=run.policy,
                      prices=dict(run.session.config.prices or {}), pace_out=run.pace_out,
                      budget_out=run.budget_out, width=run.limit.maximum,
                      budgeted=run.budget.limit is not None, secret_id=secret_id)
        # The embedded model's limit is each worker's CPU (one row at a time per worker, in
        # rows.py), not a provider's: the cluster's gate does not narrow it.
        width = run.limit.maximum if route.kind != "local" else LOCAL_ROWS_IN_FLIGHT
        workers, threads = await asyncio.to_thread(
            _open, client, run_id, secret_id, secret, width, run.rpm, run.tpm,
            run.budget.limit)
        run.elsewhere = f"Dask: {workers} worker{'s' if workers != 1 else ''}"
        size = self.rows_per_task or _task_size(run.n - run.counters["done"], threads)
        # Tasks out at once, at most: every thread busy with one and one more waiting each;
        # the feed builds the next rows' requests while they run, so a run of millions of rows
        # holds a few chunks' requests, here and in the scheduler.
        most = 2 * threads + 2
        inbox: asyncio.Queue = asyncio.Queue()
        post = _poster(inbox, asyncio.get_running_loop())
        try:
            while run.stop_reason is None and (got := await feed.next_chunk()) is not None:
                chunk, todo = got
                for k in range(0, len(todo), size):
                    while len(self._pending) >= most:
                        await self._settle(run, await inbox.get(), run_id)
                    if run.stop_reason is not None:
                        break
                    rows = todo[k:k + size]
                    future = client.submit(run_rows, job, [(i, chunk.messages_of(i)) for i in rows],
                                           key=f"llm-rows-{run_id}-{self.tasks}", pure=False)
                    self.tasks += 1
                    self._pending[future.key] = (future, chunk, rows)
                    run.in_flight += len(rows)   # the progress display's rows on the cluster
                    future.add_done_callback(post)
            while self._pending:
                await self._settle(run, await inbox.get(), run_id)
        finally:
            run.in_flight = 0
            futures = [entry[0] for entry in self._pending.values()]
            await asyncio.to_thread(_close, client, run_id, futures, secret_id)

    async def _settle(self, run, item: tuple, run_id: str) -> None:
        key, results, error = item
        entry = self._pending.pop(key, None)
        if entry is None:
            return
        _future, chunk, rows = entry
        if error is None:
            self._take(run, results, chunk)
        else:
            self._lost(run, rows, error)
        run.in_flight -= len(rows)
        if not self._closed and run.stop_reason is not None and run.stop_reason != BUDGET:
            # Stopped (the widget, on_error='raise'): no attempt starts any more; the tasks
            # still come back, so the rows they had answered are logged.
            self._closed = True
            await asyncio.to_thread(_close_gate, self.client, run_id)

    def _take(self, run, results: list, chunk) -> None:
        for r in results:
            if r.outcome is not None:
                if run.take_outcome(r.row, r.outcome, chunk):
                    self.workers[r.worker] += 1
            else:
                if r.budget:
                    run.stop_reason = run.stop_reason or BUDGET
                run.not_sent(r.row)

    def _lost(self, run, rows: list, error: BaseException) -> None:
        if run.stop_reason is not None:
            return                      # cancelled with the run: the rows stay unsent
        message = redact(f"{type(error).__name__}: {error}".splitlines()[0])
        for i in rows:
            run.not_sent(i, UNKNOWN, f"the cluster could not run this row ({message}); run the "
                                     "same map again to send it")


def _task_size(rows: int, threads: int) -> int:
    return max(1, min(MAX_ROWS_PER_TASK, math.ceil(rows / (max(1, threads) * TASKS_PER_WORKER))))


def _open(client, run_id: str, secret_id, secret, concurrency: int, rpm, tpm,
          budget) -> tuple[int, int]:
    """(a thread) The gate on the scheduler, the keys on the workers; returns the cluster's
    workers and threads."""
    client.register_plugin(gates.ClusterGate(), name=gates.PLUGIN_NAME)
    client.register_plugin(RowsWorker(), name=RowsWorker.name)
    secrets.KEYS.give(client, secret_id, secret)
    client.sync(client.scheduler.llm_gate_open, run=run_id, concurrency=concurrency, rpm=rpm,
                tpm=tpm, budget=budget)
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return len(workers), max(1, sum(w.get("nthreads", 1) for w in workers))


def _close_gate(client, run_id: str) -> None:
    client.sync(client.scheduler.llm_gate_close, run=run_id)


def _close(client, run_id: str, futures: list, secret_id) -> None:
    """The run is over (or Ctrl-C'd): its gate closes, its unfinished tasks are cancelled, its
    keys leave the workers unless another run uses them."""
    try:
        _close_gate(client, run_id)
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
        secrets.KEYS.take_back(client, secret_id)


def _poster(inbox: asyncio.Queue, loop):
    """A task's done-callback (distributed runs it on a thread of its own): its (key, results,
    error) go to `inbox` on the run's loop."""

    def post(future) -> None:
        try:
            item = (future.key, future.result(), None)
        except BaseException as exc:     # a task that failed for good (or was cancelled)
            item = (future.key, None, exc)
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, item)
        except RuntimeError:             # the loop is closed: nobody is waiting any more
            pass

    return post
