"""Read-only queries the sidebar needs beyond `Log`'s own (facets, change markers, details).

The REST handlers call `Log` methods where one fits (history_rows, usage_rows, thread,
conversations) and these functions for the rest; this module and log.py are the only places
with SQL that the server extension runs.
"""

from __future__ import annotations

import json
from typing import Any

from ..log import Log

# What a client may see of a call: no cache key or kernel session id, nothing it cannot use.
CALL_FIELDS = (
    "id", "ts", "model", "provider", "endpoint", "system", "prompt", "messages", "options",
    "response", "input_tokens", "output_tokens", "cost", "unpriced", "duration_ms", "ttft_ms",
    "status", "error_kind", "error", "attempts", "cached", "conversation_id", "parent_id",
    "notebook", "cell_id", "job_id", "row_key",
)
_FACET_LIMIT = 500


def change_marker(log: Log) -> dict[str, Any]:
    """Cheap numbers that change whenever a call or a template is added (the sidebar polls them)."""
    latest, count = log.read("SELECT coalesce(max(id), 0), count(*) FROM calls")[0]
    marker = {"latest_call_id": latest, "calls": count, "templates": None}
    if _has_table(log, "templates"):
        t_count, t_latest = log.read("SELECT count(*), coalesce(max(id), 0) FROM templates")[0]
        marker["templates"] = f"{t_count}:{t_latest}"
    return marker


def facets(log: Log) -> dict[str, list[str]]:
    """Distinct models and notebooks, from the hourly rollup (far smaller than `calls`)."""
    models = [r[0] for r in log.read(
        "SELECT DISTINCT model FROM usage_hourly ORDER BY model LIMIT ?", (_FACET_LIMIT,))]
    notebooks = [r[0] for r in log.read(
        "SELECT DISTINCT notebook FROM usage_hourly WHERE notebook != '' ORDER BY notebook "
        "LIMIT ?", (_FACET_LIMIT,))]
    return {"models": models, "notebooks": notebooks}


def call_detail(log: Log, call_id: int) -> dict | None:
    rows = log.read(f"SELECT {', '.join(CALL_FIELDS)} FROM calls WHERE id = ?", (call_id,))
    if not rows:
        return None
    call = dict(rows[0])
    for field in ("messages", "options"):
        call[field] = _json_or_text(call[field])
    return call


def conversation_titles(log: Log, conversation_ids: list[str]) -> dict[str, str | None]:
    """The first prompt of each conversation (what a user recognises it by)."""
    if not conversation_ids:
        return {}
    marks = ",".join("?" for _ in conversation_ids)
    rows = log.read(
        f"SELECT conversation_id, prompt FROM calls WHERE id IN ("
        f"SELECT min(id) FROM calls WHERE conversation_id IN ({marks}) GROUP BY conversation_id)",
        list(conversation_ids),
    )
    return {r["conversation_id"]: r["prompt"] for r in rows}


def conversation_head(log: Log, conversation_id: str) -> int | None:
    """The latest call of a conversation, for calls whose conversation has no row of its own."""
    row = log.read("SELECT max(id) FROM calls WHERE conversation_id = ?", (conversation_id,))[0]
    return row[0]


def _has_table(log: Log, name: str) -> bool:
    return bool(log.read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
