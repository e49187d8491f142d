"""Parsers on hostile input: the `-f code` extractor, `Response.json()` and the template-file
reader (targets: 1 MB of adversarial reply in ≤ 0.1 s; a 500-byte YAML alias bomb refused in
≤ 0.05 s).

For each 1 MB reply shape (unclosed fences, tiny blocks, ...) it prints the best of N runs of
`extract_code`, the same for a 100 KB reply (linear time means ~10× less), the ratio of the two,
and the best time of the pattern this extractor replaced (quadratic; timed on 10 and 40 KB only,
since 1 MB takes hours) for contrast. Then `Response.json()` on the same replies, and the alias
bomb against the template importer. Exits 1 when any of them misses its target.

    python benchmarks/bench_redos.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llm_notebook.magics.output import extract_code  # noqa: E402
from llm_notebook.response import Response  # noqa: E402
from llm_notebook.testing.hostile_inputs import ALIAS_BOMB, FENCE_SHAPES  # noqa: E402

TARGET_S = 0.1
BOMB_TARGET_S = 0.05
SHAPES = {**FENCE_SHAPES, "plain lines": "word\n"}
# The pattern extract_code used before (kept here only to show what it cost).
OLD = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^ {0,3}\1[ \t]*$",
                 re.DOTALL | re.MULTILINE)



def best(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    print(f"extract_code (-f code), best of {args.runs}; target ≤ {TARGET_S:.1f} s for 1 MB")
    print(f"{'shape':32} {'1 MB':>9} {'100 KB':>9} {'ratio':>6} {'old, 10 KB':>11} {'old, 40 KB':>11}")
    worst = 0.0
    for name, unit in SHAPES.items():
        big = unit * (1_000_000 // len(unit))
        small = unit * (100_000 // len(unit))
        t_big = best(lambda: extract_code(big), args.runs)
        t_small = best(lambda: extract_code(small), args.runs)
        old = [best(lambda s=unit * (n // len(unit)): list(OLD.finditer(s)), 1) for n in (10_000, 40_000)]
        worst = max(worst, t_big)
        print(f"{name:32} {t_big * 1000:7.1f}ms {t_small * 1000:7.1f}ms {t_big / max(t_small, 1e-9):6.1f}"
              f" {old[0] * 1000:9.1f}ms {old[1] * 1000:9.1f}ms")
    print(f"worst 1 MB: {worst * 1000:.1f} ms = {worst / TARGET_S:.2f} of the target")

    print("\nResponse.json() on the same 1 MB replies (not JSON: each raises after its scan)")
    worst_json = 0.0
    for name, unit in SHAPES.items():
        r = Response(text=unit * (1_000_000 // len(unit)), model="m")

        def parse():
            try:
                r.json()
            except ValueError:
                pass
        t_json = best(parse, args.runs)
        worst_json = max(worst_json, t_json)
        print(f"{name:32} {t_json * 1000:7.1f}ms")
    print(f"worst 1 MB: {worst_json * 1000:.1f} ms = {worst_json / TARGET_S:.2f} of the target")

    from llm_notebook.templates import TemplateFileError
    from llm_notebook.templates.files import read

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bomb.yaml"
        path.write_text(ALIAS_BOMB)
        def refuse():
            try:
                read(path)
            except TemplateFileError:
                return
            raise SystemExit("the alias bomb was accepted")
        read_time = best(refuse, args.runs)
    print(f"\na {len(ALIAS_BOMB)}-byte YAML alias bomb (in an llm template's defaults: 9^9 = 387,420,489 values expanded) refused "
          f"in {read_time * 1000:.1f} ms (target {BOMB_TARGET_S * 1000:.0f} ms)")

    misses = [f"{what} {seconds * 1000:.1f} ms > {target * 1000:.0f} ms"
              for what, seconds, target in (("extract_code, worst 1 MB", worst, TARGET_S),
                                            ("Response.json(), worst 1 MB", worst_json, TARGET_S),
                                            ("alias bomb", read_time, BOMB_TARGET_S))
              if seconds > target]
    print("FAIL: " + "; ".join(misses) if misses else "PASS: every parser within its target")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
