"""The response cache, over real HTTP: exact match on model, messages, options and endpoint;
only complete successful answers are stored; per-call cache=True/False; LLMNotebook.cache."""

from __future__ import annotations

import pytest

from llm_notebook.cache import cache_key
from llm_notebook.errors import LLMError


def hits(loopback) -> int:
    return loopback.stats()["requests"]


def cache_rows(session) -> int:
    return session.log.read("SELECT count(*) FROM cache")[0][0]


def test_off_by_default_for_single_calls(loop_session, loopback):
    assert loop_session.config.cache is False
    loop_session.ask("same", model="loop/m")
    r = loop_session.ask("same", model="loop/m")
    assert r.cached is False and hits(loopback) == 2 and cache_rows(loop_session) == 0


def test_hit_returns_the_stored_answer_and_logs_a_cached_row(loop_session, loopback):
    first = loop_session.ask("same", model="loop/m", cache=True, temperature=0)
    second = loop_session.ask("same", model="loop/m", cache=True, temperature=0)
    assert hits(loopback) == 1
    assert second.cached is True and first.cached is False
    assert second.text == first.text
    assert (second.input_tokens, second.output_tokens) == (first.input_tokens, first.output_tokens)
    assert second.cost == 0.0                     # a hit costs nothing
    assert second.id != first.id                  # every call is a row, hits included
    row = loop_session.log.call(second.id)
    assert row["cached"] == 1 and row["status"] == "ok"
    assert row["cache_key"] == loop_session.log.call(first.id)["cache_key"] is not None
    # A streamed call shares the entry and still yields the text.
    st = loop_session.stream("same", model="loop/m", cache=True, temperature=0)
    assert "".join(st) == first.text and st.response.cached is True
    assert hits(loopback) == 1


def test_config_cache_sets_the_default_and_a_call_can_opt_out(loop_session, loopback):
    loop_session.config.cache = True
    loop_session.ask("same", model="loop/m")
    assert loop_session.ask("same", model="loop/m").cached is True
    assert hits(loopback) == 1
    r = loop_session.ask("same", model="loop/m", cache=False)
    assert r.cached is False and hits(loopback) == 2


@pytest.mark.parametrize("change", ["model", "prompt", "system", "option", "endpoint"])
def test_anything_that_changes_the_request_misses(loop_session, loopback, change):
    loop_session.add_endpoint("loop2", loopback.origin)   # same server, other base URL
    base = dict(prompt="same", model="loop/m", system="sys", temperature=0.5)
    loop_session.ask(base.pop("prompt"), cache=True, **base)
    changed = dict(prompt="same", model="loop/m", system="sys", temperature=0.5)
    if change == "model":
        changed["model"] = "loop/other"
    elif change == "prompt":
        changed["prompt"] = "same!"
    elif change == "system":
        changed["system"] = "other sys"
    elif change == "option":
        changed["temperature"] = 0.6
    else:
        changed["model"] = "loop2/m"
    r = loop_session.ask(changed.pop("prompt"), cache=True, **changed)
    assert r.cached is False and hits(loopback) == 2


def test_options_that_do_not_change_the_answer_share_an_entry():
    messages = [{"role": "user", "content": "hi"}]
    k = cache_key("m", messages, {"temperature": 0}, "http://x")
    assert cache_key("m", messages, {"temperature": 0, "timeout": 5, "api_key": "sk-a",
                                     "stream": True}, "http://x") == k
    assert cache_key("m", messages, {"temperature": 0, "max_tokens": None}, "http://x") == k
    assert cache_key("m", messages, {"temperature": 0.1}, "http://x") != k
    assert cache_key("m", messages, {"temperature": 0}, "http://y") != k


def test_only_complete_successful_answers_are_stored(loop_session, loopback):
    loop_session.config.max_retries = 0
    loopback.script([{"kind": "500"}])
    with pytest.raises(LLMError):
        loop_session.ask("flaky", model="loop/m", cache=True)
    assert cache_rows(loop_session) == 0
    loopback.script([{"kind": "drop_mid_stream", "after_tokens": 1}])
    with pytest.raises(LLMError):
        list(loop_session.stream("flaky", model="loop/m", cache=True))
    assert cache_rows(loop_session) == 0
    ok = loop_session.ask("flaky", model="loop/m", cache=True)
    assert ok.cached is False and cache_rows(loop_session) == 1
    assert loop_session.ask("flaky", model="loop/m", cache=True).cached is True
    assert hits(loopback) == 3


def test_cache_lives_in_the_log_across_sessions(loop_session, loopback, monkeypatch):
    import llm_notebook
    from llm_notebook.session import reset_session

    loop_session.ask("persist me", model="loop/m", cache=True)
    reset_session()
    fresh = llm_notebook.session()
    fresh.add_endpoint("loop", loopback.url)
    assert fresh.ask("persist me", model="loop/m", cache=True).cached is True
    assert hits(loopback) == 1
