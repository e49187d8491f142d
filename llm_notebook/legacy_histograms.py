"""The SQL functions and blob histograms of logs made before migration m050.

Migrations m003 to m043 kept latency histograms as uint32 blobs updated by Python functions
registered on the connection (llmnb_bucket, llmnb_hist_add, llmnb_hist_agg, llmnb_hist_sum):
no other tool could insert a call into such a log. Shipped migrations never change, so these
functions are registered while those migrations run (on a new log, or an old one catching up)
and removed right after; m050 turns the blobs into the JSON histograms of llm_notebook.latency
and replaces the triggers with plain SQL. No connection that logs calls has them.
"""

from __future__ import annotations

import sqlite3
import struct

from .latency import BUCKETS, bucket_of, to_json

# The migrations written with these functions.
USERS = frozenset({"m003_usage_rollup", "m040_usage_histograms_and_groups",
                   "m041_usage_daily_rollups", "m043_usage_group_totals"})
_COUNT = struct.Struct("<I")
WIDTH = _COUNT.size


def install(db: sqlite3.Connection) -> None:
    db.create_function("llmnb_bucket", 1, bucket_of, deterministic=True)
    db.create_function("llmnb_hist_add", 2, add, deterministic=True)
    db.create_aggregate("llmnb_hist_agg", 1, Aggregate)
    db.create_aggregate("llmnb_hist_sum", 1, Sum)


def remove(db: sqlite3.Connection) -> None:
    db.create_function("llmnb_bucket", 1, None)
    db.create_function("llmnb_hist_add", 2, None)
    db.create_aggregate("llmnb_hist_agg", 1, None)
    db.create_aggregate("llmnb_hist_sum", 1, None)


def decode(blob: bytes | None) -> list[int]:
    """Per-bucket counts of a blob, BUCKETS long."""
    counts = list(struct.unpack(f"<{len(blob) // WIDTH}I", blob)) if blob else []
    return counts + [0] * (BUCKETS - len(counts))


def blob_to_json(blob: bytes | None) -> str | None:
    return to_json(decode(blob)) if blob else None


def encode(counts) -> bytes | None:
    counts = [int(c) for c in counts]
    while counts and counts[-1] == 0:
        counts.pop()
    return struct.pack(f"<{len(counts)}I", *counts) if counts else None


def add(blob: bytes | None, ms: float | None) -> bytes | None:
    """`blob` with one more latency of `ms` counted (unchanged when ms is None)."""
    if ms is None:
        return blob
    offset = bucket_of(ms) * WIDTH
    if blob is None or len(blob) <= offset:
        blob = (blob or b"").ljust(offset + WIDTH, b"\0")
    return blob[:offset] + _COUNT.pack(_COUNT.unpack_from(blob, offset)[0] + 1) + blob[offset + WIDTH:]


class Aggregate:
    """`llmnb_hist_agg(ms)`: the histogram of a column."""

    def __init__(self):
        self.counts = [0] * BUCKETS

    def step(self, ms):
        if ms is not None:
            self.counts[bucket_of(ms)] += 1

    def finalize(self):
        return encode(self.counts)


class Sum:
    """`llmnb_hist_sum(hist)`: the sum of histogram blobs."""

    def __init__(self):
        self.total = 0

    def step(self, blob):
        if blob:
            self.total += int.from_bytes(blob, "little")

    def finalize(self):
        if not self.total:
            return None
        lanes = -(-self.total.bit_length() // (8 * WIDTH))
        return self.total.to_bytes(lanes * WIDTH, "little")
