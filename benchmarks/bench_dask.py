"""Cluster batch runs (`ddf.llm.map` on a distributed.LocalCluster of worker processes), in one run:

- the loopback OpenAI-compatible server at a fixed latency (100 ms): N rows through `df.llm.map`
  in this one process, then N other rows through `ddf.llm.map` on 2 workers, each at the same
  concurrency C (for the whole cluster: the scheduler's gate); each wall time is printed with
  its ratio to the ideal bound rows x latency / C (bound / wall: 1.0 is ideal);
- the embedded model (local/smollm2) on every worker: rows/s with 1 worker and with 2 workers
  (cache off, the same rows each time; the weights load in an untimed warm-up per cluster).

    python benchmarks/bench_dask.py [--rows 400] [--latency 0.1] [--concurrency 16]
                                    [--local-rows 12] [--max-tokens 24] [--skip-local]

The machine has 2 cores shared with other work: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def frame(n: int, tag: str):
    import pandas as pd

    return pd.DataFrame({"x": [f"{tag} row {i}" for i in range(n)]})


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def cluster(workers: int):
    from distributed import Client, LocalCluster

    c = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                     dashboard_address=None, host="127.0.0.1")
    return c, Client(c, set_as_default=False)


def http_runs(args) -> dict:
    import dask.dataframe as dd

    import llm_notebook
    from llm_notebook.testing.loopback import LoopbackServer

    results = {}
    bound = args.rows * args.latency / args.concurrency
    with LoopbackServer(latency=args.latency) as server:
        s = llm_notebook.session()
        s.add_endpoint("loop", server.url)
        opts = dict(model="loop/bench", progress=False, concurrency=args.concurrency)
        frame(args.concurrency, "warm").llm.map("Say {x}", **opts)
        wall, out = timed(lambda: frame(args.rows, "one").llm.map("Say {x}", **opts))
        assert out.attrs["llm"]["ok"] == args.rows, out.attrs["llm"]
        results["one process"] = wall
        lc, client = cluster(2)
        try:
            warm = dd.from_pandas(frame(4 * args.concurrency, "warm2"), npartitions=2)
            warm.llm.map("Say {x}", client=client, **opts)
            ddf = dd.from_pandas(frame(args.rows, "two"), npartitions=4)
            wall, out = timed(lambda: ddf.llm.map("Say {x}", client=client, **opts))
            assert out.llm_info["ok"] == args.rows, out.llm_info
            results["2 workers"] = wall
            results["workers"] = out.llm_info["workers"]
        finally:
            client.close()
            lc.close()
    print(f"\nloopback at {args.latency * 1000:.0f} ms, {args.rows} rows, concurrency "
          f"{args.concurrency} (ideal bound {bound:.3f} s)")
    for name in ("one process", "2 workers"):
        wall = results[name]
        print(f"  {name:<12} wall {wall:6.3f} s   ratio to the bound {bound / wall:5.2f}   "
              f"{args.rows / wall:7.1f} rows/s")
    print(f"  2 workers / one process wall: {results['2 workers'] / results['one process']:.2f}"
          f"   rows per worker {sorted(results['workers'].values())}")
    return results


def local_runs(args) -> dict:
    import dask.dataframe as dd

    rates = {}
    opts = dict(model="local/smollm2", progress=False, cache=False, max_tokens=args.max_tokens,
                temperature=0)
    for workers in (1, 2):
        lc, client = cluster(workers)
        try:
            warm = dd.from_pandas(frame(2 * workers, "warm"), npartitions=workers)
            warm.llm.map("Say {x}", client=client, rows_per_task=1, **opts)   # weights load
            ddf = dd.from_pandas(frame(args.local_rows, "local"), npartitions=2)
            wall, out = timed(lambda: ddf.llm.map("Say {x}", client=client, rows_per_task=1,
                                                  **opts))
            info = out.llm_info
            assert info["ok"] == args.local_rows, info
            rates[workers] = args.local_rows / wall
            print(f"  embedded model, {workers} worker(s): {args.local_rows} rows in {wall:6.2f} s"
                  f" = {rates[workers]:5.2f} rows/s   rows per worker "
                  f"{sorted(info['workers'].values())}", flush=True)
        finally:
            client.close()
            lc.close()
    print(f"  rows/s with 2 workers / 1 worker: {rates[2] / rates[1]:.2f}")
    return rates


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--local-rows", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("LLM_NOTEBOOK_LOG", os.path.join(tempfile.mkdtemp(), "log.db"))
    print(f"bench_dask: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start",
          flush=True)
    http_runs(args)
    if not args.skip_local:
        print("\nembedded model (local/smollm2)")
        local_runs(args)
    print(f"\nload average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
