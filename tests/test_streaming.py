"""The widget wire protocol without a browser: StreamSender (deltas ≤ 20 msgs/s, final snapshot,
errors, threads) and LLMWidget's request/response messages, against widgets that record sends."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time

import pytest
from recorders import MessageRecorder

from llm_notebook.errors import LLMError
from llm_notebook.widgets._base import STATIC_DIR, LLMWidget, rpc
from llm_notebook.widgets.streaming import (
    MAX_MESSAGES_PER_SECOND,
    StreamSender,
    error_line,
)

INTERVAL = 1.0 / MAX_MESSAGES_PER_SECOND
# Gaps are measured where the fake receives the message, a little after the sender's own clock
# reading; a thread switch (5 ms in CPython) in between can shorten one gap by that much.
SLACK = 0.02


def wait_until(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def assert_rate_limited(widget: MessageRecorder):
    times = widget.delta_times()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= INTERVAL - SLACK for g in gaps), f"messages closer than {INTERVAL}s: {min(gaps):.4f}"


# -- StreamSender -----------------------------------------------------------------------------------


def test_start_announces_the_stream_with_a_uuid_and_meta():
    w = MessageRecorder()
    s = StreamSender(w)
    sid = s.start(meta={"model": "local/smollm2"})
    assert len(sid) == 32 and int(sid, 16) >= 0
    assert w.sent == [{"type": "stream.start", "id": sid, "meta": {"model": "local/smollm2"}}]
    assert s.start("mine") == "mine"
    with pytest.raises(ValueError, match="already open"):
        s.start("mine")


def test_2000_deltas_in_a_second_are_coalesced_to_20_messages_a_second():
    w = MessageRecorder()
    s = StreamSender(w)
    sid = s.start()
    pieces = [f"tok{i} " for i in range(2000)]
    began = time.monotonic()
    for piece in pieces:
        s.push(piece)
        time.sleep(0.0005)
    duration = time.monotonic() - began
    s.finish()

    full = "".join(pieces)
    deltas = w.deltas(sid)
    assert duration >= 0.9
    assert len(deltas) <= duration * MAX_MESSAGES_PER_SECOND + 2
    assert len(deltas) >= 5  # it did stream, not just wait for the end
    assert_rate_limited(w)
    assert [d["seq"] for d in deltas] == list(range(len(deltas)))
    streamed = "".join(d["delta"] for d in deltas)
    assert full.startswith(streamed)  # in order, nothing twice
    end = w.of_type("stream.end")
    assert end == [{"type": "stream.end", "id": sid, "text": full, "meta": {}}]
    assert w.sent[-1]["type"] == "stream.end"


def test_the_first_delta_goes_at_once_and_a_timer_sends_the_rest_without_another_push():
    w = MessageRecorder()
    s = StreamSender(w)
    s.start()
    s.push("Hel")
    assert [d["delta"] for d in w.deltas()] == ["Hel"]
    s.push("lo")
    s.push(" there")
    assert len(w.deltas()) == 1  # within the interval: buffered
    assert wait_until(lambda: len(w.deltas()) == 2, timeout=1.0)
    assert w.deltas()[1] == {"type": "stream.delta", "id": w.deltas()[0]["id"], "delta": "lo there", "seq": 1}
    assert_rate_limited(w)


def test_finish_sends_the_snapshot_once_and_drops_pending_deltas():
    w = MessageRecorder()
    s = StreamSender(w)
    sid = s.start()
    s.push("a")
    s.push("b")  # pending
    s.finish("ab!", meta={"output_tokens": 2})
    time.sleep(INTERVAL * 2)  # the cancelled timer must not send "b" afterwards
    assert [d["delta"] for d in w.deltas()] == ["a"]
    assert w.sent[-1] == {"type": "stream.end", "id": sid, "text": "ab!", "meta": {"output_tokens": 2}}
    assert s.push("late") is False
    assert s.open_streams == []


def test_bytes_sent_are_linear_in_the_length_of_the_answer():
    def total_bytes(n_tokens: int, pause: float) -> tuple[int, int, int, int]:
        """(text length, bytes of delta messages, bytes of the end message, delta messages)"""
        w = MessageRecorder()
        s = StreamSender(w)
        s.start()
        text = []
        for i in range(n_tokens):
            token = f"w{i % 10} "
            text.append(token)
            s.push(token)
            if pause:
                time.sleep(pause)
        full = "".join(text)
        s.finish()
        delta_msgs = w.of_type("stream.delta", "stream.batch")
        delta_bytes = sum(len(json.dumps(m)) for m in delta_msgs)
        end_bytes = len(json.dumps(w.of_type("stream.end")[0]))
        return len(full), delta_bytes, end_bytes, len(delta_msgs)

    for n_tokens, pause in [(5000, 0.0), (20, 0.055)]:  # bursts, and one message per token
        length, delta_bytes, end_bytes, n_msgs = total_bytes(n_tokens, pause)
        assert delta_bytes <= length + 100 * n_msgs, (n_tokens, length, delta_bytes, n_msgs)
        assert end_bytes <= length + 100

    # Ten times the text, about ten times the bytes (quadratic would be a hundred).
    short = total_bytes(150, 0.0005)
    long = total_bytes(1500, 0.0005)
    assert (long[1] + long[2]) / (short[1] + short[2]) < 15


def test_fail_sends_one_redacted_line_and_the_partial_text():
    w = MessageRecorder()
    s = StreamSender(w)
    sid = s.start()
    s.push("Once upon")
    s.push(" a time")
    s.fail(RuntimeError("upstream said: invalid key sk-abcdefghijklmnopqrstuvwxyz012345\nTraceback ..."))
    err = w.sent[-1]
    assert err["type"] == "stream.error" and err["id"] == sid
    assert err["partial"] == "Once upon a time"
    assert err["error"].startswith("RuntimeError: upstream said: invalid key ")
    assert "sk-abc" not in err["error"] and "[REDACTED]" in err["error"] and "\n" not in err["error"]
    assert s.push("more") is False
    count = len(w.sent)
    s.finish("ignored")  # already closed: nothing more is sent
    assert len(w.sent) == count


def test_fail_with_explicit_partial_and_llm_error_message():
    w = MessageRecorder()
    s = StreamSender(w)
    s.start("x")
    s.fail(LLMError("Rate limited by the provider; wait a minute or lower concurrency."), partial="")
    assert w.sent[-1] == {
        "type": "stream.error",
        "id": "x",
        "error": "Rate limited by the provider; wait a minute or lower concurrency.",
        "partial": "",
    }


def test_error_line_is_short_and_single_line():
    assert error_line("") == "Unknown error."
    assert error_line("first\nsecond") == "first"
    assert len(error_line("x" * 5000)) == 500
    assert error_line(KeyError("model")) == "KeyError: 'model'"


def test_several_streams_share_the_widget_rate_and_need_explicit_ids():
    w = MessageRecorder()
    s = StreamSender(w)
    a, b = s.start(), s.start()
    with pytest.raises(ValueError, match="pass stream_id"):
        s.push("?")
    deadline = time.monotonic() + 0.5
    i = 0
    while time.monotonic() < deadline:
        s.push(f"a{i} ", a)
        s.push(f"b{i} ", b)
        i += 1
        time.sleep(0.001)
    s.finish(stream_id=a)
    s.finish(stream_id=b)
    assert_rate_limited(w)
    assert any(m["type"] == "stream.batch" for m in w.sent)
    for sid, prefix in ((a, "a"), (b, "b")):
        deltas = w.deltas(sid)
        assert [d["seq"] for d in deltas] == list(range(len(deltas)))
        final = next(m["text"] for m in w.of_type("stream.end") if m["id"] == sid)
        assert final == "".join(f"{prefix}{k} " for k in range(i))
        assert final.startswith("".join(d["delta"] for d in deltas))


def test_pushes_from_other_threads_and_an_asyncio_loop_are_safe():
    w = MessageRecorder()
    s = StreamSender(w)
    ids = [s.start() for _ in range(4)]
    expected: dict[str, str] = {}

    def produce(sid: str, n: int):
        pieces = [f"{sid[:4]}-{k};" for k in range(n)]
        for piece in pieces:
            s.push(piece, sid)
        expected[sid] = "".join(pieces)
        s.finish(stream_id=sid)

    threads = [threading.Thread(target=produce, args=(sid, 3000)) for sid in ids[:3]]

    async def produce_async(sid: str):  # like llm_notebook.runner's loop thread
        pieces = []
        for k in range(300):
            pieces.append(f"async-{k};")
            s.push(pieces[-1], sid)
            if k % 10 == 0:
                await asyncio.sleep(0.001)
        expected[sid] = "".join(pieces)
        s.finish(stream_id=sid)

    threads.append(threading.Thread(target=lambda: asyncio.run(produce_async(ids[3]))))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)

    assert_rate_limited(w)
    ends = {m["id"]: m["text"] for m in w.of_type("stream.end")}
    assert ends == expected
    for sid in ids:
        deltas = w.deltas(sid)
        assert [d["seq"] for d in deltas] == list(range(len(deltas)))
        assert expected[sid].startswith("".join(d["delta"] for d in deltas))
        # every stream's deltas come before its end
        end_index = next(k for k, m in enumerate(w.sent) if m["type"] == "stream.end" and m["id"] == sid)
        assert all(m["type"] != "stream.delta" or m["id"] != sid for m in w.sent[end_index:])


def test_close_stops_everything():
    w = MessageRecorder()
    s = StreamSender(w)
    s.start()
    s.push("a")
    s.push("b")
    s.close()
    time.sleep(INTERVAL * 2)
    assert [m["type"] for m in w.sent] == ["stream.start", "stream.delta"]
    assert s.push("c") is False


# -- LLMWidget: request/response ---------------------------------------------------------------------


class EchoWidget(LLMWidget):
    _bundle = "picker"

    @rpc
    def ping(self, text: str = ""):
        return f"pong {text}".strip()

    @rpc("explode")
    def _explode(self):
        raise ValueError("no model named 'x'\nsecond line")

    @rpc
    def unsendable(self):
        return object()

    @rpc
    def when(self):
        import datetime

        return {"at": datetime.date(2024, 1, 2), "tags": {"a"}}

    @rpc
    async def slow_add(self, a: int, b: int, delay: float = 0.05):
        await asyncio.sleep(delay)
        return a + b

    @rpc
    async def slow_fail(self):
        await asyncio.sleep(0.01)
        raise LLMError("No key for openai: set OPENAI_API_KEY (value sk-abcdefghijklmnopqrstuvwxyz0123).")


@pytest.fixture
def widget():
    w = EchoWidget()
    MessageRecorder().attach(w)
    yield w
    w.close()


def request(w, method, params=None, req_id="r1", **extra):
    msg = {"type": "request", "id": req_id, "method": method, "params": params if params is not None else {}}
    msg.update(extra)
    w._handle_custom_msg(msg, [])  # the path ipywidgets takes for a custom message


def responses(w):
    return w.recorder.of_type("response")


def test_handler_result_is_the_response(widget):
    request(widget, "ping", {"text": "hi"})
    assert responses(widget) == [{"type": "response", "id": "r1", "ok": True, "result": "pong hi"}]


def test_handler_that_raises_answers_ok_false_with_one_line(widget):
    request(widget, "explode")
    assert responses(widget) == [{"type": "response", "id": "r1", "ok": False, "error": "ValueError: no model named 'x'"}]


def test_unknown_method_answers_ok_false(widget):
    request(widget, "nope")
    (resp,) = responses(widget)
    assert resp["ok"] is False and resp["id"] == "r1"
    assert "Unknown method 'nope'" in resp["error"] and "ping" in resp["error"]


def test_bad_params_answer_ok_false(widget):
    request(widget, "ping", {"bogus": 1}, req_id="a")
    request(widget, "ping", ["not", "a", "dict"], req_id="b")
    a, b = responses(widget)
    assert a["ok"] is False and a["error"].startswith("TypeError:") and "bogus" in a["error"]
    assert b["ok"] is False and "params must be a JSON object" in b["error"]


def test_results_are_json_or_an_error(widget):
    request(widget, "unsendable", req_id="a")
    request(widget, "when", req_id="b")
    a, b = responses(widget)
    assert a["ok"] is False and "could not be sent" in a["error"]
    assert b == {"type": "response", "id": "b", "ok": True, "result": {"at": "2024-01-02", "tags": ["a"]}}


def test_async_handlers_run_in_the_background_and_answer_later(widget):
    began = time.monotonic()
    request(widget, "slow_add", {"a": 2, "b": 3, "delay": 0.3})
    assert time.monotonic() - began < 0.2  # the kernel thread was not blocked
    assert responses(widget) == []
    assert wait_until(lambda: responses(widget), timeout=5)
    assert responses(widget) == [{"type": "response", "id": "r1", "ok": True, "result": 5}]


def test_async_llm_error_answers_with_its_redacted_message(widget):
    request(widget, "slow_fail")
    assert wait_until(lambda: responses(widget), timeout=5)
    (resp,) = responses(widget)
    assert resp["ok"] is False
    assert resp["error"].startswith("No key for openai: set OPENAI_API_KEY")
    assert "sk-abc" not in resp["error"]


def test_cancel_answers_ok_false(widget):
    request(widget, "slow_add", {"a": 1, "b": 1, "delay": 30})
    widget._handle_custom_msg({"type": "request.cancel", "id": "r1"}, [])
    assert wait_until(lambda: responses(widget), timeout=5)
    assert responses(widget) == [{"type": "response", "id": "r1", "ok": False, "error": "slow_add was cancelled."}]


def test_without_a_background_loop_async_handlers_run_to_completion(widget, monkeypatch):
    import llm_notebook.widgets._base as base

    monkeypatch.setattr(base, "_background_submit", lambda: None)
    request(widget, "slow_add", {"a": 20, "b": 22, "delay": 0.01})
    assert responses(widget) == [{"type": "response", "id": "r1", "ok": True, "result": 42}]

    async def inside_a_running_loop():  # as in a kernel, where asyncio.run is not allowed
        request(widget, "slow_add", {"a": 1, "b": 2, "delay": 0.01}, req_id="r2")

    asyncio.run(inside_a_running_loop())
    assert responses(widget)[-1] == {"type": "response", "id": "r2", "ok": True, "result": 3}


def test_instance_handlers_and_other_custom_messages(widget):
    seen = []
    widget.register("double", lambda x: 2 * x)
    widget.on_custom_message = lambda content, buffers: seen.append(content)
    request(widget, "double", {"x": 21})
    widget._handle_custom_msg({"type": "something.else"}, [])
    assert responses(widget)[-1]["result"] == 42
    assert seen == [{"type": "something.else"}]


def test_widget_streams_go_through_the_widget(widget):
    sid = widget.streams.start()
    widget.streams.push("hello")
    widget.streams.finish()
    assert [m["type"] for m in widget.recorder.sent] == ["stream.start", "stream.delta", "stream.end"]
    assert widget.recorder.sent[-1] == {"type": "stream.end", "id": sid, "text": "hello", "meta": {}}


def test_bundle_files_are_the_widget_front_end():
    # Not a skip: a package without its bundles is broken, and this test should say so.
    assert (STATIC_DIR / "picker.js").is_file(), "bundles not built: run npm --prefix js run build"
    assert str(EchoWidget._esm) == (STATIC_DIR / "picker.js").read_text()
    assert str(EchoWidget._css) == (STATIC_DIR / "picker.css").read_text()
    assert "export" in str(EchoWidget._esm)


def test_a_missing_bundle_renders_how_to_build_it():
    class Unbuilt(LLMWidget):
        _bundle = "no-such-widget"

    assert isinstance(Unbuilt._esm, str)
    assert "no-such-widget.js" in Unbuilt._esm and "npm run build" in Unbuilt._esm
    assert not hasattr(Unbuilt, "_css") or "no-such-widget" not in str(getattr(Unbuilt, "_css", ""))
