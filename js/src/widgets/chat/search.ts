/**
 * Search within the conversation: wraps every match in the rendered messages in <mark>, working
 * on text nodes only (the messages are already sanitized; no HTML is parsed here).
 */

const MARK_CLASS = "llm-chat-hit";
const CURRENT_CLASS = "llm-chat-hit-current";

/** Removes the marks a previous search left, restoring the text nodes. */
export function clearMarks(root: HTMLElement): void {
  const marks = Array.from(root.querySelectorAll(`mark.${MARK_CLASS}`));
  for (const mark of marks) {
    const parent = mark.parentNode;
    if (!parent) continue;
    parent.replaceChild(document.createTextNode(mark.textContent ?? ""), mark);
    parent.normalize();
  }
}

/**
 * Marks every case-insensitive occurrence of `query` in the text under each of `scopes`;
 * returns the marks in document order.
 */
export function markMatches(scopes: Iterable<HTMLElement>, query: string): HTMLElement[] {
  const needle = query.trim().toLowerCase();
  const found: HTMLElement[] = [];
  if (!needle) return found;
  for (const scope of scopes) {
    const walker = document.createTreeWalker(scope, NodeFilter.SHOW_TEXT);
    const nodes: Text[] = [];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) nodes.push(n as Text);
    for (const node of nodes) {
      const text = node.data;
      const lower = text.toLowerCase();
      let at = lower.indexOf(needle);
      if (at < 0) continue;
      const pieces = document.createDocumentFragment();
      let from = 0;
      while (at >= 0) {
        if (at > from) pieces.append(text.slice(from, at));
        const mark = document.createElement("mark");
        mark.className = MARK_CLASS;
        mark.textContent = text.slice(at, at + needle.length);
        pieces.append(mark);
        found.push(mark);
        from = at + needle.length;
        at = lower.indexOf(needle, from);
      }
      if (from < text.length) pieces.append(text.slice(from));
      node.replaceWith(pieces);
    }
  }
  return found;
}

/** Makes mark `index` the current one (styled, scrolled into view). */
export function focusMark(marks: readonly HTMLElement[], index: number): void {
  marks.forEach((m, i) => m.classList.toggle(CURRENT_CLASS, i === index));
  marks[index]?.scrollIntoView({ block: "nearest" });
}
