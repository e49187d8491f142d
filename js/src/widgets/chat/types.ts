/** What `llm_notebook/widgets/chat.py` sends: mirror changes on both sides. */

export interface Turn {
  id: number;
  parent_id: number | null;
  prompt: string | null;
  response: string | null;
  status: "ok" | "interrupted" | "incomplete" | "error";
  error: string | null;
  model: string;
  input_tokens: number | null;
  output_tokens: number | null;
  cost: number | null;
  unpriced: boolean;
  cached: boolean;
  duration_ms: number | null;
  ttft_ms: number | null;
  ts: number;
  /** This turn's place among the answers to the same history (branches). */
  branch: { index: number; ids: number[] };
  /** model · tokens · cost · time (Response.footer in Python). */
  footer: string;
}

/** The exchange streaming now (in `state`, so a reloaded page can show it). */
export interface ActiveExchange {
  stream_id: string;
  prompt: string;
  parent_id: number | null;
  model: string;
  text?: string;
}

export interface ChatState {
  conversation: { id: string; name: string | null; system: string };
  turns: Turn[];
  busy: boolean;
  active: ActiveExchange | null;
}

export interface ExportResult {
  filename: string;
  mime: string;
  text: string;
}

export interface ChatModel {
  model: string;
  system: string;
  name: string | null;
  conversation_id: string;
  busy: boolean;
}

export function isChatChanged(msg: unknown): boolean {
  return typeof msg === "object" && msg !== null && (msg as { type?: unknown }).type === "chat.changed";
}
