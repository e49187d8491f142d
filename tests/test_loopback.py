"""The loopback server over real HTTP (aiohttp client, urllib for control), no litellm."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest

from llm_notebook.testing.loopback import MODELS, LoopbackError, LoopbackServer


def body_for(text: str = "hello there world", **extra) -> dict:
    return {"model": "loopback-model", "messages": [{"role": "user", "content": text}], **extra}


async def post(server, body, headers=None, timeout=10.0):
    """(status, headers, parsed JSON or raw bytes) of one chat request."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        async with s.post(server.url + "/chat/completions", json=body, headers=headers) as r:
            raw = await r.read()
            try:
                data = json.loads(raw)
            except ValueError:
                data = raw
            return r.status, r.headers, data


async def stream(server, body, timeout=10.0):
    """(status, SSE data payloads as str, error raised while reading or None)."""
    events, error = [], None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        async with s.post(server.url + "/chat/completions", json=dict(body, stream=True)) as r:
            try:
                async for line in r.content:
                    if line.startswith(b"data: "):
                        events.append(line[6:].decode().strip())
            except aiohttp.ClientError as e:
                error = e
            return r.status, events, error


def content_of(events) -> str:
    return "".join(json.loads(e)["choices"][0]["delta"].get("content", "")
                   for e in events if e != "[DONE]" and json.loads(e)["choices"])


# ---------------------------------------------------------------- replies

