/**
 * Client side of the request/response messages of `llm_notebook/widgets/_base.py`.
 *
 * Python always answers a request (with ok=false and a one-line error if the handler failed),
 * so a pending request ends when the answer comes, when it times out, or when it is aborted.
 */
import type { AnyModel } from "@anywidget/types";
import { isResponseMsg, type ToPython } from "./protocol";

export class RpcError extends Error {
  constructor(
    message: string,
    readonly method: string,
  ) {
    super(message);
    this.name = "RpcError";
  }
}

export interface RequestOptions {
  /** Reject (and ask Python to cancel) after this many ms; 0 waits forever. Default 10 minutes. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface Pending {
  method: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  cleanup: () => void;
}

const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;

/** uuid4 as 32 hex digits, like Python's `uuid4().hex`; works outside secure contexts too. */
export function newId(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class RpcClient {
  private readonly pending = new Map<string, Pending>();
  private markAnswered!: () => void;
  /**
   * Resolves with the first response of any kind: a kernel holds this widget. (A front-end
   * restored from saved widget state never gets one.)
   */
  readonly answered: Promise<void> = new Promise<void>((resolve) => {
    this.markAnswered = resolve;
  });

  constructor(private readonly send: (msg: ToPython) => void) {}

  /** Calls the Python handler `method` with `params`; resolves to its result. */
  request<T = unknown>(method: string, params: Record<string, unknown> = {}, options: RequestOptions = {}): Promise<T> {
    const id = newId();
    const { timeoutMs = DEFAULT_TIMEOUT_MS, signal } = options;
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new RpcError(`${method} was cancelled`, method));
        return;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = (): void => this.abandon(id, `${method} was cancelled`);
      const cleanup = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      this.pending.set(id, { method, resolve: resolve as (v: unknown) => void, reject, cleanup });
      if (timeoutMs > 0) {
        timer = setTimeout(() => this.abandon(id, `${method} got no answer from the kernel within ${Math.round(timeoutMs / 1000)} s`), timeoutMs);
      }
      signal?.addEventListener("abort", onAbort);
      try {
        this.send({ type: "request", id, method, params });
      } catch (err) {
        this.settle(id, () => new RpcError(`${method} could not be sent: ${String(err)}`, method));
      }
    });
  }

  /** Applies one custom message; returns false for messages that are not responses. */
  handle(msg: unknown): boolean {
    if (!isResponseMsg(msg)) return false;
    this.markAnswered();
    const p = this.pending.get(msg.id);
    if (!p) return true; // already timed out or cancelled
    this.pending.delete(msg.id);
    p.cleanup();
    if (msg.ok) p.resolve(msg.result);
    else p.reject(new RpcError(typeof msg.error === "string" ? msg.error : "The request failed.", p.method));
    return true;
  }

  /** Rejects every pending request, e.g. when the widget is closed. */
  rejectAll(reason: string): void {
    for (const id of Array.from(this.pending.keys())) this.settle(id, (m) => new RpcError(reason, m));
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  private abandon(id: string, reason: string): void {
    if (!this.pending.has(id)) return;
    try {
      this.send({ type: "request.cancel", id });
    } catch {
      // the kernel is gone; rejecting locally is all that is left to do
    }
    this.settle(id, (m) => new RpcError(reason, m));
  }

  private settle(id: string, makeError: (method: string) => Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.cleanup();
    p.reject(makeError(p.method));
  }
}

const clients = new WeakMap<AnyModel, RpcClient>();

/** The request client of a widget model, subscribed to the model's custom messages on first use. */
export function rpcFor(model: AnyModel): RpcClient {
  let client = clients.get(model);
  if (!client) {
    const created = new RpcClient((msg) => model.send(msg));
    model.on("msg:custom", (msg: unknown) => {
      created.handle(msg);
    });
    clients.set(model, created);
    client = created;
  }
  return client;
}
