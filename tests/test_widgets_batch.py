"""The Batch widget without a browser, through its message handler: DataFrames of the notebook
and uploaded files (in chunks, parsed by pandas, capped), the estimate, runs in the three modes
against the loopback server, Stop, downloads in three formats, and its snapshot."""

from __future__ import annotations

import base64
import io
import json
import time

import pandas as pd
import pytest
from recorders import MessageRecorder

from llm_notebook.widgets.batch import Batch

MODEL = "loop/loopback-model"


def request(w, method, params=None, req_id=None):
    req_id = req_id or f"r{time.monotonic_ns()}"
    w._handle_custom_msg({"type": "request", "id": req_id, "method": method,
                          "params": params or {}}, [])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        resp = w.recorder.response(req_id)
        if resp is not None:
            return resp
        time.sleep(0.01)
    raise AssertionError(f"no response to {method}")


def upload(w, name: str, data: bytes, chunk: int | None = None) -> dict:
    begun = request(w, "upload_begin", {"name": name, "size": len(data)})
    assert begun["ok"], begun
    step = chunk or begun["result"]["chunk_bytes"]
    for seq, start in enumerate(range(0, len(data), step)):
        w._handle_custom_msg({"type": "upload.chunk", "upload": begun["result"]["upload"],
                              "seq": seq}, [memoryview(data[start:start + step])])
    return request(w, "upload_end", {"upload": begun["result"]["upload"]})


def wait_state(w, predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(w.state):
            return w.state
        time.sleep(0.02)
    raise AssertionError(f"state never matched: {w.state}")


@pytest.fixture
def widget(loop_session, ipshell):
    made = []

    def make(*args, **kwargs):
        w = MessageRecorder().attach(Batch(*args, session=loop_session, **kwargs))
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def test_sources_are_the_notebooks_dataframes_and_uploads(widget, ipshell, loopback, tmp_path):
    ipshell.user_ns["reviews"] = pd.DataFrame({"text": ["good", "bad"]})
    ipshell.user_ns["_hidden"] = pd.DataFrame({"x": [1]})
    w = widget(model=MODEL)
    names = {s["name"]: s for s in w.sources}
    assert names["reviews"] == {"name": "reviews", "rows": 2, "columns": ["text"], "kind": "notebook"}
    assert "_hidden" not in names

    csv = "text,n\nhello,1\n=cmd,2\n".encode()
    answer = upload(w, "in.csv", csv, chunk=5)       # many small chunks, in order
    assert answer["ok"] and answer["result"] == {"name": "in.csv", "rows": 2,
                                                 "columns": ["text", "n"], "kind": "upload"}
    assert w.source == "in.csv" and list(w.table()["text"]) == ["hello", "=cmd"]

    frame = pd.DataFrame({"text": ["p", "q", "r"]})
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    assert upload(w, "in.parquet", buffer.getvalue())["result"]["rows"] == 3
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False)
    assert upload(w, "in.xlsx", buffer.getvalue())["result"]["rows"] == 3
    lines = b'{"text": "a"}\n{"text": "b"}\n'
    assert upload(w, "in.jsonl", lines)["result"]["columns"] == ["text"]

    bad = upload(w, "broken.parquet", b"not parquet at all")
    assert not bad["ok"] and "could not be read as PARQUET" in bad["error"]
    refused = request(w, "upload_begin", {"name": "notes.txt", "size": 10})
    assert not refused["ok"] and "upload a .csv" in refused["error"]
    small = widget(max_upload_mb=0.001)
    too_big = request(small, "upload_begin", {"name": "big.csv", "size": 5000})
    assert not too_big["ok"] and "more than the 0.001 MB" in too_big["error"]
    # A file that sends more than it announced is refused, not read.
    begun = request(w, "upload_begin", {"name": "liar.csv", "size": 4})["result"]
    w._handle_custom_msg({"type": "upload.chunk", "upload": begun["upload"], "seq": 0},
                         [b"a,b\n1,2\n"])
    lied = request(w, "upload_end", {"upload": begun["upload"]})
    assert not lied["ok"] and "more bytes than it said" in lied["error"]


