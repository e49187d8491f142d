"""Batch throughput: `df.llm.map` against the ideal bound and a litellm + asyncio.gather baseline.

Starts the loopback OpenAI-compatible server (a subprocess on this machine) with a fixed latency
and, in one run, measures:
- `df.llm.map` over N rows (log and cache on, cold cache: new rows every repetition) through the
  lean HTTP path (`session.add_endpoint` -> providers/http.py) at each concurrency C;
- the same rows through plain `litellm.acompletion` + `asyncio.gather` (a semaphore of C), in a
  process of its own against the same server;
- the ideal bound, rows x latency / C;
- a fully cached re-run of M rows (must send nothing);
- large runs (default 100,000 rows at C=256), each in a fresh process: the ratio to the bound,
  the process's RSS while the run goes (at each quarter of its rows: flat when memory is
  bounded, as a run holds a few chunks of requests and per row a status and a call id), with the
  result Series assembled (the answers, read back from the log), its peak, and the rows logged
  per second.
It prints each wall time and its ratio to the bound (bound / wall: 1.0 is ideal), plus CPU per row
of this process and of the server, which is where the time goes when a ratio falls short.

    python benchmarks/bench_batch.py [--rows 2000] [--latency 0.1] [--concurrency 64 256]
                                     [--repeat 3] [--cached-rows 10000] [--skip-litellm]
                                     [--large-rows 100000 [300000 ...]] [--large-only]

Targets (issue 5): map >= 0.90 of the bound at C=64 and >= 0.75 at C=256; cached re-run of
10,000 rows <= 1 s with zero requests. Every timed run is preceded by an untimed warm-up at the
same concurrency, so connection set-up (C TCP handshakes) is not counted for any contender.
The machine is shared: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Timer:
    """Wall time, and CPU seconds of this process and of the server, around a block."""

    def __init__(self, server_pid: int):
        self.pid = server_pid

    def __enter__(self):
        self.wall0, self.cpu0, self.srv0 = time.perf_counter(), cpu_self(), cpu_of(self.pid)
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = cpu_self() - self.cpu0
        self.server_cpu = cpu_of(self.pid) - self.srv0


def frame(tag: str, n: int):
    import pandas as pd

    return pd.DataFrame({"text": [f"{tag} row {i}: a short review to classify" for i in range(n)]})


def run_map(session, df, concurrency: int):
    out = df.llm.map("Sentiment of: {text}", model="loop/loopback-model",
                     concurrency=concurrency, progress=False)
    info = out.attrs["llm"]
    if info["ok"] != len(df):
        raise SystemExit(f"map lost rows: {info}")
    return info


async def litellm_gather(url: str, df, concurrency: int) -> int:
    from llm_notebook.providers.litellm_route import get_litellm

    litellm = get_litellm()  # configured as the package uses it: no retries, no banners
    gate = asyncio.Semaphore(concurrency)

    async def one(text: str):
        async with gate:
            resp = await litellm.acompletion(
                model="openai/loopback-model", api_base=url, api_key="sk-bench-0000",
                messages=[{"role": "user", "content": f"Sentiment of: {text}"}],
                max_retries=0, num_retries=0)
            return resp.choices[0].message.content

    results = await asyncio.gather(*(one(t) for t in df["text"]))
    return sum(1 for r in results if r)


def litellm_baseline(url: str, server_pid: int, concurrency: int, rows: int) -> Timer:
    """The baseline in a process of its own: litellm's import (~3x the objects of a process
    without it, so dearer garbage collections) and its threads must not weigh on our runs, nor
    ours on it. Same server, same rows, same warm-up."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--litellm-child", url,
                           str(server_pid), str(concurrency), str(rows)],
                          capture_output=True, text=True, timeout=900)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode != 0 or not last.startswith("{"):
        raise SystemExit(f"litellm baseline failed: {done.stderr[-2000:]}")
    numbers = json.loads(last)
    t = Timer(server_pid)
    t.wall, t.cpu, t.server_cpu = numbers["wall"], numbers["cpu"], numbers["server_cpu"]
    return t


def litellm_child(url: str, server_pid: int, concurrency: int, rows: int) -> None:
    import json

    asyncio.run(litellm_gather(url, frame(f"lwarm{concurrency}", concurrency * 2), concurrency))
    with Timer(server_pid) as t:
        done = asyncio.run(litellm_gather(url, frame(f"l{concurrency}", rows), concurrency))
    if done != rows:
        raise SystemExit(f"litellm baseline lost rows: {done}/{rows}")
    print(json.dumps({"wall": t.wall, "cpu": t.cpu, "server_cpu": t.server_cpu}))


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for text in fh:
            if text.startswith("VmRSS:"):
                return int(text.split()[1]) / 1024
    return 0.0


