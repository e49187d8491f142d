/**
 * The cells of one grid model, shared by all its views: filled by the `state` answer and by
 * `grid.update` messages, keeping for each cell the highest version seen (a state answer and an
 * update may cross).
 */
import type { AnyModel } from "@anywidget/types";
import { isUpdateMsg, type CellData, type Progress } from "./types";

export type GridListener = (changed: number[]) => void;

export class GridStore {
  readonly cells = new Map<number, CellData>();
  progress: Progress | null = null;
  private seq = -1;
  private readonly listeners = new Set<GridListener>();

  apply(cells: CellData[], progress: Progress | null, seq: number): void {
    const changed: number[] = [];
    for (const cell of cells) {
      const old = this.cells.get(cell.index);
      if (!old || cell.version >= old.version) {
        this.cells.set(cell.index, cell);
        changed.push(cell.index);
      }
    }
    let moved = changed.length > 0;
    if (progress && seq >= this.seq) {
      this.progress = progress;
      this.seq = seq;
      moved = true;
    }
    if (!moved) return;
    for (const listener of Array.from(this.listeners)) {
      try {
        listener(changed);
      } catch (err) {
        console.error("llm-notebook: grid listener failed", err);
      }
    }
  }

  /** Applies one custom message; returns false for messages that are not grid updates. */
  handle(msg: unknown): boolean {
    if (!isUpdateMsg(msg)) return false;
    this.apply(Array.isArray(msg.cells) ? msg.cells : [], msg.progress ?? null, msg.seq ?? 0);
    return true;
  }

  subscribe(listener: GridListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }
}

const stores = new WeakMap<AnyModel, GridStore>();

/** The store of a widget model, subscribed to its custom messages on first use (call it from initialize). */
export function gridStoreFor(model: AnyModel): GridStore {
  let store = stores.get(model);
  if (!store) {
    const created = new GridStore();
    model.on("msg:custom", (msg: unknown) => {
      created.handle(msg);
    });
    stores.set(model, created);
    store = created;
  }
  return store;
}
