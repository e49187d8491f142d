"""Suite 2 — deadlines.

500s and stalls: every call and every batch row ends within its one overall deadline (not
timeout × attempts), with the error kind logged. 400, 401, 403 and context-window errors are
never retried, on the lean HTTP path, in batches and through litellm.
"""

from __future__ import annotations

import time

import pandas as pd
import pytest

from llm_notebook.errors import LLMError

from .helpers import sent

SUITE = "2 deadlines"
MODEL = "loop/loopback-model"
# Generous room for a loaded machine: still far below what timeout × attempts would take.
SLACK = 1.5


def logged(session, **where) -> list[dict]:
    clause = " AND ".join(f"{k} = ?" for k in where)
    rows = session.log.read(f"SELECT * FROM calls WHERE {clause} ORDER BY id", list(where.values()))
    return [dict(r) for r in rows]


def test_500s_are_retried_only_within_the_deadline(loop_session, loopback, record):
    deadline = 2.0
    loop_session.config.deadline = deadline
    loop_session.config.max_retries = 6
    loopback.script([{"kind": "500", "match": "always 500", "times": 1000}])

    started = time.monotonic()
    with pytest.raises(LLMError) as failed:
        loop_session.ask("single call, always 500", model=MODEL)
    single = time.monotonic() - started
    assert failed.value.kind == "server"
    row = logged(loop_session, prompt="single call, always 500")[0]
    assert row["status"] == "error" and row["error_kind"] == "server"
    assert row["attempts"] == sent(loopback)["single call, always 500"] >= 2
    assert single <= deadline + SLACK

    prompts = [f"row {i} always 500" if i % 2 == 0 else f"row {i} fine" for i in range(20)]
    out = pd.DataFrame({"p": prompts}).llm.map("{p}", model=MODEL, deadline=deadline,
                                               max_retries=6, concurrency=20, progress=False)
    info = out.attrs["llm"]
    assert info["ok"] == 10 and info["error"] == 10
    rows = logged(loop_session, job_id=info["job_id"])
    failed_rows = [r for r in rows if r["status"] == "error"]
    assert {r["error_kind"] for r in failed_rows} == {"server"} and len(failed_rows) == 10
    counts = sent(loopback)
    for r in failed_rows:
        assert r["duration_ms"] <= (deadline + SLACK) * 1000, r
        assert 2 <= counts[r["prompt"]] == r["attempts"] <= 7
    record(tried=21, kept=21, note=f"500s: 11 failing calls each ended ≤ {deadline:g} s + slack "
                                   "with kind 'server' logged")


def test_stalls_end_at_the_deadline_not_at_timeout_times_attempts(loop_session, loopback, record):
    deadline, timeout, retries = 2.5, 1.0, 5      # timeout × attempts would be 6 s
    loop_session.config.deadline = deadline
    loop_session.config.timeout = timeout
    loop_session.config.max_retries = retries
    loopback.script([{"kind": "stall", "seconds": 30, "match": "stall", "times": 1000}])
    tried = kept = 0

    for how in ("ask", "stream"):
        started = time.monotonic()
        with pytest.raises(LLMError) as failed:
            if how == "ask":
                loop_session.ask(f"single {how} stall", model=MODEL)
            else:
                list(loop_session.stream(f"single {how} stall", model=MODEL))
        elapsed = time.monotonic() - started
        assert failed.value.kind == "timeout", (how, failed.value)
        assert elapsed <= deadline + SLACK, (how, elapsed)
        row = logged(loop_session, prompt=f"single {how} stall")[0]
        assert row["error_kind"] == "timeout" and row["duration_ms"] <= (deadline + SLACK) * 1000
        tried += 1
        kept += 1

    prompts = [f"row {i} stall" if i % 3 == 0 else f"row {i} fine" for i in range(12)]
    started = time.monotonic()
    out = pd.DataFrame({"p": prompts}).llm.map("{p}", model=MODEL, deadline=deadline,
                                               timeout=timeout, max_retries=retries,
                                               concurrency=12, progress=False)
    elapsed = time.monotonic() - started
    info = out.attrs["llm"]
    assert info["ok"] == 8 and info["error"] == 4
    failed_rows = [r for r in logged(loop_session, job_id=info["job_id"]) if r["status"] != "ok"]
    assert {r["error_kind"] for r in failed_rows} == {"timeout"}
    assert all(r["duration_ms"] <= (deadline + SLACK) * 1000 for r in failed_rows), failed_rows
    assert elapsed <= deadline + SLACK + 1.0   # the rows ran side by side, each on its deadline
    tried += len(prompts)
    kept += info["ok"] + len(failed_rows)
    record(tried=tried, kept=kept, note=f"stalls: cut at the {deadline:g} s deadline "
                                        f"(timeout × attempts = {timeout * (retries + 1):g} s)")


