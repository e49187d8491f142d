"""The SQLite log: migrations, WAL, full-text search in history(), usage() totals, and several
processes writing one log file at once."""

from __future__ import annotations

import datetime as dt
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import textwrap

import pytest

import llm_notebook
from llm_notebook import migrations
from llm_notebook.log import Log, fts_query

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(llm_notebook.__file__)))


def table_names(log: Log) -> set[str]:
    return {r[0] for r in log.read("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}


# ---------------------------------------------------------------- migrations

def test_migrations_on_a_blank_database(tmp_path):
    log = Log(str(tmp_path / "blank.db"))
    names = [r["name"] for r in log.read("SELECT name FROM _migrations ORDER BY rowid")]
    assert names == [name for name, _ in migrations.MIGRATIONS]
    assert {"calls", "conversations", "cache", "calls_fts", "usage_hourly",
            "usage_groups"} <= table_names(log)


def test_reopening_applies_nothing_twice(tmp_path):
    path = str(tmp_path / "log.db")
    first = Log(path)
    first.insert_call({"model": "m", "status": "ok", "prompt": "kept"})
    applied = {r["name"]: r["applied"] for r in first.read("SELECT * FROM _migrations")}
    first.close()

    again = Log(path)
    with again.write() as db:
        assert migrations.apply(db) == []
    assert {r["name"]: r["applied"] for r in again.read("SELECT * FROM _migrations")} == applied
    assert again.count_calls() == 1


def test_migration_names_are_unique_and_numbered():
    names = [name for name, _ in migrations.MIGRATIONS]
    assert len(names) == len(set(names))
    assert all(name[0] == "m" and name[1:4].isdigit() and name[4] == "_" for name in names)


def test_a_failing_migration_leaves_no_trace(tmp_path, monkeypatch):
    def m999_broken(db):
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS + [("m999_broken", m999_broken)])
    path = str(tmp_path / "log.db")
    with pytest.raises(RuntimeError, match="migration bug"):
        Log(path)
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    # The whole upgrade ran in one transaction: nothing was half-applied.
    assert "half_done" not in tables and "calls" not in tables


def test_wal_and_busy_timeout(tmp_path):
    path = str(tmp_path / "log.db")
    log = Log(path)
    assert log.read("PRAGMA journal_mode")[0][0] == "wal"
    assert log.read("PRAGMA busy_timeout")[0][0] >= 5000
    log.insert_call({"model": "m", "status": "ok"})
    assert os.path.exists(path + "-wal")


def test_insert_calls_batches_in_one_transaction(tmp_path):
    log = Log(str(tmp_path / "log.db"))
    ids = log.insert_calls([{"model": "m", "status": "ok", "prompt": f"p{i}"} for i in range(50)],
                           cache_entries=[("k1", 3, "cached text", 1, 2)])
    assert len(ids) == 50 and ids == sorted(ids)
    assert log.cache_get("k1")["call_id"] == ids[3]
    # A row the schema refuses rolls back the whole batch.
    with pytest.raises(sqlite3.IntegrityError):
        log.insert_calls([{"model": "m", "status": "ok"}, {"model": None, "status": "ok"}])
    assert log.count_calls() == 50


# ---------------------------------------------------------------- history and search

def test_history_search_uses_full_text_search(loop_session, loopback):
    for prompt in ["the zebra crossing", "a quiet harbour", "zebras at dawn", "nothing here"]:
        loop_session.ask(prompt, model="loop/m")
    found = loop_session.history(search="zebra")
    assert sorted(found["prompt"]) == ["the zebra crossing", "zebras at dawn"]
    # Responses are searchable too, and every word must match.
    assert list(loop_session.history(search="echo harbour")["prompt"]) == ["a quiet harbour"]
    # FTS syntax typed by a user is taken literally, never as a query error.
    for nasty in ['"unbalanced', "AND OR NOT", "(x", "col:umn", "*", "a - b"]:
        loop_session.history(search=nasty)
    assert fts_query('say "hi"') == '"say"* """hi"""*'   # quotes doubled inside a phrase


def test_history_frame(loop_session, loopback, monkeypatch):
    loop_session.ask("first", model="loop/m")
    loop_session.ask("second", model="loop/other")
    monkeypatch.setenv("JPY_SESSION_NAME", "analysis.ipynb")
    loop_session.ask("third", model="loop/m")
    frame = loop_session.history()
    assert list(frame["prompt"]) == ["third", "second", "first"]      # newest first
    assert str(frame["ts"].dtype).startswith("datetime64")
    assert {"model", "response", "status", "input_tokens", "output_tokens", "cost",
            "duration_ms", "cached", "id"} <= set(frame.columns)
    assert list(loop_session.history(model="loop/other")["prompt"]) == ["second"]
    assert list(loop_session.history(notebook="analysis.ipynb")["prompt"]) == ["third"]
    assert len(loop_session.history(limit=2)) == 2
    assert loop_session.history(search="absent-word").empty


# ---------------------------------------------------------------- usage

def _generated_calls(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    start = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc).timestamp()
    rows = []
    for i in range(n):
        status = rng.choice(["ok"] * 8 + ["error", "interrupted"])
        cached = status == "ok" and rng.random() < 0.2
        rows.append({
            "ts": start + rng.uniform(0, 4 * 86400),
            "model": rng.choice(["openai/gpt-4o-mini", "local/smollm2", "loop/m"]),
            "notebook": rng.choice([None, "a.ipynb", "b.ipynb"]),
            "input_tokens": rng.randint(1, 500), "output_tokens": rng.randint(0, 300),
            "cost": round(rng.uniform(0, 0.01), 6) if rng.random() < 0.7 else None,
            "duration_ms": rng.uniform(50, 5000), "ttft_ms": rng.uniform(10, 300),
            "status": status, "cached": cached, "prompt": f"call {i}",
        })
    for row in rows:
        row["unpriced"] = row["cost"] is None
    return rows


def _expected(rows: list[dict], key) -> dict:
    out: dict = {}
    for r in rows:
        g = out.setdefault(key(r), {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0,
                                    "errors": 0, "cached": 0, "unpriced": 0, "durations": []})
        g["calls"] += 1
        g["input_tokens"] += r["input_tokens"]
        g["output_tokens"] += r["output_tokens"]
        g["cost"] += r["cost"] or 0.0
        g["errors"] += r["status"] != "ok"
        g["cached"] += r["cached"]
        g["unpriced"] += r["unpriced"]
        if not r["cached"]:
            g["durations"].append(r["duration_ms"])
    return out


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc)


