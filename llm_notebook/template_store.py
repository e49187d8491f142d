"""SQL for prompt templates (table ``templates``, migration m020_templates).

Every save is a new row; the latest version of a name is its row with the highest version.
Versions are numbered inside the ``BEGIN IMMEDIATE`` write transaction, so two kernels saving the
same name at once get distinct versions. Rows go in and come out as plain dicts with
``options``/``defaults`` decoded to dicts and ``tags`` to a list.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from .log import Log

# The fields that make a version's content (what `skip_unchanged` compares).
CONTENT = ("prompt", "system", "model", "options", "defaults", "tags")
_COLUMNS = ("id", "name", "version", "prompt", "system", "model", "options", "defaults", "tags",
            "message", "created")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM templates"


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _decode(row: sqlite3.Row) -> dict:
    out = dict(row)
    out["options"] = json.loads(out["options"] or "{}")
    out["defaults"] = json.loads(out["defaults"] or "{}")
    out["tags"] = json.loads(out["tags"] or "[]")
    return out


def _latest_in(db: sqlite3.Connection, name: str) -> dict | None:
    row = db.execute(f"{_SELECT} WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)).fetchone()
    return _decode(row) if row is not None else None


def _same_content(row: dict, stored: dict | None) -> bool:
    if stored is None:
        return False
    return all(_encode(row.get(k)) == _encode(stored.get(k)) for k in CONTENT)


def insert_versions(log: Log, rows: Iterable[dict], *, skip_unchanged: bool = False) -> list[dict]:
    """Add each row as the next version of its name, all in one transaction.

    A row has name, prompt, system, model, options, defaults, tags, message. Returns, in order,
    the stored rows (with id, version, created). With ``skip_unchanged`` a row whose content
    equals its name's latest version is not added and that latest version is returned instead
    (so importing the same file twice adds nothing).
    """
    rows = list(rows)
    stored: list[dict] = []
    now = time.time()
    with log.write() as db:
        for row in rows:
            latest = _latest_in(db, row["name"])
            if skip_unchanged and _same_content(row, latest):
                stored.append(latest)
                continue
            version = (latest["version"] if latest else 0) + 1
            cur = db.execute(
                "INSERT INTO templates (name, version, prompt, system, model, options, defaults, "
                "tags, message, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row["name"], version, row["prompt"], row.get("system"), row.get("model"),
                 _encode(row.get("options") or {}), _encode(row.get("defaults") or {}),
                 _encode(list(row.get("tags") or ())), row.get("message"), now),
            )
            stored.append(_decode(db.execute(f"{_SELECT} WHERE id = ?", (cur.lastrowid,)).fetchone()))
    return stored


def get_version(log: Log, name: str, version: int | None = None) -> dict | None:
    """One version of a template (the latest when ``version`` is None), or None."""
    if version is None:
        rows = log.read(f"{_SELECT} WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
    else:
        rows = log.read(f"{_SELECT} WHERE name = ? AND version = ?", (name, int(version)))
    return _decode(rows[0]) if rows else None


def versions(log: Log, name: str) -> list[dict]:
    """Every version of a template, newest first."""
    return [_decode(r) for r in log.read(f"{_SELECT} WHERE name = ? ORDER BY version DESC", (name,))]


def version_numbers(log: Log, name: str) -> list[int]:
    return [r[0] for r in log.read(
        "SELECT version FROM templates WHERE name = ? ORDER BY version", (name,))]


def latest_all(log: Log, tag: str | None = None) -> list[dict]:
    """The latest version of every template (with ``versions``: how many it has), by name.

    ``tag`` keeps the templates whose latest version carries that tag.
    """
    rows = log.read(
        f"""
        SELECT {', '.join('t.' + c for c in _COLUMNS)}, n.versions
        FROM templates t
        JOIN (SELECT name, max(version) AS version, count(*) AS versions
              FROM templates GROUP BY name) n
          ON n.name = t.name AND n.version = t.version
        WHERE ? IS NULL OR EXISTS (SELECT 1 FROM json_each(t.tags) WHERE json_each.value = ?)
        ORDER BY t.name
        """,
        (tag, tag),
    )
    return [_decode(r) for r in rows]


def names(log: Log) -> list[str]:
    return [r[0] for r in log.read("SELECT DISTINCT name FROM templates ORDER BY name")]


def delete(log: Log, name: str) -> int:
    """Delete every version of a template; returns how many rows went."""
    with log.write() as db:
        return db.execute("DELETE FROM templates WHERE name = ?", (name,)).rowcount
