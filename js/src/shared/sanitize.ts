/**
 * The one HTML sanitizer of every llm-notebook widget: our own DOMPurify instance with a strict
 * profile, for rendered markdown (shared/markdown.ts) and for snapshots read from a notebook
 * (shared/mount.ts). Kept apart from the markdown parser so a widget that only shows snapshots
 * does not carry it.
 */
import DOMPurify, { type Config } from "dompurify";

/** Inline images we do show: raster formats only (an SVG image can carry script and links). */
const SAFE_IMAGE_SRC = /^data:image\/(?:png|jpe?g|gif|webp);base64,[a-z0-9+/\s]*=*\s*$/i;
/** Links we keep clickable; anything else (javascript:, vbscript:, data:, relative) loses its href. */
const SAFE_LINK_HREF = /^(?:https?:\/\/|mailto:)/i;
/**
 * Classes content may carry: highlighting, our markdown's and our snapshots' (which only style
 * text); others could borrow JupyterLab's UI styles.
 */
const SAFE_CLASS = /^(?:hljs(?:-[\w-]+)?|language-[\w+#.-]+|llm-md-[\w-]+|llmnb-snap(?:shot|-[\w-]+))$/;
const BLOCKED_SRC_ATTR = "data-llm-blocked-src";
export const PURIFY_CONFIG: Config = {
  USE_PROFILES: { html: true }, // no SVG, no MathML
  FORBID_TAGS: [
    "style", "link", "meta", "base", "form", "input", "button", "textarea", "select", "option",
    "optgroup", "iframe", "frame", "frameset", "object", "embed", "svg", "math", "video", "audio",
    "source", "track", "picture", "canvas", "dialog", "template", "slot", "portal",
  ],
  FORBID_ATTR: [
    "style", "srcset", "background", "poster", "ping", "action", "formaction", "id", "name",
    "autofocus", "tabindex", "contenteditable", "draggable", "popover", "color", "bgcolor",
  ],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: true,
};

type Purifier = ReturnType<typeof DOMPurify>;
let purifier: Purifier | null = null;

/** Our own DOMPurify instance, so our hooks never touch another extension's sanitizer. */
export function getPurifier(): Purifier {
  if (purifier) return purifier;
  const p = DOMPurify(window);
  p.addHook("afterSanitizeAttributes", (node) => {
    const el = node as Element;
    if (typeof el.getAttribute !== "function") return;
    if (el.hasAttribute("class")) {
      const kept = (el.getAttribute("class") ?? "").split(/\s+/).filter((c) => SAFE_CLASS.test(c));
      if (kept.length) el.setAttribute("class", kept.join(" "));
      else el.removeAttribute("class");
    }
    const tag = el.tagName;
    if (tag === "A") {
      const href = (el.getAttribute("href") ?? "").trim();
      if (href && SAFE_LINK_HREF.test(href)) {
        el.setAttribute("target", "_blank");
        el.setAttribute("rel", "noopener noreferrer");
      } else {
        el.removeAttribute("href");
        el.removeAttribute("target");
      }
    } else if (tag === "IMG") {
      const src = (el.getAttribute("src") ?? "").trim();
      if (!SAFE_IMAGE_SRC.test(src)) {
        // Defence in depth: even if the placeholder pass below were skipped, nothing would load.
        el.removeAttribute("src");
        el.setAttribute(BLOCKED_SRC_ATTR, src);
      }
    }
  });
  purifier = p;
  return p;
}

/**
 * Drops what the page would not show (and a Copy button would otherwise copy): elements marked
 * `hidden`, with their content. Colours are not kept either (FORBID_ATTR), so no white on white.
 */
export function dropHidden(root: DocumentFragment): void {
  for (const node of Array.from(root.querySelectorAll("[hidden]"))) node.remove();
}

/** Replaces blocked images (marked by the sanitizer hook) with visible text: alt text and URL. */
export function replaceBlockedImages(root: DocumentFragment): void {
  const doc = root.ownerDocument;
  for (const img of Array.from(root.querySelectorAll(`img[${BLOCKED_SRC_ATTR}]`))) {
    const url = img.getAttribute(BLOCKED_SRC_ATTR) ?? "";
    const alt = (img.getAttribute("alt") ?? "").trim();
    const span = doc.createElement("span");
    span.className = "llm-md-image-blocked";
    span.title = "Remote image not loaded";
    span.textContent = `[image: ${alt || "no description"}]${url ? ` ${url}` : ""}`;
    img.replaceWith(span);
  }
}

/**
 * A widget's saved snapshot (its `snapshot` trait, read from a notebook: untrusted) as a
 * sanitized fragment. Inline styles go (the `llmnb-snap-*` classes are styled by styles.css),
 * and so does everything that could run, load or link anywhere but http(s) and mailto.
 */
export function renderSnapshot(html: string): DocumentFragment {
  const fragment = getPurifier().sanitize(html ?? "", { ...PURIFY_CONFIG, RETURN_DOM_FRAGMENT: true });
  dropHidden(fragment);
  replaceBlockedImages(fragment);
  return fragment;
}
