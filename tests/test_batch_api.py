"""`via="batch_api"`: rows sent as one provider batch through the loopback server's files and
batches endpoints (real HTTP), answers and per-row errors mapped back to rows and logged at the
batch price; cached rows never sent; cancel, expiry, a kernel restart mid-batch picked up by id;
litellm's batch functions; a provider without a Batch API refused before anything is sent."""

from __future__ import annotations

import collections
import json
import sqlite3
import time

import pandas as pd
import pytest

import cells
from reliability.helpers import Kernel, wait_until

MODEL = "loop/loopback-model"
PRICES = {"loop/*": {"input": 1.0, "output": 2.0}}   # USD per million tokens


def batch_lines(loopback) -> list[dict]:
    return [r for r in loopback.requests() if r["path"].startswith("batch:")]


@pytest.fixture
def bapi(loop_session):
    loop_session.config.batch_api_poll_min = 0.05
    loop_session.config.batch_api_poll_max = 0.2
    loop_session.config.prices = PRICES
    return loop_session


def test_batch_api_run_end_to_end_with_failing_lines(bapi, loopback):
    loopback.script([{"kind": "400", "match": "row 3", "message": "bad row three"},
                     {"kind": "500", "match": "row 7"}])
    df = pd.DataFrame({"t": [f"row {i}" for i in range(12)]}, index=[f"k{i}" for i in range(12)])
    estimate = df.llm.estimate("Say {t}", model=MODEL, via="batch_api", max_tokens=10)
    full = df.llm.estimate("Say {t}", model=MODEL, max_tokens=10)
    assert estimate.cost == pytest.approx(full.cost / 2) and "Batch API price" in str(estimate)

    out = df.llm.map("Say {t}", model=MODEL, via="batch_api", max_tokens=10, progress=False)
    info = out.attrs["llm"]
    assert info["via"] == "batch_api" and info["ok"] == 10 and info["error"] == 2
    assert out["k0"] == "Echo: Say row 0" and pd.isna(out["k3"]) and pd.isna(out["k7"])
    assert loopback.stats()["requests"] == 0          # no chat request: one provider batch
    (batch,) = loopback.batches()
    assert batch["status"] == "completed" and batch["request_counts"] == {
        "total": 12, "completed": 10, "failed": 2}
    lines = batch_lines(loopback)
    assert sorted(int(r["custom_id"]) for r in lines) == list(range(12))
    assert all(r["body"]["max_tokens"] == 10 and r["body"]["model"] == "loopback-model"
               for r in lines)

    errors = bapi.job(info["job_id"]).errors()
    assert list(errors.index) == ["k3", "k7"]
    assert list(errors["error_kind"]) == ["bad_request", "server"]
    assert "bad row three" in errors.loc["k3", "error"]
    # Each row is logged as a call of the job, priced at the batch price (half of 1 and 2 USD/1M).
    rows = bapi.log.read("SELECT row_key, status, input_tokens, output_tokens, cost, "
                         "duration_ms FROM calls WHERE job_id = ? ORDER BY CAST(row_key AS INT)",
                         (info["job_id"],))
    assert len(rows) == 12
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:
        assert r["cost"] == pytest.approx((r["input_tokens"] * 0.5 + r["output_tokens"] * 1.0) / 1e6)
        assert r["duration_ms"] is None       # no latency of its own: it waited in a batch
    assert info["cost"] == pytest.approx(sum(r["cost"] for r in ok))
    # The provider's batch id is in the log.
    (part,) = bapi.log.read("SELECT * FROM job_batches WHERE job_id = ?", (info["job_id"],))
    assert part["batch_id"] == batch["id"] and part["recorded"] == 1 and part["requests"] == 12


