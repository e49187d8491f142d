// The left-panel "LLM" view: usage summary, searchable history, a call's thread, templates.
//
// Everything shown comes from the log through the server extension and is rendered as text
// (see dom.ts). The view polls a cheap status endpoint while it is visible and reloads only
// when a call or a template was added, so a new `%%llm` call appears within a few seconds.

import { Widget } from '@lumino/widgets';
import { Signal, type ISignal } from '@lumino/signaling';

import {
  ApiError,
  type ICall,
  type IFacets,
  type IStatus,
  type ITemplate,
  type ITotals,
  type IUsageSummary,
  LLMApi
} from './api';
import { button, clear, el, oneLine } from './dom';

export const SIDEBAR_ID = 'llm-notebook-sidebar';
const PAGE_SIZE = 50;
const SEARCH_DEBOUNCE_MS = 250;
const THIS_NOTEBOOK = '\u0000this-notebook';

export interface ISidebarOptions {
  api: LLMApi;
  /** The lab path of the notebook the user is working in (null when none is open). */
  currentNotebook: () => string | null;
  /** Put a prompt into a new `%%llm` cell of the active notebook. */
  insertPrompt: (call: ICall) => Promise<void>;
  /** Put a template into a new `%%llm -t` cell of the active notebook. */
  insertTemplate: (template: ITemplate) => void;
}

export class LLMSidebar extends Widget {
  private readonly api: LLMApi;
  private readonly options: ISidebarOptions;

  private readonly searchInput: HTMLInputElement;
  private readonly modelSelect: HTMLSelectElement;
  private readonly notebookSelect: HTMLSelectElement;
  private readonly usageNode: HTMLElement;
  private readonly listNode: HTMLElement;
  private readonly moreButton: HTMLButtonElement;
  private readonly historySection: HTMLElement;
  private readonly threadSection: HTMLElement;
  private readonly templatesNode: HTMLElement;
  private readonly messageNode: HTMLElement;
  private readonly logPathNode: HTMLElement;

  private rows: ICall[] = [];
  private templateList: ITemplate[] = [];
  private facets: IFacets = { models: [], notebooks: [] };
  private marker = '';
  private hasMore = false;
  private pollTimer: number | undefined;
  private searchTimer: number | undefined;
  private refreshing: Promise<void> | null = null;
  private historyRequest = 0;
  private _selectedCall: ICall | null = null;
  private _selectedTemplate: ITemplate | null = null;
  private _openThreadId: number | null = null;
  private readonly _selectionChanged = new Signal<this, void>(this);
  private readonly _refreshed = new Signal<this, IStatus>(this);
  private _pollMs = 3000;

  constructor(options: ISidebarOptions) {
    super();
    this.api = options.api;
    this.options = options;
    this.id = SIDEBAR_ID;
    this.addClass('jp-LLMSidebar');
    this.title.caption = 'LLM: history, usage and templates';

    this.messageNode = el('div', { className: 'jp-LLMSidebar-message', attrs: { role: 'status' } });
    this.usageNode = el('div', { className: 'jp-LLMSidebar-usage' });

    this.searchInput = el('input', {
      className: 'jp-LLMSidebar-search jp-mod-styled',
      attrs: {
        type: 'search',
        placeholder: 'Search prompts and responses',
        'aria-label': 'Search history'
      }
    });
    this.searchInput.addEventListener('input', () => this.scheduleSearch());
    this.modelSelect = el('select', {
      className: 'jp-LLMSidebar-model jp-mod-styled',
      attrs: { 'aria-label': 'Filter by model' }
    });
    this.modelSelect.addEventListener('change', () => void this.reloadHistory());
    this.notebookSelect = el('select', {
      className: 'jp-LLMSidebar-notebook jp-mod-styled',
      attrs: { 'aria-label': 'Filter by notebook' }
    });
    this.notebookSelect.addEventListener('change', () => void this.reloadHistory());

    this.listNode = el('ul', { className: 'jp-LLMSidebar-list', attrs: { role: 'listbox' } });
    this.moreButton = button('Load more', () => void this.loadMore(), {
      className: 'jp-LLMSidebar-more'
    });
    this.historySection = el('section', {
      className: 'jp-LLMSidebar-history',
      children: [
        el('h3', { text: 'History' }),
        this.searchInput,
        el('div', {
          className: 'jp-LLMSidebar-filters',
          children: [this.modelSelect, this.notebookSelect]
        }),
        this.listNode,
        this.moreButton
      ]
    });
    this.threadSection = el('section', { className: 'jp-LLMSidebar-thread' });
    this.threadSection.hidden = true;
    this.templatesNode = el('ul', { className: 'jp-LLMSidebar-templates' });
    this.logPathNode = el('div', { className: 'jp-LLMSidebar-logpath' });

    const header = el('header', {
      className: 'jp-LLMSidebar-header',
      children: [
        el('h2', { text: 'LLM' }),
        button('Refresh', () => void this.refresh(true), {
          className: 'jp-LLMSidebar-refresh',
          title: 'Reload history, usage and templates'
        })
      ]
    });
    const body = el('div', {
      className: 'jp-LLMSidebar-body',
      children: [
        this.messageNode,
        el('section', {
          className: 'jp-LLMSidebar-usageSection',
          children: [el('h3', { text: 'Usage' }), this.usageNode]
        }),
        this.historySection,
        this.threadSection,
        el('section', {
          className: 'jp-LLMSidebar-templateSection',
          children: [el('h3', { text: 'Templates' }), this.templatesNode]
        }),
        this.logPathNode
      ]
    });
    this.node.appendChild(header);
    this.node.appendChild(body);
    this.renderFilters();
  }

