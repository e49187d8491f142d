/**
 * One view of a comparison grid: toolbar, a virtualised table (only the rows in sight exist in
 * the DOM, so 400 cells or 4,000 stay responsive), and a panel with a cell's details or the word
 * diff of two picked cells. All LLM text goes through renderMarkdownInto or textContent.
 */
import type { AnyModel } from "@anywidget/types";
import { renderMarkdown, renderMarkdownInto } from "../../shared/markdown";
import { rpcFor, type RpcClient } from "../../shared/rpc";
import { diffStats, renderDiff, wordDiff } from "./diff";
import { percent, seconds, tokens, usd } from "./format";
import { buildTable, FILTERS, keepRow, LAYOUTS, summarize, visibleRange, type Coord, type Filter, type Layout, type Table } from "./layout";
import type { GridStore } from "./store";
import type { CellData, ExportResult, Spec } from "./types";

const ROW_HEIGHTS: Record<string, number> = { compact: 110, normal: 180, tall: 320 };
const OVERSCAN = 2;
/** Sanitized outputs kept for rows scrolled out and back in (parsing is most of a cell's cost). */
const RENDER_CACHE = 600;

function h<K extends keyof HTMLElementTagNameMap>(doc: Document, tag: K, className = "", text?: string): HTMLElementTagNameMap[K] {
  const node = doc.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(doc: Document, text: string, action: string, label: string): HTMLButtonElement {
  const b = h(doc, "button", "llm-grid-btn", text);
  b.type = "button";
  b.dataset.action = action;
  b.title = label;
  b.setAttribute("aria-label", label);
  return b;
}

function select(doc: Document, label: string, options: { id: string; label: string }[], value: string): HTMLSelectElement {
  const s = h(doc, "select", "llm-grid-select");
  s.setAttribute("aria-label", label);
  for (const o of options) {
    const opt = h(doc, "option", "", o.label);
    opt.value = o.id;
    s.append(opt);
  }
  s.value = value;
  return s;
}

export class GridView {
  private readonly doc: Document;
  private readonly rpc: RpcClient;
  private spec: Spec;
  private layout: Layout = LAYOUTS[0]!;
  private filter: Filter = "all";
  private rowHeight = ROW_HEIGHTS.normal!;
  private table!: Table;
  /** Table row indices that pass the filter, in display order. */
  private shown: number[] = [];
  /** Rendered rows by table row index. */
  private readonly rendered = new Map<number, HTMLElement>();
  private readonly cellEls = new Map<number, HTMLElement>();
  private readonly dirty = new Set<number>();
  private relayout = true;
  private frame = 0;
  private picked: number[] = [];
  private focused: number | null = null;
  private message = "";
  private readonly renderCache = new Map<number, { version: number; fragment: DocumentFragment }>();

  private readonly status: HTMLElement;
  private readonly scroller: HTMLElement;
  private readonly head: HTMLElement;
  private readonly body: HTMLElement;
  private readonly panel: HTMLElement;
  private readonly caption: HTMLElement;
  private readonly rerunBtn: HTMLButtonElement;
  private readonly stopBtn: HTMLButtonElement;
  private readonly cleanups: (() => void)[] = [];

  constructor(
    private readonly model: AnyModel,
    private readonly el: HTMLElement,
    private readonly store: GridStore,
  ) {
    this.doc = el.ownerDocument;
    this.rpc = rpcFor(model);
    this.spec = model.get("spec") as Spec;
    const d = this.doc;
    el.classList.add("llm-nb", "llm-grid");

    const toolbar = h(d, "div", "llm-grid-toolbar");
    this.status = h(d, "span", "llm-grid-status llm-muted");
    this.status.setAttribute("aria-live", "polite");
    const layoutSel = select(d, "Layout", LAYOUTS, this.layout.id);
    const filterSel = select(d, "Filter rows", FILTERS, this.filter);
    const heightSel = select(d, "Row height", Object.keys(ROW_HEIGHTS).map((k) => ({ id: k, label: `Rows: ${k}` })), "normal");
    this.rerunBtn = button(d, "Re-run failed", "rerun", "Send the failed cells again");
    this.stopBtn = button(d, "Stop", "stop", "Start no more calls");
    const exports = ["csv", "json", "html"].map((f) => button(d, f === "html" ? "HTML report" : f.toUpperCase(), `export-${f}`, `Export as ${f.toUpperCase()}`));
    const tools = h(d, "span", "llm-grid-tools");
    tools.append(layoutSel, filterSel, heightSel, this.rerunBtn, this.stopBtn, ...exports);
    toolbar.append(this.status, tools);

    this.scroller = h(d, "div", "llm-grid-scroll");
    this.scroller.tabIndex = 0;
    this.head = h(d, "div", "llm-grid-head");
    this.body = h(d, "div", "llm-grid-body");
    this.scroller.append(this.head, this.body);
    this.panel = h(d, "div", "llm-grid-panel");
    this.caption = h(d, "div", "llm-grid-caption llm-muted");
    el.replaceChildren(toolbar, this.caption, this.scroller, this.panel);

    const on = <T extends Event>(target: EventTarget, type: string, fn: (e: T) => void): void => {
      target.addEventListener(type, fn as EventListener);
      this.cleanups.push(() => target.removeEventListener(type, fn as EventListener));
    };
    on(layoutSel, "change", () => {
      this.layout = LAYOUTS.find((l) => l.id === layoutSel.value) ?? LAYOUTS[0]!;
      this.invalidate();
    });
    on(filterSel, "change", () => {
      this.filter = filterSel.value as Filter;
      this.scroller.scrollTop = 0;
      this.invalidate();
    });
    on(heightSel, "change", () => {
      this.rowHeight = ROW_HEIGHTS[heightSel.value] ?? ROW_HEIGHTS.normal!;
      this.invalidate();
    });
    on(toolbar, "click", (e: Event) => this.onToolbar(e));
    on(this.body, "click", (e: Event) => this.onCellClick(e));
    on(this.body, "keydown", (e: KeyboardEvent) => {
      const target = e.target as HTMLElement;
      if (e.key === "Enter" && target.dataset.action === "focus") {
        e.preventDefault();
        this.onCellClick(e);
      }
    });
    on(this.panel, "click", (e: Event) => this.onPanelClick(e));
    on(this.scroller, "scroll", () => this.schedule());
    const onSpec = (): void => {
      this.spec = model.get("spec") as Spec;
      this.invalidate();
    };
    model.on("change:spec", onSpec);
    this.cleanups.push(() => model.off("change:spec", onSpec));
    this.cleanups.push(
      store.subscribe((changed) => {
        for (const i of changed) this.dirty.add(i);
        this.schedule();
      }),
    );
  }

  /** Asks Python for every cell (a reloaded page starts empty), then draws. */
  start(): void {
    this.schedule();
    this.rpc.request<{ seq: number; cells: CellData[]; progress: never }>("state", {}, { timeoutMs: 60_000 }).then(
      (state) => this.store.apply(state.cells, state.progress, state.seq),
      (err: Error) => this.say(`Could not load the grid: ${err.message}`),
    );
  }

  destroy(): void {
    if (this.frame) cancelAnimationFrame(this.frame);
    for (const fn of this.cleanups) fn();
  }

  // -- drawing ----------------------------------------------------------------------------------

  private invalidate(): void {
    this.relayout = true;
    this.schedule();
  }

  private schedule(): void {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.draw());
  }

  private sizes(): Coord {
    return { input: this.spec.inputs.length, prompt: this.spec.prompts.length, model: this.spec.models.length };
  }

  private rowCells(r: number): (CellData | undefined)[] {
    return this.table.cols.map((_, c) => this.store.cells.get(this.table.at(r, c)));
  }

  /** Exposed for tests and the benchmark: draws now instead of at the next frame. */
  draw(): void {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    let rebuild = this.relayout;
    if (this.relayout) {
      this.table = buildTable(this.layout, this.sizes());
      const cols = this.table.cols.length;
      this.scroller.style.setProperty("--llm-grid-cols", `var(--llm-grid-label-width) repeat(${cols}, var(--llm-grid-col-width))`);
      this.scroller.style.setProperty("--llm-grid-row-height", `${this.rowHeight}px`);
      this.drawHead();
      const only = this.spec.prompts.length === 1 ? this.spec.prompts[0] : undefined;
      this.caption.textContent = only ? `Prompt: ${only.label}` : "";
      this.caption.title = only ? only.template : "";
      this.relayout = false;
    }
    if (rebuild || (this.filter !== "all" && this.dirty.size)) {
      const shown = this.table.rows.map((_, r) => r).filter((r) => keepRow(this.filter, this.rowCells(r)));
      if (rebuild || shown.length !== this.shown.length || shown.some((r, k) => this.shown[k] !== r)) {
        this.shown = shown;
        rebuild = true;
      }
    }
    if (rebuild) {
      this.rendered.clear();
      this.cellEls.clear();
      this.body.replaceChildren();
      this.body.style.height = `${this.shown.length * this.rowHeight}px`;
      if (!this.shown.length) this.body.append(h(this.doc, "div", "llm-grid-empty llm-muted", "No rows match this filter."));
    }
    this.drawRows();
    for (const i of this.dirty) {
      const cellEl = this.cellEls.get(i);
      if (cellEl) this.drawCell(cellEl, i);
    }
    const panelTouched = rebuild || this.picked.some((i) => this.dirty.has(i)) || (this.focused !== null && this.dirty.has(this.focused));
    this.dirty.clear();
    this.drawSummaries();
    this.drawStatus();
    if (panelTouched) this.drawPanel();
  }

  private drawRows(): void {
    const top = Math.max(0, this.scroller.scrollTop - this.body.offsetTop);
    const viewport = this.scroller.clientHeight || 600;
    const [first, last] = visibleRange(top, viewport, this.rowHeight, this.shown.length, OVERSCAN);
    const wanted = new Set(this.shown.slice(first, last));
    for (const [r, rowEl] of this.rendered) {
      if (wanted.has(r)) continue;
      for (const cellEl of Array.from(rowEl.querySelectorAll<HTMLElement>("[data-index]"))) this.cellEls.delete(Number(cellEl.dataset.index));
      rowEl.remove();
      this.rendered.delete(r);
    }
    for (let k = first; k < last; k++) {
      const r = this.shown[k]!;
      if (this.rendered.has(r)) continue;
      const rowEl = h(this.doc, "div", "llm-grid-row");
      rowEl.dataset.row = String(r);
      rowEl.style.top = `${k * this.rowHeight}px`;
      rowEl.append(this.label(this.table.rows[r]!, "llm-grid-rowlabel"));
      this.table.cols.forEach((_, c) => {
        const index = this.table.at(r, c);
        const cellEl = h(this.doc, "div", "llm-grid-cell");
        cellEl.dataset.index = String(index);
        this.drawCell(cellEl, index);
        this.cellEls.set(index, cellEl);
        rowEl.append(cellEl);
      });
      this.rendered.set(r, rowEl);
      this.body.append(rowEl);
    }
  }

  /** A row's or column's label: the input's values, the prompt, the model. */
  private label(coord: Partial<Coord>, className: string): HTMLElement {
    const d = this.doc;
    const box = h(d, "div", className);
    const lines: string[] = [];
    if (coord.input !== undefined) {
      const values = this.spec.inputs[coord.input] ?? [];
      const head = h(d, "div", "llm-grid-label-title", `Input ${coord.input + 1}`);
      box.append(head);
      lines.push(head.textContent ?? "");
      this.spec.columns.forEach((col, k) => {
        const line = h(d, "div", "llm-grid-label-value");
        line.append(h(d, "span", "llm-muted", `${col}: `), d.createTextNode(values[k] ?? ""));
        box.append(line);
        lines.push(`${col}: ${values[k] ?? ""}`);
      });
    }
    if (coord.prompt !== undefined && this.spec.prompts.length > 1) {
      const p = this.spec.prompts[coord.prompt];
      const text = p ? p.label : "";
      box.append(h(d, "div", "llm-grid-label-prompt", text));
      lines.push(p ? `${p.label}${p.template !== p.label ? `\n${p.template}` : ""}` : "");
    }
    if (coord.model !== undefined) {
      const m = this.spec.models[coord.model] ?? "";
      box.append(h(d, "div", "llm-grid-label-model", m));
      lines.push(m);
    }
    box.title = lines.join("\n");
    return box;
  }

  private drawHead(): void {
    const d = this.doc;
    const row = h(d, "div", "llm-grid-row llm-grid-headrow");
    row.append(h(d, "div", "llm-grid-corner llm-muted", this.layout.rows.join(" × ")));
    this.table.cols.forEach((coord, c) => {
      const cell = this.label(coord, "llm-grid-colhead");
      cell.dataset.col = String(c);
      cell.append(h(d, "div", "llm-grid-summary llm-muted"));
      row.append(cell);
    });
    this.head.replaceChildren(row);
  }

  private drawSummaries(): void {
    const nChecks = this.spec.checks.length;
    this.head.querySelectorAll<HTMLElement>(".llm-grid-colhead").forEach((el) => {
      const c = Number(el.dataset.col);
      const cells: CellData[] = [];
      for (let r = 0; r < this.table.rows.length; r++) {
        const cell = this.store.cells.get(this.table.at(r, c));
        if (cell) cells.push(cell);
      }
      const s = summarize(cells, nChecks);
      const parts = [];
      if (nChecks) parts.push(`pass ${percent(s.passRate)} (${s.passed}/${s.judged})`);
      if (s.meanLatency !== null) parts.push(`mean ${seconds(s.meanLatency)}`);
      if (s.totalCost !== null) parts.push(`total ${usd(s.totalCost)}`);
      if (s.up || s.down) parts.push(`👍${s.up} 👎${s.down}`);
      const out = el.querySelector<HTMLElement>(".llm-grid-summary");
      if (out) out.textContent = parts.join(" · ");
    });
  }

  private drawCell(el: HTMLElement, index: number): void {
    const d = this.doc;
    const c = this.store.cells.get(index);
    el.dataset.status = c?.status ?? "pending";
    el.classList.toggle("llm-grid-picked", this.picked.includes(index));
    el.classList.toggle("llm-grid-focused", this.focused === index);
    const marks = h(d, "div", "llm-grid-marks");
    this.spec.checks.forEach((name, k) => {
      const v = c?.checks[k] ?? null;
      const state = v === null || v[0] === null ? "wait" : v[0] ? "pass" : "fail";
      const mark = h(d, "span", `llm-grid-mark llm-grid-${state}`, state === "pass" ? "✓" : state === "fail" ? "✗" : "…");
      mark.title = `${name}: ${v ? v[1] : "not checked yet"}`;
      mark.setAttribute("aria-label", mark.title);
      marks.append(mark);
    });
    const out = h(d, "div", "llm-grid-out");
    out.dataset.action = "focus";
    out.tabIndex = 0; // Enter opens the cell in the panel, like a click
    out.title = "Open this cell below: whole output, checks, score and comment";
    if (!c || c.status === "pending") {
      out.append(h(d, "span", "llm-muted", "…"));
    } else if (c.status === "error") {
      out.append(h(d, "div", "llm-error", `${c.error_kind ?? "error"}: ${c.error ?? ""}`));
    } else {
      out.classList.add("llm-md");
      out.append(this.sanitized(c));
    }
    const foot = h(d, "div", "llm-grid-foot");
    if (c) {
      const metrics = [seconds(c.latency), tokens(c.input_tokens, c.output_tokens), usd(c.cost), c.cached ? "cached" : ""].filter(Boolean);
      foot.append(h(d, "span", "llm-grid-metrics llm-muted", metrics.join(" · ")));
    }
    const spacer = h(d, "span", "llm-grid-spacer");
    const up = button(d, "👍", "up", "Thumbs up");
    up.setAttribute("aria-pressed", String(c?.thumb === 1));
    const down = button(d, "👎", "down", "Thumbs down");
    down.setAttribute("aria-pressed", String(c?.thumb === -1));
    const pick = button(d, "⇄", "pick", "Pick for the word diff (pick two cells)");
    pick.setAttribute("aria-pressed", String(this.picked.includes(index)));
    foot.append(spacer);
    if (c?.score !== null && c?.score !== undefined) foot.append(h(d, "span", "llm-grid-score", c.score.toFixed(2)));
    if (c?.comment) {
      const note = h(d, "span", "llm-grid-note", "💬");
      note.title = c.comment;
      foot.append(note);
    }
    foot.append(up, down, pick);
    el.replaceChildren(marks, out, foot);
  }

  /** A copy of the cell's sanitized markdown, parsed once per version (code toolbars are for the panel). */
  private sanitized(c: CellData): DocumentFragment {
    let hit = this.renderCache.get(c.index);
    if (!hit || hit.version !== c.version) {
      hit = { version: c.version, fragment: renderMarkdown(c.output ?? "") };
      this.renderCache.delete(c.index);
      this.renderCache.set(c.index, hit);
      if (this.renderCache.size > RENDER_CACHE) this.renderCache.delete(this.renderCache.keys().next().value as number);
    }
    return this.doc.importNode(hit.fragment, true);
  }

  private drawStatus(): void {
    const p = this.store.progress;
    if (!p) {
      this.status.textContent = this.message || "Loading…";
      return;
    }
    const parts = [`${p.done}/${p.total} done`];
    if (p.errors) parts.push(`${p.errors} failed`);
    if (p.cached) parts.push(`${p.cached} cached`);
    if (p.judging) parts.push(`judging ${p.judging}`);
    if (p.spent) parts.push(`spent ${usd(p.spent)}`);
    parts.push(p.running ? "running…" : "done");
    if (p.error) parts.push(`error: ${p.error}`);
    if (this.message) parts.push(this.message);
    this.status.textContent = parts.join(" · ");
    this.el.dataset.running = String(p.running);
    this.rerunBtn.disabled = p.running || p.errors === 0;
    this.stopBtn.disabled = !p.running;
  }

  private say(message: string): void {
    this.message = message;
    this.drawStatus();
  }

  // -- the panel: one cell's details, or the diff of two ------------------------------------------

  private describe(index: number): string {
    const { prompt: P, model: M } = this.sizes();
    const m = index % M;
    const p = Math.floor(index / M) % P;
    const i = Math.floor(index / (M * P));
    const parts = [];
    if (this.spec.inputs.length > 1 || this.spec.columns.length) parts.push(`input ${i + 1}`);
    if (P > 1) parts.push(this.spec.prompts[p]?.label ?? "");
    parts.push(this.spec.models[m] ?? "");
    return parts.join(" · ");
  }

  private drawPanel(): void {
    const d = this.doc;
    if (this.picked.length === 2) {
      const [a, b] = this.picked as [number, number];
      const ca = this.store.cells.get(a);
      const cb = this.store.cells.get(b);
      const ops = wordDiff(ca?.output ?? "", cb?.output ?? "");
      const stats = diffStats(ops);
      const title = h(d, "div", "llm-grid-panel-title");
      title.append(h(d, "span", "llm-grid-fail", `− ${this.describe(a)}`), d.createTextNode("   "), h(d, "span", "llm-grid-pass", `+ ${this.describe(b)}`));
      const meta = h(d, "div", "llm-muted llm-grid-diffstats", stats.removed || stats.added ? `${stats.removed} word(s) removed, ${stats.added} added` : "The outputs are the same.");
      const body = h(d, "div", "llm-grid-diff");
      renderDiff(body, ops);
      this.panel.replaceChildren(title, meta, body, button(d, "Clear", "clear", "Clear the picked cells"));
      return;
    }
    if (this.focused === null) {
      this.panel.replaceChildren(h(d, "div", "llm-muted", "Click a cell to see it whole and rate it; pick two cells (⇄) for a word diff."));
      return;
    }
    const index = this.focused;
    const c = this.store.cells.get(index);
    const active = this.doc.activeElement;
    const keepComment = active instanceof HTMLTextAreaElement && this.panel.contains(active) ? active.value : null;
    const title = h(d, "div", "llm-grid-panel-title", this.describe(index));
    const rating = h(d, "div", "llm-grid-rating");
    const up = button(d, "👍", "up", "Thumbs up");
    up.setAttribute("aria-pressed", String(c?.thumb === 1));
    const down = button(d, "👎", "down", "Thumbs down");
    down.setAttribute("aria-pressed", String(c?.thumb === -1));
    const score = h(d, "input", "llm-grid-score-input");
    score.type = "number";
    score.min = "0";
    score.max = "1";
    score.step = "0.1";
    score.placeholder = "0–1";
    score.setAttribute("aria-label", "Score from 0 to 1");
    score.value = c?.score !== null && c?.score !== undefined ? String(c.score) : "";
    score.addEventListener("change", () => {
      const v = score.value.trim() === "" ? null : Number(score.value);
      if (v !== null && !(v >= 0 && v <= 1)) return this.say("A score is a number from 0 to 1.");
      this.rate(index, { score: v });
    });
    const comment = h(d, "textarea", "llm-grid-comment");
    comment.rows = 2;
    comment.placeholder = "Comment";
    comment.setAttribute("aria-label", "Comment");
    comment.value = keepComment ?? c?.comment ?? "";
    const save = button(d, "Save comment", "comment", "Save the comment");
    rating.append(up, down, h(d, "span", "llm-muted", "Score"), score, comment, save);
    const checks = h(d, "ul", "llm-grid-checks");
    this.spec.checks.forEach((name, k) => {
      const v = c?.checks[k] ?? null;
      const state = v === null || v[0] === null ? "wait" : v[0] ? "pass" : "fail";
      const li = h(d, "li", `llm-grid-${state}`, `${state === "pass" ? "✓" : state === "fail" ? "✗" : "…"} ${name}`);
      li.append(h(d, "span", "llm-muted", ` — ${v ? v[1] : "not checked yet"}`));
      checks.append(li);
    });
    const out = h(d, "div", "llm-grid-panel-out");
    if (c?.status === "ok") renderMarkdownInto(out, c.output ?? "");
    else if (c?.status === "error") out.append(h(d, "div", "llm-error", `${c.error_kind ?? "error"}: ${c.error ?? ""}`));
    else out.append(h(d, "span", "llm-muted", "Waiting for the answer…"));
    const sent = h(d, "details", "llm-grid-sent");
    sent.append(h(d, "summary", "", "Prompt sent"));
    sent.addEventListener("toggle", () => {
      if (!sent.open || sent.dataset.loaded) return;
      sent.dataset.loaded = "1";
      this.rpc.request<{ messages: { role: string; content: unknown }[] }>("detail", { index }, { timeoutMs: 30_000 }).then(
        (r) => {
          for (const m of r.messages) sent.append(h(d, "div", "llm-muted", m.role), h(d, "pre", "llm-grid-pre", typeof m.content === "string" ? m.content : JSON.stringify(m.content)));
        },
        (err: Error) => sent.append(h(d, "div", "llm-error", err.message)),
      );
    });
    this.panel.replaceChildren(title, rating, checks, out, sent);
    if (keepComment !== null) comment.focus();
  }

  // -- actions --------------------------------------------------------------------------------

  private rate(index: number, fields: Record<string, unknown>): void {
    this.rpc.request<CellData>("rate", { index, ...fields }, { timeoutMs: 30_000 }).then(
      (cell) => this.store.apply([cell], null, -1),
      (err: Error) => this.say(`Rating not saved: ${err.message}`),
    );
  }

  private toggleThumb(index: number, thumb: 1 | -1): void {
    const c = this.store.cells.get(index);
    this.rate(index, { thumb: c?.thumb === thumb ? null : thumb });
  }

  private togglePick(index: number): void {
    const at = this.picked.indexOf(index);
    if (at >= 0) this.picked.splice(at, 1);
    else this.picked = [...this.picked, index].slice(-2);
    this.refreshMarks();
    // The diff opens below the table, often out of sight: bring it in.
    if (this.picked.length === 2) this.panel.scrollIntoView?.({ block: "nearest" });
  }

  private refreshMarks(): void {
    for (const [index, el] of this.cellEls) {
      el.classList.toggle("llm-grid-picked", this.picked.includes(index));
      el.classList.toggle("llm-grid-focused", this.focused === index);
      el.querySelector('[data-action="pick"]')?.setAttribute("aria-pressed", String(this.picked.includes(index)));
    }
    this.drawPanel();
  }

  private onCellClick(e: Event): void {
    const target = e.target as HTMLElement;
    const cellEl = target.closest<HTMLElement>(".llm-grid-cell");
    if (!cellEl) return;
    const index = Number(cellEl.dataset.index);
    const action = target.closest<HTMLElement>("[data-action]")?.dataset.action;
    if (action === "up") this.toggleThumb(index, 1);
    else if (action === "down") this.toggleThumb(index, -1);
    else if (action === "pick") this.togglePick(index);
    else if (!target.closest("a")) {
      this.focused = index;
      this.picked = [];
      this.refreshMarks();
    }
  }

  private onPanelClick(e: Event): void {
    const action = (e.target as HTMLElement).closest<HTMLElement>("[data-action]")?.dataset.action;
    const index = this.focused;
    if (action === "clear") {
      this.picked = [];
      this.refreshMarks();
    } else if (index !== null && action === "up") this.toggleThumb(index, 1);
    else if (index !== null && action === "down") this.toggleThumb(index, -1);
    else if (index !== null && action === "comment") {
      const text = this.panel.querySelector<HTMLTextAreaElement>(".llm-grid-comment")?.value ?? "";
      this.rate(index, { comment: text });
    }
  }

  private onToolbar(e: Event): void {
    const action = (e.target as HTMLElement).closest<HTMLElement>("[data-action]")?.dataset.action;
    if (!action) return;
    if (action === "rerun" || action === "stop") {
      this.rpc.request(action, action === "rerun" ? { failed_only: true } : {}, { timeoutMs: 60_000 }).catch((err: Error) => this.say(err.message));
    } else if (action.startsWith("export-")) {
      const format = action.slice("export-".length);
      this.say(`Exporting ${format.toUpperCase()}…`);
      this.rpc.request<ExportResult>("export", { format }, { timeoutMs: 120_000 }).then(
        (r) => {
          this.download(r);
          this.say(`Exported ${r.filename}`);
        },
        (err: Error) => this.say(`Export failed: ${err.message}`),
      );
    }
  }

  private download(r: ExportResult): void {
    const url = URL.createObjectURL(new Blob([r.content], { type: r.mime }));
    const a = h(this.doc, "a", "llm-offscreen");
    a.href = url;
    a.download = r.filename;
    this.el.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }
}
