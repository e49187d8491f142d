"""The lean HTTP path against a server that is not ours: llama-cpp-python's OpenAI-compatible
server (fixture `llama_server`) serving the embedded SmolLM2 file. Its words vary, so these
tests check structure: tokens, streaming, the log, structured output, listed models.
"""

from __future__ import annotations

import pandas as pd
import pytest

from llm_notebook.call import structured

pytestmark = pytest.mark.local_model
MODEL = "ls/smollm2"


@pytest.fixture
def third_party(nb_session, llama_server):
    nb_session.add_endpoint("ls", llama_server.url)
    return nb_session


def test_ask_and_stream(third_party):
    r = third_party.ask("Name a colour.", model=MODEL, max_tokens=8)
    assert r.status == "ok" and r.text.strip() and r.model == MODEL
    assert r.input_tokens > 0 and 0 < r.output_tokens <= 8       # the server's own usage
    row = third_party.log.call(r.id)
    assert row["endpoint"] == "ls" and row["response"] == r.text

    st = third_party.stream("Say hello to a friend.", model=MODEL, max_tokens=12)
    chunks = list(st)
    assert len(chunks) >= 2 and "".join(chunks) == st.response.text
    assert st.response.ttft_ms is not None and st.response.ttft_ms <= st.response.duration_ms
    assert st.response.input_tokens > 0 and 0 < st.response.output_tokens <= 12


def test_a_schema_map_negotiates_structured_output(third_party, monkeypatch):
    """The server refuses response_format json_schema (HTTP 500 "Input should be 'text' or
    'json_object'"): every row used to fail. Now the run steps down to json_object with the
    schema (llama.cpp's grammar then fixes the reply's shape) and remembers it."""
    monkeypatch.setattr(structured, "_working_form", {})
    schema = {"type": "object", "properties": {"colour": {"type": "string",
                                                          "enum": ["blue", "green", "white"]}},
              "required": ["colour"]}
    things = pd.DataFrame({"thing": ["the sky", "grass", "snow"]})
    out = things.llm.map("What colour is {thing}?", model=MODEL, schema=schema, max_tokens=24,
                         concurrency=1, progress=False)
    info = out.attrs["llm"]
    assert info["ok"] == 3 and info["error"] == 0
    assert set(out["colour"]) <= {"blue", "green", "white"} and out["colour"].notna().all()
    attempts = [r["attempts"] for r in third_party.log.read(
        "SELECT attempts FROM calls WHERE job_id = ? ORDER BY id", (info["job_id"],))]
    assert attempts == [2, 1, 1]          # one refusal, then the remembered form at once


def test_models_lists_what_the_server_serves(third_party):
    frame = third_party.models().set_index("model")
    assert frame.loc[MODEL, "group"] == "endpoint" and frame.loc[MODEL, "available"]
    assert "ls/*" not in frame.index
