"""The task a worker runs: some rows of a run through the project's one call pipeline
(call/executor.py: retries, deadline, pricing) behind the cluster's gate, returning their
outcomes. A worker never opens the log: the kernel that started the run writes every row.

The task is a coroutine, so distributed runs it on the worker's event loop; the embedded model
still computes on its own thread (providers/local.py) and HTTP calls share the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from dataclasses import dataclass

from distributed.diagnostics.plugin import WorkerPlugin

from .. import pricing, providers, tokens
from ..call.executor import Call, execute
from ..errors import BudgetExceeded
from ..retry import RetryPolicy
from . import secrets
from .gate import RunClosed, WorkerGate


@dataclass
class RowsJob:
    """What every task of a run shares: no key (secrets.split took them out)."""
    run: str                      # the gate's run id
    route: providers.Route
    options: dict
    policy: RetryPolicy
    prices: dict                  # the kernel's configured prices (pricing.pricer)
    pace_out: int                 # output tokens booked per row for tpm pacing
    budget_out: int               # output tokens a budget holds per row
    width: int                    # rows in flight in one task
    budgeted: bool
    secret_id: str | None = None


@dataclass
class RowResult:
    row: int
    outcome: object | None        # call.outcome.Outcome; None: not sent (the run stopped)
    worker: str
    pid: int
    budget: bool = False          # not sent because the run's budget would have been crossed


async def run_rows(job: RowsJob, rows: list) -> list:
    """Call each (row, messages) of `rows`; returns a RowResult per row."""
    from distributed import get_worker

    worker = get_worker()
    api_key, secret_options = secrets.on_worker(worker, job.secret_id)
    route = dataclasses.replace(job.route, api_key=api_key) if api_key else job.route
    options = {**job.options, **secret_options}
    price = pricing.pricer(route.model, job.prices)
    gate = WorkerGate(worker, job.run, job.pace_out, job.budgeted)
    await providers.prepare(route)
    if route.kind == "http":
        # Loaded before the first attempt takes its turn at the gate: a worker's first import
        # of the lean client (aiohttp; ~0.5 s on a busy machine) after its turn would send
        # late, then together with the next turns, bunched at the provider.
        from ..providers import http  # noqa: F401
    results: list = []
    todo = iter(rows)
    stopped = False

    async def one_at_a_time():
        nonlocal stopped
        for i, messages in todo:
            if stopped:
                results.append(RowResult(i, None, worker.address, os.getpid()))
                continue
            call = Call(route, messages, options, job.policy, price,
                        est_in=tokens.estimate_prompt(messages), est_out=job.budget_out)
            try:
                outcome = await execute(call, sink=_ignore, gate=gate)
            except BudgetExceeded:
                stopped = True
                results.append(RowResult(i, None, worker.address, os.getpid(), budget=True))
                continue
            except RunClosed:
                stopped = True
                results.append(RowResult(i, None, worker.address, os.getpid()))
                continue
            outcome.exception = None      # raised to single callers only; may not pickle
            results.append(RowResult(i, outcome, worker.address, os.getpid()))

    width = 1 if route.kind == "local" else max(1, min(job.width, len(rows)))
    try:
        await asyncio.gather(*(one_at_a_time() for _ in range(width)))
    finally:
        await gate.settle()
    return results


class RowsWorker(WorkerPlugin):
    """Closes the lean HTTP client's connections on a worker's loop when the worker closes."""

    name = "llm-notebook-rows"
    idempotent = True

    async def teardown(self, worker) -> None:
        from ..providers import http

        await http.close_all()


def _ignore(outcome) -> None:
    """The executor's sink: the outcome goes back to the kernel, which logs it."""
