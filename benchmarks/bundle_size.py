"""Sizes of the widget bundles in llm_notebook/static/: raw and gzipped, each and in total.

Every widget bundle is self-contained (anywidget loads a widget's ESM from a string, so bundles
cannot share chunks) and travels to the browser with every widget, so the total is budgeted:
exits 1 when the gzipped total is over the limit (default 250 KB), 2 when nothing is built.

    python benchmarks/bundle_size.py [--limit-kb 250] [--static llm_notebook/static]
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KB = 1000


def sizes(static: Path) -> list[tuple[str, int, int]]:
    rows = []
    for path in sorted(static.glob("*")):
        if path.suffix in (".js", ".css") and path.is_file():
            data = path.read_bytes()
            rows.append((path.name, len(data), len(gzip.compress(data, compresslevel=9, mtime=0))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-kb", type=float, default=250.0, help="budget for the gzipped total, in KB (1000 bytes)")
    parser.add_argument("--static", type=Path, default=ROOT / "llm_notebook" / "static", help="folder of built bundles")
    args = parser.parse_args(argv)

    rows = sizes(args.static)
    if not rows:
        print(f"no bundles in {args.static}: run `npm ci && npm run build` in js/ first", file=sys.stderr)
        return 2
    width = max(len(name) for name, _, _ in rows + [("total", 0, 0)])
    print(f"{'bundle':<{width}}  {'raw KB':>9}  {'gzip KB':>9}")
    for name, raw, gz in rows:
        print(f"{name:<{width}}  {raw / KB:>9.1f}  {gz / KB:>9.1f}")
    total_raw = sum(raw for _, raw, _ in rows)
    total_gz = sum(gz for _, _, gz in rows)
    print(f"{'total':<{width}}  {total_raw / KB:>9.1f}  {total_gz / KB:>9.1f}")
    if total_gz > args.limit_kb * KB:
        print(f"gzipped total {total_gz / KB:.1f} KB is over the {args.limit_kb:g} KB budget", file=sys.stderr)
        return 1
    print(f"within the {args.limit_kb:g} KB gzipped budget ({total_gz / (args.limit_kb * KB):.0%} used)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
