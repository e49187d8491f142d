"""Our one retry policy, over real HTTP to the loopback server: Retry-After honoured, 5xx
retried, 400/401/403/context-window never retried, one overall deadline per call (stalls and
slow streams included), dropped streams kept as incomplete, and Ctrl-C logged as interrupted."""

from __future__ import annotations

import _thread
import threading
import time

import pytest

from llm_notebook.errors import LLMError
from llm_notebook.retry import RetryPolicy

# Scheduling on a shared 2-core machine is noisy; this is the slack allowed past a deadline.
SLACK = 1.0


def hits(loopback) -> int:
    return loopback.stats()["requests"]


# ---------------------------------------------------------------- the policy itself

def test_policy_backoff_is_jittered_and_bounded():
    state = RetryPolicy(max_retries=5, deadline=100, base_delay=0.5, max_delay=2.0).start()
    server = LLMError("boom", kind="server")
    for attempt in range(1, 6):
        state.attempts = attempt
        delays = [state.next_delay(server) for _ in range(200)]
        cap = min(2.0, 0.5 * 2 ** (attempt - 1))
        assert all(0 <= d <= cap for d in delays)
        assert len(set(delays)) > 150            # full jitter, not a fixed wait
    state.attempts = 6                           # retries used up
    assert state.next_delay(server) is None


def test_policy_honours_retry_after_and_the_deadline():
    state = RetryPolicy(max_retries=3, deadline=10).start()
    state.attempts = 1
    assert state.next_delay(LLMError("slow down", kind="rate_limit", retry_after=4)) >= 4
    # A wait that would end past the deadline is not worth starting.
    assert state.next_delay(LLMError("slow down", kind="rate_limit", retry_after=30)) is None
    for kind in ("auth", "bad_request", "context_window", "budget", "config"):
        assert state.next_delay(LLMError("no", kind=kind)) is None
    assert state.attempt_timeout() <= 10


# ---------------------------------------------------------------- over real HTTP

def test_429_waits_at_least_retry_after(loop_session, loopback):
    loopback.script([{"kind": "429", "retry_after": 1}])
    r = loop_session.ask("hi", model="loop/m")
    assert r.status == "ok"
    times = loopback.stats()["request_times"]
    assert len(times) == 2
    assert times[1] - times[0] >= 0.99           # never sooner than the server asked
    assert loop_session.log.call(r.id)["attempts"] == 2


def test_429_whose_wait_passes_the_deadline_fails_at_once(loop_session, loopback):
    loop_session.config.deadline = 5
    loopback.script([{"kind": "429", "retry_after": 60}])
    started = time.monotonic()
    with pytest.raises(LLMError) as err:
        loop_session.ask("hi", model="loop/m")
    assert time.monotonic() - started < 2
    assert err.value.kind == "rate_limit" and hits(loopback) == 1


def test_500_is_retried_then_succeeds(loop_session, loopback):
    loopback.script([{"kind": "500", "times": 2}])
    r = loop_session.ask("hi", model="loop/m")
    assert r.text == "Echo: hi" and hits(loopback) == 3
    assert loop_session.log.call(r.id)["attempts"] == 3
    assert loop_session.log.count_calls() == 1   # one call, one row, however many attempts


def test_500_gives_up_after_max_retries(loop_session, loopback):
    loop_session.config.max_retries = 1
    loopback.script([{"kind": "500", "times": 5}])
    with pytest.raises(LLMError) as err:
        loop_session.ask("hi", model="loop/m")
    assert err.value.kind == "server" and hits(loopback) == 2
    row = loop_session.log.call(err.value.call_id)
    assert row["status"] == "error" and row["attempts"] == 2 and row["error_kind"] == "server"


@pytest.mark.parametrize("fault, kind", [
    ("400", "bad_request"), ("401", "auth"), ("403", "auth"), ("context_window", "context_window"),
])
def test_client_errors_are_never_retried(loop_session, loopback, fault, kind):
    loopback.script([{"kind": fault, "times": 5}])
    with pytest.raises(LLMError) as err:
        loop_session.ask("hi", model="loop/m")
    assert err.value.kind == kind
    assert hits(loopback) == 1


def test_malformed_json_is_retried(loop_session, loopback):
    loopback.script([{"kind": "malformed_json"}])
    r = loop_session.ask("hi", model="loop/m")
    assert r.status == "ok" and hits(loopback) == 2


def test_stall_is_cut_at_the_deadline(loop_session, loopback):
    loop_session.config.deadline = 1.5
    loop_session.config.timeout = 60
    loopback.script([{"kind": "stall", "seconds": 30}])
    started = time.monotonic()
    with pytest.raises(LLMError) as err:
        loop_session.ask("hi", model="loop/m")
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed <= 1.5 + SLACK
    assert err.value.kind == "timeout" and hits(loopback) == 1
    assert loop_session.log.call(err.value.call_id)["status"] == "error"


