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

from .helpers import job_rows, last_user, log_rows

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
    """The latest log row of `prompt` ({} if there is none)."""
    rows = log_rows(session.log, "prompt = ?", (prompt,))
    return rows[-1] if rows else {}


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
    prompts = {}
    for path in PATHS:
        for extra, suffix in (({}, ""), ({"max_tokens": 3}, " cut to 3 tokens"),
                              ({"system": "You answer in one line."}, " with a system prompt")):
            prompt = f"Count the tokens of this {path} call{suffix}, please."
            response = call(loop_session, path, prompt, loopback, **extra)
            prompts[prompt] = (path, response)
    usage = reported(loopback)
    wrong = {}
    for prompt, (path, response) in prompts.items():
        row = logged(loop_session, prompt)
        sent = usage.get(prompt, {})
        expected = (sent.get("prompt_tokens"), sent.get("completion_tokens"))
        seen = {"logged": (row.get("input_tokens"), row.get("output_tokens")),
                "returned": (response.input_tokens, response.output_tokens)}
        ok = seen["logged"] == seen["returned"] == expected and None not in expected
        if "cut to 3" in prompt:
            ok = ok and row["output_tokens"] == 3
        if not record.check(f"{path}: {prompt}", ok):
            wrong[prompt] = dict(seen, reported=expected)
    record.note(f"{len(prompts)} calls (lean/litellm × ask/stream × plain/max_tokens/system): "
                f"{len(prompts) - len(wrong)} logged and returned the tokens the provider reported")
    assert wrong == {}, wrong


@pytest.mark.parametrize("via", ["http", "litellm"])
def test_batch_rows_and_job_totals_equal_what_was_reported(loop_session, loopback, record, via):
    loop_session.add_endpoint("ep", loopback.url, api_key="sk-loopback-test-key", via=via)
    texts = [f"batch {via} row {i} " + "word " * (i % 7) for i in range(40)]
    out = pd.DataFrame({"t": texts}).llm.map("Summarize: {t}", model="ep/loopback-model",
                                             max_tokens=6, concurrency=8, progress=False)
    info = out.attrs["llm"]
    usage = reported(loopback)
    rows = {r["prompt"]: r for r in log_rows(loop_session.log, "job_id = ?", (info["job_id"],))}
    for text in texts:
        r, sent = rows.get(f"Summarize: {text}", {}), usage.get(f"Summarize: {text}", {})
        record.check(f"batch via {via}: {text.strip()}: tokens = reported, cost NULL + unpriced",
                     bool(r) and bool(sent)
                     and (r["input_tokens"], r["output_tokens"])
                     == (sent["prompt_tokens"], sent["completion_tokens"])
                     and r["cost"] is None and r["unpriced"] == 1)
    reported_totals = (sum(u["prompt_tokens"] for u in usage.values()),
                       sum(u["completion_tokens"] for u in usage.values()))
    job = loop_session.job(info["job_id"]).info
    record.check(f"batch via {via}: job totals = the sum reported",
                 (info["input_tokens"], info["output_tokens"]) == reported_totals
                 == (job["input_tokens"], job["output_tokens"]))
    record.note(f"batch via {via}: {len(rows)} rows logged, job totals "
                f"{info['input_tokens']}+{info['output_tokens']} tokens, reported "
                f"{reported_totals[0]}+{reported_totals[1]}")

    assert len(rows) == 40
    for r in rows.values():
        sent = usage[r["prompt"]]
        assert (r["input_tokens"], r["output_tokens"]) == \
            (sent["prompt_tokens"], sent["completion_tokens"])
        assert r["cost"] is None and r["unpriced"] == 1        # no price for an endpoint model
    assert (info["input_tokens"], info["output_tokens"]) == reported_totals
    assert info["unpriced"] == 40 and info["cost"] == 0
    assert (job["input_tokens"], job["output_tokens"]) == (info["input_tokens"], info["output_tokens"])


