"""The chat widget without a browser: requests go in through the widget's message handler (the
path ipywidgets takes), everything it would send to the front-end is recorded, and answers come
from the loopback server over real HTTP (and once through litellm)."""

from __future__ import annotations

import json
import time

import pytest
from recorders import MessageRecorder

from llm_notebook.widgets.chat import STOPPED, Chat
from llm_notebook.widgets.streaming import MAX_MESSAGES_PER_SECOND

# Far more tokens than a 20-a-second message rate can carry one by one.
LONG_REPLY = " ".join(f"word{i}" for i in range(120))
# A gap is measured where the recorder receives a message, a little after the sender's clock
# reading; a thread switch in between can shorten one gap by that much.
SLACK = 0.02


def make_chat(**kwargs) -> Chat:
    return MessageRecorder().attach(Chat(**kwargs))


@pytest.fixture
def chats():
    made = []

    def factory(**kwargs):
        chat = make_chat(**kwargs)
        made.append(chat)
        return chat

    yield factory
    for chat in made:
        chat.close()


def request(chat, method, params=None, req_id="r1"):
    chat._handle_custom_msg({"type": "request", "id": req_id, "method": method, "params": params or {}}, [])


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    return predicate()


def answer(chat, method, params=None, req_id="r1", timeout=20.0):
    """Sends a request and waits for its response."""
    request(chat, method, params, req_id)
    resp = wait_until(lambda: chat.recorder.response(req_id), timeout)
    assert resp is not None, f"no response to {method} within {timeout} s"
    return resp


def ok(chat, method, params=None, req_id="r1"):
    resp = answer(chat, method, params, req_id)
    assert resp["ok"], resp
    return resp["result"]


# -- streaming ----------------------------------------------------------------------------------------


def test_send_streams_coalesced_deltas_then_the_final_snapshot(loop_session, loopback, chats):
    loopback.configure(reply=LONG_REPLY, tokens_per_second=240)  # ~0.5 s of tokens
    chat = chats(model="loop/model")
    snapshots = []
    chat.observe(lambda change: snapshots.append(change["new"]), names="snapshot")

    began = time.monotonic()
    request(chat, "send", {"prompt": "Tell me many words"})
    assert time.monotonic() - began < 0.3  # the kernel's thread is free while the answer streams
    turn = wait_until(lambda: chat.recorder.response("r1"))["result"]

    start, = chat.recorder.of_type("stream.start")
    assert start["meta"] == {"prompt": "Tell me many words", "parent_id": None, "model": "loop/model"}
    deltas = chat.recorder.deltas()
    assert all(d["id"] == start["id"] for d in deltas)
    assert [d["seq"] for d in deltas] == list(range(len(deltas)))
    # 120 tokens, at most 20 messages a second: coalesced, never one message per token.
    assert 2 <= len(deltas) < 60
    times = chat.recorder.delta_times()
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 1 / MAX_MESSAGES_PER_SECOND - SLACK
    end, = chat.recorder.of_type("stream.end")
    assert end["text"] == LONG_REPLY
    assert LONG_REPLY.startswith("".join(d["delta"] for d in deltas))
    # The final snapshot also carries the logged turn, footer included.
    assert end["meta"]["id"] == turn["id"] and end["meta"]["status"] == "ok"
    assert end["meta"]["footer"].startswith("loop/model · ")
    # The order the front-end relies on: the end, then "re-read the state", then the answer.
    kinds = [m["type"] for m in chat.recorder.sent]
    assert kinds.index("stream.end") < kinds.index("chat.changed") < kinds.index("response")

    row = loop_session.log.call(turn["id"])
    assert row["response"] == LONG_REPLY and row["status"] == "ok"
    assert row["conversation_id"] == chat.conversation_id
    assert turn["output_tokens"] == 120 and turn["branch"] == {"index": 0, "ids": [turn["id"]]}
    # The answer streams in custom messages, never in a trait (ipywidgets would re-send it whole
    # on every change): the one trait that holds it is the static snapshot, set once the turn
    # has settled.
    assert wait_until(lambda: snapshots, timeout=5)
    state = chat.get_state()
    assert "word119" in state.pop("snapshot")
    assert LONG_REPLY not in json.dumps(state, default=str)
    assert len(snapshots) == 1 and "word119" in snapshots[0]
    assert chat.busy is False


