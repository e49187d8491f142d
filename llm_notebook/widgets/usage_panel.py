"""`llm_notebook.UsagePanel()` (and `%llm usage --panel`): what the log says calls cost, live.

Totals, cost and calls over time, cost by model, the latency distribution and a table grouped
as the user picks, filtered by date range, model and notebook. The front-end
(js/src/widgets/usage_panel.ts) draws it in plain SVG from `summary`, a small dict this side
computes from the log's usage rollups (a few KB whatever the log's size: never the calls).

Filters are traits both sides set. After every logged call of the Session (`on_call`), the
summary is recomputed at most twice a second, off the calling thread. Export: `to_pandas()`,
`to_csv()`, and a CSV download in the browser (the `export_csv` request).

The static snapshot (totals and cost by model) follows the summary once it has been still for
SNAPSHOT_SETTLE seconds: during a batch run the saved output is updated once, at the end.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from typing import Any

import traitlets

from ._base import LLMWidget, rpc
from .snapshot import Snapshot, usage_snapshot

__all__ = ["UsagePanel", "summarize"]

MIN_REFRESH_INTERVAL = 0.5      # seconds: live updates at most twice a second
TABLE_ROWS = 200                # rows of the grouped table sent to the browser (CSV has all)
TOP_MODELS = 12                 # the cost-by-model chart; the rest are summed as "other"
HOURLY_UP_TO_DAYS = 2           # over longer spans the time charts show days
MAX_POINTS = 2000               # time points sent (gaps are filled with zeros up to this)
GROUPINGS = ("model", "day", "hour", "notebook", "conversation", "job")
SNAPSHOT_SETTLE = 2.0           # seconds without a refresh before the snapshot follows


def _session():
    import llm_notebook

    return llm_notebook.session()


def _text(value) -> str:
    """A filter value as the trait holds it: '' for none, ISO date/datetime strings."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc).isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def summarize(log, *, since: str = "", until: str = "", model: str = "",
              notebook: str | None = None, group_by: str = "model") -> dict:
    """Everything the panel shows, for these filters (see the module docstring)."""
    from ..usage import bounds

    if group_by not in GROUPINGS:
        raise ValueError(f"group by must be one of {', '.join(GROUPINGS)}, not {group_by!r}")
    low, high = bounds(since or None, until or None)
    query = {"since": low, "until": high, "model": model or None, "notebook": notebook}
    total = log.usage_rollup("total", **query)
    totals = total.totals()
    calls = totals["calls"]
    totals["error_rate"] = totals["errors"] / calls if calls else None
    totals["cache_hit_rate"] = totals["cached"] / calls if calls else None

    days = log.usage_rollup("day", **query).columns()
    unit, points = "day", days
    if days["grp"]:
        first = low if low is not None else days["grp"][0] * 86400
        end = high if high is not None else (days["grp"][-1] + 1) * 86400
        if end - first <= HOURLY_UP_TO_DAYS * 86400:
            unit, points = "hour", log.usage_rollup("hour", **query).columns()
    return {
        "filters": {"since": since, "until": until, "model": model, "notebook": notebook,
                    "group_by": group_by},
        "totals": totals,
        "series": _series(unit, points, low, high),
        "models": _top_models(log.usage_rollup("model", **query).columns()),
        "latency": [[b["low_ms"], b["high_ms"], b["n"]] for b in total.histogram("duration")],
        "table": _table(log, group_by, query),
        "facets": log.usage_facets(),
        "updated": time.time(),
        "error": None,
    }


