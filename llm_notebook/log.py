"""The SQLite log: the source of truth for history, usage, cost, cache and conversations.

All SQL lives here (widgets, the server extension and the Session call these functions).
Concurrency: WAL, a busy timeout, and every write in a `BEGIN IMMEDIATE` transaction: a deferred
read-then-write transaction can fail or lose rows when several kernels write at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from typing import Any, Iterable, Sequence

from . import migrations

CALL_COLUMNS = (
    "ts", "model", "provider", "endpoint", "system", "prompt", "messages", "options", "response",
    "input_tokens", "output_tokens", "cost", "unpriced", "duration_ms", "ttft_ms", "status",
    "error_kind", "error", "attempts", "cache_key", "cached", "conversation_id", "parent_id",
    "notebook", "cell_id", "job_id", "row_key", "kernel_session",
)
_INSERT_CALL = (
    f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in CALL_COLUMNS)})"
)
_BUSY_TIMEOUT_MS = 30_000


def _json(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


class Log:
    """One connection to the log file, shared by the threads of this process under a lock."""

    def __init__(self, path: str):
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000,
                                     isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        migrations.install_functions(self._conn)
        self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if path != ":memory:":
            self._set_wal()
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        with self.write() as db:
            migrations.apply(db)

    def _set_wal(self) -> None:
        # Switching to WAL needs a moment without other writers; retry while another kernel is
        # creating the same file.
        for _ in range(50):
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError:
                time.sleep(0.1)
        self._conn.execute("PRAGMA journal_mode = WAL")

    # -- transactions ---------------------------------------------------------------------------

    def write(self):
        return _WriteTransaction(self)

    def read(self, sql: str, params: Sequence | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- calls ----------------------------------------------------------------------------------

    @staticmethod
    def _call_values(row: dict) -> tuple:
        values = []
        for col in CALL_COLUMNS:
            v = row.get(col)
            if col in ("messages", "options"):
                v = _json(v)
            elif col in ("unpriced", "cached"):
                v = int(bool(v))
            elif col == "attempts":
                v = int(v or 1)
            elif col == "ts" and v is None:
                v = time.time()
            values.append(v)
        return tuple(values)

    def insert_calls(self, rows: Iterable[dict], *, cache_entries: Iterable[tuple] = ()) -> list[int]:
        """Write call rows (and cache entries) in one transaction; returns the new ids in order.

        A cache entry is (key, row_index_or_call_id, response, input_tokens, output_tokens); a
        row index refers to `rows` and is replaced by that row's new id.
        """
        rows = list(rows)
        ids: list[int] = []
        with self.write() as db:
            for row in rows:
                cur = db.execute(_INSERT_CALL, self._call_values(row))
                ids.append(cur.lastrowid)
            for key, ref, response, tin, tout in cache_entries:
                call_id = ids[ref] if isinstance(ref, int) and ref < len(ids) else ref
                db.execute(
                    "INSERT OR REPLACE INTO cache (key, call_id, response, input_tokens, "
                    "output_tokens, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (key, call_id, response, tin, tout, time.time()),
                )
        return ids

    def insert_call(self, row: dict, *, cache_key: str | None = None) -> int:
        """Write one call; if cache_key is given and the call is ok, also store it in the cache."""
        entries = []
        if cache_key and row.get("status") == "ok" and not row.get("cached"):
            entries.append((cache_key, 0, row.get("response") or "",
                            row.get("input_tokens"), row.get("output_tokens")))
        return self.insert_calls([row], cache_entries=entries)[0]

    def call(self, call_id: int) -> dict | None:
        rows = self.read("SELECT * FROM calls WHERE id = ?", (call_id,))
        return dict(rows[0]) if rows else None

    def count_calls(self, **where: Any) -> int:
        clause, params = _where(where)
        return self.read(f"SELECT count(*) FROM calls {clause}", params)[0][0]

    # -- cache ----------------------------------------------------------------------------------

    def cache_get(self, key: str) -> dict | None:
        rows = self.read("SELECT * FROM cache WHERE key = ?", (key,))
        return dict(rows[0]) if rows else None

    def cache_get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        """Look up many keys at once (batch runs check all rows before sending any)."""
        found: dict[str, dict] = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), 900):  # SQLite's bound-parameter limit
            chunk = keys[start:start + 900]
            marks = ",".join("?" for _ in chunk)
            for row in self.read(f"SELECT * FROM cache WHERE key IN ({marks})", chunk):
                found[row["key"]] = dict(row)
        return found

    def cache_clear(self) -> int:
        with self.write() as db:
            return db.execute("DELETE FROM cache").rowcount

    # -- conversations --------------------------------------------------------------------------

    def create_conversation(self, conv_id: str, *, name: str | None = None,
                            head_id: int | None = None, forked_from: int | None = None,
                            model: str | None = None, system: str | None = None) -> None:
        with self.write() as db:
            db.execute(
                "INSERT INTO conversations (id, name, created, head_id, forked_from, model, system)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conv_id, name, time.time(), head_id, forked_from, model, system),
            )

    def conversation(self, *, conv_id: str | None = None, name: str | None = None) -> dict | None:
        if conv_id is not None:
            rows = self.read("SELECT * FROM conversations WHERE id = ?", (conv_id,))
        else:
            rows = self.read("SELECT * FROM conversations WHERE name = ?", (name,))
        return dict(rows[0]) if rows else None

    def set_head(self, conv_id: str, head_id: int | None) -> None:
        with self.write() as db:
            db.execute("UPDATE conversations SET head_id = ? WHERE id = ?", (head_id, conv_id))

    def conversations(self, limit: int = 100) -> list[dict]:
        return [dict(r) for r in self.read(
            "SELECT c.*, (SELECT count(*) FROM calls WHERE conversation_id = c.id) AS calls "
            "FROM conversations c ORDER BY created DESC LIMIT ?", (limit,))]

    def thread(self, head_id: int | None) -> list[dict]:
        """The calls from the root of a branch to `head_id`, oldest first."""
        if head_id is None:
            return []
        rows = self.read(
            """
            WITH RECURSIVE chain(id, parent_id, depth) AS (
                SELECT id, parent_id, 0 FROM calls WHERE id = ?
                UNION ALL
                SELECT c.id, c.parent_id, chain.depth + 1
                FROM calls c JOIN chain ON c.id = chain.parent_id
            )
            SELECT calls.* FROM chain JOIN calls ON calls.id = chain.id ORDER BY chain.depth DESC
            """,
            (head_id,),
        )
        return [dict(r) for r in rows]

    def children(self, parent_id: int | None, conversation_ids: Sequence[str] | None = None) -> list[dict]:
        """Calls answering the same history (branches): replies whose parent is `parent_id`."""
        if parent_id is None:
            if not conversation_ids:
                return []
            marks = ",".join("?" for _ in conversation_ids)
            rows = self.read(f"SELECT * FROM calls WHERE parent_id IS NULL AND conversation_id IN "
                             f"({marks}) ORDER BY id", list(conversation_ids))
        else:
            rows = self.read("SELECT * FROM calls WHERE parent_id = ? ORDER BY id", (parent_id,))
        return [dict(r) for r in rows]

    # -- history --------------------------------------------------------------------------------

    def history_rows(self, *, search: str | None = None, model: str | None = None,
                     notebook: str | None = None, conversation_id: str | None = None,
                     limit: int = 100, offset: int = 0) -> list[dict]:
        where, params = [], []
        if search:
            where.append("calls.id IN (SELECT rowid FROM calls_fts WHERE calls_fts MATCH ?)")
            params.append(fts_query(search))
        if model:
            where.append("calls.model = ?")
            params.append(model)
        if notebook:
            where.append("calls.notebook = ?")
            params.append(notebook)
        if conversation_id:
            where.append("calls.conversation_id = ?")
            params.append(conversation_id)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = self.read(
            f"SELECT id, ts, model, prompt, response, status, error_kind, error, input_tokens, "
            f"output_tokens, cost, unpriced, duration_ms, ttft_ms, cached, conversation_id, "
            f"parent_id, notebook, cell_id, job_id FROM calls {clause} "
            f"ORDER BY id DESC LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        return [dict(r) for r in rows]

    # -- usage ----------------------------------------------------------------------------------

    def usage_rows(self, *, by: str = "model", since: float | None = None,
                   until: float | None = None, model: str | None = None,
                   notebook: str | None = None) -> list[dict]:
        """Totals grouped by model, day, hour or notebook, read from the hourly rollup."""
        group = {
            "model": "model",
            "notebook": "notebook",
            "hour": "hour",
            "day": "hour / 24",
        }.get(by)
        if group is None:
            raise ValueError(f"usage(by={by!r}): choose one of model, day, hour, notebook")
        where, params = [], []
        if since is not None:
            where.append("hour >= ?")
            params.append(int(since // 3600))
        if until is not None:
            where.append("hour <= ?")
            params.append(int(until // 3600))
        if model:
            where.append("model = ?")
            params.append(model)
        if notebook is not None:
            where.append("notebook = ?")
            params.append(notebook)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = [dict(r) for r in self.read(
            f"SELECT {group} AS grp, sum(calls) AS calls, sum(input_tokens) AS input_tokens, "
            f"sum(output_tokens) AS output_tokens, sum(cost) AS cost, sum(unpriced) AS unpriced, "
            f"sum(errors) AS errors, sum(cached) AS cached, sum(duration_ms) AS duration_ms "
            f"FROM usage_hourly {clause} GROUP BY grp ORDER BY grp", params)]
        hist = self.read(
            f"SELECT {group} AS grp, metric, bucket, sum(n) AS n FROM usage_latency {clause} "
            f"GROUP BY grp, metric, bucket ORDER BY grp, metric, bucket", params)
        by_group: dict[Any, dict[str, list[tuple[int, int]]]] = {}
        for h in hist:
            by_group.setdefault(h["grp"], {}).setdefault(h["metric"], []).append((h["bucket"], h["n"]))
        for r in rows:
            metrics = by_group.get(r["grp"], {})
            r["latency_p50_ms"] = _percentile(metrics.get("duration"), 0.50)
            r["latency_p95_ms"] = _percentile(metrics.get("duration"), 0.95)
            r["ttft_p50_ms"] = _percentile(metrics.get("ttft"), 0.50)
        return rows


class _WriteTransaction:
    """`with log.write() as db:` — BEGIN IMMEDIATE ... COMMIT, rolled back on error.

    busy_timeout makes BEGIN IMMEDIATE wait for other writers; the loop covers the rare
    SQLITE_BUSY that SQLite returns without waiting (e.g. during a WAL checkpoint race).
    """

    def __init__(self, log: Log):
        self.log = log

    def __enter__(self) -> sqlite3.Connection:
        self.log._lock.acquire()
        conn = self.log._conn
        delay = 0.01
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return conn
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    self.log._lock.release()
                    raise
                if time.monotonic() > deadline:
                    self.log._lock.release()
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def __exit__(self, exc_type, exc, tb) -> None:
        conn = self.log._conn
        try:
            if exc_type is None:
                conn.execute("COMMIT")
            else:
                conn.execute("ROLLBACK")
        finally:
            self.log._lock.release()


def _where(filters: dict[str, Any]) -> tuple[str, list]:
    parts, params = [], []
    for col, value in filters.items():
        if col not in CALL_COLUMNS and col != "id":
            raise ValueError(f"unknown column {col!r}")
        if value is None:
            parts.append(f"{col} IS NULL")
        else:
            parts.append(f"{col} = ?")
            params.append(value)
    return (("WHERE " + " AND ".join(parts)) if parts else "", params)


def fts_query(text: str) -> str:
    """Turn user search text into a safe FTS5 query: every word must appear (prefix match)."""
    words = [w.replace('"', '""') for w in text.split() if w.strip()]
    return " ".join(f'"{w}"*' for w in words) or '""'


def _percentile(buckets: list[tuple[int, int]] | None, q: float) -> float | None:
    """Estimate a percentile from a latency histogram (middle of the bucket holding it)."""
    if not buckets:
        return None
    total = sum(n for _, n in buckets)
    rank = q * total
    seen = 0
    for bucket, n in sorted(buckets):
        seen += n
        if seen >= rank:
            return migrations.bucket_mid_ms(bucket)
    return migrations.bucket_mid_ms(sorted(buckets)[-1][0])
