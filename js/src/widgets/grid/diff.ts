/**
 * A word-level diff of two outputs: longest common subsequence over word and whitespace tokens,
 * after trimming the common start and end. Rendered as spans with textContent only: the texts
 * are LLM output.
 */

export type DiffKind = "same" | "del" | "ins";

export interface DiffOp {
  kind: DiffKind;
  text: string;
}

/** Beyond this many DP cells (about 16 MB of table), the changed middle is shown as one replacement. */
const MAX_TABLE = 4_000_000;

export function tokenize(text: string): string[] {
  return text.match(/\s+|[^\s]+/g) ?? [];
}

function push(ops: DiffOp[], kind: DiffKind, text: string): void {
  if (!text) return;
  const last = ops[ops.length - 1];
  if (last && last.kind === kind) last.text += text;
  else ops.push({ kind, text });
}

/** Ops that turn `a` into `b`: "same" text of both, "del" text only in a, "ins" only in b. */
export function wordDiff(a: string, b: string, maxTable = MAX_TABLE): DiffOp[] {
  const x = tokenize(a);
  const y = tokenize(b);
  let start = 0;
  while (start < x.length && start < y.length && x[start] === y[start]) start++;
  let endX = x.length;
  let endY = y.length;
  while (endX > start && endY > start && x[endX - 1] === y[endY - 1]) {
    endX--;
    endY--;
  }
  const ops: DiffOp[] = [];
  push(ops, "same", x.slice(0, start).join(""));
  const mx = x.slice(start, endX);
  const my = y.slice(start, endY);
  const n = mx.length;
  const m = my.length;
  if ((n + 1) * (m + 1) > maxTable) {
    push(ops, "del", mx.join(""));
    push(ops, "ins", my.join(""));
  } else if (n || m) {
    // lcs[i * (m + 1) + j] = LCS length of mx[i:] and my[j:]
    const w = m + 1;
    const lcs = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * w + j] = mx[i] === my[j] ? lcs[(i + 1) * w + j + 1]! + 1 : Math.max(lcs[(i + 1) * w + j]!, lcs[i * w + j + 1]!);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (mx[i] === my[j]) {
        push(ops, "same", mx[i]!);
        i++;
        j++;
      } else if (lcs[(i + 1) * w + j]! >= lcs[i * w + j + 1]!) {
        push(ops, "del", mx[i++]!);
      } else {
        push(ops, "ins", my[j++]!);
      }
    }
    while (i < n) push(ops, "del", mx[i++]!);
    while (j < m) push(ops, "ins", my[j++]!);
  }
  push(ops, "same", x.slice(endX).join(""));
  return ops;
}

/** Words (not whitespace) removed and added. */
export function diffStats(ops: DiffOp[]): { removed: number; added: number } {
  let removed = 0;
  let added = 0;
  for (const op of ops) {
    const words = tokenize(op.text).filter((t) => t.trim()).length;
    if (op.kind === "del") removed += words;
    else if (op.kind === "ins") added += words;
  }
  return { removed, added };
}

/** Renders ops into `el` as text spans (<del>/<ins> for changes). */
export function renderDiff(el: HTMLElement, ops: DiffOp[]): void {
  const doc = el.ownerDocument;
  const parts = ops.map((op) => {
    const node = doc.createElement(op.kind === "del" ? "del" : op.kind === "ins" ? "ins" : "span");
    node.className = `llm-diff-${op.kind}`;
    node.textContent = op.text;
    return node;
  });
  el.replaceChildren(...parts);
}
