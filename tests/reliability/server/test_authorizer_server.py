"""Suite 13 — safe to share, the server extension's side: it authorizes, not just authenticates.

A real jupyter_server whose authorizer lets the user read everything *except* the resource
`llm_notebook` (a deployment's read-only identity): every route of the extension answers 403
and no byte of the log. Then every route's answer under the default authorizer is checked for
its bounds: no file path of the server, no unbounded preview, capped threads.
"""

from __future__ import annotations

import importlib
import os
import re

import pytest
from jupyter_server.auth.authorizer import Authorizer
from traitlets.config import Config

from llm_notebook.server import ROUTES

from ..server.conftest import call_row

SUITE = "13 safe to share"


class NoHistoryAuthorizer(Authorizer):
    """Lets a user do anything but read llm-notebook's history (what a deployment may want for
    a shared, read-only identity); records what it was asked."""

    asked: list = []

    def is_authorized(self, handler, user, action, resource) -> bool:
        NoHistoryAuthorizer.asked.append((action, resource))
        return resource != "llm_notebook"


def _paths(conversation: str, call_id: int) -> list[str]:
    return [re.sub(r"\(\[\^/\]\+\)", str(call_id), p).lstrip("/").replace(
        f"conversations/{call_id}", f"conversations/{conversation}") for p, _ in ROUTES]


class TestDenied:
    @pytest.fixture
    def jp_server_config(self, log_path):
        return Config({
            "ServerApp": {"jpserver_extensions": {"llm_notebook": True},
                          "authorizer_class": NoHistoryAuthorizer},
            "LLMNotebook": {"log_path": log_path},
        })

    def test_a_denying_authorizer_gets_403_everywhere(self, api, log, record):
        call_id = log.insert_call(call_row(prompt="SECRET-PROMPT", response="SECRET-ANSWER",
                                           conversation_id="conv1"))
        NoHistoryAuthorizer.asked.clear()
        replies = {path: api(path) for path in _paths("conv1", call_id)}
        leaked = [p for p, r in replies.items() if "SECRET" in r.text or "log.db" in r.text]
        for path, reply in replies.items():
            record.check(f"{path}: 403 without the log", reply.code == 403 and path not in leaked)
        record.note(f"a denying authorizer: {sum(r.code == 403 for r in replies.values())}/"
                    f"{len(replies)} routes answer 403, {len(leaked)} carry the log; asked "
                    f"{len(NoHistoryAuthorizer.asked)} times")
        assert {p: r.code for p, r in replies.items()} == {p: 403 for p in replies}
        assert leaked == []
        assert set(NoHistoryAuthorizer.asked) == {("read", "llm_notebook")}
        assert len(NoHistoryAuthorizer.asked) == len(replies)


def test_answers_are_bounded_and_name_no_server_path(api, log, log_path, root_dir, record):
    # (`llm_notebook.server.handlers` the attribute is the routes function; the module's limits:)
    handlers = importlib.import_module("llm_notebook.server.handlers")

    outside = os.path.join(os.path.dirname(root_dir), "elsewhere", "private.ipynb")
    ids = log.insert_calls([call_row(prompt="p" * 300_000, response="r" * 300_000,
                                     conversation_id="long", notebook=outside,
                                     messages=[{"role": "user", "content": "m" * 300_000}] * 150)
                            for _ in range(3)])
    for parent, child in zip(ids, ids[1:]):
        with log.write() as db:
            db.execute("UPDATE calls SET parent_id = ? WHERE id = ?", (parent, child))
    replies = {"status": api("status"), "history": api("history", preview="20000"),
               "facets": api("facets"), "call": api(f"calls/{ids[-1]}"),
               "conversation": api("conversations/long"), "usage": api("usage", by="notebook"),
               "summary": api("usage/summary")}
    folders = [os.path.dirname(log_path), os.path.dirname(outside)]
    with_path = [k for k, r in replies.items() if any(f in r.text for f in folders)]
    for name, reply in replies.items():
        record.check(f"{name}: 200, no server path, under the byte cap", reply.code == 200
                     and name not in with_path
                     and len(reply.text.encode()) < handlers.MAX_REPLY_BYTES)
    largest = max(len(r.text) for r in replies.values())
    record.note(f"every route over {len(log.call(ids[-1])['prompt']):,}-character calls: {len(with_path)} name a server path, "
                f"largest answer {largest:,} chars (cap {handlers.MAX_REPLY_BYTES:,} bytes)")
    assert {k: r.code for k, r in replies.items()} == {k: 200 for k in replies}
    assert with_path == []
    call = replies["call"].json["call"]
    assert len(call["prompt"]) == handlers.FIELD_LIMIT + 1 and call["prompt"].endswith("…")
    assert len(call["messages"]) == handlers.MESSAGES_LIMIT
    assert all(len(m["content"]) <= handlers.MAX_PREVIEW + 1 for m in call["messages"])
    assert call["notebook"] == "private.ipynb"
    thread = replies["conversation"].json["thread"]
    assert all("messages" not in c and len(c["response"]) <= handlers.MAX_PREVIEW + 1 for c in thread)
    assert replies["facets"].json["notebooks"] == []          # not a path, not a usable filter
    assert max(len(r.text.encode()) for r in replies.values()) < handlers.MAX_REPLY_BYTES
