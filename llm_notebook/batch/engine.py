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
- the rows come a chunk at a time (feed.py): messages and cache keys are built for a few
  thousand rows while the previous ones are sent, so a run of a million rows holds a few chunks'
  requests, and per row only its answer, status and call id;
- pacing is per model, not per run (pacing.shared_pacer): runs on the same model, background
  jobs included, share its rpm/tpm and Retry-After pauses;
- `via="batch_api"` sends the rows as provider batches instead of calls (provider_batch.py),
  and logs and reports them through the same books.
Nothing per row is heavier than the executor itself: no Response, no pandas, no listeners.

A row is taken by exactly one worker (a shared iterator), so no row is sent twice in a run except
as a retry of a retryable error; a cancelled run (Ctrl-C) cancels its calls in flight, logs them
as interrupted and writes every finished row before it ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from array import array
from concurrent.futures import ThreadPoolExecutor

from .. import budget as budgets
from .. import pricing, tokens
from ..cache import _NOT_SEMANTIC
from ..call import outcome as outcomes
from ..call import replay as replays
from ..call.executor import Call, execute
from ..errors import BUDGET, NOT_RECORDED, RATE_LIMIT, BudgetExceeded, LLMError
from ..retry import RetryPolicy
from . import gc_policy, store
from .feed import Chunk, Feed
from .pacing import AdaptiveLimit, shared_pacer
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

    def __init__(self, session, route, rows, settings: BatchSettings, *, options: dict,
                 concurrency: int, schema=None, system: str | None,
                 policy: RetryPolicy | None = None, context: dict | None = None,
                 n: int | None = None, keep_answers: bool = True, replay=None):
        """`rows` is the input (inputs.FrameRows or ListRows: requests a chunk at a time, or
        None to pick up a Batch API job from the log); `settings` as the user gave them
        (batch/settings.py); the rest as api.prepare worked them out: the model options, the
        number of workers, the parsed schema, the retry policy, the session's replay
        (call/replay.py; None when off); `n` the number of rows when there is no `rows`.
        `keep_answers=False`: the answers are not kept in memory as they come (answers() reads
        them back from the log, a page at a time, when the run is over): what a run holds per
        row is then a status and a call id."""
        self.session = session
        self.log = session.log
        self.route = route
        self.rows = rows
        self.options = options
        self.n = rows.n if rows is not None else int(n or 0)
        self.cache = bool(settings.cache)
        self.schema = schema
        self.on_error = settings.on_error
        self.progress = settings.progress
        self.via = settings.via
        self.background = bool(settings.background)
        self.policy = policy or session.policy()
        self.limit = AdaptiveLimit(concurrency)
        self.rpm, self.tpm = settings.rpm, settings.tpm
        self.pacer = shared_pacer(route, settings.rpm, settings.tpm)
        budget = settings.budget
        self.context = context or {}
        self.prompt_label = rows.label if rows is not None else None
        self.system = system
        self.replay = replay

        n = self.n
        self.keep_answers = keep_answers
        self.texts = [None] * n if keep_answers else _NOT_KEPT
        self.values = [None] * n if keep_answers else _NOT_KEPT   # parsed replies (schema runs)
        self.status: list = [None] * n          # "ok" | "error" | None (not run)
        self.errors: dict = {}                  # row -> (kind, message)
        self.cached: set = set()
        self.replayed: set = set()
        self.resumed: set = set()
        self.attempts: dict = {}
        # The call id of each row's answer (0: none yet), as machine integers: no Python object
        # per row beyond its answer (a million-row run keeps a million of these).
        self.call_ids = array("q", bytes(8 * n))
        self.counters = {c: 0 for c in store.COUNTERS}
        self.counters["cost"] = 0.0
        self.bad_rows = 0
        self.in_flight = 0
        self.called_done = 0                    # rows finished by a call in this run
        self.requests_sent = 0
        self.retries = 0
        self.rate_limited = 0
        self.job_id: str | None = None
        self.job_status = "queued" if self.background else "running"
        self.provider_status: str | None = None  # a Batch API run: the provider's word
        self.stop_reason: str | None = None
        self.stop_error: tuple | None = None
        self.started = self.finished = None
        self.called_started = None

        batch_price = self.via == "batch_api"
        self.price = pricing.pricer(route.model, session.config.prices, batch=batch_price)
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
        # Recording: (row, Outcome, messages, key) answers to record at the next flush; rows
        # resumed from an earlier run wait here until their chunk (their request) is built.
        self._to_record: list = []
        self._resumed_to_record: dict = {}
        self._flush_wakeup: asyncio.Future | None = None
        self._flusher_stop = False
        self._duplicates: dict = {}          # row sent -> later rows with the same request
        self._flushing = asyncio.Lock()
        self._spent_unflushed = 0.0
        self._row_listeners: list = []
        self._progress_listeners: list = []

    # -- events -----------------------------------------------------------------------------

    def on_rows(self, callback) -> None:
        """`callback(rows)` (on the run's event loop) after each flush: the indices of the rows
        that finished and are written (their `call_id(i)` is known), and at the end the rest."""
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
        if self.job_id is None:
            await loop.run_in_executor(pool, self.open_job)
        self.job_status = "running"
        await loop.run_in_executor(pool, store.mark_running, self.log, self.job_id)
        self._tell([])
        flusher = None
        workers: list = []
        holding_gc = False
        feed = Feed(self) if self.rows is not None else None
        self.pacer.attach(self, self.rpm, self.tpm)
        try:
            self.called_started = time.monotonic()
            flusher = asyncio.ensure_future(self._flush_loop())
            gc_policy.hold()
            holding_gc = True
            if self.via == "batch_api":
                from . import provider_batch

                await provider_batch.send(self, feed)
            elif self.counters["done"] < self.n:
                width = 1 if self.route.kind == "local" else min(self.limit.maximum,
                                                                  self.n - self.counters["done"])
                workers = [asyncio.ensure_future(self._worker(feed)) for _ in range(width)]
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
            self.pacer.detach(self)
            if feed is not None:
                feed.close()
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
        if self.stop_reason is not None:   # a provider batch that ended without every row
            return self.stop_reason
        return "done"

    def cancel(self) -> None:
        """Stop starting rows (the progress widget's stop); rows in flight finish. A run that
        has ended stays as it ended."""
        if self.stop_reason is None and self.finished is None:
            self.stop_reason = "cancelled"

    # -- job record -------------------------------------------------------------------------

    def open_job(self) -> None:
        """(any thread) Resume the unfinished job with the same rows, or start a new one. A
        background job opens before it is queued, so its id is known at once."""
        fingerprint = _fingerprint(self.route, self.options, self.rows, self.via)
        kernel = self.session.kernel_session
        previous = store.resumable_job(self.log, fingerprint, kernel)
        status = "queued" if self.background else "running"
        if previous is not None:
            self.job_id = previous["id"]
            store.reopen_job(self.log, self.job_id, kernel, self.context.get("notebook"),
                             self.context.get("cell_id"), status=status,
                             background=self.background)
        else:
            self.job_id = uuid.uuid4().hex[:12]
            store.create_job(self.log, {
                "id": self.job_id, "fingerprint": fingerprint, "model": self.route.model,
                "prompt": self.prompt_label, "system": self.system,
                "options": self._base_row["options"],
                "schema": self.schema.json_schema if self.schema is not None else None,
                "rows": self.n, "kernel_session": kernel, "via": self.via,
                "background": int(self.background),
                "notebook": self.context.get("notebook"), "cell_id": self.context.get("cell_id")},
                status=status)
        self._base_row["job_id"] = self.job_id
        if previous is not None:
            self.take_resumed_rows()

    def take_resumed_rows(self) -> None:
        """(any thread) Count the rows the job's earlier runs answered as done."""
        for r in store.finished_rows(self.log, self.job_id):
            if 0 <= r["row"] < self.n and self.status[r["row"]] is None:
                self._take_resumed(r["row"], r)

    def _take_resumed(self, i: int, r: dict) -> None:
        value, problem = self._parse(r["response"] or "")
        if problem is not None:
            return
        self.status[i] = "ok"
        self.texts[i] = r["response"] or ""
        self.values[i] = value
        self.call_ids[i] = r["call_id"] or 0
        self.resumed.add(i)
        if self.replay is not None and self.replay.records and not r.get("replayed"):
            self._resumed_to_record[i] = outcomes.Outcome(
                "ok", r["response"] or "", 0.0, 0.0, input_tokens=r["input_tokens"],
                output_tokens=r["output_tokens"], cost=r["cost"], cached=bool(r["cached"]))
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

    async def take_chunk(self, chunk: Chunk) -> list:
        """(the feed) A chunk's rows that failed to make a request become errors, the recorded
        ones (replaying) and the cached ones answers; returns the rows to send (equal requests
        set aside to share one)."""
        for i, (kind, message) in chunk.errors.items():
            self.bad_rows += 1
            if self.status[i] is None:
                self._fail(i, kind, message, attempts=0, call_ref=None)
        if self._resumed_to_record:
            for i in range(chunk.start, chunk.stop):
                result = self._resumed_to_record.pop(i, None)
                if result is not None:
                    self._remember(i, result, chunk)
        todo = [i for i in range(chunk.start, chunk.stop)
                if self.status[i] is None and chunk.messages_of(i) is not None]
        loop = asyncio.get_running_loop()
        if todo and self.replay is not None and self.replay.replays:
            todo = await loop.run_in_executor(_writer_pool(), self._replay_rows, todo, chunk)
        if todo and self.cache:
            keys = [chunk.key_of(i) for i in todo]
            hits = await loop.run_in_executor(_writer_pool(), self.log.cache_get_many, keys)
            if hits:
                todo = [i for i in todo
                        if (hit := hits.get(chunk.key_of(i))) is None
                        or not self._take_cached(i, hit, chunk)]
            todo = self._set_duplicates_aside(todo, chunk)
        if len(self._job_rows) >= FLUSH_ROWS:
            self._wake_flusher()
        return todo

    def _remember(self, i: int, result: outcomes.Outcome, chunk: Chunk) -> None:
        """Recording: row i's answer goes to the recordings with the next flush (with its
        request, taken now, while its chunk is alive)."""
        if self.replay is not None and self.replay.records:
            key = self.replay.key(self.route, chunk.messages_of(i), self.options) \
                if chunk.replay_keys is None else chunk.replay_key_of(i)
            self._to_record.append((i, result, chunk.messages_of(i), key))

    def _replay_rows(self, todo: list, chunk: Chunk) -> list:
        """(writer thread) Take every row the recordings answer; returns the rows left to call
        (none in replay mode: a row that is not recorded fails, nothing is sent)."""
        found = self.replay.find_many(chunk.replay_key_of(i) for i in todo)
        ts = time.time()
        left = []
        for i in todo:
            recorded = found.get(chunk.replay_key_of(i))
            if recorded is not None:
                self._take_replayed(i, replays.outcome(recorded, ts=ts), chunk)
            elif self.replay.strict:
                self._fail(i, NOT_RECORDED, f"not recorded in {self.replay.recordings.path}",
                           attempts=0, call_ref=None)
            else:
                left.append(i)
        return left

    def _take_replayed(self, i: int, result: outcomes.Outcome, chunk: Chunk) -> None:
        """Row i answered from the recordings: a call row marked replayed, free, not cached."""
        ref = self._buffer_call(i, result, chunk)
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

    def _take_cached(self, i: int, hit: dict, chunk: Chunk) -> bool:
        text = hit["response"]
        value, problem = self._parse(text)
        if problem is not None:
            return False  # an answer that does not fit the schema is asked again
        self.status[i] = "ok"
        self.texts[i] = text
        self.values[i] = value
        self.call_ids[i] = hit.get("call_id") or 0
        self.cached.add(i)
        self._remember(i, outcomes.from_cache(hit, ts=0.0, duration_ms=0.0), chunk)
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

    def _set_duplicates_aside(self, todo: list, chunk: Chunk) -> list:
        """Rows whose request equals an earlier row's of the chunk are not sent: they take that
        row's outcome (the cache would give them its answer on the next run anyway). Only when
        the cache is on: without it, equal requests are independent samples."""
        first: dict = {}
        unique = []
        for i in todo:
            owner = first.setdefault(chunk.key_of(i), i)
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

    async def _worker(self, feed: Feed) -> None:
        gate = _Gate(self)
        while (item := await feed.take()) is not None:
            i, chunk = item
            if self.stop_reason is not None:
                self._unstarted(i)
                continue
            messages = chunk.messages_of(i)
            call = Call(self.route, messages, self.options, self.policy, self.price,
                        est_in=tokens.estimate_prompt(messages), est_out=self.budget_out)
            try:
                await execute(call, sink=_RowSink(self, i, chunk), gate=gate, budget=self.budget)
            except BudgetExceeded:
                self.stop_reason = self.stop_reason or BUDGET
                self._unstarted(i)

    # -- outcomes ---------------------------------------------------------------------------

    def record(self, i: int, result: outcomes.Outcome, chunk: Chunk) -> None:
        """(the row's sink) Buffer row i's call and account for its outcome."""
        if result.status == "interrupted":
            self._buffer_call(i, result, chunk)
            return
        self.called_done += 1
        self.requests_sent += result.attempts
        self.retries += max(0, result.attempts - 1)
        if result.attempts != 1:
            self.attempts[i] = result.attempts
        ref = self._buffer_call(i, result, chunk) if result.attempts else None
        self._remember(i, result, chunk)
        if not result.ok:
            if result.error_kind == BUDGET:
                self.stop_reason = self.stop_reason or BUDGET
            self.texts[i] = result.text
            self._fail(i, result.error_kind, result.error, attempts=result.attempts, call_ref=ref)
        else:
            self._succeeded(i, result, ref, chunk)
        self._mirror(i, ref)
        if len(self._job_rows) >= FLUSH_ROWS:
            self._wake_flusher()

    def _buffer_call(self, i: int, result: outcomes.Outcome, chunk: Chunk) -> tuple:
        key = chunk.key_of(i) if self.cache else None
        ref = ("new", len(self._calls))
        self._calls.append(result.row(self._base_row, chunk.messages_of(i), cache_key=key,
                                      row_key=str(i)))
        self._new_call_rows.append(i)
        return ref

    def _succeeded(self, i: int, result: outcomes.Outcome, ref: tuple, chunk: Chunk) -> None:
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
        key = chunk.key_of(i)
        if self.cache and key is not None:
            self._cache_entries.append((key, ref[1], text, tin, tout))
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
            replay = self.replay
            replay.add([replay.line(key, self.route, messages, self.options, result)
                        for _i, result, messages, key in sorted(to_record, key=lambda e: e[0])])
        return ids

    def answers(self) -> list:
        """Each row's answer (None where it has none): from memory, or read back from the log a
        page at a time when the run did not keep them (assembled once, at the end, rather than
        a string per row kept, among the run's other allocations, for the whole run)."""
        status = self.status
        if self.keep_answers:
            texts = self.texts
            return [texts[i] if status[i] == "ok" else None for i in range(self.n)]
        texts: list = [None] * self.n
        if self.job_id is not None:
            for row, text in store.answers(self.log, self.job_id):
                if 0 <= row < self.n and status[row] == "ok":
                    texts[row] = text if text is not None else ""
        return texts

    def parsed_answers(self) -> list:
        """answers() parsed by the run's schema (the answers themselves without one)."""
        if self.keep_answers:
            return [self.values[i] if self.status[i] == "ok" else None for i in range(self.n)]
        texts = self.answers()
        if self.schema is None:
            return texts
        return [None if t is None else self._parse(t)[0] for t in texts]

    def call_id(self, i: int) -> int | None:
        """The id of the call that answered row i (for a cache hit: the call that made the
        answer), or None."""
        return self.call_ids[i] or None

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
            "stopping": self.stop_reason, "via": self.via, "provider": self.provider_status,
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
            "rate_limited": self.rate_limited, "model": self.route.model, "via": self.via,
            "duration_s": round((self.finished or time.monotonic()) - (self.started or 0), 3),
        }


