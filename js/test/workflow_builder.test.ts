import { EditorView } from "@codemirror/view";
import { afterEach, expect, it, vi } from "vitest";
import widget from "../src/widgets/template_editor";
import { fakeModel, key, mount, type Request } from "./widget-fakes";

const HOSTILE = '<img src=x onerror="window.__pwned=1">';

const LOADED = {
  workflow: {
    name: "triage",
    version: 2,
    description: null,
    steps: [
      { name: "extract", kind: "llm", prompt: "Extract from {ticket}", model: "loop/m" },
      { name: "tidy", kind: "python", function: "tidy" },
      { name: "urgent", kind: "filter", prompt: "Urgent? {ticket}" },
    ],
  },
  versions: [{ version: 2, message: "second" }],
  columns: ["ticket"],
  rows: 3,
  preview_rows: 2,
  functions: ["tidy"],
};

const PREVIEW = {
  columns: [["input", "ticket"], ["extract", "extract"], ["urgent", "kept"]],
  rows: [
    { index: "0", cells: ["a", HOSTILE, "True"], dropped_at: null },
    { index: "1", cells: ["b", null, "False"], dropped_at: "urgent" },
  ],
  reports: [
    { step: "extract", status: "ran", rows_in: 2, rows_out: 2, requests: 2, cached: 0, errors: 0, note: null },
    { step: "tidy", status: "ran", rows_in: 2, rows_out: 2, requests: 0, cached: 0, errors: 0, note: null },
    { step: "urgent", status: "skipped", rows_in: 2, rows_out: 1, requests: 0, cached: 0, errors: 0, note: null },
  ],
  rows_in: 2,
  rows_out: 1,
};

const mounted: { unmount(): Promise<void> }[] = [];
afterEach(async () => {
  while (mounted.length) await mounted.pop()!.unmount();
});

async function loaded(extra: Record<string, (p: Record<string, unknown>) => unknown> = {}) {
  const fake = fakeModel({ kind: "workflow_builder", name: "triage", version: 2 }, {
    load: () => structuredClone(LOADED),
    preview: () => structuredClone(PREVIEW),
    save: (p) => ({ workflow: { name: p.name, version: 3, description: null, steps: p.steps } }),
    ...extra,
  });
  const m = await mount(widget, fake.model);
  mounted.push(m);
  await vi.waitFor(() => expect(m.el.querySelectorAll(".llm-wf-step").length).toBe(3));
  return { ...fake, ...m };
}

const names = (el: HTMLElement) => Array.from(el.querySelectorAll<HTMLElement>(".llm-wf-step"), (s) => s.dataset.step);
const last = (requests: Request[], method: string) => [...requests].reverse().find((r) => r.method === method)!;

it("lists the steps, reorders with the keyboard and removes with Delete", async () => {
  const { el } = await loaded();
  expect(el.querySelector(".llm-te-badge")?.textContent).toBe("v2");
  const step = (name: string) => el.querySelector<HTMLElement>(`.llm-wf-step[data-step="${name}"]`)!;
  key(step("urgent"), "ArrowUp", { altKey: true });
  expect(names(el)).toEqual(["extract", "urgent", "tidy"]);
  expect(document.activeElement).toBe(step("urgent"));
  expect(el.querySelector(".llm-wf-status")?.textContent).toBe("Moved urgent to position 2.");
  expect(el.querySelector(".llm-te-badge")?.textContent).toBe("v2 · edited");
  key(step("extract"), "ArrowUp", { altKey: true }); // already first: nothing moves
  expect(names(el)).toEqual(["extract", "urgent", "tidy"]);
  step("urgent").querySelector<HTMLButtonElement>(".llm-wf-down")!.click();
  expect(names(el)).toEqual(["extract", "tidy", "urgent"]);
  key(step("tidy"), "Delete");
  expect(names(el)).toEqual(["extract", "urgent"]);
});

it("edits the selected step's prompt with highlighted placeholders and sends the draft", async () => {
  const { el, requests } = await loaded();
  const node = el.querySelector<HTMLElement>(".llm-wf-prompt .cm-editor")!;
  const view = EditorView.findFromDOM(node)!;
  expect(view.state.doc.toString()).toBe("Extract from {ticket}");
  expect(Array.from(el.querySelectorAll(".llm-te-ph"), (s) => s.textContent)).toEqual(["{ticket}"]);
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: "Who wrote {ticket}?" } });
  // A Python step shows its function, not a prompt; adding a step names it freely.
  el.querySelector<HTMLElement>('.llm-wf-step[data-step="tidy"]')!.click();
  expect(el.querySelector<HTMLInputElement>('input[aria-label="Registered function"]')!.value).toBe("tidy");
  expect((el.querySelector(".llm-wf-prompt")!.parentElement as HTMLElement).hidden).toBe(true);
  Array.from(el.querySelectorAll("button")).find((b) => b.textContent === "+ Filter")!.click();
  expect(names(el)).toEqual(["extract", "tidy", "urgent", "filter"]);
  key(el.querySelector(".llm-wf-step")!, "s", { ctrlKey: true });
  await vi.waitFor(() => expect(el.querySelector(".llm-wf-status")?.textContent).toBe("Saved triage v3."));
  const steps = last(requests, "save").params.steps as Record<string, unknown>[];
  expect(steps[0]).toEqual({ name: "extract", kind: "llm", prompt: "Who wrote {ticket}?", model: "loop/m" });
  expect(steps[3]).toEqual({ name: "filter", kind: "filter", prompt: "{ticket}" });
  expect(el.querySelector(".llm-te-badge")?.textContent).toBe("v3");
});

it("shows a preview side by side with model output as text, and run progress per step", async () => {
  const { el, requests, fromPython } = await loaded({ run: () => new Promise(() => undefined) });
  Array.from(el.querySelectorAll("button")).find((b) => b.textContent === "Preview")!.click();
  await vi.waitFor(() => expect(el.querySelector(".llm-wf-table")).not.toBeNull());
  const table = el.querySelector(".llm-wf-table")!;
  expect(Array.from(table.querySelectorAll("th.llm-wf-group"), (t) => t.textContent)).toEqual(["input", "extract", "urgent"]);
  expect(table.querySelector("tbody td:nth-of-type(2)")?.textContent).toBe(HOSTILE);
  expect(table.querySelector("img")).toBeNull();
  expect(table.querySelectorAll("tr.llm-wf-dropped").length).toBe(1);
  expect(Array.from(el.querySelectorAll(".llm-wf-progress"), (p) => p.textContent)).toEqual([
    "2 → 2 rows · 2 sent · 0 cached", "2 → 2 rows", "unchanged, skipped · 1 rows"]);

  Array.from(el.querySelectorAll("button")).find((b) => b.textContent === "Run")!.click();
  await vi.waitFor(() => expect(requests.some((r) => r.method === "run")).toBe(true));
  const run = String(last(requests, "run").params.run_id);
  expect(el.querySelector<HTMLButtonElement>('button[aria-label^="Stop"]')!.disabled).toBe(false);
  fromPython({ type: "workflow.event", run, event: "progress", index: 0, done: 3, total: 10 });
  fromPython({ type: "workflow.event", run: "another run", event: "progress", index: 1, done: 9, total: 9 });
  expect(el.querySelectorAll(".llm-wf-progress")[0]!.textContent).toBe("3/10 rows");
  expect(el.querySelectorAll(".llm-wf-progress")[1]!.textContent).toBe(""); // not this run's
});
