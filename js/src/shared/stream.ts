/**
 * Client side of the streaming protocol (`llm_notebook/widgets/streaming.py`).
 *
 * Python sends `stream.start`, then deltas (coalesced, at most 20 messages a second per widget,
 * each delta sent once), then either `stream.end` with the full final text, which always wins,
 * or `stream.error` with the partial text. One store per model collects every stream of it,
 * so all views of a widget show the same text.
 */
import type { AnyModel } from "@anywidget/types";
import { isStreamMsg, type StreamDeltaMsg, type StreamMsg } from "./protocol";

export type StreamStatus = "streaming" | "done" | "error";
export type StreamEvent = "start" | "delta" | "end" | "error";

export interface StreamState {
  readonly id: string;
  /** Text so far; after `end`, exactly the final text Python sent. */
  readonly text: string;
  readonly status: StreamStatus;
  readonly meta: Readonly<Record<string, unknown>>;
  /** The one-line error, once the stream failed. */
  readonly error: string | null;
  /** A delta went missing (seq jumped); the text has a hole until the final snapshot. */
  readonly gap: boolean;
}

export type StreamListener = (state: StreamState, event: StreamEvent) => void;

interface MutableStream {
  id: string;
  text: string;
  status: StreamStatus;
  meta: Record<string, unknown>;
  error: string | null;
  gap: boolean;
  nextSeq: number;
}

/** Finished streams kept for late readers; older ones are forgotten first. */
const KEEP_FINISHED = 200;

export class StreamStore {
  private readonly streams = new Map<string, MutableStream>();
  private readonly listeners = new Set<StreamListener>();

  /** Applies one custom message; returns false for messages that are not stream messages. */
  handle(msg: unknown): boolean {
    if (!isStreamMsg(msg)) return false;
    this.apply(msg);
    return true;
  }

  get(id: string): StreamState | undefined {
    const s = this.streams.get(id);
    return s ? snapshot(s) : undefined;
  }

  /** Calls `listener` on every change; returns the function that unsubscribes it. */
  subscribe(listener: StreamListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  forget(id: string): void {
    this.streams.delete(id);
  }

  private apply(msg: StreamMsg): void {
    switch (msg.type) {
      case "stream.start": {
        if (typeof msg.id !== "string" || this.streams.has(msg.id)) return;
        const s: MutableStream = {
          id: msg.id,
          text: "",
          status: "streaming",
          meta: isRecord(msg.meta) ? { ...msg.meta } : {},
          error: null,
          gap: false,
          nextSeq: 0,
        };
        this.streams.set(msg.id, s);
        this.emit(s, "start");
        return;
      }
      case "stream.delta":
        this.applyDelta(msg);
        return;
      case "stream.batch":
        if (Array.isArray(msg.messages)) for (const d of msg.messages) this.applyDelta(d);
        return;
      case "stream.end": {
        const s = this.open(msg.id);
        if (!s) return;
        s.text = typeof msg.text === "string" ? msg.text : s.text;
        if (isRecord(msg.meta)) s.meta = { ...s.meta, ...msg.meta };
        s.status = "done";
        s.gap = false;
        this.emit(s, "end");
        this.prune();
        return;
      }
      case "stream.error": {
        const s = this.open(msg.id);
        if (!s) return;
        // Like the final text, Python's partial text is a snapshot and wins over our deltas.
        if (typeof msg.partial === "string") {
          s.text = msg.partial;
          s.gap = false;
        }
        s.error = typeof msg.error === "string" && msg.error ? msg.error : "The stream failed.";
        s.status = "error";
        this.emit(s, "error");
        this.prune();
        return;
      }
      default:
        return; // a newer Python may send types we do not know: ignore them
    }
  }

  private applyDelta(msg: StreamDeltaMsg): void {
    if (!msg || typeof msg.delta !== "string" || typeof msg.seq !== "number") return;
    const s = this.open(msg.id);
    if (!s || msg.seq < s.nextSeq) return; // unknown, finished, or a duplicate
    if (msg.seq > s.nextSeq) s.gap = true;
    s.text += msg.delta;
    s.nextSeq = msg.seq + 1;
    this.emit(s, "delta");
  }

  /** The stream with this id if it is still streaming; unknown and finished ids give undefined. */
  private open(id: unknown): MutableStream | undefined {
    if (typeof id !== "string") return undefined;
    const s = this.streams.get(id);
    return s && s.status === "streaming" ? s : undefined;
  }

  private emit(s: MutableStream, event: StreamEvent): void {
    if (this.listeners.size === 0) return;
    const state = snapshot(s);
    for (const listener of Array.from(this.listeners)) {
      try {
        listener(state, event);
      } catch (err) {
        console.error("llm-notebook: stream listener failed", err);
      }
    }
  }

  private prune(): void {
    let finished = 0;
    for (const s of this.streams.values()) if (s.status !== "streaming") finished++;
    for (const [id, s] of this.streams) {
      if (finished <= KEEP_FINISHED) break;
      if (s.status !== "streaming") {
        this.streams.delete(id);
        finished--;
      }
    }
  }
}

function snapshot(s: MutableStream): StreamState {
  return { id: s.id, text: s.text, status: s.status, meta: s.meta, error: s.error, gap: s.gap };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const stores = new WeakMap<AnyModel, StreamStore>();

/**
 * The stream store of a widget model, created and subscribed to the model's custom messages on
 * first use. Call it from `initialize` so no message is missed before the first view renders.
 */
export function streamsFor(model: AnyModel): StreamStore {
  let store = stores.get(model);
  if (!store) {
    const created = new StreamStore();
    model.on("msg:custom", (msg: unknown) => {
      created.handle(msg);
    });
    stores.set(model, created);
    store = created;
  }
  return store;
}
