/**
 * `llm_notebook.UsagePanel()`: totals, cost and calls over time, cost by model, the latency
 * distribution and a grouped table, with date/model/notebook filters and a CSV download.
 * Python side: llm_notebook/widgets/usage_panel.py computes `summary` (a few KB) from the
 * log's rollups and refreshes it as calls are logged; this side only draws it.
 */
import type { AnyModel, Initialize, Render } from "@anywidget/types";
import { mountView } from "../shared/mount";
import { rpcFor } from "../shared/rpc";
import "../shared/styles.css";
import { emptyChart, histogram, horizontalBars, timeBars, type Bar, type Bucket, type HBar } from "./usage/charts";
import { el } from "./usage/dom";
import { formatCompact, formatInt, formatMs, formatPercent, formatUSD, utcDate, utcHour } from "./usage/format";
import "./usage/usage_panel.css";

export interface Totals {
  calls: number;
  input_tokens: number;
  output_tokens: number;
  cost: number;
  unpriced: number;
  errors: number;
  cached: number;
  error_rate: number | null;
  cache_hit_rate: number | null;
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
  ttft_p50_ms: number | null;
}

export interface Summary {
  filters: { since: string; until: string; model: string; notebook: string | null; group_by: string };
  totals: Totals;
  /** points: [start unix s, calls, cost, errors, unpriced] */
  series: { unit: "day" | "hour"; step: number; points: [number, number, number, number, number][] };
  /** [model, calls, cost, unpriced] */
  models: [string, number, number, number][];
  /** [low ms, high ms, n] */
  latency: [number, number, number][];
  table: { by: string; columns: string[]; rows: (string | number | null)[][]; total_rows: number };
  facets: { models: string[]; notebooks: string[] };
  updated: number;
  error: string | null;
}

interface PanelModel {
  since: string;
  until: string;
  model: string;
  notebook: string | null;
  group_by: string;
  live: boolean;
  summary: Summary | Record<string, never>;
}

const GROUPINGS: [string, string][] = [
  ["model", "Model"],
  ["day", "Day"],
  ["hour", "Hour"],
  ["notebook", "Notebook"],
  ["conversation", "Conversation"],
  ["job", "Batch job"],
];

// A <select> value for "calls outside any notebook" (the trait holds "" for it, null for all).
const OUTSIDE = "\u0000outside";
const ALL = "";

const initialize: Initialize<PanelModel> = ({ model }) => {
  rpcFor(model as AnyModel);
};

function option(value: string, label: string, selected: boolean): HTMLOptionElement {
  const o = el("option", { value, text: label });
  o.selected = selected;
  return o;
}

function labelled(text: string, control: HTMLElement): HTMLLabelElement {
  return el("label", { class: "llm-usage-field" }, [el("span", { text }), control]);
}

/** Totals as a definition list: what a glance should tell (calls, tokens, cost, errors, cache). */
export function totalsView(t: Totals): HTMLElement {
  const items: [string, string, string, string?][] = [
    ["calls", "Calls", formatInt(t.calls)],
    ["tokens", "Tokens", formatCompact(t.input_tokens + t.output_tokens), `${formatInt(t.input_tokens)} in, ${formatInt(t.output_tokens)} out`],
    ["cost", "Cost", formatUSD(t.cost), t.unpriced ? `+ ${formatInt(t.unpriced)} unpriced` : undefined],
    ["errors", "Errors", formatInt(t.errors), formatPercent(t.error_rate)],
    ["cached", "Cache hits", formatInt(t.cached), formatPercent(t.cache_hit_rate)],
    ["latency", "Latency p50 / p95", `${formatMs(t.latency_p50_ms)} / ${formatMs(t.latency_p95_ms)}`],
    ["ttft", "First token p50", formatMs(t.ttft_p50_ms)],
  ];
  const list = el("dl", { class: "llm-usage-totals", "aria-label": "Totals" });
  for (const [key, name, value, note] of items) {
    const dd = el("dd", { "data-total": key }, [el("span", { class: "llm-usage-total-value", text: value })]);
    if (note) dd.append(el("span", { class: "llm-usage-total-note llm-muted", text: note }));
    list.append(el("div", { class: "llm-usage-total" }, [el("dt", { text: name }), dd]));
  }
  return list;
}

