"""Suite 6 — cache correctness.

Identical calls hit; any change of model, messages, temperature, tools, response format or
endpoint misses; errors, truncated streams and interrupted calls are never cached. The books
are kept against the provider: every call predicts hit or miss, and the loopback's request
count must equal the misses exactly.
"""

from __future__ import annotations

import asyncio
import collections

import pandas as pd
import pytest

from llm_notebook.errors import LLMError

from .helpers import job_rows, sent, wait_until

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
    """Each call says whether it should hit, and is counted (on the test's `record`) as kept when
    it did what it said and the provider saw exactly the requests a miss makes; the provider's
    count must match the misses."""

    def __init__(self, session, loopback, record):
        self.session, self.loopback, self.record = session, loopback, record
        self.calls = self.misses = 0
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
        if not self.record.check(f"{label}: a {'hit' if expect_hit else 'miss'}",
                                 response.cached == expect_hit and bool(text)
                                 and went_out == (0 if expect_hit else 1)):
            self.wrong.append((label, "hit" if expect_hit else "miss", response.cached, went_out))
        return response

    def rows(self, label: str, job_id: str, expect_hit) -> None:
        """A batch's rows, each predicted a hit or a miss (`expect_hit(row)`), judged by the
        job's rows in the log; the provider's count is checked by `provider_count`."""
        for row, r in sorted(job_rows(self.session.log, job_id).items()):
            hit = expect_hit(row)
            self.calls += 1
            self.misses += 0 if hit else 1
            if not self.record.check(f"{label} row {row}: a {'hit' if hit else 'miss'}",
                                     r["status"] == "ok" and bool(r["cached"]) == hit):
                self.wrong.append((f"{label} row {row}", "hit" if hit else "miss", r["cached"]))

    def provider_count(self) -> int:
        """The provider's requests, noted beside the predicted misses (the test asserts them)."""
        seen = self.loopback.stats()["requests"]
        self.record.note(f"{self.calls} calls predicted {self.misses} misses; the provider saw "
                         f"{seen} requests")
        return seen


def test_identical_calls_hit_and_every_change_misses(loop_session, loopback, record):
    books = Books(loop_session, loopback, record)
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
    before = loopback.stats()["requests"]
    chat.ask("What is 2+2?", model=MODEL, temperature=0.2, cache=True)
    first_turn_hit = loop_session.log.call(chat.head_id)["cached"] == 1   # same messages as `base`
    books.calls += 1
    books.record.check("a conversation's first turn, same messages: a hit",
                       first_turn_hit and loopback.stats()["requests"] == before)
    before = loopback.stats()["requests"]
    second = chat.ask("What is 2+2?", model=MODEL, temperature=0.2, cache=True)
    books.calls += 1
    books.misses += 1
    books.record.check("its second turn carries the first: a miss",
                       second.cached is False and loopback.stats()["requests"] == before + 1)
    seen = books.provider_count()
    record.note(f"{len(variants)} kinds of change")

    assert first_turn_hit
    assert second.cached is False
    assert books.wrong == [], books.wrong
    assert seen == books.misses


def test_batch_and_single_calls_share_entries(loop_session, loopback, record):
    books = Books(loop_session, loopback, record)
    prompts = [f"shared {i}" for i in range(20)]
    first = loop_session.batch(prompts, model=MODEL, progress=False)
    books.rows("first batch", first.job_id, lambda row: False)
    again = loop_session.batch(prompts, model=MODEL, progress=False)
    books.rows("same batch again", again.job_id, lambda row: True)
    single = books.ask("a single call a batch filled", True, "shared 3")
    fresh = books.ask("a single call first", False, "single first")
    out = pd.DataFrame({"p": ["single first", "batch new"]}).llm.map("{p}", model=MODEL,
                                                                     progress=False)
    books.rows("a batch after a single call", out.attrs["llm"]["job_id"], lambda row: row == 0)
    seen = books.provider_count()

    assert first.info["cached"] == 0 and again.info["cached"] == 20
    assert single.cached and single.text == "Echo: shared 3"
    assert list(out) == [fresh.text, "Echo: batch new"] and out.attrs["llm"]["cached"] == 1
    assert books.wrong == [], books.wrong
    assert seen == books.misses


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
    for label, fault, stream in failures:
        with record.trial(f"{label}: not cached, asked again, then cached"):
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

    # A stream cut at its deadline (incomplete, partial text) is not an answer either.
    with record.trial("a stream cut at its deadline: not cached"):
        loop_session.config.deadline = 1.0
        loopback.configure(tokens_per_second=20)
        slow = "cut at the deadline " + "word " * 60
        with pytest.raises(LLMError) as cut:
            list(loop_session.stream(slow, model=MODEL, cache=True))
        assert cut.value.kind == "incomplete" and no_cache_for(loop_session, slow)

    # Interrupted: the reader stops after two chunks (as Ctrl-C or a closed widget does).
    with record.trial("an interrupted stream: not cached, asked again"):
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
        assert not again.cached
        assert sent(loopback)[interrupted.strip()] + sent(loopback)[interrupted] == 2

    # A batch: the failed row and the rows cancelled in flight leave no cache entry.
    loopback.script([{"kind": "400", "match": "batch row 3", "times": 1}])
    loopback.configure(latency=0.3)
    from llm_notebook import runner

    prompts = [f"batch row {i}" for i in range(40)]

    async def cancel_midway(started: int):
        task = asyncio.ensure_future(loop_session.abatch(prompts, model=MODEL, concurrency=10))
        await asyncio.sleep(0)
        # Midway: some rows answered (and cached), some failed, some in flight. (The count is
        # the server's since its reset, so the calls above are in it too.)
        while loopback.stats()["requests"] < started + 25:     # (control call: fine at this scale)
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    started = loopback.stats()["requests"]
    runner.run(cancel_midway(started))
    wait_until(lambda: loopback.stats()["in_flight"] == 0, 10, what="cancelled calls to end")
    rows = [dict(r) for r in loop_session.log.read(
        "SELECT prompt, status FROM calls WHERE prompt LIKE 'batch row %'")]
    statuses = {r["prompt"]: r["status"] for r in rows}
    cached = {r[0] for r in loop_session.log.read(
        "SELECT calls.prompt FROM cache JOIN calls ON calls.id = cache.call_id "
        "WHERE calls.prompt LIKE 'batch row %'")}
    for prompt, status in sorted(statuses.items()):
        record.check(f"{prompt} ({status}): cached only if ok", (prompt in cached) == (status == "ok"))
    kinds = collections.Counter(statuses.values())
    record.note("500/401/400/malformed/dropped/cut/interrupted: none cached; a cancelled batch: "
                f"{kinds['ok']} ok rows cached, {len(statuses) - kinds['ok']} others "
                f"({', '.join(f'{n} {s}' for s, n in sorted(kinds.items()) if s != 'ok')}) not")

    assert statuses["batch row 3"] == "error" and "interrupted" in statuses.values()
    assert "ok" in statuses.values()
    assert cached == {p for p, s in statuses.items() if s == "ok"}
    assert loopback.stats()["requests"] > started


def test_litellm_path_keys_on_the_api_base(loop_session, loopback, record):
    books = Books(loop_session, loopback, record)
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
    with record.trial("litellm, a dropped stream: not cached"):
        with pytest.raises(LLMError):
            list(loop_session.stream("litellm drop", cache=True, api_base=loopback.url, **via))
        books.misses += 1
        assert no_cache_for(loop_session, "litellm drop")
    seen = books.provider_count()
    assert books.wrong == [] and seen == books.misses
