// `%%llm` cells are prompts, not Python: highlight them as markdown in the editor.
//
// JupyterLab 4 picks a cell editor's language from the cell model's mime type, which the
// notebook sets on every code cell from the kernel's language (and sets again whenever the
// kernel changes). So each code cell is watched: when its source starts with `%%llm` its mime
// type is switched to markdown, and switched back whenever anything resets it; when the magic
// line goes away the notebook's code mime type is restored. The mime type of a code cell is not
// saved in the notebook file, so nothing of this leaks into .ipynb files.

import type { ICellModel } from '@jupyterlab/cells';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

export const MARKDOWN_MIME = 'text/x-ipythongfm';
const LLM_MAGIC = /^%%llm(?:[ \t]|\r?\n|$)/;

export function isLLMCell(source: string): boolean {
  return LLM_MAGIC.test(source);
}

export class LLMCellHighlighter {
  private _enabled = true;
  private readonly _watched = new WeakSet<ICellModel>();
  private readonly _panels = new Set<NotebookPanel>();

  constructor(tracker: INotebookTracker) {
    tracker.forEach(panel => this._watchPanel(panel));
    tracker.widgetAdded.connect((_, panel) => this._watchPanel(panel));
  }

  get enabled(): boolean {
    return this._enabled;
  }

  set enabled(value: boolean) {
    if (value === this._enabled) {
      return;
    }
    this._enabled = value;
    for (const panel of this._panels) {
      this._applyAll(panel);
    }
  }

  private _watchPanel(panel: NotebookPanel): void {
    this._panels.add(panel);
    panel.disposed.connect(() => this._panels.delete(panel));
    const connectModel = () => {
      const model = panel.content.model;
      if (!model) {
        return;
      }
      model.cells.changed.connect(() => this._applyAll(panel));
      this._applyAll(panel);
    };
    panel.content.modelChanged.connect(connectModel);
    connectModel();
  }

  private _applyAll(panel: NotebookPanel): void {
    const cells = panel.content.model?.cells;
    if (!cells) {
      return;
    }
    for (let i = 0; i < cells.length; i++) {
      const cell = cells.get(i);
      if (cell.type !== 'code') {
        continue;
      }
      if (!this._watched.has(cell)) {
        this._watched.add(cell);
        cell.contentChanged.connect(() => this._apply(panel, cell));
        cell.mimeTypeChanged.connect(() => this._apply(panel, cell));
      }
      this._apply(panel, cell);
    }
  }

  private _apply(panel: NotebookPanel, cell: ICellModel): void {
    if (cell.isDisposed) {
      return;
    }
    const llm = this._enabled && isLLMCell(cell.sharedModel.getSource());
    const wanted = llm ? MARKDOWN_MIME : panel.content.codeMimetype;
    if (cell.mimeType !== wanted) {
      cell.mimeType = wanted;
    }
  }
}