function timeCharts(s: Summary): HTMLElement[] {
  const { unit, points } = s.series;
  if (!points.length) {
    return [emptyChart("llm-usage-cost-time", "Cost over time", "No calls in this range."), emptyChart("llm-usage-calls-time", "Calls over time", "No calls in this range.")];
  }
  const when = (t: number): string => (unit === "day" ? utcDate(t) : utcHour(t));
  const short = (i: number): string => {
    const t = points[i]![0];
    return unit === "day" ? utcDate(t).slice(5) : utcHour(t).slice(11);
  };
  const per = unit === "day" ? "day" : "hour";
  const span = `${points.length} ${per}s from ${when(points[0]![0])} to ${when(points[points.length - 1]![0])} (UTC)`;

  const totalCost = points.reduce((sum, p) => sum + p[2], 0);
  const peakCost = points.reduce((best, p) => (p[2] > best[2] ? p : best), points[0]!);
  const costBars: Bar[] = points.map(([t, calls, cost, , unpriced]) => ({
    label: when(t),
    parts: [[cost, "llm-usage-fill-cost", "cost"]],
    title: `${when(t)}: ${formatUSD(cost)} (${formatInt(calls)} calls${unpriced ? `, ${formatInt(unpriced)} unpriced` : ""})`,
  }));
  const cost = timeBars("llm-usage-cost-time", costBars, {
    caption: `Cost per ${per}`,
    summary: `Cost per ${per} over ${span}: ${formatUSD(totalCost)} in all, highest ${formatUSD(peakCost[2])} on ${when(peakCost[0])}.`,
    columns: [unit === "day" ? "Day (UTC)" : "Hour (UTC)", "Cost", "Unpriced calls"],
    rows: points.map(([t, , c, , u]) => [when(t), formatUSD(c), formatInt(u)]),
  }, formatUSD, short);

  const totalCalls = points.reduce((sum, p) => sum + p[1], 0);
  const totalErrors = points.reduce((sum, p) => sum + p[3], 0);
  const peakCalls = points.reduce((best, p) => (p[1] > best[1] ? p : best), points[0]!);
  const callBars: Bar[] = points.map(([t, calls, , errors]) => ({
    label: when(t),
    parts: [
      [calls - errors, "llm-usage-fill-calls", "ok"],
      [errors, "llm-usage-fill-errors", "errors"],
    ],
    title: `${when(t)}: ${formatInt(calls)} calls, ${formatInt(errors)} errors`,
  }));
  const calls = timeBars("llm-usage-calls-time", callBars, {
    caption: `Calls per ${per} (errors on top)`,
    summary: `Calls per ${per} over ${span}: ${formatInt(totalCalls)} calls and ${formatInt(totalErrors)} errors, most ${formatInt(peakCalls[1])} on ${when(peakCalls[0])}.`,
    columns: [unit === "day" ? "Day (UTC)" : "Hour (UTC)", "Calls", "Errors"],
    rows: points.map(([t, c, , e]) => [when(t), formatInt(c), formatInt(e)]),
  }, formatCompact, short);
  return [cost, calls];
}

function modelChart(s: Summary): HTMLElement {
  if (!s.models.length) return emptyChart("llm-usage-by-model", "Cost by model", "No calls in this range.");
  const anyCost = s.models.some(([, , cost]) => cost > 0);
  const rows: HBar[] = s.models.map(([name, calls, cost, unpriced]) => ({
    label: name,
    value: anyCost ? cost : calls,
    valueText: anyCost ? (unpriced && !cost ? "unpriced" : formatUSD(cost)) : `${formatInt(calls)} calls`,
    cls: unpriced && !cost ? "llm-usage-fill-unpriced" : "llm-usage-fill-cost",
  }));
  const top = s.models[0]!;
  return horizontalBars("llm-usage-by-model", rows, {
    caption: anyCost ? "Cost by model" : "Calls by model (no priced calls)",
    summary: `${anyCost ? "Cost" : "Calls"} by model, ${s.models.length} models: most is ${top[0]} with ${anyCost ? formatUSD(top[2]) : `${formatInt(top[1])} calls`}.`,
    columns: ["Model", "Calls", "Cost", "Unpriced calls"],
    rows: s.models.map(([name, calls, cost, unpriced]) => [name, formatInt(calls), formatUSD(cost), formatInt(unpriced)]),
  });
}

function latencyChart(s: Summary): HTMLElement {
  if (!s.latency.length) return emptyChart("llm-usage-latency", "Latency distribution", "No latencies recorded in this range.");
  // Fill the empty buckets between the first and last one: each bucket is a quarter power of two.
  const buckets: Bucket[] = [];
  const byLow = new Map(s.latency.map(([low, high, n]) => [Math.round(Math.log2(Math.max(high, 1)) * 4), { low, high, n }]));
  const keys = Array.from(byLow.keys());
  const first = Math.min(...keys);
  const last = Math.max(...keys);
  for (let k = first; k <= last; k++) buckets.push(byLow.get(k) ?? { low: 2 ** ((k - 1) / 4), high: 2 ** (k / 4), n: 0 });
  const t = s.totals;
  const total = s.latency.reduce((sum, [, , n]) => sum + n, 0);
  return histogram("llm-usage-latency", buckets, [[t.latency_p50_ms, "p50"], [t.latency_p95_ms, "p95"]], {
    caption: "Latency distribution (cache hits left out)",
    summary: `Latency of ${formatInt(total)} calls: median ${formatMs(t.latency_p50_ms)}, 95th percentile ${formatMs(t.latency_p95_ms)}, from ${formatMs(buckets[0]!.low)} to ${formatMs(buckets[buckets.length - 1]!.high)}.`,
    columns: ["Latency from", "to", "Calls"],
    rows: s.latency.map(([low, high, n]) => [formatMs(low), formatMs(high), formatInt(n)]),
  }, formatMs);
}

