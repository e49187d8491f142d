"""The SQL of batch jobs (tables `jobs`, `job_rows` and `job_batches`; migrations m010, m060).

A flush writes finished rows' calls, their cache entries, their job rows and the job's counters
in one `BEGIN IMMEDIATE` transaction, so after a crash a row is either fully recorded or will be
called again on resume: never half.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Iterable, Iterator, Sequence

# jobs.status: queued (a background job waiting for its turn) | running | done | interrupted
# (Ctrl-C, or its kernel died) | cancelled | budget (stopped before crossing it) | stopped
# (on_error="raise") | failed (an unexpected error, or a provider batch that failed; finished
# rows are kept) | expired (a provider batch ran out of its 24 h).
ACTIVE = ("queued", "running")
_JOB_COLUMNS = ("id", "created", "updated", "finished", "status", "fingerprint", "model",
                "prompt", "system", "options", "schema", "rows", "done", "ok", "errors",
                "cached", "input_tokens", "output_tokens", "cost", "unpriced", "notebook",
                "cell_id", "kernel_session", "via", "background", "owner_host", "owner_pid")
_HOST = socket.gethostname()
COUNTERS = ("done", "ok", "errors", "cached", "input_tokens", "output_tokens", "cost", "unpriced")
_INSERT_JOB_ROW = ("INSERT OR REPLACE INTO job_rows (job_id, row, status, call_id, cached, "
                   "error_kind, error, attempts, cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
# A job left 'running' this long without a flush belongs to a kernel that died: resumable.
STALE_AFTER = 60.0


def create_job(log, job: dict, *, status: str = "running") -> None:
    now = time.time()
    row = dict(job, created=now, updated=now, status=status, owner_host=_HOST,
               owner_pid=os.getpid())
    for key in ("options", "schema"):
        if row.get(key) is not None and not isinstance(row[key], str):
            row[key] = json.dumps(row[key], sort_keys=True, default=str)
    with log.write():
        log.db["jobs"].insert({c: row[c] for c in _JOB_COLUMNS if c in row})


def resumable_job(log, fingerprint: str, kernel_session: str) -> dict | None:
    """The latest unfinished job with this fingerprint, if any (interrupted, or crashed)."""
    rows = log.rows_where("jobs", "fingerprint = ?", [fingerprint], order_by="created DESC",
                          limit=1)
    if not rows:
        return None
    job = rows[0]
    if job["status"] == "done":
        return None
    if job["status"] in ACTIVE and job["kernel_session"] != kernel_session \
            and owner_alive(job):
        return None  # another live kernel is running it right now
    return job


def owner_alive(job: dict) -> bool:
    """Is the process that runs this job still there? A process of this machine is asked
    directly (a restarted kernel is known at once); one elsewhere counts as alive until the job
    has gone STALE_AFTER seconds without a write."""
    host, pid = job.get("owner_host"), job.get("owner_pid")
    if host == _HOST and pid:
        if pid == os.getpid():
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, OSError, ValueError):
            return True
        return True
    return time.time() - (job.get("updated") or 0) < STALE_AFTER


def reopen_job(log, job_id: str, kernel_session: str, notebook: str | None,
               cell_id: str | None, *, status: str = "running", background: bool = False) -> None:
    with log.write() as db:
        db.execute("UPDATE jobs SET status = ?, finished = NULL, updated = ?, "
                   "kernel_session = ?, notebook = coalesce(?, notebook), "
                   "cell_id = coalesce(?, cell_id), background = ?, owner_host = ?, "
                   "owner_pid = ? WHERE id = ?",
                   (status, time.time(), kernel_session, notebook, cell_id, int(background),
                    _HOST, os.getpid(), job_id))


def mark_running(log, job_id: str) -> None:
    """A queued job starts (or a started one starts again: the same statement, harmless)."""
    with log.write() as db:
        db.execute("UPDATE jobs SET status = 'running', updated = ?, owner_host = ?, "
                   "owner_pid = ? WHERE id = ? AND status IN ('queued', 'running')",
                   (time.time(), _HOST, os.getpid(), job_id))


def set_status(log, job_id: str, status: str) -> None:
    """A job that ends without a run to write its last flush (cancelled while queued)."""
    with log.write() as db:
        db.execute("UPDATE jobs SET status = ?, updated = ?, finished = ? WHERE id = ?",
                   (status, time.time(), time.time(), job_id))


FINISHED_PAGE = 10_000


def finished_rows(log, job_id: str) -> Iterator[dict]:
    """The job's rows that have an answer, with the answer's text and usage, a page at a time
    (a resumed job of a million rows is never one list)."""
    after = -1
    while True:
        page = log._tuples(
            "SELECT r.row, r.call_id, r.cached, r.attempts, r.cost, c.response, c.input_tokens, "
            "c.output_tokens, c.replayed FROM job_rows r JOIN calls c ON c.id = r.call_id "
            "WHERE r.job_id = ? AND r.status = 'ok' AND r.row > ? ORDER BY r.row LIMIT ?",
            (job_id, after, FINISHED_PAGE))
        for row, call_id, cached, attempts, cost, response, tin, tout, replayed in page:
            yield {"row": row, "call_id": call_id, "cached": cached, "attempts": attempts,
                   "cost": cost, "response": response, "input_tokens": tin,
                   "output_tokens": tout, "replayed": replayed}
        if len(page) < FINISHED_PAGE:
            return
        after = page[-1][0]


def answers(log, job_id: str) -> Iterator[tuple[int, str | None]]:
    """(row, answer) of the job's answered rows in row order, a page at a time."""
    after = -1
    while True:
        page = log._tuples(
            "SELECT r.row, c.response FROM job_rows r JOIN calls c ON c.id = r.call_id "
            "WHERE r.job_id = ? AND r.status = 'ok' AND r.row > ? ORDER BY r.row LIMIT ?",
            (job_id, after, FINISHED_PAGE))
        yield from page
        if len(page) < FINISHED_PAGE:
            return
        after = page[-1][0]


