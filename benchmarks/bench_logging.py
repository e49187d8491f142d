"""Logging overhead per call: one insert_call per call vs batched insert_calls.

Every call is one row in the SQLite log (with its full-text index and usage rollup updated by
triggers in the same transaction). This times writing realistic rows to a fresh log:
- one at a time, as interactive calls do (`Log.insert_call`: one BEGIN IMMEDIATE ... COMMIT
  per call);
- batched, as batch runs do when many calls finish together (`Log.insert_calls`).

    python benchmarks/bench_logging.py [--calls 3000] [--batch 10 100 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llm_notebook.log import Log  # noqa: E402

WORDS = ("data frame column model answer token latency notebook prompt cache cost result "
         "value table query summary error retry stream kernel").split()


def make_rows(n: int, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words))

    rows = []
    for i in range(n):
        prompt = text(40)
        rows.append({
            "ts": time.time(), "model": "openai/gpt-4o-mini", "provider": "openai",
            "endpoint": None, "system": "You are a careful analyst.", "prompt": prompt,
            "messages": [{"role": "system", "content": "You are a careful analyst."},
                         {"role": "user", "content": prompt}],
            "options": {"temperature": 0.2, "max_tokens": 300}, "response": text(120),
            "input_tokens": 60, "output_tokens": 160, "cost": 0.0001, "duration_ms": 850.0,
            "ttft_ms": 210.0, "status": "ok", "cache_key": f"{i:064x}", "notebook": "bench.ipynb",
            "cell_id": "cell-1", "kernel_session": "bench",
        })
    return rows


def fresh_log(folder: str, name: str) -> Log:
    os.makedirs(folder, exist_ok=True)
    return Log(os.path.join(folder, name))


def one_at_a_time(folder: str, rows: list[dict]) -> list[float]:
    log = fresh_log(folder, "single.db")
    times = []
    for row in rows:
        started = time.perf_counter()
        log.insert_call(row)
        times.append(time.perf_counter() - started)
    assert log.count_calls() == len(rows)
    log.close()
    return times


def batched(folder: str, rows: list[dict], size: int) -> float:
    log = fresh_log(folder, f"batch{size}.db")
    started = time.perf_counter()
    for start in range(0, len(rows), size):
        log.insert_calls(rows[start:start + size])
    elapsed = time.perf_counter() - started
    assert log.count_calls() == len(rows)
    log.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--batch", type=int, nargs="*", default=[10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per mode on fresh logs; the median run is shown")
    args = parser.parse_args(argv)

    rows = make_rows(args.calls)
    row_bytes = statistics.mean(len(json.dumps(r, default=str)) for r in rows)
    print(f"{args.calls:,} calls, ~{row_bytes:,.0f} bytes of row data each (prompt, response, "
          f"messages, options); FTS index and usage rollup updated by triggers; "
          f"median of {args.repeat} runs per mode")
    with tempfile.TemporaryDirectory() as folder:
        singles = []
        for run in range(args.repeat):
            singles.append(one_at_a_time(os.path.join(folder, f"s{run}"), rows))
        single = sorted(singles, key=sum)[len(singles) // 2]
        mean = sum(single) / len(single)
        median = statistics.median(single)
        p95 = sorted(single)[int(0.95 * len(single))]
        print(f"\n{'mode':<22}{'mean/call':>12}{'median':>12}{'p95':>12}{'calls/s':>12}")
        print(f"{'one at a time':<22}{mean * 1e6:>9.0f} µs{median * 1e6:>9.0f} µs"
              f"{p95 * 1e6:>9.0f} µs{1 / mean:>12,.0f}")
        for size in args.batch:
            runs = sorted(batched(os.path.join(folder, f"b{size}-{run}"), rows, size)
                          for run in range(args.repeat))
            elapsed = runs[len(runs) // 2]
            print(f"{f'batches of {size}':<22}{elapsed / len(rows) * 1e6:>9.0f} µs{'':>12}{'':>12}"
                  f"{len(rows) / elapsed:>12,.0f}")
    print(f"\nOne-at-a-time logging adds {mean * 1e3:.2f} ms per call on average (median "
          f"{median * 1e3:.2f} ms); against a 300-3000 ms hosted LLM call that is "
          f"{mean / 3.0:.3%}-{mean / 0.3:.2%}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
