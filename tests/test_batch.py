"""Batch runs over DataFrames and lists through the loopback server (real HTTP, lean path).

Every test checks the books: every row ends ok or error, none is lost, and the server's own
record of requests shows how many times each prompt was sent.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time

import pandas as pd
import pytest

from llm_notebook.batch.inputs import MissingColumnError

MODEL = "loop/loopback-model"


def sent(loopback) -> collections.Counter:
    """How many times the server received each prompt (the last user message)."""
    counts = collections.Counter()
    for r in loopback.requests():
        body = r["body"]
        if isinstance(body, dict):
            counts[body["messages"][-1]["content"]] += 1
    return counts


def books(out, n):
    info = out.attrs["llm"]
    assert len(out) == n
    assert info["ok"] + info["error"] + info["not_run"] == n
    return info


def test_map_returns_series_aligned_to_index(loop_session, loopback):
    df = pd.DataFrame({"review": ["great", "awful", "fine"]}, index=["a", "b", "c"])
    out = df.llm.map("Sentiment of: {review}", model=MODEL)
    assert isinstance(out, pd.Series) and list(out.index) == ["a", "b", "c"]
    assert out.dtype == "string"
    assert out["b"] == "Echo: Sentiment of: awful"
    info = books(out, 3)
    assert info["ok"] == 3 and info["error"] == 0 and info["cached"] == 0
    assert set(sent(loopback).values()) == {1} and len(sent(loopback)) == 3
    job = loop_session.job(info["job_id"])
    assert job.status == "done" and job.info["ok"] == 3
    # Every answer is in the log with the job id and the row number.
    assert loop_session.log.count_calls(job_id=info["job_id"], status="ok") == 3


def test_second_run_is_all_cache_and_sends_nothing(loop_session, loopback):
    df = pd.DataFrame({"t": [f"item {i}" for i in range(40)]})
    first = df.llm.map("Say {t}", model=MODEL, concurrency=8)
    assert books(first, 40)["ok"] == 40
    hits = loopback.stats()["requests"]
    assert hits == 40
    second = df.llm.map("Say {t}", model=MODEL, concurrency=8)
    info = books(second, 40)
    assert info["cached"] == 40 and info["requests"] == 0
    assert loopback.stats()["requests"] == hits  # zero new server hits
    assert second.equals(first)
    assert info["job_id"] != first.attrs["llm"]["job_id"]
    jobs = loop_session.jobs()
    assert list(jobs["status"]) == ["done", "done"] and list(jobs["cached"]) == [40, 0]


def test_equal_requests_in_one_run_are_sent_once(loop_session, loopback):
    df = pd.DataFrame({"t": ["red", "blue", "red", "red", "blue", "green"]})
    out = df.llm.map("Colour: {t}", model=MODEL)
    info = books(out, 6)
    assert out.tolist() == [f"Echo: Colour: {c}" for c in df["t"]]
    assert dict(sent(loopback)) == {"Colour: red": 1, "Colour: blue": 1, "Colour: green": 1}
    assert info["ok"] == 6 and info["cached"] == 3 and info["requests"] == 3
    rows = loop_session.log.read("SELECT row, call_id, cached FROM job_rows WHERE job_id = ? "
                                 "ORDER BY row", (info["job_id"],))
    assert rows[0]["call_id"] == rows[2]["call_id"] == rows[3]["call_id"] and rows[2]["cached"]
    # A failure is shared too, and said to be so.
    loopback.script([{"kind": "400", "match": "Shade: x"}])
    bad = pd.DataFrame({"t": ["x", "x"]}).llm.map("Shade: {t}", model=MODEL)
    errors = loop_session.job(bad.attrs["llm"]["job_id"]).errors()
    assert "same request as row 0" in errors.loc[1, "error"]
    assert sent(loopback)["Shade: x"] == 1
    # Without the cache, equal requests are independent samples: each is sent.
    pd.DataFrame({"t": ["y", "y"]}).llm.map("Hue: {t}", model=MODEL, cache=False)
    assert sent(loopback)["Hue: y"] == 2


def test_429_with_retry_after_is_honoured(loop_session, loopback):
    loopback.script([{"kind": "429", "retry_after": 1, "match": "row 3", "times": 1}])
    df = pd.DataFrame({"t": [f"row {i}" for i in range(6)]})
    started = time.time()
    out = df.llm.map("{t}", model=MODEL, concurrency=4)
    info = books(out, 6)
    assert info["ok"] == 6 and info["rate_limited"] == 1 and info["retries"] == 1
    limited = loopback.stats()["rate_limited"]
    assert len(limited) == 1
    retries = [r["time"] for r in loopback.requests() if r["body"]["messages"][-1]["content"] == "row 3"]
    assert len(retries) == 2
    # Not retried sooner than the server asked (Retry-After: 1 s).
    assert retries[1] - limited[0]["time"] >= 1.0
    assert time.time() - started < 5
    assert sent(loopback)["row 3"] == 2 and sum(sent(loopback).values()) == 7


def test_adaptive_concurrency_backs_off_on_429_and_recovers(loop_session, loopback):
    from llm_notebook.batch import api

    loopback.configure(latency=0.05)
    loopback.script([{"kind": "429", "retry_after": 0.2, "times": 6}])
    run, _ = api.prepare(loop_session, prompts=[f"p{i}" for i in range(300)], model=MODEL,
                         concurrency=16)
    api.run_sync(run, progress=False)
    assert run.summary()["ok"] == 300
    assert run.limit.decreases >= 1          # halved on the 429s
    assert run.limit.limit > 8               # ... and grew back while the rest succeeded
    assert run.rate_limited == 6


def test_500s_are_retried_and_bad_requests_are_not(loop_session, loopback):
    loopback.script([{"kind": "500", "match": "row 1", "times": 2},
                     {"kind": "400", "match": "row 2", "times": 5}])
    df = pd.DataFrame({"t": [f"row {i}" for i in range(4)]})
    out = df.llm.map("{t}", model=MODEL)
    info = books(out, 4)
    assert info["ok"] == 3 and info["error"] == 1
    assert out.isna().tolist() == [False, False, True, False]
    counts = sent(loopback)
    assert counts["row 1"] == 3      # two 500s, then the answer
    assert counts["row 2"] == 1      # a 400 is not retryable
    errors = loop_session.job(info["job_id"]).errors()
    assert list(errors.index) == [2]
    assert errors.loc[2, "error_kind"] == "bad_request" and errors.loc[2, "attempts"] == 1

    # max_retries bounds the retries of a row that keeps failing.
    loopback.script([{"kind": "500", "match": "again", "times": 10}])
    out = pd.DataFrame({"t": ["again"]}).llm.map("{t}", model=MODEL, max_retries=2)
    assert out.attrs["llm"]["error"] == 1 and sent(loopback)["again"] == 3
    errors = loop_session.job(out.attrs["llm"]["job_id"]).errors()
    assert errors.loc[0, "error_kind"] == "server" and errors.loc[0, "attempts"] == 3


def test_stall_beyond_the_deadline_fails_only_that_row(loop_session, loopback):
    loopback.script([{"kind": "stall", "seconds": 30, "match": "row 2", "times": 10}])
    df = pd.DataFrame({"t": [f"row {i}" for i in range(5)]})
    started = time.monotonic()
    out = df.llm.map("{t}", model=MODEL, deadline=1.5, timeout=0.6)
    elapsed = time.monotonic() - started
    info = books(out, 5)
    assert info["ok"] == 4 and info["error"] == 1
    assert elapsed < 4
    errors = loop_session.job(info["job_id"]).errors()
    assert errors.loc[2, "error_kind"] == "timeout"
    assert 2 <= sent(loopback)["row 2"] <= 3  # retried within the deadline, then given up


def test_connection_dropped_mid_response_is_retried(loop_session, loopback):
    loopback.script([{"kind": "drop_mid_stream", "match": "row 1", "times": 1}])
    df = pd.DataFrame({"t": [f"row {i}" for i in range(3)]})
    out = df.llm.map("{t}", model=MODEL)
    assert books(out, 3)["ok"] == 3
    assert out[1] == "Echo: row 1"
    assert loopback.stats()["dropped"] == 1 and sent(loopback)["row 1"] == 2


def test_ctrl_c_stops_fast_keeps_finished_rows_and_resumes(loop_session, loopback):
    loopback.configure(latency=0.3)
    df = pd.DataFrame({"t": [f"row {i}" for i in range(200)]})
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt) as raised:
            df.llm.map("{t}", model=MODEL, concurrency=20)
    finally:
        timer.cancel()
    assert "run the same call again" in str(raised.value)
    first = sent(loopback)
    assert first and max(first.values()) == 1          # no row twice within the run
    jobs = loop_session.jobs()
    assert len(jobs) == 1 and jobs.loc[0, "status"] == "interrupted"
    done = int(jobs.loc[0, "done"])
    assert 0 < done < 200
    job_id = jobs.loc[0, "id"]
    interrupted = {r["prompt"] for r in loop_session.log.read(
        "SELECT prompt FROM calls WHERE job_id = ? AND status = 'interrupted'", (job_id,))}
    finished = {r["prompt"] for r in loop_session.log.read(
        "SELECT prompt FROM calls WHERE job_id = ? AND status = 'ok'", (job_id,))}
    assert len(finished) == done and len(interrupted) <= 20 and not finished & interrupted
    assert set(first) <= finished | interrupted          # every request is accounted for

    # The same map again sends only the rows without an answer, in the same job.
    loopback.configure(latency=0.0)
    out = df.llm.map("{t}", model=MODEL, concurrency=20)
    info = books(out, 200)
    assert info["ok"] == 200 and info["job_id"] == job_id and info["resumed"] == done
    total = sent(loopback)
    finished_first = [p for p in first if total[p] == 1]
    assert len(finished_first) == done
    assert sum(total.values()) == len(first) + (200 - done)
    assert max(total.values()) <= 2                     # only the interrupted ones, once more
    assert loop_session.job(job_id).status == "done"


def test_ctrl_c_returns_within_two_seconds(loop_session, loopback):
    loopback.configure(latency=5.0)  # every call is in flight when the interrupt comes
    df = pd.DataFrame({"t": [f"slow {i}" for i in range(30)]})
    fired = {}

    def interrupt():
        fired["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(0.5, interrupt)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        df.llm.map("{t}", model=MODEL, concurrency=30)
    assert time.monotonic() - fired["at"] < 2.0
    job_id = loop_session.jobs().loc[0, "id"]
    assert loop_session.log.count_calls(job_id=job_id, status="interrupted") == 30


def test_schema_run_with_invalid_rows(loop_session, loopback):
    schema = {"type": "object", "properties": {"label": {"type": "string"},
                                               "score": {"type": "integer"}},
              "required": ["label", "score"]}
    cells = ['[[reply:{"label": "pos", "score": 5}]]',
             "[[reply:this is not json]]",
             '[[reply:{"label": "neg", "score": "high"}]]',
             '[[reply:```json\n{"label": "neg", "score": 1}\n```]]']
    df = pd.DataFrame({"t": cells}, index=[10, 20, 30, 40])
    out = df.llm.map("Classify: {t}", model=MODEL, schema=schema)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["label", "score"]
    assert list(out.index) == [10, 20, 30, 40]
    assert out.loc[10, "label"] == "pos" and out.loc[10, "score"] == 5
    assert out.loc[40, "label"] == "neg" and out.loc[40, "score"] == 1
    assert out.loc[[20, 30]].isna().all().all()
    info = out.attrs["llm"]
    assert info["ok"] == 2 and info["error"] == 2
    errors = loop_session.job(info["job_id"]).errors()
    assert list(errors.index) == [20, 30]
    assert set(errors["error_kind"]) == {"invalid_output"}
    assert "not valid JSON" in errors.loc[20, "error"] and "score" in errors.loc[30, "error"]
    # The provider was asked for JSON with the schema.
    body = loopback.requests()[0]["body"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == schema
    # Invalid answers are not cached: the same run asks those two rows again, and only them.
    again = df.llm.map("Classify: {t}", model=MODEL, schema=schema)
    assert again.attrs["llm"]["cached"] == 2 and again.attrs["llm"]["requests"] == 2


def test_schema_as_pydantic_model(loop_session, loopback):
    pydantic = pytest.importorskip("pydantic")

    class Review(pydantic.BaseModel):
        label: str
        stars: int

    df = pd.DataFrame({"t": ['[[reply:{"label": "ok", "stars": 4}]]', '[[reply:{"label": 3}]]']})
    out = df.llm.map("{t}", model=MODEL, schema=Review)
    assert list(out.columns) == ["label", "stars"]
    assert out.loc[0, "stars"] == 4 and pd.isna(out.loc[1, "label"])
    errors = loop_session.job(out.attrs["llm"]["job_id"]).errors()
    assert errors.loc[1, "error_kind"] == "invalid_output"


def test_bad_cells_are_row_errors_and_the_rest_runs(loop_session, loopback):
    huge = "word " * 500_000   # ~2.5 M characters: beyond any context window
    cells = ["fine", None, float("nan"), "", "   ", 42, 3.5, huge, ["a", "b"], pd.NA]
    labels = [f"r{i}" for i in range(len(cells))]
    df = pd.DataFrame({"t": pd.Series(cells, dtype=object, index=labels)})
    out = df.llm.map("Echo {t}", model=MODEL)
    info = books(out, len(cells))
    assert list(out.index) == list(df.index)
    assert out["r0"] == "Echo: Echo fine"
    assert out["r5"] == "Echo: Echo 42" and out["r6"] == "Echo: Echo 3.5"
    assert out["r8"] == 'Echo: Echo ["a", "b"]'
    assert info["ok"] == 4 and info["error"] == 6
    errors = loop_session.job(info["job_id"]).errors()
    assert list(errors.index) == ["r1", "r2", "r3", "r4", "r7", "r9"]
    assert errors.loc["r7", "error_kind"] == "context_window"
    assert "missing" in errors.loc["r1", "error"] and "empty" in errors.loc["r3", "error"]
    assert sum(sent(loopback).values()) == 4  # bad rows never reach the provider


def test_missing_column_fails_before_any_call(loop_session, loopback):
    df = pd.DataFrame({"review": ["a"], "stars": [1]})
    with pytest.raises(MissingColumnError) as raised:
        df.llm.map("Rate {reveiw} with {stars}", model=MODEL)
    message = str(raised.value)
    assert "'reveiw'" in message and "did you mean 'review'" in message
    assert "review, stars" in message
    with pytest.raises(ValueError, match="no {column} placeholders"):
        df.llm.map("Hello", model=MODEL)
    spaced = pd.DataFrame({"review text": ["a"]})
    with pytest.raises(ValueError, match=r"rename 'review text' first, e\.g\. df\.rename"):
        spaced.llm.map("Rate {review text}", model=MODEL)
    assert loopback.stats()["requests"] == 0
    assert loop_session.jobs().empty


def test_on_error_raise_stops_at_first_failure(loop_session, loopback):
    from llm_notebook.batch.engine import BatchStopped

    loopback.script([{"kind": "400", "match": "row 0", "times": 1}])
    df = pd.DataFrame({"t": [f"row {i}" for i in range(50)]})
    with pytest.raises(BatchStopped, match="row 0 failed"):
        df.llm.map("{t}", model=MODEL, concurrency=1, on_error="raise")
    assert loopback.stats()["requests"] < 50
    bad = pd.DataFrame({"t": ["x", None]})
    with pytest.raises(ValueError, match="nothing was sent"):
        bad.llm.map("{t}", model=MODEL, on_error="raise")


def test_budget_stops_before_crossing(loop_session, loopback):
    loop_session.config.prices = {"loop/*": {"input": 1000.0, "output": 1000.0}}  # $0.001/token
    df = pd.DataFrame({"t": [f"row {i}" for i in range(30)]})
    est = df.llm.estimate("{t}", model=MODEL, max_tokens=4)
    # tokens.estimate_prompt: "row N" is 5 characters, 1 token; plus max_tokens of output.
    assert est.input_tokens == 30 and est.output_tokens == 30 * 4
    assert est.to_send == 30 and est.cost == pytest.approx(30 * (1 + 4) * 0.001)
    with pytest.warns(UserWarning, match="budget"):
        out = df.llm.map("{t}", model=MODEL, max_tokens=4, budget=0.05, concurrency=2)
    info = out.attrs["llm"]
    assert info["status"] == "budget"
    assert info["cost"] <= 0.05
    assert 0 < info["ok"] < 30
    assert info["ok"] + info["error"] + info["not_run"] == 30
    errors = loop_session.job(info["job_id"]).errors()
    assert set(errors["error_kind"]) == {"budget"}
    assert loopback.stats()["requests"] == info["ok"]
    with pytest.raises(ValueError, match="needs a price"):
        loop_session.config.prices = {}
        df.llm.map("{t}", model=MODEL, budget=1.0)


def test_rpm_pacing_spaces_requests(loop_session, loopback):
    df = pd.DataFrame({"t": [f"row {i}" for i in range(6)]})
    out = df.llm.map("{t}", model=MODEL, rpm=300, concurrency=6)  # one every 0.2 s
    assert out.attrs["llm"]["ok"] == 6
    times = sorted(r["time"] for r in loopback.requests())
    gaps = [b - a for a, b in zip(times, times[1:])]
    # Sends are booked 0.2 s apart; arrival times jitter a little on a busy machine.
    assert sum(gaps) >= 0.95 and min(gaps) >= 0.1


def test_tpm_pacing_spaces_requests_by_their_token_estimate(loop_session, loopback):
    # 6,000 tokens/min = 100/s. Row 0 is ~100 prompt tokens + 3 max_tokens, row 1 only ~7:
    # the gap after row 0 must be ~1 s, the one after row 1 short.
    df = pd.DataFrame({"t": ["x" * 400, "y", "z"]})
    out = df.llm.map("{t}", model=MODEL, tpm=6000, max_tokens=3, concurrency=3)
    assert out.attrs["llm"]["ok"] == 3
    times = {r["body"]["messages"][-1]["content"][:1]: r["time"] for r in loopback.requests()}
    assert times["y"] - times["x"] >= 0.9
    assert times["z"] - times["y"] < 0.5


def test_batch_on_lists_and_abatch(loop_session, loopback):
    result = loop_session.batch(["one", "two", None, [{"role": "user", "content": "three"}]],
                                model=MODEL, system="be brief")
    assert list(result) == ["Echo: one", "Echo: two", None, "Echo: three"]
    assert result.info["ok"] == 3 and result.info["error"] == 1
    assert list(result.errors()["row"]) == [2]
    body = loopback.requests()[0]["body"]
    assert body["messages"][0] == {"role": "system", "content": "be brief"}

    import asyncio

    from llm_notebook.providers import http

    async def in_my_loop():
        try:
            return await loop_session.abatch(["one", "two", "four"], model=MODEL,
                                             system="be brief")
        finally:
            await http.close_all()

    again = asyncio.run(in_my_loop())
    assert list(again) == ["Echo: one", "Echo: two", "Echo: four"]
    assert again.info["cached"] == 2 and again.info["requests"] == 1
    with pytest.raises(TypeError, match="list of prompts"):
        loop_session.batch("just one", model=MODEL)


def test_job_result_and_listing(loop_session, loopback):
    df = pd.DataFrame({"t": ["a", "b"]}, index=["x", "y"])
    out = df.llm.map("{t}", model=MODEL)
    job = loop_session.job(out.attrs["llm"]["job_id"][:6])  # a prefix is enough
    assert job.result().tolist() == out.tolist()
    assert "2/2 rows done" in repr(job)
    with pytest.raises(KeyError, match="session.jobs"):
        loop_session.job("nope")


def test_text_progress_bar(loop_session, loopback, capsys):
    df = pd.DataFrame({"t": [f"r{i}" for i in range(5)]})
    df.llm.map("{t}", model=MODEL, progress="text")
    err = capsys.readouterr().err
    assert "5/5 rows" in err and "done" in err and "\r[" in err


def test_no_secret_options_in_the_log(loop_session, loopback):
    df = pd.DataFrame({"t": ["a"]})
    df.llm.map("{t}", model=MODEL, api_key="sk-secret-123456789")
    rows = loop_session.log.read("SELECT options FROM calls")
    assert rows and all("sk-secret" not in (r["options"] or "") for r in rows)
    job_rows = loop_session.log.read("SELECT options FROM jobs")
    assert all("sk-secret" not in (r["options"] or "") for r in job_rows)


def test_session_budget_refuses_a_batch_before_any_row_is_sent(loop_session, loopback):
    import pandas as pd

    from llm_notebook.errors import BudgetExceeded

    loop_session.config.prices = {"loop/*": {"input": 1000.0, "output": 1000.0}}
    loop_session.config.budget_session = 0.01
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(20)]})
    estimate = frame.llm.estimate("Say {text}", model="loop/m", max_tokens=50)
    assert estimate.cost > 0.01  # the estimate itself is never refused
    with pytest.raises(BudgetExceeded) as info:
        frame.llm.map("Say {text}", model="loop/m", max_tokens=50, progress=False)
    message = str(info.value)
    assert "budget_session" in message and "20 rows" in message
    assert loopback.stats()["requests"] == 0


def test_series_map_fills_value_or_the_series_name(loop_session, loopback):
    reviews = pd.Series(["great", "awful"], index=[10, 20], name="review")
    out = reviews.llm.map("Sentiment of: {value}", model=MODEL)
    assert list(out.index) == [10, 20] and out[20] == "Echo: Sentiment of: awful"
    by_name = reviews.llm.map("Sentiment of: {review}", model=MODEL)
    assert by_name.equals(out) and by_name.attrs["llm"]["cached"] == 2
    assert reviews.llm.estimate("Sentiment of: {value}", model=MODEL).cached == 2
    unnamed = pd.Series(["x"])
    with pytest.raises(MissingColumnError, match=r"a Series fills only \{value\}: write each value as"):
        unnamed.llm.map("Sentiment of: {review}", model=MODEL)
    assert loopback.stats()["requests"] == 2

