"""The parts of the batch engine on their own: pacing, the AIMD gate, cheap cache keys, the
progress line and widget, saved templates as prompts, and the accessor's registration."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pandas as pd
import pytest

from llm_notebook.batch.cachekeys import cache_keys
from llm_notebook.batch.pacing import AdaptiveLimit, RatePacer
from llm_notebook.cache import cache_key

MODEL = "loop/loopback-model"


# -- pacing ---------------------------------------------------------------------------------

def test_rate_pacer_spaces_requests_and_tokens():
    pacer = RatePacer(rpm=600)                      # one every 0.1 s
    waits = [pacer.reserve(10) for _ in range(5)]
    assert waits[0] == pytest.approx(0, abs=0.01)
    assert waits[4] == pytest.approx(0.4, abs=0.02)
    tokens = RatePacer(tpm=6000)                    # 100 tokens a second
    assert tokens.reserve(300) == pytest.approx(0, abs=0.01)
    assert tokens.reserve(1) == pytest.approx(3.0, abs=0.02)  # waits for the first 300
    both = RatePacer(rpm=60, tpm=60_000)            # 1/s and 1,000 tokens/s: rpm binds
    both.reserve(10)
    assert both.reserve(10) == pytest.approx(1.0, abs=0.02)


def test_rate_pacer_corrects_estimates_and_honours_pauses():
    pacer = RatePacer(tpm=6000)
    pacer.reserve(100)                              # booked 1 s
    pacer.correct(100, 400)                         # it really used 400: 3 s more
    assert pacer.reserve(1) == pytest.approx(4.0, abs=0.05)
    free = RatePacer()
    assert not free.active and free.reserve(1000) == 0
    free.pause(0.5)                                 # a provider's Retry-After applies to all
    assert free.reserve(1) == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match="rpm must be a positive number of requests"):
        RatePacer(rpm=0)
    with pytest.raises(ValueError, match="tpm must be"):
        RatePacer(tpm=-5)


async def test_adaptive_limit_halves_on_429_and_grows_back():
    gate = AdaptiveLimit(8, cooldown=10)
    for _ in range(8):
        await gate.acquire()
    assert gate.in_flight == 8
    gate.on_rate_limited()
    gate.on_rate_limited()                          # a burst of 429s counts once per cooldown
    assert gate.limit == 4 and gate.decreases == 1
    for _ in range(8):
        gate.release()
    for _ in range(4):
        await gate.acquire()
    blocked = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0)
    assert not blocked.done()                       # the 5th waits while the limit is 4
    for _ in range(5):
        gate.on_success()                           # +1/limit each: one more slot (4 -> 5.1)
    await asyncio.wait_for(blocked, 1)
    assert gate.in_flight == 5 and 5 < gate.limit < 6
    for _ in range(200):
        gate.on_success()
    assert gate.limit == 8                          # never above the maximum


async def test_adaptive_limit_cancelled_waiter_leaks_no_slot():
    gate = AdaptiveLimit(1)
    await gate.acquire()
    waiter = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.release()
    assert gate.in_flight == 0
    await asyncio.wait_for(gate.acquire(), 1)
    with pytest.raises(ValueError, match="concurrency must be a whole number"):
        AdaptiveLimit(0)


# -- cache keys -----------------------------------------------------------------------------

def test_cache_keys_equal_single_call_keys():
    rows = [
        [{"role": "user", "content": "plain"}],
        [{"role": "system", "content": 'quote " and \\ backslash\n'},
         {"role": "user", "content": "émoji 😀 \u2028 </script> \x00"}],
        [{"role": "user", "content": [{"type": "text", "text": "parts"}]}],
        [{"role": "user", "content": "extra key", "name": "ann"}],
        None,
    ]
    options = {"temperature": 0.2, "max_tokens": 9, "timeout": 3, "seed": None,
               "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}
    keys = cache_keys("loop/m", rows, options, "http://127.0.0.1:9/v1")
    assert keys[:4] == [cache_key("loop/m", m, options, "http://127.0.0.1:9/v1") for m in rows[:4]]
    assert keys[4] is None
    # Not valid Unicode: no key (the row becomes a bad-input error, not a crash).
    assert cache_keys("m", [[{"role": "user", "content": "\ud800"}]], {}, None) == [None]


def test_cache_keys_fall_back_when_the_fast_path_disagrees(monkeypatch):
    import llm_notebook.batch.cachekeys as module

    monkeypatch.setattr(module, "cache_key", lambda *a: "different")
    rows = [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]
    assert module.cache_keys("m", rows, {}, None) == ["different", "different"]


# -- progress -------------------------------------------------------------------------------

def test_progress_line_and_widget_state(loop_session, loopback):
    from llm_notebook.batch import api
    from llm_notebook.batch.progress import WidgetBar, describe

    snap = {"job_id": "j", "total": 2000, "done": 812, "ok": 800, "errors": 12, "cached": 40,
            "cost": 0.0123, "unpriced": 0, "rate": 45.2, "eta": 26.3, "status": "running",
            "stopping": None, "in_flight": 10, "concurrency": 16, "elapsed": 18.0}
    assert describe(snap) == ("812/2,000 rows · 12 errors · 40 cached · 45.2 rows/s · ETA 0:26 · "
                              "$0.0123")
    assert describe(dict(snap, done=2000, status="done")).endswith("$0.0123 · done")
    assert "price unknown" in describe(dict(snap, cost=0.0, unpriced=5))

    run, _ = api.prepare(loop_session, prompts=["a", "b"], model=MODEL)
    bar = WidgetBar(run)  # outside a kernel display() prints the text form
    api.run_sync(run, progress=False)
    bar.close(run.snapshot())
    w = bar.widget
    assert (w.total, w.done, w.status) == (2, 2, "done") and "2/2 rows" in w.line
    assert w.job_id == run.job_id and repr(w).startswith(f"batch {run.job_id}: 2/2 rows")
    with pytest.raises(ValueError, match="progress must be"):
        api.run_sync(run, progress="loud")


# -- templates ------------------------------------------------------------------------------

def test_saved_template_by_name_and_object(loop_session, loopback):
    templates = loop_session.templates
    saved = templates.save("tone", "Rate the tone of {text} for {audience}",
                           system="You judge {audience} writing.", model=MODEL,
                           options={"max_tokens": 50}, defaults={"audience": "kids"})
    df = pd.DataFrame({"text": ["a story", "a poem"]})
    out = df.llm.map("tone")                      # by name: its model, system and defaults
    assert out.tolist() == ["Echo: Rate the tone of a story for kids",
                            "Echo: Rate the tone of a poem for kids"]
    body = loopback.requests()[0]["body"]
    assert body["messages"][0] == {"role": "system", "content": "You judge kids writing."}
    assert body["max_tokens"] == 50
    adults = df.assign(audience="adults").llm.map(saved, max_tokens=20)  # object; a column wins
    assert adults[0] == "Echo: Rate the tone of a story for adults"
    assert loopback.requests()[-1]["body"]["max_tokens"] == 20
    # A word that is not a saved template is just a prompt (which then needs a placeholder).
    with pytest.raises(ValueError, match="no {column} placeholders"):
        df.llm.map("summarize", model=MODEL)


# -- registration ---------------------------------------------------------------------------

def test_accessor_registers_whichever_is_imported_first():
    code = ("import {first}, {second}\nimport pandas as pd\n"
            "assert hasattr(pd.DataFrame({{'a': [1]}}), 'llm')\nprint('ok')")
    for first, second in (("llm_notebook", "pandas"), ("pandas", "llm_notebook")):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", code.format(first=first, second=second)],
                              capture_output=True, text=True, timeout=120)
        assert done.stdout.strip() == "ok", done.stderr
        assert time.monotonic() - started < 60
