/**
 * The CodeMirror 6 editor of a template's text: placeholders highlighted, syntax errors marked
 * where they are, undo history. Built from @codemirror/state and @codemirror/view alone:
 * basicSetup, language packages and even @codemirror/commands (see history.ts) would cost more
 * than the rest of the widget, and every bundle counts against one budget
 * (benchmarks/bundle_size.py).
 */
import { EditorState, StateEffect, StateField, type Extension, type Range } from "@codemirror/state";
import { Decoration, EditorView, keymap, placeholder, type DecorationSet } from "@codemirror/view";
import { describe, offsetOf, parse, type Parsed } from "./grammar";
import { historyField, historyKeymap, insertNewline } from "./history";

/** The parse of the current text, redone on every change (templates are small; it is linear). */
const parsedField = StateField.define<Parsed>({
  create: (state) => parse(state.doc.toString()),
  update: (value, tr) => (tr.docChanged ? parse(tr.state.doc.toString()) : value),
});

interface KernelError {
  from: number;
  to: number;
  message: string;
}

/** Python found an error the browser did not (its grammar is the authority). */
const setKernelError = StateEffect.define<KernelError | null>();

const kernelErrorField = StateField.define<KernelError | null>({
  create: () => null,
  update(value, tr) {
    for (const effect of tr.effects) if (effect.is(setKernelError)) return effect.value;
    return tr.docChanged ? null : value; // stale once the text changes: the next check decides
  },
});

const placeholderMark = Decoration.mark({ class: "llm-te-ph" });

function errorDecorations(from: number, to: number, at: number, message: string, doc: EditorState["doc"]): Range<Decoration>[] {
  const attributes = { title: message, "aria-invalid": "true" };
  const out: Range<Decoration>[] = [Decoration.line({ class: "llm-te-err-line" }).range(doc.lineAt(at).from)];
  if (to > from) out.push(Decoration.mark({ class: "llm-te-err", attributes }).range(from, to));
  const atEnd = Math.min(Math.max(at + 1, from), doc.length);
  if (atEnd > at) out.push(Decoration.mark({ class: "llm-te-err-at", attributes }).range(at, atEnd));
  return out;
}

function decorationsOf(state: EditorState): DecorationSet {
  const parsed = state.field(parsedField);
  const ranges: Range<Decoration>[] = [];
  for (const token of parsed.tokens) {
    if (token.kind === "placeholder") ranges.push(placeholderMark.range(token.from, token.to));
  }
  for (const err of parsed.errors) ranges.push(...errorDecorations(err.from, err.to, err.offset, describe(err), state.doc));
  const kernel = state.field(kernelErrorField);
  if (kernel && !parsed.error) ranges.push(...errorDecorations(kernel.from, kernel.to, kernel.from, kernel.message, state.doc));
  return Decoration.set(ranges, true);
}

const templateDecorations = EditorView.decorations.compute([parsedField, kernelErrorField], decorationsOf);

// Colours only from JupyterLab's theme variables (light, dark and high-contrast themes).
const theme = EditorView.theme({
  "&": {
    color: "var(--jp-content-font-color1, CanvasText)",
    backgroundColor: "var(--jp-cell-editor-background, Canvas)",
    border: "var(--jp-border-width, 1px) solid var(--jp-cell-editor-border-color, GrayText)",
    borderRadius: "var(--jp-border-radius, 2px)",
  },
  "&.cm-focused": { outline: "1px solid var(--jp-cell-editor-active-border-color, Highlight)" },
  ".cm-content": {
    fontFamily: "var(--jp-code-font-family, monospace)",
    fontSize: "var(--jp-code-font-size, 13px)",
    caretColor: "var(--jp-editor-cursor-color, CanvasText)",
    padding: "4px 0",
  },
  ".cm-cursor, .cm-dropCursor": { borderLeftColor: "var(--jp-editor-cursor-color, CanvasText)" },
  "&.cm-focused > .cm-scroller > .cm-selectionLayer .cm-selectionBackground, .cm-selectionBackground": {
    background: "var(--jp-editor-selected-background, Highlight)",
  },
  "&.cm-focused > .cm-scroller > .cm-selectionLayer .cm-selectionBackground": {
    background: "var(--jp-editor-selected-focused-background, Highlight)",
  },
  ".cm-placeholder": { color: "var(--jp-ui-font-color3, GrayText)" },
  ".cm-scroller": { overflow: "auto" },
});

export interface CodeEditorOptions {
  text: string;
  /** The accessible name of the text area ("Prompt template", "System prompt"). */
  label: string;
  placeholder: string;
  onChange: (parsed: Parsed) => void;
  extensions?: Extension[];
}

export interface CodeEditor {
  readonly view: EditorView;
  text(): string;
  parsed(): Parsed;
  /** Replaces the text as one undoable change (Ctrl/Cmd+Z brings the previous draft back). */
  setText(text: string): void;
  /** Marks an error Python reported at a line and column (1-based, column in characters). */
  markKernelError(line: number, column: number, message: string): void;
  clearKernelError(): void;
  focus(): void;
  destroy(): void;
}

export function createCodeEditor(parent: HTMLElement, options: CodeEditorOptions): CodeEditor {
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: options.text,
      extensions: [
        historyField,
        keymap.of([{ key: "Enter", run: insertNewline }, ...historyKeymap]),
        parsedField,
        kernelErrorField,
        templateDecorations,
        placeholder(options.placeholder),
        EditorView.lineWrapping,
        EditorView.contentAttributes.of({ "aria-label": options.label, "aria-multiline": "true" }),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) options.onChange(update.state.field(parsedField));
        }),
        theme,
        ...(options.extensions ?? []),
      ],
    }),
  });
  return {
    view,
    text: () => view.state.doc.toString(),
    parsed: () => view.state.field(parsedField),
    setText(text: string) {
      if (text === view.state.doc.toString()) return;
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    markKernelError(line: number, column: number, message: string) {
      const doc = view.state.doc.toString();
      const from = offsetOf(doc, line, column);
      const to = Math.min(from + 1, doc.length);
      view.dispatch({ effects: setKernelError.of({ from, to, message }) });
    },
    clearKernelError() {
      if (view.state.field(kernelErrorField)) view.dispatch({ effects: setKernelError.of(null) });
    },
    focus: () => view.focus(),
    destroy: () => view.destroy(),
  };
}