const CELL: Record<string, (v: number) => string> = {
  calls: formatInt,
  input_tokens: formatInt,
  output_tokens: formatInt,
  cost: formatUSD,
  unpriced: formatInt,
  errors: formatInt,
  cached: formatInt,
  error_rate: formatPercent,
  cache_hit_rate: formatPercent,
  latency_p50_ms: formatMs,
  latency_p95_ms: formatMs,
  ttft_p50_ms: formatMs,
};

const HEADERS: Record<string, string> = {
  calls: "Calls",
  input_tokens: "Input tokens",
  output_tokens: "Output tokens",
  cost: "Cost",
  unpriced: "Unpriced",
  errors: "Errors",
  cached: "Cache hits",
  error_rate: "Error rate",
  cache_hit_rate: "Cache-hit rate",
  latency_p50_ms: "Latency p50",
  latency_p95_ms: "Latency p95",
  ttft_p50_ms: "First token p50",
};

export function tableView(s: Summary): HTMLElement {
  const { columns, rows, total_rows, by } = s.table;
  const label = GROUPINGS.find(([key]) => key === by)?.[1] ?? by;
  const table = el("table", { class: "llm-usage-table" });
  table.append(el("caption", { text: `Usage by ${label.toLowerCase()}` + (total_rows > rows.length ? ` (first ${rows.length} of ${formatInt(total_rows)}; Export CSV has all)` : "") }));
  const head = el("tr", {}, [el("th", { scope: "col", text: label })]);
  const numeric = columns.slice(2);
  for (const c of numeric) head.append(el("th", { scope: "col", text: HEADERS[c] ?? c }));
  table.append(el("thead", {}, [head]));
  const body = el("tbody");
  for (const row of rows) {
    const tr = el("tr", {}, [el("th", { scope: "row", text: String(row[0]) })]);
    numeric.forEach((c, i) => {
      const v = row[i + 2];
      tr.append(el("td", { text: typeof v === "number" ? (CELL[c] ?? String)(v) : "–" }));
    });
    body.append(tr);
  }
  if (!rows.length) body.append(el("tr", {}, [el("td", { colspan: numeric.length + 1, class: "llm-muted", text: "No calls in this range." })]));
  table.append(body);
  return el("div", { class: "llm-usage-table-wrap" }, [table]);
}

const render: Render<PanelModel> = ({ model, el: host }) => mountView(model, host, renderPanel);

