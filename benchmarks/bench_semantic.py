"""`df.llm.join` on N×N rows with and without blocking: calls, wall time, and the same result.

Starts the loopback OpenAI-compatible server (a subprocess, fixed latency) and, in one run:
- joins N tickets with N help articles judging every pair (N×N calls, `blocking=False`);
- joins them again with blocking (`blocking=True`): both sides embedded through the server's
  /v1/embeddings (hashed bag-of-words vectors), each row's `candidates` nearest judged;
- checks both found the same pairs.
Both runs are cold (cache=False for the judge calls; embeddings start uncached), through the lean
HTTP path at concurrency C. It prints calls, wall time and their ratios (full / blocked).

    python benchmarks/bench_semantic.py [--rows 200] [--candidates 5] [--latency 0.02]
                                        [--concurrency 64]

Targets (issue 20): blocking makes at most (2N)·candidates calls instead of N×N (200×200, 5:
≤ 2,000 against 40,000) and finds the same pairs. The machine is shared: the load average is
printed with the results.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

def code(i: int) -> str:
    """A made-up product code word (letters only, so no two codes share a word)."""
    letters = "bcdfghjklmnpqrstvwxz"
    return "".join(letters[(i * 7 + 3 * d * d + d) % 20] for d in range(6)) + letters[i % 20] \
        + letters[i // 20 % 20]


def frames(n: int):
    """n tickets and n manuals; each ticket names one product code and exactly one manual
    (at a shuffled position) covers it: n true pairs out of n×n."""
    import random

    import pandas as pd

    codes = [code(i) for i in range(n)]
    assert len(set(codes)) == n
    order = list(range(n))
    random.Random(20).shuffle(order)
    left = pd.DataFrame({"ticket": [f"customer asks how to reset product {codes[i]}"
                                    for i in range(n)]})
    right = pd.DataFrame({"manual": [f"manual: resetting product {codes[j]} step by step"
                                     for j in order]})
    condition = ("the manual covers the ticket's product: both name the same code, one of "
                 + ", ".join(f"'{c}'" for c in codes))
    return left, right, condition


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    os.environ["LLM_NOTEBOOK_LOG"] = os.path.join(tempfile.mkdtemp(prefix="bench-semantic-"),
                                                  "log.db")

    import llm_notebook
    from llm_notebook.testing.loopback import LoopbackServer

    n, k = args.rows, args.candidates
    left, right, condition = frames(n)
    settings = dict(model="loop/loopback-judge", concurrency=args.concurrency, cache=False,
                    progress=False)
    with LoopbackServer(latency=args.latency) as server:
        session = llm_notebook.session()
        session.add_endpoint("loop", server.url)
        estimate = left.llm.join.estimate(right, condition, candidates=k,
                                          embedding_model="loop/loopback-embed", **settings)
        print(f"estimate (blocking): {estimate}")
        results = {}
        for name, blocking in (("full", False), ("blocked", True)):
            server.reset()
            start = time.perf_counter()
            out = left.llm.join(right, condition, blocking=blocking, candidates=k,
                                embedding_model="loop/loopback-embed", **settings)
            wall = time.perf_counter() - start
            stats = server.stats()
            calls = stats["requests"] - stats["embeddings_requests"]
            results[name] = (out, calls, wall, stats["embeddings_requests"])
            print(f"{name:8} {len(left)}×{len(right)}: {calls:6,} judge calls, "
                  f"{stats['embeddings_requests']} embeddings requests, {wall:7.2f} s wall, "
                  f"{len(out):,} pairs found")
        (full, full_calls, full_wall, _), (blocked, calls, wall, _) = \
            results["full"], results["blocked"]
        same = sorted(full.index) == sorted(blocked.index)
        print(f"ratios full / blocked: calls {full_calls / max(calls, 1):.1f}×, "
              f"wall {full_wall / max(wall, 1e-9):.1f}×; same pairs: {same}; "
              f"bound (2N)·candidates = {2 * n * k:,}: {'met' if calls <= 2 * n * k else 'MISSED'}")
        print(f"load average: {os.getloadavg()[0]:.2f} (2 cores, shared)")
        return 0 if same and calls <= 2 * n * k else 1


if __name__ == "__main__":
    sys.exit(main())
