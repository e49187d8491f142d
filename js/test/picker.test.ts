import { afterEach, describe, expect, it, vi } from "vitest";
import { rpcFor } from "../src/shared/rpc";
import pickerWidget from "../src/widgets/picker";
import { customId, decodeTable, filterRows, formatContext, formatPrice, type CompactTable } from "../src/widgets/picker/table";
import { createPicker, MAX_SHOWN } from "../src/widgets/picker/view";
import { fakeModel, key, mount } from "./widget-fakes";

const TABLE: CompactTable = {
  default: "local/smollm2",
  groups: [
    { label: "local", kind: "embedded", prefix: "local/", key: true, rows: [["smollm2", 2048, 0, 0, 1]] },
    { label: "loop", kind: "endpoint", prefix: "", key: true, rows: [["loop/*", null, null, null, 1]] },
    { label: "aliases", kind: "alias", prefix: "", key: null, rows: [["fast", null, null, null, 1, "alias of loop/small"]] },
    { label: "openai", kind: "keyed", prefix: "openai/", key: true, rows: [["gpt-4o-mini", 128000, 0.15, 0.6, 1], ["gpt-4o", 128000, 2.5, 10, 1]] },
    { label: "anthropic", kind: "provider", prefix: "anthropic/", key: false, rows: [["claude-3-5-haiku", 200000, 0.8, 4, 1]] },
  ],
};

function bigTable(n: number): CompactTable {
  const rows = Array.from({ length: n }, (_, i) => [`model-${i}`, 1000, 1, 2, 1] as [string, number, number, number, number]);
  return { default: "x/model-0", groups: [{ label: "x", kind: "provider", prefix: "x/", key: false, rows }] };
}

describe("models table", () => {
  it("decodes ids with their group prefix and keeps the group order", () => {
    const rows = decodeTable(TABLE);
    expect(rows.map((r) => r.id)).toEqual(["local/smollm2", "loop/*", "fast", "openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-3-5-haiku"]);
    expect(rows[1]!.wildcard).toBe(true);
    expect(rows[2]!.note).toBe("alias of loop/small");
  });

  it("filters on every word, anywhere in the id, provider or alias target", () => {
    const rows = decodeTable(TABLE);
    expect(filterRows(rows, "4o mini", 10).rows.map((r) => r.id)).toEqual(["openai/gpt-4o-mini"]);
    expect(filterRows(rows, "OPENAI", 10).total).toBe(2);
    expect(filterRows(rows, "small", 10).rows.map((r) => r.id)).toEqual(["fast"]);
    const capped = filterRows(decodeTable(bigTable(1000)), "model", 5);
    expect([capped.rows.length, capped.total]).toEqual([5, 1000]);
  });

  it("offers a typed provider/model id that is not in the table", () => {
    const rows = decodeTable(TABLE);
    expect(customId("loop/my-model", rows)).toBe("loop/my-model");
    expect(customId("openai/gpt-4o", rows)).toBeNull();
    expect(customId("just words", rows)).toBeNull();
    expect(customId("loop/*", rows)).toBeNull();
  });

  it("formats context windows and prices", () => {
    expect(formatContext(128000)).toBe("128k ctx");
    expect(formatContext(1_048_576)).toBe("1M ctx");
    expect(formatPrice(0, 0)).toBe("free");
    expect(formatPrice(0.15, 0.6)).toBe("$0.15 / $0.6 per 1M");
    expect(formatPrice(null, null)).toBe("");
  });
});

