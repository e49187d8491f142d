"""Suite 7 — tokens and cost.

Logged tokens equal what the provider reported (the loopback records the usage it sent with
each answer), streamed and not, on the lean HTTP path, through litellm, and in batches; a
priced model's cost matches litellm's own arithmetic; an unpriced model (or a broken price
entry) gives cost NULL with the unpriced flag, never an exception.
"""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest

from .helpers import last_user

SUITE = "7 tokens and cost"
MODEL = "loop/loopback-model"


def reported(loopback) -> dict[str, dict]:
    """The usage the provider sent, by prompt (each prompt is sent once in these tests)."""
    out = {}
    for r in loopback.requests():
        if r.get("status") == 200:
            out[last_user(r["body"])] = r["usage"]
    return out


def logged(session, prompt: str) -> dict:
    rows = session.log.read("SELECT * FROM calls WHERE prompt = ? ORDER BY id DESC", (prompt,))
    return dict(rows[0])


def call(session, path: str, prompt: str, loopback, **kw):
    """One call by `path`: lean/litellm × ask/stream."""
    if path.startswith("litellm"):
        kw.update(model="openai/gpt-4o-mini", api_base=loopback.url, api_key="sk-loopback-test-key")
    else:
        kw.setdefault("model", MODEL)
    if path.endswith("stream"):
        st = session.stream(prompt, **kw)
        "".join(st)
        return st.response
    return session.ask(prompt, **kw)


PATHS = ["lean ask", "lean stream", "litellm ask", "litellm stream"]


def test_logged_tokens_equal_what_the_provider_reported(loop_session, loopback, record):
    checked = 0
    prompts = {}
    for path in PATHS:
        for extra, suffix in (({}, ""), ({"max_tokens": 3}, " cut to 3 tokens"),
                              ({"system": "You answer in one line."}, " with a system prompt")):
            prompt = f"Count the tokens of this {path} call{suffix}, please."
            response = call(loop_session, path, prompt, loopback, **extra)
            prompts[prompt] = (path, response)
    usage = reported(loopback)
    for prompt, (path, response) in prompts.items():
        row = logged(loop_session, prompt)
        sent = usage[prompt]
        assert (row["input_tokens"], row["output_tokens"]) == \
            (sent["prompt_tokens"], sent["completion_tokens"]), (path, prompt)
        assert (response.input_tokens, response.output_tokens) == \
            (sent["prompt_tokens"], sent["completion_tokens"]), (path, prompt)
        if "cut to 3" in prompt:
            assert row["output_tokens"] == 3
        checked += 1
    record(tried=len(prompts), kept=checked,
           note=f"{len(prompts)} calls (lean/litellm × ask/stream × plain/max_tokens/system): "
                "logged tokens = reported")


@pytest.mark.parametrize("via", ["http", "litellm"])
def test_batch_rows_and_job_totals_equal_what_was_reported(loop_session, loopback, record, via):
    loop_session.add_endpoint("ep", loopback.url, api_key="sk-loopback-test-key", via=via)
    texts = [f"batch {via} row {i} " + "word " * (i % 7) for i in range(40)]
    out = pd.DataFrame({"t": texts}).llm.map("Summarize: {t}", model="ep/loopback-model",
                                             max_tokens=6, concurrency=8, progress=False)
    info = out.attrs["llm"]
    usage = reported(loopback)
    rows = [dict(r) for r in loop_session.log.read(
        "SELECT prompt, input_tokens, output_tokens, cost, unpriced FROM calls WHERE job_id = ?",
        (info["job_id"],))]
    assert len(rows) == 40
    for r in rows:
        sent = usage[r["prompt"]]
        assert (r["input_tokens"], r["output_tokens"]) == \
            (sent["prompt_tokens"], sent["completion_tokens"])
        assert r["cost"] is None and r["unpriced"] == 1        # no price for an endpoint model
    assert info["input_tokens"] == sum(u["prompt_tokens"] for u in usage.values())
    assert info["output_tokens"] == sum(u["completion_tokens"] for u in usage.values())
    assert info["unpriced"] == 40 and info["cost"] == 0
    job = loop_session.job(info["job_id"]).info
    assert (job["input_tokens"], job["output_tokens"]) == (info["input_tokens"], info["output_tokens"])
    record(tried=40, kept=40, note=f"batch via {via}: per-row and job tokens = reported" if
           via == "http" else "")


