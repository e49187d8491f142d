"""The batch engine: one asyncio run over many rows, each row a call through the one executor
(llm_notebook/call/executor.py: retries, deadline, budget hold, pricing, Outcome), with what only
batches need around it:
- with replay on, the notebook's recordings are read once for all rows (call/replay.py: a
  recorded answer is taken before the cache, logged as replayed, free); answers are recorded
  with each flush when recording;
- the cache is read once for all rows (log.cache_get_many) before anything is sent, and rows
  asking the very same request are sent once;
- a fixed number of worker coroutines (no task per row) behind a gate of pacing (rpm/tpm) and
  a concurrency limit that adapts to 429s (pacing.py), which the executor enters per attempt;
- finished rows are buffered and written by a writer thread in one transaction per flush
  (every FLUSH_SECONDS or FLUSH_ROWS rows), never one transaction per call on the event loop;
- the run's own budget (its `budget=`, cut to what the session and day budgets leave), held per
  attempt like a single call's;
- events: `on_rows(callback)` hears which rows were written after each flush (with their call
  ids), `on_progress(callback)` gets the run's numbers after each flush: a comparison grid and
  a progress display follow the run without looking at it;
- young garbage collections on the flush's schedule while it runs (gc_policy.py: measured, and
  the collector's state is put back when the run ends).
Nothing per row is heavier than the executor itself: no Response, no pandas, no listeners.

A row is taken by exactly one worker (a shared iterator), so no row is sent twice in a run except
as a retry of a retryable error; a cancelled run (Ctrl-C) cancels its calls in flight, logs them
as interrupted and writes every finished row before it ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from .. import budget as budgets
from .. import pricing, providers, tokens
from ..call import outcome as outcomes
from ..call import replay as replays
from ..call.executor import Call, execute
from ..errors import BUDGET, NOT_RECORDED, RATE_LIMIT, BudgetExceeded, LLMError
from ..retry import RetryPolicy
from . import gc_policy, store
from .pacing import AdaptiveLimit, RatePacer
from .settings import BatchSettings

FLUSH_SECONDS = 0.1
FLUSH_ROWS = 200
# Output tokens assumed per row for pacing and estimates when max_tokens is not set (a typical
# answer; a budget holds the worst case instead: budget.output_tokens).
DEFAULT_OUTPUT_GUESS = 256

_writer: ThreadPoolExecutor | None = None


def _writer_pool() -> ThreadPoolExecutor:
    # One thread: flushes are ordered, and SQLite work (which releases the GIL) overlaps the
    # event loop instead of stalling it.
    global _writer
    if _writer is None:
        _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-notebook-batch-log")
    return _writer


class BatchStopped(LLMError):
    """on_error='raise': a row failed, so the run stopped (finished rows are saved). Its kind
    is the failed row's."""


