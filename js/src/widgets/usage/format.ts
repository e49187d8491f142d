/**
 * Number, time and axis formatting for the usage panel. Times are UTC, like the log's days and
 * hours (and the day budget), so a chart's day is the same day `usage(by="day")` reports.
 */

export function formatInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** US dollars: cents for amounts from $0.01, four significant digits below (LLM calls are cheap). */
export function formatUSD(n: number): string {
  if (n === 0) return "$0";
  const abs = Math.abs(n);
  if (abs >= 1000) return `$${Math.round(n).toLocaleString("en-US")}`;
  if (abs >= 0.01) return `$${n.toFixed(2)}`;
  return `$${Number(n.toPrecision(2)).toString()}`;
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

export function formatPercent(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return "–";
  const pct = rate * 100;
  return `${pct >= 10 || pct === 0 ? pct.toFixed(0) : pct.toFixed(1)}%`;
}

/** A compact count for axis labels: 950, 1.2k, 34k, 1.5M. */
export function formatCompact(n: number): string {
  const abs = Math.abs(n);
  if (abs >= 1e6) return `${trim(n / 1e6)}M`;
  if (abs >= 1e3) return `${trim(n / 1e3)}k`;
  return trim(n);
}

function trim(n: number): string {
  return Number(n.toFixed(n >= 100 || Number.isInteger(n) ? 0 : 1)).toString();
}

/** "2024-03-01" for a unix time (seconds), in UTC. */
export function utcDate(seconds: number): string {
  return new Date(seconds * 1000).toISOString().slice(0, 10);
}

/** "2024-03-01 14:00" for a unix time (seconds), in UTC. */
export function utcHour(seconds: number): string {
  const iso = new Date(seconds * 1000).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 13)}:00`;
}

/**
 * About `count` round tick values from 0 to at least `max` (1, 2 or 5 times a power of ten
 * apart), so axes read 0, 0.05, 0.1 rather than 0, 0.0437, 0.0874.
 */
export function niceTicks(max: number, count = 4): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0, 1];
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
  const ticks: number[] = [];
  for (let i = 0; i * step < max + step * 1e-9; i++) ticks.push(Number((i * step).toPrecision(12)));
  if (ticks[ticks.length - 1]! < max) ticks.push(Number((ticks.length * step).toPrecision(12)));
  return ticks;
}
