/**
 * The WorkflowBuilder's view (llm_notebook/widgets/workflow_builder.py), drawn by the template
 * editor's bundle when the model's `kind` is "workflow_builder": a step's prompt is edited in the
 * template editor's CodeMirror editor (editor.ts), so CodeMirror ships once for both widgets.
 *
 * The draft (name, steps) lives here and goes with every request; Python checks each step as a
 * saved one is checked and answers with one line naming the step. Model output (preview cells)
 * is only ever set as textContent: it is never parsed as HTML.
 */
import type { AnyModel } from "@anywidget/types";
import { newId, rpcFor } from "../../shared/rpc";
import { button, el, input, labelled } from "./dom";
import { createCodeEditor, type CodeEditor } from "./editor";

type Kind = "llm" | "filter" | "python";

interface StepData {
  name: string;
  kind: Kind;
  prompt?: string;
  template?: string;
  system?: string;
  model?: string;
  options?: Record<string, unknown>;
  schema?: Record<string, unknown>;
  output?: string | Record<string, string>;
  function?: string;
}

interface WorkflowData {
  name: string | null;
  version: number | null;
  steps: StepData[];
}

interface Report {
  step: string;
  status: string;
  rows_in: number;
  rows_out: number;
  requests: number;
  cached: number;
  errors: number;
  note: string | null;
}

interface LoadReply {
  workflow: WorkflowData;
  versions: { version: number; message: string | null }[];
  columns: string[];
  rows: number | null;
  preview_rows: number;
  functions: string[];
}

interface PreviewReply {
  columns: [string, string][];
  rows: { index: string; cells: (string | null)[]; dropped_at: string | null }[];
  reports: Report[];
  rows_in: number;
  rows_out: number;
}

interface WorkflowEvent {
  type: "workflow.event";
  run: string | null;
  event: "start" | "progress" | "done";
  index: number;
  done?: number;
  total?: number;
  report?: Report;
}

const KIND_LABELS: Record<Kind, string> = { llm: "LLM step", filter: "Filter", python: "Python step" };

function field(label: string, control: HTMLElement): HTMLLabelElement {
  return labelled(label, control, "llm-wf-field");
}


function reportLine(r: Report): string {
  if (r.status === "skipped") return `unchanged, skipped · ${r.rows_out} rows`;
  if (r.status === "failed") return "failed";
  let text = `${r.rows_in} → ${r.rows_out} rows`;
  if (r.requests || r.cached) text += ` · ${r.requests} sent · ${r.cached} cached`;
  if (r.errors) text += ` · ${r.errors} errors`;
  return r.note ? `${text} · ${r.note}` : text;
}

/** A unique step name from `base` among `taken` (as Python's Workflow._free_name does). */
function freeName(base: string, taken: string[]): string {
  if (!taken.includes(base)) return base;
  let n = 2;
  while (taken.includes(`${base}_${n}`)) n++;
  return `${base}_${n}`;
}