@pytest.mark.parametrize("by, key, label", [
    ("model", lambda r: r["model"], lambda v: v),
    ("notebook", lambda r: r["notebook"] or "", lambda v: v),
    ("day", lambda r: _utc(r["ts"]).date(), lambda v: v),
    ("hour", lambda r: _utc(r["ts"]).replace(minute=0, second=0, microsecond=0),
     lambda v: v.to_pydatetime()),
])
def test_usage_totals_match_a_generated_log(nb_session, by, key, label):
    rows = _generated_calls(3000)
    nb_session.log.insert_calls(rows)
    expected = _expected(rows, key)
    frame = nb_session.usage(by=by)
    assert len(frame) == len(expected)
    for rec in frame.to_dict("records"):
        want = expected[label(rec[by])]
        assert rec["calls"] == want["calls"]
        assert rec["input_tokens"] == want["input_tokens"]
        assert rec["output_tokens"] == want["output_tokens"]
        assert rec["cost"] == pytest.approx(want["cost"])
        assert rec["errors"] == want["errors"] and rec["cached"] == want["cached"]
        assert rec["unpriced"] == want["unpriced"]
        assert rec["error_rate"] == pytest.approx(want["errors"] / want["calls"])
        if len(want["durations"]) >= 20:
            # Percentiles come from a histogram with ~19% wide buckets.
            assert rec["latency_p50_ms"] == pytest.approx(statistics.median(want["durations"]), rel=0.2)
    assert frame["calls"].sum() == len(rows)


