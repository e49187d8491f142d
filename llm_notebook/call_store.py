"""The SQL of calls (table `calls` and its full-text index `calls_fts`): a mixin of `Log`.

Calls go in through sqlite-utils' insert_all (one transaction per flush; the triggers add each
to the full-text index and the usage rollups), and come out as history pages, conversation
threads and branches, and one call in full.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Iterable, Sequence

CALL_COLUMNS = (
    "ts", "model", "provider", "endpoint", "system", "prompt", "messages", "options", "response",
    "input_tokens", "output_tokens", "cost", "unpriced", "duration_ms", "ttft_ms", "status",
    "error_kind", "error", "attempts", "cache_key", "cached", "conversation_id", "parent_id",
    "notebook", "cell_id", "job_id", "row_key", "kernel_session", "replayed",
)
# The columns of a history row (history_rows), also those of an empty history DataFrame.
HISTORY_COLUMNS = (
    "id", "ts", "model", "prompt", "response", "status", "error_kind", "error", "input_tokens",
    "output_tokens", "cost", "unpriced", "duration_ms", "ttft_ms", "cached", "conversation_id",
    "parent_id", "notebook", "cell_id", "job_id", "replayed",
)
# What a client (the server extension) may see of a call: no cache key or kernel session id.
CALL_FIELDS = ("id",) + tuple(c for c in CALL_COLUMNS if c not in ("cache_key", "kernel_session"))


def _json(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


_JSON_COLUMNS = frozenset({"messages", "options"})
_FLAG_COLUMNS = frozenset({"unpriced", "cached", "replayed"})


def _record(row: dict) -> list:
    """A call row as stored, its values in CALL_COLUMNS order: JSON for messages/options, 0/1
    flags, at least one attempt, a start time."""
    record = []
    for col in CALL_COLUMNS:
        value = row.get(col)
        if col in _JSON_COLUMNS:
            value = _json(value)
        elif col in _FLAG_COLUMNS:
            value = int(bool(value))
        elif col == "attempts":
            value = int(value or 1)
        elif col == "ts" and value is None:
            value = time.time()
        record.append(value)
    return record


class CallStore:
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
        records = [_record(row) for row in rows]
        ids: list[int] = []
        if records:
            # sqlite-utils' list mode: the column names, then each row's values.
            self.db["calls"].insert_all([CALL_COLUMNS, *records], batch_size=100)
            # One writer at a time (BEGIN IMMEDIATE): the rows got consecutive ids, up to the
            # last one inserted (triggers' own inserts do not change last_insert_rowid).
            last = db.execute("SELECT last_insert_rowid()").fetchone()[0]
            ids = list(range(last - len(records) + 1, last + 1))
        self.put_cache_entries(db, cache_entries, ids)
        return ids

    def insert_call(self, row: dict, *, cache_key: str | None = None) -> int:
        """Write one call; if cache_key is given and the call is ok, also store it in the cache."""
        entries = []
        if cache_key and row.get("status") == "ok" and not row.get("cached"):
            entries.append((cache_key, 0, row.get("response") or "",
                            row.get("input_tokens"), row.get("output_tokens")))
        return self.insert_calls([row], cache_entries=entries)[0]

    def call(self, call_id: int) -> dict | None:
        rows = self.rows_where("calls", "id = ?", [call_id])
        return rows[0] if rows else None

    def call_detail(self, call_id: int) -> dict | None:
        """One call as a client may see it (CALL_FIELDS), its messages and options decoded."""
        rows = self.rows_where("calls", "id = ?", [call_id], select=", ".join(CALL_FIELDS))
        if not rows:
            return None
        call = rows[0]
        for field in ("messages", "options"):
            call[field] = _json_or_text(call[field])
        return call

    def count_calls(self, **where: Any) -> int:
        clause, params = _where(where)
        return self.read(f"SELECT count(*) FROM calls {clause}", params)[0][0]

    def latest_call_id(self) -> int:
        return self.read("SELECT coalesce(max(id), 0) FROM calls")[0][0]

    def change_marker(self) -> dict[str, Any]:
        """Cheap numbers that change whenever a call or a template is added (the sidebar
        polls them)."""
        latest, count = self.read("SELECT coalesce(max(id), 0), count(*) FROM calls")[0]
        t_count, t_latest = self.read("SELECT count(*), coalesce(max(id), 0) FROM templates")[0]
        return {"latest_call_id": latest, "calls": count, "templates": f"{t_count}:{t_latest}"}

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
        return self.rows_where("calls", " AND ".join(where) or None, params,
                               select=", ".join(HISTORY_COLUMNS), order_by="id DESC",
                               limit=int(limit), offset=int(offset))

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
        if parent_id is not None:
            return self.rows_where("calls", "parent_id = ?", [parent_id], order_by="id")
        if not conversation_ids:
            return []
        marks = ",".join("?" for _ in conversation_ids)
        return self.rows_where("calls", f"parent_id IS NULL AND conversation_id IN ({marks})",
                               list(conversation_ids), order_by="id")

    def root_siblings(self, conversation_id: str) -> list[str]:
        """Conversations (not forks) that began with the same first prompt as this one."""
        rows = self.read(
            "SELECT id FROM conversations WHERE forked_from IS NULL AND id != ? AND id IN "
            "(SELECT conversation_id FROM calls WHERE parent_id IS NULL AND prompt = "
            "(SELECT prompt FROM calls WHERE conversation_id = ? AND parent_id IS NULL LIMIT 1))",
            (conversation_id, conversation_id))
        return [r["id"] for r in rows]

    def conversation_titles(self, conversation_ids: list[str]) -> dict[str, str | None]:
        """The first prompt of each conversation (what a user recognises it by)."""
        return dict(self.select_in(
            "SELECT conversation_id, prompt FROM calls WHERE id IN (SELECT min(id) FROM calls "
            "WHERE conversation_id IN ({in}) GROUP BY conversation_id)", conversation_ids))

    def conversation_head(self, conversation_id: str) -> int | None:
        """The latest call of a conversation, for calls whose conversation has no row of its own."""
        return self.read("SELECT max(id) FROM calls WHERE conversation_id = ?",
                         (conversation_id,))[0][0]


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


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def fts_query(text: str) -> str:
    """Turn user search text into a safe FTS5 query: every word must appear (prefix match)."""
    words = [w.replace('"', '""') for w in text.split() if w.strip()]
    return " ".join(f'"{w}"*' for w in words) or '""'