def test_repeated_stalls_share_one_deadline(loop_session, loopback):
    # Per-attempt timeout 0.4 s, ten retries allowed: timeout x attempts would be 4.4 s.
    loop_session.config.deadline = 1.5
    loop_session.config.timeout = 0.4
    loop_session.config.max_retries = 10
    loopback.script([{"kind": "stall", "seconds": 30, "times": 20}])
    started = time.monotonic()
    with pytest.raises(LLMError) as err:
        loop_session.ask("hi", model="loop/m")
    elapsed = time.monotonic() - started
    assert elapsed <= 1.5 + SLACK
    assert err.value.kind == "timeout"
    assert 2 <= hits(loopback) <= 4              # it did retry, inside the deadline


def test_stream_stalling_after_headers_is_cut_at_the_deadline(loop_session, loopback):
    loop_session.config.deadline = 1.5
    loopback.script([{"kind": "stall", "seconds": 30}])
    started = time.monotonic()
    with pytest.raises(LLMError):
        list(loop_session.stream("hi", model="loop/m"))
    assert time.monotonic() - started <= 1.5 + SLACK


def test_slow_stream_is_cut_at_the_deadline_with_its_partial_text(loop_session, loopback):
    # Each token arrives well within the per-attempt timeout, but the whole stream would take
    # ~10 s: the deadline still holds, and what arrived is kept.
    loop_session.config.deadline = 1.5
    loopback.configure(tokens_per_second=5)
    prompt = " ".join(f"w{i}" for i in range(50))
    st = loop_session.stream(prompt, model="loop/m")
    got = []
    started = time.monotonic()
    with pytest.raises(LLMError) as err:
        for chunk in st:
            got.append(chunk)
    assert time.monotonic() - started <= 1.5 + SLACK
    assert err.value.kind in ("incomplete", "timeout")
    assert got and st.response.status == "incomplete"
    assert st.response.text == "".join(got)
    assert loop_session.log.call(st.response.id)["response"] == "".join(got)


def test_dropped_stream_keeps_partial_text_and_is_not_cached(loop_session, loopback):
    loopback.script([{"kind": "drop_mid_stream", "after_tokens": 3}])
    st = loop_session.stream("alpha beta gamma delta epsilon", model="loop/m", cache=True)
    got = []
    with pytest.raises(LLMError) as err:
        for chunk in st:
            got.append(chunk)
    assert err.value.kind == "incomplete"
    assert "".join(got) == "Echo: alpha beta "
    assert hits(loopback) == 1                   # text already shown: a retry would repeat it
    r = st.response
    assert r.status == "incomplete" and r.text == "Echo: alpha beta "
    row = loop_session.log.call(r.id)
    assert row["status"] == "incomplete" and row["response"] == "Echo: alpha beta "
    assert loop_session.log.read("SELECT count(*) FROM cache")[0][0] == 0
    # The next identical call goes to the provider again.
    again = loop_session.ask("alpha beta gamma delta epsilon", model="loop/m", cache=True)
    assert again.cached is False and hits(loopback) == 2


def test_dropped_plain_response_is_retried(loop_session, loopback):
    loopback.script([{"kind": "drop_mid_stream"}])
    r = loop_session.ask("hi", model="loop/m")
    assert r.status == "ok" and hits(loopback) == 2


# ---------------------------------------------------------------- Ctrl-C

def _interrupt_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.start()
    return timer


def test_ctrl_c_during_a_stream_logs_interrupted_with_partial_text(loop_session, loopback):
    loopback.configure(tokens_per_second=5)
    prompt = " ".join(f"w{i}" for i in range(40))
    st = loop_session.stream(prompt, model="loop/m")
    got = []
    timer = _interrupt_after(1.2)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            for chunk in st:
                got.append(chunk)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 4        # stopped promptly, not after the ~8 s stream
    assert len(got) >= 2
    r = st.response
    assert r is not None and r.status == "interrupted"
    # Everything shown is kept (a token in flight at the interrupt may be logged, not shown).
    assert r.text.startswith("".join(got)) and len(r.text) < len("".join(got)) + 10
    row = loop_session.log.call(r.id)
    assert row["status"] == "interrupted" and row["error_kind"] == "interrupted"
    assert row["response"] == r.text
    assert loop_session.log.read("SELECT count(*) FROM cache")[0][0] == 0


def test_ctrl_c_during_ask_logs_interrupted(loop_session, loopback):
    loopback.configure(latency=10)
    timer = _interrupt_after(0.5)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop_session.ask("hi", model="loop/m")
    finally:
        timer.cancel()
    assert time.monotonic() - started < 4
    rows = loop_session.log.history_rows()
    assert len(rows) == 1 and rows[0]["status"] == "interrupted"
    assert rows[0]["response"] is None
