"""Rows as the text a model judges: `column: value` lines, and numbered items of many rows.

A row's missing cells (None/NaN) are left out rather than failing the row: a semantic operator
judges what a row says, and an empty cell says nothing.
"""

from __future__ import annotations

import math

from ..errors import OperatorArgumentError


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not hasattr(value, "__len__") else False
    except (TypeError, ValueError):
        return False


def _columns(frame, columns) -> list:
    if columns is None:
        return list(frame.columns)
    names = [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise OperatorArgumentError(f"no column {missing[0]!r}; columns= names some of "
                                    f"{list(frame.columns)}")
    return names


def texts(frame, columns=None) -> list[str]:
    """Each row as `column: value` lines (one column: just its value)."""
    names = _columns(frame, columns)
    out = []
    single = len(names) == 1
    for values in frame[names].itertuples(index=False, name=None):
        if single:
            out.append("" if _missing(values[0]) else str(values[0]))
            continue
        out.append("\n".join(f"{name}: {value}" for name, value in zip(names, values)
                             if not _missing(value)))
    return out


def items(entries) -> str:
    """Several texts as one message: a `### NAME` line before each, so a model can name them."""
    return "\n\n".join(f"### {name}\n{text}" for name, text in entries)
