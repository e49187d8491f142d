/**
 * A tiny element builder for the picker and the chat. Text always goes in as textContent:
 * anything that is markdown goes through shared/markdown.ts instead.
 */

type Attrs = Record<string, string | number | boolean | null | undefined>;
type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = String(value);
    else if (name === "text") el.textContent = String(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}

/** A button that never submits anything, with an accessible name. */
export function button(label: string, ariaLabel: string, cls = "", onClick?: (ev: MouseEvent) => void): HTMLButtonElement {
  const b = h("button", { type: "button", class: cls, "aria-label": ariaLabel, title: ariaLabel, text: label });
  if (onClick) b.addEventListener("click", onClick);
  return b;
}

let counter = 0;

/** An id unique in the page (several widgets, and several views of one widget, share it). */
export function uniqueId(prefix: string): string {
  counter += 1;
  return `${prefix}-${counter}-${Math.random().toString(36).slice(2, 7)}`;
}

/**
 * Keeps JupyterLab's keyboard shortcuts (Shift+Enter runs the cell, A/B/D add or delete cells in
 * command mode...) away from a text field inside a cell's output, so typing there just types.
 */
export function suppressLabShortcuts(el: HTMLElement): void {
  el.setAttribute("data-lm-suppress-shortcuts", "true");
}

/**
 * Shift+Enter in a text area: adds the line break ourselves. Inside a notebook cell, JupyterLab
 * cancels the browser's own line break (its Shift+Enter runs the cell), even in an output.
 */
export function insertLineBreak(area: HTMLTextAreaElement): void {
  area.setRangeText("\n", area.selectionStart, area.selectionEnd, "end");
  area.dispatchEvent(new Event("input", { bubbles: true }));
}
