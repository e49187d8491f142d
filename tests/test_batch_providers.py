"""Batch runs through the other two routes: litellm (to the loopback over real HTTP) and the
embedded model (one row at a time, same API)."""

from __future__ import annotations

import pandas as pd
import pytest


def test_map_through_litellm(nb_session, loopback):
    df = pd.DataFrame({"t": [f"row {i}" for i in range(6)]})
    kwargs = dict(model="openai/gpt-4o-mini", api_base=loopback.url,
                  api_key="sk-loopback-test-0123456789", max_tokens=20)
    out = df.llm.map("Repeat: {t}", concurrency=3, **kwargs)
    info = out.attrs["llm"]
    assert info["ok"] == 6 and info["error"] == 0
    assert out[2] == "Echo: Repeat: row 2"
    assert info["cost"] > 0  # a priced model: litellm's price map, read without importing it
    stats = loopback.stats()
    assert stats["requests"] == 6 and stats["by_model"] == {"gpt-4o-mini": 6}
    # The key went to the server, never to the log.
    assert loopback.requests()[0]["auth_present"]
    logged = nb_session.log.read("SELECT options FROM calls")
    assert len(logged) == 6 and all("sk-loopback" not in r["options"] for r in logged)

    # 429 with Retry-After through litellm: honoured by our retry policy, not litellm's.
    loopback.script([{"kind": "429", "retry_after": 1, "match": "row 7"}])
    more = pd.DataFrame({"t": [f"row {i}" for i in range(6, 9)]})
    again = more.llm.map("Repeat: {t}", **kwargs)
    assert again.attrs["llm"]["ok"] == 3 and again.attrs["llm"]["retries"] == 1
    times = [r["time"] for r in loopback.requests()
             if r["body"]["messages"][-1]["content"] == "Repeat: row 7"]
    assert len(times) == 2 and times[1] - loopback.stats()["rate_limited"][0]["time"] >= 1.0

    # Cached the same way as the lean path: the first six again send nothing.
    before = loopback.stats()["requests"]
    assert df.llm.map("Repeat: {t}", **kwargs).attrs["llm"]["cached"] == 6
    assert loopback.stats()["requests"] == before


@pytest.mark.local_model
def test_map_on_the_embedded_model_runs_rows_one_at_a_time(nb_session):
    df = pd.DataFrame({"review": ["I loved it", "Terrible, never again", "It was fine"]})
    out = df.llm.map("Sentiment of: {review}. Answer positive or negative.",
                     model="local/smollm2", max_tokens=6, concurrency=8)
    info = out.attrs["llm"]
    assert info["ok"] == 3 and info["cost"] == 0
    assert all(isinstance(t, str) and t.strip() for t in out)
    calls = nb_session.log.read(
        "SELECT ts, duration_ms FROM calls WHERE job_id = ? ORDER BY ts", (info["job_id"],))
    assert len(calls) == 3
    # One at a time even though concurrency=8 was asked: no call started before the last ended.
    for earlier, later in zip(calls, calls[1:]):
        assert later["ts"] >= earlier["ts"] + earlier["duration_ms"] / 1000 - 0.01
    again = df.llm.map("Sentiment of: {review}. Answer positive or negative.",
                       model="local/smollm2", max_tokens=6)
    assert again.attrs["llm"]["cached"] == 3 and again.equals(out)
