"""Time to render a 400-cell comparison grid in a real browser (Playwright + Debian's Chromium).

The page is a static one that loads the built bundle (llm_notebook/static/grid.js + grid.css) the
way anywidget does (an ES module from a Blob URL) with a fake widget model that answers the
grid's `state` request from memory. No JupyterLab and no kernel: their start-up and message
latency would swamp the few milliseconds measured here, and vary more than the grid itself.
What is timed, each the median of --repeat runs:

  first paint  render() → the `state` answer applied → the visible cells drawn and painted
  scroll       jump to the last row → its cells drawn and painted
  stream       400 cells arriving as 40 `grid.update` messages of 10 → all drawn and painted
  filter       switch to "Failed checks" → the filtered rows drawn and painted

for two shapes of 400 cells: 100 inputs × 2 prompts × 2 models (tall) and 20 inputs ×
4 prompts × 5 models (wide). Every output is ~80 words of markdown with a list and a code span.

    python benchmarks/bench_grid_render.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "llm_notebook" / "static"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>%(css)s</style></head>
<body style="margin:0"><div id="host" style="width:1400px"></div></body></html>"""

# Runs in the page: a fake anywidget model, the bundle loaded from a Blob URL, and the timings.
SCRIPT = r"""
async ([source, shape]) => {
  const [inputs, prompts, models] = shape;
  const n = inputs * prompts * models;
  const words = "the model answered with a fairly long paragraph about capitals and rivers".split(" ");
  const output = (i) => `**Answer ${i}**: ` + Array.from({length: 80}, (_, k) => words[(i + k) % words.length]).join(" ")
    + "\n\n- first point\n- second point with `code`\n";
  const cell = (i, version) => ({
    index: i, version, status: "ok", output: output(i), error: null, error_kind: null,
    input_tokens: 20, output_tokens: 90, cost: 0.0001, latency: 0.8 + (i % 7) / 10, cached: false,
    checks: [[i % 5 !== 0, "reason"], [true, "ok"]], thumb: null, score: null, comment: null,
  });
  const progress = {total: n, done: n, ok: n, errors: 0, cached: 0, judging: 0, running: false, spent: 0, error: null};
  const spec = {
    id: "bench", columns: ["text", "expected"],
    prompts: Array.from({length: prompts}, (_, p) => ({label: `prompt ${p}`, template: `P${p}: {text}`, system: null, ref: null})),
    models: Array.from({length: models}, (_, m) => `provider/model-${m}`),
    inputs: Array.from({length: inputs}, (_, i) => [`input text number ${i}`, `expected ${i}`]),
    checks: ["contains('x')", "max_latency(2 s)"],
  };
  const listeners = new Map();
  const emit = (ev, ...a) => (listeners.get(ev) || []).forEach((f) => f(...a));
  let stateCells = [];
  const model = {
    get: (k) => (k === "spec" ? spec : undefined),
    set() {}, save_changes() {},
    on: (ev, f) => { if (!listeners.has(ev)) listeners.set(ev, []); listeners.get(ev).push(f); },
    off: (ev, f) => listeners.set(ev, (listeners.get(ev) || []).filter((g) => g !== f)),
    send: (msg) => {
      if (msg.type !== "request") return;
      const result = msg.method === "state" ? {seq: 1, cells: stateCells, progress} : null;
      setTimeout(() => emit("msg:custom", {type: "response", id: msg.id, ok: true, result}), 0);
    },
  };
  const url = URL.createObjectURL(new Blob([source], {type: "text/javascript"}));
  const widget = (await import(url)).default;
  const host = document.getElementById("host");
  const painted = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const until = async (test) => { while (!test()) await new Promise((r) => requestAnimationFrame(r)); await painted(); };
  const drawn = (i) => host.querySelector(`.llm-grid-cell[data-index="${i}"][data-status="ok"]`);
  const out = {};

  // first paint: every cell in the state answer
  stateCells = Array.from({length: n}, (_, i) => cell(i, 1));
  const el = document.createElement("div");
  host.replaceChildren(el);
  let t = performance.now();
  widget.initialize({model});
  const cleanup = widget.render({model, el});
  await until(() => drawn(0));
  out.first_paint_ms = performance.now() - t;
  out.cells_in_dom = host.querySelectorAll(".llm-grid-cell").length;

  // scroll to the end
  const scroller = host.querySelector(".llm-grid-scroll");
  t = performance.now();
  scroller.scrollTop = scroller.scrollHeight;
  await until(() => drawn(n - 1));
  out.scroll_ms = performance.now() - t;
  scroller.scrollTop = 0;
  await until(() => drawn(0));

  // streaming: a fresh grid whose cells arrive as updates
  cleanup && cleanup();
  stateCells = [];
  const el2 = document.createElement("div");
  host.replaceChildren(el2);
  const model2 = {...model};
  listeners.clear();
  widget.initialize({model: model2});
  const cleanup2 = widget.render({model: model2, el: el2});
  await painted();
  t = performance.now();
  for (let b = 0; b < n; b += 10) {
    const cells = Array.from({length: Math.min(10, n - b)}, (_, k) => cell(b + k, 2));
    emit("msg:custom", {type: "grid.update", seq: 10 + b, cells, progress});
  }
  await until(() => host.querySelectorAll(".llm-grid-cell").length > 0
    && host.querySelectorAll('.llm-grid-cell:not([data-status="ok"])').length === 0);
  out.stream_ms = performance.now() - t;

  // filter: failed checks only
  const filter = host.querySelector('select[aria-label="Filter rows"]');
  t = performance.now();
  filter.value = "failed";
  filter.dispatchEvent(new Event("change"));
  const rows = () => Array.from(host.querySelectorAll(".llm-grid-body .llm-grid-row"));
  await until(() => rows().length > 0 && rows().every((r) => r.querySelector(".llm-grid-fail")));
  out.filter_ms = performance.now() - t;
  out.rows_after_filter = host.querySelectorAll(".llm-grid-body .llm-grid-row").length;
  cleanup2 && cleanup2();
  return out;
}
"""

SHAPES = {"100 inputs × 2 prompts × 2 models": (100, 2, 2),
          "20 inputs × 4 prompts × 5 models": (20, 4, 5)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    bundle, css = STATIC / "grid.js", STATIC / "grid.css"
    if not bundle.is_file():
        print("llm_notebook/static/grid.js is missing: run `npm ci && npm run build` in js/",
              file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    source = bundle.read_text(encoding="utf-8")
    page_html = PAGE % {"css": css.read_text(encoding="utf-8") if css.is_file() else ""}
    results: dict[str, list[dict]] = {name: [] for name in SHAPES}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for _ in range(args.repeat):
                for name, shape in SHAPES.items():
                    page = browser.new_page(viewport={"width": 1440, "height": 900})
                    page.set_content(page_html)
                    results[name].append(page.evaluate(SCRIPT, [source, list(shape)]))
                    page.close()
        finally:
            browser.close()
    print(f"400-cell comparison grid in Chromium ({args.repeat} runs, median ms; "
          f"bundle {bundle.stat().st_size / 1000:.0f} KB)")
    print(f"{'shape':<36} {'first paint':>11} {'scroll':>8} {'stream':>8} {'filter':>8} {'cells in DOM':>13}")
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name:<36} {med['first_paint_ms']:>11.1f} {med['scroll_ms']:>8.1f} "
              f"{med['stream_ms']:>8.1f} {med['filter_ms']:>8.1f} {int(med['cells_in_dom']):>9d}/400")
    return 0


if __name__ == "__main__":
    sys.exit(main())
