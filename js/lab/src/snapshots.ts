// Saved snapshots of llm-notebook widgets, shown where the live widget cannot come back.
//
// Each widget's output holds the live widget (application/vnd.jupyter.widget-view+json) and a
// static snapshot of what it showed (text/html, see llm_notebook/widgets/display.py). JupyterLab
// shows one of them per output: in a trusted notebook, the widget-view, which ipywidgets can
// only render while the kernel that made the widget runs. Reopened without it, the output says
// "Loading widget..." (no kernel) or "Error displaying widget: model not found" (a new kernel).
//
// For those outputs this adds the snapshot, rendered by the notebook's own text/html renderer
// (which sanitizes it unless the output is trusted), under the widget. The stylesheet shows it
// only while no live view of ours is there (a view's root has the class llmnb-view) and hides
// ipywidgets' message meanwhile; it is added only when no view appeared within a second, so a
// live widget never flickers.

import { CodeCell, type Cell } from '@jupyterlab/cells';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Panel, Widget } from '@lumino/widgets';

const WIDGET_VIEW = 'application/vnd.jupyter.widget-view+json';
/** The attribute llm_notebook/widgets/snapshot.py puts on every snapshot's outer element. */
const MARKER = 'data-llmnb-snapshot';
const LIVE_VIEW_SELECTOR = '.llmnb-view';
const FALLBACK_CLASS = 'llmnb-snapshot-fallback';
const NOTE =
  'Saved snapshot: the kernel that made this widget is not running. Run the cell again to use it.';
const WITH_FALLBACK_CLASS = 'llmnb-with-snapshot';
/** A live view renders within milliseconds; only an output still without one gets a fallback. */
export const FALLBACK_AFTER_MS = 1000;

type OutputArea = CodeCell['outputArea'];
type OutputModel = NonNullable<ReturnType<OutputArea['model']['get']>>;
type Rendermime = NotebookPanel['content']['rendermime'];
type MimeModel = Parameters<ReturnType<Rendermime['createRenderer']>['renderModel']>[0];

interface Fallback {
  html: string;
  holder: Panel;
}

/** The snapshot HTML of a widget output of ours, or null for any other output. */
export function snapshotOf(data: Record<string, unknown>): string | null {
  if (!(WIDGET_VIEW in data)) {
    return null;
  }
  const value = data['text/html'];
  const html = Array.isArray(value) ? value.join('') : value;
  return typeof html === 'string' && html.includes(MARKER) ? html : null;
}

export class SnapshotFallbacks {
  private readonly watched = new WeakSet<Cell>();
  private readonly fallbacks = new WeakMap<Widget, Fallback>();

  constructor(tracker: INotebookTracker) {
    tracker.forEach(panel => this.watchNotebook(panel));
    tracker.widgetAdded.connect((_, panel) => this.watchNotebook(panel));
  }

  private watchNotebook(panel: NotebookPanel): void {
    const watchCells = (): void => {
      for (const cell of panel.content.widgets) {
        this.watchCell(panel, cell);
      }
    };
    void panel.context.ready.then(() => {
      watchCells();
      // Cell widgets of new cells exist once the model's change has been handled.
      panel.content.model?.cells.changed.connect(() => requestAnimationFrame(watchCells));
    });
  }

  private watchCell(panel: NotebookPanel, cell: Cell): void {
    if (!(cell instanceof CodeCell) || this.watched.has(cell)) {
      return;
    }
    this.watched.add(cell);
    const area = cell.outputArea;
    const check = (): void => {
      setTimeout(() => {
        if (!area.isDisposed) {
          this.checkOutputs(panel.content.rendermime, area);
        }
      }, FALLBACK_AFTER_MS);
    };
    area.outputLengthChanged.connect(check);
    area.model.changed.connect(check); // an update_display replaces an output
    check();
  }

  private checkOutputs(rendermime: Rendermime, area: OutputArea): void {
    area.widgets.forEach((child, index) => {
      const model = area.model.get(index);
      if (model) {
        this.sync(rendermime, child, model);
      }
    });
  }

  private sync(rendermime: Rendermime, child: Widget, model: OutputModel): void {
    const existing = this.fallbacks.get(child);
    const html = snapshotOf(model.data as Record<string, unknown>);
    const shownAs = rendermime.preferredMimeType(model.data, model.trusted ? 'any' : 'ensure');
    // An untrusted output already shows its text/html: JupyterLab does not render widget-views
    // there, since their renderer is not "safe".
    const wanted = html !== null && shownAs === WIDGET_VIEW && child instanceof Panel;
    if (!wanted || (existing && existing.html !== html)) {
      existing?.holder.dispose();
      this.fallbacks.delete(child);
      child.removeClass(WITH_FALLBACK_CLASS);
    }
    if (!wanted || this.fallbacks.has(child) || child.node.querySelector(LIVE_VIEW_SELECTOR)) {
      return;
    }
    const renderer = rendermime.createRenderer('text/html');
    const mimeModel: MimeModel = {
      trusted: model.trusted,
      data: { 'text/html': html },
      metadata: {},
      setData: () => undefined
    };
    void renderer.renderModel(mimeModel);
    // Held in a plain panel: JupyterLab re-renders an updated output with the last child that
    // has renderModel, which must stay the widget's renderer.
    const holder = new Panel();
    holder.addClass(FALLBACK_CLASS);
    const note = new Widget();
    note.addClass('llmnb-snapshot-fallback-note');
    note.node.textContent = NOTE;
    holder.addWidget(note);
    holder.addWidget(renderer);
    (child as Panel).addWidget(holder);
    child.addClass(WITH_FALLBACK_CLASS);
    this.fallbacks.set(child, { html: html!, holder });
  }
}
