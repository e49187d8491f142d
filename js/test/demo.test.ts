import type { AnyModel } from "@anywidget/types";
import { describe, expect, it, vi } from "vitest";
import demoSource from "./demo_widget";

type Listener = (...args: unknown[]) => void;

/** Just enough of an anywidget model: traits, events, custom messages both ways. */
function fakeModel(value: string) {
  const listeners = new Map<string, Set<Listener>>();
  const sent: unknown[] = [];
  const state: Record<string, unknown> = { value };
  const model = {
    get: (key: string) => state[key],
    set: (key: string, v: unknown) => {
      state[key] = v;
      listeners.get(`change:${key}`)?.forEach((cb) => cb());
    },
    on: (event: string, cb: Listener) => {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event)!.add(cb);
    },
    off: (event: string, cb: Listener) => listeners.get(event)?.delete(cb),
    send: (msg: unknown) => sent.push(msg),
    save_changes: () => undefined,
  };
  const fromPython = (msg: unknown) => listeners.get("msg:custom")?.forEach((cb) => cb(msg, []));
  return { model: model as unknown as AnyModel<{ value: string }>, sent, fromPython };
}

type WidgetModule = typeof demoSource;

async function exercise(widget: WidgetModule) {
  const { model, sent, fromPython } = fakeModel("# Hello\n\n<img src=https://evil.example/x.png alt=x>");
  const props = { model, signal: new AbortController().signal } as never;
  await widget.initialize?.(props);
  const el = document.createElement("div");
  const cleanup = await widget.render?.({ ...(props as object), el } as never);

  expect(el.classList.contains("llm-nb")).toBe(true);
  expect(el.querySelector("h1")?.textContent).toBe("Hello");
  expect(el.querySelector("img")).toBeNull();

  fromPython({ type: "stream.start", id: "s1", meta: {} });
  fromPython({ type: "stream.delta", id: "s1", seq: 0, delta: "Streaming **bold" });
  fromPython({ type: "stream.end", id: "s1", text: "Streaming **bold** done", meta: {} });
  await vi.waitFor(() => expect(el.querySelector("strong")?.textContent).toBe("bold"));

  (el.querySelector("button") as HTMLButtonElement).click();
  const request = sent.find((m) => (m as { type?: string }).type === "request") as { id: string; method: string };
  expect(request.method).toBe("ping");
  fromPython({ type: "response", id: request.id, ok: true, result: "pong" });
  await vi.waitFor(() => expect(el.textContent).toContain("Kernel says: pong"));

  if (typeof cleanup === "function") await cleanup();
}

// A widget written only for this test: it exercises the shared pieces (renderer, streams, rpc)
// the way every real widget does, without shipping a bundle of its own.
describe("demo widget", () => {
  it("renders markdown, follows a stream and answers a ping", async () => {
    await exercise(demoSource);
  });
});
