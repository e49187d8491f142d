"""One gate for a whole cluster: concurrency, rpm/tpm, 429 pauses and the run's budget are
shared by every attempt of every worker, so the limits hold at the provider, however many
workers there are.

The gate lives in the scheduler (a SchedulerPlugin adding request handlers, the way
distributed's own Semaphore does): the scheduler is the one process every worker talks to and
the one that outlives any worker. Each attempt asks it for a slot (`llm_gate_enter`, which
waits for pacing there) and gives the slot back after (`llm_gate_leave`); a worker that dies
holding slots has them given back when the scheduler removes it. The pacing objects are the
batch engine's own (batch/pacing.py), here for the cluster instead of one event loop.
"""

from __future__ import annotations

import asyncio
import collections

from distributed.diagnostics.plugin import SchedulerPlugin

from ..batch.pacing import AdaptiveLimit, RatePacer
from ..errors import RATE_LIMIT, BudgetExceeded

PLUGIN_NAME = "llm-notebook-gate"
GO, BUDGET_REFUSED, CLOSED = "go", "budget", "closed"


class _RunLimits:
    """The limits of one run, for every worker together."""

    def __init__(self, concurrency: int, rpm, tpm, budget):
        self.limit = AdaptiveLimit(concurrency)
        self.pacer = RatePacer(rpm, tpm)
        self.budget = budget            # USD the run may still spend (None: no limit)
        self.spent = 0.0
        self.reserved = 0.0
        self.held: collections.Counter = collections.Counter()   # worker -> slots it holds
        self.rate_limited = 0

    def give_back(self, worker: str) -> None:
        if self.held[worker] > 0:
            self.held[worker] -= 1
            self.limit.release()


class ClusterGate(SchedulerPlugin):
    """Registered once per scheduler (idempotent); runs open and close their own limits."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self):
        self.runs: dict[str, _RunLimits] = {}

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        scheduler.handlers.update({
            "llm_gate_open": self.open_run, "llm_gate_close": self.close_run,
            "llm_gate_enter": self.enter, "llm_gate_leave": self.leave,
            "llm_gate_stats": self.stats,
        })

    def open_run(self, run: str, concurrency: int, rpm=None, tpm=None, budget=None) -> None:
        self.runs[run] = _RunLimits(concurrency, rpm, tpm, budget)

    def close_run(self, run: str) -> dict | None:
        limits = self.runs.pop(run, None)
        if limits is None:
            return None
        limits.limit.open_wide()     # attempts waiting for a slot hear that the run is over
        return _stats(limits)

    def stats(self, run: str) -> dict | None:
        limits = self.runs.get(run)
        return None if limits is None else _stats(limits)

    async def enter(self, run: str, worker: str, tokens: int, cost: float | None = None) -> str:
        limits = self.runs.get(run)
        if limits is None:
            return CLOSED            # the kernel ended the run (Ctrl-C, stop): send nothing more
        await limits.limit.acquire()
        try:
            if limits.budget is not None and cost is not None:
                if limits.spent + limits.reserved + cost > limits.budget:
                    limits.limit.release()
                    return BUDGET_REFUSED
                limits.reserved += cost
            await limits.pacer.take_turn(tokens)
        except BaseException:
            limits.limit.release()
            raise
        if self.runs.get(run) is not limits:
            return CLOSED            # ended while this attempt waited (its slot died with it)
        if worker not in self.scheduler.workers:
            # It died while waiting: remove_worker has already given back what it held.
            limits.limit.release()
            return CLOSED
        limits.held[worker] += 1
        return GO

    def leave(self, run: str, worker: str, answered: bool, rate_limited: bool = False,
              retry_after: float | None = None, estimated: int = 0, actual: int | None = None,
              hold: float | None = None, cost: float | None = None) -> None:
        limits = self.runs.get(run)
        if limits is None:
            return
        limits.give_back(worker)
        if hold is not None:
            limits.reserved -= hold
        if cost:
            limits.spent += cost
        if answered:
            limits.limit.on_success()
            if limits.pacer.active and actual is not None:
                limits.pacer.correct(estimated, actual)
        elif rate_limited:
            limits.rate_limited += 1
            limits.limit.on_rate_limited()
            limits.pacer.pause(retry_after)

    def remove_worker(self, scheduler, worker: str, **kwargs) -> None:
        for limits in self.runs.values():
            while limits.held[worker] > 0:
                limits.give_back(worker)
            limits.held.pop(worker, None)


def _stats(limits: _RunLimits) -> dict:
    return {"in_flight": limits.limit.in_flight, "limit": limits.limit.limit,
            "rate_limited": limits.rate_limited, "spent": limits.spent}


class RunClosed(Exception):
    """The kernel ended the run (a stop, on_error='raise', Ctrl-C): send nothing more."""


class WorkerGate:
    """The executor's gate (call/executor.py) on a worker: every attempt passes the cluster's
    gate in the scheduler. `leave` is synchronous in the executor, so its message is sent in
    the background; `settle()` waits for those before the task returns."""

    def __init__(self, worker, run: str, pace_out: int, budgeted: bool):
        self.worker = worker
        self.run = run
        self.pace_out = pace_out
        self.budgeted = budgeted
        self.holds: dict[int, float | None] = {}
        self.pending: set = set()

    async def enter(self, call) -> None:
        cost = call.price(call.est_in, call.est_out) if self.budgeted else None
        answer = await self.worker.scheduler.llm_gate_enter(
            run=self.run, worker=self.worker.address, tokens=call.est_in + self.pace_out, cost=cost)
        if answer == BUDGET_REFUSED:
            raise BudgetExceeded("not sent: it could cross the run's budget")
        if answer != GO:
            raise RunClosed()
        self.holds[id(call)] = cost

    def leave(self, call, error, answer) -> bool:
        hold = self.holds.pop(id(call), None)
        message = {"run": self.run, "worker": self.worker.address, "answered": answer is not None,
                   "hold": hold}
        if answer is not None:
            message["estimated"] = call.est_in + self.pace_out
            if answer.input_tokens is not None:
                message["actual"] = answer.input_tokens + (answer.output_tokens or 0)
            message["cost"] = call.price(answer.input_tokens, answer.output_tokens)
        elif error is not None and error.kind == RATE_LIMIT:
            message["rate_limited"] = True
            message["retry_after"] = error.retry_after
        task = asyncio.ensure_future(self.worker.scheduler.llm_gate_leave(**message))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return True

    async def settle(self) -> None:
        if self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)
