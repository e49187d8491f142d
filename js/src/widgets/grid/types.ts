/**
 * What `llm_notebook/comparison/grid.py` sends: the `spec` trait (fixed for a grid) and cells.
 * Change both sides together.
 */

export interface PromptInfo {
  label: string;
  template: string;
  system: string | null;
  ref: string | null;
}

/** The `spec` trait: what the grid compares. */
export interface Spec {
  id: string;
  prompts: PromptInfo[];
  models: string[];
  /** Input column names, and each input row's values as shown (cut to 500 characters). */
  columns: string[];
  inputs: string[][];
  checks: string[];
}

/** A check's verdict: [passed, reason]; passed is null while an LLM judge is still working. */
export type Verdict = [boolean | null, string];

export type CellStatus = "pending" | "ok" | "error";

export interface CellData {
  index: number;
  /** Bumped on every change in Python: a view keeps the highest it has seen. */
  version: number;
  status: CellStatus;
  output: string | null;
  error: string | null;
  error_kind: string | null;
  input_tokens: number | null;
  output_tokens: number | null;
  cost: number | null;
  /** Seconds. */
  latency: number | null;
  cached: boolean;
  /** One entry per spec.checks, null until evaluated. */
  checks: (Verdict | null)[];
  thumb: 1 | -1 | null;
  score: number | null;
  comment: string | null;
}

export interface Progress {
  total: number;
  done: number;
  ok: number;
  errors: number;
  cached: number;
  judging: number;
  running: boolean;
  spent: number;
  error: string | null;
}

/** Python → JS custom message: some cells changed. */
export interface UpdateMsg {
  type: "grid.update";
  seq: number;
  cells: CellData[];
  progress: Progress;
}

/** The answer of the `state` request: every cell. */
export interface StateResult {
  seq: number;
  cells: CellData[];
  progress: Progress;
}

export interface ExportResult {
  filename: string;
  mime: string;
  content: string;
}

export function isUpdateMsg(msg: unknown): msg is UpdateMsg {
  return typeof msg === "object" && msg !== null && (msg as { type?: unknown }).type === "grid.update";
}