  // -- state the commands act on -------------------------------------------------------------

  get selectedCall(): ICall | null {
    return this._selectedCall;
  }

  get selectedTemplate(): ITemplate | null {
    return this._selectedTemplate;
  }

  get selectionChanged(): ISignal<this, void> {
    return this._selectionChanged;
  }

  /** Emitted after each refresh that reached the server, with its status. */
  get refreshed(): ISignal<this, IStatus> {
    return this._refreshed;
  }

  get openThreadId(): number | null {
    return this._openThreadId;
  }

  focusSearch(query?: string): void {
    if (query !== undefined) {
      this.searchInput.value = query;
      void this.reloadHistory();
    }
    this.searchInput.focus();
  }

  setModelFilter(model: string | null): void {
    this.ensureOption(this.modelSelect, model);
    this.modelSelect.value = model ?? '';
    void this.reloadHistory();
  }

  setNotebookFilter(notebook: 'this' | string | null): void {
    const value = notebook === 'this' ? THIS_NOTEBOOK : notebook ?? '';
    this.ensureOption(this.notebookSelect, value || null);
    this.notebookSelect.value = value;
    void this.reloadHistory();
  }

  clearFilters(): void {
    this.searchInput.value = '';
    this.modelSelect.value = '';
    this.notebookSelect.value = '';
    void this.reloadHistory();
  }

  /** The active notebook changed: its usage line and the "this notebook" filter follow it. */
  notebookChanged(): void {
    if (!this.isVisible) {
      return;
    }
    void this.loadUsage();
    if (this.notebookSelect.value === THIS_NOTEBOOK) {
      void this.reloadHistory();
    }
  }

  /** How often the view asks the server whether the log changed, while it is visible. */
  get pollMs(): number {
    return this._pollMs;
  }

  set pollMs(value: number) {
    this._pollMs = value;
    if (this.pollTimer !== undefined) {
      this.startPolling();
    }
  }

  // -- lifecycle -----------------------------------------------------------------------------

  protected override onAfterShow(): void {
    void this.refresh(true);
    this.startPolling();
  }

  protected override onAfterAttach(): void {
    if (this.isVisible) {
      void this.refresh(true);
      this.startPolling();
    }
  }

  protected override onBeforeHide(): void {
    this.stopPolling();
  }

  protected override onBeforeDetach(): void {
    this.stopPolling();
  }

  override dispose(): void {
    this.stopPolling();
    super.dispose();
  }

  private startPolling(): void {
    this.stopPolling();
    this.pollTimer = window.setInterval(() => void this.refresh(false), this._pollMs);
  }

  private stopPolling(): void {
    if (this.pollTimer !== undefined) {
      window.clearInterval(this.pollTimer);
      this.pollTimer = undefined;
    }
  }

