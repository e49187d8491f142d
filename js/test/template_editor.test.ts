import { EditorView } from "@codemirror/view";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, describe, expect, it, vi } from "vitest";
import editorSource from "../src/widgets/template_editor";
import { createCodeEditor } from "../src/widgets/template_editor/editor";
import { redo, undo } from "../src/widgets/template_editor/history";
import { fakeModel, key, mount, type Request } from "./widget-fakes";

type WidgetModule = typeof editorSource;

const LOADED = {
  template: {
    name: "brief",
    version: 1,
    prompt: "Summarize {text} in {n} words.",
    system: null,
    model: null,
    options: {},
    defaults: { n: 30 },
    tags: ["work"],
    message: "first",
    variables: ["text", "n"],
  },
  versions: [{ version: 1, created: "2025-01-02T03:04:05+00:00", message: "first", tags: ["work"], model: null }],
  models: { selected: ["loop/a", "loop/b"], suggestions: ["loop/a", "loop/b", "local/smollm2"], default: "loop/a", max: 6 },
};

function handlers(overrides: Record<string, (p: Record<string, unknown>) => unknown> = {}) {
  return {
    load: () => structuredClone(LOADED),
    preview: (p: Record<string, unknown>) => ({ prompt: `kernel: ${String(p.prompt)}`, system: null, missing: [], error: null }),
    ...overrides,
  };
}

function promptView(el: HTMLElement): EditorView {
  const node = el.querySelector<HTMLElement>(".llm-te-prompt .cm-editor");
  const view = node && EditorView.findFromDOM(node);
  if (!view) throw new Error("no prompt editor");
  return view;
}

function type(view: EditorView, text: string): void {
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text }, userEvent: "input.type" });
}

async function loaded(widget: WidgetModule, extra: Record<string, (p: Record<string, unknown>) => unknown> = {}) {
  const fake = fakeModel({ name: "brief", version: 1, models: ["loop/a", "loop/b"] }, handlers(extra));
  const mounted = await mount(widget, fake.model);
  await vi.waitFor(() => expect(mounted.el.querySelector(".llm-te-prompt .cm-content")).not.toBeNull());
  return { ...fake, ...mounted };
}

function last(requests: Request[], method: string): Request {
  const found = [...requests].reverse().find((r) => r.method === method);
  if (!found) throw new Error(`no ${method} request`);
  return found;
}

const mounted: { unmount(): Promise<void> }[] = [];
afterEach(async () => {
  while (mounted.length) await mounted.pop()!.unmount();
});