def test_a_priced_model_costs_what_litellm_says(loop_session, loopback, record):
    from llm_notebook.providers.litellm_route import get_litellm

    litellm = get_litellm()
    for stream in (False, True):
        with record.trial(f"litellm {'stream' if stream else 'ask'}: cost = litellm.cost_per_token"):
            prompt = f"What does this cost, stream={stream}?"
            response = call(loop_session, "litellm stream" if stream else "litellm ask", prompt,
                            loopback)
            row = logged(loop_session, prompt)
            pin, pout = litellm.cost_per_token(model="gpt-4o-mini",
                                               prompt_tokens=row["input_tokens"],
                                               completion_tokens=row["output_tokens"])
            assert row["cost"] == pytest.approx(pin + pout, rel=1e-9) and row["cost"] > 0
            assert row["unpriced"] == 0 and response.cost == pytest.approx(row["cost"])
    # A price set in the config for an endpoint's models.
    with record.trial("a price from the config"):
        loop_session.config.prices = {"loop/*": {"input": 1.0, "output": 2.0}}
        r = loop_session.ask("priced by the config", model=MODEL)
        assert r.cost == pytest.approx(r.input_tokens * 1e-6 + r.output_tokens * 2e-6)
        assert logged(loop_session, "priced by the config")["unpriced"] == 0
    record.note(f"priced: cost = litellm.cost_per_token (e.g. ${row['cost']:.8f} for "
                f"{row['input_tokens']}+{row['output_tokens']} tokens), config prices applied")


BROKEN_PRICES = [None, "cheap", {"input": "abc"}, {"input": -1.0}, {"input": math.nan},
                 {"input": math.inf, "output": 1}, {"output": [1, 2]}, 42]


def test_unpriced_and_broken_prices_give_null_cost_never_an_exception(loop_session, loopback,
                                                                      record):
    # No price at all: lean, streamed, batch.
    r = loop_session.ask("nobody priced me", model=MODEL)
    st = loop_session.stream("nobody priced my stream", model=MODEL)
    "".join(st)
    batch = loop_session.batch(["unpriced batch a", "unpriced batch b"], model=MODEL,
                               progress=False)
    for what, response in (("ask", r), ("stream", st.response)):
        record.check(f"unpriced {what}: cost None, unpriced, 'price unknown' in its footer",
                     response.cost is None and response.unpriced is True
                     and "price unknown" in response.footer())
    for i, row in sorted(job_rows(loop_session.log, batch.job_id).items()):
        call_row = log_rows(loop_session.log, "id = ?", (row["call_id"],))
        record.check(f"unpriced batch row {i}: ok, cost NULL, unpriced",
                     row["status"] == "ok" and call_row and call_row[0]["cost"] is None
                     and call_row[0]["unpriced"] == 1)
    usage = loop_session.usage(by="model")
    unpriced_in_usage = int(usage.loc[usage["model"] == MODEL, "unpriced"].iloc[0])
    record.check("usage() counts the unpriced calls", unpriced_in_usage == 4)

    # A broken entry in LLMNotebook.prices: the answer is kept, logged unpriced, and the user
    # told with a warning (once per model), never an exception.
    refused_up_front = 0
    for i, entry in enumerate(BROKEN_PRICES):
        model = f"loop/broken-{i}"
        with record.trial(f"a broken price {entry!r}: no exception, cost NULL"):
            try:
                loop_session.config.prices = {model: entry}
            except Exception as exc:       # refused up front is fine too, if it says why
                assert "prices" in str(exc).lower() or "dict" in str(exc).lower(), exc
                refused_up_front += 1
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                response = loop_session.ask(f"broken price {i}", model=model)
                result = loop_session.batch([f"broken price batch {i}"], model=model,
                                            progress=False)
            row = logged(loop_session, f"broken price {i}")
            assert response.status == "ok" and response.cost is None and row["unpriced"] == 1, entry
            assert row["cost"] is None
            assert result.info["ok"] == 1 and result.info["unpriced"] == 1, entry
    record.note(f"unpriced: NULL cost + flag on ask/stream/batch ({unpriced_in_usage} in usage()); "
                f"{len(BROKEN_PRICES)} broken price entries: {refused_up_front} refused up front, "
                "the others priced NULL, no exception")

    assert r.cost is None and r.unpriced is True and "price unknown" in r.footer()
    assert st.response.cost is None and st.response.unpriced is True
    assert batch.info["unpriced"] == 2 and batch.info["ok"] == 2
    assert unpriced_in_usage == 4