class _NotKept:
    """A run's texts and values when it does not keep answers: what is written is dropped."""

    __slots__ = ()

    def __setitem__(self, i, value) -> None:
        pass

    def __getitem__(self, i):
        return None


_NOT_KEPT = _NotKept()


class _RowSink:
    """The executor's sink for one row (a callable object: cheaper than a closure per row). It
    holds the row's chunk, whose messages and key the row's log entry takes."""

    __slots__ = ("run", "i", "chunk")

    def __init__(self, run: BatchRun, i: int, chunk: Chunk):
        self.run, self.i, self.chunk = run, i, chunk

    def __call__(self, result: outcomes.Outcome) -> None:
        self.run.record(self.i, result, self.chunk)


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


def _fingerprint(route, options: dict, rows, via: str) -> str:
    """Digest of what decides every row's request (model, endpoint, options, the prompt and
    the input's contents) and of how rows are sent: the same call again gives the same job."""
    h = hashlib.sha256(route.model.encode())
    semantic = {k: v for k, v in options.items() if k not in _NOT_SEMANTIC and v is not None}
    h.update(json.dumps([route.base_url or route.endpoint or "", semantic,
                         "" if via == "calls" else via], sort_keys=True, default=str).encode())
    rows.digest(h)
    return h.hexdigest()
