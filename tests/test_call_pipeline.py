"""The one call pipeline (llm_notebook/call): every face and every provider go through the same
attempt and executor, so a request is cut, priced, retried and logged the same way whichever
way it is sent. Real parts: the loopback server over HTTP (lean client and litellm) and the
embedded model.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from llm_notebook import pricing
from llm_notebook.call import structured
from llm_notebook.errors import LLMError
from llm_notebook.providers import local

KEY = "sk-loopback-test-0123456789abcdef"
GAP = 1.5          # LLMNotebook.timeout: the longest wait for the next chunk
SLACK = 0.75       # a loaded 2-core machine
PROMPT = "one two three four five six seven eight"


# ---------------------------------------------------------------- a stall, cut the same way


class _StallingModel:
    """The embedded model whose token stream stops after `after` tokens until released: a
    stall inside llama.cpp's generation, on its worker thread."""

    def __init__(self, model, after: int):
        self.model, self.after = model, after
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self.model, name)

    def create_chat_completion(self, **kwargs):
        tokens = 0
        for chunk in self.model.create_chat_completion(**kwargs):
            if (chunk["choices"][0].get("delta") or {}).get("content"):
                tokens += 1
                if tokens == self.after + 1:
                    self.release.wait(60)
            yield chunk


@pytest.fixture
def stalled(nb_session, loopback, monkeypatch):
    """Each provider, set up to stall after `after` chunks of its answer; yields a function
    giving (model, options) for one of them."""
    nb_session.add_endpoint("loop", loopback.url)
    nb_session.config.timeout = GAP
    stalling = None

    def route(provider: str, after: int = 3):
        nonlocal stalling
        stall = {"kind": "stall", "seconds": 30, "times": 10}
        loopback.script([dict(stall, after_tokens=after) if after else stall])
        if provider == "http":
            return "loop/loopback-model", {}
        if provider == "litellm":
            return "openai/gpt-4o-mini", {"api_base": loopback.url, "api_key": KEY}
        stalling = _StallingModel(local.get_model(), after=after)
        monkeypatch.setattr(local, "_model", stalling)
        return "local/smollm2", {"max_tokens": 40}

    yield route
    if stalling is not None:
        stalling.release.set()       # let the worker thread finish (it stops at the next token)


@pytest.mark.local_model
@pytest.mark.parametrize("provider", ["http", "litellm", "local"])
def test_a_stalled_stream_is_cut_one_gap_after_its_last_chunk(nb_session, loopback, stalled,
                                                              provider):
    model, options = stalled(provider)
    stream = nb_session.stream(PROMPT, model=model, **options)
    chunks, arrived = [], []
    with pytest.raises(LLMError) as failed:
        for chunk in stream:
            chunks.append(chunk)
            arrived.append(time.monotonic())
    cut_after = time.monotonic() - arrived[-1]
    # The same moment for every provider: one gap (LLMNotebook.timeout) after the last chunk.
    assert GAP - 0.1 <= cut_after <= GAP + SLACK, (provider, cut_after)
    assert failed.value.kind == "incomplete" and "stalled" in str(failed.value)
    assert len(chunks) == 3 and failed.value.partial == "".join(chunks)
    # The partial text is kept, logged as incomplete, never cached, and not sent again.
    row = nb_session.log.call(stream.response.id)
    assert row["status"] == "incomplete" and row["error_kind"] == "incomplete"
    assert row["response"] == "".join(chunks) and row["attempts"] == 1
    assert row["ttft_ms"] is not None
    assert nb_session.log.read("SELECT count(*) FROM cache")[0][0] == 0
    if provider != "local":
        assert loopback.stats()["requests"] == 1


@pytest.mark.local_model
@pytest.mark.parametrize("provider", ["http", "litellm", "local"])
def test_a_call_with_no_answer_is_cut_at_the_gap(nb_session, stalled, provider):
    # Nothing at all comes back (a non-streamed call): the same cut, at one gap, by the
    # attempt (not by a provider's own network timeout), and it is a timeout.
    model, options = stalled(provider, after=0)
    nb_session.config.max_retries = 0
    started = time.monotonic()
    with pytest.raises(LLMError) as failed:
        nb_session.ask(PROMPT, model=model, **options)
    assert GAP - 0.1 <= time.monotonic() - started <= GAP + SLACK, provider
    assert failed.value.kind == "timeout" and f"no answer within {GAP:g} s" in str(failed.value)
    row = nb_session.log.call(failed.value.call_id)
    assert row["status"] == "error" and row["error_kind"] == "timeout" and row["response"] is None