def test_usage_filters(nb_session):
    rows = _generated_calls(1000, seed=3)
    nb_session.log.insert_calls(rows)
    day2 = dt.datetime(2024, 3, 2, tzinfo=dt.timezone.utc)
    day3 = dt.datetime(2024, 3, 3, tzinfo=dt.timezone.utc)
    frame = nb_session.usage(by="model", since=day2, until=day3, model="loop/m")
    want = [r for r in rows if day2.timestamp() <= r["ts"] < day3.timestamp() and r["model"] == "loop/m"]
    assert list(frame["model"]) == ["loop/m"] and frame["calls"].iloc[0] == len(want)
    nb_frame = nb_session.usage(by="model", notebook="a.ipynb")
    assert nb_frame["calls"].sum() == sum(1 for r in rows if r["notebook"] == "a.ipynb")
    with pytest.raises(ValueError, match="choose one of"):
        nb_session.usage(by="week")


def test_usage_counts_real_calls(loop_session, loopback):
    loop_session.ask("one two", model="loop/m")
    list(loop_session.stream("three four five", model="loop/m"))
    loopback.script([{"kind": "400"}])
    with pytest.raises(Exception):
        loop_session.ask("bad", model="loop/m")
    frame = loop_session.usage(by="model")
    rec = frame.set_index("model").loc["loop/m"]
    assert rec["calls"] == 3 and rec["errors"] == 1
    assert rec["input_tokens"] == 2 + 3 and rec["output_tokens"] == 3 + 4
    assert rec["unpriced"] == 2 and rec["ttft_p50_ms"] is not None


# ---------------------------------------------------------------- many processes, one log

WRITER = textwrap.dedent("""
    import sys, time
    import llm_notebook
    url, tag, n, go_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    s = llm_notebook.session()
    s.add_endpoint("loop", url)
    s.log  # open (and migrate) before the start line so all processes write at once
    time.sleep(max(0.0, go_at - time.time()))
    for i in range(n):
        s.ask(f"process {tag} call {i}", model="loop/m", max_tokens=5)
    print("done", tag)
""")


def test_four_processes_write_one_log_without_losing_a_row(tmp_path, loopback):
    import time

    path = str(tmp_path / "shared.db")
    env = dict(os.environ, LLM_NOTEBOOK_LOG=path,
               PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    go_at = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, loopback.url, str(p), "500", str(go_at)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in range(4)]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err
        assert out.strip().startswith("done")

    log = Log(path)
    assert log.count_calls() == 2000
    assert log.count_calls(status="ok") == 2000
    assert log.read("SELECT count(DISTINCT prompt) FROM calls")[0][0] == 2000
    assert log.read("SELECT count(DISTINCT kernel_session) FROM calls")[0][0] == 4
    # The rollup triggers ran for every row, whichever process wrote it.
    assert log.read("SELECT sum(calls) FROM usage_hourly")[0][0] == 2000
    assert loopback.stats()["requests"] == 2000


def test_empty_history_and_usage_still_have_their_columns(nb_session):
    history = nb_session.history()
    assert history.empty and {"prompt", "response", "model", "ts"} <= set(history.columns)
    assert nb_session.history(search="nothing")[["prompt", "response"]].empty
    for by in ("model", "day", "hour", "notebook"):
        usage = nb_session.usage(by=by)
        assert usage.empty and {by, "calls", "cost", "input_tokens"} <= set(usage.columns)


def test_sqlite_utils_reads_searches_and_writes_the_log(nb_session):
    """Another tool's view: sqlite-utils (as Datasette does) on the log file, with nothing of
    llm_notebook on its connection."""
    import sqlite_utils

    nb_session.log.insert_calls([{"model": "loop/m", "status": "ok", "prompt": "about unicorns",
                                  "response": "they are rare", "cost": 0.5}])
    db = sqlite_utils.Database(nb_session.config.log_path)
    assert db["calls"].detect_fts() == "calls_fts"       # the full-text index is standard
    assert [r["prompt"] for r in db["calls"].search("unicorns")] == ["about unicorns"]
    db["calls"].insert({"ts": 1.7e9, "model": "tool/x", "status": "ok", "cost": 0.25,
                        "prompt": "written by sqlite-utils"})
    db.close()
    usage = nb_session.usage(by="model").set_index("model")
    assert usage.loc["tool/x", "calls"] == 1 and usage.loc["tool/x", "cost"] == 0.25
    assert nb_session.history(search="sqlite-utils")["model"].tolist() == ["tool/x"]