def test_the_history_goes_with_each_message(loop_session, loopback, chats):
    chat = chats(model="loop/model")
    ok(chat, "send", {"prompt": "first"}, "a")
    ok(chat, "send", {"prompt": "second"}, "b")
    last = loopback.requests()[-1]["body"]["messages"]
    assert [m["content"] for m in last] == ["first", "Echo: first", "second"]
    turns = chat.turns()
    assert [t["prompt"] for t in turns] == ["first", "second"]
    assert turns[1]["parent_id"] == turns[0]["id"]


def test_a_second_message_while_one_streams_is_refused(loop_session, loopback, chats):
    loopback.configure(reply=LONG_REPLY, tokens_per_second=60)
    chat = chats(model="loop/model")
    request(chat, "send", {"prompt": "long one"}, "a")
    assert wait_until(lambda: chat.recorder.deltas())
    second = answer(chat, "send", {"prompt": "impatient"}, "b")
    assert second["ok"] is False and "still streaming" in second["error"]
    ok(chat, "stop", {}, "c")
    assert wait_until(lambda: chat.recorder.response("a"))


# -- stop ---------------------------------------------------------------------------------------------


def test_stop_cancels_the_call_which_logs_interrupted_with_the_partial_text(loop_session, loopback, chats):
    loopback.configure(reply=LONG_REPLY, tokens_per_second=30)  # 4 s if nobody stops it
    chat = chats(model="loop/model")
    request(chat, "send", {"prompt": "go on and on"}, "send")
    assert wait_until(lambda: len("".join(d["delta"] for d in chat.recorder.deltas())) > 20)
    assert chat.busy is True

    stopped_at = time.monotonic()
    assert ok(chat, "stop", {}, "stop") is True
    turn = wait_until(lambda: chat.recorder.response("send"))["result"]
    assert time.monotonic() - stopped_at < 2  # the call was cancelled, not waited for

    error, = chat.recorder.of_type("stream.error")
    assert error["error"] == STOPPED
    row = loop_session.log.call(turn["id"])
    assert row["status"] == "interrupted" and row["error_kind"] == "interrupted"
    assert row["response"] and LONG_REPLY.startswith(row["response"]) and row["response"] != LONG_REPLY
    assert error["partial"] == row["response"]
    assert turn["status"] == "interrupted" and "interrupted" in turn["footer"]
    # The stopped answer stays on screen (and in the history the next message sends).
    assert chat.turns()[-1]["id"] == row["id"]
    assert chat.busy is False and chat.recorder.of_type("chat.changed")
    assert ok(chat, "stop", {}, "again") is False  # nothing left to stop


def test_a_kernel_interrupt_also_logs_interrupted_and_propagates(loop_session, loopback, chats):
    loopback.configure(reply=LONG_REPLY, tokens_per_second=30)
    chat = chats(model="loop/model")
    future = chat.ask("interrupt me", wait=False)
    assert wait_until(lambda: chat.recorder.deltas())
    future.cancel()  # what runner.run does on Ctrl-C / the kernel's interrupt
    assert wait_until(lambda: chat.recorder.of_type("stream.error"))
    assert wait_until(lambda: not chat.busy)
    (row,) = [r for r in loop_session.history(limit=5).to_dict("records")]
    assert row["status"] == "interrupted" and row["response"]


# -- branches -----------------------------------------------------------------------------------------


def test_edit_forks_at_the_parent_into_a_new_branch(loop_session, chats):
    chat = chats(model="loop/model")
    first = ok(chat, "send", {"prompt": "one"}, "a")
    second = ok(chat, "send", {"prompt": "two"}, "b")

    edited = ok(chat, "edit", {"turn_id": second["id"], "prompt": "two, edited"}, "c")

    assert edited["parent_id"] == first["id"] and edited["prompt"] == "two, edited"
    assert edited["response"] == "Echo: two, edited"
    siblings = chat.conversation.branches(second["id"])
    assert [r["id"] for r in siblings] == [second["id"], edited["id"]]
    turns = chat.turns()
    assert [t["prompt"] for t in turns] == ["one", "two, edited"]
    assert turns[1]["branch"] == {"index": 1, "ids": [second["id"], edited["id"]]}
    # The old branch is still in the log, untouched.
    assert loop_session.log.call(second["id"])["prompt"] == "two"


