/** The small DOM helpers the template editor's views (view.ts, builder.ts) share. */

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, className = "", text = ""): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

export function button(text: string, label: string, onClick: () => void, className = ""): HTMLButtonElement {
  const b = el("button", className, text);
  b.type = "button";
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

export function labelled(text: string, control: HTMLElement, className: string): HTMLLabelElement {
  const label = el("label", className);
  label.append(el("span", "llm-te-label", text), control);
  return label;
}

export function input(label: string, placeholder: string): HTMLInputElement {
  const i = el("input");
  i.type = "text";
  i.placeholder = placeholder;
  i.setAttribute("aria-label", label);
  return i;
}