def test_a_slow_stream_is_cut_at_the_deadline_with_its_partial_text(loop_session, loopback, record):
    # Every gap between tokens is well inside the per-attempt timeout; the whole is not.
    loop_session.config.deadline = 1.5
    loop_session.config.timeout = 1.0
    loopback.configure(tokens_per_second=10)
    prompt = "slow " + " ".join(f"w{i}" for i in range(60))   # a 62-token echo: ~6 s
    stream = loop_session.stream(prompt, model=MODEL)
    started = time.monotonic()
    chunks = []
    with pytest.raises(LLMError) as failed:
        for chunk in stream:
            chunks.append(chunk)
    assert time.monotonic() - started <= 1.5 + SLACK
    assert failed.value.kind == "incomplete" and chunks
    row = logged(loop_session, prompt=prompt)[0]
    assert row["status"] == "incomplete" and row["response"] == "".join(chunks)
    assert sent(loopback)[prompt] == 1        # text reached the user: never sent again
    record(tried=1, kept=1, note="slow stream cut at its deadline, partial text logged")


CLIENT_ERRORS = [("400", "bad_request"), ("401", "auth"), ("403", "auth"),
                 ("context_window", "context_window")]


@pytest.mark.parametrize("fault,kind", CLIENT_ERRORS)
def test_client_errors_are_never_retried(loop_session, loopback, record, fault, kind):
    loop_session.config.max_retries = 5
    loopback.script([{"kind": fault, "match": f"{fault} single", "times": 100},
                     {"kind": fault, "match": f"{fault} row", "times": 100}], append=False)

    with pytest.raises(LLMError) as failed:
        loop_session.ask(f"{fault} single", model=MODEL)
    assert failed.value.kind == kind
    out = pd.DataFrame({"p": [f"{fault} row", "fine row"]}).llm.map(
        "{p}", model=MODEL, max_retries=5, progress=False)
    errors = loop_session.job(out.attrs["llm"]["job_id"]).errors()

    counts = sent(loopback)
    assert counts[f"{fault} single"] == 1 and counts[f"{fault} row"] == 1
    assert logged(loop_session, prompt=f"{fault} single")[0]["error_kind"] == kind
    assert list(errors["error_kind"]) == [kind] and list(errors["attempts"]) == [1]
    assert out.iloc[1] == "Echo: fine row"
    record(tried=2, kept=2, note=f"{fault}: sent once, kind '{kind}'" if fault == "400" else "")


def test_real_context_window_refusal_is_not_retried(loop_session, loopback, record):
    loopback.configure(context_window=50)
    loop_session.config.max_retries = 5
    prompt = "long " * 80
    with pytest.raises(LLMError) as failed:
        loop_session.ask(prompt, model=MODEL)
    assert failed.value.kind == "context_window"
    assert sent(loopback)[prompt.rstrip()] + sent(loopback)[prompt] == 1
    record(tried=1, kept=1, note="401/403/context-window: sent once each")


def test_retry_after_beyond_the_deadline_fails_at_once(loop_session, loopback, record):
    loop_session.config.deadline = 3.0
    loopback.script([{"kind": "429", "retry_after": 30, "match": "patience", "times": 10}])
    started = time.monotonic()
    with pytest.raises(LLMError) as failed:
        loop_session.ask("patience", model=MODEL)
    assert time.monotonic() - started < 3.0
    assert failed.value.kind == "rate_limit" and sent(loopback)["patience"] == 1
    record(tried=1, kept=1, note="a Retry-After past the deadline fails at once")


