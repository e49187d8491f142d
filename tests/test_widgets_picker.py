"""The model picker without a browser: its compact models table, "test connection" (off the
kernel's thread) and "use as default", through the widget's message handler."""

from __future__ import annotations

import json
import time

import pytest
from recorders import MessageRecorder

from llm_notebook.widgets.picker import ModelPicker, models_table


@pytest.fixture
def picker(loop_session):
    w = MessageRecorder().attach(ModelPicker())
    yield w
    w.close()


def request(w, method, params=None, req_id="r1"):
    w._handle_custom_msg({"type": "request", "id": req_id, "method": method, "params": params or {}}, [])


def wait_response(w, req_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = w.recorder.response(req_id)
        if resp is not None:
            return resp
        time.sleep(0.01)
    raise AssertionError(f"no response to {req_id} within {timeout} s")


def ids_of(table):
    return [g["prefix"] + row[0] for g in table["groups"] for row in g["rows"]]


def test_the_table_lists_every_model_grouped_usable_first(loop_session, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-real-0123456789")
    loop_session.alias("fast", "loop/small")
    frame = loop_session.models()

    table = models_table(loop_session)

    ids = ids_of(table)
    assert len(ids) == len(frame) and set(ids) == set(frame["model"])  # every model, once
    kinds = [g["kind"] for g in table["groups"]]
    assert kinds[:3] == ["embedded", "endpoint", "alias"]
    first_plain = kinds.index("provider")
    assert "keyed" in kinds and all(k == "keyed" for k in kinds[3:first_plain])
    assert all(k == "provider" for k in kinds[first_plain:])
    embedded, endpoint, alias = table["groups"][:3]
    assert embedded["prefix"] == "local/" and embedded["rows"][0][:4] == ["smollm2", 2048, 0, 0]
    # An endpoint's models are those its server lists (GET /v1/models), not a wildcard.
    assert [r[0] for r in endpoint["rows"]] == ["loop/loopback-embed", "loop/loopback-json",
                                                 "loop/loopback-judge", "loop/loopback-model",
                                                 "loop/loopback-small"]
    assert endpoint["key"] is True and all(r[4] == 1 for r in endpoint["rows"])
    assert alias["rows"][0][0] == "fast" and alias["rows"][0][5] == "alias of loop/small"
    anthropic = next(g for g in table["groups"] if g["label"] == "anthropic")
    assert anthropic["kind"] == "keyed" and anthropic["key"] is True
    openai = next(g for g in table["groups"] if g["label"] == "openai")
    assert openai["key"] is False
    row = next(r for r in openai["rows"] if r[0] == "gpt-4o-mini")
    assert row[1] and row[2] == pytest.approx(0.15) and row[3] == pytest.approx(0.6)
    assert table["default"] == loop_session.default_model()
    # Compact: far smaller than the same table as records (it is sent once per picker).
    compact = len(json.dumps(table, separators=(",", ":")))
    records = len(frame.to_json(orient="records"))
    assert compact < 0.6 * records
    assert "sk-ant" not in json.dumps(table)


def test_models_request_answers_the_table(picker, loop_session):
    request(picker, "picker.models")
    resp = wait_response(picker, "r1")
    assert resp["ok"] and ids_of(resp["result"])[:2] == ["local/smollm2", "loop/loopback-embed"]


def test_an_endpoint_that_cannot_list_its_models_is_one_unavailable_row(nb_session, loopback):
    import socket

    with socket.socket() as sock:            # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nb_session.add_endpoint("dead", f"http://127.0.0.1:{port}/v1")
    nb_session.add_endpoint("loop", loopback.url)
    nb_session.config.prices = {"loop/*": {"input": 1.0, "output": 2.0}}
    frame = nb_session.models().set_index("model")
    assert not frame.loc["dead/*", "available"]
    assert frame.loc["loop/loopback-small", "available"]
    assert frame.loc["loop/loopback-small", "input_per_1m"] == pytest.approx(1.0)
    assert loopback.stats()["models_requests"] == 1


def test_value_starts_at_the_session_default(loop_session):
    loop_session.use("loop/chosen")
    w = ModelPicker()
    assert (w.value, w.default_model) == ("loop/chosen", "loop/chosen")
    assert ModelPicker(value="local/smollm2").value == "local/smollm2"


def test_test_connection_runs_off_the_kernel_thread(picker, loopback):
    loopback.configure(latency=0.5)
    began = time.monotonic()
    request(picker, "picker.check", {"model": "loop/any"})
    assert time.monotonic() - began < 0.3  # answered later: the kernel's thread is free meanwhile
    resp = wait_response(picker, "r1")
    assert resp["ok"] and resp["result"]["ok"] is True
    assert resp["result"]["model"] == "loop/any" and resp["result"]["latency_ms"] >= 400
    assert loopback.requests()[-1]["body"]["model"] == "any"


def test_test_connection_reports_a_failure_as_a_result(picker, loopback):
    loopback.script([{"kind": "401"}])
    request(picker, "picker.check", {"model": "loop/any"}, "a")
    result = wait_response(picker, "a")["result"]
    assert result["ok"] is False and result["error"]
    request(picker, "picker.check", {"model": "loop/*"}, "b")
    wildcard = wait_response(picker, "b")
    assert wildcard["ok"] is False and "type its name" in wildcard["error"]


def test_use_as_default_sets_the_session_default(picker, loop_session):
    request(picker, "picker.use_default", {"model": "loop/picked"})
    resp = wait_response(picker, "r1")
    assert resp == {"type": "response", "id": "r1", "ok": True, "result": {"default": "loop/picked"}}
    assert loop_session.default_model() == "loop/picked" and picker.default_model == "loop/picked"

    request(picker, "picker.use_default", {"model": "nope-provider-zzz/x"}, "bad")
    bad = wait_response(picker, "bad")
    assert bad["ok"] is False and "unknown model" in bad["error"]
    assert loop_session.default_model() == "loop/picked"

    picker.value = "local/smollm2"
    picker.use_as_default()
    assert loop_session.default_model() == "local/smollm2"
