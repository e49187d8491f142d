"""Conversations over real HTTP: prior turns are sent (as the loopback server records them),
history survives a kernel restart (it comes from the log), and fork() starts a branch."""

from __future__ import annotations

import pytest

import llm_notebook
from llm_notebook.session import reset_session
from llm_notebook.conversation import Conversation


def sent_messages(loopback) -> list[dict]:
    return loopback.requests()[-1]["body"]["messages"]


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def test_ask_sends_prior_turns(loop_session, loopback):
    chat = loop_session.chat(model="loop/m", system="be kind")
    first = chat.ask("first question")
    assert sent_messages(loopback) == [{"role": "system", "content": "be kind"},
                                       user("first question")]
    second = chat.ask("second question")
    assert sent_messages(loopback) == [
        {"role": "system", "content": "be kind"},
        user("first question"), assistant("Echo: first question"), user("second question")]
    assert chat.head_id == second.id
    assert second.conversation_id == chat.id
    row = loop_session.log.call(second.id)
    assert row["parent_id"] == first.id and row["conversation_id"] == chat.id
    assert [m["content"] for m in chat.messages()] == [
        "first question", "Echo: first question", "second question", "Echo: second question"]


def test_stream_continues_the_conversation(loop_session, loopback):
    chat = loop_session.chat(model="loop/m")
    chat.ask("one")
    st = chat.stream("two")
    assert "".join(st) == "Echo: two"
    assert chat.head_id == st.response.id
    chat.ask("three")
    assert sent_messages(loopback) == [user("one"), assistant("Echo: one"), user("two"),
                                       assistant("Echo: two"), user("three")]


async def test_async_conversation(loop_session, loopback):
    from llm_notebook.providers import http

    try:
        chat = loop_session.chat(model="loop/m")
        await chat.aask("one")
        chunks = [c async for c in chat.astream("two")]
        assert "".join(chunks) == "Echo: two"
        assert sent_messages(loopback)[:2] == [user("one"), assistant("Echo: one")]
        assert len(chat.turns()) == 2
    finally:
        await http.close_all()


def test_failed_turn_does_not_move_the_head(loop_session, loopback):
    chat = loop_session.chat(model="loop/m")
    ok = chat.ask("fine")
    loopback.script([{"kind": "400"}])
    with pytest.raises(Exception):
        chat.ask("rejected")
    assert chat.head_id == ok.id
    chat.ask("again")
    assert sent_messages(loopback) == [user("fine"), assistant("Echo: fine"), user("again")]


def test_named_history_survives_a_kernel_restart(nb_session, loopback, monkeypatch, log_path):
    nb_session.add_endpoint("loop", loopback.url)
    chat = nb_session.chat("project", model="loop/m")
    chat.ask("remember the number 7")
    chat.ask("and the colour blue")
    conv_id = chat.id

    # "Restart the kernel": a brand-new Session object on the same log file.
    reset_session()
    fresh = llm_notebook.session()
    assert fresh is not nb_session and fresh.log.path == log_path
    fresh.add_endpoint("loop", loopback.url)
    again = fresh.chat("project")
    assert again.id == conv_id and again.model == "loop/m"
    assert [m["content"] for m in again.messages()] == [
        "remember the number 7", "Echo: remember the number 7",
        "and the colour blue", "Echo: and the colour blue"]
    again.ask("what did I say?")
    assert sent_messages(loopback) == [
        user("remember the number 7"), assistant("Echo: remember the number 7"),
        user("and the colour blue"), assistant("Echo: and the colour blue"),
        user("what did I say?")]
    assert Conversation.by_id(fresh, conv_id).head_id == again.head_id


def test_unnamed_chats_are_separate(loop_session, loopback):
    a = loop_session.chat(model="loop/m")
    b = loop_session.chat(model="loop/m")
    a.ask("in a")
    b.ask("in b")
    assert sent_messages(loopback) == [user("in b")]
    assert a.id != b.id


def test_fork_starts_a_branch(loop_session, loopback):
    chat = loop_session.chat("tree", model="loop/m")
    first = chat.ask("root question")
    chat.ask("original follow-up")

    branch = chat.fork(first.id)
    assert branch.id != chat.id and branch.head_id == first.id
    alt = branch.ask("alternative follow-up")
    assert sent_messages(loopback) == [user("root question"), assistant("Echo: root question"),
                                       user("alternative follow-up")]
    # The original branch is untouched; both replies answer the same history.
    assert [m["content"] for m in chat.messages()][-1] == "Echo: original follow-up"
    siblings = chat.branches(alt.id)
    assert {s["prompt"] for s in siblings} == {"original follow-up", "alternative follow-up"}
    # A fork is recorded in the log: it can be reopened by id.
    assert Conversation.by_id(loop_session, branch.id).head_id == alt.id

    empty = chat.fork(None)
    empty.ask("fresh start")
    assert sent_messages(loopback) == [user("fresh start")]


def test_fork_of_unknown_message_is_a_clear_error(loop_session):
    chat = loop_session.chat(model="loop/m")
    with pytest.raises(KeyError, match="no message 999"):
        chat.fork(999)
    with pytest.raises(KeyError, match="no conversation"):
        Conversation.by_id(loop_session, "nope")
