"""The SQL of the embeddings cache (table `embeddings`, m080): functions taking the Log.

A vector is keyed by the model that made it and the SHA-256 of its text, and stored as
little-endian float32 bytes (`vectors.to_blob`)."""

from __future__ import annotations

import sqlite3
import time
from typing import Iterable

_PUT = ("INSERT OR REPLACE INTO embeddings (model, text_sha256, dimensions, vector, call_id, "
        "created) VALUES (?, ?, ?, ?, ?, ?)")


def get_many(log, model: str, hashes: Iterable[str]) -> dict[str, bytes]:
    """{text hash: vector bytes} of the hashes cached for `model`."""
    return {sha: blob for sha, blob in log.select_in(
        "SELECT text_sha256, vector FROM embeddings WHERE model = ? AND text_sha256 IN ({in})",
        hashes, params=(model,))}


def put_many(db: sqlite3.Connection, model: str, entries: Iterable[tuple[str, int, bytes]],
             call_id: int | None) -> None:
    """(inside a write) Store (text hash, dimensions, vector bytes) entries of one request."""
    now = time.time()
    db.executemany(_PUT, [(model, sha, dims, blob, call_id, now) for sha, dims, blob in entries])


def count(log, model: str | None = None) -> int:
    if model is None:
        return log.read("SELECT count(*) FROM embeddings")[0][0]
    return log.read("SELECT count(*) FROM embeddings WHERE model = ?", (model,))[0][0]