describe("picker view", () => {
  afterEach(() => {
    document.body.replaceChildren();
  });

  function setup(value = "local/smollm2", table: CompactTable = TABLE, compact = false) {
    const fake = fakeModel({}, { "picker.models": () => table });
    const chosen: string[] = [];
    const view = createPicker({ rpc: rpcFor(fake.model), value, compact, onChoose: (id) => chosen.push(id) });
    document.body.append(view.el);
    const search = view.el.querySelector<HTMLInputElement>('[role="combobox"]')!;
    const options = () => Array.from(view.el.querySelectorAll<HTMLElement>('[role="option"]'));
    return { view, search, options, chosen, fake };
  }

  it("is a combobox over a listbox of options grouped by provider", async () => {
    const { view, search, options } = setup();
    await vi.waitFor(() => expect(options()).toHaveLength(6));
    const list = view.el.querySelector('[role="listbox"]')!;
    expect(search.getAttribute("aria-controls")).toBe(list.id);
    const groups = Array.from(list.querySelectorAll('[role="group"]'));
    expect(groups.map((g) => document.getElementById(g.getAttribute("aria-labelledby")!)!.textContent)).toEqual([
      "Embedded model (no key needed)", "Endpoint loop", "Aliases", "openai · key present", "anthropic · no key",
    ]);
    const selected = options().filter((o) => o.getAttribute("aria-selected") === "true");
    expect(selected.map((o) => o.dataset.model)).toEqual(["local/smollm2"]);
    expect(options()[3]!.textContent).toContain("key present · 128k ctx · $0.15 / $0.6 per 1M");
    expect(options()[5]!.textContent).toContain("no key");
  });

  it("moves with the arrow keys (aria-activedescendant) and chooses with Enter", async () => {
    const { search, options, chosen } = setup();
    await vi.waitFor(() => expect(options()).toHaveLength(6));
    expect(search.getAttribute("aria-activedescendant")).toBe(options()[0]!.id);
    key(search, "ArrowDown");
    key(search, "ArrowDown");
    key(search, "ArrowDown");
    expect(search.getAttribute("aria-activedescendant")).toBe(options()[3]!.id);
    expect(options()[3]!.classList.contains("llm-active")).toBe(true);
    key(search, "ArrowUp");
    const enter = key(search, "Enter");
    expect(enter.defaultPrevented).toBe(true);
    expect(chosen).toEqual(["fast"]);
    expect(options().find((o) => o.getAttribute("aria-selected") === "true")!.dataset.model).toBe("fast");
  });

  it("filters as you type and offers a typed id", async () => {
    const { search, options, chosen } = setup();
    await vi.waitFor(() => expect(options()).toHaveLength(6));
    search.value = "haiku";
    search.dispatchEvent(new Event("input"));
    expect(options().map((o) => o.dataset.model)).toEqual(["anthropic/claude-3-5-haiku"]);
    search.value = "loop/my-model";
    search.dispatchEvent(new Event("input"));
    expect(options()[0]!.textContent).toContain("Use “loop/my-model”");
    key(search, "Enter");
    expect(chosen).toEqual(["loop/my-model"]);
  });

  it("turns an endpoint's name/* into the start of an id", async () => {
    const { search, options, chosen } = setup();
    await vi.waitFor(() => expect(options()).toHaveLength(6));
    options()[1]!.dispatchEvent(new MouseEvent("mousedown", { bubbles: true, cancelable: true }));
    expect(search.value).toBe("loop/");
    expect(chosen).toEqual([]);
  });

  it("draws a bounded number of options from thousands", async () => {
    const { options, view } = setup("x/model-0", bigTable(3000));
    await vi.waitFor(() => expect(options()).toHaveLength(MAX_SHOWN));
    expect(view.el.querySelector(".llm-picker-more")!.textContent).toBe(`${3000 - MAX_SHOWN} more: type to narrow the list`);
  });

  it("compact: a button opens it, Escape closes it and gives the focus back", async () => {
    const { view, search, options, chosen, fake } = setup("local/smollm2", TABLE, true);
    const toggle = view.el.querySelector<HTMLButtonElement>(".llm-picker-toggle")!;
    expect(toggle.getAttribute("aria-expanded")).toBe("false");
    expect(fake.requests).toHaveLength(0); // the table loads when first opened
    toggle.click();
    expect(toggle.getAttribute("aria-expanded")).toBe("true");
    expect(document.activeElement).toBe(search);
    await vi.waitFor(() => expect(options()).toHaveLength(6));
    key(search, "Escape");
    expect(toggle.getAttribute("aria-expanded")).toBe("false");
    expect(document.activeElement).toBe(toggle);
    toggle.click();
    key(search, "ArrowDown"); // loop/*
    key(search, "ArrowDown"); // fast
    key(search, "Enter");
    expect(chosen).toEqual(["fast"]);
    expect(toggle.textContent).toBe("fast ▾");
    expect(toggle.getAttribute("aria-expanded")).toBe("false");
    expect(document.activeElement).toBe(toggle);
  });
});

describe("ModelPicker widget", () => {
  it("sets value, tests the connection and sets the default through requests", async () => {
    const fake = fakeModel({ value: "local/smollm2", default_model: "local/smollm2" }, {
      "picker.models": () => TABLE,
      "picker.check": (p) => ({ model: p.model, ok: true, error: null, latency_ms: 12.3, reply: "OK" }),
      "picker.use_default": (p) => ({ default: p.model }),
    });
    const { el, unmount } = await mount(pickerWidget, fake.model);
    await vi.waitFor(() => expect(el.querySelectorAll('[role="option"]')).toHaveLength(6));
    expect(el.querySelector(".llm-picker-chosen")!.textContent).toContain("local/smollm2 · no key needed · 2k ctx · free");

    const search = el.querySelector<HTMLInputElement>('[role="combobox"]')!;
    search.value = "gpt-4o-mini";
    search.dispatchEvent(new Event("input"));
    key(search, "Enter");
    expect(fake.state.value).toBe("openai/gpt-4o-mini");

    const [test, makeDefault] = Array.from(el.querySelectorAll<HTMLButtonElement>(".llm-picker-actions button"));
    test!.click();
    await vi.waitFor(() => expect(el.querySelector(".llm-picker-result")!.textContent).toBe("openai/gpt-4o-mini answered in 12 ms: “OK”"));
    expect(fake.requests.at(-1)).toMatchObject({ method: "picker.check", params: { model: "openai/gpt-4o-mini" } });

    makeDefault!.click();
    await vi.waitFor(() => expect(el.querySelector(".llm-picker-result")!.textContent).toContain("is now the session's default"));
    expect(fake.requests.at(-1)).toMatchObject({ method: "picker.use_default", params: { model: "openai/gpt-4o-mini" } });
    await unmount();
  });
});