export function renderWorkflowBuilder(model: AnyModel, root: HTMLElement): () => void {
  const rpc = rpcFor(model);
  root.classList.add("llm-nb", "llm-te", "llm-wf");

  let steps: StepData[] = [];
  let selected = 0;
  let columns: string[] = [];
  let running: string | null = null;
  const progress = new Map<number, string>();

  // -- skeleton ------------------------------------------------------------------------------------
  const nameInput = input("Workflow name", "workflow name, e.g. tickets");
  const badge = el("span", "llm-te-badge llm-muted");
  const status = el("div", "llm-muted llm-wf-status");
  status.setAttribute("role", "status");
  status.setAttribute("aria-live", "polite");
  const header = el("div", "llm-te-header");
  header.append(field("Workflow", nameInput), badge, status);

  const errorLine = el("div", "llm-error llm-wf-error");
  errorLine.setAttribute("role", "alert");
  errorLine.hidden = true;

  const list = el("ol", "llm-wf-steps");
  list.setAttribute("aria-label", "Steps (Alt+Up / Alt+Down move the focused step, Delete removes it)");
  const adders = el("div", "llm-wf-add");
  for (const kind of ["llm", "filter", "python"] as Kind[]) {
    adders.append(button(`+ ${KIND_LABELS[kind]}`, `Add a ${KIND_LABELS[kind].toLowerCase()}`, () => addStep(kind)));
  }

  const editorBox = el("div", "llm-wf-editor");
  const stepName = input("Step name", "step name");
  const kindSelect = el("select");
  kindSelect.setAttribute("aria-label", "Step kind");
  for (const kind of ["llm", "filter", "python"] as Kind[]) {
    const option = el("option", "", KIND_LABELS[kind]);
    option.value = kind;
    kindSelect.append(option);
  }
  const promptBox = el("div", "llm-te-prompt llm-wf-prompt");
  const modelInput = input("Step model", "model (default: the session's)");
  const outputInput = input("Output column", "output column (default: the step's name)");
  const functionInput = input("Registered function", "registered Python function name");
  const schemaInput = el("textarea", "llm-wf-schema");
  schemaInput.rows = 3;
  schemaInput.placeholder = '{"type": "object", "properties": {"category": {"type": "string"}}}';
  schemaInput.setAttribute("aria-label", "JSON schema (optional): its fields become columns");
  const columnsNote = el("div", "llm-muted llm-wf-columns");
  const promptField = field("Prompt", promptBox);
  const modelField = field("Model", modelInput);
  const outputField = field("Output", outputInput);
  const functionField = field("Function", functionInput);
  const schemaField = field("Schema", schemaInput);
  editorBox.append(field("Name", stepName), field("Kind", kindSelect), promptField, columnsNote, modelField,
    outputField, schemaField, functionField);

  const nInput = el("input", "llm-wf-n");
  nInput.type = "number";
  nInput.min = "1";
  nInput.max = "20";
  nInput.setAttribute("aria-label", "Rows to preview");
  const previewButton = button("Preview", "Preview the workflow on the first rows", () => void preview(), "llm-primary");
  const runButton = button("Run", "Run the workflow on all rows", () => void run());
  const stopButton = button("Stop", "Stop the run (finished rows are kept)", () => void rpc.request("stop").catch(() => undefined));
  stopButton.disabled = true;
  const messageInput = input("Version message", "version message (optional)");
  const saveButton = button("Save version", "Save a new version of the workflow", () => void save());
  const actions = el("div", "llm-wf-actions");
  actions.append(field("Rows", nInput), previewButton, runButton, stopButton, messageInput, saveButton);

  const previewBox = el("div", "llm-wf-preview");
  previewBox.setAttribute("aria-label", "Preview: each step's outputs side by side");
  previewBox.tabIndex = 0;

  const body = el("div", "llm-wf-body");
  const left = el("div", "llm-wf-left");
  left.append(list, adders);
  body.append(left, editorBox);
  root.append(header, errorLine, body, actions, previewBox);

  let editor: CodeEditor | null = null;
  let loadingStep = false;

  const showError = (message: string | null): void => {
    errorLine.hidden = !message;
    errorLine.textContent = message ?? "";
  };
  const say = (text: string): void => {
    status.textContent = text;
  };
  const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

  // -- the step list ---------------------------------------------------------------------------------
  const drawList = (): void => {
    list.replaceChildren();
    steps.forEach((step, index) => {
      const item = el("li", "llm-wf-step");
      item.tabIndex = 0;
      item.draggable = true;
      item.dataset.index = String(index);
      item.dataset.step = step.name;
      item.setAttribute("aria-current", index === selected ? "true" : "false");
      if (index === selected) item.classList.add("llm-wf-selected");
      const title = el("span", "llm-wf-step-title", `${index + 1}. ${step.name}`);
      const kind = el("span", "llm-wf-kind llm-muted", KIND_LABELS[step.kind]);
      const state = el("span", "llm-wf-progress llm-muted", progress.get(index) ?? "");
      const up = button("↑", `Move step ${step.name} up`, () => move(index, index - 1), "llm-wf-up");
      const down = button("↓", `Move step ${step.name} down`, () => move(index, index + 1), "llm-wf-down");
      const remove = button("✕", `Remove step ${step.name}`, () => removeStep(index), "llm-wf-remove");
      up.disabled = index === 0;
      down.disabled = index === steps.length - 1;
      item.append(title, kind, state, up, down, remove);
      item.addEventListener("click", (ev) => {
        if ((ev.target as HTMLElement).closest("button")) return;
        select(index);
      });
      item.addEventListener("keydown", (ev) => {
        if (ev.altKey && (ev.key === "ArrowUp" || ev.key === "ArrowDown")) {
          ev.preventDefault();
          move(index, index + (ev.key === "ArrowUp" ? -1 : 1));
        } else if (ev.key === "Delete") {
          ev.preventDefault();
          removeStep(index);
        } else if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          select(index);
        } else if (ev.key === "ArrowUp" || ev.key === "ArrowDown") {
          ev.preventDefault();
          focusStep(index + (ev.key === "ArrowUp" ? -1 : 1));
        }
      });
      item.addEventListener("dragstart", (ev) => {
        ev.dataTransfer?.setData("text/plain", String(index));
        if (ev.dataTransfer) ev.dataTransfer.effectAllowed = "move";
        item.classList.add("llm-wf-dragging");
      });
      item.addEventListener("dragend", () => item.classList.remove("llm-wf-dragging"));
      item.addEventListener("dragover", (ev) => {
        ev.preventDefault();
        if (ev.dataTransfer) ev.dataTransfer.dropEffect = "move";
      });
      item.addEventListener("drop", (ev) => {
        ev.preventDefault();
        const from = Number(ev.dataTransfer?.getData("text/plain"));
        if (Number.isInteger(from)) move(from, index);
      });
      list.append(item);
    });
  };

  const focusStep = (index: number): void => {
    const items = list.querySelectorAll<HTMLElement>(".llm-wf-step");
    items[Math.max(0, Math.min(index, items.length - 1))]?.focus();
  };

  const changed = (): void => {
    progress.clear();
    badge.textContent = model.get("version") ? `v${model.get("version")} · edited` : "not saved";
  };

  const move = (from: number, to: number): void => {
    if (to < 0 || to >= steps.length || from === to) return;
    const [step] = steps.splice(from, 1);
    steps.splice(to, 0, step!);
    selected = to;
    changed();
    drawList();
    drawEditor();
    focusStep(to);
    say(`Moved ${step!.name} to position ${to + 1}.`);
  };

  const removeStep = (index: number): void => {
    const [gone] = steps.splice(index, 1);
    selected = Math.max(0, Math.min(selected, steps.length - 1));
    changed();
    drawList();
    drawEditor();
    focusStep(index);
    say(`Removed ${gone!.name}.`);
  };

  const addStep = (kind: Kind): void => {
    const base = kind === "llm" ? "llm" : kind;
    const step: StepData = { name: freeName(base, steps.map((s) => s.name)), kind };
    if (kind === "python") step.function = "";
    else step.prompt = columns.length ? `{${columns[0]}}` : "";
    steps.push(step);
    selected = steps.length - 1;
    changed();
    drawList();
    drawEditor();
    stepName.focus();
  };

  const select = (index: number): void => {
    selected = index;
    drawList();
    drawEditor();
  };

  // -- the step editor --------------------------------------------------------------------------------
  const drawEditor = (): void => {
    const step = steps[selected];
    editorBox.hidden = !step;
    if (!step) return;
    loadingStep = true;
    stepName.value = step.name;
    kindSelect.value = step.kind;
    const usesFunction = step.kind === "python" || (step.kind === "filter" && step.function !== undefined && !step.prompt);
    promptField.hidden = usesFunction || step.template !== undefined;
    columnsNote.hidden = usesFunction && !step.template;
    modelField.hidden = usesFunction;
    functionField.hidden = !usesFunction;
    outputField.hidden = step.kind !== "llm" || step.schema !== undefined;
    schemaField.hidden = step.kind !== "llm";
    modelInput.value = step.model ?? "";
    outputInput.value = typeof step.output === "string" ? step.output : "";
    functionInput.value = step.function ?? "";
    schemaInput.value = step.schema ? JSON.stringify(step.schema) : "";
    columnsNote.textContent = step.template
      ? `Uses the saved template ${step.template} (edit it in a TemplateEditor).`
      : columns.length
        ? `Columns: ${columns.map((c) => `{${c}}`).join(" ")}`
        : "";
    if (!editor) {
      editor = createCodeEditor(promptBox, {
        text: step.prompt ?? step.template ?? "",
        label: "Step prompt",
        placeholder: "Classify this ticket: {ticket}",
        onChange: () => {
          if (loadingStep) return;
          const current = steps[selected];
          if (current) {
            current.prompt = editor!.text();
            changed();
          }
        },
      });
    } else {
      editor.setText(step.prompt ?? "");
    }
    loadingStep = false;
  };

  const edit = (apply: (step: StepData) => void): void => {
    const step = steps[selected];
    if (!step || loadingStep) return;
    apply(step);
    changed();
    drawList();
  };
  const optional = (value: string): string | undefined => value.trim() || undefined;
  stepName.addEventListener("input", () => edit((s) => (s.name = stepName.value.trim())));
  modelInput.addEventListener("input", () => edit((s) => (s.model = optional(modelInput.value))));
  outputInput.addEventListener("input", () => edit((s) => (s.output = optional(outputInput.value))));
  functionInput.addEventListener("input", () => edit((s) => (s.function = functionInput.value.trim())));
  schemaInput.addEventListener("change", () => {
    const text = schemaInput.value.trim();
    try {
      edit((s) => (s.schema = text ? (JSON.parse(text) as Record<string, unknown>) : undefined));
      showError(null);
    } catch {
      showError(`step '${steps[selected]?.name}': the schema is not valid JSON`);
    }
    drawEditor();
  });
  kindSelect.addEventListener("change", () => {
    edit((s) => {
      s.kind = kindSelect.value as Kind;
      if (s.kind === "python") {
        s.function = s.function ?? "";
        delete s.prompt;
        delete s.model;
        delete s.schema;
        delete s.output;
      } else if (s.prompt === undefined && s.template === undefined) {
        delete s.function;
        s.prompt = "";
      }
      if (s.kind !== "llm") {
        delete s.schema;
        delete s.output;
      }
    });
    drawEditor();
  });

  /** The steps as Python takes them: no empty fields. */
  const draft = (): StepData[] =>
    steps.map((s) => {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(s)) if (v !== undefined && v !== "") out[k] = v;
      return out as unknown as StepData;
    });

  // -- requests ---------------------------------------------------------------------------------------
  const busy = (on: boolean): void => {
    previewButton.disabled = on;
    runButton.disabled = on;
    saveButton.disabled = on;
    stopButton.disabled = !on;
  };

  const drawPreview = (reply: PreviewReply): void => {
    const table = el("table", "llm-wf-table");
    const head = el("thead");
    const groups = el("tr");
    const names = el("tr");
    groups.append(el("th", "", ""));
    names.append(el("th", "", "row"));
    let previous = "";
    for (const [step, column] of reply.columns) {
      if (step !== previous) {
        const th = el("th", "llm-wf-group", step);
        th.colSpan = reply.columns.filter(([s]) => s === step).length;
        th.scope = "colgroup";
        groups.append(th);
        previous = step;
      }
      const th = el("th", "", column);
      th.scope = "col";
      names.append(th);
    }
    head.append(groups, names);
    const tbody = el("tbody");
    for (const row of reply.rows) {
      const tr = el("tr");
      if (row.dropped_at) tr.classList.add("llm-wf-dropped");
      const th = el("th", "", row.index);
      th.scope = "row";
      tr.append(th);
      for (const cell of row.cells) tr.append(el("td", cell === null ? "llm-muted" : "", cell ?? "—"));
      tbody.append(tr);
    }
    table.append(head, tbody);
    previewBox.replaceChildren(table);
  };

  const applyReports = (reports: Report[]): void => {
    progress.clear();
    reports.forEach((r, i) => progress.set(i, reportLine(r)));
    drawList();
  };

  const preview = async (): Promise<void> => {
    showError(null);
    busy(true);
    say("Previewing…");
    try {
      const n = Number(nInput.value) || undefined;
      const reply = await rpc.request<PreviewReply>("preview", { steps: draft(), name: nameInput.value, n });
      drawPreview(reply);
      applyReports(reply.reports);
      say(`Preview: ${reply.rows_in} rows in, ${reply.rows_out} out.`);
    } catch (err) {
      showError(errorText(err));
      say("");
    } finally {
      busy(false);
    }
  };

  const run = async (): Promise<void> => {
    showError(null);
    busy(true);
    progress.clear();
    drawList();
    running = newId();
    say("Running…");
    try {
      const reply = await rpc.request<{ rows_in: number; rows_out: number; steps: Report[] }>("run", {
        steps: draft(),
        name: nameInput.value,
        run_id: running,
      }, { timeoutMs: 0 });
      applyReports(reply.steps);
      say(`Run finished: ${reply.rows_in} rows in, ${reply.rows_out} out (builder.result in Python).`);
    } catch (err) {
      showError(errorText(err));
      say("");
    } finally {
      running = null;
      busy(false);
    }
  };

  const save = async (): Promise<void> => {
    showError(null);
    try {
      const reply = await rpc.request<{ workflow: WorkflowData }>("save", {
        steps: draft(),
        name: nameInput.value,
        message: messageInput.value || null,
      });
      loadWorkflow(reply.workflow);
      messageInput.value = "";
      say(`Saved ${reply.workflow.name} v${reply.workflow.version}.`);
    } catch (err) {
      showError(errorText(err));
    }
  };

  const onCustom = (msg: unknown): void => {
    const ev = msg as WorkflowEvent;
    if (!ev || ev.type !== "workflow.event" || ev.run !== running || running === null) return;
    if (ev.event === "progress") progress.set(ev.index, `${ev.done ?? 0}/${ev.total ?? 0} rows`);
    else if ("report" in ev && ev.report) progress.set(ev.index, reportLine(ev.report));
    else progress.set(ev.index, "running…");
    const item = list.querySelectorAll(".llm-wf-progress")[ev.index];
    if (item) item.textContent = progress.get(ev.index) ?? "";
  };
  model.on("msg:custom", onCustom);

  const loadWorkflow = (wf: WorkflowData): void => {
    nameInput.value = wf.name ?? "";
    steps = wf.steps.map((s) => ({ ...s }));
    selected = Math.min(selected, Math.max(0, steps.length - 1));
    badge.textContent = wf.version ? `v${wf.version}` : "not saved";
    drawList();
    drawEditor();
  };

  const onKey = (ev: KeyboardEvent): void => {
    const mod = ev.ctrlKey || ev.metaKey;
    if (mod && ev.key === "Enter") {
      ev.preventDefault();
      if (!previewButton.disabled) void preview();
    } else if (mod && (ev.key === "s" || ev.key === "S")) {
      ev.preventDefault();
      ev.stopPropagation(); // the notebook must not save itself instead
      if (!saveButton.disabled) void save();
    }
  };
  root.addEventListener("keydown", onKey);

  say("Loading…");
  rpc
    .request<LoadReply>("load")
    .then((reply) => {
      columns = reply.columns;
      nInput.value = String(reply.preview_rows);
      loadWorkflow(reply.workflow);
      say(reply.rows === null ? "No data: pass data=df to preview or run." : `${reply.rows} rows, ${columns.length} columns.`);
    })
    .catch((err) => showError(errorText(err)));

  return () => {
    model.off("msg:custom", onCustom);
    root.removeEventListener("keydown", onKey);
    editor?.destroy();
  };
}
