/**
 * The model picker: a combobox (search field) over a listbox of models grouped by provider.
 * Used by the ModelPicker widget (always open) and by the chat (compact: a button that opens it).
 *
 * Keyboard: type to filter; ↑/↓ (and PageUp/PageDown, Ctrl+Home/End) move through the options;
 * Enter chooses; Esc closes the compact picker or clears the search. Focus stays in the search
 * field and the active option is announced through aria-activedescendant (the WAI-ARIA
 * combobox pattern), so screen readers follow it.
 */
import type { RpcClient } from "../../shared/rpc";
import { h, suppressLabShortcuts, uniqueId } from "./dom";
import {
  customId,
  decodeTable,
  filterRows,
  formatContext,
  formatPrice,
  groupTitle,
  keyText,
  type CompactTable,
  type ModelRow,
} from "./table";

/** Options drawn at once; thousands of rows would make every keystroke slow. */
export const MAX_SHOWN = 150;

export interface PickerOptions {
  rpc: RpcClient;
  value: string;
  onChoose: (id: string) => void;
  /** A button that opens the list in a popover (the chat), instead of a list always shown. */
  compact?: boolean;
  /** Called once the table is (re)loaded, with the session's default model. */
  onLoad?: (defaultModel: string) => void;
}

export interface PickerView {
  readonly el: HTMLElement;
  setValue(id: string): void;
  /** The row of a model id, once the table is loaded. */
  rowOf(id: string): ModelRow | undefined;
  /** Fetches the table again (e.g. after an endpoint was added). */
  reload(): void;
  focus(): void;
  destroy(): void;
}

// One table per widget's request client: all views of a widget share the download.
const tables = new WeakMap<RpcClient, Promise<{ rows: ModelRow[]; default: string }>>();

function loadTable(rpc: RpcClient, fresh = false): Promise<{ rows: ModelRow[]; default: string }> {
  let p = fresh ? undefined : tables.get(rpc);
  if (!p) {
    p = rpc.request<CompactTable>("picker.models", {}, { timeoutMs: 60_000 }).then((t) => ({
      rows: decodeTable(t),
      default: t.default,
    }));
    p.catch(() => tables.delete(rpc)); // a failed load is retried next time
    tables.set(rpc, p);
  }
  return p;
}

type Item = { id: string; row: ModelRow | null; label: string };

