"""SQL for workflows (tables `workflows` and `workflow_results`, migration m070_workflows).

`workflows`: every save is a new row, numbered inside the `BEGIN IMMEDIATE` write transaction
(two kernels saving the same name get distinct versions); the latest version of a name is its
highest. Rows go in and come out as dicts with `steps` and `tags` decoded.

`workflow_results`: what a finished step produced, by its key (workflows/keys.py). Each step of
each workflow keeps its latest KEEP_RESULTS results: enough for going back and forth between a
few edits, without the log growing with every run on new data.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable

from ..log import Log

CONTENT = ("description", "steps", "tags")
KEEP_RESULTS = 20
_COLUMNS = ("id", "name", "version", "description", "steps", "tags", "message", "created")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM workflows"


def _encode(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _decode(row: sqlite3.Row) -> dict:
    out = dict(row)
    out["steps"] = json.loads(out["steps"] or "[]")
    out["tags"] = json.loads(out["tags"] or "[]")
    return out


def _latest_in(db: sqlite3.Connection, name: str) -> dict | None:
    row = db.execute(f"{_SELECT} WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)).fetchone()
    return _decode(row) if row is not None else None


def insert_versions(log: Log, rows: Iterable[dict], *, skip_unchanged: bool = False) -> list[dict]:
    """Add each row (name, description, steps, tags, message) as its name's next version, all in
    one transaction; returns the stored rows. With `skip_unchanged`, a row equal to a version
    its name already has is not added and that version is returned (importing an export of
    every version twice adds nothing)."""
    stored: list[dict] = []
    now = time.time()
    with log.write() as db:
        for row in rows:
            latest = _latest_in(db, row["name"])
            same = _same_version(db, row) if skip_unchanged and latest is not None else None
            if same is not None:
                stored.append(same)
                continue
            version = (latest["version"] if latest else 0) + 1
            cursor = db.execute(
                "INSERT INTO workflows (name, version, description, steps, tags, message, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row["name"], version, row.get("description"), _encode(row["steps"]),
                 _encode(list(row.get("tags") or ())), row.get("message"), now))
            stored.append(_decode(db.execute(f"{_SELECT} WHERE id = ?",
                                             (cursor.lastrowid,)).fetchone()))
    return stored


def _same_version(db: sqlite3.Connection, row: dict) -> dict | None:
    wanted = [_encode(row.get(k)) for k in CONTENT]
    for found in db.execute(f"{_SELECT} WHERE name = ? ORDER BY version DESC", (row["name"],)):
        version = _decode(found)
        if [_encode(version.get(k)) for k in CONTENT] == wanted:
            return version
    return None


def get_version(log: Log, name: str, version: int | None = None) -> dict | None:
    if version is None:
        rows = log.read(f"{_SELECT} WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
    else:
        rows = log.read(f"{_SELECT} WHERE name = ? AND version = ?", (name, int(version)))
    return _decode(rows[0]) if rows else None


def versions(log: Log, name: str) -> list[dict]:
    """Every version of a workflow, newest first."""
    return [_decode(r) for r in log.read(f"{_SELECT} WHERE name = ? ORDER BY version DESC", (name,))]


def version_numbers(log: Log, name: str) -> list[int]:
    return [r[0] for r in log.read("SELECT version FROM workflows WHERE name = ? ORDER BY version",
                                   (name,))]


def latest_all(log: Log, tag: str | None = None) -> list[dict]:
    """The latest version of every workflow (with `versions`: how many it has), by name."""
    rows = log.read(
        f"""
        SELECT {', '.join('w.' + c for c in _COLUMNS)}, n.versions
        FROM workflows w
        JOIN (SELECT name, max(version) AS version, count(*) AS versions
              FROM workflows GROUP BY name) n
          ON n.name = w.name AND n.version = w.version
        WHERE ? IS NULL OR EXISTS (SELECT 1 FROM json_each(w.tags) WHERE json_each.value = ?)
        ORDER BY w.name
        """, (tag, tag))
    return [_decode(r) for r in rows]


def names(log: Log) -> list[str]:
    return [r[0] for r in log.read("SELECT DISTINCT name FROM workflows ORDER BY name")]


def delete(log: Log, name: str) -> int:
    """Delete every version of a workflow (and the results its steps left); returns how many
    versions went."""
    with log.write() as db:
        db.execute("DELETE FROM workflow_results WHERE workflow = ?", (name,))
        return db.execute("DELETE FROM workflows WHERE name = ?", (name,)).rowcount


# -- step results ------------------------------------------------------------------------------

def get_result(log: Log, key: str) -> dict | None:
    """A step's stored result (decoded), or None."""
    rows = log.read("SELECT data FROM workflow_results WHERE key = ?", (key,))
    return json.loads(rows[0][0]) if rows else None


def put_result(log: Log, key: str, *, workflow: str, step: str, kind: str, rows: int,
               data: dict) -> None:
    """Keep a step's result; the step's oldest results beyond KEEP_RESULTS go."""
    with log.write() as db:
        db.execute("INSERT OR REPLACE INTO workflow_results (key, workflow, step, kind, rows, data,"
                   " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (key, workflow, step, kind, rows, json.dumps(data, ensure_ascii=False,
                                                                default=str), time.time()))
        db.execute("DELETE FROM workflow_results WHERE workflow = ? AND step = ? AND key NOT IN "
                   "(SELECT key FROM workflow_results WHERE workflow = ? AND step = ? "
                   " ORDER BY created DESC LIMIT ?)", (workflow, step, workflow, step, KEEP_RESULTS))
