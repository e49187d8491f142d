"""Static snapshots of what each widget shows, for places where no kernel runs.

nbconvert's HTML, GitHub, nbviewer and a notebook reopened before its kernel starts cannot run a
widget: they show the output's `text/html` (or `text/plain`) instead. Each widget puts a snapshot
there (widgets/display.py keeps it current), and in its `snapshot` trait, which a notebook with
saved widget state hands to the front-end to draw read-only until a kernel answers.

One small function per widget builds a `Snapshot`: self-contained HTML (inline styles that read
on a light page and on a dark one, no scripts, no remote resources) and a plain-text transcript.
What is in it is the notebook's to share:

- LLM and user text goes through `render.markdown_to_html` (no raw HTML, http/https/mailto links
  only, no images) or is escaped; every text is redacted first, so no key reaches the file.
- It is deterministic given the same answers: no times, durations, rates, dates of the log or
  random ids (a replayed run saves the same snapshot).
- It has a size limit: long chats keep their latest messages, big grids their first cells.

Every element carries an `llmnb-snap-*` class: the front-end drops the inline styles of a
snapshot it reads from a notebook (untrusted) and styles those classes itself.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

__all__ = ["Snapshot", "batch_snapshot", "batch_form_snapshot", "chat_snapshot", "grid_snapshot", "picker_snapshot",
           "template_snapshot", "usage_snapshot"]

MAX_HTML_CHARS = 200_000      # a snapshot's HTML, whatever the widget holds
MAX_TEXT_CHARS = 4_000        # its text/plain transcript
MAX_MESSAGE_CHARS = 20_000    # one chat message or template text, before rendering
MAX_CELL_CHARS = 3_000        # one grid output, before rendering
MAX_GRID_CELLS = 120          # grid cells shown; the rest are counted
MAX_TABLE_ROWS = 12           # rows of the usage panel's cost-by-model table

MARKER = "data-llmnb-snapshot"  # js/lab finds snapshots in saved outputs by this attribute

# Inline styles, for viewers without our stylesheet. Colours are translucent greys that work on
# white and on black; text keeps the page's colour.
_STYLE = {
    "box": "font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; font-size: 13px; "
           "line-height: 1.45; color: inherit; border: 1px solid rgba(127,127,127,.35); "
           "border-radius: 6px; padding: 8px 12px; margin: 2px 0; max-width: 980px; "
           "overflow-wrap: anywhere;",
    "title": "font-weight: 600; margin: 0 0 6px;",
    "muted": "opacity: .7; font-size: 12px;",
    "note": "opacity: .7; font-size: 12px; font-style: italic; margin: 4px 0;",
    "msg": "margin: 8px 0; padding: 4px 10px; border-left: 3px solid rgba(127,127,127,.45);",
    "user": "margin: 8px 0; padding: 4px 10px; border-left: 3px solid rgba(127,127,127,.45); "
            "background: rgba(127,127,127,.08);",
    "role": "font-weight: 600; font-size: 12px;",
    "pre": "white-space: pre-wrap; margin: 4px 0; padding: 6px 8px; "
           "background: rgba(127,127,127,.08); border-radius: 4px; font-size: 12px;",
    "scroll": "overflow-x: auto;",
    "table": "border-collapse: collapse; margin: 4px 0;",
    "cell": "border: 1px solid rgba(127,127,127,.35); padding: 4px 8px; vertical-align: top; "
            "text-align: left; min-width: 120px;",
    "num": "border: 1px solid rgba(127,127,127,.35); padding: 4px 8px; text-align: right; "
           "font-variant-numeric: tabular-nums;",
    "error": "color: #cf222e;",
    "pass": "color: #1a7f37;",
    "fail": "color: #cf222e;",
}


class Snapshot(NamedTuple):
    """What a widget shows, as `text/html` and `text/plain`."""

    html: str
    text: str

    def bundle(self) -> dict[str, str]:
        return {"text/html": self.html, "text/plain": self.text} if self.html else {"text/plain": self.text}


# -- building blocks ---------------------------------------------------------------------------


def _clean(text: Any) -> str:
    """Text as it may be shared: a string, with every known or key-shaped secret masked."""
    from ..redact import redact

    return redact("" if text is None else str(text))


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n\n… ({len(text) - limit:,} more characters in the live widget)"


def _e(text: Any) -> str:
    return html.escape(_clean(text))


def _tag(name: str, part: str, content: str, *, style: str | None = None) -> str:
    css = _STYLE.get(style or part, "")
    style_attr = f' style="{css}"' if css else ""
    return f'<{name} class="llmnb-snap-{part}"{style_attr}>{content}</{name}>'


def _markdown(text: Any, limit: int) -> str:
    from ..render import markdown_to_html

    return _tag("div", "body", markdown_to_html(_cut(_clean(text), limit)), style="none")


def _pre(text: Any, limit: int = MAX_MESSAGE_CHARS) -> str:
    return _tag("div", "pre", html.escape(_cut(_clean(text), limit)))


def _frame(kind: str, title: str, parts: Iterable[str]) -> str:
    body = "".join(parts)
    return (f'<div class="llmnb-snapshot llmnb-snap-{kind}" {MARKER}="{kind}" '
            f'style="{_STYLE["box"]}">{_tag("div", "title", title)}{body}</div>')


def _plain(title: str, lines: Iterable[str]) -> str:
    text = "\n".join([title, *lines]).rstrip()
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS - 1] + "…"
    return text


def money(cost: float | None) -> str:
    """A cost the way the rest of llm-notebook writes it ($0.0012, $3.4e-06, $0)."""
    if cost is None:
        return ""
    return f"${cost:.4f}" if cost >= 0.0001 or cost == 0 else f"${cost:.2e}"


def call_footer(model: Any, input_tokens: Any, output_tokens: Any, cost: Any, *,
                unpriced: bool = False, cached: bool = False, status: str = "ok",
                replayed: bool = False) -> str:
    """model · tokens · cached (or replayed) · cost · status, without timings (they differ on
    every run)."""
    parts = [str(model or "")]
    if input_tokens is not None or output_tokens is not None:
        parts.append(f"{input_tokens or 0}+{output_tokens or 0} tokens")
    if cached:
        parts.append("cached")
    elif replayed:
        parts.append("replayed")
    if cost is not None:
        parts.append(money(cost))
    elif unpriced:
        parts.append("price unknown")
    if status and status != "ok":
        parts.append(status)
    return " · ".join(p for p in parts if p)


def _fit(blocks: Sequence[str], budget: int) -> tuple[list[str], int]:
    """The last blocks whose total length fits the budget (at least the last one), and how many
    were left out."""
    kept: list[str] = []
    used = 0
    for block in reversed(blocks):
        if kept and used + len(block) > budget:
            break
        kept.append(block)
        used += len(block)
    kept.reverse()
    return kept, len(blocks) - len(kept)


# -- one function per widget -------------------------------------------------------------------


def chat_snapshot(name: str | None, system: str | None, turns: Sequence[dict]) -> Snapshot:
    """The branch on screen of a Chat: each prompt and answer, with model, tokens and cost."""
    title = f"Chat · {_clean(name)}" if name else "Chat"
    head = [_tag("div", "muted", f"System: {_e(system)}")] if system else []
    blocks, lines = [], []
    for turn in turns:
        footer = call_footer(turn.get("model"), turn.get("input_tokens"), turn.get("output_tokens"),
                             turn.get("cost"), unpriced=bool(turn.get("unpriced")),
                             cached=bool(turn.get("cached")), status=turn.get("status") or "ok",
                             replayed=bool(turn.get("replayed")))
        branch = turn.get("branch") or {}
        if len(branch.get("ids") or ()) > 1:
            footer += f" · branch {branch['index'] + 1}/{len(branch['ids'])}"
        user = _tag("div", "user", _tag("div", "role", "You") + _markdown(turn.get("prompt"), MAX_MESSAGE_CHARS))
        answer = _tag("div", "msg", _tag("div", "role", "Assistant")
                      + _markdown(turn.get("response"), MAX_MESSAGE_CHARS)
                      + _tag("div", "muted", html.escape(_clean(footer))))
        blocks.append(user + answer)
        lines += ["", f"You: {_clean(turn.get('prompt'))}",
                  f"Assistant: {_clean(turn.get('response'))}", f"  [{_clean(footer)}]"]
    shown, hidden = _fit(blocks, MAX_HTML_CHARS - 2_000)
    if hidden:
        head.append(_tag("div", "note", f"{hidden} earlier message(s) are not shown here."))
    if not turns:
        head.append(_tag("div", "note", "No messages yet."))
    # The text keeps the end of the conversation too: that is where it is going.
    kept = _tail(lines, MAX_TEXT_CHARS - 200)
    count = f"{len(turns)} message(s)" if turns else "no messages yet"
    if len(kept) < len(lines):
        count += ", the latest shown"
    return Snapshot(_frame("chat", html.escape(title), head + shown), _plain(f"{title} — {count}", kept))


def _tail(lines: list[str], budget: int) -> list[str]:
    """The last lines that fit in `budget` characters (the last one cut if it alone is longer)."""
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        if used + len(line) + 1 > budget:
            if not kept:
                kept.append("…" + line[-(budget - 1):])
            break
        kept.append(line)
        used += len(line) + 1
    return list(reversed(kept))


def grid_snapshot(grid) -> Snapshot:
    """A ComparisonGrid: its prompts, then one row per input with every prompt × model answer,
    its checks, tokens, cost and rating."""
    from ..comparison import export

    plan = grid.plan
    states = export.cell_states(grid)
    check_names = [c.name for c in grid.checks]
    ok = sum(s["status"] == "ok" for s in states)
    errors = sum(s["status"] == "error" for s in states)
    costs = [s["cost"] for s in states if s["cost"] is not None]
    n_inputs = len(plan.rows) if plan.has_inputs else 0
    title = (f"Comparison · {len(plan.prompts)} prompt(s) × {len(plan.models)} model(s) × "
             f"{n_inputs} input(s)")
    total = f"total {money(sum(costs))}" if costs else "price unknown"
    status = f"{ok} ok · {errors} error(s) · {len(states) - ok - errors} pending · {total}"
    parts = [_tag("div", "muted", html.escape(status))]
    if len(plan.prompts) > 1 or plan.prompts[0].template != plan.prompts[0].label:
        parts.append(_tag("div", "muted", "Prompts: " + " · ".join(
            f"<strong>{_e(export.short_label(p.label))}</strong>" for p in plan.prompts)))
    columns = [(pi, mi) for pi in range(len(plan.prompts)) for mi in range(len(plan.models))]
    head = "".join(_tag("th", "cell", _e(_column_label(plan, pi, mi))) for pi, mi in columns)
    rows, lines, shown, size = [], [], 0, 0
    by_index = {s["cell"].index: s for s in states}
    for i, values in enumerate(plan.rows):
        if shown >= MAX_GRID_CELLS or size > MAX_HTML_CHARS:
            break
        label = "; ".join(f"{c}: {export.short_label(values.get(c), 60)}" for c in plan.columns) or "—"
        tds = []
        for pi, mi in columns:
            state = by_index[plan.index(i, pi, mi)]
            tds.append(_tag("td", "cell", _grid_cell(state, check_names)))
            lines.append(f"[{label} | {_column_label(plan, pi, mi)}] {_cell_line(state)}")
            shown += 1
        rows.append("<tr>" + _tag("th", "cell", _e(label)) + "".join(tds) + "</tr>")
        size += len(rows[-1])
    table = (f'<table class="llmnb-snap-table" style="{_STYLE["table"]}"><thead><tr>'
             f'{_tag("th", "cell", "Input")}{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    parts.append(_tag("div", "scroll", table))
    if shown < len(states):
        parts.append(_tag("div", "note", f"{len(states) - shown} more cell(s) are in the live grid "
                                          "and in grid.export()."))
    return Snapshot(_frame("grid", html.escape(title), parts), _plain(f"{title}\n{status}", lines))


def _column_label(plan, prompt_index: int, model_index: int) -> str:
    from ..comparison import export

    model = plan.models[model_index]
    if len(plan.prompts) == 1:
        return model
    return f"{export.short_label(plan.prompts[prompt_index].label, 40)} · {model}"


def _grid_cell(state: dict, check_names: list[str]) -> str:
    out = []
    if state["status"] == "ok":
        out.append(_markdown(state["output"], MAX_CELL_CHARS))
    elif state["status"] == "error":
        out.append(_tag("div", "error", f"Error: {_e(state['error'])}"))
    else:
        out.append(_tag("div", "note", "not finished"))
    for name in check_names:
        verdict, reason = state["checks"].get(name, (None, ""))
        mark, style = ("…", "muted") if verdict is None else (("✓", "pass") if verdict else ("✗", "fail"))
        out.append(_tag("div", style, f"{mark} {_e(name)}"
                        + (f" — {_e(reason)}" if reason and verdict is False else "")))
    metrics = call_footer("", state["input_tokens"], state["output_tokens"], state["cost"],
                          cached=state["cached"])
    rating = {1: "👍", -1: "👎"}.get(state["thumb"], "")
    if state["score"] is not None:
        rating = f"{rating} score {state['score']:.2f}".strip()
    footer = " · ".join(p for p in (metrics, rating) if p)
    if footer:
        out.append(_tag("div", "muted", html.escape(footer)))
    if state["comment"]:
        out.append(_tag("div", "note", _e(state["comment"])))
    return "".join(out)


def _cell_line(state: dict) -> str:
    if state["status"] == "ok":
        return " ".join(_clean(state["output"]).split())[:200]
    if state["status"] == "error":
        return f"error: {_clean(state['error'])}"
    return "not finished"


def usage_snapshot(summary: dict) -> Snapshot:
    """The UsagePanel's totals and cost by model (the charts' time axes are left out: their
    dates are the log's, not the notebook's)."""
    totals = summary.get("totals") or {}
    filters = summary.get("filters") or {}
    title = "LLM usage"
    shown_filters = [f"{k}: {_clean(v)}" for k, v in (("since", filters.get("since")),
                                                        ("until", filters.get("until")),
                                                        ("model", filters.get("model"))) if v]
    if filters.get("notebook") is not None:
        shown_filters.append(f"notebook: {_clean(filters['notebook']) or '(outside notebooks)'}")
    line = (f"{totals.get('calls', 0):,} calls · {totals.get('input_tokens', 0):,} input + "
            f"{totals.get('output_tokens', 0):,} output tokens · {money(totals.get('cost') or 0.0)}"
            f" · {totals.get('errors', 0):,} errors · {totals.get('cached', 0):,} cached")
    if totals.get("unpriced"):
        line += f" · {totals['unpriced']:,} unpriced"
    parts = [_tag("div", "muted", html.escape("Filters: " + ", ".join(shown_filters)))] if shown_filters else []
    parts.append(_tag("div", "totals", html.escape(line), style="none"))
    models = (summary.get("models") or [])[:MAX_TABLE_ROWS]
    lines = [line]
    if models:
        rows = "".join("<tr>" + _tag("td", "cell", _e(m)) + _tag("td", "num", f"{calls:,}")
                       + _tag("td", "num", html.escape(_model_cost(cost, unpriced, calls))) + "</tr>"
                       for m, calls, cost, unpriced in models)
        parts.append(f'<table class="llmnb-snap-table" style="{_STYLE["table"]}"><thead><tr>'
                     f'{_tag("th", "cell", "Model")}{_tag("th", "num", "Calls")}'
                     f'{_tag("th", "num", "Cost")}</tr></thead><tbody>{rows}</tbody></table>')
        lines += [f"  {_clean(m)}: {calls:,} calls, {_model_cost(cost, u, calls)}" for m, calls, cost, u in models]
    if summary.get("error"):
        parts.append(_tag("div", "error", _e(summary["error"])))
    return Snapshot(_frame("usage", title, parts), _plain(title, lines))


def _model_cost(cost: float, unpriced: int, calls: int) -> str:
    return "price unknown" if unpriced == calls and not cost else money(cost)


def template_snapshot(template: dict | None, models: Sequence[str], last_run: dict | None) -> Snapshot:
    """A TemplateEditor: the template as saved (name, version, system, prompt, variables) and the
    answers of its last run, one per model."""
    if template is None:
        title = "Prompt template · new (not saved yet)"
        parts, lines = [], []
    else:
        title = f"Prompt template · {_clean(template['name'])} v{template['version']}"
        meta = [f"variables: {', '.join(template.get('variables') or []) or 'none'}"]
        if template.get("message"):
            meta.append(f"“{_clean(template['message'])}”")
        parts = [_tag("div", "muted", _e(" · ".join(meta)))]
        if template.get("system"):
            parts += [_tag("div", "role", "System"), _pre(template["system"])]
        parts += [_tag("div", "role", "Prompt"), _pre(template.get("prompt"))]
        lines = [f"System: {_clean(template['system'])}"] if template.get("system") else []
        lines.append(f"Prompt: {_clean(template.get('prompt'))}")
    parts.append(_tag("div", "muted", _e("Models: " + (", ".join(models) or "none chosen"))))
    if last_run:
        parts.append(_tag("div", "role", "Last run"))
        for result in last_run.get("results") or []:
            footer = call_footer(result.get("model"), result.get("input_tokens"),
                                 result.get("output_tokens"), result.get("cost"),
                                 unpriced=bool(result.get("unpriced")), cached=bool(result.get("cached")))
            body = (_markdown(result.get("text"), MAX_MESSAGE_CHARS) if result.get("ok")
                    else _tag("div", "error", f"Error: {_e(result.get('error'))}"))
            parts.append(_tag("div", "msg", _tag("div", "role", _e(result.get("model"))) + body
                              + _tag("div", "muted", _e(footer))))
            answer = result.get("text") if result.get("ok") else f"error: {result.get('error')}"
            lines.append(f"{_clean(result.get('model'))}: {_clean(answer)}")
    return Snapshot(_frame("template", html.escape(title), parts), _plain(title, lines))


def picker_snapshot(value: str, default_model: str) -> Snapshot:
    """A ModelPicker: the chosen model, and the session's default."""
    chosen = _clean(value) or "none"
    note = "the session's default" if value and value == default_model else \
        f"session default: {_clean(default_model) or 'none'}"
    title = "Model picker"
    parts = [_tag("div", "totals", f"Chosen: <strong>{html.escape(chosen)}</strong>", style="none"),
             _tag("div", "muted", html.escape(note))]
    return Snapshot(_frame("picker", title, parts), f"{title}: {chosen} ({note})")