async function exercise(widget: WidgetModule) {
  const w = await loaded(widget);
  mounted.push(w);
  const { el, requests, fromPython, state } = w;
  const view = promptView(el);

  // Loaded template: text, highlighted placeholders, a form with the saved default.
  expect(view.state.doc.toString()).toBe("Summarize {text} in {n} words.");
  expect(Array.from(el.querySelectorAll(".llm-te-ph"), (s) => s.textContent)).toEqual(["{text}", "{n}"]);
  expect(Array.from(el.querySelectorAll(".llm-te-var"), (r) => (r as HTMLElement).dataset.variable)).toEqual(["text", "n"]);
  const n = el.querySelector<HTMLTextAreaElement>('.llm-te-var[data-variable="n"] textarea')!;
  expect(n.value).toBe("30");
  expect(el.querySelector<HTMLInputElement>(".llm-te-tags")!.value).toBe("work");
  expect(el.querySelector(".llm-te-version")?.textContent).toContain("first");

  // Typing a new variable adds it to the form; escaped braces are not placeholders.
  type(view, "Write about {topic} for {reader}. {{not a variable}}");
  expect(Array.from(el.querySelectorAll(".llm-te-var"), (r) => (r as HTMLElement).dataset.variable)).toEqual(["topic", "reader"]);
  expect(Array.from(el.querySelectorAll(".llm-te-ph"), (s) => s.textContent)).toEqual(["{topic}", "{reader}"]);
  const topic = el.querySelector<HTMLTextAreaElement>('.llm-te-var[data-variable="topic"] textarea')!;
  topic.value = "**tides**";
  topic.dispatchEvent(new Event("input"));
  // The instant preview: filled, braces unescaped, rendered as markdown.
  const preview = el.querySelector(".llm-te-preview-body")!;
  expect(preview.querySelector("strong")?.textContent).toBe("tides");
  expect(preview.textContent).toContain("for {reader}. {not a variable}");
  expect(el.querySelector(".llm-te-preview-note")?.textContent).toContain("reader");
  // ...then Python's preview replaces it.
  await vi.waitFor(() => expect(preview.textContent).toContain("kernel: Write about"), { timeout: 3000 });
  expect(last(requests, "preview").params).toMatchObject({ values: { topic: "**tides**" } });

  // A syntax error: one line above the editor (Python's wording), marked in the text.
  type(view, "Hello {name");
  const errorLine = el.querySelector<HTMLElement>(".llm-te-error-line")!;
  expect(errorLine.hidden).toBe(false);
  expect(errorLine.textContent).toBe("prompt line 1, column 7: unmatched '{' — write '{{' for a literal brace");
  expect(el.querySelector(".llm-te-err-at")?.textContent).toBe("{");
  type(view, "Tell me about {topic}, {reader}.");
  expect(errorLine.hidden).toBe(true);

  // Ctrl+Enter runs on both models; each stream fills its own column, LLM text sanitized.
  const reader = el.querySelector<HTMLTextAreaElement>('.llm-te-var[data-variable="reader"] textarea')!;
  reader.value = "children";
  reader.dispatchEvent(new Event("input"));
  const ev = key(view.contentDOM, "Enter", { ctrlKey: true });
  expect(ev.defaultPrevented).toBe(true);
  const run = last(requests, "run");
  expect(run.params).toMatchObject({ prompt: "Tell me about {topic}, {reader}.", models: ["loop/a", "loop/b"], values: { topic: "**tides**", reader: "children" } });
  const runId = run.params.run_id as string;
  expect(el.querySelectorAll(".llm-te-result")).toHaveLength(2);
  fromPython({ type: "stream.start", id: "sa", meta: { run: runId, model: "loop/a", index: 0 } });
  fromPython({ type: "stream.start", id: "sb", meta: { run: runId, model: "loop/b", index: 1 } });
  fromPython({ type: "stream.start", id: "old", meta: { run: "another-run", model: "loop/a", index: 0 } });
  fromPython({ type: "stream.batch", messages: [
    { type: "stream.delta", id: "sa", seq: 0, delta: "Tides <img src=x onerror=\"window.__pwned=1\">" },
    { type: "stream.delta", id: "sb", seq: 0, delta: "Waves " },
  ] });
  fromPython({ type: "stream.delta", id: "old", seq: 0, delta: "NOT THIS RUN" });
  const [colA, colB] = Array.from(el.querySelectorAll<HTMLElement>(".llm-te-result"));
  await vi.waitFor(() => expect(colB!.querySelector(".llm-te-result-body")!.textContent).toContain("Waves"));
  expect(colA!.querySelector(".llm-te-result-body")!.textContent).toContain("Tides");
  expect(el.querySelector(".llm-te-results img")).toBeNull();
  expect(el.textContent).not.toContain("NOT THIS RUN");
  fromPython({ type: "stream.end", id: "sa", text: "Tides rise.", meta: { model: "loop/a", index: 0, ok: true, output_tokens: 2, input_tokens: 5, cost: 0, duration_ms: 120 } });
  fromPython({ type: "stream.error", id: "sb", error: "rate limited: wait and retry", partial: "Waves" });
  fromPython({ type: "response", id: run.id, ok: true, result: { results: [
    { model: "loop/a", index: 0, ok: true, error: null, input_tokens: 5, output_tokens: 2, cost: 0, duration_ms: 120 },
    { model: "loop/b", index: 1, ok: false, error: "rate limited: wait and retry" },
  ] } });
  await vi.waitFor(() => expect(colA!.querySelector(".llm-te-result-footer")!.textContent).toBe("5 in · 2 out · $0.00000 · 0.12 s"));
  await vi.waitFor(() => expect(colA!.querySelector(".llm-te-result-body")!.textContent?.trim()).toBe("Tides rise."));
  expect(colB!.querySelector(".llm-error")?.textContent).toBe("rate limited: wait and retry");
  expect(colB!.getAttribute("aria-busy")).toBe("false");

  // Ctrl+S saves a new version (the browser's save is prevented), then shows the diff as text.
  el.querySelector<HTMLInputElement>(".llm-te-message")!.value = "ask about a topic";
  const s = key(view.contentDOM, "s", { metaKey: true });
  expect(s.defaultPrevented).toBe(true);
  const save = last(requests, "save");
  expect(save.params).toMatchObject({ name: "brief", prompt: "Tell me about {topic}, {reader}.", message: "ask about a topic", tags: ["work"], defaults: {} });
  const versions = [
    { version: 2, created: "2025-01-03T00:00:00+00:00", message: "ask about a topic", tags: ["work"], model: null },
    LOADED.versions[0],
  ];
  state.version = 2;
  fromPython({ type: "response", id: save.id, ok: true, result: { template: { ...LOADED.template, version: 2, prompt: save.params.prompt, message: "ask about a topic" }, versions } });
  await vi.waitFor(() => expect(last(requests, "diff").params).toEqual({ name: "brief", v1: 1, v2: 2 }));
  const diff = last(requests, "diff");
  fromPython({ type: "response", id: diff.id, ok: true, result: { v1: 1, v2: 2, text: "--- brief v1\n+++ brief v2\n@@ -1,2 +1,2 @@\n prompt:\n-  Summarize {text} in {n} words.\n+  Tell me <img src=x onerror=alert(1)> {topic}" } });
  await vi.waitFor(() => expect(el.querySelector(".llm-te-diff-add")).not.toBeNull());
  expect(el.querySelector(".llm-te-diff-title")?.textContent).toBe("Changes from v1 to v2");
  expect(el.querySelector(".llm-te-diff-add")?.textContent).toBe("+  Tell me <img src=x onerror=alert(1)> {topic}");
  expect(el.querySelector(".llm-te-diff-del")?.textContent).toBe("-  Summarize {text} in {n} words.");
  expect(el.querySelector(".llm-te-diff img")).toBeNull();
  expect(Array.from(el.querySelectorAll(".llm-te-version strong"), (s) => s.textContent)).toEqual(["v2", "v1"]);
  expect(el.querySelector('.llm-te-version[aria-current="true"]')?.getAttribute("data-version")).toBe("2");
  expect(el.querySelector(".llm-te-status")?.textContent).toBe("Saved brief v2");
}

