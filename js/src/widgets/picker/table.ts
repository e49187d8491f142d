/**
 * The models table of the picker: decoding the compact form Python sends
 * (`llm_notebook/widgets/picker.py: models_table`) and filtering it as the user types.
 */

export type GroupKind = "embedded" | "endpoint" | "alias" | "keyed" | "provider";

/** [id without the group's prefix, context window, $/1M in, $/1M out, available, alias target?] */
export type CompactRow = [string, number | null, number | null, number | null, number, string?];

export interface CompactGroup {
  label: string;
  kind: GroupKind;
  prefix: string;
  key: boolean | null;
  rows: CompactRow[];
}

export interface CompactTable {
  default: string;
  groups: CompactGroup[];
}

export interface ModelRow {
  id: string;
  /** Lower-cased text the filter searches: the id, the provider and the alias target. */
  haystack: string;
  group: Group;
  contextWindow: number | null;
  inputPer1M: number | null;
  outputPer1M: number | null;
  available: boolean;
  /** For an alias: "alias of <model>". */
  note: string;
  /** An endpoint's "name/*" row: choosing it starts typing "name/". */
  wildcard: boolean;
}

export interface Group {
  label: string;
  kind: GroupKind;
  key: boolean | null;
}

export function decodeTable(table: CompactTable): ModelRow[] {
  const out: ModelRow[] = [];
  for (const g of table.groups ?? []) {
    const group: Group = { label: g.label || "other", kind: g.kind, key: g.key };
    for (const r of g.rows ?? []) {
      const id = (g.prefix ?? "") + r[0];
      const note = typeof r[5] === "string" ? r[5] : "";
      out.push({
        id,
        haystack: `${id} ${group.label} ${note}`.toLowerCase(),
        group,
        contextWindow: r[1] ?? null,
        inputPer1M: r[2] ?? null,
        outputPer1M: r[3] ?? null,
        available: r[4] !== 0,
        note,
        wildcard: g.kind === "endpoint" && id.endsWith("/*"),
      });
    }
  }
  return out;
}

export interface FilterResult {
  rows: ModelRow[];
  /** How many rows matched in all (rows holds at most `limit`). */
  total: number;
}

/** Rows whose text holds every word of `query` (any order, case-insensitive), in table order. */
export function filterRows(rows: readonly ModelRow[], query: string, limit: number): FilterResult {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const matched: ModelRow[] = [];
  let total = 0;
  for (const row of rows) {
    if (words.every((w) => row.haystack.includes(w))) {
      total++;
      if (matched.length < limit) matched.push(row);
    }
  }
  return { rows: matched, total };
}

/** Whether a typed text can be offered as a model id of its own ("loop/my-model"). */
export function customId(query: string, rows: readonly ModelRow[]): string | null {
  const id = query.trim();
  if (!/^[\w.@:+-]+\/\S+$/.test(id) || id.endsWith("/*")) return null;
  return rows.some((r) => r.id === id) ? null : id;
}

export function groupTitle(group: Group): string {
  switch (group.kind) {
    case "embedded":
      return "Embedded model (no key needed)";
    case "endpoint":
      return `Endpoint ${group.label}`;
    case "alias":
      return "Aliases";
    case "keyed":
      return `${group.label} · key present`;
    default:
      return `${group.label} · no key`;
  }
}

export function formatContext(tokens: number | null): string {
  if (tokens === null || tokens === undefined) return "";
  if (tokens >= 1_000_000) return `${trim(tokens / 1_000_000)}M ctx`;
  if (tokens >= 1000) return `${trim(tokens / 1000)}k ctx`;
  return `${tokens} ctx`;
}

export function formatPrice(input: number | null, output: number | null): string {
  if (input === null && output === null) return "";
  if (input === 0 && output === 0) return "free";
  return `$${money(input)} / $${money(output)} per 1M`;
}

export function keyText(row: ModelRow): string {
  if (row.group.kind === "embedded") return row.available ? "no key needed" : "not installed";
  if (row.group.key === null) return "";
  return row.group.key ? "key present" : "no key";
}

function trim(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1).replace(/\.0$/, "");
}

function money(n: number | null): string {
  if (n === null || n === undefined) return "?";
  if (n === 0) return "0";
  return n >= 1 ? trim(Math.round(n * 100) / 100) : String(Number(n.toPrecision(2)));
}