def _series(unit: str, columns: dict, low: float | None, high: float | None) -> dict:
    """Points [start (unix s), calls, cost, errors, unpriced] per day or hour, gaps as zeros."""
    step = 86400 if unit == "day" else 3600
    found = {g: i for i, g in enumerate(columns["grp"])}
    if not found:
        return {"unit": unit, "step": step, "points": []}
    first, last = min(found), max(found)
    if low is not None:
        first = min(first, int(low // step))
    if high is not None:
        last = max(last, math.ceil(high / step) - 1)
    keys = range(first, last + 1) if last - first < MAX_POINTS else sorted(found)
    points = []
    for key in keys:
        i = found.get(key)
        if i is None:
            points.append([key * step, 0, 0.0, 0, 0])
        else:
            points.append([key * step, int(columns["calls"][i]), float(columns["cost"][i]),
                           int(columns["errors"][i]), int(columns["unpriced"][i])])
    return {"unit": unit, "step": step, "points": points}


def _top_models(columns: dict) -> list[list]:
    """[model, calls, cost, unpriced] by cost, the models past TOP_MODELS summed as 'other'."""
    rows = [[g, int(columns["calls"][i]), float(columns["cost"][i]), int(columns["unpriced"][i])]
            for i, g in enumerate(columns["grp"])]
    if len(rows) > TOP_MODELS:
        rest = rows[TOP_MODELS - 1:]
        other = [f"{len(rest)} other models", sum(r[1] for r in rest), sum(r[2] for r in rest),
                 sum(r[3] for r in rest)]
        rows = rows[:TOP_MODELS - 1] + [other]
    return rows


TABLE_COLUMNS = ("calls", "input_tokens", "output_tokens", "cost", "unpriced", "errors",
                 "cached", "error_rate", "cache_hit_rate", "latency_p50_ms", "latency_p95_ms",
                 "ttft_p50_ms")


def _label(by: str, value, labels: dict) -> str:
    if by == "day":
        return dt.datetime.fromtimestamp(value * 86400, dt.timezone.utc).strftime("%Y-%m-%d")
    if by == "hour":
        return dt.datetime.fromtimestamp(value * 3600, dt.timezone.utc).strftime("%Y-%m-%d %H:00")
    if by == "notebook" and value == "":
        return "(outside notebooks)"
    if by in ("conversation", "job") and labels.get(value):
        return f"{labels[value]} ({str(value)[:8]})"
    return str(value)


def _table(log, by: str, query: dict) -> dict:
    rows = log.usage_rows(by=by, **query)
    labels = {r["grp"]: r.get("label") for r in rows} if by in ("conversation", "job") else {}
    shown = []
    for r in rows[:TABLE_ROWS]:
        calls = r["calls"]
        r = dict(r, error_rate=r["errors"] / calls if calls else None,
                 cache_hit_rate=r["cached"] / calls if calls else None)
        shown.append([_label(by, r["grp"], labels), r["grp"] if by in ("model", "notebook") else None]
                     + [r[c] for c in TABLE_COLUMNS])
    return {"by": by, "columns": ["group", "key", *TABLE_COLUMNS], "rows": shown,
            "total_rows": len(rows)}


class UsagePanel(LLMWidget):
    """Usage of the log: totals, charts and a table, filtered, updated live as calls happen.

        panel = llm_notebook.UsagePanel(since="2025-01-01", model="openai/gpt-4o-mini")
        panel                      # show it
        panel.to_pandas()          # the table as a DataFrame (usage() with the panel's filters)
    """

    _bundle = "usage_panel"

    since = traitlets.Unicode("", help="First UTC day shown (YYYY-MM-DD), '' for all.").tag(sync=True)
    until = traitlets.Unicode("", help="Last UTC day shown (YYYY-MM-DD, included).").tag(sync=True)
    model = traitlets.Unicode("", help="Only this model; '' for every model.").tag(sync=True)
    notebook = traitlets.Unicode(None, allow_none=True,
                                 help="Only this notebook; None for all, '' for calls outside "
                                 "notebooks.").tag(sync=True)
    group_by = traitlets.Unicode("model", help="Grouping of the table and of to_pandas().").tag(sync=True)
    live = traitlets.Bool(True, help="Refresh as the Session logs calls.").tag(sync=True)
    summary = traitlets.Dict(help="What the front-end draws (computed here).").tag(sync=True)

    def __init__(self, session=None, *, by: str = "model", since=None, until=None,
                 model: str | None = None, notebook: str | None = None, live: bool = True,
                 **kwargs: Any) -> None:
        if by not in GROUPINGS:
            raise ValueError(f"by must be one of {', '.join(GROUPINGS)}, not {by!r}")
        self._session = session or _session()
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self._last_refresh = float("-inf")
        self.refreshes = 0
        super().__init__(since=_text(since), until=_text(until), model=model or "",
                         notebook=notebook, group_by=by, live=live, **kwargs)
        self.refresh()
        self._listener = self._on_call
        self._session.on_call(self._listener)
        self.observe(self._on_filters, names=["since", "until", "model", "notebook", "group_by"])

    # -- Python API -------------------------------------------------------------------------------

    def refresh(self) -> dict:
        """Recompute the summary now (the front-end redraws); returns it."""
        with self._lock:
            self._last_refresh = time.monotonic()
            try:
                summary = summarize(self._session.log, since=self.since, until=self.until,
                                    model=self.model, notebook=self.notebook,
                                    group_by=self.group_by)
            except (ValueError, TypeError) as exc:
                # A bad filter from the browser: keep the numbers shown, say what is wrong.
                summary = dict(self.summary or {}, error=str(exc), updated=time.time())
            self.refreshes += 1
            self.summary = summary
        self.refresh_snapshot(delay=SNAPSHOT_SETTLE)
        return summary

    def _build_snapshot(self) -> Snapshot:
        return usage_snapshot(self.summary or {})

    def to_pandas(self, by: str | None = None):
        """`session.usage()` with the panel's filters, grouped by `by` (default: the table's)."""
        return self._session.usage(by=by or self.group_by, since=self.since or None,
                                   until=self.until or None, model=self.model or None,
                                   notebook=self.notebook)

    def to_csv(self, path: str | None = None, by: str | None = None) -> str:
        """The table as CSV text; also written to `path` when given."""
        from ..csv_export import frame_to_csv

        text = frame_to_csv(self.to_pandas(by))  # model and notebook names are not formulas
        if path is not None:
            with open(path, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        return text

    def close(self) -> None:
        # Also runs from __del__, possibly of a panel whose __init__ failed half-way.
        session, listener = getattr(self, "_session", None), getattr(self, "_listener", None)
        if session is not None and listener is not None:
            session.off_call(listener)
        lock = getattr(self, "_lock", None)
        if lock is not None:
            with lock:
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
        super().close()

    # -- front-end requests -----------------------------------------------------------------------

    @rpc("refresh")
    def _refresh_request(self) -> bool:
        self.refresh()
        return True

    @rpc("export_csv")
    def _export_csv(self) -> dict:
        parts = [self.group_by, self.since, self.until]
        name = "-".join(p for p in parts if p).replace(":", "")
        return {"filename": f"llm-usage-by-{name}.csv", "text": self.to_csv()}

    # -- live updates -----------------------------------------------------------------------------

    def _on_filters(self, _change) -> None:
        self.refresh()

    def _on_call(self, _row: dict) -> None:
        # Runs in the calling task, on the background loop: schedule, never query here.
        if not self.live:
            return
        with self._lock:
            if self._timer is not None:
                return  # a refresh is already due and will see this call
            wait = max(0.0, self._last_refresh + MIN_REFRESH_INTERVAL - time.monotonic())
            timer = threading.Timer(wait, self._timed_refresh)
            timer.daemon = True
            self._timer = timer
            timer.start()

    def _timed_refresh(self) -> None:
        with self._lock:
            self._timer = None
        try:
            self.refresh()
        except Exception:  # a timer thread has nobody to report to; the next call retries
            import logging

            logging.getLogger(__name__).warning("llm-notebook: usage panel refresh failed",
                                                exc_info=True)
