"""Suite 10 — secrets, the server extension's side: after calls whose provider echoed the key
(and calls that sent a key in a header), no response of any route carries a sentinel."""

from __future__ import annotations

import pandas as pd
import pytest

from llm_notebook.errors import LLMError

from ..helpers import Sentinels

SUITE = "10 secrets"


def test_no_route_answers_with_a_key(loop_session, loopback, api, monkeypatch, record):
    s = loop_session
    secrets = Sentinels()
    s.config.max_retries = 0
    loopback.configure(require_key="the-one-right-key")
    monkeypatch.setenv("LOOPCRED", secrets.plain())
    s.add_endpoint("cred", loopback.url, api_key_env="LOOPCRED")
    s.add_endpoint("ok", loopback.url, api_key="the-one-right-key")

    with pytest.raises(LLMError):
        s.ask("single", model="cred/loopback-model")
    with pytest.raises(LLMError):
        s.chat(name="talk", model="cred/loopback-model").ask("in a conversation")
    pd.DataFrame({"t": ["a", "b"]}).llm.map("Say {t}", model="cred/loopback-model", progress=False)
    header_key = secrets.plain()
    ok = s.ask("header key", model="ok/loopback-model",
               extra_headers={"X-Api-Key": header_key, "X-Trace": "1"})
    assert ok.status == "ok"
    assert len(secrets.found_in(str(loopback.requests()))) == 2   # the provider got both

    ids = [r["id"] for r in s.log.history_rows(limit=100)]
    conversations = [c["id"] for c in s.log.conversations()]
    replies = {
        "status": api("status"),
        "history": api("history", preview="20000"),
        "history search": api("history", search="Incorrect"),
        "facets": api("facets"),
        "conversations": api("conversations"),
        "usage": api("usage"),
        "usage by notebook": api("usage", by="notebook"),
        "usage summary": api("usage/summary"),
        "templates": api("templates"),
    }
    replies.update({f"call {i}": api(f"calls/{i}") for i in ids})
    replies.update({f"conversation {c}": api(f"conversations/{c}") for c in conversations})

    leaks = {}
    for name, reply in replies.items():
        if not record.check(f"{name}: 200 without a key", reply.code == 200
                            and not secrets.found_in(reply.text)):
            leaks[name] = (reply.code, secrets.found_in(reply.text))
    history = replies["history"].json["rows"] if replies["history"].code == 200 else []
    echoed = sum("Incorrect API key" in (row["error"] or "") for row in history)
    record.note(f"{len(replies)} server-extension responses over {echoed} echoed-key errors: "
                f"{len(replies) - len(leaks)} answered without a key")

    assert leaks == {}, leaks
    assert echoed > 0