function renderPanel(model: AnyModel<PanelModel>, root: HTMLElement): () => void {
  const rpc = rpcFor(model as AnyModel);
  root.classList.add("llm-nb", "llm-usage");

  const since = el("input", { type: "date", "aria-label": "From (UTC day)" });
  const until = el("input", { type: "date", "aria-label": "To (UTC day, included)" });
  const modelSelect = el("select", { "aria-label": "Model" });
  const notebookSelect = el("select", { "aria-label": "Notebook" });
  const groupSelect = el("select", { "aria-label": "Group the table by" });
  for (const [value, text] of GROUPINGS) groupSelect.append(option(value, text, false));
  const refresh = el("button", { type: "button", text: "Refresh", title: "Read the log again" });
  const exportCsv = el("button", { type: "button", text: "Export CSV", title: "Download the table as CSV" });
  const clear = el("button", { type: "button", text: "Clear filters" });
  const status = el("div", { class: "llm-usage-status llm-muted", role: "status", "aria-live": "polite" });
  const error = el("div", { class: "llm-error", role: "alert", hidden: true });

  const filters = el("div", { class: "llm-usage-filters", role: "group", "aria-label": "Filters" }, [
    labelled("From", since),
    labelled("To", until),
    labelled("Model", modelSelect),
    labelled("Notebook", notebookSelect),
    labelled("Table by", groupSelect),
    clear,
    refresh,
    exportCsv,
  ]);
  const totals = el("div", { class: "llm-usage-totals-wrap" });
  const charts = el("div", { class: "llm-usage-charts" });
  const table = el("div", { class: "llm-usage-table-section" });
  root.replaceChildren(el("div", { class: "llm-usage-title", text: "LLM usage" }), filters, error, totals, charts, table, status);

  const setTrait = <K extends keyof PanelModel>(name: K, value: PanelModel[K]): void => {
    model.set(name, value);
    model.save_changes();
    status.textContent = "Updating…";
  };
  // A date input's value is "" until a whole valid date is entered: "input" then means a new
  // date (or a cleared one). "change" too, for browsers that only fire it.
  for (const [input, name] of [[since, "since"], [until, "until"]] as const) {
    const send = (): void => {
      if (input.value !== (model.get(name) || "").slice(0, 10)) setTrait(name, input.value);
    };
    input.addEventListener("input", send);
    input.addEventListener("change", send);
  }
  modelSelect.addEventListener("change", () => setTrait("model", modelSelect.value));
  notebookSelect.addEventListener("change", () => setTrait("notebook", notebookSelect.value === ALL ? null : notebookSelect.value === OUTSIDE ? "" : notebookSelect.value));
  groupSelect.addEventListener("change", () => setTrait("group_by", groupSelect.value));
  clear.addEventListener("click", () => {
    for (const [name, value] of [["since", ""], ["until", ""], ["model", ""], ["notebook", null]] as const) model.set(name, value);
    model.save_changes();
    status.textContent = "Updating…";
  });
  refresh.addEventListener("click", () => {
    status.textContent = "Updating…";
    rpc.request("refresh", {}, { timeoutMs: 60_000 }).catch((err: Error) => showError(err.message));
  });
  exportCsv.addEventListener("click", () => {
    exportCsv.disabled = true;
    rpc
      .request<{ filename: string; text: string }>("export_csv", {}, { timeoutMs: 120_000 })
      .then(({ filename, text }) => {
        const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
        const a = el("a", { href: url, download: filename, hidden: true });
        root.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10_000);
        status.textContent = `Exported ${filename}`;
      })
      .catch((err: Error) => showError(err.message))
      .finally(() => (exportCsv.disabled = false));
  });

  const showError = (message: string | null): void => {
    error.hidden = !message;
    error.textContent = message ? `Could not update: ${message}` : "";
  };

  // Controls follow the traits, but are only rewritten when what they show changed: a redraw
  // must not wipe a date being typed or close an open list.
  let shown = { since: "", until: "", facets: "" };
  const syncControls = (s: Summary | null): void => {
    for (const [input, name] of [[since, "since"], [until, "until"]] as const) {
      const value = (model.get(name) || "").slice(0, 10);
      if (value !== shown[name]) {
        input.value = value;
        shown = { ...shown, [name]: value };
      }
    }
    const models = s ? s.facets.models : [];
    const notebooks = s ? s.facets.notebooks : [];
    const chosenModel = model.get("model") || "";
    const nb = model.get("notebook");
    const facets = JSON.stringify([models, notebooks, chosenModel, nb]);
    if (facets !== shown.facets) {
      shown = { ...shown, facets };
      modelSelect.replaceChildren(option(ALL, "All models", chosenModel === ""), ...models.map((m) => option(m, m, m === chosenModel)));
      if (chosenModel && !models.includes(chosenModel)) modelSelect.append(option(chosenModel, chosenModel, true));
      notebookSelect.replaceChildren(
        option(ALL, "All notebooks", nb === null || nb === undefined),
        option(OUTSIDE, "(outside notebooks)", nb === ""),
        ...notebooks.map((n) => option(n, n, n === nb)),
      );
      if (nb && !notebooks.includes(nb)) notebookSelect.append(option(nb, nb, true));
    }
    groupSelect.value = model.get("group_by") || "model";
  };

  let frame = 0;
  const draw = (): void => {
    frame = 0;
    const raw = model.get("summary") as Summary | Record<string, never>;
    if (!raw || !("totals" in raw)) {
      syncControls(null);
      status.textContent = "Loading…";
      return;
    }
    const s = raw as Summary;
    syncControls(s);
    showError(s.error);
    totals.replaceChildren(totalsView(s.totals));
    charts.replaceChildren(...timeCharts(s), modelChart(s), latencyChart(s));
    table.replaceChildren(tableView(s));
    const time = new Date(s.updated * 1000).toLocaleTimeString();
    status.textContent = `${formatInt(s.totals.calls)} calls · updated ${time}${model.get("live") ? " · live" : ""}`;
  };
  // Redraw at most once a frame, however fast updates arrive.
  const schedule = (): void => {
    if (!frame) frame = requestAnimationFrame(draw);
  };
  const events = ["change:summary", "change:since", "change:until", "change:model", "change:notebook", "change:group_by"];
  for (const name of events) model.on(name, schedule);
  draw();
  return () => {
    if (frame) cancelAnimationFrame(frame);
    for (const name of events) model.off(name, schedule);
  };
}

export default { initialize, render };
