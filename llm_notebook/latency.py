"""Latency histograms: buckets kept in plain SQL, read straight into numpy.

A bucket holds the latencies in [2**((b-1)/4), 2**(b/4)) ms, quarter powers of two (about 19%
wide); bucket 0 those below 1 ms, bucket 120 everything from 2**29.75 ms up. The log keeps
these bounds in its table `latency_buckets`, and every usage rollup row carries its histograms
as JSON objects `{"<bucket>": <calls>}` (columns `duration_buckets`, `ttft_buckets`), kept up to
date by the rollup trigger in plain SQL (`bucket_sql` is how SQL finds a latency's bucket), so
any tool that inserts a call keeps them right. Reading, a query's histogram texts are parsed
with numpy in one pass (`matrix`), added up per group, and turned into percentiles.
"""

from __future__ import annotations

import bisect

BUCKETS = 121
# The low bound of each bucket (what the log's latency_buckets table holds).
LOW_MS = [0.0] + [2 ** ((b - 1) / 4) for b in range(1, BUCKETS)]


def bucket_of(ms: float | None) -> int:
    """The bucket of a latency (0 for None, negative or below 1 ms): the same rule as the SQL."""
    if ms is None or ms < 1:
        return 0
    return bisect.bisect_right(LOW_MS, ms) - 1


def bucket_bounds_ms(bucket: int) -> tuple[float, float]:
    """The latencies a bucket holds: [low, high) in ms."""
    if bucket <= 0:
        return 0.0, 1.0
    return 2 ** ((bucket - 1) / 4), 2 ** (bucket / 4)


def bucket_mid_ms(bucket: int) -> float:
    """A representative latency of a bucket (its geometric middle)."""
    if bucket <= 0:
        return 0.5
    return 2 ** ((bucket - 0.5) / 4)


def bucket_table_rows() -> list[dict]:
    """The rows of the log's `latency_buckets` table."""
    return [{"bucket": b, "low_ms": LOW_MS[b], "high_ms": bucket_bounds_ms(b)[1]}
            for b in range(BUCKETS)]


def bucket_sql(ms_sql: str) -> str:
    """SQL for the bucket of the latency `ms_sql` (an SQL expression): an index lookup in
    `latency_buckets`, with no function of ours, so any SQLite can run it."""
    return (f"(SELECT bucket FROM latency_buckets WHERE low_ms <= max({ms_sql}, 0) "
            f"ORDER BY low_ms DESC LIMIT 1)")


def histogram_update_sql(column: str, ms_sql: str) -> str:
    """SQL for `column` (a JSON histogram) with one more latency of `ms_sql` counted."""
    return (f"(SELECT json_set(COALESCE({column}, '{{}}'), path, "
            f"COALESCE(json_extract({column}, path), 0) + 1) "
            f"FROM (SELECT '$.\"' || bucket || '\"' AS path FROM latency_buckets "
            f"WHERE low_ms <= max({ms_sql}, 0) ORDER BY low_ms DESC LIMIT 1))")


def to_json(counts) -> str | None:
    """The JSON histogram of per-bucket counts (None when all are zero)."""
    import json

    kept = {str(b): int(n) for b, n in enumerate(counts) if n}
    return json.dumps(kept, separators=(",", ":")) if kept else None


def matrix(texts: list, groups: list[int], n_groups: int):
    """Per-group sums of JSON histograms: a (n_groups, buckets) int64 numpy array.

    `texts[i]` (a JSON histogram or None) belongs to group `groups[i]`. All texts are parsed
    as one comma-separated list of numbers, so the cost is numpy's, not a Python loop's."""
    import numpy as np

    kept = [(g, t) for g, t in zip(groups, texts) if t and len(t) > 2]
    if not kept:
        return np.zeros((n_groups, 1), dtype=np.int64)
    pairs = np.array([t.count(":") for _, t in kept], dtype=np.int64)
    flat = ",".join(t[1:-1] for _, t in kept).replace('"', "").replace(":", ",")
    numbers = np.fromstring(flat, dtype=np.int64, sep=",")
    buckets, counts = numbers[0::2], numbers[1::2]
    rows = np.repeat(np.array([g for g, _ in kept], dtype=np.int64), pairs)
    out = np.zeros((n_groups, int(buckets.max()) + 1), dtype=np.int64)
    np.add.at(out, (rows, buckets), counts)
    return out


def percentiles(hist, *qs: float) -> list:
    """Per-row quantiles (each q in 0..1) of a (groups, buckets) histogram array, as the middle
    of the bucket holding each; NaN where a row is empty. One array per q."""
    import numpy as np

    hist = np.asarray(hist)
    if hist.size == 0:
        return [np.full(hist.shape[0], np.nan) for _ in qs]
    cum = np.cumsum(hist, axis=1, dtype=np.int64)
    total = cum[:, -1]
    mids = np.array([bucket_mid_ms(b) for b in range(hist.shape[1])])
    out = []
    for q in qs:
        bucket = np.argmax(cum >= (q * total)[:, None], axis=1)
        out.append(np.where(total > 0, mids[bucket], np.nan))
    return out
