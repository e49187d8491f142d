/**
 * A template's versions (newest first) and the diff of two of them. The diff is Python's
 * `templates.diff` text, shown line by line as text (never as HTML), coloured by its first
 * character.
 */

/** One row of `TemplateEditor._versions` (widgets/template_editor.py). */
export interface VersionInfo {
  version: number;
  created: string | null;
  message: string | null;
  tags: string[];
  model: string | null;
}

function when(created: string | null): string {
  if (!created) return "";
  const date = new Date(created);
  return Number.isNaN(date.getTime()) ? created : date.toLocaleString();
}

function lineClass(line: string): string {
  if (line.startsWith("+++") || line.startsWith("---")) return "llm-te-diff-file";
  if (line.startsWith("@@")) return "llm-te-diff-hunk";
  if (line.startsWith("+")) return "llm-te-diff-add";
  if (line.startsWith("-")) return "llm-te-diff-del";
  return "llm-te-diff-same";
}

export interface VersionsActions {
  open(version: number): void;
  diff(v1: number, v2: number): void;
}

export class VersionsPanel {
  readonly el: HTMLElement;
  private readonly list: HTMLOListElement;
  private readonly diffTitle: HTMLElement;
  private readonly diffView: HTMLElement;
  private versions: VersionInfo[] = [];

  constructor(private readonly actions: VersionsActions) {
    this.el = document.createElement("section");
    this.el.className = "llm-te-versions";
    this.el.setAttribute("aria-label", "Versions");
    const title = document.createElement("h4");
    title.textContent = "Versions";
    this.list = document.createElement("ol");
    this.list.className = "llm-te-version-list";
    this.diffTitle = document.createElement("div");
    this.diffTitle.className = "llm-te-diff-title";
    this.diffView = document.createElement("pre");
    this.diffView.className = "llm-te-diff";
    this.diffView.setAttribute("role", "region");
    this.diffView.setAttribute("aria-label", "Differences between two versions");
    this.diffView.tabIndex = 0; // scrollable: reachable by keyboard
    this.diffView.hidden = true;
    this.el.append(title, this.list, this.diffTitle, this.diffView);
    this.set([], null);
  }

  set(versions: VersionInfo[], current: number | null): void {
    this.versions = versions;
    if (!versions.length) {
      const none = document.createElement("li");
      none.className = "llm-muted";
      none.textContent = "Not saved yet: Save (Ctrl/Cmd+S) creates version 1.";
      this.list.replaceChildren(none);
      this.showDiff(null);
      return;
    }
    this.list.replaceChildren(...versions.map((v, i) => this.row(v, versions[i + 1]?.version ?? null, current)));
  }

  /** Shows a diff (`text` from Python), or hides the diff view with null. */
  showDiff(diff: { v1: number; v2: number; text: string } | null): void {
    if (!diff) {
      this.diffTitle.textContent = "";
      this.diffView.hidden = true;
      this.diffView.replaceChildren();
      return;
    }
    this.diffTitle.textContent = `Changes from v${diff.v1} to v${diff.v2}`;
    this.diffView.hidden = false;
    if (!diff.text) {
      const same = document.createElement("span");
      same.className = "llm-te-diff-same";
      same.textContent = "(no differences)";
      this.diffView.replaceChildren(same);
      return;
    }
    this.diffView.replaceChildren(
      ...diff.text.split("\n").map((line) => {
        const span = document.createElement("span");
        span.className = lineClass(line);
        span.textContent = line || " ";
        return span;
      }),
    );
  }

  private row(v: VersionInfo, previous: number | null, current: number | null): HTMLLIElement {
    const li = document.createElement("li");
    li.className = "llm-te-version";
    li.dataset.version = String(v.version);
    if (v.version === current) li.setAttribute("aria-current", "true");
    const label = document.createElement("strong");
    label.textContent = `v${v.version}`;
    const info = document.createElement("span");
    info.className = "llm-te-version-info";
    const bits = [when(v.created), v.message ?? "", v.tags.length ? `[${v.tags.join(", ")}]` : ""].filter(Boolean);
    info.textContent = bits.join(" · ");
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = "Open";
    open.setAttribute("aria-label", `Open version ${v.version} in the editor`);
    open.addEventListener("click", () => this.actions.open(v.version));
    li.append(label, info, open);
    if (previous !== null) {
      const diff = document.createElement("button");
      diff.type = "button";
      diff.textContent = "Diff";
      diff.setAttribute("aria-label", `Show changes from version ${previous} to ${v.version}`);
      diff.addEventListener("click", () => this.actions.diff(previous, v.version));
      li.append(diff);
    }
    return li;
  }

  latest(): number | null {
    return this.versions[0]?.version ?? null;
  }
}
