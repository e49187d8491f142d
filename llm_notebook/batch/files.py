"""Tables from files: what the Batch widget reads an uploaded CSV, JSONL, Parquet or Excel file
with. Parsing happens here, in pandas (Parquet needs pyarrow, Excel openpyxl: the `files`
extra); the browser only sends the bytes. A file that cannot be read is one line that says why.
"""

from __future__ import annotations

import io
import os

from ..errors import UserError

READERS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".parquet": "parquet", ".pq": "parquet", ".xlsx": "excel", ".xlsm": "excel"}
_NEEDS = {"parquet": ("pyarrow", "Parquet"), "excel": ("openpyxl", "Excel")}


class FileReadError(UserError, ValueError):
    """An uploaded file that is not a table we can read."""


def kind_of(filename: str) -> str:
    kind = READERS.get(os.path.splitext(filename)[1].lower())
    if kind is None:
        raise FileReadError(f"{filename!r}: upload a .csv, .tsv, .jsonl, .parquet or .xlsx file")
    return kind


def read_table(filename: str, data: bytes):
    """The DataFrame in `data`, read as its file name says."""
    import pandas as pd

    kind = kind_of(filename)
    if kind in _NEEDS:
        module, name = _NEEDS[kind]
        try:
            __import__(module)
        except ImportError:
            raise FileReadError(f"reading {name} files needs {module}: pip install {module} (or "
                                f"llm-notebook[files]); CSV and JSONL need nothing more") from None
    buffer = io.BytesIO(data)
    try:
        if kind == "csv":
            frame = pd.read_csv(buffer)
        elif kind == "tsv":
            frame = pd.read_csv(buffer, sep="\t")
        elif kind == "jsonl":
            frame = pd.read_json(buffer, lines=True)
        elif kind == "parquet":
            frame = pd.read_parquet(buffer)
        else:
            frame = pd.read_excel(buffer)
    except Exception as exc:  # pandas and its engines raise many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileReadError(f"{filename!r} could not be read as {kind.upper()}: "
                            f"{first[:200]}") from None
    if not len(frame.columns):
        raise FileReadError(f"{filename!r} has no columns")
    frame.columns = [str(c) for c in frame.columns]
    return frame
