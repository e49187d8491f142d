"""Suite 6 — cache correctness.

Identical calls hit; any change of model, messages, temperature, tools, response format or
endpoint misses; errors, truncated streams and interrupted calls are never cached. The books
are kept against the provider: every call predicts hit or miss, and the loopback's request
count must equal the misses exactly.
"""

from __future__ import annotations

import asyncio
import time

import pandas as pd
import pytest

from llm_notebook.errors import LLMError

from .helpers import sent, wait_until

SUITE = "6 cache correctness"
MODEL = "loop/loopback-model"
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "look up",
                                           "parameters": {"type": "object", "properties": {
                                               "q": {"type": "string"}}}}}]
TOOLS_REORDERED = [{"function": {"parameters": {"properties": {"q": {"type": "string"}},
                                                "type": "object"},
                                 "description": "look up", "name": "lookup"}, "type": "function"}]
SCHEMA = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}


class Books:
    """Each call says whether it should hit; the provider's count must match the misses."""

    def __init__(self, session, loopback):
        self.session, self.loopback = session, loopback
        self.calls = self.misses = self.kept = 0
        self.wrong: list = []

    def ask(self, label: str, expect_hit: bool, prompt: str = "What is 2+2?", *, stream=False,
            **kw):
        kw.setdefault("model", MODEL)
        before = self.loopback.stats()["requests"]
        if stream:
            st = self.session.stream(prompt, cache=True, **kw)
            text = "".join(st)
            response = st.response
        else:
            response = self.session.ask(prompt, cache=True, **kw)
            text = response.text
        went_out = self.loopback.stats()["requests"] - before
        self.calls += 1
        self.misses += 0 if expect_hit else 1
        if response.cached != expect_hit or went_out != (0 if expect_hit else 1) or not text:
            self.wrong.append((label, "hit" if expect_hit else "miss", response.cached, went_out))
        else:
            self.kept += 1
        return response


def test_identical_calls_hit_and_every_change_misses(loop_session, loopback, record):
    books = Books(loop_session, loopback)
    base = dict(model=MODEL, temperature=0.2)
    books.ask("first call", False, **base)
    books.ask("identical", True, **base)
    books.ask("identical, streamed", True, stream=True, **base)
    books.ask("a per-attempt timeout is not part of the request", True, timeout=30, **base)

    loop_session.add_endpoint("loop2", loopback.url)
    variants = [
        ("model", dict(base, model="loop/loopback-small")),
        ("endpoint name", dict(base, model="loop2/loopback-model")),
        ("temperature", dict(base, temperature=0.3)),
        ("no temperature", dict(model=MODEL)),
        ("system message", dict(base, system="Be brief.")),
        ("other system message", dict(base, system="Be thorough.")),
        ("tools", dict(base, tools=TOOLS)),
        ("tool choice", dict(base, tools=TOOLS, tool_choice="none")),
        ("response format json_object", dict(base, response_format={"type": "json_object"})),
        ("response format json_schema", dict(base, response_format=SCHEMA)),
        ("max_tokens", dict(base, max_tokens=3)),
        ("seed", dict(base, seed=7)),
        ("stop", dict(base, stop=["\n"])),
    ]
    for label, kw in variants:
        books.ask(label, False, **kw)
        books.ask(label + " again", True, **kw)
    books.ask("tools, keys in another order", True, **dict(base, tools=TOOLS_REORDERED))
    books.ask("prompt", False, "What is 2+3?", **base)
    books.ask("prompt, one more space", False, "What is  2+2?", **base)
    books.ask("prompt, trailing newline", False, "What is 2+2?\n", **base)

    # The endpoint's address: the same name moved to another URL of the same server.
    loop_session.add_endpoint("loop", loopback.url.replace("127.0.0.1", "localhost"))
    books.ask("endpoint URL", False, **base)
    books.ask("endpoint URL again", True, **base)
    loop_session.add_endpoint("loop", loopback.url)
    books.ask("back to the first URL", True, **base)

    # Messages: a conversation's second turn carries the first, so it is another request.
    chat = loop_session.chat()
    chat.ask("What is 2+2?", model=MODEL, temperature=0.2, cache=True)
    books.calls += 1
    books.kept += 1
    assert loop_session.log.call(chat.head_id)["cached"] == 1     # same messages as `base`
    before = loopback.stats()["requests"]
    second = chat.ask("What is 2+2?", model=MODEL, temperature=0.2, cache=True)
    assert second.cached is False and loopback.stats()["requests"] == before + 1
    books.misses += 1
    books.calls += 1
    books.kept += 1

    assert books.wrong == [], books.wrong
    assert loopback.stats()["requests"] == books.misses
    record(tried=books.calls, kept=books.kept,
           note=f"{books.calls} calls, {books.misses} predicted misses = "
                f"{loopback.stats()['requests']} provider hits; {len(variants)} kinds of change")


def test_batch_and_single_calls_share_entries(loop_session, loopback, record):
    prompts = [f"shared {i}" for i in range(20)]
    first = loop_session.batch(prompts, model=MODEL, progress=False)
    assert first.info["cached"] == 0 and loopback.stats()["requests"] == 20
    again = loop_session.batch(prompts, model=MODEL, progress=False)
    assert again.info["cached"] == 20 and loopback.stats()["requests"] == 20
    single = loop_session.ask("shared 3", model=MODEL, cache=True)
    assert single.cached and single.text == "Echo: shared 3"
    fresh = loop_session.ask("single first", model=MODEL, cache=True)
    out = pd.DataFrame({"p": ["single first", "batch new"]}).llm.map("{p}", model=MODEL,
                                                                     progress=False)
    assert list(out) == [fresh.text, "Echo: batch new"] and out.attrs["llm"]["cached"] == 1
    assert loopback.stats()["requests"] == 22
    record(tried=43, kept=43, note="batch ↔ single calls share one cache")