export function createPicker(opts: PickerOptions): PickerView {
  const base = uniqueId("llm-picker");
  let value = opts.value;
  let rows: ModelRow[] | null = null;
  let items: Item[] = [];
  let active = -1;
  let open = !opts.compact;
  let destroyed = false;

  const listId = `${base}-list`;
  const search = h("input", {
    type: "text",
    class: "llm-picker-search",
    role: "combobox",
    "aria-autocomplete": "list",
    "aria-expanded": String(open),
    "aria-controls": listId,
    "aria-label": "Search models",
    placeholder: "Search models (e.g. gpt-4o, local, claude)…",
    autocomplete: "off",
    spellcheck: "false",
  });
  suppressLabShortcuts(search);
  const status = h("div", { class: "llm-picker-status llm-muted", "aria-live": "polite" });
  const list = h("div", { class: "llm-picker-list", role: "listbox", id: listId, "aria-label": "Models" });
  const more = h("div", { class: "llm-picker-more llm-muted" });
  const panel = h("div", { class: "llm-picker-panel" }, search, status, list, more);
  const el = h("div", { class: `llm-picker${opts.compact ? " llm-picker-compact" : ""}` });

  let toggle: HTMLButtonElement | null = null;
  if (opts.compact) {
    toggle = h("button", {
      type: "button",
      class: "llm-picker-toggle",
      "aria-haspopup": "listbox",
      "aria-expanded": "false",
    });
    toggle.addEventListener("click", () => (open ? close(true) : show()));
    panel.hidden = true;
    el.append(toggle, panel);
  } else {
    el.append(panel);
  }

  function updateToggle(): void {
    if (!toggle) return;
    toggle.textContent = `${value || "default model"} ▾`;
    toggle.setAttribute("aria-label", `Model: ${value || "the session's default"}. Change model`);
    toggle.title = "Change the model of the next message";
  }

  function show(): void {
    open = true;
    panel.hidden = false;
    toggle?.setAttribute("aria-expanded", "true");
    search.setAttribute("aria-expanded", "true");
    ensureLoaded();
    draw();
    search.focus();
    document.addEventListener("mousedown", onOutside, true);
  }

  function close(focusToggle: boolean): void {
    if (!opts.compact) return;
    open = false;
    panel.hidden = true;
    toggle?.setAttribute("aria-expanded", "false");
    search.setAttribute("aria-expanded", "false");
    search.removeAttribute("aria-activedescendant");
    document.removeEventListener("mousedown", onOutside, true);
    if (focusToggle) toggle?.focus();
  }

  function onOutside(ev: MouseEvent): void {
    if (!el.contains(ev.target as Node)) close(false);
  }

  function ensureLoaded(fresh = false): void {
    if (rows && !fresh) return;
    status.textContent = "Loading models…";
    loadTable(opts.rpc, fresh).then(
      (t) => {
        if (destroyed) return;
        rows = t.rows;
        draw();
        opts.onLoad?.(t.default);
      },
      (err: Error) => {
        if (destroyed) return;
        status.textContent = `Could not load the models: ${err.message}`;
      },
    );
  }

  function draw(): void {
    if (!rows) return;
    const query = search.value;
    const { rows: shown, total } = filterRows(rows, query, MAX_SHOWN);
    items = [];
    const custom = customId(query, rows);
    if (custom) items.push({ id: custom, row: null, label: `Use “${custom}”` });
    for (const row of shown) items.push({ id: row.id, row, label: row.id });
    const chosen = items.findIndex((it) => it.id === value);
    active = items.length === 0 ? -1 : query ? 0 : Math.max(chosen, 0);

    const nodes: HTMLElement[] = [];
    let groupEl: HTMLElement | null = null;
    let lastGroup: unknown = undefined;
    items.forEach((item, i) => {
      const option = renderOption(item, i);
      if (!item.row) {
        nodes.push(option);
        return;
      }
      if (item.row.group !== lastGroup) {
        lastGroup = item.row.group;
        const titleId = `${base}-g${i}`;
        groupEl = h("div", { role: "group", class: "llm-picker-group", "aria-labelledby": titleId },
          h("div", { class: "llm-picker-group-title", id: titleId, role: "presentation", text: groupTitle(item.row.group) }));
        nodes.push(groupEl);
      }
      groupEl!.append(option);
    });
    list.replaceChildren(...nodes);
    const count = total === 1 ? "1 model" : `${total} models`;
    status.textContent = query ? `${count} match “${query}”` : `${count}`;
    more.textContent = total > shown.length ? `${total - shown.length} more: type to narrow the list` : "";
    more.hidden = total <= shown.length;
    setActive(active, false);
  }

  function renderOption(item: Item, index: number): HTMLElement {
    const row = item.row;
    const details = row ? [row.note, keyText(row), formatContext(row.contextWindow), formatPrice(row.inputPer1M, row.outputPer1M)].filter(Boolean).join(" · ") : "a model id of your own";
    const option = h("div", {
      role: "option",
      id: `${base}-o${index}`,
      class: `llm-picker-option${row && !row.available ? " llm-unavailable" : ""}${row?.group.key === false ? " llm-nokey" : ""}`,
      "aria-selected": String(item.id === value),
      "data-model": item.id,
    },
    h("span", { class: "llm-picker-id", text: item.label }),
    h("span", { class: "llm-picker-details llm-muted", text: details }));
    // mousedown, not click: keep the focus in the search field (the combobox pattern).
    option.addEventListener("mousedown", (ev) => {
      ev.preventDefault();
      choose(index);
    });
    return option;
  }

  function setActive(index: number, scroll = true): void {
    const options = list.querySelectorAll<HTMLElement>('[role="option"]');
    options.forEach((o) => o.classList.remove("llm-active"));
    active = index;
    const target = options[index];
    if (target && open) {
      target.classList.add("llm-active");
      search.setAttribute("aria-activedescendant", target.id);
      if (scroll) target.scrollIntoView({ block: "nearest" });
    } else {
      search.removeAttribute("aria-activedescendant");
    }
  }

  function choose(index: number): void {
    const item = items[index];
    if (!item) return;
    if (item.row?.wildcard) {
      // "loop/*" is every model of an endpoint: start the id and let the user finish it.
      search.value = item.id.slice(0, -1);
      draw();
      search.focus();
      return;
    }
    value = item.id;
    updateToggle();
    opts.onChoose(item.id);
    if (opts.compact) {
      search.value = "";
      close(true);
    } else {
      list.querySelectorAll('[role="option"]').forEach((o) =>
        o.setAttribute("aria-selected", String((o as HTMLElement).dataset.model === value)));
    }
  }

  search.addEventListener("input", () => {
    if (!open) show();
    draw();
  });
  search.addEventListener("keydown", (ev) => {
    const n = items.length;
    const move = (to: number): void => {
      ev.preventDefault();
      ev.stopPropagation();
      if (!open) show();
      if (n) setActive(Math.min(n - 1, Math.max(0, to)));
    };
    switch (ev.key) {
      case "ArrowDown":
        move(active + 1);
        return;
      case "ArrowUp":
        move(active - 1);
        return;
      case "PageDown":
        move(active + 10);
        return;
      case "PageUp":
        move(active - 10);
        return;
      case "Home":
      case "End":
        if (ev.ctrlKey || ev.metaKey) move(ev.key === "Home" ? 0 : n - 1);
        return;
      case "Enter":
        ev.preventDefault();
        ev.stopPropagation();
        if (active >= 0) choose(active);
        return;
      case "Escape":
        ev.preventDefault();
        ev.stopPropagation();
        if (opts.compact) close(true);
        else if (search.value) {
          search.value = "";
          draw();
        }
        return;
      case "Tab":
        if (opts.compact) close(false);
        return;
    }
  });

  updateToggle();
  if (open) ensureLoaded();

  return {
    el,
    setValue(id: string) {
      value = id;
      updateToggle();
      if (rows && open) draw();
    },
    rowOf(id: string) {
      return rows?.find((r) => r.id === id);
    },
    reload() {
      rows = null;
      ensureLoaded(true);
    },
    focus() {
      (toggle ?? search).focus();
    },
    destroy() {
      destroyed = true;
      document.removeEventListener("mousedown", onOutside, true);
    },
  };
}