def test_litellm_path_retries_only_by_our_policy(loop_session, loopback, record):
    """litellm retries 429/500 on its own unless told not to: ours must be the only retries."""
    loop_session.config.deadline = 4.0
    loop_session.config.timeout = 1.0
    via = dict(model="openai/gpt-4o-mini", api_base=loopback.url, api_key="sk-loopback-test-key")
    loopback.script([{"kind": "500", "match": "litellm 500", "times": 100},
                     {"kind": "401", "match": "litellm 401", "times": 100},
                     {"kind": "stall", "seconds": 30, "match": "litellm stall", "times": 100}])

    loop_session.config.max_retries = 0
    with pytest.raises(LLMError) as failed:
        loop_session.ask("litellm 500 once", **via)
    assert failed.value.kind == "server" and sent(loopback)["litellm 500 once"] == 1
    loop_session.config.max_retries = 2
    with pytest.raises(LLMError):
        loop_session.ask("litellm 500 thrice", **via)
    assert sent(loopback)["litellm 500 thrice"] == 3
    with pytest.raises(LLMError) as failed:
        loop_session.ask("litellm 401", **via)
    assert failed.value.kind == "auth" and sent(loopback)["litellm 401"] == 1

    loop_session.config.max_retries = 10
    started = time.monotonic()
    with pytest.raises(LLMError) as failed:
        loop_session.ask("litellm stall", **via)
    assert failed.value.kind == "timeout"
    assert time.monotonic() - started <= 4.0 + SLACK
    kinds = [r["error_kind"] for r in logged(loop_session, model="openai/gpt-4o-mini")]
    assert kinds == ["server", "server", "auth", "timeout"]
    record(tried=4, kept=4, note="litellm: no hidden retries, stall cut at the deadline")


def test_batch_rows_honour_max_retries(loop_session, loopback, record):
    # Found by this suite: the batch engine never told its retry state how many attempts were
    # made, so max_retries was ignored (rows retried until the deadline) and backoff never grew.
    loopback.script([{"kind": "500", "match": "always 500", "times": 1000}])
    prompts = [f"always 500 #{i}" for i in range(6)]
    started = time.monotonic()
    result = loop_session.batch(prompts, model=MODEL, max_retries=1, deadline=8.0,
                                concurrency=6, progress=False)
    assert time.monotonic() - started < 4.0
    assert result.info["error"] == 6
    counts = sent(loopback)
    assert [counts[p] for p in prompts] == [2] * 6
    errors = result.errors()
    assert list(errors["attempts"]) == [2] * 6 and set(errors["error_kind"]) == {"server"}
    record(tried=6, kept=6, note="batch max_retries=1 → exactly 2 attempts per row")


def test_a_slow_first_litellm_import_counts_against_no_deadline(loop_session, loopback,
                                                                 monkeypatch, record):
    # Found by this suite: litellm was imported inside the first call's deadline, on the event
    # loop every call shares, so with a short deadline the first litellm call always timed out.
    from llm_notebook.providers import litellm_route

    litellm_route.get_litellm()                # the real import, outside this test's timing
    loaded = litellm_route._litellm
    def slow_import():
        if litellm_route._litellm is None:
            time.sleep(2.5)                    # as slow as a first import on a loaded machine
            litellm_route._litellm = loaded
        return loaded
    monkeypatch.setattr(litellm_route, "_litellm", None)
    monkeypatch.setattr(litellm_route, "get_litellm", slow_import)
    loop_session.config.deadline = 1.5

    import asyncio

    from llm_notebook import runner

    async def both():
        lean = asyncio.ensure_future(loop_session.aask("lean meanwhile", model=MODEL))
        slow = asyncio.ensure_future(loop_session.aask(
            "first litellm call", model="openai/gpt-4o-mini", api_base=loopback.url,
            api_key="sk-loopback-test-key"))
        done, _ = await asyncio.wait({lean}, timeout=2.0)
        return bool(done), await slow, await lean

    lean_finished_during_import, slow, lean = runner.run(both())
    assert slow.status == "ok" and slow.text == "Echo: first litellm call"
    assert lean.status == "ok"
    assert lean_finished_during_import, "the import blocked the event loop other calls share"
    record(tried=2, kept=2, note="a 2.5 s litellm import neither fails a 1.5 s deadline nor "
                                 "blocks other calls")
