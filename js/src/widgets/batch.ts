/**
 * `llm_notebook.Batch()`: a form for a batch run. Input (a DataFrame of the notebook, or an
 * uploaded CSV/JSONL/Parquet/Excel file sent to the kernel in chunks), prompt or saved template,
 * model, how to run (now, background job, provider Batch API), the estimate, progress, Stop, and
 * downloads of the results. Python side: llm_notebook/widgets/batch.py, which parses files and
 * runs the job; this side only draws the form and moves bytes.
 *
 * Every control is a native, labelled one (keyboard-usable as is); colours come from the theme.
 * Text from the kernel goes in through textContent only. The saved snapshot is shown as text
 * (mount_view.ts: snapshotAsText), so this bundle carries no HTML sanitizer.
 */
import type { AnyModel, Initialize, Render } from "@anywidget/types";
import { mountViewWith, snapshotAsText } from "../shared/mount_view";
import { rpcFor, type RpcClient } from "../shared/rpc";
import "../shared/styles.css";
import "./batch/batch.css";

interface Source {
  name: string;
  rows: number;
  columns: string[];
  kind: string;
}

interface RunState {
  status?: string;
  line?: string;
  done?: number;
  total?: number;
  job_id?: string;
  error?: string | null;
}

interface BatchModel {
  sources: Source[];
  source: string;
  prompt: string;
  model: string;
  mode: string;
  state: RunState;
  max_upload_mb: number;
}

interface Choices {
  models: string[];
  templates: string[];
  default_model: string;
}

interface Download {
  filename: string;
  mime: string;
  data: string;
}

const MODES: [string, string][] = [
  ["now", "Now, watched here"],
  ["background", "Background job"],
  ["batch_api", "Provider Batch API (about half price, within 24 h)"],
];
const FORMATS: [string, string][] = [
  ["csv", "CSV"],
  ["parquet", "Parquet"],
  ["jsonl", "JSONL"],
];
const ACTIVE = new Set(["queued", "running"]);

let ids = 0;

type Attrs = Record<string, string | boolean | undefined>;

function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, children: (Node | string)[] = []): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