def no_cache_for(session, prompt: str) -> bool:
    return session.log.read(
        "SELECT count(*) FROM cache JOIN calls ON calls.id = cache.call_id WHERE calls.prompt = ?",
        (prompt,))[0][0] == 0


def test_errors_truncated_streams_and_interrupts_are_never_cached(loop_session, loopback, record):
    loop_session.config.max_retries = 0
    failures = [
        ("500", {"kind": "500"}, False),
        ("401", {"kind": "401"}, False),
        ("400", {"kind": "400"}, False),
        ("malformed JSON", {"kind": "malformed_json"}, False),
        ("malformed stream", {"kind": "malformed_json"}, True),
        ("dropped stream", {"kind": "drop_mid_stream", "after_tokens": 2}, True),
    ]
    kept = 0
    for label, fault, stream in failures:
        prompt = f"never cache the {label} answer"
        loopback.script([dict(fault, match=prompt, times=1)])
        with pytest.raises(LLMError):
            if stream:
                list(loop_session.stream(prompt, model=MODEL, cache=True))
            else:
                loop_session.ask(prompt, model=MODEL, cache=True)
        assert no_cache_for(loop_session, prompt), label
        retry = loop_session.ask(prompt, model=MODEL, cache=True)     # goes out again
        assert not retry.cached and retry.text == f"Echo: {prompt}", label
        assert loop_session.ask(prompt, model=MODEL, cache=True).cached, label
        assert sent(loopback)[prompt] == 2, label
        kept += 1

    # A stream cut at its deadline (incomplete, partial text) is not an answer either.
    loop_session.config.deadline = 1.0
    loopback.configure(tokens_per_second=20)
    slow = "cut at the deadline " + "word " * 60
    with pytest.raises(LLMError) as cut:
        list(loop_session.stream(slow, model=MODEL, cache=True))
    assert cut.value.kind == "incomplete" and no_cache_for(loop_session, slow)
    kept += 1

    # Interrupted: the reader stops after two chunks (as Ctrl-C or a closed widget does).
    loop_session.config.deadline = 60
    interrupted = "interrupt me " + "word " * 60
    st = loop_session.stream(interrupted, model=MODEL, cache=True)
    chunks = iter(st)
    next(chunks), next(chunks)
    chunks.close()
    assert st.response is not None and st.response.status == "interrupted"
    assert no_cache_for(loop_session, interrupted)
    loopback.configure(tokens_per_second=0)
    again = loop_session.ask(interrupted, model=MODEL, cache=True)
    assert not again.cached and sent(loopback)[interrupted.strip()] + sent(loopback)[interrupted] == 2
    kept += 2

    # A batch: the failed row and the rows cancelled in flight leave no cache entry.
    loopback.script([{"kind": "400", "match": "batch row 3", "times": 1}])
    loopback.configure(latency=0.3)
    from llm_notebook import runner

    prompts = [f"batch row {i}" for i in range(40)]

    async def cancel_midway():
        task = asyncio.ensure_future(loop_session.abatch(prompts, model=MODEL, concurrency=10))
        await asyncio.sleep(0)
        while loopback.stats()["requests"] < 25:     # (control call: fine at this scale)
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    started = loopback.stats()["requests"]
    runner.run(cancel_midway())
    wait_until(lambda: loopback.stats()["in_flight"] == 0, 10, what="cancelled calls to end")
    rows = [dict(r) for r in loop_session.log.read(
        "SELECT prompt, status FROM calls WHERE prompt LIKE 'batch row %'")]
    statuses = {r["prompt"]: r["status"] for r in rows}
    cached = {r[0] for r in loop_session.log.read(
        "SELECT calls.prompt FROM cache JOIN calls ON calls.id = cache.call_id "
        "WHERE calls.prompt LIKE 'batch row %'")}
    assert statuses["batch row 3"] == "error" and "interrupted" in statuses.values()
    assert cached == {p for p, s in statuses.items() if s == "ok"}
    kept += 1
    assert loopback.stats()["requests"] > started

    record(tried=len(failures) + 4, kept=kept,
           note="500/401/400/malformed/dropped/cut/interrupted/batch error+cancel: none cached")


def test_litellm_path_keys_on_the_api_base(loop_session, loopback, record):
    books = Books(loop_session, loopback)
    via = dict(model="openai/gpt-4o-mini", api_key="sk-loopback-test-key")
    books.ask("litellm first", False, api_base=loopback.url, **via)
    books.ask("litellm identical", True, api_base=loopback.url, **via)
    books.ask("litellm other key, same request", True, api_base=loopback.url,
              **dict(via, api_key="sk-loopback-other-key"))
    books.ask("litellm other api_base", False,
              api_base=loopback.url.replace("127.0.0.1", "localhost"), **via)
    books.ask("litellm streamed", True, stream=True, api_base=loopback.url, **via)
    loopback.script([{"kind": "drop_mid_stream", "match": "litellm drop", "times": 1}])
    loop_session.config.max_retries = 0
    with pytest.raises(LLMError):
        list(loop_session.stream("litellm drop", cache=True, api_base=loopback.url, **via))
    assert no_cache_for(loop_session, "litellm drop")
    assert books.wrong == [] and loopback.stats()["requests"] == books.misses + 1
    record(tried=books.calls + 1, kept=books.kept + 1, note="litellm: keyed on api_base, not key")
