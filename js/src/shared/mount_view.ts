/**
 * Mounts a widget's view so that it survives being rendered again, and shows the snapshot saved
 * with the notebook, read-only, until a kernel answers.
 *
 * Rendered again: when a widget's content settles, Python updates its output (the static
 * snapshot beside the live view, llm_notebook/widgets/display.py), and ipywidgets answers an
 * output update by creating a new view and dropping the old one's DOM, without removing the old
 * view. Drawing afresh would lose what the user typed, the focus and the scroll positions, so the
 * new view takes the old view's DOM over instead: the same nodes move into it, and the model
 * events the widget code subscribed to follow (`StableModel`). The old view is found by the
 * widget's `_view_key` trait, because a view gets a new model proxy from anywidget each time.
 *
 * Read-only: a notebook saved with its widget state brings the widget back in the browser before
 * any kernel holds it (or with a new kernel that never will). The view asks the kernel (`ping`);
 * until any answer or message comes, it shows the widget's `snapshot` trait, sanitized, with a
 * note saying how to get the live widget back.
 */
import type { AnyModel } from "@anywidget/types";
import { rpcFor } from "./rpc";

/**
 * Turns a saved snapshot's HTML (read from a notebook: untrusted) into nodes to show.
 * mount.ts passes the sanitizer's renderer; a widget whose snapshot is only text can pass
 * `snapshotAsText` and leave the sanitizer out of its bundle.
 */
export type SnapshotRenderer = (html: string) => Node;

/**
 * A snapshot's text, without any of its markup: parsed in an inert document (nothing in it
 * runs or loads) and shown through textContent.
 */
export function snapshotAsText(html: string): Node {
  const parsed = new DOMParser().parseFromString(html, "text/html");
  const blocks = Array.from(parsed.body.querySelectorAll("div, p, li, tr, h1, h2, h3, h4"))
    .filter((node) => !node.querySelector("div, p, li, tr"))
    .map((node) => (node.textContent ?? "").trim())
    .filter(Boolean);
  const pre = document.createElement("div");
  pre.className = "llmnb-snap-text";
  pre.style.whiteSpace = "pre-wrap";
  pre.textContent = blocks.length ? blocks.join("\n") : (parsed.body.textContent ?? "");
  return pre;
}

export type Cleanup = () => void;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the shape anywidget's own types use
type Traits = Record<string, any>;
export type CreateView<T extends Traits = Traits> = (model: AnyModel<T>, el: HTMLElement) => Cleanup | void;

/** Live views normally answer within a few ms: the snapshot shows only if none came by then. */
export const SNAPSHOT_AFTER_MS = 400;

const READ_ONLY_NOTE =
  "Saved snapshot, read-only: no running kernel holds this widget. Run its cell again to use it.";

type Handler = (...args: unknown[]) => void;

/**
 * The model a widget's code holds for the lifetime of its DOM: calls go to the proxy of the view
 * that shows the DOM now, and subscriptions move with it.
 */
export class StableModel {
  private readonly handlers: [string, Handler][] = [];

  constructor(private current: AnyModel) {}

  get(key: string): unknown {
    return this.current.get(key);
  }

  set(key: string, value: unknown): void {
    this.current.set(key, value);
  }

  save_changes(): void {
    this.current.save_changes();
  }

  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void {
    this.current.send(content, callbacks, buffers);
  }

  get widget_manager(): AnyModel["widget_manager"] {
    return this.current.widget_manager;
  }

  on(event: string, handler: Handler): void {
    this.handlers.push([event, handler]);
    this.current.on(event, handler);
  }

  off(event?: string | null, handler?: Handler | null): void {
    for (let i = this.handlers.length - 1; i >= 0; i--) {
      const [e, h] = this.handlers[i]!;
      if ((event === null || event === undefined || e === event) && (handler === null || handler === undefined || h === handler)) {
        this.handlers.splice(i, 1);
        this.current.off(e, h);
      }
    }
  }

  /** Moves every subscription to the proxy of the view that now shows the DOM. */
  rebind(next: AnyModel): void {
    if (next === this.current) return;
    for (const [event, handler] of this.handlers) {
      this.current.off(event, handler);
      next.on(event, handler);
    }
    this.current = next;
  }