def test_cached_rows_are_never_sent(bapi, loopback):
    df = pd.DataFrame({"t": [f"item {i}" for i in range(10)]})
    first = df.iloc[:6].llm.map("Say {t}", model=MODEL, progress=False)   # calls fill the cache
    assert first.attrs["llm"]["ok"] == 6
    out = df.llm.map("Say {t}", model=MODEL, via="batch_api", progress=False)
    info = out.attrs["llm"]
    assert info["ok"] == 10 and info["cached"] == 6
    assert sorted(int(r["custom_id"]) for r in batch_lines(loopback)) == [6, 7, 8, 9]
    # Its answers fill the cache too: the same rows through calls send nothing.
    before = loopback.stats()["requests"]
    again = df.llm.map("Say {t}", model=MODEL, progress=False)
    assert again.attrs["llm"]["cached"] == 10 and loopback.stats()["requests"] == before


def test_expired_batch_keeps_its_answers_and_the_same_call_sends_the_rest(bapi, loopback):
    loopback.configure(batch_line_seconds=0.1, batch_expire_seconds=0.45)
    df = pd.DataFrame({"t": [f"row {i}" for i in range(10)]})
    out = df.llm.map("Say {t}", model=MODEL, via="batch_api", progress=False)
    info = out.attrs["llm"]
    assert info["status"] == "expired" and 0 < info["ok"] < 10 and info["error"] == 0
    assert info["not_run"] == 10 - info["ok"]
    loopback.configure(batch_line_seconds=0.0, batch_expire_seconds=None)
    again = df.llm.map("Say {t}", model=MODEL, via="batch_api", progress=False)
    assert again.attrs["llm"]["job_id"] == info["job_id"]
    assert again.attrs["llm"]["ok"] == 10 and again.attrs["llm"]["status"] == "done"
    second = loopback.batches()[-1]
    assert second["request_counts"]["total"] == 10 - info["ok"]


def test_cancel_a_background_batch_api_job(bapi, loopback):
    loopback.configure(batch_line_seconds=0.1)
    df = pd.DataFrame({"t": [f"row {i}" for i in range(40)]})
    job = df.llm.map("Say {t}", model=MODEL, via="batch_api", background=True)
    wait_until(lambda: loopback.batches() and loopback.batches()[0]["request_counts"]["completed"] >= 3,
               30, what="the provider batch to answer some lines")
    job.cancel().wait(timeout=30)
    (batch,) = loopback.batches()
    assert batch["status"] == "cancelled" and loopback.stats()["batch_api"]["cancels"] == 1
    info = job.result().attrs["llm"]
    assert info["status"] == "cancelled" and 3 <= info["ok"] < 40
    assert info["ok"] == batch["request_counts"]["completed"]