def large_child(url: str, server_pid: int, rows: int, concurrency: int, latency: float) -> None:
    """One large run in this (fresh) process; prints its numbers as JSON: RSS sampled while the
    run goes (at each quarter of its rows), after the result is assembled, and at its peak."""
    import gc
    import json
    import threading

    import pandas  # noqa: F401
    import llm_notebook
    from llm_notebook.batch import api

    os.environ["LLM_NOTEBOOK_LOG"] = os.path.join(tempfile.mkdtemp(prefix="bench-large-"), "log.db")
    session = llm_notebook.session()
    session.add_endpoint("loop", url)
    run_map(session, frame("lwarm", concurrency * 2), concurrency)   # connections, imports
    df = frame(f"large{rows}", rows)
    gc.collect()
    before = rss_mb()
    run, schema = api.prepare(session, frame=df, prompt="Sentiment of: {text}",
                              model="loop/loopback-model", concurrency=concurrency,
                              progress=False, keep_answers=False)   # as df.llm.map runs it
    quarters: list = []
    ended = threading.Event()

    def sample() -> None:
        while not ended.wait(0.2):
            if run.counters["done"] >= rows * (len(quarters) + 1) / 4 and len(quarters) < 4:
                quarters.append(rss_mb() - before)

    threading.Thread(target=sample, daemon=True).start()
    with Timer(server_pid) as t:
        api.run_sync(run, False)
    ended.set()
    during = rss_mb() - before
    out = api.frame_result(run, df.index, schema)
    if out.attrs["llm"]["ok"] != rows:
        raise SystemExit(f"the large run lost rows: {out.attrs['llm']}")
    result = rss_mb() - before
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    logged = session.log.count_calls(job_id=run.job_id)
    print(json.dumps({"wall": t.wall, "cpu": t.cpu, "server_cpu": t.server_cpu, "before_mb": before,
                      "quarters_mb": quarters + [during] * (4 - len(quarters)),
                      "with_result_mb": result, "peak_mb": peak, "logged": logged}))


def large_run(url: str, server_pid: int, rows: int, concurrency: int, latency: float) -> dict:
    import json
    import subprocess

    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--large-child", url,
                           str(server_pid), str(rows), str(concurrency), str(latency)],
                          capture_output=True, text=True, timeout=7200)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode != 0 or not last.startswith("{"):
        raise SystemExit(f"large run failed: {done.stderr[-2000:]}")
    return json.loads(last)


