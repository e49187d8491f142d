/**
 * The one markdown renderer of every llm-notebook widget.
 *
 * LLM output is hostile input: it can carry HTML that runs scripts, loads remote images (which
 * leak that the notebook was opened, and can exfiltrate data in their URLs) or imitates the
 * surrounding UI. So: markdown → HTML with `marked`, then DOMPurify with a strict profile, then
 * a pass that turns every image that is not an inline raster `data:` URL into a text placeholder,
 * all inside DOMPurify's inert document, before anything reaches the page.
 *
 * Nothing is kept that a reader cannot see: elements marked `hidden` are dropped with their
 * content, and colours are not kept (white on white), so what a Copy button copies
 * (`visibleText`) is exactly what is on screen, never a hidden instruction.
 */
import { Marked, type Tokens } from "marked";
import { escapeHtml, highlight } from "./highlight";
import { dropHidden, getPurifier, PURIFY_CONFIG, replaceBlockedImages } from "./sanitize";

/**
 * Elements that take everything up to their end tag with them when the sanitizer removes them:
 * those DOMPurify drops with their content (its FORBID_CONTENTS: raw-text elements, SVG and
 * MathML, templates, media), apart from table and head parts, which the parser ignores in text.
 */
const SWALLOWING_OPENER = new RegExp(
  "<(script|style|textarea|title|xmp|iframe|noembed|noframes|noscript|plaintext|svg|math|" +
    "template|audio|video|annotation-xml|desc|foreignobject|mi|mn|mo|ms|mtext)(?=[\\s/>])",
  "gi",
);

function highlightCode(code: string, lang: string): string {
  return lang ? highlight(code, lang) : escapeHtml(code);
}

let parser: Marked | null = null;