class BatchRun:
    """One run of a batch. Build it (batch/api.py prepare), `await run()`, then read `texts`,
    `values`, `status`, `errors`, `summary()`."""

    def __init__(self, session, route, messages: list, keys: list, input_errors: dict,
                 settings: BatchSettings, *, options: dict, concurrency: int, schema=None,
                 prompt_label: str | None, system: str | None,
                 policy: RetryPolicy | None = None, context: dict | None = None,
                 replay=None, replay_keys: list | None = None):
        """`settings` as the user gave them (batch/settings.py); the rest as api.prepare
        worked them out: the rows' messages and cache keys, the model options, the number of
        workers, the parsed schema, the retry policy, the session's replay (call/replay.py;
        None when off) and the rows' keys in the recordings."""
        self.session = session
        self.log = session.log
        self.route = route
        self.messages = messages
        self.keys = keys
        self.input_errors = input_errors
        self.options = options
        self.n = len(messages)
        self.cache = bool(settings.cache)
        self.schema = schema
        self.on_error = settings.on_error
        self.progress = settings.progress
        self.policy = policy or session.policy()
        self.limit = AdaptiveLimit(concurrency)
        self.pacer = RatePacer(settings.rpm, settings.tpm)
        budget = settings.budget
        self.context = context or {}
        self.prompt_label = prompt_label
        self.system = system
        self.replay = replay
        self.replay_keys = replay_keys

        n = self.n
        self.texts: list = [None] * n
        self.values: list = [None] * n          # parsed replies (schema runs)
        self.status: list = [None] * n          # "ok" | "error" | None (not run)
        self.errors: dict = {}                  # row -> (kind, message)
        self.cached: set = set()
        self.replayed: set = set()
        self.resumed: set = set()
        self.attempts: dict = {}
        self.call_ids: list = [None] * n
        self.counters = {c: 0 for c in store.COUNTERS}
        self.counters["cost"] = 0.0
        self.in_flight = 0
        self.called_done = 0                    # rows finished by a call in this run
        self.requests_sent = 0
        self.retries = 0
        self.rate_limited = 0
        self.job_id: str | None = None
        self.job_status = "running"
        self.stop_reason: str | None = None
        self.stop_error: tuple | None = None
        self.started = self.finished = None
        self.called_started = None

        self.price = pricing.pricer(route.model, session.config.prices)
        self.budget = _RunBudget(self, _headroom(session, budget))
        if budget is not None and not pricing.is_priced(route.model, session.config.prices):
            raise ValueError(f"budget= needs a price for {route.model!r}, which litellm's price map "
                             "does not know; set one with session().config.prices = "
                             f"{{{route.model!r}: {{'input': <USD per 1M>, 'output': <USD per 1M>}}}}")
        max_out = options.get("max_tokens") or options.get("max_completion_tokens")
        self.pace_out = int(max_out or DEFAULT_OUTPUT_GUESS)
        self.budget_out = budgets.output_tokens(route.model, options)  # as single calls hold

        self._base_row = outcomes.base_row(route, options, kernel_session=session.kernel_session,
                                           context=self.context, system=system)
        self._calls: list = []
        self._cache_entries: list = []
        self._job_rows: list = []
        self._new_call_rows: list = []     # row index of each buffered call
        self._written_rows: list = []      # rows finished since the last flush (for on_rows)
        self._to_record: list = []         # (row, Outcome) answers to record at the next flush
        self._flush_wakeup: asyncio.Future | None = None
        self._flusher_stop = False
        self._duplicates: dict = {}          # row sent -> later rows with the same request
        self._flushing = asyncio.Lock()
        self._spent_unflushed = 0.0
        self._row_listeners: list = []
        self._progress_listeners: list = []
        # `await rows_elsewhere(run, rows)` sends the rows somewhere else (a Dask cluster:
        # llm_notebook/cluster/) and hands each outcome back through take_outcome(); None: the
        # run's own workers call them here.
        self.rows_elsewhere = None

    # -- events -----------------------------------------------------------------------------

    def on_rows(self, callback) -> None:
        """`callback(rows)` (on the run's event loop) after each flush: the indices of the rows
        that finished and are written (their `call_ids` are known), and at the end the rest."""
        self._row_listeners.append(callback)

    def on_progress(self, callback) -> None:
        """`callback(snapshot())` (on the run's event loop) when the job opens, after each flush
        and when the run ends."""
        self._progress_listeners.append(callback)

    def _tell(self, rows: list) -> None:
        for callback in self._row_listeners:
            callback(rows)
        snapshot = self.snapshot() if self._progress_listeners else None
        for callback in self._progress_listeners:
            callback(snapshot)

    # -- the run ----------------------------------------------------------------------------

    async def run(self) -> "BatchRun":
        self.started = time.monotonic()
        loop = asyncio.get_running_loop()
        pool = _writer_pool()
        fingerprint = _fingerprint(self.route.model, self.keys, self.input_errors)
        await loop.run_in_executor(pool, self._open_job, fingerprint)
        self._tell([])
        flusher = None
        workers: list = []
        holding_gc = False
        try:
            for i, (kind, message) in self.input_errors.items():
                self._fail(i, kind, message, attempts=0, call_ref=None)
            todo = [i for i in range(self.n) if self.status[i] is None]
            if todo and self.replay is not None and self.replay.replays:
                todo = await loop.run_in_executor(pool, self._replay_rows, todo)
            if todo and self.cache:
                keys = [self.keys[i] for i in todo]
                hits = await loop.run_in_executor(pool, self.log.cache_get_many, keys)
                if hits:
                    todo = [i for i in todo
                            if (hit := hits.get(self.keys[i])) is None or not self._take_cached(i, hit)]
                todo = self._set_duplicates_aside(todo)
            self._todo = iter(todo)
            if todo:
                providers.check_key(self.route)   # (resolved without its key while replaying)
                if self.rows_elsewhere is None:
                    await providers.prepare(self.route)
            self.called_started = time.monotonic()
            flusher = asyncio.ensure_future(self._flush_loop())
            gc_policy.hold()
            holding_gc = True
            if todo and self.rows_elsewhere is not None:
                await self.rows_elsewhere(self, todo)
            elif todo:
                width = 1 if self.route.kind == "local" else min(self.limit.maximum, len(todo))
                workers = [asyncio.ensure_future(self._worker()) for _ in range(width)]
                await asyncio.gather(*workers)
            self.job_status = self._final_status()
        except BaseException as exc:
            if self.stop_reason is not None:
                self.job_status = self._final_status()
            elif isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
                self.job_status = "interrupted"
            else:
                self.job_status = "failed"  # a bug; the rows that finished are still written
            for w in workers:
                w.cancel()
            # Let cancelled rows record themselves as interrupted calls before the last flush.
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            if holding_gc:
                gc_policy.release()
            if flusher is not None:
                # Stopped, not cancelled: a flush under way finishes before the final one.
                self._flusher_stop = True
                self._wake_flusher()
                try:
                    await asyncio.shield(flusher)
                except BaseException:
                    pass
            self.finished = time.monotonic()
            await self._flush(final=True)
        if self.stop_reason == "error" and self.stop_error is not None:
            i, kind, message = self.stop_error
            raise BatchStopped(f"row {i} failed ({kind}): {message} — the run stopped (on_error="
                               f"'raise'); {self.counters['ok']} rows finished and are saved in job "
                               f"{self.job_id}; run it again to continue", kind=kind)
        return self

    def _final_status(self) -> str:
        if self.stop_reason == BUDGET:
            return "budget"
        if self.stop_reason in ("error", "cancelled"):
            return "stopped" if self.stop_reason == "error" else "cancelled"
        return "done"

    def cancel(self) -> None:
        """Stop starting rows (the progress widget's stop); rows in flight finish."""
        if self.stop_reason is None:
            self.stop_reason = "cancelled"

    # -- job record -------------------------------------------------------------------------

    def _open_job(self, fingerprint: str) -> None:
        """(writer thread) Resume the unfinished job with the same rows, or start a new one."""
        previous = store.resumable_job(self.log, fingerprint, self.session.kernel_session)
        if previous is not None:
            self.job_id = previous["id"]
            store.reopen_job(self.log, self.job_id, self.session.kernel_session,
                             self.context.get("notebook"), self.context.get("cell_id"))
            resume_rows = store.finished_rows(self.log, self.job_id)
        else:
            self.job_id = uuid.uuid4().hex[:12]
            resume_rows = []
            store.create_job(self.log, {
                "id": self.job_id, "fingerprint": fingerprint, "model": self.route.model,
                "prompt": self.prompt_label, "system": self.system,
                "options": self._base_row["options"],
                "schema": self.schema.json_schema if self.schema is not None else None,
                "rows": self.n, "kernel_session": self.session.kernel_session,
                "notebook": self.context.get("notebook"), "cell_id": self.context.get("cell_id")})
        self._base_row["job_id"] = self.job_id
        for r in resume_rows:
            i = r["row"]
            if 0 <= i < self.n and i not in self.input_errors:
                self._take_resumed(i, r)

    def _take_resumed(self, i: int, r: dict) -> None:
        value, problem = self._parse(r["response"] or "")
        if problem is not None:
            return
        self.status[i] = "ok"
        self.texts[i] = r["response"] or ""
        self.values[i] = value
        self.call_ids[i] = r["call_id"]
        self.resumed.add(i)
        if self.replay is not None and self.replay.records and not r.get("replayed"):
            self._to_record.append((i, outcomes.Outcome(
                "ok", self.texts[i], 0.0, 0.0, input_tokens=r["input_tokens"],
                output_tokens=r["output_tokens"], cost=r["cost"], cached=bool(r["cached"]))))
        self._written_rows.append(i)
        if r["cached"]:
            self.cached.add(i)
        c = self.counters
        c["done"] += 1
        c["ok"] += 1
        c["cached"] += 1 if r["cached"] else 0
        if not r["cached"]:
            c["input_tokens"] += r["input_tokens"] or 0
            c["output_tokens"] += r["output_tokens"] or 0
        c["cost"] += r["cost"] or 0.0

    # -- rows without a call ----------------------------------------------------------------

    def _replay_rows(self, todo: list) -> list:
        """(writer thread) Take every row the recordings answer; returns the rows left to call
        (none in replay mode: a row that is not recorded fails, nothing is sent)."""
        keys = self.replay_keys
        found = self.replay.find_many(keys[i] for i in todo)
        ts = time.time()
        left = []
        for i in todo:
            recorded = found.get(keys[i])
            if recorded is not None:
                self._take_replayed(i, replays.outcome(recorded, ts=ts))
            elif self.replay.strict:
                self._fail(i, NOT_RECORDED, f"not recorded in {self.replay.recordings.path}",
                           attempts=0, call_ref=None)
            else:
                left.append(i)
        return left

    def _take_replayed(self, i: int, result: outcomes.Outcome) -> None:
        """Row i answered from the recordings: a call row marked replayed, free, not cached."""
        ref = self._buffer_call(i, result)
        self.replayed.add(i)
        self.texts[i] = result.text
        if not result.ok:
            self._fail(i, result.error_kind, result.error, attempts=0, call_ref=ref)
            return
        value, problem = self._parse(result.text)
        if problem is not None:
            from .schema import INVALID_OUTPUT

            self._fail(i, INVALID_OUTPUT, problem, attempts=0, call_ref=ref)
            return
        self.status[i] = "ok"
        self.values[i] = value
        self._written_rows.append(i)
        c = self.counters
        c["done"] += 1
        c["ok"] += 1
        self._job_rows.append((i, "ok", ref, 0, None, None, 0, 0.0))

    def _take_cached(self, i: int, hit: dict) -> bool:
        text = hit["response"]
        value, problem = self._parse(text)
        if problem is not None:
            return False  # an answer that does not fit the schema is asked again
        self.status[i] = "ok"
        self.texts[i] = text
        self.values[i] = value
        self.call_ids[i] = hit.get("call_id")
        self.cached.add(i)
        if self.replay is not None and self.replay.records:
            self._to_record.append((i, outcomes.from_cache(hit, ts=0.0, duration_ms=0.0)))
        self._written_rows.append(i)
        c = self.counters
        c["done"] += 1
        c["ok"] += 1
        c["cached"] += 1
        self._job_rows.append((i, "ok", hit.get("call_id"), 1, None, None, 0, 0.0))
        return True

    def _parse(self, text: str):
        if self.schema is None:
            return text, None
        return self.schema.parse(text)

    def _fail(self, i: int, kind: str, message: str, *, attempts: int, call_ref) -> None:
        self.status[i] = "error"
        self.errors[i] = (kind, message)
        self.counters["done"] += 1
        self.counters["errors"] += 1
        self._written_rows.append(i)
        # The log's job rows name their row (Job.errors() lists them); the run's own errors
        # are the call's words alone (a comparison grid shows them in its cells).
        self._job_rows.append((i, "error", call_ref, 0, kind, f"row {i}: {message}", attempts,
                               None))
        if self.on_error == "raise" and self.stop_reason is None:
            self.stop_reason = "error"
            self.stop_error = (i, kind, message)

    def _unstarted(self, i: int) -> None:
        if self.stop_reason == BUDGET:
            self._fail(i, BUDGET, f"not sent, the run would have crossed its budget "
                                  f"(${self.budget.limit:.4f} left at the start)",
                       attempts=0, call_ref=None)
            self._mirror(i, None)

    def _set_duplicates_aside(self, todo: list) -> list:
        """Rows whose request equals an earlier row's are not sent: they take that row's
        outcome (the cache would give them its answer on the next run anyway). Only when the
        cache is on: without it, equal requests are independent samples."""
        first: dict = {}
        unique = []
        for i in todo:
            owner = first.setdefault(self.keys[i], i)
            if owner == i:
                unique.append(i)
            else:
                self._duplicates.setdefault(owner, []).append(i)
        return unique

    def _mirror(self, i: int, ref) -> None:
        """Give row i's outcome to the rows that asked the very same request."""
        copies = self._duplicates.pop(i, None)
        if not copies:
            return
        c = self.counters
        for j in copies:
            if self.status[i] == "ok":
                self.status[j] = "ok"
                self.texts[j] = self.texts[i]
                self.values[j] = self.values[i]
                self.cached.add(j)
                self._written_rows.append(j)
                c["done"] += 1
                c["ok"] += 1
                c["cached"] += 1
                self._job_rows.append((j, "ok", ref, 1, None, None, 0, 0.0))
            elif self.status[i] == "error":
                kind, message = self.errors[i]
                self.texts[j] = self.texts[i]
                self._fail(j, kind, f"same request as row {i}, which failed: {message}",
                           attempts=0, call_ref=ref)

    # -- calling ----------------------------------------------------------------------------

    async def _worker(self) -> None:
        gate = _Gate(self)
        for i in self._todo:
            if self.stop_reason is not None:
                self._unstarted(i)
                continue
            messages = self.messages[i]
            call = Call(self.route, messages, self.options, self.policy, self.price,
                        est_in=tokens.estimate_prompt(messages), est_out=self.budget_out)
            try:
                await execute(call, sink=_RowSink(self, i), gate=gate, budget=self.budget)
            except BudgetExceeded:
                self.stop_reason = self.stop_reason or BUDGET
                self._unstarted(i)

    # -- outcomes ---------------------------------------------------------------------------

    def take_outcome(self, i: int, result: outcomes.Outcome) -> bool:
        """(rows_elsewhere) Row i's outcome, made elsewhere; False if the row already has one
        (a task that ran twice, e.g. re-run after its worker died): it is logged once."""
        if self.status[i] is not None:
            return False
        self._record(i, result)
        return True

    def not_sent(self, i: int, kind: str | None = None, message: str | None = None) -> None:
        """(rows_elsewhere) Row i was not sent: stopped (budget), or failed where it ran."""
        if self.status[i] is not None:
            return
        if kind is None:
            self._unstarted(i)
            return
        self._fail(i, kind, message, attempts=0, call_ref=None)
        self._mirror(i, None)

    def _record(self, i: int, result: outcomes.Outcome) -> None:
        """(the row's sink) Buffer row i's call and account for its outcome."""
        if result.status == "interrupted":
            self._buffer_call(i, result)
            return
        self.called_done += 1
        self.requests_sent += result.attempts
        self.retries += max(0, result.attempts - 1)
        if result.attempts != 1:
            self.attempts[i] = result.attempts
        ref = self._buffer_call(i, result) if result.attempts else None
        if self.replay is not None and self.replay.records:
            self._to_record.append((i, result))
        if not result.ok:
            if result.error_kind == BUDGET:
                self.stop_reason = self.stop_reason or BUDGET
            self.texts[i] = result.text
            self._fail(i, result.error_kind, result.error, attempts=result.attempts, call_ref=ref)
        else:
            self._succeeded(i, result, ref)
        self._mirror(i, ref)
        if len(self._job_rows) >= FLUSH_ROWS:
            self._wake_flusher()

    def _buffer_call(self, i: int, result: outcomes.Outcome) -> tuple:
        key = self.keys[i] if self.cache else None
        ref = ("new", len(self._calls))
        self._calls.append(result.row(self._base_row, self.messages[i], cache_key=key,
                                      row_key=str(i)))
        self._new_call_rows.append(i)
        return ref

    def _succeeded(self, i: int, result: outcomes.Outcome, ref: tuple) -> None:
        c = self.counters
        tin, tout, cost = result.input_tokens, result.output_tokens, result.cost
        c["input_tokens"] += tin or 0
        c["output_tokens"] += tout or 0
        if cost is None:
            c["unpriced"] += 1
        else:
            c["cost"] += cost
            self.budget.spent += cost
            self._spent_unflushed += cost
        text = result.text
        value, problem = self._parse(text)
        self.texts[i] = text
        if problem is not None:
            from .schema import INVALID_OUTPUT

            self._fail(i, INVALID_OUTPUT, problem, attempts=result.attempts, call_ref=ref)
            return
        self.status[i] = "ok"
        self.values[i] = value
        self._written_rows.append(i)
        c["done"] += 1
        c["ok"] += 1
        if self.cache and self.keys[i] is not None:
            self._cache_entries.append((self.keys[i], ref[1], text, tin, tout))
        self._job_rows.append((i, "ok", ref, 0, None, None, result.attempts, cost))

    # -- writing ----------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        # A plain future woken by a timer or by _wake_flusher: asyncio.wait_for on 3.11 can
        # lose a cancellation that races its timeout, which would hang the end of the run.
        loop = asyncio.get_running_loop()
        while not self._flusher_stop:
            wakeup = self._flush_wakeup = loop.create_future()
            timer = loop.call_later(FLUSH_SECONDS, _resolve, wakeup)
            try:
                await wakeup
            finally:
                timer.cancel()
            if self._flusher_stop:
                break  # the run's final flush writes the rest
            if self._job_rows or self._calls:
                await self._flush()
            gc_policy.tick()

    def _wake_flusher(self) -> None:
        if self._flush_wakeup is not None:
            _resolve(self._flush_wakeup)

    async def _flush(self, final: bool = False) -> None:
        async with self._flushing:
            calls, self._calls = self._calls, []
            entries, self._cache_entries = self._cache_entries, []
            rows, self._job_rows = self._job_rows, []
            owners, self._new_call_rows = self._new_call_rows, []
            written, self._written_rows = self._written_rows, []
            spent, self._spent_unflushed = self._spent_unflushed, 0.0
            to_record, self._to_record = self._to_record, []
            if not (calls or rows or final):
                return
            counters = dict(self.counters)
            status = self.job_status if final else None
            self.session.spent += spent
            loop = asyncio.get_running_loop()
            # A write queued behind another run's write must not be dropped if this task is
            # cancelled (Ctrl-C, or the run ending): finish it, then let the cancellation go on.
            write = loop.run_in_executor(_writer_pool(), self._write, calls, entries, rows,
                                         owners, counters, status, to_record)
            try:
                ids = await asyncio.shield(write)
            except asyncio.CancelledError:
                await asyncio.wait([write])
                raise
            if calls:
                self.session._notify(dict(calls[-1], id=ids[-1], job_rows=len(calls)))
            self._tell(written)

    def _write(self, calls, entries, rows, owners, counters, status, to_record=()) -> list:
        """(writer thread) One transaction; then each row learns its call's id, here and not in
        the awaiting coroutine, so a cancelled await cannot lose the ids (compare reads them).
        Answers to record go to the recordings after the log has them."""
        ids = store.write_progress(self.log, self.job_id, calls, entries, rows, counters, status)
        for i, call_id in zip(owners, ids):
            self.call_ids[i] = call_id
        if to_record:
            replay, keys = self.replay, self.replay_keys
            replay.add([replay.line(keys[i], self.route, self.messages[i], self.options, result)
                        for i, result in sorted(to_record, key=lambda pair: pair[0])])
        return ids

    # -- reporting --------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """Numbers for a progress display."""
        c = self.counters
        now = self.finished or time.monotonic()
        called = self.called_done
        elapsed = now - (self.called_started or self.started or now)
        rate = called / elapsed if elapsed > 0.5 and called > 0 else None
        left = self.n - c["done"]
        return {
            "job_id": self.job_id, "total": self.n, "done": c["done"], "ok": c["ok"],
            "errors": c["errors"], "cached": c["cached"], "cost": c["cost"],
            "unpriced": c["unpriced"], "in_flight": self.in_flight,
            "concurrency": int(self.limit.limit), "rate": rate,
            "eta": (left / rate) if rate and left else (0.0 if not left else None),
            "elapsed": now - (self.started or now), "status": self.job_status,
            "stopping": self.stop_reason,
        }

    def summary(self) -> dict:
        c = self.counters
        return {
            "job_id": self.job_id, "status": self.job_status, "rows": self.n, "ok": c["ok"],
            "error": c["errors"], "cached": len(self.cached - self.resumed),
            "replayed": len(self.replayed),
            "resumed": len(self.resumed), "not_run": self.n - c["done"],
            "input_tokens": c["input_tokens"], "output_tokens": c["output_tokens"],
            "cost": round(c["cost"], 10), "unpriced": c["unpriced"],
            "requests": self.requests_sent, "retries": self.retries,
            "rate_limited": self.rate_limited, "model": self.route.model,
            "duration_s": round((self.finished or time.monotonic()) - (self.started or 0), 3),
        }


