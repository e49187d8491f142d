"""Suite 4 — interrupt.

SIGINT to a real kernel (jupyter_client) while a batch at concurrency 100 is in its second wave
against the loopback (at least 50 calls in flight, as the server counts them): the provider
stops receiving new requests within 2 s (by its own clock), every call it received has a row in
the log (interrupted or final), the kernel lives on, and running the same cell again sends only
the rows that have no answer yet.
"""

from __future__ import annotations

import collections
import time

import pytest

from .helpers import Kernel, by_prompt, last_user, log_rows, wait_until

SUITE = "4 interrupt"
ROWS = 600
CONCURRENCY = 100
LATENCY = 1.0            # up to 100 in flight, ~100 new requests a second while it runs


@pytest.fixture
def kernel(tmp_path):
    k = Kernel({"LLM_NOTEBOOK_LOG": str(tmp_path / "log.db"), "OPENAI_API_KEY": ""},
               cwd=str(tmp_path))
    yield k
    k.close()


def test_sigint_with_calls_in_flight(kernel, loopback, tmp_path, record):
    log = str(tmp_path / "log.db")
    loopback.configure(latency=LATENCY)
    setup = kernel.run(f"""
import pandas as pd, llm_notebook
s = llm_notebook.session()
s.add_endpoint("loop", {loopback.url!r})
df = pd.DataFrame({{"item": [f"item {{i:04d}}" for i in range({ROWS})]}})
""")
    assert setup.status == "ok", setup
    cell = ('out = df.llm.map("Tell me about {item}.", model="loop/loopback-model", '
            f'concurrency={CONCURRENCY}, progress=False)')
    everything = {f"Tell me about item {i:04d}." for i in range(ROWS)}

    running = kernel.send(cell)
    # Interrupt in the steady state: the first wave answered, the second 100 in flight.
    wait_until(lambda: loopback.stats()["requests"] >= CONCURRENCY + 50, 60,
               what="the batch to reach its second wave")
    in_flight = loopback.stats()["in_flight"]
    interrupted_at = time.time()
    kernel.interrupt()
    outcome = kernel.collect(running, timeout=30)
    wait_until(lambda: loopback.stats()["in_flight"] == 0, 10, what="the calls to be cancelled")
    first = loopback.requests()
    last_request = max(r["time"] for r in first)
    # The provider's clock: how long after the interrupt requests kept coming (negative: the
    # last one came before it).
    after = last_request - interrupted_at
    sending_when_interrupted = any(interrupted_at - 1.5 <= r["time"] <= interrupted_at
                                   for r in first)

    # The books: every call the provider saw has a row (final or interrupted).
    alive = kernel.run("job = llm_notebook.session().jobs().iloc[0]; print(job['id'], job['status'])")
    job_id, job_status = (alive.text.split() + [None, None])[:2]
    rows = log_rows(log, "job_id = ?", (job_id,))
    received = {last_user(r["body"]) for r in first}
    logged = {r["prompt"] for r in rows}
    statuses = [r["status"] for r in rows]
    ok_prompts = {r["prompt"] for r in rows if r["status"] == "ok"}

    # The re-run sends only what has no answer, once each, and completes the job.
    loopback.reset()
    loopback.configure(latency=0.02)
    rerun = kernel.run(cell + "\nprint(out.attrs['llm']['ok'], out.attrs['llm']['resumed'], "
                              "out.isna().sum(), out.attrs['llm']['job_id'])", timeout=120)
    second = by_prompt(loopback.requests())
    final = log_rows(log, "job_id = ?", (job_id,))
    answered = [r["prompt"] for r in final if r["status"] == "ok"]

    # A row is kept when it ends answered exactly once, its first-run request (if any) has its
    # log row, and the re-run sent it only if it had no answer.
    answers = collections.Counter(answered)
    kept = [p for p in everything
            if answers[p] == 1 and (p not in received or p in logged)
            and len(second.get(p, [])) == (0 if p in ok_prompts else 1)]
    record.count(tried=len(everything), kept=len(kept),
                 what="rows answered once (log), first-run requests logged, re-run exact")
    record.note(f"SIGINT with {in_flight} calls in flight: last request {abs(after):.2f} s "
                f"{'after' if after >= 0 else 'before'} it (provider's clock), "
                f"{statuses.count('interrupted')} rows logged interrupted, "
                f"{len(received - logged)} requests without a row; re-run sent {len(second)} = "
                f"{len(everything)} - {len(ok_prompts)} answered")

    assert in_flight >= CONCURRENCY // 2
    assert outcome.error is not None and outcome.error[0] == "KeyboardInterrupt", outcome
    assert "batch interrupted" in outcome.error[1] and "run the same call again" in outcome.error[1]
    # It was still sending when interrupted, and stopped within 2 s by the provider's clock.
    assert sending_when_interrupted
    assert after <= 2.0, f"requests kept coming {after:.2f} s"
    assert len(first) < ROWS
    assert alive.status == "ok", alive
    assert job_status == "interrupted"
    assert received <= logged, f"{len(received - logged)} calls the provider saw have no log row"
    assert statuses.count("ok") == len(ok_prompts)                # no row answered twice
    assert set(statuses) <= {"ok", "interrupted"} and statuses.count("interrupted") > 0
    assert {r["error_kind"] for r in rows if r["status"] == "interrupted"} == {"interrupted"}
    assert rerun.status == "ok", rerun
    ok, resumed, missing, rerun_job = rerun.text.split()
    assert (int(ok), int(resumed), int(missing), rerun_job) == (ROWS, len(ok_prompts), 0, job_id)
    assert set(second) == everything - ok_prompts
    assert all(len(tries) == 1 for tries in second.values())
