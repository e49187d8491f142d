"""Latency histograms as small blobs, so a usage rollup row carries its whole distribution.

A histogram is a little-endian uint32 count per bucket of `migrations.bucket_of` (quarter powers
of two, about 19% wide), trailing empty buckets left off. One blob per rollup row (instead of
one row per bucket) keeps a usage query to one pass over the rollup: a million calls make a
few thousand rollup rows, whose histograms numpy adds up in a few milliseconds.

`add`, `Aggregate` and `Sum` are SQL functions (see `migrations.install_functions`): the rollup
triggers call `llmnb_hist_add(hist, ms)` on every logged call, and usage queries add up the
rollup rows of each group with `llmnb_hist_sum(hist)`.
"""

from __future__ import annotations

import struct

from .migrations import bucket_mid_ms, bucket_of

BUCKETS = 121                      # bucket_of() returns 0..120
_COUNT = struct.Struct("<I")
WIDTH = _COUNT.size


def add(blob: bytes | None, ms: float | None) -> bytes | None:
    """`blob` with one more latency of `ms` counted (unchanged when ms is None).

    Runs inside the rollup trigger for every logged call, so it avoids anything but slicing.
    """
    if ms is None:
        return blob
    offset = bucket_of(ms) * WIDTH
    if blob is None or len(blob) <= offset:
        blob = (blob or b"").ljust(offset + WIDTH, b"\0")
    return blob[:offset] + _COUNT.pack(_COUNT.unpack_from(blob, offset)[0] + 1) + blob[offset + WIDTH:]


def as_int(blob: bytes | None) -> int:
    """A histogram as one integer with a 32-bit lane per bucket: adding two such integers adds
    the histograms bucket by bucket (no lane comes near 2**32, so no carry crosses lanes), which
    Python does in C, far faster than unpacking counts."""
    return int.from_bytes(blob, "little") if blob else 0


def from_int(value: int) -> bytes | None:
    """The blob of an as_int() value (trailing empty buckets left off)."""
    if not value:
        return None
    lanes = -(-value.bit_length() // (8 * WIDTH))
    return value.to_bytes(lanes * WIDTH, "little")


def install(db) -> None:
    """Register the SQL functions of the rollup triggers (`migrations.install_functions`)."""
    db.create_function("llmnb_hist_add", 2, add, deterministic=True)
    db.create_aggregate("llmnb_hist_agg", 1, Aggregate)
    db.create_aggregate("llmnb_hist_sum", 1, Sum)


def encode(counts) -> bytes | None:
    """Blob of a sequence of per-bucket counts (None when all are zero)."""
    counts = [int(c) for c in counts]
    while counts and counts[-1] == 0:
        counts.pop()
    if not counts:
        return None
    return struct.pack(f"<{len(counts)}I", *counts)


def decode(blob: bytes | None) -> list[int]:
    """Per-bucket counts of a blob, BUCKETS long."""
    counts = list(struct.unpack(f"<{len(blob) // WIDTH}I", blob)) if blob else []
    return counts + [0] * (BUCKETS - len(counts))


class Aggregate:
    """SQL aggregate `llmnb_hist_agg(ms)`: the histogram of a column (rebuilding rollups)."""

    def __init__(self):
        self.counts = [0] * BUCKETS

    def step(self, ms):
        if ms is not None:
            self.counts[bucket_of(ms)] += 1

    def finalize(self):
        return encode(self.counts)


def matrix(blobs):
    """A (len(blobs), width) uint32 numpy array of the histograms, `width` being the longest
    blob's bucket count (trailing empty buckets cost nothing)."""
    import numpy as np

    size = max((len(b) for b in blobs if b), default=WIDTH)
    joined = b"".join((b or b"").ljust(size, b"\0") for b in blobs)
    return np.frombuffer(joined, dtype="<u4").reshape(len(blobs), size // WIDTH)


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


def bucket_bounds_ms(bucket: int) -> tuple[float, float]:
    """The latencies a bucket holds: [low, high) in ms."""
    if bucket <= 0:
        return 0.0, 1.0
    return 2 ** ((bucket - 1) / 4), 2 ** (bucket / 4)


class Sum:
    """SQL aggregate `llmnb_hist_sum(hist)`: the sum of histogram blobs (GROUP BY over rollups)."""

    def __init__(self):
        self.total = 0

    def step(self, blob):
        if blob:
            self.total += int.from_bytes(blob, "little")

    def finalize(self):
        return from_int(self.total)