def test_editing_the_first_message_makes_a_root_branch_of_the_same_conversation(loop_session, chats):
    chat = chats(model="loop/model")
    first = ok(chat, "send", {"prompt": "hello"}, "a")
    ok(chat, "send", {"prompt": "more"}, "b")

    edited = ok(chat, "edit", {"turn_id": first["id"], "prompt": "hi instead"}, "c")

    assert edited["parent_id"] is None
    assert [t["prompt"] for t in chat.turns()] == ["hi instead"]
    assert edited["branch"] == {"index": 1, "ids": [first["id"], edited["id"]]}
    assert [r["id"] for r in chat.conversation.branches(first["id"])] == [first["id"], edited["id"]]


def test_regenerate_makes_a_branch_and_switch_moves_between_them(loop_session, loopback, chats):
    loopback.configure(replies=["answer A", "answer B", "answer C"])
    chat = chats(model="loop/model")
    a = ok(chat, "send", {"prompt": "q1"}, "1")
    a_next = ok(chat, "send", {"prompt": "q2"}, "2")  # a turn after answer A

    b = ok(chat, "regenerate", {"turn_id": a["id"]}, "3")

    assert (a["response"], a_next["response"], b["response"]) == ("answer A", "answer B", "answer C")
    assert b["prompt"] == "q1" and b["parent_id"] is None
    assert b["branch"] == {"index": 1, "ids": [a["id"], b["id"]]}
    assert [t["id"] for t in chat.turns()] == [b["id"]]

    # Back to the first branch: down to its latest reply, so q2 comes back too.
    state = ok(chat, "switch", {"turn_id": a["id"]}, "4")
    assert [t["id"] for t in state["turns"]] == [a["id"], a_next["id"]]
    assert state["turns"][0]["branch"] == {"index": 0, "ids": [a["id"], b["id"]]}
    assert chat.recorder.of_type("chat.changed")
    # The branch on screen is the conversation's head in the log.
    assert loop_session.log.conversation(conv_id=chat.conversation_id)["head_id"] == a_next["id"]

    wrong = answer(chat, "switch", {"turn_id": 999_999}, "5")
    assert wrong["ok"] is False and "not part of this chat" in wrong["error"]


def test_regenerate_skips_the_cache(loop_session, loopback, chats):
    loop_session.config.cache = True
    loopback.configure(replies=["first take", "second take"])
    chat = chats(model="loop/model")
    a = ok(chat, "send", {"prompt": "same question"}, "1")
    b = ok(chat, "regenerate", {"turn_id": a["id"]}, "2")
    assert b["response"] == "second take" and b["cached"] is False


def test_a_failed_message_keeps_the_branch_and_reports_one_line(loop_session, loopback, chats):
    chat = chats(model="loop/model")
    first = ok(chat, "send", {"prompt": "fine"}, "a")
    loopback.script([{"kind": "400"}])

    failed = answer(chat, "send", {"prompt": "this one fails"}, "b")

    assert failed["ok"] is False and "\n" not in failed["error"]
    error, = chat.recorder.of_type("stream.error")
    assert error["error"] == failed["error"]
    assert [t["id"] for t in chat.turns()] == [first["id"]]
    assert chat.conversation.head_id == first["id"]
    # The failure is in the log, but not in the conversation's branches.
    assert loop_session.log.count_calls(status="error") == 1
    assert chat.turns()[0]["branch"]["ids"] == [first["id"]]


# -- restoring -----------------------------------------------------------------------------------------


