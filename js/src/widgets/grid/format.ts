/** Numbers as the grid shows them. */

export function seconds(s: number | null): string {
  if (s === null) return "";
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(s < 10 ? 2 : 1)} s`;
}

export function usd(v: number | null): string {
  if (v === null) return "";
  if (v === 0) return "$0";
  return v < 0.01 ? `$${v.toPrecision(2)}` : `$${v.toFixed(4)}`;
}

export function percent(v: number | null): string {
  return v === null ? "–" : `${Math.round(v * 100)}%`;
}

export function tokens(input: number | null, output: number | null): string {
  if (input === null && output === null) return "";
  return `${(input ?? 0) + (output ?? 0)} tok`;
}
