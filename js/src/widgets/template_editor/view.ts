/**
 * One view of a TemplateEditor: the pieces (editors, form, preview, runs, versions) wired to the
 * Python handlers of llm_notebook/widgets/template_editor.py.
 *
 * The browser parses as the user types (highlighting, the form, an instant preview); Python
 * answers the same questions a moment later (`preview`) and decides on run and save. Its errors
 * are one line, shown above the editor and marked in the text when they carry a line:column.
 */
import type { AnyModel } from "@anywidget/types";
import { renderMarkdownInto } from "../../shared/markdown";
import { newId, rpcFor } from "../../shared/rpc";
import { streamsFor } from "../../shared/stream";
import { button, el, input, labelled } from "./dom";
import { createCodeEditor, type CodeEditor } from "./editor";
import { VariablesForm } from "./form";
import { describe, fill, variablesOf } from "./grammar";
import { ModelChooser, ResultsPanel, type RunResult } from "./runs";
import { VersionsPanel, type VersionInfo } from "./versions";

/** The template as Python sends it (`_template_dict`). */
interface TemplateData {
  name: string;
  version: number;
  prompt: string;
  system: string | null;
  model: string | null;
  options: Record<string, unknown>;
  defaults: Record<string, unknown>;
  tags: string[];
  message: string | null;
  variables: string[];
}

interface LoadReply {
  template: TemplateData | null;
  versions: VersionInfo[];
  models: { selected: string[]; suggestions: string[]; default: string; max: number };
}

interface KernelProblem {
  field: "prompt" | "system";
  line: number | null;
  column: number | null;
  text: string;
}

interface PreviewReply {
  prompt: string | null;
  system: string | null;
  missing: string[];
  error: KernelProblem | null;
}

interface SaveReply {
  template: TemplateData;
  versions: VersionInfo[];
}

interface DiffReply {
  v1: number;
  v2: number;
  text: string;
}

const PREVIEW_DELAY_MS = 350;
// "template 'x': prompt line 2, column 5: ..." — where to mark an error Python reported.
const WHERE = /\b(prompt|system) line (\d+), column (\d+)/;

