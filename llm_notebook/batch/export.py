"""A job's rows as a table, and that table as a file: CSV, Parquet or JSONL.

One row per input row, in input order: the input's columns when this kernel ran the job (it
holds the DataFrame), the answer (or one column per field of a schema), the row's status (ok,
error or "not run") and its error. The same table is what the Batch widget downloads.

CSV goes through csv_export (no cell runs as a spreadsheet formula); Parquet needs pyarrow
(`pip install "llm-notebook[files]"`), which the error says.
"""

from __future__ import annotations

import io
import os

from ..errors import UserError
from . import store

FORMATS = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet",
           "jsonl": "application/jsonl"}
_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
               ".ndjson": "jsonl"}
NOT_RUN = "not run"


def job_frame(job):
    """The table of a Job (see the module docstring)."""
    import pandas as pd

    live = job._live
    if live is not None:
        run = live.run
        status = [s or NOT_RUN for s in run.status]
        errors = [run.errors[i][1] if i in run.errors else None for i in range(run.n)]
        result = live.shape(run) if live.ended.is_set() and live.error is None else None
        if isinstance(result, pd.Series):
            answers = result.rename("answer").reset_index(drop=True).to_frame()
        elif isinstance(result, pd.DataFrame):
            answers = result.reset_index(drop=True)
        else:
            answers = pd.DataFrame({"answer": pd.array(run.answers(), dtype="string")})
        frame = live.frame
        inputs = frame.reset_index(drop=True) if frame is not None and len(frame) == run.n else None
    else:
        info = job.info
        n = info["rows"]
        texts, status, errors, prompts = [None] * n, [NOT_RUN] * n, [None] * n, [None] * n
        for r in store.job_rows(job.session.log, job.id):
            i = r["row"]
            if not 0 <= i < n:
                continue
            status[i] = r["status"]
            prompts[i] = r["prompt"]
            if r["status"] == "ok":
                texts[i] = r["response"]
            else:
                errors[i] = r["error"]
        answers = pd.DataFrame({"answer": pd.array(texts, dtype="string")})
        inputs = pd.DataFrame({"prompt": pd.array(prompts, dtype="string")})
    table = pd.DataFrame({"status": status, "error": pd.array(errors, dtype="string")})
    parts = [inputs, answers, table] if inputs is not None else [answers, table]
    out = pd.concat(parts, axis=1)
    # Column names stay unique: an input column named like ours keeps its own name.
    seen: dict = {}
    names = []
    for name in out.columns:
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.append(name if not count else f"{name}_{count}")
    out.columns = names
    return out


def format_of(path: str, format: str | None) -> str:
    if format is not None:
        chosen = str(format).lower().lstrip(".")
    else:
        chosen = _EXTENSIONS.get(os.path.splitext(str(path))[1].lower(), "")
    if chosen not in FORMATS:
        raise UserError(f"cannot tell which file to write for {path!r}: name it .csv, .parquet "
                        "or .jsonl, or pass format='csv' / 'parquet' / 'jsonl'")
    return chosen


def to_bytes(frame, format: str) -> bytes:
    """`frame` as a file's bytes in `format` (csv, parquet or jsonl)."""
    if format == "csv":
        from ..csv_export import frame_to_csv

        return frame_to_csv(frame).encode("utf-8")
    if format == "jsonl":
        if not len(frame):
            return b""
        return frame.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8")
    if format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UserError("writing Parquet needs pyarrow: pip install pyarrow (or "
                            "llm-notebook[files]); CSV and JSONL need nothing more") from None
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise UserError(f"unknown format {format!r}: use csv, parquet or jsonl")


def write(frame, path: str, format: str | None = None) -> str:
    data = to_bytes(frame, format_of(path, format))
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)
