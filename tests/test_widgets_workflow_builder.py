"""WorkflowBuilder's kernel side: its requests answered through the real message path
(`_on_custom_msg` → handler → response), previews and runs through the batch engine to the
loopback server over real HTTP, per-step progress events, Stop, save and diff."""

from __future__ import annotations

import time
import uuid

import pandas as pd
import pytest
from recorders import MessageRecorder

import llm_notebook
from llm_notebook.workflows import Workflow

MODEL = "loop/loopback-model"
VERDICTS = ['[[reply:{"answer": "yes"}]]', '[[reply:{"answer": "no"}]]']


@pytest.fixture
def data() -> pd.DataFrame:
    return pd.DataFrame({"ticket": [f"ticket {i}" for i in range(6)],
                         "verdict": [VERDICTS[i % 2] for i in range(6)]})


def steps() -> list[dict]:
    return [{"name": "summary", "kind": "llm", "prompt": "Summarize {ticket}", "model": MODEL},
            {"name": "urgent", "kind": "filter", "prompt": "Urgent? {ticket} {verdict}", "model": MODEL}]


def request(widget, method: str, timeout: float = 60, **params) -> dict:
    request_id = uuid.uuid4().hex
    widget._on_custom_msg(widget, {"type": "request", "id": request_id, "method": method,
                                   "params": params}, [])
    deadline = time.monotonic() + timeout
    while (answer := widget.recorder.response(request_id)) is None:
        assert time.monotonic() < deadline, f"no answer to {method} within {timeout} s"
        time.sleep(0.01)
    return answer


def builder(*args, **kwargs):
    return MessageRecorder().attach(llm_notebook.WorkflowBuilder(*args, **kwargs))


def test_load_preview_run_and_save(loop_session, loopback, data):
    b = builder(None, data=data, rows=2)
    loaded = request(b, "load")["result"]
    assert loaded["workflow"] == {"name": None, "version": None, "description": None, "steps": []}
    assert loaded["columns"] == ["ticket", "verdict"] and loaded["rows"] == 6
    assert b.kind == "workflow_builder" and str(b._esm) == str(llm_notebook.TemplateEditor._esm)

    preview = request(b, "preview", steps=steps(), name="tickets")["result"]
    assert loopback.stats()["requests"] == 4                          # 2 rows x 2 steps
    assert preview["columns"] == [["input", "ticket"], ["input", "verdict"],
                                  ["summary", "summary"], ["urgent", "kept"]]
    assert [r["cells"][2] for r in preview["rows"]] == ["Echo: Summarize ticket 0",
                                                        "Echo: Summarize ticket 1"]
    assert [r["dropped_at"] for r in preview["rows"]] == [None, "urgent"]
    assert (preview["rows_in"], preview["rows_out"]) == (2, 1)

    run = request(b, "run", steps=steps(), name="tickets", run_id="r1")["result"]
    assert (run["rows_in"], run["rows_out"]) == (6, 3)
    assert loopback.stats()["requests"] == 4 + 8      # the 2 previewed rows came from the cache
    assert b.result["ticket"].tolist() == ["ticket 0", "ticket 2", "ticket 4"]
    events = [m for m in b.recorder.of_type("workflow.event") if m["run"] == "r1"]
    assert [(e["event"], e["index"]) for e in events if e["event"] != "progress"] == [
        ("start", 0), ("done", 0), ("start", 1), ("done", 1)]
    done = [e["report"] for e in events if "report" in e]
    assert [(r["step"], r["status"], r["rows_out"]) for r in done] == [
        ("summary", "ran", 6), ("urgent", "ran", 3)]
    assert any(e["event"] == "progress" and e["done"] == e["total"] == 6 for e in events)

    saved = request(b, "save", steps=steps(), name="tickets", message="first")["result"]
    assert saved["workflow"]["version"] == 1 and (b.name, b.version) == ("tickets", 1)
    changed = steps()
    changed[0]["prompt"] = "Summarize briefly {ticket}"
    request(b, "save", steps=changed, name="tickets", message="shorter")
    diff = request(b, "diff")["result"]["text"]
    assert "-  prompt: Summarize {ticket}" in diff and "+  prompt: Summarize briefly {ticket}" in diff
    assert loop_session.workflows.get("tickets").message == "shorter"
    html = b._build_snapshot().html
    assert "Workflow · tickets v2" in html and "Summarize briefly {ticket}" in html


def test_a_bad_step_is_one_line_naming_it_and_nothing_is_sent(loop_session, loopback, data):
    b = builder(None, data=data)
    bad = steps()
    bad[1]["prompt"] = "Urgent? {nope}"
    answer = request(b, "preview", steps=bad)
    assert not answer["ok"]
    assert answer["error"].startswith("step 'urgent' uses {nope}, but the data has no column 'nope'")
    bad[0]["options"] = {"api_base": "http://attacker.example"}
    answer = request(b, "check", steps=bad)
    assert not answer["ok"] and answer["error"].startswith("step 'summary': option 'api_base'")
    assert loopback.stats()["requests"] == 0
    assert not request(builder(None), "run", steps=steps())["ok"]      # no data: says how


def test_stop_ends_a_run_within_2_s_and_keeps_finished_rows(loop_session, loopback):
    data = pd.DataFrame({"ticket": [f"t{i}" for i in range(200)]})
    loopback.configure(latency=0.3)
    b = builder(Workflow("slow").llm("Summarize {ticket}", model=MODEL), data=data,
                concurrency=4)
    request_id = uuid.uuid4().hex
    b._on_custom_msg(b, {"type": "request", "id": request_id, "method": "run",
                         "params": {"steps": [s.to_dict() for s in b.workflow.steps],
                                    "name": "slow", "run_id": "r"}}, [])
    deadline = time.monotonic() + 30
    while loopback.stats()["requests"] < 8:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stopped_at = time.monotonic()
    assert request(b, "stop")["result"] is True
    while (answer := b.recorder.response(request_id)) is None:
        assert time.monotonic() - stopped_at < 5
        time.sleep(0.01)
    assert time.monotonic() - stopped_at <= 2.0
    assert not answer["ok"] and answer["error"].startswith("stopped: ")
    answered = loop_session.log.read("SELECT count(*) FROM calls WHERE status = 'ok'")[0][0]
    assert answered >= 4
    assert request(b, "stop")["result"] is False                     # nothing runs any more
