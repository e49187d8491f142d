/**
 * The usage panel's charts, in plain SVG (no chart library: a few bars do not need 100 KB).
 *
 * Every chart is a <figure>: a caption, an <svg role="img"> whose aria-label says what it
 * shows in a sentence, and the same numbers as a <table> inside <details> (the text
 * alternative screen readers and keyboard users can read). Colours are CSS classes in
 * usage_panel.css mapped to JupyterLab's theme variables; bars carry <title> tooltips.
 * Text from the log (model and notebook names) only ever goes into textContent.
 */
import { el, svg } from "./dom";
import { formatCompact, niceTicks } from "./format";

const W = 560;
const H = 180;
const M = { top: 10, right: 10, bottom: 26, left: 54 };

export interface Bar {
  /** Axis and table label, e.g. "2024-03-01". */
  label: string;
  /** Stacked segments, bottom first: [value, css class, name] (name labels the table column). */
  parts: [number, string, string][];
  /** Tooltip of the whole bar. */
  title: string;
}

export interface ChartText {
  caption: string;
  /** One sentence saying what the chart shows (its aria-label). */
  summary: string;
  /** Table column headers: the label column first. */
  columns: string[];
  /** Table rows (already formatted). */
  rows: string[][];
}

function figure(className: string, text: ChartText, graphic: SVGSVGElement): HTMLElement {
  graphic.setAttribute("role", "img");
  graphic.setAttribute("aria-label", text.summary);
  const table = el("table", { class: "llm-usage-data" });
  const head = el("tr");
  for (const c of text.columns) head.append(el("th", { scope: "col", text: c }));
  table.append(el("thead", {}, [head]));
  const body = el("tbody");
  for (const row of text.rows) {
    const tr = el("tr");
    row.forEach((cell, i) => tr.append(el(i === 0 ? "th" : "td", i === 0 ? { scope: "row", text: cell } : { text: cell })));
    body.append(tr);
  }
  table.append(body);
  const details = el("details", { class: "llm-usage-details" }, [el("summary", { text: "Data as a table" }), table]);
  return el("figure", { class: `llm-usage-chart ${className}` }, [el("figcaption", { text: text.caption }), graphic, details]);
}

function frame(): SVGSVGElement {
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "xMidYMid meet", class: "llm-usage-svg", focusable: "false" });
}

function yAxis(root: SVGSVGElement, max: number, format: (v: number) => string): (v: number) => number {
  const ticks = niceTicks(max);
  const top = ticks[ticks.length - 1]!;
  const plotH = H - M.top - M.bottom;
  const y = (v: number): number => M.top + plotH - (top > 0 ? (v / top) * plotH : 0);
  for (const t of ticks) {
    root.append(svg("line", { class: "llm-usage-grid", x1: M.left, x2: W - M.right, y1: y(t), y2: y(t) }));
    root.append(svg("text", { class: "llm-usage-tick", x: M.left - 6, y: y(t) + 4, "text-anchor": "end" }, format(t)));
  }
  return y;
}

/** Vertical bars over time (one per day or hour), stacked when a bar has several parts. */
export function timeBars(className: string, bars: Bar[], text: ChartText, format: (v: number) => string, xLabel: (i: number) => string): HTMLElement {
  const root = frame();
  const max = Math.max(0, ...bars.map((b) => b.parts.reduce((s, [v]) => s + v, 0)));
  const y = yAxis(root, max, format);
  const plotW = W - M.left - M.right;
  const slot = bars.length ? plotW / bars.length : plotW;
  const gap = slot > 4 ? Math.min(2, slot * 0.2) : 0;
  bars.forEach((bar, i) => {
    let base = 0;
    const x = M.left + i * slot + gap / 2;
    const g = svg("g", { class: "llm-usage-bar" });
    g.append(svg("title", {}, bar.title));
    for (const [value, cls] of bar.parts) {
      if (value <= 0) continue;
      g.append(svg("rect", { class: cls, x, width: Math.max(slot - gap, 0.5), y: y(base + value), height: Math.max(y(base) - y(base + value), 0.5) }));
      base += value;
    }
    root.append(g);
  });
  // About six labels along the time axis, never overlapping.
  const every = Math.max(1, Math.ceil(bars.length / 6));
  for (let i = 0; i < bars.length; i += every) {
    root.append(svg("text", { class: "llm-usage-tick", x: M.left + (i + 0.5) * slot, y: H - M.bottom + 16, "text-anchor": "middle" }, xLabel(i)));
  }
  root.append(svg("line", { class: "llm-usage-axis", x1: M.left, x2: W - M.right, y1: y(0), y2: y(0) }));
  return figure(className, text, root);
}