  asModel<T extends Traits = Traits>(): AnyModel<T> {
    return this as unknown as AnyModel<T>;
  }
}

interface Mounted {
  root: HTMLElement;
  /** The element of the view whose DOM this is now. */
  host: HTMLElement;
  owner: object;
  model: StableModel;
  dispose: Cleanup;
  lastFocus: HTMLElement | null;
  scrolls: Map<Element, [number, number]>;
}

const mountedByKey = new Map<string, Mounted[]>();

/**
 * Renders a widget into `el`: takes over the DOM of an earlier view of the same widget that was
 * dropped, or creates it with `create` (which gets a stable model and the element to draw in).
 * Returns the view's cleanup.
 */
export function mountViewWith<T extends Traits>(
  render: SnapshotRenderer,
  model: AnyModel<T>,
  el: HTMLElement,
  create: CreateView<T>,
): Cleanup {
  const key = String((model as AnyModel).get("_view_key") ?? "");
  const owner = {};
  // An earlier view's element removed from its parent: ipywidgets rendered the output again.
  // (A view only scrolled out of a windowed notebook keeps its element in place.)
  const earlier = (mountedByKey.get(key) ?? []).find((m) => m.host.parentNode === null);
  if (key && earlier) {
    earlier.owner = owner;
    earlier.host = el;
    earlier.model.rebind(model as AnyModel);
    el.append(earlier.root);
    restoreViewState(earlier);
    return () => release(key, earlier, owner);
  }
  const mounted = createMounted(model, el, create, render);
  mounted.owner = owner;
  if (key) mountedByKey.set(key, [...(mountedByKey.get(key) ?? []), mounted]);
  return () => release(key, mounted, owner);
}

function release(key: string, mounted: Mounted, owner: object): void {
  if (mounted.owner !== owner) return; // an older view: its DOM has moved to a newer one
  mounted.dispose();
  const left = (mountedByKey.get(key) ?? []).filter((m) => m !== mounted);
  if (left.length) mountedByKey.set(key, left);
  else mountedByKey.delete(key);
}

function createMounted<T extends Traits>(model: AnyModel<T>, el: HTMLElement, create: CreateView<T>, render: SnapshotRenderer): Mounted {
  const doc = el.ownerDocument;
  const root = doc.createElement("div");
  // llmnb-view: js/lab hides the saved snapshot beside a view that renders.
  root.className = "llmnb-view";
  const live = doc.createElement("div");
  live.className = "llmnb-live";
  const saved = doc.createElement("div");
  saved.className = "llm-nb llmnb-saved";
  saved.hidden = true;
  root.append(saved, live);
  el.append(root);

  const stable = new StableModel(model as AnyModel);
  const mounted: Mounted = {
    root, host: el, owner: {}, model: stable, dispose: () => undefined, lastFocus: null, scrolls: new Map(),
  };
  const stopTracking = trackViewState(mounted);
  const cleanup = create(stable.asModel<T>(), live);
  const stopWaiting = showSnapshotUntilLive(stable, live, saved, render);
  mounted.dispose = () => {
    stopWaiting();
    stopTracking();
    if (typeof cleanup === "function") cleanup();
    stable.off();
    root.remove();
  };
  return mounted;
}

/** How often a user at work in the widget renews the hold on output updates (see below). */
export const HOLD_RENEW_MS = 10_000;

/**
 * Remembers the focused element and scroll positions, which a move of the DOM loses, and tells
 * Python while the user works in the widget: an output update renders the view again, and
 * ipywidgets empties the output before the new view takes the DOM over, so keys pressed in
 * between would be lost. Python holds its snapshot updates until the focus leaves (or the
 * user has been idle for a while: widgets/display.py).
 */