def test_state_comes_from_the_log_after_a_reload_and_a_kernel_restart(loop_session, loopback, chats, log_path):
    import llm_notebook
    from llm_notebook.session import reset_session

    chat = chats(model="loop/model", name="notes", system="Be brief.")
    a = ok(chat, "send", {"prompt": "remember this"}, "1")
    b = ok(chat, "regenerate", {"turn_id": a["id"]}, "2")
    ok(chat, "switch", {"turn_id": a["id"]}, "3")

    # A reloaded page asks the same widget again.
    state = ok(chat, "state", {}, "4")
    assert state["conversation"] == {"id": chat.conversation_id, "name": "notes", "system": "Be brief."}
    assert [t["id"] for t in state["turns"]] == [a["id"]] and state["busy"] is False
    assert state["active"] is None

    # A new kernel: a fresh Session on the same log, the widget re-created by name.
    reset_session()
    fresh = llm_notebook.session()
    fresh.config.log_path = log_path
    fresh.add_endpoint("loop", loopback.url)
    again = chats(name="notes")
    assert again.conversation_id == chat.conversation_id
    assert again.model == "loop/model" and again.system == "Be brief."
    restored = ok(again, "state", {}, "5")
    assert [t["id"] for t in restored["turns"]] == [a["id"]]
    assert restored["turns"][0]["branch"] == {"index": 0, "ids": [a["id"], b["id"]]}
    # And it continues the conversation, system prompt and history included.
    ok(again, "send", {"prompt": "and then?"}, "6")
    sent = loopback.requests()[-1]["body"]["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert [m["content"] for m in sent[1:]] == ["remember this", a["response"], "and then?"]


def test_state_while_streaming_shows_the_live_exchange(loop_session, loopback, chats):
    loopback.configure(reply=LONG_REPLY, tokens_per_second=40)
    chat = chats(model="loop/model")
    request(chat, "send", {"prompt": "stream please"}, "s")
    assert wait_until(lambda: chat.recorder.deltas())
    state = ok(chat, "state", {}, "st")
    assert state["busy"] is True
    assert state["active"]["prompt"] == "stream please" and state["active"]["parent_id"] is None
    assert LONG_REPLY.startswith(state["active"]["text"]) and state["active"]["text"]
    ok(chat, "stop", {}, "x")


# -- export ----------------------------------------------------------------------------------------------


def test_export_markdown_and_json(loop_session, chats, tmp_path):
    chat = chats(model="loop/model", name="export me", system="You echo.")
    ok(chat, "send", {"prompt": "Hello **world**"}, "1")

    md = ok(chat, "export", {"format": "markdown"}, "2")
    assert md["filename"] == "export me.md" and md["mime"] == "text/markdown"
    assert md["text"].startswith("# export me\n")
    assert "**You:**\n\nHello **world**" in md["text"]
    assert "Echo: Hello **world**" in md["text"] and "loop/model · " in md["text"]

    js = ok(chat, "export", {"format": "json"}, "3")
    doc = json.loads(js["text"])
    assert doc["conversation"]["name"] == "export me"
    assert [m["role"] for m in doc["messages"]] == ["system", "user", "assistant"]
    assert doc["messages"][2]["content"] == "Echo: Hello **world**"
    assert doc["messages"][2]["model"] == "loop/model" and doc["messages"][2]["status"] == "ok"

    bad = answer(chat, "export", {"format": "pdf"}, "4")
    assert bad["ok"] is False and "markdown" in bad["error"]

    assert chat.export(tmp_path / "c.json").read_text() == chat.to_json()
    assert chat.export(tmp_path / "c.md").read_text() == chat.to_markdown()


# -- the Python API and the model picker inside -----------------------------------------------------------


def test_ask_from_python_streams_to_the_widget_and_returns_the_response(loop_session, chats):
    chat = chats(model="loop/model")
    response = chat.ask("from a cell")
    assert response.text == "Echo: from a cell" and response.status == "ok"
    assert response.conversation_id == chat.conversation_id
    assert chat.recorder.of_type("stream.start")[0]["meta"]["prompt"] == "from a cell"
    assert chat.recorder.of_type("stream.end")[0]["text"] == "Echo: from a cell"
    assert chat.regenerate().id != response.id
    edited = chat.edit(response.id, "edited in Python")
    assert edited.text == "Echo: edited in Python"
    assert [len(t["branch"]["ids"]) for t in chat.turns()] == [3]
    assert [t["id"] for t in chat.switch(response.id)] == [response.id]
    with pytest.raises(ValueError, match="empty"):
        chat.ask("   ")


def test_switching_models_mid_conversation(loop_session, chats):
    chat = chats(model="loop/first")
    ok(chat, "send", {"prompt": "a"}, "1")
    chat.model = "loop/second"  # what the embedded picker does
    ok(chat, "send", {"prompt": "b"}, "2")
    assert [t["model"] for t in chat.turns()] == ["loop/first", "loop/second"]
    table = ok(chat, "picker.models", {}, "3")
    assert table["groups"][0]["rows"][0][0] == "smollm2"


def test_an_unknown_model_fails_at_creation():
    from llm_notebook.errors import LLMError

    with pytest.raises(LLMError, match="unknown model"):
        Chat(model="no-such-provider-xyz/model")


def test_keys_stay_out_of_widget_state_and_the_log_through_litellm(nb_session, loopback, chats):
    key = "sk-chat-test-0123456789abcdefghij"
    loopback.configure(require_key=key, tokens_per_second=400)
    chat = chats(model="openai/gpt-4o-mini", api_base=loopback.url, api_key=key)

    turn = ok(chat, "send", {"prompt": "through litellm"}, "1")

    assert turn["response"] == "Echo: through litellm" and turn["status"] == "ok"
    assert chat.recorder.of_type("stream.end")
    everything = json.dumps([chat.get_state(), chat.recorder.sent], default=str)
    assert key not in everything
    row = nb_session.log.call(turn["id"])
    assert key not in json.dumps(row, default=str)


def test_the_line_magic_opens_a_chat(ipshell, loop_session):
    chat = ipshell.run_line_magic("llm", "chat")
    try:
        assert isinstance(chat, Chat)
        assert chat.model == loop_session.default_model() and chat.conversation_id
    finally:
        chat.close()


def test_the_line_magic_opens_a_named_chat_with_its_model_and_system(ipshell, loop_session):
    first = ipshell.run_line_magic("llm", "chat review -m loop/model -s 'Be brief.'")
    try:
        assert (first.name, first.model, first.system) == ("review", "loop/model", "Be brief.")
        again = ipshell.run_line_magic("llm", "chat review")
        try:
            assert again.conversation_id == first.conversation_id
            assert again.system == "Be brief."
        finally:
            again.close()
    finally:
        first.close()


def test_the_line_magic_refuses_an_unknown_model_in_one_line(ipshell, loop_session):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="nosuchprovider"):
        ipshell.run_line_magic("llm", "chat -m nosuchprovider/x")


