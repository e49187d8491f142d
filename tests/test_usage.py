"""usage(): totals, rates and percentiles by every grouping and filter, against brute force.

A generated log with known calls is summed in plain Python here and compared with what the
rollups answer (daily, hourly and per-group tables plus the partial hours read from `calls`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import sqlite3

import pytest

from llm_notebook import latency, legacy_histograms, migrations
from llm_notebook.latency import bucket_of
from llm_notebook.log import Log

DAY0 = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc).timestamp()
MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest", "loop/m", "local/smollm2"]
NOTEBOOKS = [None, "a.ipynb", "sub/b.ipynb"]
ROLLUPS = ("usage_hourly", "usage_daily", "usage_model_daily", "usage_notebook_daily",
           "usage_hour_totals", "usage_groups", "usage_group_totals")


def generated_calls(n: int, seed: int = 7, days: float = 4.0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        model = rng.choice(MODELS)
        cached = rng.random() < 0.1
        status = "ok" if rng.random() < 0.9 else rng.choice(["error", "interrupted", "incomplete"])
        tin, tout = rng.randint(1, 500), rng.randint(0, 300)
        cost = None if model == "loop/m" else (0.0 if cached or model.startswith("local/")
                                               else (tin * 0.15 + tout * 0.6) / 1e6)
        rows.append({
            "ts": DAY0 + rng.uniform(0, days * 86400), "model": model,
            "prompt": f"p{i}", "response": "r", "input_tokens": tin, "output_tokens": tout,
            "cost": cost, "unpriced": cost is None,
            "duration_ms": rng.lognormvariate(6, 1) if rng.random() < 0.97 else None,
            "ttft_ms": rng.lognormvariate(5, 0.5) if rng.random() < 0.5 else None,
            "status": status, "cached": cached, "notebook": rng.choice(NOTEBOOKS),
            "conversation_id": rng.choice([None, None, "c1", "c2", "c3"]),
            "job_id": rng.choice([None, None, None, "job-a", "job-b"]),
        })
    return rows


def group_key(by: str, row: dict):
    return {
        "model": lambda r: r["model"],
        "notebook": lambda r: r["notebook"] or "",
        "day": lambda r: int(r["ts"] // 86400),
        "hour": lambda r: int(r["ts"] // 3600),
        "conversation": lambda r: r["conversation_id"],
        "job": lambda r: r["job_id"],
    }[by](row)


def brute_force(rows, by, since=None, until=None, model=None, notebook=None) -> dict:
    out: dict = {}
    for r in rows:
        if since is not None and r["ts"] < since or until is not None and r["ts"] >= until:
            continue
        if model is not None and r["model"] != model:
            continue
        if notebook is not None and (r["notebook"] or "") != notebook:
            continue
        key = group_key(by, r)
        if key is None:
            continue
        g = out.setdefault(key, {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0,
                                 "unpriced": 0, "errors": 0, "cached": 0, "duration_ms": 0.0,
                                 "durations": [], "ttfts": []})
        g["calls"] += 1
        g["input_tokens"] += r["input_tokens"]
        g["output_tokens"] += r["output_tokens"]
        g["cost"] += r["cost"] or 0.0
        g["unpriced"] += r["unpriced"]
        g["errors"] += r["status"] != "ok"
        g["cached"] += r["cached"]
        g["duration_ms"] += r["duration_ms"] or 0.0
        if not r["cached"]:
            if r["duration_ms"] is not None:
                g["durations"].append(r["duration_ms"])
            if r["ttft_ms"] is not None:
                g["ttfts"].append(r["ttft_ms"])
    return out


def rank_value(values: list[float], q: float) -> float | None:
    """The value a histogram percentile must fall in the bucket of: the first one whose
    cumulative count reaches q * n."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def assert_same_bucket(reported, values, q):
    want = rank_value(values, q)
    if want is None:
        assert reported is None
        return
    assert reported is not None
    # Histogram buckets are quarter powers of two (~19% wide): the reported value is the
    # middle of the bucket holding the true percentile.
    assert bucket_of(reported) == bucket_of(want), (reported, want)
    assert abs(math.log2(reported / want)) <= 0.25 + 1e-9


