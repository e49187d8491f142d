"""usage() over a log of 1,000,000 calls: must answer in ≤ 0.1 s.

Builds the log once (through Log.insert_calls, so the usage rollup triggers and the full-text
index run exactly as they do for real calls), then times Session.usage(by=...) for each
grouping. Prints PASS/FAIL against the target on the median of warm runs; the first (cold) run
is shown separately.

    python benchmarks/bench_usage.py [--calls 1000000] [--log PATH] [--rebuild] [--repeat 7]

The generated log is kept (default: $TMPDIR/llm-notebook-bench-usage-<calls>.db) and reused
by later runs unless --rebuild is given.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TARGET_S = 0.1
MODELS = ["openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-3-5-haiku-latest",
          "local/smollm2", "lab/llama3-8b", "gemini/gemini-2.0-flash"]
NOTEBOOKS = [None] + [f"projects/analysis-{i}.ipynb" for i in range(12)]
DAYS = 120            # the calls are spread over four months of working hours


def generate(log, calls: int, seed: int = 1) -> float:
    """Insert `calls` realistic rows in batches; returns the seconds it took."""
    rng = random.Random(seed)
    start = time.time() - DAYS * 86400
    batch = 50_000
    started = time.perf_counter()
    done = 0
    while done < calls:
        rows = []
        for _ in range(min(batch, calls - done)):
            day = rng.randrange(DAYS)
            ts = start + day * 86400 + rng.uniform(8, 20) * 3600   # daytime use
            model = rng.choices(MODELS, weights=[40, 10, 10, 25, 10, 5])[0]
            cached = rng.random() < 0.15
            status = "ok" if rng.random() < 0.97 else rng.choice(["error", "interrupted"])
            tin, tout = rng.randint(5, 2000), rng.randint(1, 600)
            cost = None if model.startswith("lab/") else (0.0 if model.startswith("local/") or cached
                                                          else (tin * 0.15 + tout * 0.6) / 1e6)
            rows.append({
                "ts": ts, "model": model, "provider": model.split("/")[0],
                "prompt": f"question {done + len(rows)}", "response": "an answer",
                "input_tokens": tin, "output_tokens": tout, "cost": cost,
                "unpriced": cost is None, "duration_ms": rng.lognormvariate(6.5, 0.8),
                "ttft_ms": rng.lognormvariate(5.5, 0.6) if rng.random() < 0.6 else None,
                "status": status, "cached": cached, "notebook": rng.choice(NOTEBOOKS),
            })
        shape_jobs_and_conversations(rows, rng, start)
        log.insert_calls(rows)
        done += len(rows)
        rate = done / (time.perf_counter() - started)
        print(f"  generated {done:>9,} calls ({rate:,.0f} rows/s)", end="\r", flush=True)
    print()
    return time.perf_counter() - started


JOB_ROWS = 6_000       # a batch run: one model, one notebook, a row every half second
CONVERSATION_TURNS = 20


def shape_jobs_and_conversations(rows: list[dict], rng: random.Random, start: float) -> None:
    """Turn 60% of a batch of rows into batch jobs and 10% into conversations, in place.

    The rest stay spread evenly over every model, notebook and daytime hour (the worst case
    for hourly rollups). Job and conversation rows are consecutive in time, as real ones are.
    """
    n = len(rows)
    jobs_end = int(n * 0.6) // JOB_ROWS * JOB_ROWS
    for first in range(0, jobs_end, JOB_ROWS):
        job_id = f"job-{rng.getrandbits(48):012x}"
        model = rng.choice(MODELS[:4])
        notebook = rng.choice(NOTEBOOKS[1:])
        t0 = start + rng.randrange(DAYS) * 86400 + rng.uniform(8, 18) * 3600
        for i, row in enumerate(rows[first:first + JOB_ROWS]):
            row.update(job_id=job_id, model=model, notebook=notebook, ts=t0 + i * 0.5,
                       row_key=str(i), cached=False)
            _reprice(row)
    conv_end = jobs_end + int(n * 0.1) // CONVERSATION_TURNS * CONVERSATION_TURNS
    for first in range(jobs_end, conv_end, CONVERSATION_TURNS):
        conversation_id = f"conv-{rng.getrandbits(48):012x}"
        model = rng.choice(MODELS)
        notebook = rng.choice(NOTEBOOKS)
        t0 = start + rng.randrange(DAYS) * 86400 + rng.uniform(8, 19) * 3600
        for i, row in enumerate(rows[first:first + CONVERSATION_TURNS]):
            row.update(conversation_id=conversation_id, model=model, notebook=notebook,
                       ts=t0 + i * 60)
            _reprice(row)


def _reprice(row: dict) -> None:
    model = row["model"]
    cost = None if model.startswith("lab/") else (
        0.0 if model.startswith("local/") or row["cached"]
        else (row["input_tokens"] * 0.15 + row["output_tokens"] * 0.6) / 1e6)
    row.update(cost=cost, unpriced=cost is None, provider=model.split("/")[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--log", default=None, help="log file to build or reuse")
    parser.add_argument("--rebuild", action="store_true", help="regenerate even if the log exists")
    parser.add_argument("--repeat", type=int, default=7, help="warm runs per grouping")
    args = parser.parse_args(argv)

    path = args.log or os.path.join(tempfile.gettempdir(), f"llm-notebook-bench-usage-{args.calls}.db")
    os.environ["LLM_NOTEBOOK_LOG"] = path
    import pandas  # noqa: F401  (a kernel showing usage has pandas loaded; keep it out of the timing)

    import llm_notebook
    from llm_notebook.log import Log

    if args.rebuild:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    log = Log(path)
    have = log.count_calls()
    if have != args.calls:
        if have:
            log.close()
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
            log = Log(path)
        print(f"building a log of {args.calls:,} calls at {path}")
        seconds = generate(log, args.calls)
        print(f"  {seconds:.1f} s ({args.calls / seconds:,.0f} rows/s, rollup triggers and FTS included)")
    log.close()

    size_mb = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s)) / 1e6
    session = llm_notebook.session()
    # The rollup tables (whatever the schema calls them) are what usage() reads: their size,
    # not the number of calls, sets its speed.
    rollups = [r[0] for r in session.log.read(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'usage%' ORDER BY name")]
    sizes = ", ".join(f"{name} {session.log.read(f'SELECT count(*) FROM {name}')[0][0]:,}"
                      for name in rollups)
    print(f"log: {session.log.count_calls():,} calls, {size_mb:,.0f} MB; rollup rows: {sizes}")

    failed = False
    print(f"\n{'usage(by=...)':<20}{'groups':>8}{'cold s':>10}{'median s':>10}{'best s':>10}  vs {TARGET_S} s")
    now = time.time()
    month_ago = (now // 86400 - 30) * 86400               # whole UTC days: daily rollups
    cases = [(by, {"by": by}) for by in ("model", "day", "hour", "notebook", "conversation", "job")]
    cases += [
        ("model, 30 days", {"by": "model", "since": month_ago}),
        ("day, 1 model", {"by": "day", "model": MODELS[0]}),
        ("hour, 1 notebook", {"by": "hour", "notebook": NOTEBOOKS[1]}),
        ("notebook, 1 model", {"by": "notebook", "model": MODELS[0]}),
        ("job, 1 notebook", {"by": "job", "notebook": NOTEBOOKS[1]}),
        # Bounds inside hours: the partial hours at both ends are read from `calls`.
        ("model, odd range", {"by": "model", "since": now - 40.5 * 86400, "until": now - 3.25 * 86400}),
    ]
    for label, kwargs in cases:
        started = time.perf_counter()
        frame = session.usage(**kwargs)
        cold = time.perf_counter() - started
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            frame = session.usage(**kwargs)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        verdict = "PASS" if median <= TARGET_S else "FAIL"
        failed |= verdict == "FAIL"
        print(f"{label:<20}{len(frame):>8}{cold:>10.4f}{median:>10.4f}{min(times):>10.4f}  {verdict}")
        if label == "model":
            assert frame["calls"].sum() == args.calls, "usage totals do not add up"
    print("\nPASS: usage() answers within the target" if not failed else
          "\nFAIL: at least one grouping is over the target")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