describe("template editor widget", () => {
  it("types, previews, runs two models side by side, saves and diffs (source)", async () => {
    await exercise(editorSource);
  });

  const bundle = resolve(process.cwd(), "..", "llm_notebook", "static", "template_editor.js");
  it.skipIf(!existsSync(bundle))("does the same from the built bundle", async () => {
    const mod = (await import(/* @vite-ignore */ pathToFileURL(bundle).href)) as { default: WidgetModule };
    await exercise(mod.default);
  });

  it("marks an error Python reports on save at its line and column", async () => {
    const w = await loaded(editorSource);
    mounted.push(w);
    const view = promptView(w.el);
    type(view, "ab\ncd {x}");
    w.el.querySelector<HTMLButtonElement>(".llm-te-save")!.click();
    const save = last(w.requests, "save");
    w.fromPython({ type: "response", id: save.id, ok: false, error: "template 'brief': prompt line 2, column 2: something Python disliked" });
    await vi.waitFor(() => expect(w.el.querySelector(".llm-te-err-at")?.textContent).toBe("d"));
    expect(w.el.querySelector(".llm-te-error-line")?.textContent).toContain("line 2, column 2");
    type(view, "ab\ncd {x}!"); // editing clears the kernel's mark until the next check
    expect(w.el.querySelector(".llm-te-err-at")).toBeNull();
  });

  it("opens an older version into the editor; undo brings the draft back", async () => {
    const older = { ...LOADED.template, version: 1, prompt: "Old {text}", defaults: {}, tags: [] };
    const versions = [{ ...LOADED.versions[0]!, version: 2 }, LOADED.versions[0]!];
    const w = await loaded(editorSource, {
      load: (p) => (p.version === 1 ? { ...structuredClone(LOADED), template: older, versions } : { ...structuredClone(LOADED), versions }),
    });
    mounted.push(w);
    const view = promptView(w.el);
    type(view, "My draft {x}");
    w.el.querySelector<HTMLButtonElement>('[aria-label="Open version 1 in the editor"]')!.click();
    await vi.waitFor(() => expect(view.state.doc.toString()).toBe("Old {text}"));
    expect(last(w.requests, "load").params).toEqual({ name: "brief", version: 1 });
    expect(w.el.querySelector('.llm-te-version[aria-current="true"]')?.getAttribute("data-version")).toBe("1");
    expect(w.el.querySelector<HTMLInputElement>(".llm-te-tags")!.value).toBe("");
    expect(undo(view)).toBe(true);
    expect(view.state.doc.toString()).toBe("My draft {x}");
  });

  it("chooses models with chips and keeps the trait in sync", async () => {
    const w = await loaded(editorSource);
    mounted.push(w);
    const input = w.el.querySelector<HTMLInputElement>(".llm-te-model-input")!;
    input.value = "local/smollm2";
    key(input, "Enter");
    expect(w.state.models).toEqual(["loop/a", "loop/b", "local/smollm2"]);
    w.el.querySelector<HTMLButtonElement>('[aria-label="Remove loop/a"]')!.click();
    expect(w.state.models).toEqual(["loop/b", "local/smollm2"]);
    w.model.set("models", ["x/y"]);
    expect(Array.from(w.el.querySelectorAll(".llm-te-chip"), (c) => (c as HTMLElement).dataset.model)).toEqual(["x/y"]);
  });

  it("stops a run: the request is cancelled and unfinished columns say so", async () => {
    const w = await loaded(editorSource);
    mounted.push(w);
    w.el.querySelector<HTMLButtonElement>(".llm-te-run")!.click();
    const run = last(w.requests, "run");
    const stop = w.el.querySelector<HTMLButtonElement>(".llm-te-stop")!;
    expect(stop.disabled).toBe(false);
    const sent: unknown[] = [];
    const original = w.model.send.bind(w.model);
    w.model.send = (msg: unknown) => {
      sent.push(msg);
      original(msg as never);
    };
    stop.click();
    expect(sent).toContainEqual({ type: "request.cancel", id: run.id });
    await vi.waitFor(() => expect(w.el.querySelectorAll(".llm-te-result .llm-error")).toHaveLength(2));
    expect(w.el.querySelector(".llm-te-result .llm-error")?.textContent).toBe("Stopped.");
    expect(w.el.querySelector<HTMLButtonElement>(".llm-te-run")!.disabled).toBe(false);
  });

  it("has accessible names on its controls", async () => {
    const w = await loaded(editorSource);
    mounted.push(w);
    for (const control of Array.from(w.el.querySelectorAll("button, input, textarea"))) {
      const named = control.getAttribute("aria-label") || control.closest("label") || (control.id && w.el.querySelector(`label[for="${control.id}"]`));
      expect(named, control.outerHTML).toBeTruthy();
    }
    expect(w.el.querySelector(".llm-te-prompt .cm-content")?.getAttribute("aria-label")).toBe("Prompt template");
    expect(w.el.querySelector(".llm-te-run")?.getAttribute("aria-keyshortcuts")).toContain("Control+Enter");
  });
});

describe("template code editor", () => {
  it("undoes typing in groups and redoes it", () => {
    const parent = document.createElement("div");
    document.body.append(parent);
    const changes: string[] = [];
    const editor = createCodeEditor(parent, { text: "", label: "t", placeholder: "", onChange: (p) => changes.push(p.text) });
    const view = editor.view;
    const typeAt = (text: string) => view.dispatch({ changes: { from: view.state.doc.length, insert: text }, userEvent: "input.type" });
    typeAt("a");
    typeAt("b"); // within the grouping delay: one step with "a"
    editor.setText("replaced {x}"); // not typing: its own step
    expect(editor.parsed().variables).toEqual(["x"]);
    expect(undo(view)).toBe(true);
    expect(editor.text()).toBe("ab");
    expect(undo(view)).toBe(true);
    expect(editor.text()).toBe("");
    expect(undo(view)).toBe(false);
    expect(redo(view)).toBe(true);
    expect(editor.text()).toBe("ab");
    expect(redo(view)).toBe(true);
    expect(editor.text()).toBe("replaced {x}");
    expect(changes.at(-1)).toBe("replaced {x}");
    editor.destroy();
    parent.remove();
  });
});
