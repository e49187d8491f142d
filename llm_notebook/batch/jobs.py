"""Batch jobs as users see them: `session.jobs()` (a DataFrame) and `session.job(id)` (a Job).

A Job is read from the log, and, while it runs in this kernel in the background, from its run
(background.py): its status and progress are live, `wait()` waits for it, `result()` gives what
the foreground call would have returned, `cancel()` stops it. A job of another (or a dead)
kernel is what the log says; a Batch API job whose kernel is gone is picked up where it is:
`result()` polls its provider batches and logs their answers (provider_batch.py).
"""

from __future__ import annotations

import threading
import time

from . import store
from ..errors import UserError


class JobNotFound(UserError, KeyError):
    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


WAIT_POLL_S = 0.1            # a wait checks this often (and stays interruptible)
LOG_POLL_S = 0.5             # a job another kernel runs: how often its record is read


class Job:
    """One batch job in the log. `status`, `progress`, `wait()`, `result()`, `cancel()`,
    `errors()`, `export(path)`."""

    def __init__(self, session, job_id: str):
        self.session = session
        record = store.job(session.log, job_id)
        if record is None:
            raise JobNotFound(f"no batch job {job_id!r} in the log; session.jobs() lists them")
        self.id = record["id"]

    # -- what it is -------------------------------------------------------------------------

    @property
    def _live(self):
        from .background import queue_of

        return queue_of(self.session).get(self.id)

    @property
    def info(self) -> dict:
        """The job's record: status, rows, done, ok, errors, cached, tokens, cost, ..."""
        return store.job(self.session.log, self.id)

    @property
    def status(self) -> str:
        """queued, running, done, cancelled, interrupted, failed, expired, budget or stopped. A
        job whose kernel died says interrupted."""
        live = self._live
        if live is not None:
            return live.status
        info = self.info
        if info["status"] in store.ACTIVE and not store.owner_alive(info):
            return "interrupted"
        return info["status"]

    @property
    def progress(self) -> dict:
        """done / total rows, ok, errors, cached, cost (USD), status; `provider` for a Batch
        API job (the provider's status and counts)."""
        live = self._live
        if live is not None:
            s = live.run.snapshot()
            return {k: s.get(k) for k in ("done", "total", "ok", "errors", "cached", "cost",
                                          "status", "provider")}
        info = self.info
        return {"done": info["done"], "total": info["rows"], "ok": info["ok"],
                "errors": info["errors"], "cached": info["cached"], "cost": info["cost"],
                "status": self.status, "provider": None}

    @property
    def done(self) -> bool:
        return self.status not in store.ACTIVE

    # -- waiting and results ----------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> "Job":
        """Block until the job ends (or `timeout` seconds pass: TimeoutError). Ctrl-C stops the
        waiting, not the job (job.cancel() stops the job)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        live = self._live
        try:
            if live is not None:
                while not live.ended.wait(WAIT_POLL_S):
                    _check_deadline(deadline, timeout, self.id)
                if live.display is not None and threading.current_thread() is threading.main_thread():
                    live.display.show_again()
                return self
            if self._waits_at_the_provider():
                self._pick_up()
                return self
            while self.info["status"] in store.ACTIVE and store.owner_alive(self.info):
                _check_deadline(deadline, timeout, self.id)
                time.sleep(LOG_POLL_S)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"stopped waiting; job {self.id} goes on (job.cancel() stops "
                                    "it)") from None
        return self

    def _waits_at_the_provider(self) -> bool:
        """A Batch API job no run of this kernel is watching, whose provider batches may
        still hold answers: its kernel died, or its run was interrupted."""
        info = self.info
        if info.get("via") != "batch_api":
            return False
        orphaned = info["status"] in store.ACTIVE and not store.owner_alive(info)
        if not (orphaned or info["status"] == "interrupted"):
            return False
        return any(not p["recorded"] for p in store.provider_batches(self.session.log, self.id))

    def _pick_up(self) -> None:
        """Poll and log the provider batches of a Batch API job whose kernel is gone."""
        from .. import runner
        from . import provider_batch

        run = provider_batch.pick_up(self.session, self.info)
        runner.run(run.run())

    def result(self, timeout: float | None = None):
        """What the call that started the job returns (a Series, a DataFrame with a schema, a
        BatchResult for session.batch), once it has ended. For a job this kernel did not start:
        a Series of the answers the log holds (<NA> for rows without one)."""
        self.wait(timeout)
        live = self._live
        if live is not None:
            if live.error is not None:
                raise live.error
            from . import api

            api.warn_outcome(live.run)
            return live.shape(live.run)
        return self._logged_result()

    def _logged_result(self):
        import pandas as pd

        info = self.info
        texts = [None] * info["rows"]
        for r in store.job_rows(self.session.log, self.id):
            if r["status"] == "ok" and 0 <= r["row"] < len(texts):
                texts[r["row"]] = r["response"]
        index = self._index()
        if index is None or len(index) != len(texts):
            index = None
        return pd.Series(pd.array(texts, dtype="string"), index=index)

    def cancel(self) -> "Job":
        """Stop the job: a queued one never starts, a running one starts no more rows (rows in
        flight finish and are kept; a provider batch is cancelled at the provider). The same
        call again sends the rows without an answer."""
        live = self._live
        if live is None:
            if self.info["status"] in store.ACTIVE and store.owner_alive(self.info):
                raise UserError(f"job {self.id} runs in another kernel: stop it there")
            return self
        live.cancel()
        return self

    # -- rows -------------------------------------------------------------------------------

    def _index(self):
        from .api import recent_index

        return recent_index(self.id)

    def errors(self):
        """A DataFrame of the rows that failed: kind, message, attempts, prompt, reply.

        Indexed by the input's index labels when the job ran in this kernel, else by row number.
        """
        import pandas as pd

        rows = store.job_rows(self.session.log, self.id, errors_only=True)
        frame = pd.DataFrame(rows, columns=["row", "status", "error_kind", "error", "attempts",
                                            "cached", "cost", "call_id", "prompt", "response"])
        frame = frame.drop(columns=["status", "cached", "cost"])
        index = self._index()
        if index is not None and len(frame) and frame["row"].max() < len(index):
            frame.index = index[frame["row"].to_numpy()]
        else:
            frame.index = frame["row"].to_numpy()
        return frame

    def to_pandas(self):
        """One row per input row: the input's columns (when this kernel ran the job), the
        answer (or the schema's fields), status (ok, error, not run) and error."""
        from .export import job_frame

        return job_frame(self)

    def export(self, path: str, format: str | None = None) -> str:
        """Write `to_pandas()` to `path` as CSV, Parquet or JSONL (from its extension, or
        `format`); returns the path. CSV cells are kept from running as spreadsheet formulas."""
        from .export import write

        return write(self.to_pandas(), path, format)

    def __repr__(self) -> str:
        i = self.info
        p = self.progress
        return (f"<Job {i['id']} {self.status}: {p['done']}/{i['rows']} rows done, {p['ok']} ok, "
                f"{p['errors']} errors, {p['cached']} cached, ${p['cost'] or 0:.4f} · {i['model']}"
                + (" · Batch API" if i.get("via") == "batch_api" else "") + ">")


def _check_deadline(deadline, timeout, job_id: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(f"job {job_id} is still running after {timeout:g} s; job.wait() "
                           "again, or job.cancel()")


def jobs_frame(session, limit: int = 50, *, active: bool = False):
    """Recent batch jobs, newest first: id, created, status, via, model, rows, done, errors,
    cost... A job running in this kernel shows its live numbers; `active=True` lists only the
    queued and running ones."""
    import pandas as pd

    from .background import queue_of

    rows = store.jobs(session.log, limit=limit, active=active)
    queue = queue_of(session)
    for r in rows:
        live = queue.get(r["id"])
        if live is not None:
            s = live.run.snapshot()
            r.update(status=s["status"], done=s["done"], ok=s["ok"], errors=s["errors"],
                     cached=s["cached"], cost=s["cost"])
        elif r["status"] in store.ACTIVE:
            record = store.job(session.log, r["id"])
            if record is not None and not store.owner_alive(record):
                r["status"] = "interrupted"
    if active:
        rows = [r for r in rows if r["status"] in store.ACTIVE]
    frame = pd.DataFrame(rows, columns=list(store.LISTED))
    frame["background"] = frame["background"].astype(bool)
    for col in ("created", "finished"):
        frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
    return frame