def batch_snapshot(line: str) -> Snapshot:
    """A batch run's progress: rows done, errors, cached, cost and status (no rate or ETA)."""
    title = "Batch run"
    return Snapshot(_frame("batch", title, [_tag("div", "totals", _e(line), style="none")]),
                    f"{title}: {_clean(line)}")


_MODE_NAMES = {"now": "run now", "background": "background job", "batch_api": "provider Batch API"}


def batch_form_snapshot(source: str, rows: int | None, prompt: str, model: str, mode: str,
                        line: str) -> Snapshot:
    """The Batch widget: its input, prompt, model, how it runs, and the last run's numbers."""
    title = "Batch"
    facts = [("Input", f"{_clean(source) or 'none'}" + (f" ({rows:,} rows)" if rows is not None else "")),
             ("Prompt", _clean(prompt) or "none"), ("Model", _clean(model) or "session default"),
             ("Run as", _MODE_NAMES.get(mode, _clean(mode)))]
    if line:
        facts.append(("Last run", _clean(line)))
    parts = [_tag("div", "fact", f"<strong>{_e(name)}:</strong> {_e(_cut(value, 2000))}",
                  style="none") for name, value in facts]
    lines = [f"{name}: {value}" for name, value in facts]
    return Snapshot(_frame("batch-form", title, parts), _plain(title, lines))


