/**
 * How cells are laid out (which of input / prompt / model run down the rows and which across),
 * which rows a filter keeps, and the column summaries. Pure functions, no DOM.
 */
import type { CellData } from "./types";

export type Dim = "input" | "prompt" | "model";
export type Coord = Record<Dim, number>;

export interface Layout {
  id: string;
  label: string;
  rows: Dim[];
  cols: Dim[];
}

export const LAYOUTS: Layout[] = [
  { id: "inputs", label: "Rows: inputs · columns: prompt × model", rows: ["input"], cols: ["prompt", "model"] },
  { id: "input-prompt", label: "Rows: input × prompt · columns: model", rows: ["input", "prompt"], cols: ["model"] },
  { id: "input-model", label: "Rows: input × model · columns: prompt", rows: ["input", "model"], cols: ["prompt"] },
  { id: "transposed", label: "Rows: prompt × model · columns: input", rows: ["prompt", "model"], cols: ["input"] },
];

export type Sizes = Coord;

/** Every combination of `dims`, the first one varying slowest. */
export function combinations(dims: Dim[], sizes: Sizes): Partial<Coord>[] {
  let out: Partial<Coord>[] = [{}];
  for (const dim of dims) {
    const next: Partial<Coord>[] = [];
    for (const partial of out) for (let k = 0; k < sizes[dim]; k++) next.push({ ...partial, [dim]: k });
    out = next;
  }
  return out;
}

/** The cell index Python uses: inputs slowest, then prompts, then models. */
export function cellIndex(c: Coord, sizes: Sizes): number {
  return (c.input * sizes.prompt + c.prompt) * sizes.model + c.model;
}

export interface Table {
  rows: Partial<Coord>[];
  cols: Partial<Coord>[];
  /** Cell index at (row, column). */
  at(row: number, col: number): number;
}

export function buildTable(layout: Layout, sizes: Sizes): Table {
  const rows = combinations(layout.rows, sizes);
  const cols = combinations(layout.cols, sizes);
  return {
    rows,
    cols,
    at: (r, c) => cellIndex({ ...rows[r], ...cols[c] } as Coord, sizes),
  };
}

export type Filter = "all" | "failed" | "differ" | "rated";

export const FILTERS: { id: Filter; label: string }[] = [
  { id: "all", label: "All rows" },
  { id: "failed", label: "Failed checks" },
  { id: "differ", label: "Outputs differ" },
  { id: "rated", label: "Rated" },
];

export function failed(cell: CellData): boolean {
  return cell.status === "error" || cell.checks.some((v) => v !== null && v[0] === false);
}

export function rated(cell: CellData): boolean {
  return cell.thumb !== null || cell.score !== null || !!cell.comment;
}

/** Does a row (its cells, in column order) pass the filter? */
export function keepRow(filter: Filter, cells: (CellData | undefined)[]): boolean {
  switch (filter) {
    case "failed":
      return cells.some((c) => c !== undefined && failed(c));
    case "rated":
      return cells.some((c) => c !== undefined && rated(c));
    case "differ": {
      const outputs = new Set<string>();
      for (const c of cells) if (c && c.status === "ok") outputs.add((c.output ?? "").trim());
      return outputs.size > 1;
    }
    default:
      return true;
  }
}

export interface Summary {
  /** Cells whose checks all passed, of the cells whose checks are all decided. */
  passed: number;
  judged: number;
  passRate: number | null;
  meanLatency: number | null;
  totalCost: number | null;
  up: number;
  down: number;
}

/** A column's summary (the same numbers as Python's grid.summary()). */
export function summarize(cells: CellData[], nChecks: number): Summary {
  let passed = 0;
  let judged = 0;
  let latency = 0;
  let timed = 0;
  let cost = 0;
  let priced = 0;
  let up = 0;
  let down = 0;
  for (const c of cells) {
    if (nChecks > 0 && c.status !== "pending" && c.checks.every((v) => v !== null && v[0] !== null)) {
      judged++;
      if (c.checks.every((v) => v !== null && v[0] === true)) passed++;
    }
    if (c.status === "ok" && c.latency !== null) {
      latency += c.latency;
      timed++;
    }
    if (c.cost !== null) {
      cost += c.cost;
      priced++;
    }
    if (c.thumb === 1) up++;
    else if (c.thumb === -1) down++;
  }
  return {
    passed,
    judged,
    passRate: judged ? passed / judged : null,
    meanLatency: timed ? latency / timed : null,
    totalCost: priced ? cost : null,
    up,
    down,
  };
}

/** First and last (exclusive) row to render for a scroll position, with some rows of slack. */
export function visibleRange(scrollTop: number, viewport: number, rowHeight: number, count: number, overscan = 3): [number, number] {
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(count, Math.ceil((scrollTop + viewport) / rowHeight) + overscan);
  return [first, Math.max(first, last)];
}
