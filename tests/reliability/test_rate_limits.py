"""Suite 1 — rate limits.

The loopback enforces requests/min and tokens/min and answers 429 with Retry-After. Its limits
are enforced over a short sliding window (as providers that quantize per-minute limits do), so
a limit binds within seconds instead of a minute. 1,000 rows paced at 80% of both limits must
all come back, with under 1% of requests refused; an unpaced run against a tighter window must
be refused many times (the limit binds) and still lose nothing, never retrying sooner than the
server's Retry-After.
"""

from __future__ import annotations

import pandas as pd

from .helpers import by_prompt, early_retries, final_status, job_rows, last_user

SUITE = "1 rate limits"
MODEL = "loop/loopback-model"

ROWS = 1000
LIMIT_RPM = 6000          # 500 requests per 5 s window
LIMIT_TPM = 54000         # 4,500 tokens per 5 s window
WINDOW = 5.0
# Every request costs 9 tokens at the loopback: 4 prompt words, a 5-word echo.
TOKENS_PER_ROW = 9
PACE = 0.8                # of the server's limits


def answered_rows(session, job_id: str, results, prompts, records) -> int:
    """Rows whose answer is there three times over: in the result (the echo of its own prompt),
    in the log (its job row ok, answered by a call with that prompt) and at the server (the
    prompt's last request answered 200)."""
    served = final_status(records)
    rows = job_rows(session.log, job_id)
    return sum(1 for i, (prompt, result) in enumerate(zip(prompts, results))
               if result == f"Echo: {prompt}" and rows.get(i, {}).get("status") == "ok"
               and rows[i]["prompt"] == prompt and served.get(prompt) == 200)


def pace(records, settings: dict) -> str:
    """The rate the server saw, against the limits it enforced (its own settings)."""
    times = sorted(r["time"] for r in records)
    span = times[-1] - times[0]
    tokens = sum(r["usage"]["total_tokens"] for r in records if "usage" in r)
    parts = [f"{len(records):,} requests in {span:.1f} s"]
    if settings["rpm"]:
        rate, limit = (len(records) - 1) / span, settings["rpm"] / 60
        parts.append(f"{rate:.1f} req/s = {rate / limit:.0%} of the server's rpm")
    if settings["tpm"]:
        rate, limit = tokens / span, settings["tpm"] / 60
        parts.append(f"{rate:.0f} tok/s = {rate / limit:.0%} of its tpm")
    return ", ".join(parts)


def prompt_of(item: str) -> str:
    return f"Describe {item} briefly."


def test_1000_rows_paced_at_80_percent_of_rpm_and_tpm(loop_session, loopback, record):
    settings = loopback.configure(rpm=LIMIT_RPM, tpm=LIMIT_TPM, rate_window=WINDOW)
    items = [f"item {i:04d}" for i in range(ROWS)]
    df = pd.DataFrame({"item": items})

    out = df.llm.map("Describe {item} briefly.", model=MODEL, rpm=PACE * LIMIT_RPM,
                     tpm=PACE * LIMIT_TPM, max_tokens=5, concurrency=32, progress=False)

    info = out.attrs["llm"]
    records = loopback.requests()
    statuses = [r.get("status") for r in records]
    refused = statuses.count(429)
    answered = final_status(records)
    times = sorted(r["time"] for r in records)
    span = times[-1] - times[0]
    kept = answered_rows(loop_session, info["job_id"], list(out), [prompt_of(i) for i in items],
                         records)
    record.count(tried=len(df), kept=kept, what="rows answered (result, log, server)")
    record.note(f"{len(df):,} rows paced at {PACE:.0%} of rpm and tpm: {len(df) - kept} lost, "
                f"{refused} of {len(records):,} requests got 429, {pace(records, settings)}")

    # 0 rows lost: every row has its own answer, in the result, the log and the server's record.
    assert info["ok"] == ROWS and info["error"] == 0 and info["not_run"] == 0
    assert list(out) == [f"Echo: {prompt_of(i)}" for i in items]
    assert loop_session.log.count_calls(job_id=info["job_id"], status="ok") == ROWS
    assert sorted(answered) == sorted(prompt_of(i) for i in items)
    assert set(answered.values()) == {200}
    assert all(r["usage"]["total_tokens"] == TOKENS_PER_ROW for r in records if "usage" in r)
    # < 1% of requests answered 429, and none retried early.
    assert refused < 0.01 * len(records), f"{refused} of {len(records)} requests refused"
    assert early_retries(records) == []
    # The pacer really held 80%: 1,000 requests at 80 a second cannot span less than ~12.5 s.
    assert span >= (ROWS - 1) / (PACE * LIMIT_RPM / 60) - 0.5, f"1,000 requests in {span:.1f} s"


