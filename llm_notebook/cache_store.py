"""The SQL of the response cache (table `cache`): a mixin of `Log`. An entry is keyed by the
request's cache key (llm_notebook/cache.py) and holds a complete answer and its token counts."""

from __future__ import annotations

import sqlite3
import time
from typing import Iterable, Sequence

_PUT = ("INSERT OR REPLACE INTO cache (key, call_id, response, input_tokens, output_tokens, "
        "created) VALUES (?, ?, ?, ?, ?, ?)")
_COLUMNS = ("key", "call_id", "response", "input_tokens", "output_tokens", "created")


class CacheStore:
    def cache_get(self, key: str) -> dict | None:
        rows = self.rows_where("cache", "key = ?", [key])
        return rows[0] if rows else None

    def cache_get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        """Look up many keys at once (batch runs check all rows before sending any)."""
        return {row[0]: dict(zip(_COLUMNS, row)) for row in self.select_in(
            f"SELECT {', '.join(_COLUMNS)} FROM cache WHERE key IN ({{in}})", keys)}

    def put_cache_entries(self, db: sqlite3.Connection, entries: Iterable[tuple],
                          call_ids: list[int]) -> None:
        """(inside a write) Store entries (key, call ref, response, input, output tokens); an
        int call ref below len(call_ids) is an index into the calls just inserted."""
        now = time.time()
        db.executemany(_PUT, [
            (key, call_ids[ref] if isinstance(ref, int) and ref < len(call_ids) else ref,
             response, tin, tout, now)
            for key, ref, response, tin, tout in entries])

    def cache_clear(self) -> int:
        with self.write() as db:
            return db.execute("DELETE FROM cache").rowcount
