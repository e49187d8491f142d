"""The SQL of comparison grids: tables `comparisons` and `ratings` (migration m030_compare), and
the per-call numbers a grid shows (read from `calls`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence


def create_comparison(log, row: dict) -> None:
    now = time.time()
    values = dict(row, created=now, updated=now)
    for key in ("prompts", "models", "checks"):
        values[key] = json.dumps(values.get(key) or [], ensure_ascii=False, default=str)
    cols = ("id", "created", "updated", "prompts", "models", "inputs", "checks", "cells",
            "notebook", "cell_id", "kernel_session")
    with log.write():
        log.db["comparisons"].insert({c: values.get(c) for c in cols})


def update_comparison(log, comparison_id: str, *, ok: int, errors: int, cost: float,
                      checks: Sequence[str] | None = None) -> None:
    with log.write() as db:
        if checks is None:
            db.execute("UPDATE comparisons SET ok = ?, errors = ?, cost = ?, updated = ? "
                       "WHERE id = ?", (ok, errors, cost, time.time(), comparison_id))
        else:
            db.execute("UPDATE comparisons SET ok = ?, errors = ?, cost = ?, checks = ?, "
                       "updated = ? WHERE id = ?",
                       (ok, errors, cost, json.dumps(list(checks), ensure_ascii=False),
                        time.time(), comparison_id))


def comparison(log, comparison_id: str) -> dict | None:
    rows = log.rows_where("comparisons", "id = ?", [comparison_id])
    return rows[0] if rows else None


_RATING = ("cell_key", "thumb", "score", "comment", "updated")
_METRICS = ("id", "input_tokens", "output_tokens", "cost", "unpriced", "duration_ms")


def ratings_for(log, keys: Iterable[str]) -> dict[str, dict]:
    """The saved rating of each cell key that has one."""
    return {row[0]: dict(zip(_RATING, row)) for row in log.select_in(
        f"SELECT {', '.join(_RATING)} FROM ratings WHERE cell_key IN ({{in}})",
        (k for k in keys if k))}


def save_rating(log, cell_key: str, *, thumb: int | None, score: float | None,
                comment: str | None, model: str | None, prompt: str | None,
                output: str | None, call_id: int | None, comparison_id: str | None) -> None:
    """Insert or replace a cell's rating; a rating with nothing left in it is deleted."""
    now = time.time()
    with log.write() as db:
        if thumb is None and score is None and not comment:
            db.execute("DELETE FROM ratings WHERE cell_key = ?", (cell_key,))
            return
        db.execute(
            "INSERT INTO ratings (cell_key, thumb, score, comment, model, prompt, output, call_id, "
            "comparison_id, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(cell_key) DO UPDATE SET thumb = excluded.thumb, score = excluded.score, "
            "comment = excluded.comment, model = excluded.model, prompt = excluded.prompt, "
            "output = excluded.output, call_id = excluded.call_id, "
            "comparison_id = excluded.comparison_id, updated = excluded.updated",
            (cell_key, thumb, score, comment, model, prompt, output, call_id, comparison_id,
             now, now))


def call_metrics(log, call_ids: Iterable[int]) -> dict[int, dict]:
    """Tokens, cost and latency of calls by id (a cached cell shows its original call's)."""
    return {row[0]: dict(zip(_METRICS, row)) for row in log.select_in(
        f"SELECT {', '.join(_METRICS)} FROM calls WHERE id IN ({{in}})",
        (i for i in call_ids if i is not None))}
