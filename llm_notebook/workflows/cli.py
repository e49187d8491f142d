"""`python -m llm_notebook run WORKFLOW --input data.csv --output out.parquet`: a saved workflow
outside a notebook (cron, CI, a terminal), with progress on stderr and an exit status.

WORKFLOW is a saved workflow's name (`tickets`, `tickets@2`) in the log, or a workflow file
(.yaml/.json, as `session.workflows.export` writes; read with the import's limits). Python steps
run only functions the user registered: `--functions my_steps.py` imports the user's own file
(which may also configure the session: endpoints, aliases, keys from a keyring).

Exit status: 0 done; 1 an error (one line on stderr, nothing written); 2 bad arguments;
3 done with rows that got no answer (written, those cells empty; run again to retry them);
130 interrupted (Ctrl-C stops within 2 s; what finished is logged and cached, so running the same
command again sends only the rest).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import UserError

READERS = {".csv": "csv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FAILED_ROWS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llm_notebook run",
        description="Run a saved workflow (or a workflow file) over a data file.")
    p.add_argument("workflow", help="a saved workflow's name (NAME or NAME@VERSION), or a "
                                    ".yaml/.json workflow file")
    p.add_argument("--input", "-i", required=True, help="data file: .csv, .jsonl, .json or .parquet")
    p.add_argument("--output", "-o", required=True,
                   help="where to write the result: .csv, .jsonl, .json or .parquet")
    p.add_argument("--name", help="the workflow to run when the file holds several")
    p.add_argument("--functions", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="your Python file (or module) registering the workflow's functions; "
                        "may be given several times")
    p.add_argument("--endpoint", action="append", default=[], metavar="NAME=URL",
                   help="an OpenAI-compatible server for models named NAME/<model>")
    p.add_argument("--model", help="model for steps that name none")
    p.add_argument("--log", help="the log file (default: $LLM_NOTEBOOK_LOG or the user data dir)")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--rpm", type=float, help="requests per minute to stay under")
    p.add_argument("--tpm", type=float, help="tokens per minute to stay under")
    p.add_argument("--budget", type=float, help="USD the whole run may spend")
    p.add_argument("--no-cache", action="store_true",
                   help="run every step and row again (answers are still logged)")
    p.add_argument("--limit", type=int, help="only the first N rows (a trial run)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress, only errors")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.monotonic()
    try:
        out = _run(args)
    except KeyboardInterrupt as exc:
        _say(f"interrupted: {exc}" if str(exc) else "interrupted")
        return EXIT_INTERRUPTED
    except (UserError, OSError, ValueError) as exc:
        _say(f"error: {_one_line(exc)}")
        return EXIT_ERROR
    info = out.attrs["workflow"]
    steps = info["steps"]
    failed = sum(s["errors"] for s in steps)
    if not args.quiet:
        sent = sum(s["requests"] for s in steps)
        cached = sum(s["cached"] for s in steps)
        _say(f"wrote {len(out):,} of {info['rows_in']:,} rows to {args.output} in "
             f"{time.monotonic() - started:.1f} s ({sent:,} requests sent, {cached:,} cached, "
             f"{sum(s['status'] == 'skipped' for s in steps)} of {len(steps)} steps unchanged)")
    if failed:
        _say(f"{failed:,} rows got no answer (their cells are empty); run the same command "
             "again to retry them, or see session.jobs() for the errors")
        return EXIT_FAILED_ROWS
    return EXIT_OK


def _run(args):
    from ..session import session as default_session
    from . import functions

    s = default_session()
    if args.log:
        s.config.log_path = args.log
    for spec in args.endpoint:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"--endpoint takes NAME=URL, e.g. lab=http://localhost:8000/v1; got {spec!r}")
        s.add_endpoint(name, url)
    for source in args.functions:
        functions.load(source)
    workflow = _workflow(s, args.workflow, args.name)
    frame = read_frame(Path(args.input))
    if args.limit is not None:
        frame = frame.head(args.limit)
    _check_output(Path(args.output))
    settings = {k: v for k, v in {"model": args.model, "concurrency": args.concurrency,
                                  "rpm": args.rpm, "tpm": args.tpm,
                                  "budget": args.budget}.items() if v is not None}
    if args.no_cache:
        settings["cache"] = False
    out = workflow.run(frame, session=s, progress=False if args.quiet else "text", **settings)
    write_frame(out, Path(args.output))
    return out


def _workflow(session, ref: str, name: str | None):
    from .errors import WorkflowError

    path = Path(ref)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        from . import files

        found = files.read(path)
        if name is not None:
            found = [wf for wf in found if wf.name == name]
            if not found:
                raise WorkflowError(f"{ref} holds no workflow named '{name}'")
        names = sorted({wf.name for wf in found})
        if len(names) > 1:
            raise WorkflowError(f"{ref} holds several workflows ({', '.join(names)}); "
                                "choose one with --name")
        return found[-1]               # an export of every version: its last is the latest
    return session.workflows.get(ref)


def read_frame(path: Path):
    import pandas as pd

    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: input files are {', '.join(READERS)}")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if kind == "csv":
        return pd.read_csv(path)
    if kind == "jsonl":
        return pd.read_json(path, lines=True)
    if kind == "json":
        return pd.read_json(path)
    return pd.read_parquet(path)


def _check_output(path: Path) -> None:
    if path.suffix.lower() not in READERS:
        raise ValueError(f"{path}: output files are {', '.join(READERS)}")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: the folder {path.parent} does not exist")


def write_frame(frame, path: Path) -> None:
    """Write atomically (a reader, or the next cron run, never sees half a file)."""
    import os
    import tempfile

    kind = READERS[path.suffix.lower()]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if kind == "csv":
            from ..csv_export import frame_to_csv

            Path(tmp).write_text(frame_to_csv(frame), encoding="utf-8")
        elif kind == "jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        elif kind == "json":
            frame.to_json(tmp, orient="records", force_ascii=False, indent=1)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _one_line(exc: BaseException) -> str:
    from ..redact import redact

    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(text)


def _say(line: str) -> None:
    print(f"llm-notebook: {line}", file=sys.stderr, flush=True)
