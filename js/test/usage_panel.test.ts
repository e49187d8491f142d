import { afterEach, describe, expect, it } from "vitest";
import { formatCompact, formatMs, formatPercent, formatUSD, niceTicks, utcDate, utcHour } from "../src/widgets/usage/format";
import usagePanel, { type Summary } from "../src/widgets/usage_panel";
import { fakeModel, mount } from "./widget-fakes";

const DAY = 86400;
const T0 = Date.UTC(2024, 2, 1) / 1000;

function summary(overrides: Partial<Summary> = {}): Summary {
  return {
    filters: { since: "", until: "", model: "", notebook: null, group_by: "model" },
    totals: {
      calls: 1234, input_tokens: 50_000, output_tokens: 20_000, cost: 1.5, unpriced: 3, errors: 12, cached: 100,
      error_rate: 12 / 1234, cache_hit_rate: 100 / 1234, latency_p50_ms: 640, latency_p95_ms: 2700, ttft_p50_ms: 210,
    },
    series: { unit: "day", step: DAY, points: [[T0, 600, 0.5, 2, 1], [T0 + DAY, 0, 0, 0, 0], [T0 + 2 * DAY, 634, 1.0, 10, 2]] },
    models: [["openai/gpt-4o-mini", 1000, 1.2, 0], ["<img src=x onerror=alert(1)>", 231, 0.3, 0], ["lab/llama", 3, 0, 3]],
    latency: [[2 ** (36 / 4), 2 ** (37 / 4), 500], [2 ** (38 / 4), 2 ** (39 / 4), 400], [2 ** (45 / 4), 2 ** (46 / 4), 34]],
    table: {
      by: "model",
      columns: ["group", "key", "calls", "input_tokens", "output_tokens", "cost", "unpriced", "errors", "cached", "error_rate", "cache_hit_rate", "latency_p50_ms", "latency_p95_ms", "ttft_p50_ms"],
      rows: [["openai/gpt-4o-mini", "openai/gpt-4o-mini", 1000, 40000, 15000, 1.2, 0, 10, 90, 0.01, 0.09, 600, 2800, null]],
      total_rows: 3,
    },
    facets: { models: ["lab/llama", "openai/gpt-4o-mini"], notebooks: ["a.ipynb"] },
    updated: T0,
    error: null,
    ...overrides,
  };
}

const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve(null)));

describe("formatting", () => {
  it("formats money, time, rates and counts", () => {
    expect(formatUSD(0)).toBe("$0");
    expect(formatUSD(1.234)).toBe("$1.23");
    expect(formatUSD(0.00123)).toBe("$0.0012");
    expect(formatUSD(12345.6)).toBe("$12,346");
    expect(formatMs(640.4)).toBe("640 ms");
    expect(formatMs(2900)).toBe("2.90 s");
    expect(formatMs(125_000)).toBe("2.1 min");
    expect(formatMs(null)).toBe("–");
    expect(formatPercent(0.0123)).toBe("1.2%");
    expect(formatPercent(0.5)).toBe("50%");
    expect(formatCompact(1500)).toBe("1.5k");
    expect(formatCompact(2_000_000)).toBe("2M");
    expect(utcDate(T0)).toBe("2024-03-01");
    expect(utcHour(T0 + 3600 * 14)).toBe("2024-03-01 14:00");
  });

  it("picks round axis ticks that reach the maximum", () => {
    expect(niceTicks(10)).toEqual([0, 5, 10]);
    expect(niceTicks(0.0437)).toEqual([0, 0.02, 0.04, 0.06]);
    expect(niceTicks(0)).toEqual([0, 1]);
    const ticks = niceTicks(1234);
    expect(ticks[ticks.length - 1]).toBeGreaterThanOrEqual(1234);
  });
});

