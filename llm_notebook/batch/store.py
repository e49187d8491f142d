"""The SQL of batch jobs (tables `jobs` and `job_rows`, migration m010_batch_jobs).

A flush writes finished rows' calls, their cache entries, their job rows and the job's counters
in one `BEGIN IMMEDIATE` transaction, so after a crash a row is either fully recorded or will be
called again on resume: never half.
"""

from __future__ import annotations

import json
import time
from typing import Iterable, Sequence

# jobs.status: running | done | interrupted (Ctrl-C) | cancelled | budget (stopped before crossing
# it) | stopped (on_error="raise") | failed (an unexpected error; finished rows are kept).
_JOB_COLUMNS = ("id", "created", "updated", "finished", "status", "fingerprint", "model",
                "prompt", "system", "options", "schema", "rows", "done", "ok", "errors",
                "cached", "input_tokens", "output_tokens", "cost", "unpriced", "notebook",
                "cell_id", "kernel_session")
COUNTERS = ("done", "ok", "errors", "cached", "input_tokens", "output_tokens", "cost", "unpriced")
_INSERT_JOB_ROW = ("INSERT OR REPLACE INTO job_rows (job_id, row, status, call_id, cached, "
                   "error_kind, error, attempts, cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
# A job left 'running' this long without a flush belongs to a kernel that died: resumable.
STALE_AFTER = 60.0


def create_job(log, job: dict) -> None:
    now = time.time()
    row = dict(job, created=now, updated=now, status="running")
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
    if job["status"] == "running" and job["kernel_session"] != kernel_session \
            and time.time() - job["updated"] < STALE_AFTER:
        return None  # another live kernel is running it right now
    return job


def reopen_job(log, job_id: str, kernel_session: str, notebook: str | None,
               cell_id: str | None) -> None:
    with log.write() as db:
        db.execute("UPDATE jobs SET status = 'running', finished = NULL, updated = ?, "
                   "kernel_session = ?, notebook = coalesce(?, notebook), "
                   "cell_id = coalesce(?, cell_id) WHERE id = ?",
                   (time.time(), kernel_session, notebook, cell_id, job_id))


def finished_rows(log, job_id: str) -> list[dict]:
    """The job's rows that have an answer, with the answer's text and usage."""
    rows = log.read(
        "SELECT r.row, r.call_id, r.cached, r.attempts, r.cost, c.response, c.input_tokens, "
        "c.output_tokens, c.replayed FROM job_rows r JOIN calls c ON c.id = r.call_id "
        "WHERE r.job_id = ? AND r.status = 'ok'", (job_id,))
    return [dict(r) for r in rows]


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


def jobs(log, limit: int = 50) -> list[dict]:
    return log.rows_where("jobs", select="id, created, finished, status, model, prompt, rows, "
                          "done, ok, errors, cached, input_tokens, output_tokens, cost, unpriced, "
                          "notebook", order_by="created DESC", limit=int(limit))


def job_rows(log, job_id: str, *, errors_only: bool = False) -> list[dict]:
    """Every recorded row of a job with its prompt and answer (from the call, if any)."""
    where = "AND r.status != 'ok'" if errors_only else ""
    return [dict(r) for r in log.read(
        "SELECT r.row, r.status, r.error_kind, r.error, r.attempts, r.cached, r.cost, r.call_id, "
        "c.prompt, c.response FROM job_rows r LEFT JOIN calls c ON c.id = r.call_id "
        f"WHERE r.job_id = ? {where} ORDER BY r.row", (job_id,))]