def assert_rows_match(rows: list[dict], expected: dict):
    assert {r["grp"] for r in rows} == set(expected)
    for r in rows:
        want = expected[r["grp"]]
        for name in ("calls", "input_tokens", "output_tokens", "unpriced", "errors", "cached"):
            assert r[name] == want[name], (r["grp"], name)
        assert r["cost"] == pytest.approx(want["cost"], rel=1e-9, abs=1e-12)
        assert r["duration_ms"] == pytest.approx(want["duration_ms"], rel=1e-9)
        assert_same_bucket(r["latency_p50_ms"], want["durations"], 0.50)
        assert_same_bucket(r["latency_p95_ms"], want["durations"], 0.95)
        assert_same_bucket(r["ttft_p50_ms"], want["ttfts"], 0.50)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    rows = generated_calls(4000)
    log = Log(str(tmp_path_factory.mktemp("usage") / "log.db"))
    for start in range(0, len(rows), 500):
        log.insert_calls(rows[start:start + 500])
    yield log, rows
    log.close()


@pytest.mark.parametrize("by", ["model", "day", "hour", "notebook", "conversation", "job"])
def test_every_grouping_matches_brute_force(generated, by):
    log, rows = generated
    result = log.usage_rows(by=by)
    assert_rows_match(result, brute_force(rows, by))
    if by in ("day", "hour"):
        assert [r["grp"] for r in result] == sorted(r["grp"] for r in result)
    else:
        costs = [r["cost"] for r in result]
        assert costs == sorted(costs, reverse=True)


def _bound(rng: random.Random):
    """A since/until of every kind the range splitter distinguishes."""
    kind = rng.choice(["none", "day", "hour", "odd", "odd", "outside"])
    if kind == "none":
        return None
    if kind == "day":
        return DAY0 + rng.randint(0, 4) * 86400
    if kind == "hour":
        return DAY0 + rng.randint(0, 96) * 3600
    if kind == "outside":
        return DAY0 + rng.choice([-3, 9]) * 86400
    return DAY0 + rng.uniform(0, 4 * 86400)


def test_random_filters_match_brute_force(generated):
    log, rows = generated
    rng = random.Random(11)
    checked = 0
    while checked < 60:
        since, until = _bound(rng), _bound(rng)
        if since is not None and until is not None and since > until:
            since, until = until, since
        by = rng.choice(["model", "day", "hour", "notebook", "conversation", "job"])
        model = rng.choice([None, None, *MODELS])
        notebook = rng.choice([None, None, "", "a.ipynb", "sub/b.ipynb"])
        result = log.usage_rows(by=by, since=since, until=until, model=model, notebook=notebook)
        assert_rows_match(result, brute_force(rows, by, since, until, model, notebook))
        checked += 1


def test_partial_hours_at_both_ends_are_exact(generated):
    log, rows = generated
    since, until = DAY0 + 3600 * 5 + 1234.5, DAY0 + 86400 * 2 + 3600 * 7 + 17.25
    for by in ("model", "day", "hour", "job"):
        assert_rows_match(log.usage_rows(by=by, since=since, until=until),
                          brute_force(rows, by, since, until))
    # A range inside one hour is read from `calls` alone.
    inside = (DAY0 + 3600 * 30 + 100, DAY0 + 3600 * 30 + 2000)
    assert_rows_match(log.usage_rows(by="model", since=inside[0], until=inside[1]),
                      brute_force(rows, "model", *inside))
    assert log.usage_rows(by="model", since=since, until=since) == []


def test_totals_and_histogram(generated):
    log, rows = generated
    rollup = log.usage_rollup("total", model="openai/gpt-4o-mini")
    want = brute_force(rows, "model", model="openai/gpt-4o-mini")["openai/gpt-4o-mini"]
    totals = rollup.totals()
    assert totals["calls"] == want["calls"] and totals["cost"] == pytest.approx(want["cost"])
    assert_same_bucket(totals["latency_p95_ms"], want["durations"], 0.95)
    hist = rollup.histogram("duration")
    assert sum(b["n"] for b in hist) == len(want["durations"])
    for b in hist:
        inside = [d for d in want["durations"] if b["low_ms"] <= d < b["high_ms"]]
        assert len(inside) == b["n"]
    assert sum(b["n"] for b in rollup.histogram("ttft")) == len(want["ttfts"])


