/**
 * Undo/redo for the template editor, on @codemirror/state alone.
 *
 * Why not @codemirror/commands' history: importing anything from that package pulls in all of
 * @lezer/common (it is not marked free of side effects, so nothing of it can be tree-shaken),
 * about 8 KB gzipped of a bundle that must stay small (see benchmarks/bundle_size.py). A prompt
 * editor needs only this: typing grouped into steps, undo, redo, the selection put back.
 */
import { Annotation, EditorSelection, StateField, type ChangeSet, type StateCommand, type Transaction } from "@codemirror/state";

interface Step {
  /** Changes that take the document back to before the step. */
  changes: ChangeSet;
  selection: EditorSelection;
  time: number;
}

interface History {
  done: Step[];
  undone: Step[];
}

const MAX_STEPS = 200;
/** Edits of the same kind closer together than this are undone together. */
const GROUP_MS = 600;

const fromHistory = Annotation.define<"undo" | "redo">();

function step(tr: Transaction): Step {
  return { changes: tr.changes.invert(tr.startState.doc), selection: tr.startState.selection, time: Date.now() };
}

function groupable(tr: Transaction, last: Step | undefined): boolean {
  return !!last && Date.now() - last.time < GROUP_MS && (tr.isUserEvent("input.type") || tr.isUserEvent("delete"));
}

export const historyField = StateField.define<History>({
  create: () => ({ done: [], undone: [] }),
  update(value, tr) {
    if (!tr.docChanged) return value;
    const source = tr.annotation(fromHistory);
    if (source === "undo") return { done: value.done.slice(0, -1), undone: [...value.undone, step(tr)] };
    if (source === "redo") return { done: [...value.done, step(tr)], undone: value.undone.slice(0, -1) };
    const last = value.done[value.done.length - 1];
    if (groupable(tr, last)) {
      // The new step's inverse runs first, then the earlier one's: back to before both.
      const merged = { changes: step(tr).changes.compose(last!.changes), selection: last!.selection, time: Date.now() };
      return { done: [...value.done.slice(0, -1), merged], undone: [] };
    }
    return { done: [...value.done, step(tr)].slice(-MAX_STEPS), undone: [] };
  },
});

function replay(kind: "undo" | "redo"): StateCommand {
  return ({ state, dispatch }) => {
    const h = state.field(historyField, false);
    const stack = kind === "undo" ? h?.done : h?.undone;
    const last = stack?.[stack.length - 1];
    if (!last) return false;
    dispatch(
      state.update({
        changes: last.changes,
        selection: last.selection.ranges.every((r) => r.to <= last.changes.newLength) ? last.selection : undefined,
        annotations: fromHistory.of(kind),
        scrollIntoView: true,
        userEvent: kind,
      }),
    );
    return true;
  };
}

export const undo = replay("undo");
export const redo = replay("redo");

/** Enter: a plain newline (no language, so no indentation rules). */
export const insertNewline: StateCommand = ({ state, dispatch }) => {
  dispatch(state.update(state.replaceSelection("\n"), { scrollIntoView: true, userEvent: "input" }));
  return true;
};

export const historyKeymap = [
  { key: "Mod-z", run: undo, preventDefault: true },
  { key: "Mod-y", run: redo, preventDefault: true },
  { key: "Mod-Shift-z", run: redo, preventDefault: true },
];
