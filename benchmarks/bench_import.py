"""Import time of `llm_notebook`, measured in fresh interpreters (the target is ≤ 0.3 s).

Each run starts a new Python process and times `import llm_notebook` inside it with
time.perf_counter (interpreter start-up excluded). Prints the median, best and worst of N runs,
whether heavy modules (litellm, pandas, ...) were loaded, and the slowest imports of one run
from `python -X importtime`.

    python benchmarks/bench_import.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_S = 0.3
HEAVY = ("litellm", "pandas", "numpy", "aiohttp", "ipywidgets", "anywidget", "llama_cpp", "openai")

PROBE = """
import json, sys, time
started = time.perf_counter()
import llm_notebook
elapsed = time.perf_counter() - started
print(json.dumps({"elapsed": elapsed, "modules": len(sys.modules),
                  "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def env() -> dict:
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)
    return e


def one_run() -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env(), capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def slowest_imports(n: int = 8) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, module) of the imports that cost most by themselves."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import llm_notebook"],
                         env=env(), capture_output=True, text=True, check=True)
    rows = []
    for line in out.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            rows.append((int(parts[0]), int(parts[1]), parts[2].strip()))
    return sorted(rows, reverse=True)[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)

    one_run()  # warm the OS file cache; not counted
    runs = [one_run() for _ in range(args.runs)]
    times = sorted(r["elapsed"] for r in runs)
    median = statistics.median(times)
    heavy = sorted({m for r in runs for m in r["heavy"]})
    print(f"import llm_notebook, {args.runs} fresh processes:")
    print(f"  median {median * 1000:7.1f} ms   best {times[0] * 1000:7.1f} ms   "
          f"worst {times[-1] * 1000:7.1f} ms   (target {TARGET_S * 1000:.0f} ms)")
    print(f"  modules loaded: {runs[0]['modules']}; heavy modules: {heavy or 'none'}")
    print("  costliest imports of one run (python -X importtime), self / cumulative:")
    for self_us, cumulative_us, name in slowest_imports():
        print(f"    {self_us / 1000:6.1f} ms / {cumulative_us / 1000:6.1f} ms  {name}")
    passed = median <= TARGET_S and not heavy
    print(f"{'PASS' if passed else 'FAIL'}: median import time "
          f"{median * 1000:.1f} ms vs {TARGET_S * 1000:.0f} ms target"
          + ("" if not heavy else f"; heavy modules imported: {heavy}"))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