def test_a_provider_without_a_batch_api_is_refused_before_anything_is_sent(ipshell, nb_session,
                                                                            loopback, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0000000000000000")
    df = pd.DataFrame({"t": ["a", "b"]})
    from llm_notebook.errors import BatchAPIUnavailable

    with pytest.raises(BatchAPIUnavailable, match="anthropic has no Batch API"):
        df.llm.map("{t}", model="anthropic/claude-3-5-haiku-latest", via="batch_api")
    with pytest.raises(BatchAPIUnavailable, match="embedded model has no Batch API"):
        df.llm.estimate("{t}", model="local/smollm2", via="batch_api")
    with pytest.raises(ValueError, match="via must be 'calls'"):
        df.llm.map("{t}", model="local/smollm2", via="batches")
    ipshell.user_ns["df"] = df
    result, cap = cells.run(ipshell, "df.llm.map('{t}', model='anthropic/claude-3-5-haiku-latest', "
                                     "via='batch_api')")
    shown = cap.stderr + cap.stdout
    assert "Traceback" not in shown and "anthropic has no Batch API" in shown
    assert len(shown.strip().splitlines()) == 1
    assert nb_session.jobs().empty and loopback.stats()["requests"] == 0


def test_batch_api_through_litellm(nb_session, loopback):
    nb_session.config.batch_api_poll_min = 0.05
    nb_session.config.batch_api_poll_max = 0.2
    key = "sk-loopback-batch-0123456789abcdef"
    loopback.configure(require_key=key)              # every files/batches request needs it
    nb_session.add_endpoint("viallm", loopback.url, via="litellm", api_key=key)
    out = nb_session.batch(["one", "two", "three"], model="viallm/loopback-model",
                           via="batch_api", progress=False)
    assert list(out) == ["Echo: one", "Echo: two", "Echo: three"]
    assert loopback.stats()["batch_api"]["uploads"] == 1 and loopback.stats()["requests"] == 0
    logged = nb_session.log.read("SELECT options, messages FROM calls")
    assert len(logged) == 3 and not any(key in (r["options"] + r["messages"]) for r in logged)


def test_restart_mid_batch_and_pick_up_by_id(loopback, tmp_path):
    log = str(tmp_path / "log.db")
    loopback.configure(batch_line_seconds=0.1)
    kernel = Kernel({"LLM_NOTEBOOK_LOG": log, "OPENAI_API_KEY": ""}, cwd=str(tmp_path))
    setup = f"""
import pandas as pd, llm_notebook
s = llm_notebook.session()
s.add_endpoint("loop", {loopback.url!r})
s.config.batch_api_poll_min = 0.05
s.config.batch_api_poll_max = 0.2
s.config.prices = {PRICES!r}
"""
    try:
        assert kernel.run(setup).status == "ok"
        started = kernel.run("df = pd.DataFrame({'t': [f'row {i}' for i in range(30)]})\n"
                             f"job = df.llm.map('Say {{t}}', model={MODEL!r}, via='batch_api', "
                             "background=True, progress=False)\nprint(job.id)")
        assert started.status == "ok", started
        job_id = started.text.strip()
        wait_until(lambda: loopback.batches() and loopback.batches()[0]["status"] == "in_progress"
                   and loopback.batches()[0]["request_counts"]["completed"] >= 2, 30,
                   what="the provider batch to be under way")
        kernel.manager.restart_kernel(now=True)
        kernel.client.wait_for_ready(timeout=90)
        with sqlite3.connect(log) as db:
            status, = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            batch_id, recorded = db.execute("SELECT batch_id, recorded FROM job_batches WHERE "
                                            "job_id = ?", (job_id,)).fetchone()
        assert status == "running" and recorded == 0          # the kernel died mid-batch
        assert batch_id == loopback.batches()[0]["id"]

        assert kernel.run(setup).status == "ok"
        picked = kernel.run(f"job = s.job({job_id!r})\nprint(job.status)\nout = job.result()\n"
                            "print(out.notna().sum(), job.status, job.progress['cost'] > 0)",
                            timeout=120)
        assert picked.status == "ok", picked
        assert picked.text.split() == ["interrupted", "30", "done", "True"]
        assert len(loopback.batches()) == 1                   # nothing was submitted again
        with sqlite3.connect(log) as db:
            logged = db.execute("SELECT count(*), count(DISTINCT row_key) FROM calls WHERE "
                                "job_id = ? AND status = 'ok'", (job_id,)).fetchone()
        assert logged == (30, 30)
    finally:
        kernel.close()


def test_a_batch_the_provider_fails_is_one_error_and_the_same_call_sends_it_again(bapi, loopback):
    loopback.script([{"kind": "batch_failed", "match": "row 2", "message": "Model not allowed."}])
    df = pd.DataFrame({"t": [f"row {i}" for i in range(4)]})
    from llm_notebook.errors import LLMError

    with pytest.raises(LLMError, match=r"the provider's batch failed \(batch_loopback_1: "
                                       r"invalid_request: Model not allowed\. \(line 3\)\)"):
        df.llm.map("Say {t}", model=MODEL, via="batch_api", progress=False)
    (job,) = bapi.jobs().itertuples()
    assert job.status == "failed" and job.done == 0
    assert bapi.log.read("SELECT count(*) AS n FROM calls")[0]["n"] == 0
    again = df.llm.map("Say {t}", model=MODEL, via="batch_api", progress=False)
    assert again.attrs["llm"]["job_id"] == job.id and again.attrs["llm"]["ok"] == 4
    assert [b["status"] for b in loopback.batches()] == ["failed", "completed"]
    from llm_notebook.batch.provider_batch import describe

    parts = bapi.log.rows_where("job_batches", "job_id = ?", [job.id], order_by="part")
    assert describe(parts) == "completed/failed 4/8"