describe("usage panel", () => {
  afterEach(() => document.body.replaceChildren());

  it("shows the totals, four charts with text alternatives, and the table", async () => {
    const { model } = fakeModel({ since: "", until: "", model: "", notebook: null, group_by: "model", live: true, summary: summary() });
    const view = await mount(usagePanel, model);
    const total = (key: string) => view.el.querySelector(`[data-total="${key}"] .llm-usage-total-value`)?.textContent;
    expect(total("calls")).toBe("1,234");
    expect(total("cost")).toBe("$1.50");
    expect(view.el.querySelector('[data-total="cost"] .llm-usage-total-note')?.textContent).toBe("+ 3 unpriced");
    expect(total("errors")).toBe("12");
    expect(total("cached")).toBe("100");
    expect(total("latency")).toBe("640 ms / 2.70 s");

    const figures = view.el.querySelectorAll("figure.llm-usage-chart");
    expect(figures.length).toBe(4);
    for (const fig of figures) {
      const svg = fig.querySelector("svg[role=img]");
      expect(svg?.getAttribute("aria-label")?.length).toBeGreaterThan(20);
      expect(fig.querySelector("details table")).not.toBeNull();
    }
    const cost = view.el.querySelector(".llm-usage-cost-time svg")!;
    expect(cost.getAttribute("aria-label")).toBe("Cost per day over 3 days from 2024-03-01 to 2024-03-03 (UTC): $1.50 in all, highest $1.00 on 2024-03-03.");
    expect(cost.querySelectorAll("rect").length).toBe(2); // the empty day has no bar
    const calls = view.el.querySelector(".llm-usage-calls-time svg")!;
    expect(calls.querySelectorAll("rect.llm-usage-fill-errors").length).toBe(2);
    // The latency histogram fills the empty buckets between the first and the last.
    expect(view.el.querySelectorAll(".llm-usage-latency .llm-usage-bar").length).toBe(10);
    expect(view.el.querySelector(".llm-usage-latency svg")!.textContent).toContain("p95");

    // Names from the log are text, never markup.
    const byModel = view.el.querySelector(".llm-usage-by-model")!;
    expect(byModel.querySelector("img")).toBeNull();
    expect(byModel.textContent).toContain("<img src=x onerror=alert(1)>");
    expect(byModel.textContent).toContain("unpriced");

    const table = view.el.querySelector("table.llm-usage-table")!;
    expect(table.querySelector("caption")?.textContent).toBe("Usage by model (first 1 of 3; Export CSV has all)");
    expect(table.querySelector("tbody th")?.textContent).toBe("openai/gpt-4o-mini");
    expect(Array.from(table.querySelectorAll("tbody td")).map((td) => td.textContent).slice(0, 4)).toEqual(["1,000", "40,000", "15,000", "$1.20"]);
    await view.unmount();
  });

  it("sends filter changes to the kernel and redraws when the summary changes", async () => {
    const fake = fakeModel({ since: "", until: "", model: "", notebook: null, group_by: "model", live: true, summary: summary() });
    const view = await mount(usagePanel, fake.model);
    const select = view.el.querySelector<HTMLSelectElement>('select[aria-label="Model"]')!;
    expect(Array.from(select.options).map((o) => o.value)).toEqual(["", "lab/llama", "openai/gpt-4o-mini"]);
    select.value = "lab/llama";
    select.dispatchEvent(new Event("change"));
    expect(fake.state.model).toBe("lab/llama");
    const notebook = view.el.querySelector<HTMLSelectElement>('select[aria-label="Notebook"]')!;
    notebook.selectedIndex = 1; // (outside notebooks)
    notebook.dispatchEvent(new Event("change"));
    expect(fake.state.notebook).toBe("");
    const since = view.el.querySelector<HTMLInputElement>('input[aria-label^="From"]')!;
    since.value = "2024-03-02";
    since.dispatchEvent(new Event("change"));
    expect(fake.state.since).toBe("2024-03-02");

    fake.model.set("summary", summary({ totals: { ...summary().totals, calls: 3 }, error: "'since' is after 'until'" }));
    await nextFrame();
    expect(view.el.querySelector('[data-total="calls"] .llm-usage-total-value')?.textContent).toBe("3");
    expect(view.el.querySelector(".llm-error")?.textContent).toBe("Could not update: 'since' is after 'until'");

    view.el.querySelector<HTMLButtonElement>("button:nth-of-type(1)")!.click(); // Clear filters
    expect([fake.state.since, fake.state.model, fake.state.notebook]).toEqual(["", "", null]);
    await view.unmount();
  });

  it("downloads the CSV the kernel makes", async () => {
    const fake = fakeModel(
      { since: "", until: "", model: "", notebook: null, group_by: "model", live: true, summary: summary() },
      { export_csv: () => ({ filename: "llm-usage-by-model.csv", text: "model,calls\nm,1\n" }) },
    );
    const clicked: string[] = [];
    const original = HTMLAnchorElement.prototype.click;
    HTMLAnchorElement.prototype.click = function click(this: HTMLAnchorElement) {
      clicked.push(this.download);
    };
    URL.createObjectURL ??= () => "blob:fake";
    URL.revokeObjectURL ??= () => undefined;
    try {
      const view = await mount(usagePanel, fake.model);
      const button = Array.from(view.el.querySelectorAll("button")).find((b) => b.textContent === "Export CSV")!;
      button.click();
      await new Promise((r) => setTimeout(r, 0));
      await new Promise((r) => setTimeout(r, 0));
      // (A view that asks nothing as it starts asks whether a kernel is there: ping.)
      expect(fake.requests.map((r) => r.method)).toEqual(["ping", "export_csv"]);
      expect(clicked).toEqual(["llm-usage-by-model.csv"]);
      expect(view.el.querySelector(".llm-usage-status")?.textContent).toBe("Exported llm-usage-by-model.csv");
      await view.unmount();
    } finally {
      HTMLAnchorElement.prototype.click = original;
    }
  });

  it("says so when there is nothing to draw", async () => {
    const empty = summary({
      totals: { ...summary().totals, calls: 0, cost: 0, unpriced: 0, latency_p50_ms: null, latency_p95_ms: null },
      series: { unit: "day", step: DAY, points: [] },
      models: [],
      latency: [],
      table: { ...summary().table, rows: [], total_rows: 0 },
    });
    const { model } = fakeModel({ since: "", until: "", model: "", notebook: null, group_by: "model", live: true, summary: empty });
    const view = await mount(usagePanel, model);
    expect(view.el.querySelectorAll(".llm-usage-empty").length).toBe(4);
    expect(view.el.querySelector("table.llm-usage-table tbody")?.textContent).toBe("No calls in this range.");
    await view.unmount();
  });
});
