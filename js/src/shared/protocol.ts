/**
 * Custom messages between a widget's Python object and its front-end.
 *
 * These types mirror `llm_notebook/widgets/streaming.py` (the stream.* messages) and
 * `llm_notebook/widgets/_base.py` (request/response). Change both sides together.
 */

/** Python → JS: a stream opened; deltas for ids never started are ignored. */
export interface StreamStartMsg {
  type: "stream.start";
  id: string;
  meta: Record<string, unknown>;
}

/**
 * Python → JS: text appended to a stream. `seq` counts a stream's delta messages from 0,
 * so the client can apply them in order and notice a lost one (the final snapshot repairs it).
 */
export interface StreamDeltaMsg {
  type: "stream.delta";
  id: string;
  delta: string;
  seq: number;
}

/** Python → JS: several streams' deltas sent together, so a widget stays within its message rate. */
export interface StreamBatchMsg {
  type: "stream.batch";
  messages: StreamDeltaMsg[];
}

/** Python → JS: the stream is complete; `text` is the full final text and always wins. */
export interface StreamEndMsg {
  type: "stream.end";
  id: string;
  text: string;
  meta: Record<string, unknown>;
}

/** Python → JS: the stream failed; `error` is one redacted line, `partial` the text received. */
export interface StreamErrorMsg {
  type: "stream.error";
  id: string;
  error: string;
  partial: string;
}

/** JS → Python: call a handler registered on the widget; Python always answers with a response. */
export interface RequestMsg {
  type: "request";
  id: string;
  method: string;
  params: Record<string, unknown>;
}

/** JS → Python: ask Python to cancel a running request (it still answers, with ok=false). */
export interface CancelMsg {
  type: "request.cancel";
  id: string;
}

export interface ResponseOkMsg {
  type: "response";
  id: string;
  ok: true;
  result: unknown;
}

export interface ResponseErrorMsg {
  type: "response";
  id: string;
  ok: false;
  error: string;
}

export type ResponseMsg = ResponseOkMsg | ResponseErrorMsg;

export type StreamMsg = StreamStartMsg | StreamDeltaMsg | StreamBatchMsg | StreamEndMsg | StreamErrorMsg;

/** Every custom message Python sends to the front-end. */
export type FromPython = StreamMsg | ResponseMsg;

/** Every custom message the front-end sends to Python. */
export type ToPython = RequestMsg | CancelMsg;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

export function isStreamMsg(msg: unknown): msg is StreamMsg {
  return isObject(msg) && typeof msg.type === "string" && msg.type.startsWith("stream.");
}

export function isResponseMsg(msg: unknown): msg is ResponseMsg {
  return isObject(msg) && msg.type === "response" && typeof msg.id === "string";
}
