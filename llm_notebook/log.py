"""The SQLite log: the source of truth for history, usage, cost, cache and conversations.

All SQL lives here (widgets, the server extension and the Session call these functions).
Concurrency: WAL, a busy timeout, and every write in a `BEGIN IMMEDIATE` transaction: a deferred
read-then-write transaction can fail or lose rows when several kernels write at once.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from typing import Any, Iterable, Sequence

from . import log_files, migrations

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
# The columns of a history row (history_rows), also those of an empty history DataFrame.
HISTORY_COLUMNS = (
    "id", "ts", "model", "prompt", "response", "status", "error_kind", "error", "input_tokens",
    "output_tokens", "cost", "unpriced", "duration_ms", "ttft_ms", "cached", "conversation_id",
    "parent_id", "notebook", "cell_id", "job_id",
)


def _json(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


class Log:
    """One connection to the log file, shared by the threads of this process under a lock."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.RLock()
        try:
            if path != ":memory:":
                log_files.prepare(path)  # folder 0700, file 0600; warns if others can read it
            self._conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000,
                                         isolation_level=None, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # Reading the schema opens the file: a bad path fails here, at once, with a message
            # that says which setting to fix (not SQLite's "unable to open database file").
            self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except (OSError, sqlite3.DatabaseError) as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise
            raise _unavailable(path, exc) from None
        self._conn.row_factory = sqlite3.Row
        migrations.install_functions(self._conn)
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
        with self.write() as db:
            return self.insert_calls_into(db, rows, cache_entries=cache_entries)

    def insert_calls_into(self, db: sqlite3.Connection, rows: Iterable[dict], *,
                          cache_entries: Iterable[tuple] = ()) -> list[int]:
        """insert_calls inside a transaction the caller holds (`with log.write() as db:`), so
        call rows can commit atomically with other rows (e.g. a batch job's progress)."""
        ids: list[int] = []
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
            f"SELECT {', '.join(HISTORY_COLUMNS)} FROM calls {clause} "
            f"ORDER BY id DESC LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        return [dict(r) for r in rows]

    # -- usage ----------------------------------------------------------------------------------
    # Usage reads the rollups the triggers keep (m003, m040, m041), never all of `calls`: a
    # query's time range is split into whole UTC days (daily rollups), the whole hours left at
    # its ends (hourly rollups) and the partial hours at its edges (`calls`, by its ts index),
    # so its bounds are exact and a million calls answer in milliseconds. Each part is grouped
    # by SQL; llm_notebook.rollup adds the parts together.

    def usage_rollup(self, by: str = "model", *, since: float | None = None,
                     until: float | None = None, model: str | None = None,
                     notebook: str | None = None):
        """A rollup.Rollup of the calls with since <= ts < until (unix times; None: unbounded),
        of one model and one notebook ('' = calls made outside a notebook) when given, grouped
        by model, notebook, day, hour, conversation, job, or "total" (one group)."""
        from .rollup import BY, Rollup

        if by not in BY and by != "total":
            raise ValueError(f"usage(by={by!r}): choose one of {', '.join(BY)}")
        if since is not None and until is not None and since > until:
            raise ValueError("'since' is after 'until'")
        model = model or None  # "" (e.g. an empty filter field) means every model
        group_by_key = by in ("conversation", "job")
        days, hours, raw = _split_range(since, until, use_days=by != "hour" and not group_by_key)
        parts: list[tuple] = []
        if days is not None:
            parts += self._rollup_part(_daily_table(by, model, notebook), _DAILY_GROUPS[by],
                                       "day", days, model, notebook)
        if group_by_key and hours == [(None, None)] and model is None and notebook is None:
            hours = []  # the whole log: one row per conversation or job
            parts += self._rollup_part("usage_group_totals", _KEY_GROUPS, "", (None, None),
                                       None, None, kind=by)
        for span in hours:
            if group_by_key:
                parts += self._rollup_part("usage_groups", _KEY_GROUPS, "hour", span, model,
                                           notebook, kind=by)
            elif model is None and notebook is None and by in _HOUR_TOTAL_GROUPS:
                parts += self._rollup_part("usage_hour_totals", _HOUR_TOTAL_GROUPS[by], "hour",
                                           span, None, None)
            else:
                parts += self._rollup_part("usage_hourly", _HOURLY_GROUPS[by], "hour", span,
                                           model, notebook)
        for low, high in raw:
            parts += self._calls_part(by, low, high, model, notebook)
        return Rollup(by, parts)

    def _rollup_part(self, table: str, group: str, time_column: str, span: tuple, model, notebook,
                     *, kind: str | None = None) -> list[tuple]:
        from .rollup import TOTALS

        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        low, high = span
        if low is not None:
            where.append(f"{time_column} >= ?")
            params.append(low)
        if high is not None:
            where.append(f"{time_column} < ?")
            params.append(high)
        _filter(where, params, model, notebook, notebook_column="notebook")
        if (table, group) in _ONE_ROW_PER_GROUP:
            return self._tuples(f"SELECT {group}, {', '.join(TOTALS)}, duration_hist, ttft_hist "
                                f"FROM {table} {_clause(where)}", params)
        sums = ", ".join(f"sum({c})" for c in TOTALS)
        return self._tuples(
            f"SELECT {group} AS g, {sums}, llmnb_hist_sum(duration_hist), "
            f"llmnb_hist_sum(ttft_hist) FROM {table} {_clause(where)} GROUP BY g", params)

    def _calls_part(self, by: str, low: float, high: float, model, notebook) -> list[tuple]:
        """Calls in [low, high), grouped as the rollup triggers would have added them."""
        where, params = ["ts >= ?", "ts < ?"], [low, high]
        group = _CALLS_GROUPS[by]
        if by in ("conversation", "job"):
            where.append(f"{group} IS NOT NULL")
        _filter(where, params, model, notebook, notebook_column="COALESCE(notebook, '')")
        return self._tuples(
            f"SELECT {group} AS g, count(*), sum(COALESCE(input_tokens, 0)), "
            f"sum(COALESCE(output_tokens, 0)), sum(COALESCE(cost, 0)), sum(unpriced), "
            f"sum(status != 'ok'), sum(cached), sum(COALESCE(duration_ms, 0)), "
            f"llmnb_hist_agg(CASE WHEN cached THEN NULL ELSE duration_ms END), "
            f"llmnb_hist_agg(CASE WHEN cached THEN NULL ELSE ttft_ms END) "
            f"FROM calls {_clause(where)} GROUP BY g", params)

    def usage_rows(self, *, by: str = "model", since: float | None = None,
                   until: float | None = None, model: str | None = None,
                   notebook: str | None = None) -> list[dict]:
        """Totals per group (by model, day, hour, notebook, conversation or job): grp, calls,
        input/output tokens, cost, unpriced, errors, cached, duration_ms, and latency_p50_ms,
        latency_p95_ms, ttft_p50_ms (None where none was recorded). grp is a unix day or hour
        number for day and hour. by=conversation and by=job also give `label` (see
        usage_labels).
        """
        if by == "total":
            raise ValueError("usage(by='total'): use usage_rollup('total').totals()")
        rows = self.usage_rollup(by, since=since, until=until, model=model,
                                 notebook=notebook).rows()
        if by in ("conversation", "job"):
            labels = self.usage_labels(by, [r["grp"] for r in rows])
            for r in rows:
                r["label"] = labels.get(r["grp"])
        return rows

    def usage_facets(self) -> dict[str, list[str]]:
        """Every model and notebook in the log (from the small daily rollups)."""
        models = [r[0] for r in self._tuples("SELECT DISTINCT model FROM usage_model_daily")]
        notebooks = [r[0] for r in self._tuples(
            "SELECT DISTINCT notebook FROM usage_notebook_daily WHERE notebook != ''")]
        return {"models": sorted(models), "notebooks": sorted(notebooks)}

    def usage_labels(self, kind: str, ids: list[str]) -> dict[str, str | None]:
        """What a user recognises a group by: a conversation's name, a job's prompt (80 chars)."""
        sql = ("SELECT id, name FROM conversations WHERE id IN ({})" if kind == "conversation"
               else "SELECT id, substr(prompt, 1, 80) FROM jobs WHERE id IN ({})")
        found: dict[str, str | None] = {}
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[start:start + 900]
            for row in self._tuples(sql.format(",".join("?" for _ in chunk)), chunk):
                found[row[0]] = row[1]
        return found

    def cost_since(self, since: float) -> float:
        """USD of the calls logged since `since` (a whole hour, e.g. midnight UTC)."""
        rows = self.read("SELECT coalesce(sum(cost), 0) FROM usage_hour_totals WHERE hour >= ?",
                         (int(since // 3600),))
        return float(rows[0][0] or 0)

    def latest_call_id(self) -> int:
        return self.read("SELECT coalesce(max(id), 0) FROM calls")[0][0]

    def _tuples(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Like read(), as plain tuples (about twice as fast to build as sqlite3.Row)."""
        with self._lock:
            cursor = self._conn.cursor()
            cursor.row_factory = None
            return cursor.execute(sql, params).fetchall()


def _unavailable(path: str, exc: BaseException):
    from .errors import LogUnavailable

    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        why = "part of its folder path is a file"
    elif isinstance(exc, IsADirectoryError):
        why = "it is a folder"
    elif isinstance(exc, PermissionError):
        why = "permission denied"
    elif isinstance(exc, OSError):
        why = exc.strerror or str(exc)
    elif "not a database" in str(exc):
        why = "the file is not an SQLite database"
    else:
        why = "SQLite cannot open or create it there"
    return LogUnavailable(f"cannot open the llm-notebook log at {path}: {why}; set "
                          "LLMNotebook.log_path (or $LLM_NOTEBOOK_LOG) to a file in a folder you "
                          "can write to")


def _filter(where: list, params: list, model: str | None, notebook: str | None, *,
            notebook_column: str) -> None:
    if model is not None:
        where.append("model = ?")
        params.append(model)
    if notebook is not None:
        where.append(f"{notebook_column} = ?")
        params.append(notebook)


def _clause(where: list[str]) -> str:
    return ("WHERE " + " AND ".join(where)) if where else ""


# The group expression of each usage grouping, per source table ("total": one group).
_DAILY_GROUPS = {"model": "model", "notebook": "notebook", "day": "day", "total": "''"}
_HOURLY_GROUPS = {"model": "model", "notebook": "notebook", "day": "hour / 24", "hour": "hour",
                  "total": "''"}
_HOUR_TOTAL_GROUPS = {"day": "hour / 24", "hour": "hour", "total": "''"}
_KEY_GROUPS = "key"
# Tables whose rows are already one per group (read as they are, no GROUP BY).
_ONE_ROW_PER_GROUP = {("usage_hour_totals", "hour"), ("usage_group_totals", "key")}
_CALLS_GROUPS = {"model": "model", "notebook": "COALESCE(notebook, '')",
                 "day": "CAST(ts / 86400 AS INTEGER)", "hour": "CAST(ts / 3600 AS INTEGER)",
                 "conversation": "conversation_id", "job": "job_id", "total": "''"}


def _daily_table(by: str, model: str | None, notebook: str | None) -> str:
    """The smallest daily rollup holding every dimension a query groups or filters by."""
    needs = {by} & {"model", "notebook"}
    if model is not None:
        needs.add("model")
    if notebook is not None:
        needs.add("notebook")
    if needs <= {"model"}:
        return "usage_model_daily"
    if needs <= {"notebook"}:
        return "usage_notebook_daily"
    return "usage_daily"


def _split_range(since: float | None, until: float | None, *, use_days: bool):
    """[since, until) as (whole days or None, [whole-hour spans], [partial-hour spans]).

    Days and hours are (first, end) numbers with None for an open end; partial spans are unix
    times. Without use_days, all whole hours come as one span.
    """
    first_hour = None if since is None else math.ceil(since / 3600)
    end_hour = None if until is None else math.floor(until / 3600)
    if first_hour is not None and end_hour is not None and first_hour >= end_hour:
        return None, [], [(since, until)] if since < until else []
    raw = []
    if since is not None and since < first_hour * 3600:
        raw.append((since, first_hour * 3600))
    if until is not None and end_hour * 3600 < until:
        raw.append((end_hour * 3600, until))
    if not use_days:
        return None, [(first_hour, end_hour)], raw
    first_day = None if first_hour is None else -(-first_hour // 24)
    end_day = None if end_hour is None else end_hour // 24
    if first_day is not None and end_day is not None and first_day >= end_day:
        return None, [(first_hour, end_hour)], raw
    hours = []
    if first_hour is not None and first_hour < first_day * 24:
        hours.append((first_hour, first_day * 24))
    if end_hour is not None and end_day * 24 < end_hour:
        hours.append((end_day * 24, end_hour))
    return (first_day, end_day), hours, raw


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
