"""The batch engine: one asyncio run over many rows, with the single-call semantics of the Session
(cache key, retry policy, error kinds, budgets, one log row per call) at a per-row cost low enough
to keep hundreds of calls in flight on two cores.

Where the per-row time goes, and what is done instead of the per-call path of Session._acall:
- the cache is read once for all rows (log.cache_get_many) before anything is sent;
- finished rows are buffered and written by a writer thread in one transaction per flush
  (every FLUSH_SECONDS or FLUSH_ROWS rows), never one transaction per call on the event loop;
- no Response object, no pandas, no listeners per row; a fixed number of worker coroutines
  (no task per row); the concurrency gate and the pacer return without suspending when free.

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

from .. import providers
from ..errors import INTERRUPTED, RATE_LIMIT, LLMError
from ..retry import RetryPolicy
from . import gc_policy, store
from .pacing import AdaptiveLimit, RatePacer

FLUSH_SECONDS = 0.1
FLUSH_ROWS = 200
DEFAULT_OUTPUT_GUESS = 256       # output tokens assumed for pacing when max_tokens is not set
BUDGET = "budget"

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
    """One run of a batch. Build it, `await run()`, then read `texts`, `values`, `status`..."""

    def __init__(self, session, route, messages: list, keys: list, input_errors: dict, *,
                 options: dict, prompt_label: str | None, system: str | None,
                 concurrency: int, rpm=None, tpm=None, cache_read: bool = True,
                 cache_write: bool = True, schema=None, on_error: str = "keep",
                 budget: float | None = None, policy: RetryPolicy | None = None,
                 context: dict | None = None):
        self.session = session
        self.log = session.log
        self.route = route
        self.messages = messages
        self.keys = keys
        self.input_errors = input_errors
        self.options = options
        self.n = len(messages)
        self.cache_read = cache_read
        self.cache_write = cache_write
        self.schema = schema
        self.on_error = on_error
        self.policy = policy or session.policy()
        self.limit = AdaptiveLimit(concurrency)
        self.pacer = RatePacer(rpm, tpm)
        self.context = context or {}
        self.prompt_label = prompt_label
        self.system = system

        n = self.n
        self.texts: list = [None] * n
        self.values: list = [None] * n          # parsed replies (schema runs)
        self.status: list = [None] * n          # "ok" | "error" | None (not run)
        self.errors: dict = {}                  # row -> (kind, message)
        self.cached: set = set()
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

        # Budget: the tightest of the run's own limit and the session's limits.
        self.rate_in, self.rate_out = _rates(session, route)
        self.budget_limit = _headroom(session, budget)
        if budget is not None and self.rate_in is None:
            raise ValueError(f"budget= needs a price for {route.model!r}, which litellm's price map "
                             "does not know; set one with session().config.prices = "
                             f"{{{route.model!r}: {{'input': <USD per 1M>, 'output': <USD per 1M>}}}}")
        if self.rate_in is None:
            self.budget_limit = None  # an unpriced model cannot be limited (budget.py warns so)
        self.reserved = 0.0          # USD booked by calls in flight
        self.spent_now = 0.0         # USD spent by this call (a resumed job's earlier spend aside)
        from .. import budget as budgets

        max_out = options.get("max_tokens") or options.get("max_completion_tokens")
        self._pace_out = int(max_out or DEFAULT_OUTPUT_GUESS)
        self._budget_out = budgets.output_tokens(route.model, options)  # as single calls reserve

        # Constant part of every call row (what Session._acall logs for one call).
        import json as _json

        self.logged_options = _loggable(options)
        self._base_row = {
            "model": route.model, "provider": route.provider,
            "endpoint": route.endpoint or route.base_url, "system": system,
            "options": _json.dumps(self.logged_options, ensure_ascii=False, default=str),
            "conversation_id": None, "parent_id": None, "kernel_session": session.kernel_session,
            "notebook": self.context.get("notebook"), "cell_id": self.context.get("cell_id"),
        }
        self._calls: list = []
        self._cache_entries: list = []
        self._job_rows: list = []
        self._new_call_rows: list = []     # row index of each buffered call
        self._flush_wakeup: asyncio.Future | None = None
        self._flusher_stop = False
        self._duplicates: dict = {}          # row sent -> later rows with the same request
        self._flushing = asyncio.Lock()
        self._spent_unflushed = 0.0

    # -- the run ----------------------------------------------------------------------------

    async def run(self) -> "BatchRun":
        self.started = time.monotonic()
        loop = asyncio.get_running_loop()
        pool = _writer_pool()
        fingerprint = _fingerprint(self.route.model, self.keys, self.input_errors)
        await loop.run_in_executor(pool, self._open_job, fingerprint)
        flusher = None
        workers: list = []
        holding_gc = False
        try:
            for i, (kind, message) in self.input_errors.items():
                self._fail(i, kind, message, attempts=0, call_ref=None)
            todo = [i for i in range(self.n) if self.status[i] is None]
            if todo and self.cache_read:
                keys = [self.keys[i] for i in todo]
                hits = await loop.run_in_executor(pool, self.log.cache_get_many, keys)
                if hits:
                    todo = [i for i in todo
                            if (hit := hits.get(self.keys[i])) is None or not self._take_cached(i, hit)]
            if self.cache_read:
                todo = self._set_duplicates_aside(todo)
            self._todo = iter(todo)
            if todo:
                await providers.prepare(self.route)
            self.called_started = time.monotonic()
            flusher = asyncio.ensure_future(self._flush_loop())
            gc_policy.hold()
            holding_gc = True
            if todo:
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
            self._resume_rows = store.finished_rows(self.log, self.job_id)
        else:
            self.job_id = uuid.uuid4().hex[:12]
            self._resume_rows = []
            store.create_job(self.log, {
                "id": self.job_id, "fingerprint": fingerprint, "model": self.route.model,
                "prompt": self.prompt_label, "system": self.system, "options": self.logged_options,
                "schema": self.schema.json_schema if self.schema is not None else None,
                "rows": self.n, "kernel_session": self.session.kernel_session,
                "notebook": self.context.get("notebook"), "cell_id": self.context.get("cell_id")})
        self._base_row["job_id"] = self.job_id
        for r in self._resume_rows:
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
        self._job_rows.append((i, "error", call_ref, 0, kind, message, attempts, None))
        if self.on_error == "raise" and self.stop_reason is None:
            self.stop_reason = "error"
            self.stop_error = (i, kind, message)

    # -- calling ----------------------------------------------------------------------------

    async def _worker(self) -> None:
        for i in self._todo:
            if self.stop_reason is not None:
                self._unstarted(i)
                continue
            await self._row(i)

    def _unstarted(self, i: int) -> None:
        if self.stop_reason == BUDGET:
            self._fail(i, BUDGET, f"row {i}: not sent, the run would have crossed its budget "
                                  f"(${self.budget_limit:.4f} left at the start)",
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
                c["done"] += 1
                c["ok"] += 1
                c["cached"] += 1
                self._job_rows.append((j, "ok", ref, 1, None, None, 0, 0.0))
            elif self.status[i] == "error":
                kind, message = self.errors[i]
                self.texts[j] = self.texts[i]
                self._fail(j, kind, f"row {j}: same request as row {i}, which failed: "
                                    + message.split(": ", 1)[-1], attempts=0, call_ref=ref)

    async def _row(self, i: int) -> None:
        messages = self.messages[i]
        limit, pacer = self.limit, self.pacer
        est_in = _estimate_in(messages)
        pace_tokens = est_in + self._pace_out
        retry = None
        attempts = 0
        ts = time.time()
        t0 = time.perf_counter()
        while True:
            await limit.acquire()
            reserve = 0.0
            try:
                if pacer.active or pacer.not_before:
                    wait = pacer.reserve(pace_tokens)
                    while wait > 0:
                        await asyncio.sleep(wait)
                        wait = pacer.wait_for_pause()
                if self.budget_limit is not None:
                    reserve = self._reserve(est_in)
                    if reserve is None:
                        self.stop_reason = self.stop_reason or BUDGET
                        if attempts == 0:
                            self._unstarted(i)
                        else:
                            self._fail(i, BUDGET, f"row {i}: retry not sent, it could cross the "
                                                  "run's budget", attempts=attempts, call_ref=None)
                            self._mirror(i, None)
                        return
                if retry is None:
                    retry = self.policy.start()
                # Before counting the attempt: with the deadline gone, none is made.
                timeout = retry.attempt_timeout()
                attempts += 1
                retry.attempts = attempts    # next_delay's max_retries and backoff count on it
                self.requests_sent += 1
                self.in_flight += 1
                try:
                    result = await providers.run(self.route, messages, self.options, stream=False,
                                                 timeout=timeout, on_delta=None)
                finally:
                    self.in_flight -= 1
            except LLMError as exc:
                self.reserved -= reserve
                if exc.kind == RATE_LIMIT:
                    self.rate_limited += 1
                    limit.on_rate_limited()
                    pacer.pause(exc.retry_after)
                wait = retry.next_delay(exc) if retry is not None else None
                if wait is None or self.stop_reason is not None:
                    self._failed_call(i, exc, attempts, ts, t0)
                    return
                self.retries += 1
            except asyncio.CancelledError:
                self.reserved -= reserve
                if attempts:
                    self._interrupted_call(i, attempts, ts, t0)
                raise
            else:
                self.reserved -= reserve
                limit.on_success()
                self._succeeded(i, result, attempts, ts, t0, est_in)
                return
            finally:
                limit.release()
            await asyncio.sleep(wait)  # Retry-After or jittered backoff, without holding a slot

    def _reserve(self, est_in: int) -> float | None:
        cost = est_in * self.rate_in + self._budget_out * self.rate_out
        if self.spent_now + self.reserved + cost > self.budget_limit:
            return None
        self.reserved += cost
        return cost

    # -- outcomes ---------------------------------------------------------------------------

    def _call_row(self, i: int, ts: float, t0: float, attempts: int) -> dict:
        row = self._base_row.copy()
        msgs = self.messages[i]
        row["ts"] = ts
        row["prompt"] = msgs[-1].get("content")
        row["messages"] = msgs
        row["cache_key"] = self.keys[i] if self.cache_write else None
        row["row_key"] = str(i)
        row["attempts"] = attempts
        row["duration_ms"] = (time.perf_counter() - t0) * 1000
        return row

    def _succeeded(self, i: int, result, attempts: int, ts: float, t0: float, est_in: int) -> None:
        self.called_done += 1
        tin, tout = result.input_tokens, result.output_tokens
        if self.pacer.active:
            self.pacer.correct(est_in + self._pace_out, (tin or 0) + (tout or 0) if tin is not None else None)
        if self.rate_in is None:
            cost = None
        else:
            cost = (tin or 0) * self.rate_in + (tout or 0) * self.rate_out
        text = result.text
        row = self._call_row(i, ts, t0, attempts)
        row["response"] = text
        row["input_tokens"] = tin
        row["output_tokens"] = tout
        row["cost"] = cost
        row["unpriced"] = cost is None
        row["status"] = "ok"
        ref = ("new", len(self._calls))
        self._calls.append(row)
        self._new_call_rows.append(i)
        c = self.counters
        c["input_tokens"] += tin or 0
        c["output_tokens"] += tout or 0
        if cost is None:
            c["unpriced"] += 1
        else:
            c["cost"] += cost
            self.spent_now += cost
            self._spent_unflushed += cost
        if attempts > 1:
            self.attempts[i] = attempts
        value, problem = self._parse(text)
        self.texts[i] = text
        if problem is not None:
            from .schema import INVALID_OUTPUT

            self._fail(i, INVALID_OUTPUT, f"row {i}: {problem}", attempts=attempts, call_ref=ref)
        else:
            self.status[i] = "ok"
            self.values[i] = value
            c["done"] += 1
            c["ok"] += 1
            if self.cache_write and self.keys[i] is not None:
                self._cache_entries.append((self.keys[i], ref[1], text, tin, tout))
            self._job_rows.append((i, "ok", ref, 0, None, None, attempts, cost))
        self._mirror(i, ref)
        if len(self._job_rows) >= FLUSH_ROWS:
            self._wake_flusher()

    def _failed_call(self, i: int, exc: LLMError, attempts: int, ts: float, t0: float) -> None:
        self.called_done += 1
        row = self._call_row(i, ts, t0, attempts)
        partial = exc.partial or None
        row.update(status="incomplete" if partial else "error", error_kind=exc.kind,
                   error=exc.message, response=partial)
        ref = None
        if attempts:
            ref = ("new", len(self._calls))
            self._calls.append(row)
            self._new_call_rows.append(i)
        self.attempts[i] = attempts
        self._fail(i, exc.kind, f"row {i}: {exc.message}", attempts=attempts, call_ref=ref)
        self._mirror(i, ref)
        if len(self._job_rows) >= FLUSH_ROWS:
            self._wake_flusher()

    def _interrupted_call(self, i: int, attempts: int, ts: float, t0: float) -> None:
        row = self._call_row(i, ts, t0, attempts)
        row.update(status="interrupted", error_kind=INTERRUPTED, error="interrupted by the user")
        self._calls.append(row)
        self._new_call_rows.append(i)

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
            spent, self._spent_unflushed = self._spent_unflushed, 0.0
            if not (calls or rows or final):
                return
            counters = dict(self.counters)
            status = self.job_status if final else None
            self.session.spent += spent
            loop = asyncio.get_running_loop()
            # A write queued behind another run's write must not be dropped if this task is
            # cancelled (Ctrl-C, or the run ending): finish it, then let the cancellation go on.
            write = loop.run_in_executor(_writer_pool(), self._write, calls, entries, rows,
                                         owners, counters, status)
            try:
                ids = await asyncio.shield(write)
            except asyncio.CancelledError:
                await asyncio.wait([write])
                raise
            if calls:
                self.session._notify(dict(calls[-1], id=ids[-1], job_rows=len(calls)))

    def _write(self, calls, entries, rows, owners, counters, status) -> list:
        """(writer thread) One transaction; then each row learns its call's id, here and not in
        the awaiting coroutine, so a cancelled await cannot lose the ids (compare reads them)."""
        ids = store.write_progress(self.log, self.job_id, calls, entries, rows, counters, status)
        for i, call_id in zip(owners, ids):
            self.call_ids[i] = call_id
        return ids

    # -- reporting --------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """Numbers for a progress display (cheap; called a few times a second)."""
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
            "resumed": len(self.resumed), "not_run": self.n - c["done"],
            "input_tokens": c["input_tokens"], "output_tokens": c["output_tokens"],
            "cost": round(c["cost"], 10), "unpriced": c["unpriced"],
            "requests": self.requests_sent, "retries": self.retries,
            "rate_limited": self.rate_limited, "model": self.route.model,
            "duration_s": round((self.finished or time.monotonic()) - (self.started or 0), 3),
        }


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _loggable(options: dict) -> dict:
    """Options as logged: never credentials (the same rule as Session's single calls)."""
    from ..redact import loggable_options

    return loggable_options(options)


def _estimate_in(messages: list) -> int:
    chars = 0
    for m in messages:
        content = m.get("content")
        chars += len(content) if type(content) is str else len(str(content or ""))
    return chars // 4 + 4


def _rates(session, route) -> tuple:
    """USD per input and per output token (None, None when the model has no known price)."""
    from .. import pricing

    rin = pricing.cost_of(route.model, 1_000_000, 0, session.config.prices)
    if rin is None:
        return None, None
    rout = pricing.cost_of(route.model, 0, 1_000_000, session.config.prices)
    return rin / 1e6, (rout or 0.0) / 1e6


def _headroom(session, budget: float | None) -> float | None:
    """USD this run may spend: its own budget, cut to what the session/day budgets leave."""
    from .. import budget as budgets

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
