"""CSV files a spreadsheet opens as data, never as formulas.

Exported cells hold LLM output, prompts and model names: text from elsewhere. Excel, LibreOffice
and Google Sheets run a cell that starts with `=`, `+`, `-` or `@` as a formula (a tab or a
carriage return in front does not stop them), which can fetch URLs or run commands ("CSV
injection"). Such a cell gets a leading apostrophe, which spreadsheets show as text and hide.
Numbers stay numbers: only text cells (and column names) are touched. A carriage return inside
a cell becomes a line feed: the CSV writer quotes a cell only around line feeds, and an
unquoted CR would end the row early in a spreadsheet (and start the next one with anything).
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: Any) -> Any:
    """A text cell as a spreadsheet must read it: as text."""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS):
        value = "'" + value
    return value.replace("\r\n", "\n").replace("\r", "\n") if "\r" in value else value


def frame_to_csv(frame) -> str:
    """`frame.to_csv(index=False)` with every text cell and column name neutralized."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype.kind not in "biufcmM":  # not bool, number or date: may hold text
            safe[column] = safe[column].map(neutralize)
    safe.columns = [neutralize(str(c)) if isinstance(c, str) else c for c in safe.columns]
    return safe.to_csv(index=False)