class _RowSink:
    """The executor's sink for one row (a callable object: cheaper than a closure per row)."""

    __slots__ = ("run", "i")

    def __init__(self, run: BatchRun, i: int):
        self.run, self.i = run, i

    def __call__(self, result: outcomes.Outcome) -> None:
        self.run._record(self.i, result)


class _Gate:
    """What each attempt of a row passes through (the executor's gate): a concurrency slot,
    then pacing; after it, the limit adapts to 429s and Retry-After pauses every row."""

    __slots__ = ("run", "limit", "pacer")

    def __init__(self, run: BatchRun):
        self.run, self.limit, self.pacer = run, run.limit, run.pacer

    async def enter(self, call: Call) -> None:
        await self.limit.acquire()
        try:
            pacer = self.pacer
            if pacer.active or pacer.not_before:
                wait = pacer.reserve(call.est_in + self.run.pace_out)
                while wait > 0:
                    await asyncio.sleep(wait)
                    wait = pacer.wait_for_pause()
        except BaseException:
            self.limit.release()
            raise
        self.run.in_flight += 1

    def leave(self, call: Call, error: LLMError | None, answer) -> bool:
        run = self.run
        run.in_flight -= 1
        self.limit.release()
        if answer is not None:
            self.limit.on_success()
            if self.pacer.active and answer.input_tokens is not None:
                self.pacer.correct(call.est_in + run.pace_out,
                                   answer.input_tokens + (answer.output_tokens or 0))
        elif error is not None and error.kind == RATE_LIMIT:
            run.rate_limited += 1
            self.limit.on_rate_limited()
            self.pacer.pause(error.retry_after)
        return run.stop_reason is None   # a stopping run retries nothing


