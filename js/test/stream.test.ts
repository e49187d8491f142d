import type { AnyModel } from "@anywidget/types";
import { describe, expect, it, vi } from "vitest";
import { StreamStore, streamsFor, type StreamEvent } from "../src/shared/stream";

const start = (id: string, meta: Record<string, unknown> = {}) => ({ type: "stream.start", id, meta });
const delta = (id: string, seq: number, text: string) => ({ type: "stream.delta", id, seq, delta: text });

describe("StreamStore", () => {
  it("accumulates deltas in order", () => {
    const store = new StreamStore();
    store.handle(start("a", { model: "m" }));
    ["Hel", "lo, ", "wor", "ld"].forEach((d, i) => store.handle(delta("a", i, d)));
    expect(store.get("a")).toMatchObject({ text: "Hello, world", status: "streaming", gap: false, meta: { model: "m" } });
  });

  it("ignores duplicated and older deltas, and notes a gap when one is missing", () => {
    const store = new StreamStore();
    store.handle(start("a"));
    store.handle(delta("a", 0, "one "));
    store.handle(delta("a", 0, "one "));
    store.handle(delta("a", 2, "three"));
    store.handle(delta("a", 1, "two "));
    expect(store.get("a")).toMatchObject({ text: "one three", gap: true });
  });

  it("lets the final snapshot win over the deltas", () => {
    const store = new StreamStore();
    store.handle(start("a"));
    store.handle(delta("a", 0, "partial"));
    store.handle(delta("a", 5, " garbled"));
    store.handle({ type: "stream.end", id: "a", text: "The whole answer.", meta: { output_tokens: 4 } });
    expect(store.get("a")).toMatchObject({ text: "The whole answer.", status: "done", gap: false, meta: { output_tokens: 4 } });
    store.handle(delta("a", 6, " late"));
    expect(store.get("a")?.text).toBe("The whole answer.");
  });

  it("ignores unknown stream ids", () => {
    const store = new StreamStore();
    const listener = vi.fn();
    store.subscribe(listener);
    expect(store.handle(delta("nope", 0, "x"))).toBe(true);
    store.handle({ type: "stream.end", id: "nope", text: "x", meta: {} });
    store.handle({ type: "stream.error", id: "nope", error: "boom", partial: "" });
    expect(store.get("nope")).toBeUndefined();
    expect(listener).not.toHaveBeenCalled();
  });

  it("ignores messages that are not stream messages", () => {
    const store = new StreamStore();
    expect(store.handle({ type: "response", id: "x", ok: true, result: 1 })).toBe(false);
    expect(store.handle(null)).toBe(false);
    expect(store.handle("stream.delta")).toBe(false);
  });

  it("applies a batch of several streams' deltas", () => {
    const store = new StreamStore();
    store.handle(start("a"));
    store.handle(start("b"));
    store.handle({ type: "stream.batch", messages: [delta("a", 0, "A1"), delta("b", 0, "B1"), delta("zz", 0, "?")] });
    store.handle({ type: "stream.batch", messages: [delta("b", 1, "B2")] });
    expect(store.get("a")?.text).toBe("A1");
    expect(store.get("b")?.text).toBe("B1B2");
  });

  it("reports errors with the partial text", () => {
    const store = new StreamStore();
    const events: StreamEvent[] = [];
    store.subscribe((_s, e) => events.push(e));
    store.handle(start("a"));
    store.handle(delta("a", 0, "Once upon"));
    store.handle({ type: "stream.error", id: "a", error: "RateLimitError: slow down", partial: "Once upon a" });
    expect(store.get("a")).toMatchObject({ status: "error", error: "RateLimitError: slow down", text: "Once upon a" });
    expect(events).toEqual(["start", "delta", "error"]);
  });

  it("keeps other listeners working when one throws", () => {
    const store = new StreamStore();
    const spy = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const good = vi.fn();
    store.subscribe(() => {
      throw new Error("bad listener");
    });
    const unsubscribe = store.subscribe(good);
    store.handle(start("a"));
    expect(good).toHaveBeenCalledTimes(1);
    unsubscribe();
    store.handle(delta("a", 0, "x"));
    expect(good).toHaveBeenCalledTimes(1);
    spy.mockRestore();
  });
});

describe("streamsFor", () => {
  it("returns one store per model, fed by the model's custom messages", () => {
    const handlers: Array<(msg: unknown) => void> = [];
    const model = {
      on: (event: string, cb: (msg: unknown) => void) => {
        if (event === "msg:custom") handlers.push(cb);
      },
    } as unknown as AnyModel;
    const store = streamsFor(model);
    expect(streamsFor(model)).toBe(store);
    expect(handlers).toHaveLength(1);
    handlers[0]!(start("s"));
    handlers[0]!(delta("s", 0, "hi"));
    expect(store.get("s")?.text).toBe("hi");
  });
});
