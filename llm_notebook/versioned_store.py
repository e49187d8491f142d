"""SQL for things saved in the log as immutable, numbered versions of a name (templates,
workflows): one table per kind, one row per version.

Every save is a new row; a name's latest version is its row with the highest version. Versions
are numbered inside the `BEGIN IMMEDIATE` write transaction, so two kernels saving the same name
at once get distinct versions. Rows go in and come out as plain dicts, with the table's JSON
columns decoded.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .log import Log


def encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


class VersionedTable:
    """The versions of one kind of thing in table `table`: columns id, name, version, the
    kind's own `fields`, message, created. `json_fields` maps the fields stored as JSON to what
    an absent value means ({} or []). `content` names the fields that make a version's content
    (what `skip_unchanged` compares)."""

    def __init__(self, table: str, fields: tuple[str, ...], *, json_fields: Mapping[str, Any],
                 content: tuple[str, ...]):
        self.table = table
        self.fields = fields
        self.json_fields = dict(json_fields)
        self.content = content
        self.columns = ("id", "name", "version", *fields, "message", "created")
        self._select = f"SELECT {', '.join(self.columns)} FROM {table}"
        inserted = ("name", "version", *fields, "message", "created")
        self._insert = (f"INSERT INTO {table} ({', '.join(inserted)}) "
                        f"VALUES ({', '.join('?' for _ in inserted)})")

    # -- rows ---------------------------------------------------------------------------------

    def decode(self, row: sqlite3.Row) -> dict:
        out = dict(row)
        for field, empty in self.json_fields.items():
            out[field] = json.loads(out[field]) if out[field] else type(empty)()
        return out

    def _stored_value(self, row: dict, field: str):
        value = row.get(field)
        if field not in self.json_fields:
            return value
        empty = self.json_fields[field]
        if not value:
            return encode(type(empty)())
        return encode(list(value) if isinstance(empty, list) else value)

    def _same_content(self, row: dict, stored: dict) -> bool:
        return all(encode(row.get(k)) == encode(stored.get(k)) for k in self.content)

    # -- writing ------------------------------------------------------------------------------

    def insert_versions(self, log: Log, rows: Iterable[dict], *, skip_unchanged: bool = False,
                        match_any_version: bool = False) -> list[dict]:
        """Add each row as the next version of its name, all in one transaction; returns, in
        order, the stored rows (with id, version, created). With `skip_unchanged` a row whose
        content equals its name's latest version (any version, with `match_any_version`) is not
        added and that version is returned instead (importing the same file twice adds
        nothing)."""
        stored: list[dict] = []
        now = time.time()
        with log.write() as db:
            for row in rows:
                latest = self._latest_in(db, row["name"])
                same = None
                if skip_unchanged and latest is not None:
                    candidates = (self._all_in(db, row["name"]) if match_any_version
                                  else [latest])
                    same = next((v for v in candidates if self._same_content(row, v)), None)
                if same is not None:
                    stored.append(same)
                    continue
                version = (latest["version"] if latest else 0) + 1
                values = [row["name"], version,
                          *(self._stored_value(row, f) for f in self.fields),
                          row.get("message"), now]
                cursor = db.execute(self._insert, values)
                stored.append(self.decode(db.execute(f"{self._select} WHERE id = ?",
                                                     (cursor.lastrowid,)).fetchone()))
        return stored

    def delete(self, log: Log, name: str) -> int:
        """Delete every version of a name; returns how many rows went."""
        with log.write() as db:
            return db.execute(f"DELETE FROM {self.table} WHERE name = ?", (name,)).rowcount

    # -- reading ------------------------------------------------------------------------------

    def _latest_in(self, db: sqlite3.Connection, name: str) -> dict | None:
        row = db.execute(f"{self._select} WHERE name = ? ORDER BY version DESC LIMIT 1",
                         (name,)).fetchone()
        return self.decode(row) if row is not None else None

    def _all_in(self, db: sqlite3.Connection, name: str) -> list[dict]:
        return [self.decode(r) for r in
                db.execute(f"{self._select} WHERE name = ? ORDER BY version DESC", (name,))]

    def get_version(self, log: Log, name: str, version: int | None = None) -> dict | None:
        """One version of a name (the latest when `version` is None), or None."""
        if version is None:
            rows = log.read(f"{self._select} WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
        else:
            rows = log.read(f"{self._select} WHERE name = ? AND version = ?", (name, int(version)))
        return self.decode(rows[0]) if rows else None

    def versions(self, log: Log, name: str) -> list[dict]:
        """Every version of a name, newest first."""
        return [self.decode(r) for r in
                log.read(f"{self._select} WHERE name = ? ORDER BY version DESC", (name,))]

    def version_numbers(self, log: Log, name: str) -> list[int]:
        return [r[0] for r in log.read(
            f"SELECT version FROM {self.table} WHERE name = ? ORDER BY version", (name,))]

    def latest_all(self, log: Log, tag: str | None = None) -> list[dict]:
        """The latest version of every name (with `versions`: how many it has), by name;
        `tag` keeps those whose latest version carries that tag."""
        rows = log.read(
            f"""
            SELECT {', '.join('t.' + c for c in self.columns)}, n.versions
            FROM {self.table} t
            JOIN (SELECT name, max(version) AS version, count(*) AS versions
                  FROM {self.table} GROUP BY name) n
              ON n.name = t.name AND n.version = t.version
            WHERE ? IS NULL OR EXISTS (SELECT 1 FROM json_each(t.tags) WHERE json_each.value = ?)
            ORDER BY t.name
            """,
            (tag, tag),
        )
        return [self.decode(r) for r in rows]

    def names(self, log: Log) -> list[str]:
        return [r[0] for r in log.read(f"SELECT DISTINCT name FROM {self.table} ORDER BY name")]
