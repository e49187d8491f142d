/**
 * Just enough of an anywidget model for the picker and chat tests: traits, events, custom
 * messages both ways, and a kernel stand-in answering requests by method name.
 */
import type { AnyModel } from "@anywidget/types";

type Listener = (...args: unknown[]) => void;

// jsdom does no layout: scrolling is a no-op there (real browsers are in tests/browser/).
Element.prototype.scrollIntoView ??= function scrollIntoView() {};

export interface Request {
  type: "request";
  id: string;
  method: string;
  params: Record<string, unknown>;
}

export type Handler = (params: Record<string, unknown>) => unknown;

export function fakeModel(traits: Record<string, unknown>, handlers: Record<string, Handler> = {}) {
  const listeners = new Map<string, Set<Listener>>();
  const requests: Request[] = [];
  /** Every custom message the widget sent, with its binary buffers. */
  const sent: { msg: unknown; buffers: unknown[] }[] = [];
  const state: Record<string, unknown> = { ...traits };
  const emit = (event: string, ...args: unknown[]) => listeners.get(event)?.forEach((cb) => cb(...args));
  const fromPython = (msg: unknown) => emit("msg:custom", msg, []);
  const model = {
    get: (key: string) => state[key],
    set: (key: string, v: unknown) => {
      state[key] = v;
      emit(`change:${key}`);
    },
    on: (event: string, cb: Listener) => {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event)!.add(cb);
    },
    off: (event: string, cb: Listener) => listeners.get(event)?.delete(cb),
    send: (msg: unknown, _callbacks?: unknown, buffers?: unknown[]) => {
      sent.push({ msg, buffers: buffers ?? [] });
      const req = msg as Request;
      if (req.type !== "request") return;
      requests.push(req);
      const handler = handlers[req.method];
      if (!handler) return; // left pending: the test answers it
      // The kernel answers asynchronously, like the real one.
      queueMicrotask(() => {
        try {
          fromPython({ type: "response", id: req.id, ok: true, result: handler(req.params) });
        } catch (err) {
          fromPython({ type: "response", id: req.id, ok: false, error: (err as Error).message });
        }
      });
    },
    save_changes: () => undefined,
  };
  return { model: model as unknown as AnyModel, state, requests, sent, fromPython };
}

/** Runs a widget module's initialize + render into a fresh element attached to the page. */
export async function mount(widget: { initialize?: unknown; render?: unknown }, model: AnyModel) {
  const props = { model, signal: new AbortController().signal } as never;
  await (widget.initialize as ((p: never) => unknown) | undefined)?.(props);
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = await (widget.render as (p: never) => unknown)({ ...(props as object), el } as never);
  return {
    el,
    async unmount() {
      if (typeof cleanup === "function") await cleanup();
      el.remove();
    },
  };
}

export function key(target: Element, keyName: string, init: KeyboardEventInit = {}): KeyboardEvent {
  const ev = new KeyboardEvent("keydown", { key: keyName, bubbles: true, cancelable: true, ...init });
  target.dispatchEvent(ev);
  return ev;
}
