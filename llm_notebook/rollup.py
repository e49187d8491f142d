"""Adding up usage parts (fetched by log.py) into one row per group, with numpy. No SQL here.

`Log.usage_rollup` reads a query's calls from several places (daily and hourly rollups for the
whole days and hours of its time range, `calls` for the partial hours at its edges), each part
already grouped by SQL; a `Rollup` adds the parts of each group together and turns their
latency histograms into percentiles.
"""

from __future__ import annotations

from . import latency

# The summed columns of a rollup row, in the order log.py selects them.
TOTALS = ("calls", "input_tokens", "output_tokens", "cost", "unpriced", "errors", "cached",
          "duration_ms")
_INTEGER = frozenset(TOTALS) - {"cost", "duration_ms"}
_CALLS, _COST = TOTALS.index("calls"), TOTALS.index("cost")

BY = ("model", "day", "hour", "notebook", "conversation", "job")
TIME_GROUPS = ("day", "hour")


class Rollup:
    """Groups of usage: `rows()` (one dict per group), `totals()`, `histogram()`."""

    def __init__(self, by: str, parts: list[tuple]):
        """`parts`: tuples (group, *TOTALS, duration histogram, ttft histogram), histograms as
        the log's JSON (latency.py); a group may repeat."""
        import numpy as np

        self.by = by
        index: dict = {}
        ids = [index.setdefault(p[0], len(index)) for p in parts]
        self.groups = list(index)
        n = len(TOTALS)
        if parts:
            values = np.array([p[1:n + 1] for p in parts], dtype=np.float64)
            self.sums = np.zeros((len(index), n))
            np.add.at(self.sums, np.array(ids, dtype=np.int64), values)
        else:
            self.sums = np.zeros((0, n))
        self.duration = latency.matrix([p[n + 1] for p in parts], ids, len(index))
        self.ttft = latency.matrix([p[n + 2] for p in parts], ids, len(index))

    def __len__(self) -> int:
        return len(self.groups)

    def order(self):
        """Group positions in display order: days and hours by time; others by cost, then calls
        (highest first), then name."""
        import numpy as np

        if self.by in TIME_GROUPS:
            return np.argsort(np.array(self.groups, dtype=np.int64), kind="stable")
        cost, calls = self.sums[:, _COST].tolist(), self.sums[:, _CALLS].tolist()
        keys = sorted(range(len(self.groups)),
                      key=lambda g: (-cost[g], -calls[g], str(self.groups[g])))
        return np.array(keys, dtype=np.int64)

    def columns(self) -> dict:
        """Column name -> numpy array in display order: "grp", the TOTALS (integers where
        counts), latency_p50_ms, latency_p95_ms, ttft_p50_ms (NaN where none was recorded)."""
        import numpy as np

        order = self.order()
        out = {"grp": [self.groups[g] for g in order.tolist()]}
        for j, name in enumerate(TOTALS):
            column = self.sums[order, j]
            out[name] = np.rint(column).astype(np.int64) if name in _INTEGER else column
        duration, ttft = self.duration[order], self.ttft[order]
        out["latency_p50_ms"], out["latency_p95_ms"] = latency.percentiles(duration, 0.50, 0.95)
        (out["ttft_p50_ms"],) = latency.percentiles(ttft, 0.50)
        return out

    def rows(self) -> list[dict]:
        """One dict per group (JSON-ready), in display order: see columns()."""
        columns = self.columns()
        names = list(columns)
        values = [columns["grp"]] + [
            [None if v != v else v for v in columns[name].tolist()] for name in names[1:]]
        return [dict(zip(names, row)) for row in zip(*values)]

    def totals(self) -> dict:
        """The sums over every group, with overall percentiles."""
        import numpy as np

        out = _totals(self.sums.sum(axis=0))
        duration = self.duration.sum(axis=0, dtype=np.int64)[None, :]
        ttft = self.ttft.sum(axis=0, dtype=np.int64)[None, :]
        p50, p95 = latency.percentiles(duration, 0.50, 0.95)
        (t50,) = latency.percentiles(ttft, 0.50)
        out["latency_p50_ms"], out["latency_p95_ms"] = _ms(p50[0]), _ms(p95[0])
        out["ttft_p50_ms"] = _ms(t50[0])
        return out

    def histogram(self, metric: str = "duration") -> list[dict]:
        """Non-empty buckets of the whole latency (or ttft) histogram: low_ms, high_ms, n."""
        import numpy as np

        hist = (self.duration if metric == "duration" else self.ttft).sum(axis=0, dtype=np.int64)
        out = []
        for bucket in np.flatnonzero(hist).tolist():
            low, high = latency.bucket_bounds_ms(bucket)
            out.append({"bucket": bucket, "low_ms": low, "high_ms": high, "n": int(hist[bucket])})
        return out


def _totals(values) -> dict:
    return {name: (int(round(float(v))) if name in _INTEGER else float(v))
            for name, v in zip(TOTALS, values)}


def _ms(value) -> float | None:
    return None if value != value else float(value)  # NaN: no latency recorded
