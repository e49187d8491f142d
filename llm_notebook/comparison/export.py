"""A grid as data: one record per cell (to_pandas, CSV), JSON, and a self-contained HTML report.

The HTML report is a single file that opens anywhere: inline CSS, no scripts, no remote
resources (a Content-Security-Policy says so to the browser too). Outputs are LLM text, so they
go through `llm_notebook.render.markdown_to_html` (no raw HTML, no images); every other string
is escaped.
"""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path
from typing import Any

FORMATS = {"csv": ("text/csv", ".csv"), "json": ("application/json", ".json"),
           "html": ("text/html", ".html")}
_RESERVED = {"prompt", "model", "prompt_text", "output", "status", "error", "error_kind",
             "input_tokens", "output_tokens", "tokens", "cost", "latency", "cached",
             "checks_passed", "failed_checks", "rating", "score", "comment", "input_index",
             "cell_key", "call_id"}


def cell_states(grid) -> list[dict]:
    """The cells as plain dicts, copied under the grid's lock (cells change as runs finish)."""
    with grid._lock:
        out = []
        for c in grid.plan.cells:
            out.append({"cell": c, "status": c.status, "output": c.output, "error": c.error,
                        "error_kind": c.error_kind, "input_tokens": c.input_tokens,
                        "output_tokens": c.output_tokens, "cost": c.cost, "latency": c.latency,
                        "cached": c.cached, "checks": dict(c.checks), "thumb": c.thumb,
                        "score": c.score, "comment": c.comment, "call_id": c.call_id})
        return out


def input_column_names(columns: list[str]) -> dict[str, str]:
    """Input column -> its column in the records (prefixed when it clashes with ours)."""
    return {c: (f"input:{c}" if c in _RESERVED or c.startswith("check:") else c) for c in columns}


def total_tokens(s: dict) -> int | None:
    if s["input_tokens"] is None and s["output_tokens"] is None:
        return None
    return (s["input_tokens"] or 0) + (s["output_tokens"] or 0)


def _passed_all(checks: dict, names: list[str]) -> bool | None:
    if not names:
        return None
    verdicts = [checks.get(n, (None, ""))[0] for n in names]
    if any(v is None for v in verdicts):
        return None
    return all(verdicts)


def records(grid) -> list[dict]:
    plan = grid.plan
    names = [c.name for c in grid.checks]
    renamed = input_column_names(plan.columns)
    rows = []
    for s in cell_states(grid):
        cell = s["cell"]
        row = {"prompt": plan.prompts[cell.prompt_index].label, "model": cell.model}
        values = plan.rows[cell.input_index]
        for col in plan.columns:
            row[renamed[col]] = values.get(col)
        row.update({
            "prompt_text": cell.prompt_text, "output": s["output"], "status": s["status"],
            "error": s["error"], "input_tokens": s["input_tokens"],
            "output_tokens": s["output_tokens"], "tokens": total_tokens(s), "cost": s["cost"],
            "latency": s["latency"], "cached": s["cached"]})
        for name in names:
            row[f"check:{name}"] = s["checks"].get(name, (None, ""))[0]
        row["checks_passed"] = _passed_all(s["checks"], names)
        failed = [f"{n}: {s['checks'][n][1]}" for n in names
                  if n in s["checks"] and s["checks"][n][0] is False]
        row["failed_checks"] = "; ".join(failed) or None
        row.update({"rating": s["thumb"], "score": s["score"], "comment": s["comment"],
                    "input_index": cell.input_index, "cell_key": cell.key, "call_id": s["call_id"]})
        rows.append(row)
    return rows


def frame(grid):
    import pandas as pd

    return pd.DataFrame(records(grid))


def summary_rows(grid) -> list[dict]:
    """One row per (prompt, model): the column summaries the widget shows, and ratings."""
    plan = grid.plan
    names = [c.name for c in grid.checks]
    snap = cell_states(grid)
    out = []
    for pi, p in enumerate(plan.prompts):
        for mi, model in enumerate(plan.models):
            cells = [s for s in snap if s["cell"].prompt_index == pi and s["cell"].model_index == mi]
            verdicts = [_passed_all(s["checks"], names) for s in cells]
            judged = [v for v in verdicts if v is not None]
            latencies = [s["latency"] for s in cells if s["status"] == "ok" and s["latency"] is not None]
            costs = [s["cost"] for s in cells if s["cost"] is not None]
            scores = [s["score"] for s in cells if s["score"] is not None]
            out.append({
                "prompt": p.label, "model": model, "cells": len(cells),
                "ok": sum(s["status"] == "ok" for s in cells),
                "errors": sum(s["status"] == "error" for s in cells),
                "passed": sum(judged) if names else None,
                "pass_rate": (sum(judged) / len(judged)) if judged else None,
                "mean_latency": (sum(latencies) / len(latencies)) if latencies else None,
                "total_cost": sum(costs) if costs else None,
                "unpriced": sum(1 for s in cells if s["status"] == "ok" and s["cost"] is None),
                "thumbs_up": sum(s["thumb"] == 1 for s in cells),
                "thumbs_down": sum(s["thumb"] == -1 for s in cells),
                "mean_score": (sum(scores) / len(scores)) if scores else None,
            })
    return out