export function renderTemplateEditor(model: AnyModel, root: HTMLElement): () => void {
  const rpc = rpcFor(model);
  root.classList.add("llm-nb", "llm-te");

  // -- the skeleton ------------------------------------------------------------------------------
  const nameInput = input("Template name", "template name, e.g. summarize");
  nameInput.className = "llm-te-name";
  const badge = el("span", "llm-te-badge llm-muted");
  const status = el("div", "llm-muted llm-te-status");
  status.setAttribute("role", "status");
  status.setAttribute("aria-live", "polite");
  const header = el("div", "llm-te-header");
  header.append(labelled("Template", nameInput, "llm-te-field"), badge, status);

  const errorLine = el("div", "llm-error llm-te-error-line");
  errorLine.setAttribute("role", "alert");
  errorLine.hidden = true;

  const promptBox = el("div", "llm-te-prompt");
  const systemBox = el("div", "llm-te-system");
  const modelInput = input("Template model (optional)", "model saved with the template (optional)");
  const optionsInput = input("Call options as JSON (optional)", '{"temperature": 0.2}');
  const settings = el("details", "llm-te-settings");
  const summary = el("summary", "", "System prompt and settings");
  settings.append(summary, systemBox, labelled("Model", modelInput, "llm-te-field"), labelled("Options", optionsInput, "llm-te-field"));
  const left = el("div", "llm-te-left");
  left.append(promptBox, settings);

  const previewBody = el("div", "llm-te-preview-body");
  previewBody.setAttribute("aria-live", "off");
  const previewSystem = el("div", "llm-te-preview-system");
  const previewNote = el("div", "llm-muted llm-te-preview-note");
  const preview = el("section", "llm-te-preview");
  preview.setAttribute("aria-label", "Preview of the filled prompt");
  preview.append(el("h4", "", "Preview"), previewSystem, previewBody, previewNote);

  const right = el("div", "llm-te-right");
  const main = el("div", "llm-te-main");
  main.append(left, right);

  const chooser = new ModelChooser((models) => {
    model.set("models", models);
    model.save_changes();
  });
  const runButton = button("Run", "Run on the chosen models (Ctrl/Cmd+Enter)", () => run(), "llm-primary llm-te-run");
  runButton.setAttribute("aria-keyshortcuts", "Control+Enter Meta+Enter");
  const stopButton = button("Stop", "Stop the run", () => stop(), "llm-te-stop");
  stopButton.disabled = true;
  const runBar = el("div", "llm-te-bar llm-te-runbar");
  runBar.append(chooser.el, runButton, stopButton);
  const results = new ResultsPanel();

  const messageInput = input("Version message", "what changed in this version");
  messageInput.className = "llm-te-message";
  const tagsInput = input("Tags, separated by commas", "tags, comma separated");
  tagsInput.className = "llm-te-tags";
  const saveButton = button("Save", "Save as a new version (Ctrl/Cmd+S)", () => save(), "llm-te-save");
  saveButton.setAttribute("aria-keyshortcuts", "Control+S Meta+S");
  const saveBar = el("div", "llm-te-bar llm-te-savebar");
  saveBar.append(labelled("Message", messageInput, "llm-te-field llm-te-grow"), labelled("Tags", tagsInput, "llm-te-field"), saveButton);

  const versions = new VersionsPanel({ open: (v) => open(v), diff: (a, b) => showDiff(a, b) });
  const form = new VariablesForm(() => refresh());
  right.append(form.el, preview);

  root.replaceChildren(header, errorLine, main, runBar, results.el, saveBar, versions.el);
  status.textContent = "Loading…";

  // -- state -----------------------------------------------------------------------------------
  let prompt: CodeEditor | null = null;
  let system: CodeEditor | null = null;
  let revision = 0;
  let previewTimer: ReturnType<typeof setTimeout> | undefined;
  let runId: string | null = null;
  let running: AbortController | null = null;
  let disposed = false;

  const showBadge = (): void => {
    const name = model.get("name") as string | null;
    const version = model.get("version") as number | null;
    badge.textContent = name ? `v${version ?? "?"}` : "new template";
  };

  const showError = (text: string | null): void => {
    errorLine.hidden = !text;
    errorLine.textContent = text ?? "";
  };

  /** Marks an error Python reported, when its text says where it is. */
  const markKernelError = (text: string): void => {
    const where = WHERE.exec(text);
    const editor = where?.[1] === "system" ? system : prompt;
    if (where && editor) {
      if (where[1] === "system") settings.open = true;
      editor.markKernelError(Number(where[2]), Number(where[3]), text);
    }
  };

  const parseOptions = (): Record<string, unknown> => {
    const text = optionsInput.value.trim();
    if (!text) return {};
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new Error('options must be JSON, like {"temperature": 0.2, "max_tokens": 200}');
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new Error('options must be a JSON object, like {"temperature": 0.2}');
    }
    return value as Record<string, unknown>;
  };

  const tags = (): string[] =>
    tagsInput.value
      .split(",")
      .map((t) => t.trim())
      .filter(Boolean);

  const draft = () => ({
    name: nameInput.value.trim() || null,
    prompt: prompt?.text() ?? "",
    system: system && system.text().trim() ? system.text() : null,
  });

  // -- live parse, form and preview --------------------------------------------------------------
  function refresh(): void {
    if (!prompt || !system) return;
    revision++;
    const p = prompt.parsed();
    const s = system.parsed();
    form.update(variablesOf(p, s));
    const problem = p.error ? `prompt ${describe(p.error)}` : s.error ? `system ${describe(s.error)}` : null;
    showError(problem);
    if (problem) {
      previewNote.textContent = "Fix the error to see the preview.";
      return;
    }
    const values = { ...stringDefaults(), ...form.texts() };
    renderMarkdownInto(previewBody, fill(p, values));
    renderSystem(system.text().trim() ? fill(s, values) : null);
    const missing = form.missing();
    previewNote.textContent = missing.length ? `No value yet for: ${missing.join(", ")}` : "";
    clearTimeout(previewTimer);
    previewTimer = setTimeout(() => void kernelPreview(revision), PREVIEW_DELAY_MS);
  }

  function stringDefaults(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(form.defaults())) out[k] = typeof v === "string" ? v : JSON.stringify(v);
    return out;
  }

  function renderSystem(text: string | null): void {
    previewSystem.hidden = text === null;
    if (text === null) return;
    const body = el("div", "llm-te-preview-system-body");
    renderMarkdownInto(body, text);
    previewSystem.replaceChildren(el("div", "llm-te-label", "System"), body);
  }

  async function kernelPreview(rev: number): Promise<void> {
    const d = draft();
    let reply: PreviewReply;
    try {
      reply = await rpc.request<PreviewReply>("preview", { prompt: d.prompt, system: d.system, values: form.values(), defaults: form.defaults() }, { timeoutMs: 30_000 });
    } catch {
      return; // a busy or restarting kernel: the browser's preview stands
    }
    if (rev !== revision || disposed) return; // the text changed meanwhile
    if (reply.error) {
      showError(reply.error.text);
      if (reply.error.line !== null && reply.error.column !== null) markKernelError(reply.error.text);
      return;
    }
    renderMarkdownInto(previewBody, reply.prompt ?? "");
    renderSystem(reply.system);
    previewNote.textContent = reply.missing.length ? `No value yet for: ${reply.missing.join(", ")}` : "";
  }

  // -- loading ---------------------------------------------------------------------------------
  function applyTemplate(t: TemplateData | null): void {
    prompt?.setText(t?.prompt ?? "");
    system?.setText(t?.system ?? "");
    if (t?.system) settings.open = true;
    if (t) nameInput.value = t.name;
    modelInput.value = t?.model ?? "";
    optionsInput.value = t && Object.keys(t.options).length ? JSON.stringify(t.options) : "";
    tagsInput.value = t ? t.tags.join(", ") : "";
    form.setDefaults(t?.defaults ?? {});
    refresh();
  }

  function start(reply: LoadReply): void {
    const onChange = (): void => refresh();
    prompt = createCodeEditor(promptBox, {
      text: "",
      label: "Prompt template",
      placeholder: "Write the prompt. {name} is a variable; {{ and }} are literal braces.",
      onChange,
    });
    system = createCodeEditor(systemBox, { text: "", label: "System prompt (optional)", placeholder: "System prompt (optional)", onChange });
    chooser.max = reply.models.max;
    chooser.suggest(reply.models.suggestions);
    chooser.set(reply.models.selected);
    applyTemplate(reply.template);
    versions.set(reply.versions, reply.template?.version ?? null);
    showBadge();
    status.textContent = reply.template ? `Loaded ${reply.template.name} v${reply.template.version}` : "New template";
  }

  rpc.request<LoadReply>("load", {}, { timeoutMs: 60_000 }).then(
    (reply) => {
      if (!disposed) start(reply);
    },
    (err: Error) => {
      status.textContent = "";
      showError(`Could not load the template: ${err.message}`);
    },
  );

  // -- actions ---------------------------------------------------------------------------------
  function run(): void {
    if (!prompt || running) return;
    let options: Record<string, unknown>;
    try {
      options = parseOptions();
    } catch (err) {
      showError((err as Error).message);
      return;
    }
    const models = chooser.selected();
    if (!models.length) {
      showError("Add a model to run on first (for example local/smollm2).");
      return;
    }
    const d = draft();
    runId = newId();
    results.start(models);
    const controller = new AbortController();
    running = controller;
    runButton.disabled = true;
    stopButton.disabled = false;
    status.textContent = `Running on ${models.length} model${models.length > 1 ? "s" : ""}…`;
    rpc
      .request<{ results: RunResult[] }>(
        "run",
        { ...d, values: form.values(), defaults: form.defaults(), models, options, run_id: runId },
        { signal: controller.signal, timeoutMs: 0 },
      )
      .then(
        (reply) => {
          for (const r of reply.results) results.finish(r);
          const failed = reply.results.filter((r) => !r.ok).length;
          status.textContent = failed ? `Ran: ${failed} of ${reply.results.length} failed` : `Ran on ${reply.results.length} model${reply.results.length > 1 ? "s" : ""}`;
        },
        (err: Error) => {
          showError(err.message);
          markKernelError(err.message);
          results.abandon(controller.signal.aborted ? "Stopped." : "Not run.");
          status.textContent = controller.signal.aborted ? "Stopped" : "Run failed";
        },
      )
      .finally(() => {
        running = null;
        runButton.disabled = false;
        stopButton.disabled = true;
      });
  }

  function stop(): void {
    running?.abort();
  }

  function save(): void {
    if (!prompt) return;
    const d = draft();
    if (!d.name) {
      showError("Name the template first (letters, digits, '_', '-' or '.').");
      nameInput.focus();
      return;
    }
    let options: Record<string, unknown>;
    try {
      options = parseOptions();
    } catch (err) {
      showError((err as Error).message);
      return;
    }
    saveButton.disabled = true;
    status.textContent = "Saving…";
    rpc
      .request<SaveReply>(
        "save",
        { ...d, model: modelInput.value.trim() || null, options, defaults: form.defaults(), tags: tags(), message: messageInput.value.trim() || null },
        { timeoutMs: 60_000 },
      )
      .then(
        (reply) => {
          const t = reply.template;
          messageInput.value = "";
          nameInput.value = t.name;
          versions.set(reply.versions, t.version);
          showBadge();
          status.textContent = `Saved ${t.name} v${t.version}`;
          refresh();
          const previous = reply.versions.find((v) => v.version < t.version);
          if (previous) showDiff(previous.version, t.version);
        },
        (err: Error) => {
          showError(err.message);
          markKernelError(err.message);
          status.textContent = "Not saved";
        },
      )
      .finally(() => {
        saveButton.disabled = false;
      });
  }

  function open(version: number): void {
    const name = (model.get("name") as string | null) ?? nameInput.value.trim();
    rpc.request<LoadReply>("load", { name, version }, { timeoutMs: 60_000 }).then(
      (reply) => {
        applyTemplate(reply.template);
        versions.set(reply.versions, version);
        showBadge();
        status.textContent = `Opened v${version} (Ctrl/Cmd+Z brings your draft back)`;
      },
      (err: Error) => showError(err.message),
    );
  }

  function showDiff(v1: number, v2: number): void {
    const name = (model.get("name") as string | null) ?? nameInput.value.trim();
    rpc.request<DiffReply>("diff", { name, v1, v2 }, { timeoutMs: 60_000 }).then(
      (reply) => versions.showDiff(reply),
      (err: Error) => showError(err.message),
    );
  }

  // -- streams, traits, keys ---------------------------------------------------------------------
  const unsubscribe = streamsFor(model).subscribe((state) => {
    if (runId === null || state.meta.run !== runId) return;
    const index = state.meta.index;
    if (typeof index === "number") results.stream(index, state);
  });

  const onModels = (): void => chooser.set((model.get("models") as string[]) ?? []);
  model.on("change:models", onModels);
  model.on("change:name", showBadge);
  model.on("change:version", showBadge);

  // Ctrl/Cmd+Enter and Ctrl/Cmd+S anywhere in the widget. JupyterLab handles keys as they bubble
  // to the document, so stopping them here keeps it from running the cell or saving the notebook.
  const onKey = (event: KeyboardEvent): void => {
    if (!(event.ctrlKey || event.metaKey) || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key === "enter") run();
    else if (key === "s" && !event.shiftKey) save();
    else return;
    event.preventDefault();
    event.stopPropagation();
  };
  root.addEventListener("keydown", onKey);

  return () => {
    disposed = true;
    clearTimeout(previewTimer);
    running?.abort();
    unsubscribe();
    model.off("change:models", onModels);
    model.off("change:name", showBadge);
    model.off("change:version", showBadge);
    root.removeEventListener("keydown", onKey);
    results.clear();
    prompt?.destroy();
    system?.destroy();
  };
}
