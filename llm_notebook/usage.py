"""Usage summaries as DataFrames: `Session.usage()` (the numbers come from `Log.usage_rows`)."""

from __future__ import annotations

import datetime as dt

from .rollup import BY

COLUMNS = ("calls", "input_tokens", "output_tokens", "cost", "unpriced", "errors", "cached",
           "error_rate", "cache_hit_rate", "latency_p50_ms", "latency_p95_ms", "ttft_p50_ms",
           "mean_latency_ms")


def bounds(since=None, until=None) -> tuple[float | None, float | None]:
    """since/until as unix times: since inclusive, until exclusive.

    Each may be a datetime (naive = UTC), a date or date-only ISO string (midnight UTC; for
    `until` the end of that day, so since=until=date is that whole day), an ISO datetime
    string, or a unix time.
    """
    return _timestamp(since, "since", end_of_day=False), _timestamp(until, "until", end_of_day=True)


def _timestamp(value, name: str, *, end_of_day: bool) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a datetime, date, ISO string or unix time, not bool")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (dt.date.fromisoformat(text) if len(text) == 10
                     else dt.datetime.fromisoformat(text))
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a date: use e.g. '2025-01-31' or "
                             f"'2025-01-31T14:00'") from None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        value = value.to_pydatetime()
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        day = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
        return (day + dt.timedelta(days=1) if end_of_day else day).timestamp()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    raise TypeError(f"{name} must be a datetime, date, ISO string or unix time, "
                    f"not {type(value).__name__}")


def usage_frame(log, *, by: str = "model", since=None, until=None, model=None, notebook=None):
    """Calls, tokens, cost, unpriced calls, error and cache-hit rates, latency p50/p95 and time
    to first token p50 per group, one row per model / day / hour / notebook / conversation / job.

    Costs are USD of priced calls; `unpriced` counts calls whose model has no known price (see
    LLMNotebook.prices). Days and hours are UTC; notebook "" holds calls made outside a
    notebook (pass notebook="" to select them). Latency percentiles come from histograms with
    buckets about 19% wide, and leave out cache hits.
    """
    import numpy as np
    import pandas as pd

    if by not in BY:
        raise ValueError(f"usage(by={by!r}): choose one of {', '.join(BY)}")
    low, high = bounds(since, until)
    columns = log.usage_rollup(by, since=low, until=high, model=model, notebook=notebook).columns()
    groups = columns.pop("grp")
    data: dict = {}
    if by == "day":
        data[by] = pd.to_datetime(np.array(groups, dtype=np.int64) * 86400, unit="s", utc=True).date
    elif by == "hour":
        data[by] = pd.to_datetime(np.array(groups, dtype=np.int64) * 3600, unit="s", utc=True)
    else:
        data[by] = groups
    if by in ("conversation", "job"):
        labels = log.usage_labels(by, groups)
        data["label"] = [labels.get(g) for g in groups]
    calls = columns["calls"].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = {"error_rate": columns["errors"] / calls,
                 "cache_hit_rate": columns["cached"] / calls,
                 "mean_latency_ms": columns.pop("duration_ms") / calls}
    columns.update(rates)
    for name in COLUMNS:
        data[name] = columns[name]
    return pd.DataFrame(data)