# -- formats ------------------------------------------------------------------------------------

def render(grid, format: str) -> tuple[str, str, str]:
    """(content, mime type, file suffix) of the grid in `format`: csv, json or html."""
    fmt = str(format or "").lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, not {format!r}")
    mime, suffix = FORMATS[fmt]
    if fmt == "csv":
        from ..csv_export import frame_to_csv

        return frame_to_csv(frame(grid)), mime, suffix
    if fmt == "json":
        return to_json(grid), mime, suffix
    return to_html(grid), mime, suffix


def write(grid, path, format: str | None = None) -> Path:
    path = Path(path)
    fmt = format or path.suffix.lower().lstrip(".")
    if not fmt:
        raise ValueError(f"cannot tell the format of {str(path)!r}: name it .csv, .json or "
                         ".html, or pass format=")
    content, _, _ = render(grid, fmt)
    path.write_text(content, encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    """A JSON-safe value: NaN and NaT become null, numpy scalars Python ones."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, bool, float)):
        return value
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        return _plain(value.item())
    if hasattr(value, "isoformat"):
        try:
            return value.isoformat()
        except ValueError:  # NaT
            return None
    return str(value)


def to_json(grid) -> str:
    plan = grid.plan
    names = [c.name for c in grid.checks]
    cells = []
    for s in cell_states(grid):
        cell = s["cell"]
        cells.append({
            "index": cell.index, "prompt": plan.prompts[cell.prompt_index].label,
            "model": cell.model, "input_index": cell.input_index,
            "input": _plain(plan.rows[cell.input_index]), "prompt_text": cell.prompt_text,
            "output": s["output"], "status": s["status"], "error": s["error"],
            "error_kind": s["error_kind"], "input_tokens": s["input_tokens"],
            "output_tokens": s["output_tokens"], "tokens": total_tokens(s), "cost": s["cost"],
            "latency": s["latency"], "cached": s["cached"],
            "checks": {n: {"passed": s["checks"][n][0], "reason": s["checks"][n][1]}
                       for n in names if n in s["checks"]},
            "checks_passed": _passed_all(s["checks"], names),
            "rating": s["thumb"], "score": s["score"], "comment": s["comment"],
            "cell_key": cell.key, "call_id": s["call_id"]})
    doc = {
        "comparison": {
            "id": grid.id, "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "prompts": [{"label": p.label, "template": p.template, "system": p.system,
                         "ref": p.ref} for p in plan.prompts],
            "models": list(plan.models), "input_columns": list(plan.columns),
            "checks": [_plain(c.describe()) for c in grid.checks]},
        "summary": summary_rows(grid),
        "cells": cells,
    }
    return json.dumps(_plain(doc), ensure_ascii=False, indent=2, default=str)


# -- the HTML report ------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light dark; --fg: #1f2328; --muted: #656d76; --line: #d0d7de;
  --pass: #1a7f37; --fail: #cf222e; --bg2: #f6f8fa; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #8d96a0; --line: #30363d;
  --pass: #3fb950; --fail: #f85149; --bg2: #161b22; } }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  margin: 2rem auto; max-width: 1200px; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .meta, .metrics { color: var(--muted); font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: var(--bg2); } td.num { text-align: right; font-variant-numeric: tabular-nums; }
section.input { border-top: 2px solid var(--line); margin-top: 1.5rem; }
.cells { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 0.8rem; }
article { border: 1px solid var(--line); border-radius: 6px; padding: 0.6rem 0.8rem; overflow-wrap: anywhere; }
article.error { border-color: var(--fail); }
article h4 { margin: 0 0 0.4rem; font-size: 0.95em; }
.out pre { white-space: pre-wrap; background: var(--bg2); padding: 0.4rem; border-radius: 4px; }
.err { color: var(--fail); }
ul.checks { list-style: none; padding: 0; margin: 0.4rem 0; }
.pass { color: var(--pass); } .fail { color: var(--fail); } .wait { color: var(--muted); }
pre.tpl { white-space: pre-wrap; background: var(--bg2); padding: 0.4rem; border-radius: 4px; }
blockquote.comment { margin: 0.3rem 0; padding-left: 0.6rem; border-left: 3px solid var(--line); }
"""
# Nothing in the file may load or run anything: only inline styles are allowed.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: float | None, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "rate":
        return f"{value:.0%}"
    if kind == "s":
        return f"{value:.2f} s"
    if kind == "usd":
        return f"${value:.6f}".rstrip("0").rstrip(".") if value else "$0"
    return f"{value:.2f}"


def _mark(verdict) -> tuple[str, str]:
    if verdict is None:
        return "wait", "…"
    return ("pass", "✓") if verdict else ("fail", "✗")


def to_html(grid) -> str:
    from ..render import markdown_to_html

    plan = grid.plan
    names = [c.name for c in grid.checks]
    snap = cell_states(grid)
    out: list[str] = []
    add = out.append
    add("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
    add(f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">')
    add('<meta name="viewport" content="width=device-width, initial-scale=1">')
    add(f"<title>Comparison {_e(grid.id)}</title><style>{_CSS}</style></head><body>")
    n_inputs = len(plan.rows) if plan.has_inputs else 0
    add(f"<h1>Comparison report</h1><p class=\"meta\">{len(plan.prompts)} prompt(s) × "
        f"{len(plan.models)} model(s) × {n_inputs} input(s) = {len(snap)} cells · "
        f"comparison {_e(grid.id)} · exported {_e(time.strftime('%Y-%m-%d %H:%M'))}</p>")

    add("<h2>Summary</h2><table><thead><tr><th>Prompt</th><th>Model</th><th>OK</th>"
        "<th>Errors</th><th>Pass rate</th><th>Mean latency</th><th>Total cost</th>"
        "<th>👍</th><th>👎</th><th>Mean score</th></tr></thead><tbody>")
    for r in summary_rows(grid):
        passed = (f"{_num(r['pass_rate'], 'rate')} ({r['passed']}/{r['cells']})"
                  if r["pass_rate"] is not None else "—")
        add(f"<tr><td>{_e(short_label(r['prompt']))}</td><td>{_e(r['model'])}</td>"
            f"<td class=\"num\">{r['ok']}/{r['cells']}</td><td class=\"num\">{r['errors']}</td>"
            f"<td class=\"num\">{_e(passed)}</td>"
            f"<td class=\"num\">{_num(r['mean_latency'], 's')}</td>"
            f"<td class=\"num\">{_e(_num(r['total_cost'], 'usd'))}</td>"
            f"<td class=\"num\">{r['thumbs_up']}</td><td class=\"num\">{r['thumbs_down']}</td>"
            f"<td class=\"num\">{_num(r['mean_score'], '')}</td></tr>")
    add("</tbody></table>")

    add("<h2>Prompts</h2><ol>")
    for p in plan.prompts:
        system = f"<p class=\"meta\">System:</p><pre class=\"tpl\">{_e(p.system)}</pre>" if p.system else ""
        template = "" if p.template == short_label(p.label) else f"<pre class=\"tpl\">{_e(p.template)}</pre>"
        add(f"<li><strong>{_e(short_label(p.label))}</strong>{system}{template}</li>")
    add("</ol>")
    if grid.checks:
        add("<h2>Checks</h2><ul>")
        for c in grid.checks:
            add(f"<li>{_e(c.name)}</li>")
        add("</ul>")

    add("<h2>Results</h2>")
    for i, row in enumerate(plan.rows):
        add(f"<section class=\"input\"><h3>Input {i + 1}</h3>")
        if plan.columns:
            add("<table><tbody>")
            for col in plan.columns:
                add(f"<tr><th>{_e(col)}</th><td>{_e(row.get(col))}</td></tr>")
            add("</tbody></table>")
        add("<div class=\"cells\">")
        for s in snap:
            cell = s["cell"]
            if cell.input_index != i:
                continue
            label = (cell.model if len(plan.prompts) == 1
                     else f"{short_label(plan.prompts[cell.prompt_index].label)} · {cell.model}")
            add(f"<article class=\"{'error' if s['status'] == 'error' else 'ok'}\"><h4>{_e(label)}</h4>")
            if s["status"] == "ok":
                add(f"<div class=\"out\">{markdown_to_html(s['output'] or '')}</div>")
            elif s["status"] == "error":
                add(f"<p class=\"err\">Error ({_e(s['error_kind'])}): {_e(s['error'])}</p>")
            else:
                add("<p class=\"meta\">not finished</p>")
            if names:
                add("<ul class=\"checks\">")
                for n in names:
                    verdict, reason = s["checks"].get(n, (None, ""))
                    cls, mark = _mark(verdict)
                    add(f"<li class=\"{cls}\">{mark} {_e(n)}<span class=\"meta\"> — {_e(reason)}</span></li>")
                add("</ul>")
            metrics = [_num(s["latency"], "s") if s["latency"] is not None else None,
                       f"{total_tokens(s)} tokens" if total_tokens(s) is not None else None,
                       _num(s["cost"], "usd") if s["cost"] is not None else None,
                       "cached" if s["cached"] else None]
            add(f"<p class=\"metrics\">{_e(' · '.join(m for m in metrics if m))}</p>")
            rating = []
            if s["thumb"] == 1:
                rating.append("👍")
            elif s["thumb"] == -1:
                rating.append("👎")
            if s["score"] is not None:
                rating.append(f"score {s['score']:.2f}")
            if rating:
                add(f"<p class=\"rating\">{_e(' · '.join(rating))}</p>")
            if s["comment"]:
                add(f"<blockquote class=\"comment\">{_e(s['comment'])}</blockquote>")
            add("</article>")
        add("</div></section>")
    add("</body></html>\n")
    return "".join(out)


def short_label(text: str, n: int = 80) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= n else flat[:n - 1] + "…"
