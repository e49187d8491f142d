/**
 * Running the template: the models to run on (chips plus a field with suggestions), and one
 * column per model where its answer streams in, rendered by the shared sanitized renderer.
 */
import { renderMarkdownInto } from "../../shared/markdown";
import { newId } from "../../shared/rpc";
import type { StreamState } from "../../shared/stream";

export class ModelChooser {
  readonly el: HTMLElement;
  private readonly chips: HTMLElement;
  private readonly input: HTMLInputElement;
  private readonly options: HTMLDataListElement;
  private models: string[] = [];
  max = 6;

  constructor(private readonly onChange: (models: string[]) => void) {
    this.el = document.createElement("div");
    this.el.className = "llm-te-models";
    this.el.setAttribute("role", "group");
    this.el.setAttribute("aria-label", "Models to run the template on");
    this.chips = document.createElement("span");
    this.chips.className = "llm-te-chips";
    this.options = document.createElement("datalist");
    this.options.id = `llm-te-models-${newId().slice(0, 8)}`;
    this.input = document.createElement("input");
    this.input.type = "text";
    this.input.className = "llm-te-model-input";
    this.input.placeholder = "add a model…";
    this.input.setAttribute("aria-label", "Add a model to run on (press Enter)");
    this.input.setAttribute("list", this.options.id);
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        this.add(this.input.value);
      }
    });
    this.input.addEventListener("change", () => {
      // Picking a suggestion from the list fires "change" without a key press.
      if (this.input.value && !this.input.value.endsWith("/")) this.add(this.input.value);
    });
    this.el.append(this.chips, this.input, this.options);
  }

  selected(): string[] {
    return [...this.models];
  }

  set(models: string[]): void {
    this.models = Array.from(new Set(models.filter((m) => m.trim()))).slice(0, this.max);
    this.draw();
  }

  suggest(models: string[]): void {
    this.options.replaceChildren(
      ...models.map((m) => {
        const option = document.createElement("option");
        option.value = m;
        return option;
      }),
    );
  }

  private add(value: string): void {
    const model = value.trim();
    if (!model || model.endsWith("/") || this.models.includes(model) || this.models.length >= this.max) return;
    this.models.push(model);
    this.input.value = "";
    this.draw();
    this.onChange(this.selected());
  }

  private remove(model: string): void {
    this.models = this.models.filter((m) => m !== model);
    this.draw();
    this.onChange(this.selected());
  }

  private draw(): void {
    this.chips.replaceChildren(
      ...this.models.map((model) => {
        const chip = document.createElement("span");
        chip.className = "llm-te-chip";
        chip.dataset.model = model;
        const name = document.createElement("span");
        name.textContent = model;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "llm-te-chip-remove";
        remove.textContent = "×";
        remove.setAttribute("aria-label", `Remove ${model}`);
        remove.addEventListener("click", () => this.remove(model));
        chip.append(name, remove);
        return chip;
      }),
    );
    this.input.disabled = this.models.length >= this.max;
  }
}

/** What Python returns for one model of a run (widgets/template_editor.py `_call`). */
export interface RunResult {
  model: string;
  index: number;
  ok: boolean;
  error: string | null;
  status?: string;
  input_tokens?: number | null;
  output_tokens?: number | null;
  cost?: number | null;
  unpriced?: boolean;
  duration_ms?: number | null;
  cached?: boolean;
}

interface Column {
  el: HTMLElement;
  status: HTMLElement;
  body: HTMLElement;
  footer: HTMLElement;
  text: string;
  frame: number;
}

function footerText(r: RunResult): string {
  const parts: string[] = [];
  if (r.cached) parts.push("cached");
  if (r.input_tokens !== null && r.input_tokens !== undefined) parts.push(`${r.input_tokens} in`);
  if (r.output_tokens !== null && r.output_tokens !== undefined) parts.push(`${r.output_tokens} out`);
  if (r.unpriced) parts.push("unpriced");
  else if (typeof r.cost === "number") parts.push(`$${r.cost.toFixed(r.cost < 0.01 ? 5 : 3)}`);
  if (typeof r.duration_ms === "number") parts.push(`${(r.duration_ms / 1000).toFixed(2)} s`);
  return parts.join(" · ");
}

export class ResultsPanel {
  readonly el: HTMLElement;
  private columns: Column[] = [];

  constructor() {
    this.el = document.createElement("div");
    this.el.className = "llm-te-results";
    this.el.setAttribute("role", "region");
    this.el.setAttribute("aria-label", "Results, one column per model");
  }

  /** Empties the panel and opens one waiting column per model, in order. */
  start(models: string[]): void {
    this.clear();
    this.columns = models.map((model) => {
      const el = document.createElement("section");
      el.className = "llm-te-result";
      el.dataset.model = model;
      el.setAttribute("aria-label", `Answer of ${model}`);
      el.setAttribute("aria-busy", "true");
      const head = document.createElement("header");
      const name = document.createElement("strong");
      name.textContent = model;
      const status = document.createElement("span");
      status.className = "llm-muted llm-te-result-status";
      status.textContent = "waiting…";
      head.append(name, status);
      const body = document.createElement("div");
      body.className = "llm-te-result-body";
      body.setAttribute("aria-live", "polite");
      const footer = document.createElement("footer");
      footer.className = "llm-muted llm-te-result-footer";
      el.append(head, body, footer);
      return { el, status, body, footer, text: "", frame: 0 };
    });
    this.el.replaceChildren(...this.columns.map((c) => c.el));
  }

  /** Applies a stream's state to its column (by the index Python put in the stream's meta). */
  stream(index: number, state: StreamState): void {
    const column = this.columns[index];
    if (!column) return;
    column.text = state.text;
    if (state.status === "streaming") {
      column.status.textContent = "streaming…";
    } else if (state.status === "done") {
      column.status.textContent = "done";
      column.el.setAttribute("aria-busy", "false");
      if (typeof state.meta.model === "string") this.finish(state.meta as unknown as RunResult);
    } else {
      column.status.textContent = "failed";
      column.el.setAttribute("aria-busy", "false");
      this.fail(index, state.error ?? "The call failed.");
    }
    // Re-render at most once a frame, however fast deltas arrive.
    if (!column.frame) {
      column.frame = requestAnimationFrame(() => {
        column.frame = 0;
        renderMarkdownInto(column.body, column.text);
      });
    }
  }

  finish(result: RunResult): void {
    const column = this.columns[result.index];
    if (!column) return;
    if (!result.ok) {
      this.fail(result.index, result.error ?? "The call failed.");
      return;
    }
    column.footer.textContent = footerText(result);
  }

  fail(index: number, error: string): void {
    const column = this.columns[index];
    if (!column) return;
    column.el.setAttribute("aria-busy", "false");
    column.status.textContent = "failed";
    let line = column.el.querySelector<HTMLElement>(".llm-error");
    if (!line) {
      line = document.createElement("div");
      line.className = "llm-error";
      line.setAttribute("role", "alert");
      column.el.insertBefore(line, column.footer);
    }
    line.textContent = error;
  }

  /** Marks every column that has not finished as not run (the request failed as a whole). */
  abandon(error: string): void {
    this.columns.forEach((c, i) => {
      if (c.el.getAttribute("aria-busy") === "true") this.fail(i, error);
    });
  }

  clear(): void {
    for (const c of this.columns) if (c.frame) cancelAnimationFrame(c.frame);
    this.columns = [];
    this.el.replaceChildren();
  }
}
