import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it, vi } from "vitest";
import gridWidget from "../src/widgets/grid";
import { diffStats, renderDiff, tokenize, wordDiff, type DiffOp } from "../src/widgets/grid/diff";
import { buildTable, cellIndex, keepRow, LAYOUTS, summarize, visibleRange } from "../src/widgets/grid/layout";
import type { CellData, Spec } from "../src/widgets/grid/types";
import { fakeModel, mount } from "./widget-fakes";

function side(ops: DiffOp[], kind: "del" | "ins"): string {
  return ops.filter((o) => o.kind === "same" || o.kind === kind).map((o) => o.text).join("");
}

describe("wordDiff", () => {
  it("marks the changed words only", () => {
    const ops = wordDiff("The capital of France is Paris.", "The capital of France is Lyon, surely.");
    expect(ops).toEqual([
      { kind: "same", text: "The capital of France is " },
      { kind: "del", text: "Paris." },
      { kind: "ins", text: "Lyon, surely." },
    ]);
    expect(diffStats(ops)).toEqual({ removed: 1, added: 2 });
  });

  it("finds the common words in the middle (LCS, not just prefix and suffix)", () => {
    const ops = wordDiff("a b c d e", "a x c d y e");
    expect(ops.filter((o) => o.kind === "same").map((o) => o.text.trim())).toEqual(["a", "c d", "e"]);
    expect(ops.filter((o) => o.kind === "del").map((o) => o.text.trim())).toEqual(["b"]);
    expect(ops.filter((o) => o.kind === "ins").map((o) => o.text.trim())).toEqual(["x", "y"]);
  });

  it("always rebuilds both texts exactly", () => {
    const words = ["alpha", "beta", "gamma", "delta", "\n", "  ", "eps"];
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const text = () => Array.from({ length: Math.floor(rand() * 30) }, () => words[Math.floor(rand() * words.length)]).join(" ");
    for (let n = 0; n < 200; n++) {
      const a = text();
      const b = text();
      const ops = wordDiff(a, b);
      expect(side(ops, "del")).toBe(a);
      expect(side(ops, "ins")).toBe(b);
    }
  });

  it("handles empty and identical texts", () => {
    expect(wordDiff("", "")).toEqual([]);
    expect(wordDiff("same text", "same text")).toEqual([{ kind: "same", text: "same text" }]);
    expect(wordDiff("", "new")).toEqual([{ kind: "ins", text: "new" }]);
    expect(diffStats(wordDiff("x y", "x y"))).toEqual({ removed: 0, added: 0 });
  });

  it("falls back to one replacement when the changed middle is too big for the table", () => {
    const a = Array.from({ length: 3000 }, (_, i) => `a${i}`).join(" ");
    const b = Array.from({ length: 3000 }, (_, i) => `b${i}`).join(" ");
    const ops = wordDiff(`start ${a} end`, `start ${b} end`, 1_000_000);
    expect(ops.map((o) => o.kind)).toEqual(["same", "del", "ins", "same"]);
    expect(side(ops, "ins")).toBe(`start ${b} end`);
  });

  it("renders hostile text as text", () => {
    const el = document.createElement("div");
    renderDiff(el, wordDiff("<b>ok</b>", '<img src=x onerror="window.__pwned=1">'));
    expect(el.querySelector("img, b")).toBeNull();
    expect(el.querySelector("ins")?.textContent).toContain("<img");
    expect(tokenize("a  b\nc")).toEqual(["a", "  ", "b", "\n", "c"]);
  });
});

function cell(index: number, over: Partial<CellData> = {}): CellData {
  return {
    index, version: 1, status: "ok", output: `out ${index}`, error: null, error_kind: null,
    input_tokens: 3, output_tokens: 4, cost: 0.001, latency: 0.5, cached: false, checks: [],
    thumb: null, score: null, comment: null, ...over,
  };
}