def test_tokens_per_minute_alone_paces_the_run(loop_session, loopback, record):
    # Above, rpm and tpm bind equally, so a broken token pacer would hide behind the request
    # pacer. Here tpm is the only limit: 1,800 tokens per 2 s window (200 rows), paced at 80%.
    settings = loopback.configure(tpm=LIMIT_TPM, rate_window=2.0)
    prompts = [f"Describe row {i:04d} briefly." for i in range(300)]

    result = loop_session.batch(prompts, model=MODEL, tpm=PACE * LIMIT_TPM, max_tokens=5,
                                concurrency=32, progress=False)

    records = loopback.requests()
    refused = sum(1 for r in records if r.get("status") == 429)
    times = sorted(r["time"] for r in records)
    kept = answered_rows(loop_session, result.job_id, list(result), prompts, records)
    record.count(tried=len(prompts), kept=kept, what="rows answered (result, log, server)")
    record.note(f"tpm alone at {PACE:.0%}: {len(prompts) - kept} of {len(prompts)} rows lost, "
                f"{refused} × 429, {pace(records, settings)}")
    assert list(result) == [f"Echo: {p}" for p in prompts]
    assert refused < 0.01 * len(records), f"{refused} of {len(records)} requests refused"
    assert early_retries(records) == []
    # 300 rows × 9 tokens at 720 tokens/s: at least ~3.7 s (unpaced, it takes a fraction).
    assert times[-1] - times[0] >= (len(prompts) - 1) * TOKENS_PER_ROW / (PACE * LIMIT_TPM / 60) - 0.5


def test_unpaced_run_is_refused_and_still_loses_nothing(loop_session, loopback, record):
    # The control: without pacing the same kind of limit binds at once (so the test above
    # could fail), and every refused row is retried no sooner than its Retry-After.
    settings = loopback.configure(rpm=6000, rate_window=1.0)          # 100 requests per second
    prompts = [f"unpaced row {i}" for i in range(300)]

    result = loop_session.batch(prompts, model=MODEL, concurrency=64, max_retries=8,
                                progress=False)

    records = loopback.requests()
    refused = [r for r in records if r.get("status") == 429]
    tries = by_prompt(records)
    answered_once = {p for p in prompts if [t.get("status") for t in tries[p]].count(200) == 1}
    kept = answered_rows(loop_session, result.job_id, list(result), prompts,
                         [r for r in records if last_user(r["body"]) in answered_once])
    early = early_retries(records)
    record.count(tried=len(prompts), kept=kept, what="rows answered once (result, log, server)")
    record.note(f"unpaced control: {len(refused)} × 429 ({pace(records, settings)}), "
                f"{len(prompts) - kept} rows lost, {len(early)} retries before Retry-After")
    assert len(refused) > 0, "the loopback's limit never bound: the control proves nothing"
    assert list(result) == [f"Echo: {p}" for p in prompts]
    assert result.info["ok"] == len(prompts) and result.info["rate_limited"] == len(refused)
    assert early == []
    # Every refused request was retried, and each prompt got exactly one 200.
    assert answered_once == set(prompts)
    assert loop_session.log.count_calls(job_id=result.job_id, status="ok") == len(prompts)