def test_bad_arguments(generated):
    log, _ = generated
    with pytest.raises(ValueError, match="choose one of model, day, hour, notebook, conversation, job"):
        log.usage_rows(by="week")
    with pytest.raises(ValueError, match="'since' is after 'until'"):
        log.usage_rows(since=DAY0 + 10, until=DAY0)


def test_session_usage_frame(nb_session):
    rows = generated_calls(600, seed=3)
    nb_session.log.insert_calls(rows)
    frame = nb_session.usage(by="day")
    assert list(frame.columns) == [
        "day", "calls", "input_tokens", "output_tokens", "cost", "unpriced", "errors", "cached",
        "error_rate", "cache_hit_rate", "latency_p50_ms", "latency_p95_ms", "ttft_p50_ms",
        "mean_latency_ms"]
    assert list(frame["day"]) == [dt.date(2024, 3, d) for d in (1, 2, 3, 4)]
    day2 = brute_force(rows, "day")[int(DAY0 // 86400) + 1]
    rec = frame.iloc[1]
    assert rec["calls"] == day2["calls"]
    assert rec["error_rate"] == pytest.approx(day2["errors"] / day2["calls"])
    assert rec["cache_hit_rate"] == pytest.approx(day2["cached"] / day2["calls"])
    assert rec["mean_latency_ms"] == pytest.approx(day2["duration_ms"] / day2["calls"])

    # since/until: dates and date-only strings are whole UTC days, `until` included.
    one_day = nb_session.usage(by="model", since="2024-03-02", until=dt.date(2024, 3, 2))
    assert one_day["calls"].sum() == day2["calls"]
    stamp = nb_session.usage(by="model", since=dt.datetime(2024, 3, 2), until="2024-03-03T00:00")
    assert stamp["calls"].sum() == day2["calls"]
    import pandas as pd
    ts = nb_session.usage(by="hour", since=pd.Timestamp("2024-03-02", tz="UTC"),
                          until=DAY0 + 2 * 86400)
    assert ts["calls"].sum() == day2["calls"] and len(ts) <= 24
    assert str(ts["hour"].dt.tz) == "UTC"

    unpriced = nb_session.usage(by="model").set_index("model").loc["loop/m"]
    assert unpriced["unpriced"] == unpriced["calls"] and unpriced["cost"] == 0

    with pytest.raises(ValueError, match="is not a date"):
        nb_session.usage(since="yesterday")
    with pytest.raises(TypeError, match="since must be"):
        nb_session.usage(since=True)
    with pytest.raises(TypeError, match="until must be"):
        nb_session.usage(until=object())
    with pytest.raises(ValueError, match="choose one of"):
        nb_session.usage(by="week")


def test_conversation_and_job_labels(nb_session):
    log = nb_session.log
    log.create_conversation("c-1", name="planning")
    log.insert_calls([{"ts": DAY0 + i, "model": "loop/m", "status": "ok", "conversation_id": "c-1",
                       "input_tokens": 3, "output_tokens": 4} for i in range(3)])
    frame = nb_session.usage(by="conversation")
    assert frame.to_dict("records")[0]["label"] == "planning"
    assert frame["calls"].tolist() == [3]
    assert nb_session.usage(by="job").empty


def test_json_histograms_and_the_sql_bucket_rule():
    values = [0.2, 1.0, 1.5, 250.0, 250.1, 9000.0, 10 ** 12, -5.0]
    # SQL finds a latency's bucket in latency_buckets exactly as bucket_of() does, also on the
    # bounds themselves (no function of ours on the connection).
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE latency_buckets (bucket INTEGER PRIMARY KEY, low_ms REAL, high_ms REAL)")
    db.executemany("INSERT INTO latency_buckets VALUES (:bucket, :low_ms, :high_ms)",
                   latency.bucket_table_rows())
    probes = values + latency.LOW_MS[1:] + [b - 1e-9 for b in latency.LOW_MS[2:]]
    for v in probes:
        assert db.execute(f"SELECT {latency.bucket_sql('?')}", (v,)).fetchone()[0] == bucket_of(v), v
    # A histogram column grows one latency at a time with the trigger's own SQL.
    db.execute("CREATE TABLE t (h TEXT)")
    db.execute("INSERT INTO t VALUES (NULL)")
    for v in values:
        db.execute(f"UPDATE t SET h = {latency.histogram_update_sql('h', '?')}", (v,))
    text = db.execute("SELECT h FROM t").fetchone()[0]
    counts = latency.matrix([text, None, '{"3":2}'], [0, 1, 0], 2)
    assert counts.shape[0] == 2 and counts[1].sum() == 0
    assert counts[0].sum() == len(values) + 2 and counts[0, 120] == 1
    assert counts[0, 0] == 2                       # 0.2 ms and a negative latency
    assert counts[0, bucket_of(1.5)] == 1 + 2      # bucket 3: 1.5 ms, and the other row's two
    assert counts[0, bucket_of(250.0)] == 2
    low, high = latency.bucket_bounds_ms(bucket_of(250.0))
    assert low <= 250.0 < high and high / low == pytest.approx(2 ** 0.25)
    # The blobs of older logs convert to the same histograms.
    blob = None
    for v in values:
        blob = legacy_histograms.add(blob, v)
    assert latency.matrix([legacy_histograms.blob_to_json(blob)], [0], 1)[0].tolist() == \
        latency.matrix([text], [0], 1)[0].tolist()


def _legacy_log(path: str, rows: list[dict], upto: str) -> None:
    """A log as an older llm-notebook left it: migrations up to (not including) `upto` run by
    that version, which had its SQL functions on its connection, and `rows` written by it."""
    from llm_notebook.call_store import CALL_COLUMNS, _record

    names = [name for name, _ in migrations.MIGRATIONS]
    db = sqlite3.connect(path, isolation_level=None)
    legacy_histograms.install(db)
    db.execute("BEGIN IMMEDIATE")
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied REAL)")
    for name, fn in migrations.MIGRATIONS[:names.index(upto)]:
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    # That version wrote the columns its schema had (not those added since, e.g. `replayed`).
    had = {r[1] for r in db.execute("PRAGMA table_info(calls)")}
    kept = [i for i, c in enumerate(CALL_COLUMNS) if c in had]
    db.executemany(f"INSERT INTO calls ({', '.join(CALL_COLUMNS[i] for i in kept)}) VALUES "
                   f"({', '.join('?' for _ in kept)})",
                   [tuple(_record(r)[i] for i in kept) for r in rows])
    db.execute("COMMIT")
    db.close()


@pytest.mark.parametrize("upto", ["m040_usage_histograms_and_groups",
                                  "m050_plain_sql_usage_rollups"])
def test_rollups_of_an_older_log_equal_the_triggers(tmp_path, upto):
    # A log from before m040 (rolled up by the migrations' GROUP BY over calls) or from the
    # blob-histogram days (its blobs converted by m050) reads the same as a new log filled
    # by the plain-SQL trigger.
    rows = generated_calls(1500, seed=5)
    _legacy_log(str(tmp_path / "old.db"), rows, upto)
    migrated = Log(str(tmp_path / "old.db"))
    fresh = Log(str(tmp_path / "new.db"))
    fresh.insert_calls(rows)
    for table in ROLLUPS:
        a = migrated._tuples(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        b = fresh._tuples(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        assert len(a) == len(b) > 0, table
        for x, y in zip(a, b):
            assert _close(x, y), (table, x, y)
    assert_rows_match(migrated.usage_rows(by="job"), brute_force(rows, "job"))
    # After the upgrade the log is plain SQLite: a row written without llm-notebook counts.
    plain = sqlite3.connect(str(tmp_path / "old.db"))
    plain.execute("INSERT INTO calls (ts, model, status, duration_ms) VALUES (?, 'x/m', 'ok', 5)",
                  (DAY0,))
    plain.commit()
    plain.close()
    assert migrated.usage_rows(by="model", model="x/m")[0]["calls"] == 1


def test_a_call_written_by_plain_sqlite3_counts_in_usage(nb_session, tmp_path):
    """The log is a plain SQLite file: the stdlib sqlite3 module (no llm_notebook function on
    its connection) inserts a call, and usage(), history() and the rollups see it."""
    path = nb_session.config.log_path
    nb_session.log.insert_calls([{"ts": DAY0 + 10, "model": "loop/m", "status": "ok",
                                  "input_tokens": 2, "output_tokens": 3, "cost": 0.5,
                                  "duration_ms": 100.0}])
    script = f"""
import sqlite3
db = sqlite3.connect({path!r})
db.execute("INSERT INTO calls (ts, model, status, input_tokens, output_tokens, cost, "
           "duration_ms, ttft_ms, prompt, response, notebook) VALUES "
           "({DAY0 + 20}, 'other/tool', 'ok', 7, 11, 0.25, 900.0, 40.0, 'from another tool', "
           "'hello', 'n.ipynb')")
db.commit()
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr     # no "no such function: llmnb_hist_add"
    by_model = nb_session.usage(by="model").set_index("model")
    assert by_model.loc["other/tool", "calls"] == 1
    assert by_model.loc["other/tool", "input_tokens"] == 7
    assert by_model.loc["other/tool", "cost"] == pytest.approx(0.25)
    assert bucket_of(by_model.loc["other/tool", "latency_p50_ms"]) == bucket_of(900.0)
    assert bucket_of(by_model.loc["other/tool", "ttft_p50_ms"]) == bucket_of(40.0)
    assert by_model["calls"].sum() == 2
    assert nb_session.usage(by="notebook").set_index("notebook").loc["n.ipynb", "calls"] == 1
    assert nb_session.history(search="another tool")["model"].tolist() == ["other/tool"]


def _close(x: tuple, y: tuple) -> bool:
    return all(_same(a, b) for a, b in zip(x, y))


def _same(a, b) -> bool:
    if isinstance(a, float):
        return a == pytest.approx(b, rel=1e-9)
    if isinstance(a, str) and a.startswith("{") and isinstance(b, str):
        return json.loads(a) == json.loads(b)      # histograms: the keys' order may differ
    return a == b


def test_streamed_and_plain_calls_record_usage_and_cost(loop_session, loopback):
    loop_session.config.prices = {"loop/*": {"input": 2.0, "output": 8.0}}
    r1 = loop_session.ask("one two three", model="loop/m")
    stream = loop_session.stream("four five", model="loop/m")
    text = "".join(stream)
    r2 = stream.response
    assert text and r2.output_tokens == len(text.split())
    assert r2.input_tokens == 2 and r2.ttft_ms is not None
    assert r2.cost == pytest.approx((2 * 2.0 + r2.output_tokens * 8.0) / 1e6)
    row = loop_session.log.call(r2.id)
    assert row["input_tokens"] == 2 and row["cost"] == pytest.approx(r2.cost)
    assert row["unpriced"] == 0

    usage = loop_session.usage(by="model").set_index("model").loc["loop/m"]
    assert usage["calls"] == 2 and usage["unpriced"] == 0
    assert usage["input_tokens"] == r1.input_tokens + 2
    assert usage["cost"] == pytest.approx(r1.cost + r2.cost)
    assert usage["ttft_p50_ms"] > 0
    assert loopback.stats()["requests"] == 2


def test_unpriced_calls_are_flagged_and_counted(loop_session):
    r = loop_session.ask("hello there", model="loop/m")
    assert r.cost is None and r.unpriced
    row = loop_session.log.call(r.id)
    assert row["cost"] is None and row["unpriced"] == 1
    usage = loop_session.usage(by="model").set_index("model").loc["loop/m"]
    assert usage["unpriced"] == 1 and usage["cost"] == 0


def test_usage_facets(nb_session):
    nb_session.log.insert_calls(generated_calls(200, seed=2))
    facets = nb_session.log.usage_facets()
    assert facets["models"] == sorted(MODELS)
    assert facets["notebooks"] == ["a.ipynb", "sub/b.ipynb"]