describe("layout", () => {
  const sizes = { input: 3, prompt: 2, model: 4 };

  it("uses Python's cell order: inputs, then prompts, then models", () => {
    expect(cellIndex({ input: 0, prompt: 0, model: 0 }, sizes)).toBe(0);
    expect(cellIndex({ input: 0, prompt: 0, model: 3 }, sizes)).toBe(3);
    expect(cellIndex({ input: 0, prompt: 1, model: 0 }, sizes)).toBe(4);
    expect(cellIndex({ input: 2, prompt: 1, model: 3 }, sizes)).toBe(23);
  });

  it.each(LAYOUTS.map((l) => [l.id, l] as const))("layout %s shows every cell exactly once", (_id, layout) => {
    const table = buildTable(layout, sizes);
    const seen: number[] = [];
    table.rows.forEach((_, r) => table.cols.forEach((__, c) => seen.push(table.at(r, c))));
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, i) => i));
  });

  it("filters rows", () => {
    const pass: [boolean, string] = [true, "ok"];
    const fail: [boolean, string] = [false, "missing 'Paris'"];
    const good = [cell(0, { checks: [pass] }), cell(1, { checks: [pass], output: "out 0" })];
    const bad = [cell(2, { checks: [fail] }), cell(3, { checks: [pass] })];
    expect(keepRow("failed", good)).toBe(false);
    expect(keepRow("failed", bad)).toBe(true);
    expect(keepRow("failed", [cell(4, { status: "error", output: null })])).toBe(true);
    expect(keepRow("differ", good)).toBe(false);
    expect(keepRow("differ", bad)).toBe(true);
    expect(keepRow("differ", [cell(0, { output: " same " }), cell(1, { output: "same" })])).toBe(false);
    expect(keepRow("rated", good)).toBe(false);
    expect(keepRow("rated", [cell(0, { score: 0.5 })])).toBe(true);
    expect(keepRow("all", [])).toBe(true);
  });

  it("summarizes a column like grid.summary()", () => {
    const pass: [boolean, string] = [true, ""];
    const fail: [boolean, string] = [false, ""];
    const s = summarize(
      [
        cell(0, { checks: [pass, pass], latency: 1, cost: 0.5, thumb: 1 }),
        cell(1, { checks: [pass, fail], latency: 3, cost: 0.25, thumb: -1 }),
        cell(2, { checks: [pass, [null, "judging…"]], latency: 2, cost: null }),
        cell(3, { status: "error", output: null, checks: [fail, fail], latency: 9, cost: null }),
      ],
      2,
    );
    expect(s).toEqual({ passed: 1, judged: 3, passRate: 1 / 3, meanLatency: 2, totalCost: 0.75, up: 1, down: 1 });
  });

  it("computes the rows in sight", () => {
    expect(visibleRange(0, 600, 100, 1000, 2)).toEqual([0, 8]);
    expect(visibleRange(5000, 600, 100, 1000, 2)).toEqual([48, 58]);
    expect(visibleRange(0, 600, 100, 3, 2)).toEqual([0, 3]);
  });
});

// -- the widget in jsdom ----------------------------------------------------------------------

function gridSpec(inputs: number, prompts: number, models: number, checks: string[] = []): Spec {
  return {
    id: "test",
    prompts: Array.from({ length: prompts }, (_, p) => ({ label: `prompt ${p}`, template: `P${p} {x}`, system: null, ref: null })),
    models: Array.from({ length: models }, (_, m) => `loop/m${m}`),
    columns: ["x"],
    inputs: Array.from({ length: inputs }, (_, i) => [`value ${i}`]),
    checks,
  };
}

const progress = { total: 0, done: 0, ok: 0, errors: 0, cached: 0, judging: 0, running: false, spent: 0, error: null };

type Handlers = Record<string, (p: Record<string, unknown>) => unknown>;

async function mounted(spec: Spec, cells: CellData[], handlers: Handlers = {}, widget: typeof gridWidget = gridWidget) {
  const errors = cells.filter((c) => c.status === "error").length;
  const state = () => ({ seq: 1, cells, progress: { ...progress, total: cells.length, done: cells.length, errors } });
  const fake = fakeModel({ spec }, { state, ...handlers });
  const view = await mount(widget, fake.model);
  await vi.waitFor(() => expect(view.el.querySelectorAll(".llm-grid-cell[data-status=ok]").length).toBeGreaterThan(0));
  return { ...fake, ...view };
}

