import { afterEach, describe, expect, it, vi } from "vitest";
import type { ToPython } from "../src/shared/protocol";
import { newId, RpcClient, RpcError } from "../src/shared/rpc";

function client() {
  const sent: ToPython[] = [];
  const rpc = new RpcClient((msg) => sent.push(msg));
  return { rpc, sent };
}

describe("RpcClient", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends a tagged request and resolves with the matching response", async () => {
    const { rpc, sent } = client();
    const promise = rpc.request<number>("add", { a: 1, b: 2 });
    expect(sent).toHaveLength(1);
    const req = sent[0]!;
    expect(req).toMatchObject({ type: "request", method: "add", params: { a: 1, b: 2 } });
    expect(rpc.handle({ type: "response", id: "other", ok: true, result: 0 })).toBe(true);
    rpc.handle({ type: "response", id: req.id, ok: true, result: 3 });
    await expect(promise).resolves.toBe(3);
    expect(rpc.pendingCount).toBe(0);
  });

  it("rejects with the Python error text when ok is false", async () => {
    const { rpc, sent } = client();
    const promise = rpc.request("boom");
    rpc.handle({ type: "response", id: sent[0]!.id, ok: false, error: "ValueError: no model named 'x'" });
    await expect(promise).rejects.toThrow(new RpcError("ValueError: no model named 'x'", "boom"));
  });

  it("times out, tells Python to cancel, and ignores a late answer", async () => {
    vi.useFakeTimers();
    const { rpc, sent } = client();
    const promise = rpc.request("slow", {}, { timeoutMs: 1000 });
    vi.advanceTimersByTime(1001);
    await expect(promise).rejects.toThrow(/no answer/);
    expect(sent[1]).toEqual({ type: "request.cancel", id: sent[0]!.id });
    expect(rpc.handle({ type: "response", id: sent[0]!.id, ok: true, result: 1 })).toBe(true);
  });

  it("cancels through an AbortSignal", async () => {
    const { rpc, sent } = client();
    const controller = new AbortController();
    const promise = rpc.request("slow", {}, { signal: controller.signal });
    controller.abort();
    await expect(promise).rejects.toThrow(/cancelled/);
    expect(sent[1]?.type).toBe("request.cancel");
  });

  it("ignores messages that are not responses", () => {
    const { rpc } = client();
    expect(rpc.handle({ type: "stream.delta", id: "a", seq: 0, delta: "x" })).toBe(false);
  });

  it("makes uuid4 hex ids", () => {
    const id = newId();
    expect(id).toMatch(/^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
    expect(newId()).not.toBe(id);
  });
});
