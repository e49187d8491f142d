/**
 * The variables form: one field per variable the text uses, in order of first use, each with a
 * "default" switch that saves its value as the template's default.
 *
 * Fields are kept by name while the text changes, so a variable that disappears for a moment
 * (while its placeholder is being retyped) comes back with its value.
 */
import { newId } from "../../shared/rpc";

interface Field {
  row: HTMLElement;
  input: HTMLTextAreaElement;
  isDefault: HTMLInputElement;
  /** A saved default that is not text (a number, a list): sent back as it was, unless edited. */
  original: { shown: string; value: unknown } | null;
}

function shown(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

export class VariablesForm {
  readonly el: HTMLElement;
  private readonly list: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly fields = new Map<string, Field>();
  private readonly prefix = `llm-te-${newId().slice(0, 8)}`;
  private order: string[] = [];

  constructor(private readonly onInput: () => void) {
    this.el = document.createElement("fieldset");
    this.el.className = "llm-te-vars";
    const legend = document.createElement("legend");
    legend.textContent = "Variables";
    this.empty = document.createElement("p");
    this.empty.className = "llm-muted llm-te-vars-empty";
    this.empty.textContent = "No variables yet: write {name} in the template to add one.";
    this.list = document.createElement("div");
    this.list.className = "llm-te-vars-list";
    this.el.append(legend, this.empty, this.list);
  }

  /** Shows fields for `names` (in this order), creating the missing ones. */
  update(names: string[]): void {
    if (names.length === this.order.length && names.every((n, i) => n === this.order[i])) return;
    this.order = [...names];
    this.list.replaceChildren(...names.map((name) => this.field(name).row));
    this.empty.hidden = names.length > 0;
  }

  /** Fills fields from a saved template's defaults (and marks them as defaults). */
  setDefaults(defaults: Record<string, unknown>): void {
    for (const [name, value] of Object.entries(defaults)) {
      const f = this.field(name);
      f.input.value = shown(value);
      f.original = typeof value === "string" ? null : { shown: shown(value), value };
      f.isDefault.checked = true;
    }
    for (const [name, f] of this.fields) {
      if (!(name in defaults)) f.isDefault.checked = false;
    }
  }

  /** The values to fill in: fields that are not empty, of the variables shown. */
  values(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const name of this.order) {
      const f = this.fields.get(name)!;
      if (f.input.value !== "") out[name] = this.valueOf(f);
    }
    return out;
  }

  /** The same as text, for the instant preview. */
  texts(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const name of this.order) {
      const v = this.fields.get(name)!.input.value;
      if (v !== "") out[name] = v;
    }
    return out;
  }

  /** The defaults to save: the switched-on fields of the variables shown. */
  defaults(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const name of this.order) {
      const f = this.fields.get(name)!;
      if (f.isDefault.checked) out[name] = this.valueOf(f);
    }
    return out;
  }

  /** The variables shown that have no value and no default. */
  missing(): string[] {
    return this.order.filter((name) => this.fields.get(name)!.input.value === "" && !this.fields.get(name)!.isDefault.checked);
  }

  focusFirst(names: string[]): void {
    const f = names.length ? this.fields.get(names[0]!) : undefined;
    f?.input.focus();
  }

  private valueOf(f: Field): unknown {
    return f.original && f.original.shown === f.input.value ? f.original.value : f.input.value;
  }

  private field(name: string): Field {
    const existing = this.fields.get(name);
    if (existing) return existing;
    const id = `${this.prefix}-${this.fields.size}`;
    const row = document.createElement("div");
    row.className = "llm-te-var";
    row.dataset.variable = name;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.className = "llm-te-var-name";
    label.textContent = name;
    const input = document.createElement("textarea");
    input.id = id;
    input.rows = 1;
    input.className = "llm-te-var-value";
    input.setAttribute("aria-label", `Value of ${name}`);
    input.placeholder = `value of ${name}`;
    input.addEventListener("input", this.onInput);
    const defaultLabel = document.createElement("label");
    defaultLabel.className = "llm-te-var-default";
    const isDefault = document.createElement("input");
    isDefault.type = "checkbox";
    isDefault.setAttribute("aria-label", `Save this value as the default of ${name}`);
    isDefault.addEventListener("change", this.onInput);
    defaultLabel.append(isDefault, document.createTextNode(" default"));
    row.append(label, input, defaultLabel);
    const f: Field = { row, input, isDefault, original: null };
    this.fields.set(name, f);
    return f;
  }
}