@pytest.mark.local_model
def test_an_unstreamed_embedded_call_keeps_its_partial_text_too(nb_session, monkeypatch):
    # Before: the embedded model's timeout was the whole generation, and a cut dropped the
    # text. Now its tokens come as chunks whatever the caller asked for.
    stalling = _StallingModel(local.get_model(), after=2)
    monkeypatch.setattr(local, "_model", stalling)
    nb_session.config.timeout = GAP
    nb_session.config.max_retries = 0
    try:
        with pytest.raises(LLMError) as failed:
            nb_session.ask(PROMPT, model="local/smollm2", max_tokens=40)
    finally:
        stalling.release.set()
    assert failed.value.kind == "incomplete" and failed.value.partial
    row = nb_session.log.call(failed.value.call_id)
    assert row["status"] == "incomplete" and row["response"] == failed.value.partial


# ---------------------------------------------------------------- one price


def test_a_tiered_price_is_the_same_for_a_single_call_and_a_batch_row(nb_session, loopback):
    """gemini-2.5-pro costs more per token above 200k prompt tokens. A batch used to price every
    row at that top rate; both ways now price the call's real token counts."""
    model = "gemini/gemini-2.5-pro"
    nb_session.add_endpoint("gemini", loopback.url)   # this endpoint's models: litellm's prices
    prompt = "price this request the same way every time please"
    single = nb_session.ask(prompt, model=model)
    batch = nb_session.batch([prompt], model=model, cache=False, progress=False)
    row = nb_session.log.read("SELECT cost, input_tokens, output_tokens FROM calls "
                              "WHERE job_id = ?", (batch.job_id,))[0]
    assert (row["input_tokens"], row["output_tokens"]) == (single.input_tokens,
                                                            single.output_tokens)
    expected = pricing.cost_of(model, single.input_tokens, single.output_tokens)
    assert single.cost == pytest.approx(expected, rel=1e-12)
    assert row["cost"] == pytest.approx(expected, rel=1e-12)
    assert batch.info["cost"] == pytest.approx(expected, rel=1e-9)
    top_rate = (pricing.cost_of(model, 1_000_000, 0) / 1e6 * single.input_tokens
                + pricing.cost_of(model, 0, 1_000_000) / 1e6 * single.output_tokens)
    assert row["cost"] < top_rate                     # what the batch used to charge


# ---------------------------------------------------------------- structured output


def test_structured_output_steps_down_until_the_server_accepts_it(nb_session, loopback,
                                                                  monkeypatch):
    monkeypatch.setattr(structured, "_working_form", {})
    nb_session.add_endpoint("loop", loopback.url)
    refusal = "1 validation error: ('body', 'response_format', 'type'): Input should be 'text'"
    loopback.script([{"kind": "500", "message": refusal, "match": "Pick a colour"},
                     {"kind": "400", "message": "response_format json_object is not supported",
                      "match": "Pick a colour"}])
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}}
    frame = pd.DataFrame({"t": ['[[reply:{"colour": "red"}]]', '[[reply:{"colour": "blue"}]]']})
    out = frame.llm.map("Pick a colour {t}", model="loop/m", schema=schema, concurrency=1,
                        max_retries=0, progress=False)
    assert out["colour"].tolist() == ["red", "blue"]
    bodies = [r["body"] for r in loopback.requests()]
    assert [b.get("response_format", {}).get("type") for b in bodies] == [
        "json_schema", "json_object", None, None]
    assert bodies[1]["response_format"]["schema"] == schema
    assert "colour (string)" in bodies[2]["messages"][0]["content"]    # the schema, in words
    # The form that worked is remembered: the second row went straight to it. Refusals did not
    # use up the row's retries (max_retries=0), and its attempts are all logged.
    attempts = [r["attempts"] for r in nb_session.log.read(
        "SELECT attempts FROM calls WHERE job_id = ? ORDER BY id", (out.attrs["llm"]["job_id"],))]
    assert attempts == [3, 1]


def test_a_call_cut_at_its_deadline_after_failures_is_logged_with_their_kind(nb_session,
                                                                             loopback):
    # A 500, then a retry that hangs until the deadline: the call failed because of the 500s,
    # as when the deadline passes during a retry wait (retry.py), not because of a timeout.
    nb_session.add_endpoint("loop", loopback.url)
    nb_session.config.deadline, nb_session.config.timeout = 1.5, 10.0
    loopback.script([{"kind": "500", "match": "flaky"},
                     {"kind": "stall", "seconds": 30, "match": "flaky"}])
    started = time.monotonic()
    with pytest.raises(LLMError) as failed:
        nb_session.ask("flaky", model="loop/m")
    assert time.monotonic() - started <= 1.5 + SLACK
    assert failed.value.kind == "server" and "gave up after 2 attempt(s)" in str(failed.value)
    row = nb_session.log.call(failed.value.call_id)
    assert (row["error_kind"], row["attempts"]) == ("server", 2)
