"""The SQL of usage: the rollup tables the insert trigger keeps (migrations m003, m040-m043,
m050) and the queries over them; a mixin of `Log`.

Usage reads the rollups, never all of `calls`: a query's time range is split into whole UTC days
(daily rollups), the whole hours left at its ends (hourly rollups) and the partial hours at its
edges (`calls`, by its ts index), so its bounds are exact and a million calls answer in
milliseconds. Each part comes as tuples (group, sums..., duration histogram, ttft histogram);
llm_notebook.rollup adds the parts together.
"""

from __future__ import annotations

import math

from .latency import bucket_sql


class UsageStore:
    def usage_rollup(self, by: str = "model", *, since: float | None = None,
                     until: float | None = None, model: str | None = None,
                     notebook: str | None = None):
        """A rollup.Rollup of the calls with since <= ts < until (unix times; None: unbounded),
        of one model and one notebook ('' = calls made outside a notebook) when given, grouped
        by model, notebook, day, hour, conversation, job, or "total" (one group)."""
        from .rollup import BY, Rollup

        if by not in BY and by != "total":
            raise ValueError(f"usage(by={by!r}): choose one of {', '.join(BY)}")
        if since is not None and until is not None and since > until:
            raise ValueError("'since' is after 'until'")
        model = model or None  # "" (e.g. an empty filter field) means every model
        group_by_key = by in ("conversation", "job")
        days, hours, raw = _split_range(since, until, use_days=by != "hour" and not group_by_key)
        parts: list[tuple] = []
        if days is not None:
            parts += self._rollup_part(_daily_table(by, model, notebook), _DAILY_GROUPS[by],
                                       "day", days, model, notebook)
        if group_by_key and hours == [(None, None)] and model is None and notebook is None:
            hours = []  # the whole log: one row per conversation or job
            parts += self._rollup_part("usage_group_totals", _KEY_GROUPS, "", (None, None),
                                       None, None, kind=by)
        for span in hours:
            if group_by_key:
                parts += self._rollup_part("usage_groups", _KEY_GROUPS, "hour", span, model,
                                           notebook, kind=by)
            elif model is None and notebook is None and by in _HOUR_TOTAL_GROUPS:
                parts += self._rollup_part("usage_hour_totals", _HOUR_TOTAL_GROUPS[by], "hour",
                                           span, None, None)
            else:
                parts += self._rollup_part("usage_hourly", _HOURLY_GROUPS[by], "hour", span,
                                           model, notebook)
        for low, high in raw:
            parts += self._calls_part(by, low, high, model, notebook)
        return Rollup(by, parts)

    def _rollup_part(self, table: str, group: str, time_column: str, span: tuple, model, notebook,
                     *, kind: str | None = None) -> list[tuple]:
        from .rollup import TOTALS

        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        low, high = span
        if low is not None:
            where.append(f"{time_column} >= ?")
            params.append(low)
        if high is not None:
            where.append(f"{time_column} < ?")
            params.append(high)
        _filter(where, params, model, notebook, notebook_column="notebook")
        # One tuple per rollup row: rollup.Rollup adds up the rows of a group, histograms too.
        return self._tuples(f"SELECT {group}, {', '.join(TOTALS)}, duration_buckets, "
                            f"ttft_buckets FROM {table} {_clause(where)}", params)

    def _calls_part(self, by: str, low: float, high: float, model, notebook) -> list[tuple]:
        """Calls in [low, high), grouped as the rollup triggers would have added them."""
        where, params = ["ts >= ?", "ts < ?"], [low, high]
        group = _CALLS_GROUPS[by]
        if by in ("conversation", "job"):
            where.append(f"{group} IS NOT NULL")
        _filter(where, params, model, notebook, notebook_column="COALESCE(notebook, '')")
        return self._tuples(f"""
            WITH part AS (SELECT {group} AS g, * FROM calls {_clause(where)}),
            sums AS (SELECT g, count(*), sum(COALESCE(input_tokens, 0)),
                     sum(COALESCE(output_tokens, 0)), sum(COALESCE(cost, 0)), sum(unpriced),
                     sum(status != 'ok'), sum(cached), sum(COALESCE(duration_ms, 0))
                     FROM part GROUP BY g),
            {_histograms_sql("duration", "duration_ms")},
            {_histograms_sql("ttft", "ttft_ms")}
            SELECT sums.*, duration.h, ttft.h FROM sums
            LEFT JOIN duration ON duration.g IS sums.g LEFT JOIN ttft ON ttft.g IS sums.g""",
            params)

    def usage_rows(self, *, by: str = "model", since: float | None = None,
                   until: float | None = None, model: str | None = None,
                   notebook: str | None = None) -> list[dict]:
        """Totals per group (by model, day, hour, notebook, conversation or job): grp, calls,
        input/output tokens, cost, unpriced, errors, cached, duration_ms, and latency_p50_ms,
        latency_p95_ms, ttft_p50_ms (None where none was recorded). grp is a unix day or hour
        number for day and hour. by=conversation and by=job also give `label` (see
        usage_labels).
        """
        if by == "total":
            raise ValueError("usage(by='total'): use usage_rollup('total').totals()")
        rows = self.usage_rollup(by, since=since, until=until, model=model,
                                 notebook=notebook).rows()
        if by in ("conversation", "job"):
            labels = self.usage_labels(by, [r["grp"] for r in rows])
            for r in rows:
                r["label"] = labels.get(r["grp"])
        return rows

    def usage_facets(self, limit: int = 500) -> dict[str, list[str]]:
        """Every model and notebook in the log (from the small daily rollups), at most `limit`
        of each."""
        models = [r[0] for r in self._tuples(
            "SELECT DISTINCT model FROM usage_model_daily ORDER BY model LIMIT ?", (limit,))]
        notebooks = [r[0] for r in self._tuples(
            "SELECT DISTINCT notebook FROM usage_notebook_daily WHERE notebook != '' "
            "ORDER BY notebook LIMIT ?", (limit,))]
        return {"models": models, "notebooks": notebooks}

    def usage_totals(self, *, since: float | None = None, until: float | None = None,
                     model: str | None = None, notebook: str | None = None) -> dict:
        """The sums of every call in a range (calls, tokens, cost, errors...) and overall
        latency percentiles."""
        return self.usage_rollup("total", since=since, until=until, model=model,
                                 notebook=notebook).totals()

    def usage_labels(self, kind: str, ids: list[str]) -> dict[str, str | None]:
        """What a user recognises a group by: a conversation's name, a job's prompt (80 chars)."""
        sql = ("SELECT id, name FROM conversations WHERE id IN ({in})" if kind == "conversation"
               else "SELECT id, substr(prompt, 1, 80) FROM jobs WHERE id IN ({in})")
        return dict(self.select_in(sql, ids))

    def cost_since(self, since: float) -> float:
        """USD of the calls logged since `since` (a whole hour, e.g. midnight UTC)."""
        rows = self.read("SELECT coalesce(sum(cost), 0) FROM usage_hour_totals WHERE hour >= ?",
                         (int(since // 3600),))
        return float(rows[0][0] or 0)



def _histograms_sql(name: str, column: str) -> str:
    """A CTE `name` (g, h): per group of `part`, the JSON histogram of `column` (cache hits
    left out, as the rollup trigger leaves them out)."""
    return (f"{name} AS (SELECT g, json_group_object(b, n) AS h FROM ("
            f"SELECT g, {bucket_sql(column)} AS b, count(*) AS n FROM part "
            f"WHERE NOT cached AND {column} IS NOT NULL GROUP BY g, b) GROUP BY g)")


def _filter(where: list, params: list, model: str | None, notebook: str | None, *,
            notebook_column: str) -> None:
    if model is not None:
        where.append("model = ?")
        params.append(model)
    if notebook is not None:
        where.append(f"{notebook_column} = ?")
        params.append(notebook)


def _clause(where: list[str]) -> str:
    return ("WHERE " + " AND ".join(where)) if where else ""


# The group expression of each usage grouping, per source table ("total": one group).
_DAILY_GROUPS = {"model": "model", "notebook": "notebook", "day": "day", "total": "''"}
_HOURLY_GROUPS = {"model": "model", "notebook": "notebook", "day": "hour / 24", "hour": "hour",
                  "total": "''"}
_HOUR_TOTAL_GROUPS = {"day": "hour / 24", "hour": "hour", "total": "''"}
_KEY_GROUPS = "key"
_CALLS_GROUPS = {"model": "model", "notebook": "COALESCE(notebook, '')",
                 "day": "CAST(ts / 86400 AS INTEGER)", "hour": "CAST(ts / 3600 AS INTEGER)",
                 "conversation": "conversation_id", "job": "job_id", "total": "''"}


def _daily_table(by: str, model: str | None, notebook: str | None) -> str:
    """The smallest daily rollup holding every dimension a query groups or filters by."""
    needs = {by} & {"model", "notebook"}
    if model is not None:
        needs.add("model")
    if notebook is not None:
        needs.add("notebook")
    if needs <= {"model"}:
        return "usage_model_daily"
    if needs <= {"notebook"}:
        return "usage_notebook_daily"
    return "usage_daily"


def _split_range(since: float | None, until: float | None, *, use_days: bool):
    """[since, until) as (whole days or None, [whole-hour spans], [partial-hour spans]).

    Days and hours are (first, end) numbers with None for an open end; partial spans are unix
    times. Without use_days, all whole hours come as one span.
    """
    first_hour = None if since is None else math.ceil(since / 3600)
    end_hour = None if until is None else math.floor(until / 3600)
    if first_hour is not None and end_hour is not None and first_hour >= end_hour:
        return None, [], [(since, until)] if since < until else []
    raw = []
    if since is not None and since < first_hour * 3600:
        raw.append((since, first_hour * 3600))
    if until is not None and end_hour * 3600 < until:
        raw.append((end_hour * 3600, until))
    if not use_days:
        return None, [(first_hour, end_hour)], raw
    first_day = None if first_hour is None else -(-first_hour // 24)
    end_day = None if end_hour is None else end_hour // 24
    if first_day is not None and end_day is not None and first_day >= end_day:
        return None, [(first_hour, end_hour)], raw
    hours = []
    if first_hour is not None and first_hour < first_day * 24:
        hours.append((first_hour, first_day * 24))
    if end_hour is not None and end_day * 24 < end_hour:
        hours.append((end_day * 24, end_hour))
    return (first_day, end_day), hours, raw