describe("grid widget", () => {
  it("renders only the rows in sight of a 400-cell grid, and the rest on scroll", async () => {
    const spec = gridSpec(100, 2, 2);
    const cells = Array.from({ length: 400 }, (_, i) => cell(i));
    const { el, unmount } = await mounted(spec, cells);
    const rows = el.querySelectorAll(".llm-grid-body .llm-grid-row");
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThan(10);
    expect(el.querySelector('.llm-grid-cell[data-index="399"]')).toBeNull();

    const scroller = el.querySelector(".llm-grid-scroll") as HTMLElement;
    Object.defineProperty(scroller, "scrollTop", { value: 99 * 180, configurable: true });
    scroller.dispatchEvent(new Event("scroll"));
    await vi.waitFor(() => expect(el.querySelector('.llm-grid-cell[data-index="399"]')?.textContent).toContain("out 399"));
    expect(el.querySelector('.llm-grid-cell[data-index="0"]')).toBeNull();
    expect(el.querySelectorAll(".llm-grid-body .llm-grid-row").length).toBeLessThan(10);
    await unmount();
  });

  it("sanitizes outputs, shows checks, metrics and column summaries", async () => {
    const spec = gridSpec(1, 1, 2, ["contains('Paris')"]);
    const cells = [
      cell(0, { output: '**Paris** <img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>', checks: [[true, "found 'Paris'"]], latency: 1.5, cost: 0.002 }),
      cell(1, { status: "error", output: null, error: "boom", error_kind: "server_error", checks: [[false, "no output: the call failed"]] }),
    ];
    const { el, unmount } = await mounted(spec, cells);
    const first = el.querySelector('.llm-grid-cell[data-index="0"]')!;
    expect(first.querySelector("strong")?.textContent).toBe("Paris");
    expect(el.querySelector(".llm-grid-body img, .llm-grid-body script")).toBeNull();
    expect(first.querySelector(".llm-grid-mark")?.className).toContain("llm-grid-pass");
    expect(first.querySelector(".llm-grid-metrics")?.textContent).toBe("1.50 s · 7 tok · $0.0020");
    expect(el.querySelector('.llm-grid-cell[data-index="1"]')?.textContent).toContain("server_error: boom");
    const summaries = Array.from(el.querySelectorAll(".llm-grid-summary")).map((s) => s.textContent);
    expect(summaries[0]).toContain("pass 100% (1/1)");
    expect(summaries[1]).toContain("pass 0% (0/1)");
    expect(el.querySelector(".llm-grid-status")?.textContent).toContain("2/2 done · 1 failed");
    await unmount();
  });

  it("rates a cell and shows the saved rating", async () => {
    const spec = gridSpec(1, 1, 2);
    const cells = [cell(0), cell(1)];
    const { el, requests, unmount } = await mounted(spec, cells, {
      rate: (p) => ({ ...cell(p.index as number), version: 2, thumb: p.thumb as 1 }),
    });
    (el.querySelector('.llm-grid-cell[data-index="1"] [data-action="up"]') as HTMLButtonElement).click();
    await vi.waitFor(() =>
      expect(el.querySelector('.llm-grid-cell[data-index="1"] [data-action="up"]')?.getAttribute("aria-pressed")).toBe("true"),
    );
    expect(requests.find((r) => r.method === "rate")?.params).toEqual({ index: 1, thumb: 1 });
    await unmount();
  });

  it("shows the word diff of two picked cells, and filters failed rows", async () => {
    const spec = gridSpec(3, 1, 2, ["c"]);
    const pass: [boolean, string] = [true, ""];
    const fail: [boolean, string] = [false, "no"];
    const cells = [
      cell(0, { output: "The capital is Paris", checks: [pass] }),
      cell(1, { output: "The capital is Lyon", checks: [pass] }),
      cell(2, { checks: [pass] }),
      cell(3, { checks: [fail] }),
      cell(4, { checks: [pass] }),
      cell(5, { checks: [pass] }),
    ];
    const { el, unmount } = await mounted(spec, cells);
    (el.querySelector('.llm-grid-cell[data-index="0"] [data-action="pick"]') as HTMLButtonElement).click();
    (el.querySelector('.llm-grid-cell[data-index="1"] [data-action="pick"]') as HTMLButtonElement).click();
    expect(el.querySelector(".llm-grid-diff del")?.textContent).toBe("Paris");
    expect(el.querySelector(".llm-grid-diff ins")?.textContent).toBe("Lyon");

    // Enter on an output opens it in the panel (keyboard users have no click)
    const out = el.querySelector('.llm-grid-cell[data-index="3"] .llm-grid-out') as HTMLElement;
    out.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(el.querySelector(".llm-grid-panel-title")?.textContent).toBe("input 2 · loop/m1");
    expect(el.querySelector(".llm-grid-checks")?.textContent).toContain("✗ c — no");

    const filter = el.querySelector('select[aria-label="Filter rows"]') as HTMLSelectElement;
    filter.value = "failed";
    filter.dispatchEvent(new Event("change"));
    await vi.waitFor(() => expect(el.querySelectorAll(".llm-grid-body .llm-grid-row").length).toBe(1));
    expect((el.querySelector(".llm-grid-body .llm-grid-row") as HTMLElement).dataset.row).toBe("1");
    await unmount();
  });

  it("pivots: models down the rows", async () => {
    const spec = gridSpec(2, 1, 3);
    const { el, unmount } = await mounted(spec, Array.from({ length: 6 }, (_, i) => cell(i)));
    const layout = el.querySelector('select[aria-label="Layout"]') as HTMLSelectElement;
    layout.value = "transposed";
    layout.dispatchEvent(new Event("change"));
    await vi.waitFor(() => expect(el.querySelectorAll(".llm-grid-body .llm-grid-row").length).toBe(3));
    expect(el.querySelectorAll(".llm-grid-colhead").length).toBe(2);
    const firstRow = Array.from(el.querySelectorAll('.llm-grid-row[data-row="0"] .llm-grid-cell')).map((c) => (c as HTMLElement).dataset.index);
    expect(firstRow).toEqual(["0", "3"]);
    await unmount();
  });

  it("applies updates by version and offers exports as downloads", async () => {
    const spec = gridSpec(1, 1, 1);
    const created: Blob[] = [];
    URL.createObjectURL = vi.fn((b: Blob) => {
      created.push(b);
      return "blob:fake";
    });
    URL.revokeObjectURL = vi.fn();
    const downloads: string[] = [];
    const click = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      downloads.push(this.download);
    });
    const { el, fromPython, unmount } = await mounted(spec, [cell(0)], {
      export: (p) => ({ filename: `comparison-test.${p.format}`, mime: "text/csv", content: "prompt,model\n" }),
    });
    fromPython({ type: "grid.update", seq: 2, cells: [cell(0, { version: 3, output: "newer" })], progress });
    fromPython({ type: "grid.update", seq: 3, cells: [cell(0, { version: 2, output: "older" })], progress });
    await vi.waitFor(() => expect(el.querySelector(".llm-grid-out")?.textContent?.trim()).toBe("newer"));
    (el.querySelector('[data-action="export-csv"]') as HTMLButtonElement).click();
    await vi.waitFor(() => expect(el.querySelector(".llm-grid-status")?.textContent).toContain("Exported comparison-test.csv"));
    const text = await new Promise<string>((resolve) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result));
      reader.readAsText(created[0]!);
    });
    expect(text).toBe("prompt,model\n");
    expect(created[0]!.type).toBe("text/csv");
    expect(downloads).toEqual(["comparison-test.csv"]);
    click.mockRestore();
    await unmount();
  });
});

// npm test runs in js/; the bundle is what `npm run build` wrote for the Python package.
const bundle = resolve(process.cwd(), "..", "llm_notebook", "static", "grid.js");

describe("grid bundle", () => {
  it.skipIf(!existsSync(bundle))("renders cells and sanitizes them from the built bundle", async () => {
    const mod = (await import(/* @vite-ignore */ pathToFileURL(bundle).href)) as { default: typeof gridWidget };
    const spec = gridSpec(2, 1, 1, ["c"]);
    const cells = [cell(0, { output: "**hi** <img src=x onerror=alert(1)>", checks: [[true, ""]] }), cell(1, { checks: [[false, "no"]] })];
    const { el, unmount } = await mounted(spec, cells, {}, mod.default);
    expect(el.querySelector('.llm-grid-cell[data-index="0"] strong')?.textContent).toBe("hi");
    expect(el.querySelector(".llm-grid-body img")).toBeNull();
    expect(el.querySelectorAll(".llm-grid-fail").length).toBe(1);
    await unmount();
  });
});
