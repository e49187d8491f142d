"""A preview: a workflow run on a few rows, with what each step added side by side.

    p = wf.preview(df, n=3)
    p                    # one table: the input columns the steps read, then each step's columns
    p.result             # the output of the last step on those rows
    p.outputs["classify"]   # the DataFrame after a step

A filter shows a `kept` column; rows it dropped have no values in later steps' columns.
"""

from __future__ import annotations

from .steps import output_columns

MAX_CELL_CHARS = 500           # a cell's text in the builder (the full value stays in .outputs)
MAX_CHANGED_COLUMNS = 6        # columns shown for a Python step


class WorkflowPreview:
    def __init__(self, sample, steps, frames, reports, reads):
        self.sample = sample
        self.steps = list(steps)
        self.outputs = {step.name: frame for step, frame in zip(steps, frames)}
        self.reports = list(reports)
        self.table = _side_by_side(sample, self.steps, list(frames), reads)

    @property
    def result(self):
        return list(self.outputs.values())[-1] if self.outputs else self.sample

    def to_dict(self) -> dict:
        """The table as text cells, for the builder widget."""
        import pandas as pd

        rows = []
        for label, values in self.table.iterrows():
            cells = [None if _missing(v) else _short(v) for v in values.tolist()]
            rows.append({"index": _short(label), "cells": cells, "dropped_at": _dropped_at(self, label)})
        return {"columns": [[str(a), str(b)] for a, b in self.table.columns],
                "rows": rows, "reports": [r.to_dict() for r in self.reports],
                "rows_in": len(self.sample), "rows_out": len(self.result)} \
            if isinstance(self.table, pd.DataFrame) else {}

    def _repr_html_(self) -> str:
        import html

        lines = "".join(f"<li>{html.escape(r.line())}</li>" for r in self.reports)
        table = self.table.to_html(na_rep="—", escape=True, max_rows=50)
        return f"<div><ul>{lines}</ul>{table}</div>"

    def __repr__(self) -> str:
        lines = "\n".join(r.line() for r in self.reports)
        return f"{lines}\n{self.table.to_string(max_rows=20, max_colwidth=40)}"


def _missing(value) -> bool:
    import pandas as pd

    if isinstance(value, (list, dict)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS - 1] + "…"


def _dropped_at(preview, label) -> str | None:
    for step in preview.steps:
        if step.kind == "filter" and label not in preview.outputs[step.name].index:
            return step.name
    return None


def _side_by_side(sample, steps, frames, reads):
    import pandas as pd

    columns: dict = {}
    for column in reads:
        if column in sample.columns:
            columns[("input", str(column))] = sample[column]
    before = sample
    for step, after in zip(steps, frames):
        if step.kind == "filter":
            alive = sample.index.isin(before.index)
            kept = pd.array([bool(k) if a else None
                             for a, k in zip(alive, sample.index.isin(after.index))], dtype="boolean")
            columns[(step.name, "kept")] = pd.Series(kept, index=sample.index)
        else:
            added = output_columns(step) if step.kind == "llm" else _changed(before, after)
            for column in added:
                try:
                    columns[(step.name, str(column))] = after[column].reindex(sample.index)
                except (ValueError, KeyError):   # a Python step that changed the index
                    continue
        before = after
    table = pd.DataFrame(columns, index=sample.index)
    table.columns = pd.MultiIndex.from_tuples(list(columns), names=["step", "column"]) \
        if columns else table.columns
    return table


def _changed(before, after) -> list:
    """Columns a Python step added or changed (at most MAX_CHANGED_COLUMNS)."""
    out = []
    for column in after.columns:
        if column not in before.columns:
            out.append(column)
        else:
            try:
                same = after[column].reindex(before.index).equals(before[column])
            except (ValueError, TypeError):
                same = False
            if not same:
                out.append(column)
        if len(out) == MAX_CHANGED_COLUMNS:
            break
    return out