function trackViewState(mounted: Mounted): Cleanup {
  const { root } = mounted;
  let inside = false;
  let renewed = 0;
  const tell = (now: boolean): void => {
    inside = now;
    renewed = Date.now();
    mounted.model.send({ type: "focus", inside: now });
  };
  const onFocusIn = (ev: FocusEvent): void => {
    mounted.lastFocus = ev.target as HTMLElement;
    if (!inside) tell(true);
  };
  const onActivity = (): void => {
    if (inside && Date.now() - renewed >= HOLD_RENEW_MS) tell(true);
  };
  const onFocusOut = (ev: FocusEvent): void => {
    const left = ev.target as HTMLElement;
    // Forget it when the user took the focus elsewhere; keep it when the DOM was moved away.
    setTimeout(() => {
      const away = root.isConnected && !root.contains(root.ownerDocument.activeElement);
      if (mounted.lastFocus === left && left.isConnected && away) {
        mounted.lastFocus = null;
      }
      if (inside && away) tell(false);
    }, 0);
  };
  const onScroll = (ev: Event): void => {
    const target = ev.target as Element;
    if (target instanceof Element) mounted.scrolls.set(target, [target.scrollTop, target.scrollLeft]);
  };
  root.addEventListener("focusin", onFocusIn);
  root.addEventListener("focusout", onFocusOut);
  root.addEventListener("keydown", onActivity, true);
  root.addEventListener("pointerdown", onActivity, true);
  root.addEventListener("scroll", onScroll, true);
  return () => {
    root.removeEventListener("focusin", onFocusIn);
    root.removeEventListener("focusout", onFocusOut);
    root.removeEventListener("keydown", onActivity, true);
    root.removeEventListener("pointerdown", onActivity, true);
    root.removeEventListener("scroll", onScroll, true);
    if (inside) mounted.model.send({ type: "focus", inside: false });
  };
}

/** Frames to wait for the new view's element to enter the page (ipywidgets adds it last). */
const ATTACH_FRAMES = 30;

function restoreViewState(mounted: Mounted): void {
  const { root } = mounted;
  const focus = mounted.lastFocus; // read now: a focusout of the move may forget it meanwhile
  const scrolls = Array.from(mounted.scrolls);
  let frames = 0;
  const restore = (): void => {
    if (!root.isConnected) {
      if (++frames < ATTACH_FRAMES) requestAnimationFrame(restore);
      return;
    }
    for (const [node, [top, left]] of scrolls) {
      if (!root.contains(node)) {
        mounted.scrolls.delete(node);
        continue;
      }
      node.scrollTop = top;
      node.scrollLeft = left;
    }
    const doc = root.ownerDocument;
    const lost = !doc.activeElement || doc.activeElement === doc.body;
    if (focus && lost && root.contains(focus)) {
      focus.focus({ preventScroll: true });
      mounted.lastFocus = focus;
    }
  };
  restore();
}

/**
 * Shows the `snapshot` trait instead of the live view while no kernel has answered, once
 * SNAPSHOT_AFTER_MS have passed; the live view comes back with the first answer or message.
 */
function showSnapshotUntilLive(model: StableModel, live: HTMLElement, saved: HTMLElement, render: SnapshotRenderer): Cleanup {
  let done = false;
  const abort = new AbortController();
  const goLive = (): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    model.off("msg:custom", goLive);
    abort.abort();
    saved.hidden = true;
    saved.replaceChildren();
    live.hidden = false;
  };
  const showSaved = (): void => {
    const html = String(model.get("snapshot") ?? "");
    if (done || !html) return;
    const note = saved.ownerDocument.createElement("div");
    note.className = "llmnb-saved-note";
    note.setAttribute("role", "note");
    note.textContent = READ_ONLY_NOTE;
    saved.replaceChildren(note, saved.ownerDocument.adoptNode(render(html)));
    saved.hidden = false;
    live.hidden = true;
  };
  const timer = setTimeout(showSaved, SNAPSHOT_AFTER_MS);
  // Any custom message comes from the widget's Python object: a kernel holds it.
  model.on("msg:custom", goLive);
  const rpc = rpcFor(model.asModel());
  void rpc.answered.then(goLive);
  // Most views ask the kernel for what they show as they start; the others ask if it is there.
  if (rpc.pendingCount === 0) rpc.request("ping", {}, { timeoutMs: 0, signal: abort.signal }).catch(() => undefined);
  return () => {
    done = true;
    clearTimeout(timer);
    abort.abort();
  };
}
