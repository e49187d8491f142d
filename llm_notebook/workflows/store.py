"""SQL for workflows (tables `workflows` and `workflow_results`, migration m070_workflows).

`workflows`: immutable, numbered versions of a name (versioned_store.py, as templates); rows
come out with `steps` and `tags` decoded.

`workflow_results`: what a finished step produced, by its key (workflows/keys.py). Each step of
each workflow keeps its latest KEEP_RESULTS results: enough for going back and forth between a
few edits, without the log growing with every run on new data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from ..log import Log
from ..versioned_store import VersionedTable

CONTENT = ("description", "steps", "tags")
KEEP_RESULTS = 20

_TABLE = VersionedTable("workflows", ("description", "steps", "tags"),
                        json_fields={"steps": [], "tags": []}, content=CONTENT)

get_version = _TABLE.get_version
versions = _TABLE.versions
version_numbers = _TABLE.version_numbers
latest_all = _TABLE.latest_all
names = _TABLE.names


def insert_versions(log: Log, rows: Iterable[dict], *, skip_unchanged: bool = False) -> list[dict]:
    """Add each row (name, description, steps, tags, message) as its name's next version, all in
    one transaction; returns the stored rows. With `skip_unchanged`, a row equal to a version
    its name already has is not added and that version is returned (importing an export of
    every version twice adds nothing)."""
    return _TABLE.insert_versions(log, rows, skip_unchanged=skip_unchanged,
                                  match_any_version=True)


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