/** A labelled field: the label names the control for screen readers and clicks. */
function field(label: string, control: HTMLElement, hint?: HTMLElement): HTMLElement {
  const id = `llm-batch-${++ids}`;
  control.id = id;
  return h("div", { class: "llm-batch-field" }, [h("label", { for: id }, [label]), control, ...(hint ? [hint] : [])]);
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const initialize: Initialize<BatchModel> = ({ model }) => {
  rpcFor(model as AnyModel);
};

const render: Render<BatchModel> = ({ model, el }) => mountViewWith(snapshotAsText, model, el, renderBatch);

export function renderBatch(model: AnyModel<BatchModel>, el: HTMLElement): () => void {
  const rpc: RpcClient = rpcFor(model as AnyModel);
  el.classList.add("llm-nb", "llm-batch");

  const source = h("select", { class: "llm-batch-source" });
  const refresh = h("button", { type: "button", class: "llm-batch-refresh", title: "List the DataFrames of the notebook again" }, ["Refresh"]);
  const file = h("input", { type: "file", class: "llm-batch-file", accept: ".csv,.tsv,.jsonl,.ndjson,.parquet,.pq,.xlsx,.xlsm" });
  const sourceInfo = h("div", { class: "llm-batch-hint llm-muted", "aria-live": "polite" });
  const prompt = h("textarea", { class: "llm-batch-prompt", rows: "3", placeholder: "Summarize in one line: {text}", spellcheck: "false" });
  const templates = h("select", { class: "llm-batch-templates" });
  const modelInput = h("input", { type: "text", class: "llm-batch-model", autocomplete: "off", spellcheck: "false" });
  const models = h("datalist", { id: `llm-batch-models-${++ids}` });
  modelInput.setAttribute("list", models.id);
  const modes = h("fieldset", { class: "llm-batch-modes" }, [h("legend", {}, ["Run"])]);
  const modeName = `llm-batch-mode-${++ids}`;
  for (const [value, label] of MODES) {
    const input = h("input", { type: "radio", name: modeName, value, "data-lm-suppress-shortcuts": "true" });
    modes.append(h("label", { class: "llm-batch-mode" }, [input, ` ${label}`]));
  }
  const estimate = h("button", { type: "button", class: "llm-batch-estimate" }, ["Estimate"]);
  const run = h("button", { type: "button", class: "llm-batch-run llm-primary" }, ["Run"]);
  const stop = h("button", { type: "button", class: "llm-batch-stop" }, ["Stop"]);
  const estimateText = h("div", { class: "llm-batch-estimate-text llm-muted", "aria-live": "polite" });
  const bar = h("progress", { class: "llm-batch-bar", max: "1", value: "0", "aria-label": "Rows done" });
  const line = h("div", { class: "llm-batch-line", role: "status", "aria-live": "polite" });
  const downloads = h("div", { class: "llm-batch-downloads", role: "group", "aria-label": "Download the results" }, ["Download: "]);
  const downloadButtons = FORMATS.map(([format, label]) => {
    const b = h("button", { type: "button", class: `llm-batch-download llm-batch-download-${format}` }, [label]);
    b.addEventListener("click", () => void download(format));
    downloads.append(b);
    return b;
  });
  // Arrow keys choose a radio button or an option, not the notebook's next cell: JupyterLab's
  // shortcuts skip a focused element with data-lm-suppress-shortcuts (on it, not on a parent).
  for (const select of [source, templates]) select.setAttribute("data-lm-suppress-shortcuts", "true");
  const error = h("div", { class: "llm-batch-error llm-error", role: "alert" });
  error.hidden = true;

  el.append(
    h("div", { class: "llm-batch-row" }, [field("Input", source), refresh, field("or upload a file", file)]),
    sourceInfo,
    field("Prompt, with {column} placeholders, or a saved template's name", prompt),
    field("Saved templates", templates),
    field("Model", modelInput),
    models,
    modes,
    h("div", { class: "llm-batch-row llm-batch-actions" }, [estimate, run, stop]),
    estimateText,
    bar,
    line,
    downloads,
    error,
  );
  templates.parentElement!.hidden = true;

  const showError = (text: string | null | undefined): void => {
    error.textContent = text ?? "";
    error.hidden = !text;
  };
  const save = (key: keyof BatchModel, value: string): void => {
    model.set(key, value as never);
    model.save_changes();
  };

  const drawSources = (): void => {
    const list = model.get("sources") ?? [];
    const chosen = model.get("source");
    source.replaceChildren(
      ...(list.length ? [] : [h("option", { value: "" }, ["(no DataFrame yet: upload a file)"])]),
      ...list.map((s) => {
        const o = h("option", { value: s.name }, [`${s.name} — ${s.rows.toLocaleString()} rows${s.kind === "upload" ? " (uploaded)" : ""}`]);
        o.selected = s.name === chosen;
        return o;
      }),
    );
    const current = list.find((s) => s.name === chosen);
    sourceInfo.textContent = current ? `Columns: ${current.columns.join(", ")}` : "";
  };
  const drawForm = (): void => {
    if (document.activeElement !== prompt) prompt.value = model.get("prompt") ?? "";
    if (document.activeElement !== modelInput) modelInput.value = model.get("model") ?? "";
    for (const input of Array.from(modes.querySelectorAll("input"))) input.checked = input.value === model.get("mode");
  };
  const drawState = (): void => {
    const state = model.get("state") ?? {};
    const active = ACTIVE.has(state.status ?? "");
    bar.max = Math.max(1, state.total ?? 1);
    bar.value = state.done ?? 0;
    line.textContent = state.line ? `${state.job_id ? `Job ${state.job_id}: ` : ""}${state.line}` : "";
    run.disabled = active;
    stop.disabled = !active;
    for (const b of downloadButtons) b.disabled = !state.job_id || active;
    el.dataset.status = state.status ?? "";
    if (state.error) showError(state.error);
  };

  const call = async <T>(method: string, params: Record<string, unknown> = {}): Promise<T | undefined> => {
    showError(null);
    try {
      return await rpc.request<T>(method, params);
    } catch (e) {
      showError(message(e));
      return undefined;
    }
  };

  source.addEventListener("change", () => save("source", source.value));
  templates.addEventListener("change", () => {
    if (!templates.value) return;
    prompt.value = templates.value;
    save("prompt", templates.value);
  });
  prompt.addEventListener("change", () => save("prompt", prompt.value));
  modelInput.addEventListener("change", () => save("model", modelInput.value));
  modes.addEventListener("change", (ev) => save("mode", (ev.target as HTMLInputElement).value));
  refresh.addEventListener("click", () => void call("sources"));
  estimate.addEventListener("click", async () => {
    estimateText.textContent = "Estimating…";
    const answer = await call<{ text: string }>("estimate");
    estimateText.textContent = answer ? answer.text : "";
  });
  run.addEventListener("click", async () => {
    save("prompt", prompt.value);
    save("model", modelInput.value);
    run.disabled = true;
    const started = await call("run");
    if (!started) run.disabled = false;
  });
  stop.addEventListener("click", () => void call("stop"));
  file.addEventListener("change", () => {
    const chosen = file.files?.[0];
    if (chosen) void upload(chosen);
  });

  async function upload(chosen: File): Promise<void> {
    const limit = (model.get("max_upload_mb") ?? 50) * 1e6;
    if (chosen.size > limit) {
      showError(`${chosen.name} is ${(chosen.size / 1e6).toFixed(1)} MB, more than the ${limit / 1e6} MB this widget takes; read it with pandas in a cell instead`);
      return;
    }
    sourceInfo.textContent = `Uploading ${chosen.name}…`;
    const begun = await call<{ upload: string; chunk_bytes: number }>("upload_begin", { name: chosen.name, size: chosen.size });
    if (!begun) return;
    // A piece at a time: a big file is never all in memory here.
    for (let start = 0, seq = 0; start < chosen.size; start += begun.chunk_bytes, seq++) {
      const piece = await chosen.slice(start, start + begun.chunk_bytes).arrayBuffer();
      model.send({ type: "upload.chunk", upload: begun.upload, seq }, undefined, [piece]);
      sourceInfo.textContent = `Uploading ${chosen.name}… ${Math.min(100, Math.round(((start + piece.byteLength) / chosen.size) * 100))}%`;
    }
    const table = await call<Source>("upload_end", { upload: begun.upload });
    file.value = "";
    if (table) sourceInfo.textContent = `${table.name}: ${table.rows.toLocaleString()} rows · columns: ${table.columns.join(", ")}`;
  }

  async function download(format: string): Promise<void> {
    const file = await call<Download>("download", { format });
    if (!file) return;
    const bytes = Uint8Array.from(atob(file.data), (c) => c.charCodeAt(0));
    const url = URL.createObjectURL(new Blob([bytes], { type: file.mime }));
    const link = h("a", { href: url, download: file.filename });
    link.hidden = true;
    el.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  const subscriptions: [string, () => void][] = [
    ["change:sources", drawSources],
    ["change:source", drawSources],
    ["change:prompt", drawForm],
    ["change:model", drawForm],
    ["change:mode", drawForm],
    ["change:state", drawState],
  ];
  for (const [event, handler] of subscriptions) model.on(event, handler);
  drawSources();
  drawForm();
  drawState();

  void rpc.request<Choices>("choices").then(
    (choices) => {
      models.replaceChildren(...choices.models.map((m) => h("option", { value: m })));
      templates.replaceChildren(h("option", { value: "" }, ["(use a saved template)"]), ...choices.templates.map((t) => h("option", { value: t }, [t])));
      templates.parentElement!.hidden = choices.templates.length === 0;
      modelInput.placeholder = choices.default_model ? `session default: ${choices.default_model}` : "";
    },
    () => undefined,
  );

  return () => {
    for (const [event, handler] of subscriptions) model.off(event, handler);
  };
}

export default { initialize, render };