def test_a_priced_model_costs_what_litellm_says(loop_session, loopback, record):
    from llm_notebook.providers.litellm_route import get_litellm

    litellm = get_litellm()
    tried = kept = 0
    for stream in (False, True):
        prompt = f"What does this cost, stream={stream}?"
        response = call(loop_session, "litellm stream" if stream else "litellm ask", prompt,
                        loopback)
        row = logged(loop_session, prompt)
        pin, pout = litellm.cost_per_token(model="gpt-4o-mini", prompt_tokens=row["input_tokens"],
                                           completion_tokens=row["output_tokens"])
        assert row["cost"] == pytest.approx(pin + pout, rel=1e-9) and row["cost"] > 0
        assert row["unpriced"] == 0 and response.cost == pytest.approx(row["cost"])
        tried += 1
        kept += 1
    # A price set in the config for an endpoint's models.
    loop_session.config.prices = {"loop/*": {"input": 1.0, "output": 2.0}}
    r = loop_session.ask("priced by the config", model=MODEL)
    assert r.cost == pytest.approx(r.input_tokens * 1e-6 + r.output_tokens * 2e-6)
    assert logged(loop_session, "priced by the config")["unpriced"] == 0
    record(tried=tried + 1, kept=kept + 1, note="priced: cost = litellm.cost_per_token")


BROKEN_PRICES = [None, "cheap", {"input": "abc"}, {"input": -1.0}, {"input": math.nan},
                 {"input": math.inf, "output": 1}, {"output": [1, 2]}, 42]


def test_unpriced_and_broken_prices_give_null_cost_never_an_exception(loop_session, loopback,
                                                                      record):
    tried = kept = 0
    # No price at all: lean, streamed, batch.
    r = loop_session.ask("nobody priced me", model=MODEL)
    st = loop_session.stream("nobody priced my stream", model=MODEL)
    "".join(st)
    batch = loop_session.batch(["unpriced batch a", "unpriced batch b"], model=MODEL,
                               progress=False)
    for response in (r, st.response):
        assert response.cost is None and response.unpriced is True
        assert "price unknown" in response.footer()
        tried += 1
        kept += 1
    assert batch.info["unpriced"] == 2 and batch.info["ok"] == 2
    tried += 2
    kept += 2
    usage = loop_session.usage(by="model")
    assert int(usage.loc[usage["model"] == MODEL, "unpriced"].iloc[0]) == 4

    # A broken entry in LLMNotebook.prices: the answer is kept, logged unpriced, and the user
    # told with a warning (once per model), never an exception.
    for i, entry in enumerate(BROKEN_PRICES):
        model = f"loop/broken-{i}"
        try:
            loop_session.config.prices = {model: entry}
        except Exception as exc:       # refused up front is fine too, if it says why
            assert "prices" in str(exc).lower() or "dict" in str(exc).lower(), exc
            tried += 1
            kept += 1
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            response = loop_session.ask(f"broken price {i}", model=model)
            result = loop_session.batch([f"broken price batch {i}"], model=model, progress=False)
        row = logged(loop_session, f"broken price {i}")
        assert response.status == "ok" and response.cost is None and row["unpriced"] == 1, entry
        assert row["cost"] is None
        assert result.info["ok"] == 1 and result.info["unpriced"] == 1, entry
        tried += 1
        kept += 1
    record(tried=tried, kept=kept,
           note=f"unpriced: NULL cost + flag on ask/stream/batch; {len(BROKEN_PRICES)} broken "
                "price entries: no exception")
