// Writing `%%llm` cells into the active notebook.

import type { INotebookTracker } from '@jupyterlab/notebook';

/** `%%llm` interpolates `{name}`; a logged prompt is already filled in, so its braces are literal. */
export function escapeBraces(text: string): string {
  return text.replace(/[{}]/g, brace => brace + brace);
}

/** A model id as one shell-style argument of the magic line. */
export function magicArg(value: string): string {
  if (/^[A-Za-z0-9_./:@+-]+$/.test(value)) {
    return value;
  }
  return `'${value.replace(/'/g, `'"'"'`)}'`;
}

export function promptCellSource(prompt: string, model?: string): string {
  const head = model ? `%%llm -m ${magicArg(model)}` : '%%llm';
  return `${head}\n${escapeBraces(prompt)}`;
}

export function templateCellSource(name: string, model?: string): string {
  const head = `%%llm -t ${magicArg(name)}`;
  return model ? `${head} -m ${magicArg(model)}` : head;
}

/**
 * Insert a code cell below the active cell of the current notebook and make it active.
 * Returns the notebook path, or null when no notebook is open.
 */
export function insertCodeCell(tracker: INotebookTracker, source: string): string | null {
  const panel = tracker.currentWidget;
  const notebook = panel?.content;
  const model = notebook?.model;
  if (!panel || !notebook || !model) {
    return null;
  }
  const at = notebook.activeCellIndex >= 0 ? notebook.activeCellIndex + 1 : model.cells.length;
  model.sharedModel.insertCell(at, { cell_type: 'code', source });
  notebook.activeCellIndex = at;
  notebook.deselectAll();
  const cell = notebook.widgets[at];
  if (cell) {
    void notebook.scrollToCell(cell);
  }
  return panel.context.path;
}
