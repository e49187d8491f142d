"""Usage summaries as DataFrames (the numbers come from log.usage_rows)."""

from __future__ import annotations

import datetime as dt


def _timestamp(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    if hasattr(value, "timestamp"):
        if getattr(value, "tzinfo", None) is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    raise TypeError(f"since/until must be a datetime, date, ISO string or unix time, not {type(value).__name__}")


def usage_frame(log, *, by: str = "model", since=None, until=None, model=None, notebook=None):
    import pandas as pd

    rows = log.usage_rows(by=by, since=_timestamp(since), until=_timestamp(until), model=model,
                          notebook=notebook)
    frame = pd.DataFrame(rows, columns=[
        "grp", "calls", "input_tokens", "output_tokens", "cost", "unpriced", "errors", "cached",
        "duration_ms", "latency_p50_ms", "latency_p95_ms", "ttft_p50_ms"])
    if by == "day":
        frame["grp"] = pd.to_datetime(frame["grp"] * 86400, unit="s", utc=True).dt.date
    elif by == "hour":
        frame["grp"] = pd.to_datetime(frame["grp"] * 3600, unit="s", utc=True)
    frame = frame.rename(columns={"grp": by})
    calls = frame["calls"].where(frame["calls"] > 0)
    frame["error_rate"] = frame["errors"] / calls
    frame["cache_hit_rate"] = frame["cached"] / calls
    frame["mean_latency_ms"] = frame.pop("duration_ms") / calls
    return frame.reset_index(drop=True)