class _RunBudget:
    """The run's budget as the executor's budget hook: an attempt holds its estimate while in
    flight, and is refused (BudgetExceeded) if spent + held + its estimate could cross the
    limit. No limit, or an unpriced model: nothing is held."""

    def __init__(self, run: BatchRun, limit: float | None):
        self.run = run
        self.limit = limit
        self.reserved = 0.0
        self.spent = 0.0          # USD spent by this run (a resumed job's earlier spend aside)

    def take(self, call: Call) -> float | None:
        if self.limit is None:
            return None
        cost = call.price(call.est_in, call.est_out)
        if cost is None:
            return None
        if self.spent + self.reserved + cost > self.limit:
            raise BudgetExceeded(f"not sent: it could cross the run's budget "
                                 f"(${self.limit:.4f} left at the start)")
        self.reserved += cost
        return cost

    def release(self, hold: float) -> None:
        self.reserved -= hold


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _headroom(session, budget: float | None) -> float | None:
    """USD this run may spend: its own budget, cut to what the session/day budgets leave."""
    limits = []
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
            raise ValueError(f"budget must be a USD amount >= 0, got {budget!r}")
        limits.append(float(budget))
    room = budgets.headroom(session)    # the session and day budgets, calls in flight counted
    if room is not None:
        limits.append(room)
    return max(0.0, min(limits)) if limits else None


def _fingerprint(model: str, keys: list, input_errors: dict) -> str:
    """Digest of every row's request: the same rows, prompt, model and options give the same job."""
    h = hashlib.sha256(model.encode())
    for i, key in enumerate(keys):
        h.update(b"\0")
        if i in input_errors:
            h.update(b"!" + input_errors[i][0].encode())
        elif key:
            h.update(key.encode())
    return h.hexdigest()