def test_the_line_magic_opens_the_conversation_a_chat_cell_continues(ipshell, loop_session):
    ipshell.run_cell_magic("llm", "loop/model --chat notes --no-stream", "First note")
    chat = ipshell.run_line_magic("llm", "chat notes")
    try:
        assert [t["prompt"] for t in chat.turns()] == ["First note"]
        assert chat.turns()[0]["response"] == "Echo: First note"
    finally:
        chat.close()



# -- attachments ------------------------------------------------------------------------------------


def test_send_with_uploaded_files_sends_content_parts_and_logs_no_bytes(loop_session, loopback, chats):
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (3, 3), (1, 2, 3)).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    chat = chats(model="loop/model")
    turn = ok(chat, "send", {"prompt": "What is it?", "attachments": [{"name": "dot.png", "data": data}]})
    sent = loopback.requests()[-1]["body"]["messages"][-1]["content"]
    assert sent[1]["image_url"]["url"] == "data:image/png;base64," + data
    assert "[attached: dot.png (image/png" in turn["prompt"] and data[:40] not in turn["prompt"]
    # The next turn sees the attachment's name in its history, not the picture again.
    ok(chat, "send", {"prompt": "And now?"}, "r2")
    history = loopback.requests()[-1]["body"]["messages"]
    assert all(isinstance(m["content"], str) for m in history)


def test_a_bad_upload_is_one_line_in_the_banner_and_nothing_is_sent(loop_session, loopback, chats):
    chat = chats(model="loop/model")
    resp = answer(chat, "send", {"prompt": "Look", "attachments": [{"name": "x.png", "data": "aGVsbG8="}]})
    assert not resp["ok"] and "not a PNG, JPEG, GIF or WebP image or a PDF" in resp["error"]
    resp = answer(chat, "send", {"prompt": "Look", "attachments": [{"name": "x.png", "data": "%%"}]}, "r2")
    assert not resp["ok"] and "attach it again" in resp["error"]
    assert loopback.requests() == []
