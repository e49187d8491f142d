"""Fill `{name}` placeholders of a prompt from a namespace (the notebook's variables).

The syntax is `llm_notebook.placeholders`'; this module decides how a *value* becomes prompt text.
A DataFrame pasted whole would blow the context window (and the bill), so it becomes its shape,
its schema and a small, size-capped markdown sample. Everything else is `str(value)`.

pandas is never imported here: a value is recognised as a DataFrame/Series by its type's
module and name, so interpolating plain strings costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from . import placeholders

__all__ = ["describe_value", "frame_summary", "interpolate"]

DEFAULT_MAX_ROWS = 20
DEFAULT_MAX_CHARS = 4000
_MAX_CELL_CHARS = 80  # one long text cell must not eat the whole sample


def interpolate(text: str, namespace: Mapping[str, Any], *, hidden: Iterable[str] = (),
                max_rows: int = DEFAULT_MAX_ROWS, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Render `text`, taking `{name}` values from `namespace`.

    Raises placeholders.PlaceholderError (a ValueError) with a message that names the problem;
    names in `hidden` (IPython's own variables) are not suggested as alternatives.
    """
    template = placeholders.parse(text)
    if not template.placeholders:
        return template.render({})
    hidden = set(hidden)
    available = [k for k in namespace if isinstance(k, str) and not k.startswith("_")
                 and k not in hidden]

    def convert(source: str, value: Any) -> str:
        return describe_value(source, value, max_rows=max_rows, max_chars=max_chars)

    return template.render(namespace, convert=convert, available=available)


def describe_value(source: str, value: Any, *, max_rows: int = DEFAULT_MAX_ROWS,
                   max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Prompt text for one value; `source` is the placeholder's text, e.g. "df" or "Out[3]"."""
    if isinstance(value, str):
        return value
    kind = _pandas_kind(value)
    if kind == "DataFrame":
        return frame_summary(value, source, max_rows=max_rows, max_chars=max_chars)
    if kind == "Series":
        name = value.name if value.name is not None else source
        return frame_summary(value.to_frame(name=str(name)), source, max_rows=max_rows,
                             max_chars=max_chars)
    return str(value)


def _pandas_kind(value: Any) -> str | None:
    for cls in type(value).__mro__:
        # pandas 3 reports its public classes as module "pandas", older versions "pandas.core..."
        module = cls.__module__ or ""
        if (module == "pandas" or module.startswith("pandas.")) and cls.__name__ in ("DataFrame", "Series"):
            return cls.__name__
    return None


def frame_summary(frame, name: str, *, max_rows: int = DEFAULT_MAX_ROWS,
                  max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Shape, column dtypes and the first rows as a markdown table, in at most ~max_chars."""
    n_rows, n_cols = frame.shape
    lines = [f"DataFrame `{name}`: {n_rows:,} rows × {n_cols:,} columns"]
    schema = ", ".join(f"{_cell(col)} ({dtype})" for col, dtype in frame.dtypes.items())
    lines.append("Columns: " + _clip(schema, max_chars // 2))
    if n_rows == 0 or n_cols == 0:
        return "\n".join(lines)

    # A meaningful index (not 0..n-1) is data too: show it as the first column.
    show_index = not _is_default_index(frame.index)
    headers = ([_cell(frame.index.name or "index")] if show_index else []) + [_cell(c) for c in frame.columns]
    table = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    budget = max_chars - sum(len(line) + 1 for line in lines) - sum(len(t) + 1 for t in table) - 60
    shown = 0
    head = frame.head(max_rows)
    for position in range(len(head)):
        row = head.iloc[position]
        cells = ([_cell(head.index[position])] if show_index else []) + [_cell(v) for v in row.tolist()]
        line = "| " + " | ".join(cells) + " |"
        if len(line) + 1 > budget:
            break
        budget -= len(line) + 1
        table.append(line)
        shown += 1
    if shown == 0:
        lines.append("(rows too wide to show a sample)")
        return "\n".join(lines)
    lines.append(f"First {shown} of {n_rows:,} rows:" if shown < n_rows else "All rows:")
    return "\n".join(lines + table)


def _is_default_index(index) -> bool:
    return (type(index).__name__ == "RangeIndex" and index.start == 0 and index.step == 1
            and index.name is None)


def _cell(value: Any) -> str:
    text = str(value).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    return _clip(text, _MAX_CELL_CHARS)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"