def write_progress(log, job_id: str, calls: Sequence[dict], cache_entries: Iterable[tuple],
                   job_rows: Sequence[tuple], counters: dict, status: str | None = None) -> list[int]:
    """One transaction: new calls (+ cache entries), job rows, the job's counters.

    A job row is (row, status, call_ref, cached, error_kind, error, attempts, cost) where
    call_ref is ("new", index into `calls`), an existing call id, or None.
    """
    now = time.time()
    with log.write() as db:
        ids = log.insert_calls_into(db, calls, cache_entries=cache_entries)
        values = []
        for row, row_status, ref, cached, kind, error, attempts, cost in job_rows:
            call_id = ids[ref[1]] if type(ref) is tuple else ref
            values.append((job_id, row, row_status, call_id, cached, kind, error, attempts, cost))
        if values:
            db.executemany(_INSERT_JOB_ROW, values)
        sets = ", ".join(f"{c} = ?" for c in COUNTERS)
        params = [counters.get(c, 0) for c in COUNTERS]
        if status is not None:
            sets += ", status = ?, finished = ?"
            params += [status, now if status != "running" else None]
        db.execute(f"UPDATE jobs SET {sets}, updated = ? WHERE id = ?", [*params, now, job_id])
    return ids


def job(log, job_id: str) -> dict | None:
    rows = log.rows_where("jobs", "id = ?", [job_id])
    if not rows:
        rows = log.rows_where("jobs", "id LIKE ?", [job_id + "%"], order_by="created DESC",
                              limit=2)
        if len(rows) != 1:
            return None
    return rows[0]


LISTED = ("id", "created", "finished", "status", "via", "background", "model", "prompt", "rows",
          "done", "ok", "errors", "cached", "input_tokens", "output_tokens", "cost", "unpriced",
          "notebook")


def jobs(log, limit: int = 50, *, active: bool = False) -> list[dict]:
    where = "status IN ('queued', 'running')" if active else None
    return log.rows_where("jobs", where, select=", ".join(LISTED), order_by="created DESC",
                          limit=int(limit))


def ended_background_jobs(log, after: float, limit: int = 50) -> list[dict]:
    """Background jobs that finished after `after` (unix time), oldest first: what the lab
    extension announces."""
    return log.rows_where("jobs", "background = 1 AND finished > ? AND status NOT IN "
                          "('queued', 'running')", [after],
                          select="id, finished, status, via, model, prompt, rows, done, ok, "
                                 "errors, cached, cost, unpriced, notebook",
                          order_by="finished", limit=int(limit))


# -- provider batches (job_batches) ------------------------------------------------------------

def add_provider_batch(log, job_id: str, part: dict) -> None:
    now = time.time()
    with log.write():
        log.db["job_batches"].insert(dict(part, job_id=job_id, submitted=now, updated=now,
                                          recorded=0))


def update_provider_batch(log, job_id: str, part: int, **fields) -> None:
    with log.write() as db:
        sets = ", ".join(f"{k} = ?" for k in fields)
        db.execute(f"UPDATE job_batches SET {sets}, updated = ? WHERE job_id = ? AND part = ?",
                   [*fields.values(), time.time(), job_id, part])


def provider_batches(log, job_id: str) -> list[dict]:
    return log.rows_where("job_batches", "job_id = ?", [job_id], order_by="part")


def job_rows(log, job_id: str, *, errors_only: bool = False) -> list[dict]:
    """Every recorded row of a job with its prompt and answer (from the call, if any)."""
    where = "AND r.status != 'ok'" if errors_only else ""
    return [dict(r) for r in log.read(
        "SELECT r.row, r.status, r.error_kind, r.error, r.attempts, r.cached, r.cost, r.call_id, "
        "c.prompt, c.response FROM job_rows r LEFT JOIN calls c ON c.id = r.call_id "
        f"WHERE r.job_id = ? {where} ORDER BY r.row", (job_id,))]