def workflow_snapshot(workflow: dict, last: dict | None) -> Snapshot:
    """A WorkflowBuilder: the workflow's steps (kind, name, prompt or function) and what its last
    preview or run did, step by step."""
    name = workflow.get("name") or "unnamed"
    version = f" v{workflow['version']}" if workflow.get("version") else " (not saved)"
    title = f"Workflow · {_clean(name)}{version}"
    parts, lines = [], []
    reports = {r["step"]: r for r in (last or {}).get("reports") or []}
    for number, step in enumerate(workflow.get("steps") or [], 1):
        what = step.get("prompt") or (f"template {step['template']}" if step.get("template")
                                      else f"function {step.get('function')}")
        head = f"{number}. {step['name']} ({step['kind']})"
        report = reports.get(step["name"])
        done = _report_line(report) if report else ""
        parts.append(_tag("div", "msg", _tag("div", "role", _e(head)) + _pre(what, 2_000)
                          + (_tag("div", "muted", _e(done)) if done else "")))
        lines.append(f"{head}: {_clean(what)}" + (f" [{done}]" if done else ""))
    if last:
        summary = (f"last {last['what']}: {last['rows_in']:,} rows in, {last['rows_out']:,} out")
        parts.append(_tag("div", "totals", _e(summary), style="none"))
        lines.append(summary)
    return Snapshot(_frame("workflow", html.escape(title), parts), _plain(title, lines))


def _report_line(report: dict) -> str:
    if report.get("status") == "skipped":
        return f"unchanged, skipped · {report.get('rows_out', 0):,} rows"
    if report.get("status") == "failed":
        return "failed"
    text = f"{report.get('rows_in', 0):,} rows → {report.get('rows_out', 0):,}"
    if report.get("job_id"):
        text += f" · {report.get('requests', 0):,} sent · {report.get('cached', 0):,} cached"
        if report.get("errors"):
            text += f" · {report.get('errors'):,} errors"
    return text