async def test_json_reply_and_usage(loopback):
    body = {"model": "loopback-model", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": [{"type": "text", "text": "hello there world"}]}]}
    status, headers, data = await post(loopback, body)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert data["object"] == "chat.completion" and data["model"] == "loopback-model"
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Echo: hello there world"}
    assert choice["finish_reason"] == "stop"
    # 2 + 2 + 2 + 3 words in the prompt; "Echo:" "hello" "there" "world" in the reply.
    assert data["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


async def test_models_endpoint(loopback):
    async with aiohttp.ClientSession() as s:
        async with s.get(loopback.url + "/models") as r:
            data = await r.json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == MODELS and "loopback-json" in MODELS


async def test_streaming_chunks_usage_and_done(loopback):
    status, events, error = await stream(
        loopback, body_for("one two three", stream_options={"include_usage": True}))
    assert status == 200 and error is None
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    tokens = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert tokens == ["Echo: ", "one ", "two ", "three"]  # one chunk per token
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


async def test_streaming_without_include_usage_has_no_usage(loopback):
    _, events, _ = await stream(loopback, body_for("hi"))
    assert events[-1] == "[DONE]"
    assert not any("usage" in json.loads(e) for e in events[:-1])
    assert content_of(events) == "Echo: hi"


async def test_max_tokens_truncates_with_finish_length(loopback):
    _, _, data = await post(loopback, body_for("a b c d e f", max_tokens=3))
    assert data["choices"][0]["message"]["content"] == "Echo: a b"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 3
    _, events, _ = await stream(loopback, body_for("a b c d e f", max_completion_tokens=2))
    assert content_of(events) == "Echo: a"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"


async def test_fixed_reply_cycling_replies_and_marker(loopback):
    loopback.configure(reply="fixed answer")
    assert (await post(loopback, body_for()))[2]["choices"][0]["message"]["content"] == "fixed answer"
    loopback.configure(reply=None, replies=["one", "two"])
    texts = [(await post(loopback, body_for()))[2]["choices"][0]["message"]["content"]
             for _ in range(3)]
    assert texts == ["one", "two", "one"]
    # A marker in the prompt wins over configured replies.
    _, _, data = await post(loopback, body_for("Classify: [[reply:positive yes]] great film"))
    assert data["choices"][0]["message"]["content"] == "positive yes"


async def test_json_mode_replies_with_json_object(loopback):
    for body in (body_for("say hi", response_format={"type": "json_object"}),
                 body_for("say hi", response_format={"type": "json_schema", "json_schema": {}}),
                 dict(body_for("say hi"), model="loopback-json")):
        _, _, data = await post(loopback, body)
        assert json.loads(data["choices"][0]["message"]["content"]) == {"echo": "say hi"}
    loopback.configure(reply="not json")
    _, _, data = await post(loopback, body_for("x", response_format={"type": "json_object"}))
    assert data["choices"][0]["message"]["content"] == "not json"


async def test_latency_and_tokens_per_second(loopback):
    loopback.configure(latency=0.2)
    start = time.monotonic()
    await post(loopback, body_for())
    assert time.monotonic() - start >= 0.2
    loopback.configure(latency=0, tokens_per_second=40)  # 4 tokens -> ~0.1 s
    start = time.monotonic()
    _, events, _ = await stream(loopback, body_for())
    assert time.monotonic() - start >= 0.09 and content_of(events) == "Echo: hello there world"


async def test_context_window_setting(loopback):
    loopback.configure(context_window=3)
    status, _, data = await post(loopback, body_for("one two three four"))
    assert status == 400 and data["error"]["code"] == "context_length_exceeded"
    assert (await post(loopback, body_for("one two")))[0] == 200


async def test_bad_request_body(loopback):
    async with aiohttp.ClientSession() as s:
        async with s.post(loopback.url + "/chat/completions", data=b"{not json") as r:
            assert r.status == 400 and "error" in await r.json()
    assert (await post(loopback, {"model": "m", "messages": []}))[0] == 400


# ---------------------------------------------------------------- scripted faults

@pytest.mark.parametrize("fault, status, check", [
    ({"kind": "500"}, 500, lambda e: e["type"] == "server_error"),
    ({"kind": "400", "message": "bad thing"}, 400, lambda e: e["message"] == "bad thing"),
    ({"kind": "403"}, 403, lambda e: e["type"] == "permission_error"),
    ({"kind": "context_window"}, 400, lambda e: e["code"] == "context_length_exceeded"
     and e["message"].startswith("This model's maximum context length is")),
    ({"kind": "401"}, 401, lambda e: "Incorrect API key provided: sk-secret-123" in e["message"]),
])
async def test_error_faults(loopback, fault, status, check):
    loopback.script([fault])
    got, _, data = await post(loopback, body_for(), headers={"Authorization": "Bearer sk-secret-123"})
    assert got == status and check(data["error"])
    assert (await post(loopback, body_for()))[0] == 200  # the fault was used up
    assert loopback.stats()["by_status"] == {status: 1, 200: 1}


async def test_429_fault_retry_after_and_stats(loopback):
    loopback.script([{"kind": "429", "retry_after": 2}, {"kind": "429", "retry_after": 0.25}])
    before = time.time()
    status, headers, data = await post(loopback, body_for())
    assert status == 429 and headers["Retry-After"] == "2"
    assert data["error"]["code"] == "rate_limit_exceeded"
    status, headers, _ = await post(loopback, body_for())
    assert headers["Retry-After"] == "1" and headers["retry-after-ms"] == "250"
    limited = loopback.stats()["rate_limited"]
    assert [r["retry_after"] for r in limited] == [2, 0.25]
    assert before <= limited[0]["time"] <= limited[1]["time"] <= time.time()


async def test_fault_match_and_times(loopback):
    assert loopback.script([{"kind": "500", "match": "row 2", "times": 2}]) == 1
    statuses = [(await post(loopback, body_for(f"row {i}")))[0] for i in (1, 2, 3, 2, 2)]
    assert statuses == [200, 500, 200, 500, 200]
    loopback.script([{"kind": "500"}])
    assert loopback.script([{"kind": "403"}], append=True) == 2
    assert [(await post(loopback, body_for()))[0] for _ in range(3)] == [500, 403, 200]


async def test_stall_holds_request_until_client_gives_up(loopback):
    loopback.script([{"kind": "stall", "seconds": 30}, {"kind": "stall", "seconds": 30}])
    with pytest.raises(asyncio.TimeoutError):
        await post(loopback, body_for(), timeout=0.3)
    with pytest.raises(asyncio.TimeoutError):  # streaming: headers come, tokens never do
        await stream(loopback, body_for(), timeout=0.3)
    await asyncio.sleep(0.1)
    stats = loopback.stats()
    assert stats["max_in_flight"] >= 1 and stats["in_flight"] == 0  # hang-ups end the handler
    loopback.script([{"kind": "stall", "seconds": 0.2}])  # a short stall then replies normally
    start = time.monotonic()
    assert (await post(loopback, body_for()))[0] == 200 and time.monotonic() - start >= 0.2


async def test_drop_mid_stream(loopback):
    loopback.script([{"kind": "drop_mid_stream", "after_tokens": 2}])
    status, events, error = await stream(loopback, body_for("a b c d e"))
    assert status == 200 and isinstance(error, aiohttp.ClientPayloadError)
    assert "[DONE]" not in events and content_of(events) == "Echo: a "
    loopback.script([{"kind": "drop_mid_stream"}])
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(loopback, body_for())
    assert loopback.stats()["dropped"] == 2


async def test_malformed_json(loopback):
    loopback.script([{"kind": "malformed_json"}, {"kind": "malformed_json"}])
    status, _, data = await post(loopback, body_for())
    assert status == 200 and isinstance(data, bytes)
    with pytest.raises(ValueError):
        json.loads(data)
    _, events, _ = await stream(loopback, body_for())
    bad = [e for e in events if e != "[DONE]" and not _parses(e)]
    assert len(bad) == 1 and events[-1] == "[DONE]"


def _parses(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def test_bad_fault_or_setting_is_refused(loopback):
    with pytest.raises(LoopbackError, match="kind"):
        loopback.script([{"kind": "418"}])
    with pytest.raises(LoopbackError, match="unknown setting"):
        loopback.configure(latncy=1)


# ---------------------------------------------------------------- limits and keys

async def test_rpm_limit_answers_429_with_retry_after(loopback):
    loopback.configure(rpm=2)
    statuses = [(await post(loopback, body_for()))[0] for _ in range(2)]
    status, headers, data = await post(loopback, body_for())
    assert statuses == [200, 200] and status == 429
    assert 59 <= int(headers["Retry-After"]) <= 60  # the oldest request leaves the window in ~60 s
    assert "requests per min" in data["error"]["message"]
    assert loopback.stats()["rate_limited"][0]["retry_after"] == int(headers["Retry-After"])


async def test_tpm_limit(loopback):
    loopback.configure(tpm=10)
    assert (await post(loopback, body_for("a b c")))[0] == 200      # 3 + 4 = 7 tokens
    status, headers, data = await post(loopback, body_for("a b"))    # 2 + 3 more: 12 > 10
    assert status == 429 and int(headers["Retry-After"]) >= 59
    assert "tokens per min" in data["error"]["message"]


async def test_require_key_echoes_presented_key(loopback):
    loopback.configure(require_key="sk-right")
    status, _, data = await post(loopback, body_for(), headers={"Authorization": "Bearer sk-wrong-42"})
    assert status == 401 and "Incorrect API key provided: sk-wrong-42" in data["error"]["message"]
    assert (await post(loopback, body_for()))[0] == 401  # no key at all
    assert (await post(loopback, body_for(), headers={"Authorization": "Bearer sk-right"}))[0] == 200
    recorded = loopback.requests()
    assert [r["authorization"] for r in recorded] == ["Bearer sk-wrong-42", None, "Bearer sk-right"]
    assert [r["auth_present"] for r in recorded] == [True, False, True]
    assert all("authorization" not in {k.lower() for k in r["headers"]} for r in recorded)
    assert recorded[0]["body"]["messages"][0]["content"] == "hello there world"


# ---------------------------------------------------------------- stats and reset

async def test_stats_counts_and_concurrency(loopback):
    loopback.configure(latency=0.2)
    before = time.time()
    loopback.script([{"kind": "500"}])
    results = await asyncio.gather(
        *[post(loopback, dict(body_for(), model="loopback-small" if i % 2 else "loopback-model"))
          for i in range(6)])
    stats = loopback.stats()
    assert sorted(r[0] for r in results) == [200] * 5 + [500]
    assert stats["requests"] == 6 and stats["by_status"] == {200: 5, 500: 1}
    assert stats["by_model"] == {"loopback-model": 3, "loopback-small": 3}
    assert len(stats["request_times"]) == 6
    assert all(before <= t <= time.time() for t in stats["request_times"])
    assert stats["max_in_flight"] >= 5 and stats["in_flight"] == 0


async def test_reset_clears_everything(loopback):
    loopback.configure(reply="x", rpm=1)
    loopback.script([{"kind": "500"}, {"kind": "500"}])
    await post(loopback, body_for())
    loopback.reset()
    stats = loopback.stats()
    assert stats["requests"] == 0 and stats["by_status"] == {} and stats["faults_pending"] == 0
    assert loopback.requests() == []
    _, _, data = await post(loopback, body_for("fresh"))
    assert data["choices"][0]["message"]["content"] == "Echo: fresh"
    assert (await post(loopback, body_for()))[0] == 200  # rpm limit gone too


# ---------------------------------------------------------------- the process

def test_server_api_startup_settings_survive_reset():
    with LoopbackServer(latency=0.15, reply="hi there") as server:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
        server.configure(latency=0, reply=None)
        server.reset()
        settings = server.configure()
        assert settings["latency"] == 0.15 and settings["reply"] == "hi there"
    assert not server.running


def test_cli_prints_url_and_exits_when_stdin_closes():
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_notebook.testing.loopback", "--port", "0", "--latency", "0.1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("LOOPBACK_URL=http://127.0.0.1:")
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(line.split("=", 1)[1] + "/v1/models", timeout=5) as r:
            assert json.loads(r.read())["data"][0]["id"] == "loopback-model"
        proc.stdin.close()
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _embeddings(server, body, headers=None):
    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.post(server.url + "/embeddings", json=body, headers=headers) as r:
                return r.status, await r.json()
    return asyncio.run(go())


def test_embeddings_endpoint_answers_floats_or_base64_and_refuses_bad_input(loopback):
    import base64
    import struct

    from llm_notebook.testing import loopback_rules

    status, data = _embeddings(loopback, {"model": "loopback-embed", "input": ["a b", "c"]})
    assert status == 200 and [e["index"] for e in data["data"]] == [0, 1]
    assert data["data"][0]["embedding"] == loopback_rules.embedding("a b")
    assert data["usage"]["prompt_tokens"] == 3
    status, data = _embeddings(loopback, {"model": "m", "input": "a b", "dimensions": 4,
                                          "encoding_format": "base64"})
    packed = base64.b64decode(data["data"][0]["embedding"])
    assert list(struct.unpack("<4f", packed)) == pytest.approx(loopback_rules.embedding("a b", 4))
    for bad in ({"model": "m", "input": []}, {"model": "m", "input": [1]}, {"model": "m"}):
        assert _embeddings(loopback, bad)[0] == 400
    loopback.configure(require_key="sk-right")
    assert _embeddings(loopback, {"model": "m", "input": "x"})[0] == 401
    loopback.configure(require_key=None)
    loopback.script([{"kind": "429", "retry_after": 1}])
    assert _embeddings(loopback, {"model": "m", "input": "x"})[0] == 429
    assert loopback.stats()["embeddings_requests"] == 7