def test_estimate_run_now_and_download(widget, loopback):
    df = pd.DataFrame({"text": ["=1+1", "two", "three"]}, index=["a", "b", "c"])
    w = widget(df, prompt="Say {text}", model=MODEL)
    assert w.source == "data"
    estimate = request(w, "estimate")
    assert estimate["ok"] and estimate["result"]["to_send"] == 3 and "3 rows" in estimate["result"]["text"]
    started = request(w, "run")
    assert started["ok"]
    job_id = started["result"]["job_id"]
    state = wait_state(w, lambda s: s.get("status") == "done")
    assert state["job_id"] == job_id and state["done"] == 3 and "3/3 rows" in state["line"]
    assert w.job.result().tolist() == ["Echo: Say =1+1", "Echo: Say two", "Echo: Say three"]
    assert w._session.job(job_id).info["background"] == 0

    csv = request(w, "download", {"format": "csv"})["result"]
    assert csv["filename"] == f"data-{job_id}.csv" and csv["mime"] == "text/csv"
    rows = base64.b64decode(csv["data"]).decode().splitlines()
    assert rows == ["text,answer,status,error", "'=1+1,Echo: Say =1+1,ok,",
                    "two,Echo: Say two,ok,", "three,Echo: Say three,ok,"]
    parquet = request(w, "download", {"format": "parquet"})["result"]
    table = pd.read_parquet(io.BytesIO(base64.b64decode(parquet["data"])))
    assert list(table.columns) == ["text", "answer", "status", "error"] and len(table) == 3
    jsonl = request(w, "download", {"format": "jsonl"})["result"]
    first = json.loads(base64.b64decode(jsonl["data"]).decode().splitlines()[0])
    assert first == {"text": "=1+1", "answer": "Echo: Say =1+1", "status": "ok", "error": None}
    assert not request(w, "download", {"format": "xls"})["ok"]
    # Its snapshot says what it ran, for a notebook read without a kernel.
    assert "Say {text}" in w.snapshot and "3/3 rows" in w.snapshot


def test_background_and_batch_api_modes_and_stop(widget, loopback, loop_session):
    loop_session.config.batch_api_poll_min = 0.05
    loop_session.config.batch_api_poll_max = 0.2
    df = pd.DataFrame({"text": [f"row {i}" for i in range(30)]})
    w = widget(df, prompt="Say {text}", model=MODEL, mode="batch_api")
    job_id = request(w, "run")["result"]["job_id"]
    state = wait_state(w, lambda s: s.get("status") == "done")
    assert state["done"] == 30 and loopback.batches()[0]["request_counts"]["total"] == 30
    info = loop_session.job(job_id).info
    assert info["via"] == "batch_api" and info["background"] == 1

    loopback.configure(latency=0.3)
    w = widget(pd.DataFrame({"text": [f"row {i}" for i in range(100)]}), prompt="Tell {text}",
               model=MODEL, mode="background")
    job_id = request(w, "run")["result"]["job_id"]
    wait_state(w, lambda s: s.get("status") == "running" and s.get("done", 0) >= 1)
    again = request(w, "run")
    assert not again["ok"] and "still running" in again["error"]
    assert request(w, "stop")["result"] is True
    state = wait_state(w, lambda s: s.get("status") == "cancelled")
    assert 0 < state["done"] < 100 and loop_session.job(job_id).info["background"] == 1
    assert request(w, "stop")["result"] is False


def test_bad_forms_get_one_line_errors(widget, loopback):
    w = widget(pd.DataFrame({"text": ["a"]}), model=MODEL)
    empty = request(w, "run")
    assert not empty["ok"] and "write a prompt" in empty["error"]
    w.prompt = "Say {missing}"
    missing = request(w, "estimate")
    assert not missing["ok"] and "no column 'missing'" in missing["error"]
    w.source = "nothing"
    assert "no table named 'nothing'" in request(w, "run")["error"]
    assert not request(w, "download", {"format": "csv"})["ok"]
    with pytest.raises(ValueError, match="mode must be one of"):
        Batch(mode="later")