  // -- loading -------------------------------------------------------------------------------

  /** Reload everything if the log changed since the last look (or always, with `force`). */
  refresh(force: boolean): Promise<void> {
    if (this.refreshing) {
      return this.refreshing;
    }
    this.refreshing = this.doRefresh(force).finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async doRefresh(force: boolean): Promise<void> {
    let status: IStatus;
    try {
      status = await this.api.status();
    } catch (error) {
      this.showError(error);
      return;
    }
    this.logPathNode.textContent = `Log: ${status.log_name}`;
    this.logPathNode.title =
      'The log file the server reads (set by c.LLMNotebook.log_path or $LLM_NOTEBOOK_LOG)';
    const marker = `${status.latest_call_id}/${status.calls}/${status.templates ?? ''}`;
    if (force || marker !== this.marker) {
      this.marker = marker;
      await Promise.all([
        this.loadFacets(),
        this.reloadHistory(),
        this.loadUsage(),
        this.loadTemplates()
      ]);
    }
    this._refreshed.emit(status);
  }

  private scheduleSearch(): void {
    window.clearTimeout(this.searchTimer);
    this.searchTimer = window.setTimeout(() => void this.reloadHistory(), SEARCH_DEBOUNCE_MS);
  }

  private historyQuery(offset: number) {
    let notebook: string | undefined = this.notebookSelect.value || undefined;
    if (notebook === THIS_NOTEBOOK) {
      notebook = this.options.currentNotebook() ?? '\u0000none';
    }
    return {
      search: this.searchInput.value.trim() || undefined,
      model: this.modelSelect.value || undefined,
      notebook: notebook === '\u0000none' ? undefined : notebook,
      limit: PAGE_SIZE,
      offset
    };
  }

  async reloadHistory(): Promise<void> {
    // Only the latest request may draw: a slow answer to an older search must not win.
    const request = ++this.historyRequest;
    const query = this.historyQuery(0);
    if (this.notebookSelect.value === THIS_NOTEBOOK && !this.options.currentNotebook()) {
      this.rows = [];
      this.hasMore = false;
      this.renderHistory('Open a notebook to see its calls.');
      return;
    }
    try {
      const page = await this.api.history(query);
      if (request !== this.historyRequest) {
        return;
      }
      this.rows = page.rows;
      this.hasMore = page.has_more;
      this.clearError();
      this.renderHistory();
    } catch (error) {
      if (request === this.historyRequest) {
        this.showError(error);
      }
    }
  }

  private async loadMore(): Promise<void> {
    const request = this.historyRequest;
    try {
      const page = await this.api.history(this.historyQuery(this.rows.length));
      if (request !== this.historyRequest) {
        return;
      }
      this.rows = this.rows.concat(page.rows);
      this.hasMore = page.has_more;
      this.renderHistory();
    } catch (error) {
      this.showError(error);
    }
  }

  private async loadFacets(): Promise<void> {
    try {
      this.facets = await this.api.facets();
      this.renderFilters();
    } catch (error) {
      this.showError(error);
    }
  }

  private async loadUsage(): Promise<void> {
    try {
      this.renderUsage(await this.api.usageSummary(this.options.currentNotebook()));
    } catch (error) {
      this.showError(error);
    }
  }

  private async loadTemplates(): Promise<void> {
    try {
      this.templateList = await this.api.templates();
      if (
        this._selectedTemplate &&
        !this.templateList.some(t => t.name === this._selectedTemplate?.name)
      ) {
        this._selectedTemplate = null;
        this._selectionChanged.emit();
      }
      this.renderTemplates();
    } catch (error) {
      this.showError(error);
    }
  }

  // -- thread --------------------------------------------------------------------------------

  async openThread(callId: number): Promise<void> {
    let data;
    try {
      data = await this.api.call(callId);
    } catch (error) {
      this.showError(error);
      return;
    }
    this._openThreadId = callId;
    const section = this.threadSection;
    clear(section);
    const first = data.thread[0];
    section.appendChild(
      el('div', {
        className: 'jp-LLMSidebar-threadHeader',
        children: [
          button('← Back', () => this.closeThread(), { className: 'jp-LLMSidebar-back' }),
          el('h3', { text: `Thread of call ${callId}` })
        ]
      })
    );
    if (first?.system) {
      section.appendChild(this.message('system', 'System', first.system));
    }
    const list = el('ol', { className: 'jp-LLMSidebar-messages' });
    for (const call of data.thread) {
      list.appendChild(this.message('user', 'Prompt', call.prompt ?? '', call.id));
      if (call.status === 'ok' || call.response) {
        list.appendChild(this.message('assistant', call.model, call.response ?? '', call.id));
      }
      if (call.status !== 'ok') {
        list.appendChild(
          this.message('error', `${call.status}${call.error_kind ? ` (${call.error_kind})` : ''}`,
            call.error ?? '', call.id)
        );
      }
    }
    section.appendChild(list);
    this.historySection.hidden = true;
    section.hidden = false;
  }

  closeThread(): void {
    this._openThreadId = null;
    this.threadSection.hidden = true;
    clear(this.threadSection);
    this.historySection.hidden = false;
  }

  private message(kind: string, who: string, text: string, callId?: number): HTMLElement {
    return el('li', {
      className: `jp-LLMSidebar-msg jp-LLMSidebar-msg-${kind}`,
      attrs: callId !== undefined ? { 'data-call-id': String(callId) } : {},
      children: [
        el('div', { className: 'jp-LLMSidebar-who', text: who }),
        el('pre', { className: 'jp-LLMSidebar-text', text })
      ]
    });
  }

  // -- rendering -----------------------------------------------------------------------------

  private renderFilters(): void {
    const model = this.modelSelect.value;
    clear(this.modelSelect);
    this.modelSelect.appendChild(el('option', { text: 'All models', attrs: { value: '' } }));
    for (const m of this.facets.models) {
      this.modelSelect.appendChild(el('option', { text: m, attrs: { value: m } }));
    }
    this.ensureOption(this.modelSelect, model || null);
    this.modelSelect.value = model;

    const notebook = this.notebookSelect.value;
    clear(this.notebookSelect);
    this.notebookSelect.appendChild(el('option', { text: 'All notebooks', attrs: { value: '' } }));
    this.notebookSelect.appendChild(
      el('option', { text: 'This notebook', attrs: { value: THIS_NOTEBOOK } })
    );
    for (const n of this.facets.notebooks) {
      this.notebookSelect.appendChild(el('option', { text: n, attrs: { value: n } }));
    }
    this.ensureOption(this.notebookSelect, notebook || null);
    this.notebookSelect.value = notebook;
  }

  private ensureOption(select: HTMLSelectElement, value: string | null): void {
    if (value === null || Array.from(select.options).some(o => o.value === value)) {
      return;
    }
    select.appendChild(el('option', { text: value, attrs: { value } }));
  }

  private renderHistory(emptyText?: string): void {
    clear(this.listNode);
    const selected = this._selectedCall?.id;
    this._selectedCall = null;
    for (const call of this.rows) {
      const item = this.historyItem(call);
      if (call.id === selected) {
        this._selectedCall = call;
        item.setAttribute('aria-selected', 'true');
      }
      this.listNode.appendChild(item);
    }
    if (this.rows.length === 0) {
      const filtered = this.searchInput.value || this.modelSelect.value || this.notebookSelect.value;
      this.listNode.appendChild(
        el('li', {
          className: 'jp-LLMSidebar-empty',
          text: emptyText ?? (filtered ? 'No calls match.' : 'No calls logged yet. Run a %%llm cell.')
        })
      );
    }
    this.moreButton.hidden = !this.hasMore;
    if (selected !== undefined && this._selectedCall === null) {
      this._selectionChanged.emit();
    }
  }

  private historyItem(call: ICall): HTMLElement {
    const when = new Date(call.ts * 1000);
    const meta = [when.toLocaleString(), call.model];
    if (call.status !== 'ok') {
      meta.push(call.status);
    }
    if (call.cached) {
      meta.push('cached');
    }
    const item = el('li', {
      className: `jp-LLMSidebar-item${call.status !== 'ok' ? ' jp-mod-error' : ''}`,
      attrs: { 'data-call-id': String(call.id), role: 'option', tabindex: '0' },
      children: [
        el('div', { className: 'jp-LLMSidebar-meta', text: meta.join(' · ') }),
        el('div', {
          className: 'jp-LLMSidebar-prompt',
          text: oneLine(call.prompt),
          title: call.prompt ?? ''
        }),
        el('div', {
          className: 'jp-LLMSidebar-response',
          text: oneLine(call.status === 'ok' ? call.response : call.error)
        }),
        el('div', {
          className: 'jp-LLMSidebar-actions',
          children: [
            button('Thread', () => void this.openThread(call.id), {
              className: 'jp-LLMSidebar-openThread',
              title: 'Show the whole conversation up to this call'
            }),
            button('Insert', () => void this.options.insertPrompt(call), {
              className: 'jp-LLMSidebar-insertPrompt',
              title: 'Copy this prompt into a new %%llm cell in the active notebook'
            })
          ]
        })
      ],
      onClick: () => this.selectCall(call, item)
    });
    item.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        void this.openThread(call.id);
      }
    });
    return item;
  }

  private selectCall(call: ICall, item: HTMLElement): void {
    for (const other of Array.from(this.listNode.querySelectorAll('[aria-selected="true"]'))) {
      other.removeAttribute('aria-selected');
    }
    item.setAttribute('aria-selected', 'true');
    this._selectedCall = call;
    this._selectionChanged.emit();
  }

  private renderUsage(summary: IUsageSummary): void {
    clear(this.usageNode);
    this.usageNode.appendChild(
      el('div', { className: 'jp-LLMSidebar-usageToday', text: `Today: ${totalsText(summary.today)}` })
    );
    if (summary.notebook && summary.notebook_today && summary.notebook_total) {
      this.usageNode.appendChild(
        el('div', {
          className: 'jp-LLMSidebar-usageNotebook',
          text:
            `This notebook: ${totalsText(summary.notebook_today)} today, ` +
            `${plural(summary.notebook_total.calls, 'call')} in all`,
          title: summary.notebook
        })
      );
    }
  }

  private renderTemplates(): void {
    clear(this.templatesNode);
    for (const t of this.templateList) {
      const item = el('li', {
        className: 'jp-LLMSidebar-template',
        attrs: { 'data-template': t.name, tabindex: '0' },
        title: t.prompt,
        children: [
          el('div', { className: 'jp-LLMSidebar-templateName', text: `${t.name} v${t.version}` }),
          el('div', {
            className: 'jp-LLMSidebar-templateVars',
            text: t.variables.length ? `variables: ${t.variables.join(', ')}` : 'no variables'
          }),
          el('div', { className: 'jp-LLMSidebar-templatePrompt', text: oneLine(t.prompt, 120) }),
          button('Insert', () => this.options.insertTemplate(t), {
            className: 'jp-LLMSidebar-insertTemplate',
            title: 'Insert a %%llm -t cell using this template into the active notebook'
          })
        ],
        onClick: () => {
          for (const other of Array.from(this.templatesNode.querySelectorAll('[aria-selected]'))) {
            other.removeAttribute('aria-selected');
          }
          item.setAttribute('aria-selected', 'true');
          this._selectedTemplate = t;
          this._selectionChanged.emit();
        }
      });
      this.templatesNode.appendChild(item);
    }
    if (this.templateList.length === 0) {
      this.templatesNode.appendChild(
        el('li', {
          className: 'jp-LLMSidebar-empty',
          text: 'No templates yet: save one with session.templates.save(name, prompt).'
        })
      );
    }
  }

  private showError(error: unknown): void {
    const text = error instanceof ApiError ? error.message : String(error);
    this.messageNode.textContent = `Could not load: ${text}`;
    this.messageNode.classList.add('jp-mod-error');
  }

  private clearError(): void {
    this.messageNode.textContent = '';
    this.messageNode.classList.remove('jp-mod-error');
  }
}

export function totalsText(t: ITotals): string {
  const parts = [plural(t.calls, 'call')];
  parts.push(`${t.input_tokens + t.output_tokens} tokens`);
  parts.push(`$${t.cost.toFixed(t.cost < 0.01 && t.cost > 0 ? 4 : 2)}`);
  if (t.unpriced) {
    parts.push(`${t.unpriced} unpriced`);
  }
  if (t.errors) {
    parts.push(`${t.errors} failed`);
  }
  return parts.join(' · ');
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