export interface HBar {
  label: string;
  value: number;
  valueText: string;
  cls: string;
}

/** Horizontal bars with a label on the left and the value on the right (e.g. cost by model). */
export function horizontalBars(className: string, rows: HBar[], text: ChartText): HTMLElement {
  const rowH = 22;
  const height = Math.max(rowH * rows.length + 8, 40);
  const root = svg("svg", { viewBox: `0 0 ${W} ${height}`, preserveAspectRatio: "xMidYMid meet", class: "llm-usage-svg", focusable: "false" });
  const labelW = 210;
  const valueW = 90;
  const barW = W - labelW - valueW - 16;
  const max = Math.max(0, ...rows.map((r) => r.value));
  rows.forEach((row, i) => {
    const y = 4 + i * rowH;
    const g = svg("g", { class: "llm-usage-bar" });
    g.append(svg("title", {}, `${row.label}: ${row.valueText}`));
    const label = row.label.length > 32 ? `${row.label.slice(0, 31)}…` : row.label;
    g.append(svg("text", { class: "llm-usage-label", x: labelW - 6, y: y + 15, "text-anchor": "end" }, label));
    const width = max > 0 ? (row.value / max) * barW : 0;
    g.append(svg("rect", { class: row.cls, x: labelW, y: y + 3, width: Math.max(width, row.value > 0 ? 1 : 0), height: rowH - 6 }));
    g.append(svg("text", { class: "llm-usage-value", x: labelW + Math.max(width, 0) + 6, y: y + 15 }, row.valueText));
    root.append(g);
  });
  return figure(className, text, root);
}

export interface Bucket {
  low: number;
  high: number;
  n: number;
}

/**
 * A latency histogram: the log's buckets are quarter powers of two, so equal-width bars make a
 * logarithmic time axis. Empty buckets between the first and last are drawn as gaps; dashed
 * lines mark the median and the 95th percentile.
 */
export function histogram(className: string, buckets: Bucket[], marks: [number | null, string][], text: ChartText, formatMs: (ms: number) => string): HTMLElement {
  const root = frame();
  const max = Math.max(0, ...buckets.map((b) => b.n));
  const y = yAxis(root, max, formatCompact);
  const plotW = W - M.left - M.right;
  const slot = buckets.length ? plotW / buckets.length : plotW;
  buckets.forEach((b, i) => {
    const g = svg("g", { class: "llm-usage-bar" });
    g.append(svg("title", {}, `${formatMs(b.low)}–${formatMs(b.high)}: ${b.n.toLocaleString("en-US")} calls`));
    if (b.n > 0) g.append(svg("rect", { class: "llm-usage-fill-latency", x: M.left + i * slot + 0.5, width: Math.max(slot - 1, 0.5), y: y(b.n), height: Math.max(y(0) - y(b.n), 0.5) }));
    root.append(g);
  });
  const every = Math.max(1, Math.ceil(buckets.length / 6));
  for (let i = 0; i < buckets.length; i += every) {
    root.append(svg("text", { class: "llm-usage-tick", x: M.left + i * slot, y: H - M.bottom + 16, "text-anchor": "start" }, formatMs(buckets[i]!.low)));
  }
  for (const [ms, name] of marks) {
    if (ms === null || !buckets.length) continue;
    const i = buckets.findIndex((b) => ms >= b.low && ms < b.high);
    if (i < 0) continue;
    const x = M.left + (i + 0.5) * slot;
    root.append(svg("line", { class: "llm-usage-mark", x1: x, x2: x, y1: M.top, y2: y(0) }));
    root.append(svg("text", { class: "llm-usage-mark-label", x: x + 3, y: M.top + 10 }, name));
  }
  root.append(svg("line", { class: "llm-usage-axis", x1: M.left, x2: W - M.right, y1: y(0), y2: y(0) }));
  return figure(className, text, root);
}

/** A chart's place when there is nothing to draw: the caption and why. */
export function emptyChart(className: string, caption: string, message: string): HTMLElement {
  return el("figure", { class: `llm-usage-chart ${className}` }, [el("figcaption", { text: caption }), el("p", { class: "llm-muted llm-usage-empty", text: message })]);
}