function getParser(): Marked {
  if (parser) return parser;
  parser = new Marked({
    async: false,
    gfm: true,
    renderer: {
      code({ text, lang }: Tokens.Code): string {
        const name = (lang ?? "").trim().split(/\s+/)[0]?.toLowerCase() ?? "";
        const safeName = /^[\w+#.-]{1,40}$/.test(name) ? name : "";
        const cls = safeName ? `hljs language-${safeName}` : "hljs";
        return `<pre class="llm-md-pre"><code class="${cls}">${highlightCode(text, safeName)}</code></pre>\n`;
      },
      // GFM task lists would render <input> (forbidden): show the state as a character instead.
      checkbox({ checked }: Tokens.Checkbox): string {
        return `<span class="llm-md-task" aria-label="${checked ? "done" : "not done"}">${checked ? "☑" : "☐"}</span> `;
      },
    },
  });
  return parser;
}

/**
 * Such an element opened and never closed (an answer that mentions "a <script> tag") holds all
 * that follows it, which the sanitizer then drops with the element: the rest of the answer would
 * vanish. Its opener is escaped instead, so it shows as text and the rest of the answer stays.
 * Closed ones are left to the sanitizer.
 */
function escapeUnclosedSwallowers(html: string): string {
  const lower = html.toLowerCase();
  return html.replace(SWALLOWING_OPENER, (opener: string, name: string, offset: number) => {
    const tag = name.toLowerCase();
    const closed = tag !== "plaintext" && lower.indexOf(`</${tag}`, offset + opener.length) !== -1;
    return closed ? opener : `&lt;${opener.slice(1)}`;
  });
}

/**
 * Markdown (untrusted) → a sanitized fragment owned by an inert document: nothing in it loads or
 * runs until it is inserted, and nothing dangerous is left by then.
 */
export function renderMarkdown(text: string): DocumentFragment {
  const html = escapeUnclosedSwallowers(getParser().parse(text ?? "", { async: false }));
  const fragment = getPurifier().sanitize(html, { ...PURIFY_CONFIG, RETURN_DOM_FRAGMENT: true });
  dropHidden(fragment);
  replaceBlockedImages(fragment);
  return fragment;
}

/** The sanitized HTML as a string (for tests and for callers that must hand HTML on). */
export function renderMarkdownToHtml(text: string): string {
  const container = document.createElement("div");
  container.append(renderMarkdown(text));
  return container.innerHTML;
}

const BLOCKS = new Set([
  "P", "DIV", "PRE", "BLOCKQUOTE", "UL", "OL", "LI", "TABLE", "THEAD", "TBODY", "TFOOT", "TR",
  "H1", "H2", "H3", "H4", "H5", "H6", "HR", "DL", "DT", "DD", "DETAILS", "SUMMARY",
]);
const CELLS = new Set(["TD", "TH"]);
const CONTAINERS = new Set(["UL", "OL", "TABLE", "THEAD", "TBODY", "TFOOT", "TR", "BLOCKQUOTE", "DL", "DIV", "DETAILS"]);

function isBlockOrCell(node: Node | null): boolean {
  if (node?.nodeType !== Node.ELEMENT_NODE) return false;
  const tag = (node as Element).tagName;
  return BLOCKS.has(tag) || CELLS.has(tag);
}

/** White space the HTML holds between blocks (marked's newlines): nothing a reader sees. */
function isLayoutSpace(node: Node): boolean {
  if (/\S/.test(node.nodeValue ?? "")) return false;
  const parent = node.parentNode;
  const inContainer = parent?.nodeType === Node.ELEMENT_NODE && CONTAINERS.has((parent as Element).tagName);
  return inContainer || isBlockOrCell(node.previousSibling) || isBlockOrCell(node.nextSibling);
}

/**
 * The text of rendered markdown as a reader sees it: blocks on their own lines, white space
 * collapsed outside code, list items with a marker, table cells separated by tabs, and none of
 * our own chrome (the code blocks' language label and Copy button). What Copy buttons copy.
 */
export function visibleText(root: Node): string {
  const out: string[] = [];
  const atLineStart = (): boolean => !out.length || out[out.length - 1]!.endsWith("\n");
  const push = (text: string): void => {
    const kept = atLineStart() ? text.replace(/^ +/, "") : text;
    if (kept) out.push(kept);
  };
  const newline = (): void => {
    if (atLineStart()) return;
    out[out.length - 1] = out[out.length - 1]!.replace(/ +$/, "");
    out.push("\n");
  };
  const walk = (node: Node, inPre: boolean): void => {
    if (node.nodeType === Node.TEXT_NODE) {
      const text = node.nodeValue ?? "";
      if (inPre) out.push(text);
      else if (!isLayoutSpace(node)) push(text.replace(/\s+/g, " "));
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE && node.nodeType !== Node.DOCUMENT_FRAGMENT_NODE) {
      return;
    }
    const el = node as Element;
    if (el.classList?.contains("llm-md-code-bar")) return;
    const tag = el.tagName ?? "";
    if (tag === "BR") {
      out.push("\n");
      return;
    }
    const block = BLOCKS.has(tag);
    if (block) newline();
    if (tag === "LI") {
      const list = el.parentElement;
      const index = list ? Array.from(list.children).indexOf(el) : 0;
      out.push(list?.tagName === "OL" ? `${Number(list.getAttribute("start") ?? 1) + index}. ` : "- ");
    }
    if (CELLS.has(tag) && el.previousElementSibling) out.push("\t");
    for (const child of Array.from(el.childNodes)) walk(child, inPre || tag === "PRE");
    if (block) newline();
  };
  walk(root, false);
  return out.join("").replace(/\n{3,}/g, "\n\n").trim();
}

/** Copies text to the clipboard (with a fallback for plain-http JupyterLab); also used by widgets. */
export async function copyText(text: string, doc: Document): Promise<void> {
  // The Clipboard API exists only in secure contexts (https, localhost)...
  if (navigator.clipboard?.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch {
      // denied (e.g. no permission): try the old way below
    }
  }
  // ...so JupyterLab over plain http falls back to copying a hidden selection.
  const area = doc.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "llm-offscreen";
  doc.body.append(area);
  area.select();
  try {
    if (!doc.execCommand("copy")) throw new Error("copy command refused");
  } finally {
    area.remove();
  }
}

/** Puts a toolbar with the language and a copy button above each fenced code block. */
function addCodeToolbars(root: ParentNode, doc: Document): void {
  for (const pre of Array.from(root.querySelectorAll("pre"))) {
    const code = pre.querySelector("code");
    if (!code || pre.parentElement?.classList.contains("llm-md-code")) continue;
    const wrapper = doc.createElement("div");
    wrapper.className = "llm-md-code";
    const bar = doc.createElement("div");
    bar.className = "llm-md-code-bar";
    const lang = Array.from(code.classList).find((c) => c.startsWith("language-"));
    const label = doc.createElement("span");
    label.className = "llm-md-code-lang";
    label.textContent = lang ? lang.slice("language-".length) : "";
    const button = doc.createElement("button");
    button.type = "button";
    button.className = "llm-md-copy";
    button.setAttribute("aria-label", "Copy code to clipboard");
    button.textContent = "Copy";
    button.addEventListener("click", () => {
      copyText(code.textContent ?? "", doc).then(
        () => flash(button, "Copied"),
        () => flash(button, "Copy failed"),
      );
    });
    bar.append(label, button);
    pre.replaceWith(wrapper);
    wrapper.append(bar, pre);
  }
}

function flash(button: HTMLButtonElement, text: string): void {
  button.textContent = text;
  setTimeout(() => {
    button.textContent = "Copy";
  }, 1500);
}

/** Renders markdown into `el`, replacing its content. Code blocks get a copy button. */
export function renderMarkdownInto(el: HTMLElement, text: string): void {
  const doc = el.ownerDocument;
  // Adopt only now: the fragment is already free of remote images and scripts.
  const fragment = doc.adoptNode(renderMarkdown(text));
  addCodeToolbars(fragment, doc);
  el.classList.add("llm-md");
  el.replaceChildren(fragment);
}

/** Plain text fallback for places where markdown is not wanted. */
export function renderTextInto(el: HTMLElement, text: string): void {
  el.textContent = text;
}
