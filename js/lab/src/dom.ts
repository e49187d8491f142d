// Building the sidebar's DOM. Every string from the log (prompts, responses, model names,
// errors, template text) is LLM-written or user-written and therefore hostile: it only ever goes
// into `textContent`, `title` or `value`, never into markup. This file is the one place elements
// are made, so that rule is checked in one place.

export interface IElementOptions {
  className?: string;
  text?: string;
  title?: string;
  attrs?: Record<string, string>;
  children?: (Node | null | undefined | false)[];
  onClick?: (event: MouseEvent) => void;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  options: IElementOptions = {}
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (options.className) {
    node.className = options.className;
  }
  if (options.text !== undefined) {
    node.textContent = options.text;
  }
  if (options.title !== undefined) {
    node.title = options.title;
  }
  for (const [name, value] of Object.entries(options.attrs ?? {})) {
    if (/^on/i.test(name)) {
      throw new Error(`event handler attributes are not allowed (${name})`);
    }
    node.setAttribute(name, value);
  }
  for (const child of options.children ?? []) {
    if (child) {
      node.appendChild(child);
    }
  }
  const onClick = options.onClick;
  if (onClick) {
    node.addEventListener('click', event => onClick(event as MouseEvent));
  }
  return node;
}

export function button(
  label: string,
  onClick: (event: MouseEvent) => void,
  options: { className?: string; title?: string; attrs?: Record<string, string> } = {}
): HTMLButtonElement {
  const node = el('button', {
    className: `jp-Button jp-mod-styled jp-mod-minimal ${options.className ?? ''}`.trim(),
    text: label,
    title: options.title,
    attrs: { type: 'button', ...(options.attrs ?? {}) },
    onClick: event => {
      event.stopPropagation();
      onClick(event);
    }
  });
  return node;
}

export function clear(node: Element): void {
  while (node.firstChild) {
    node.removeChild(node.firstChild);
  }
}

/** One line of up to `max` characters, for list previews. */
export function oneLine(text: string | null | undefined, max = 160): string {
  const flat = (text ?? '').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