def line(name: str, c: int, t: Timer, bound: float, rows: int) -> dict:
    ratio = bound / t.wall
    print(f"  {name:<22} C={c:<4} wall {t.wall:6.3f} s   bound {bound:6.3f} s   ratio {ratio:5.2f}"
          f"   cpu/row: client {t.cpu / rows * 1e6:5.0f} us, server {t.server_cpu / rows * 1e6:5.0f} us",
          flush=True)
    return {"name": name, "c": c, "wall": t.wall, "ratio": ratio}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cached-rows", type=int, default=10_000)
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--large-rows", type=int, nargs="*", default=[100_000])
    parser.add_argument("--large-concurrency", type=int, default=256)
    parser.add_argument("--large-only", action="store_true",
                        help="only the large runs (skip the throughput and cached cases)")
    parser.add_argument("--litellm-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--large-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.litellm_child:
        url, pid, c, rows = args.litellm_child
        litellm_child(url, int(pid), int(c), int(rows))
        return 0
    if args.large_child:
        url, pid, rows, c, latency = args.large_child
        large_child(url, int(pid), int(rows), int(c), float(latency))
        return 0

    os.environ["LLM_NOTEBOOK_LOG"] = os.path.join(tempfile.mkdtemp(prefix="bench-batch-"), "log.db")
    import pandas  # noqa: F401  (registers df.llm through the import hook)

    import llm_notebook
    from llm_notebook.testing.loopback import LoopbackServer

    targets = {64: 0.90, 256: 0.75}
    results = []
    print(f"bench_batch: {args.rows} rows, {args.latency * 1000:.0f} ms latency, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    large = []
    walls: list = []
    with LoopbackServer(latency=args.latency) as server:
        pid = server._proc.pid
        session = llm_notebook.session()
        session.add_endpoint("loop", server.url)
        for c in ([] if args.large_only else args.concurrency):
            bound = args.rows * args.latency / c
            print(f"\nconcurrency {c} (ideal bound {bound:.3f} s)", flush=True)
            run_map(session, frame(f"warm{c}", c * 2), c)
            for rep in range(args.repeat):
                with Timer(pid) as t:
                    run_map(session, frame(f"c{c}r{rep}", args.rows), c)
                results.append(line(f"df.llm.map #{rep + 1}", c, t, bound, args.rows))
            if not args.skip_litellm:
                t = litellm_baseline(server.url, pid, c, args.rows)
                results.append(line("litellm + gather", c, t, bound, args.rows))

        for rows in args.large_rows:
            c = args.large_concurrency
            bound = rows * args.latency / c
            print(f"\nlarge run: {rows:,} rows at C={c} (ideal bound {bound:.1f} s), in a fresh "
                  "process", flush=True)
            numbers = large_run(server.url, pid, rows, c, args.latency)
            ratio = bound / numbers["wall"]
            quarters = " / ".join(f"+{q:.0f}" for q in numbers["quarters_mb"])
            print(f"  df.llm.map            wall {numbers['wall']:7.1f} s   ratio {ratio:5.2f}   "
                  f"logged {numbers['logged'] / numbers['wall']:,.0f} rows/s   cpu/row: client "
                  f"{numbers['cpu'] / rows * 1e6:4.0f} us, server "
                  f"{numbers['server_cpu'] / rows * 1e6:4.0f} us\n"
                  f"  RSS ({numbers['before_mb']:.0f} MB before)   during the run, at 1/4, 1/2, 3/4, "
                  f"all rows: {quarters} MB   with the result Series: "
                  f"+{numbers['with_result_mb']:.0f} MB   peak {numbers['peak_mb']:.0f} MB",
                  flush=True)
            if numbers["logged"] != rows:
                raise SystemExit(f"the large run logged {numbers['logged']} of {rows} rows")
            large.append({"rows": rows, "c": c, "ratio": ratio, "peak_mb": numbers["peak_mb"],
                          "during": numbers["quarters_mb"], "result": numbers["with_result_mb"]})

        if not args.large_only:
            print(f"\ncached re-run of {args.cached_rows} rows", flush=True)
            server.configure(latency=0.0)
            big = frame("cached", args.cached_rows)
            run_map(session, big, 256)  # fill the cache (not timed)
            before = server.stats()["requests"]
            for _ in range(args.repeat):
                with Timer(pid) as t:
                    info = run_map(session, big, 256)
                sent = server.stats()["requests"] - before
                walls.append(t.wall)
                print(f"  cached re-run          wall {t.wall:6.3f} s   requests {sent}   "
                      f"cached {info['cached']}", flush=True)
                if sent or info["cached"] != args.cached_rows:
                    raise SystemExit("the cached re-run sent requests")

    print(f"\nsummary (load average {os.getloadavg()[0]:.2f} at end)")
    ok = True
    for c in ([] if args.large_only else args.concurrency):
        ours = [r["ratio"] for r in results if r["c"] == c and r["name"].startswith("df.llm.map")]
        base = [r["ratio"] for r in results if r["c"] == c and r["name"] == "litellm + gather"]
        target = targets.get(c)
        best, median = max(ours), statistics.median(ours)
        verdict = "" if target is None else (" MEETS" if best >= target else " BELOW") + f" target {target:.2f}"
        ok &= target is None or best >= target
        print(f"  C={c:<4} df.llm.map ratio best {best:.2f}, median {median:.2f}{verdict}"
              + (f"; litellm + gather {base[0]:.2f}" if base else ""))
    if walls:
        cached_ok = min(walls) <= 1.0
        ok &= cached_ok
        print(f"  cached re-run of {args.cached_rows}: best {min(walls):.3f} s, median "
              f"{statistics.median(walls):.3f} s, 0 requests{' MEETS' if cached_ok else ' BELOW'} "
              "target 1.0 s")
    for r in large:
        print(f"  large run of {r['rows']:,} rows at C={r['c']}: ratio {r['ratio']:.2f}; RSS during "
              f"the run +{r['during'][0]:.0f} MB at 1/4 of the rows, +{r['during'][-1]:.0f} MB at "
              f"the end; +{r['result']:.0f} MB with the result; peak {r['peak_mb']:.0f} MB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
