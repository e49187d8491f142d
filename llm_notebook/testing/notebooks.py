"""Notebooks that travel: record a notebook's answers, save what a reader re-running it sees, and
check that it still shows that.

    python -m llm_notebook.testing.notebooks record NOTEBOOK...   # call, record, save
    python -m llm_notebook.testing.notebooks save NOTEBOOK...     # replay and save
    python -m llm_notebook.testing.notebooks check NOTEBOOK...    # replay and compare

Each run executes the notebook with nbclient as a headless runner does: a fresh kernel started in
the notebook's folder (where its recordings are, llm-recordings.jsonl), importing the same
llm_notebook as this process, with a fresh log of its own, no provider key, and no widget state
saved (nbconvert and GitHub then show each widget's snapshot, README "Widgets in shared
notebooks").

`record` runs it twice: in record mode (real calls, whose answers go to the recordings), then in
replay mode, whose outputs it saves: what anyone who re-runs the notebook without keys sees.
`save` only replays and saves (the answers stay; after a change in how outputs look).
`check` replays it and compares every cell's outputs with the saved ones. The comparison ignores
only what differs between two runs by nature (`SANITIZERS`: times, dates, random ids, temporary
folders, memory addresses), so a change that alters what the notebook shows fails it.

Not nbval: nbval 0.11 drops `update_display_data` messages ("unhandled iopub msg"), so it compares
the first frame of every output updated in place — a `%%llm` cell's "waiting for local/smollm2…"
line, a chat's snapshot before its question was asked — instead of what the notebook shows.
nbclient applies those updates to the saved outputs, as JupyterLab does on screen.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import sys
import tempfile
from pathlib import Path

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CELL_TIMEOUT = 600

# (pattern, replacement): what differs between two runs of the same notebook by nature.
SANITIZERS = [
    # times: footers ("· 0.3 s"), Response fields, latencies, ages
    (re.compile(r"\b\d+(?:\.\d+)? (s|ms)\b"), r"<time> \1"),
    (re.compile(r"\b(duration_ms|ttft_ms|elapsed|duration_s|latency)(['\"]?[=:] ?)[-\d.e+]+"),
     r"\1\2<time>"),
    # dates and timestamps
    (re.compile(r"\b\d{4}-\d{2}-\d{2}"
                r"(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[+-]\d{2}:\d{2}|Z)?)?"), "<date>"),
    (re.compile(r"\b1[6-9]\d{8}(?:\.\d+)?\b"), "<unix time>"),
    # random ids: uuids, conversation and session ids (32 hex), job ids (12), their prefixes (8);
    # one may be all digits (a job id is, once in 280), not all letters (words such as "deadbeef")
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<id>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),
    (re.compile(r"(?<![.\d])\b(?=[0-9a-f]*\d)[0-9a-f]{8,12}\b"), "<id>"),   # (not decimals)
    # temporary folders (tempfile.mkdtemp: a prefix and 8 random characters) and the ports of
    # servers the notebook starts
    (re.compile(r"[^\s'\"<>()]*/(?:tmp|[\w.-]*-)[a-z0-9_]{8}(?=[/'\"\s]|$)"), "<tmp>"),
    (re.compile(r"(127\.0\.0\.1|localhost):\d+"), r"\1:<port>"),
    # memory addresses in reprs
    (re.compile(r"\bat 0x[0-9a-f]+"), "at <address>"),
]


def sanitize(text: str) -> str:
    for pattern, replacement in SANITIZERS:
        text = pattern.sub(replacement, text)
    return text


def run(path: str | os.PathLike, mode: str, *, log_dir: str | os.PathLike | None = None,
        timeout: int = CELL_TIMEOUT):
    """The notebook at `path`, executed (in memory) with LLM_NOTEBOOK_REPLAY=`mode` as described
    above; returns the executed copy. A cell that fails raises nbclient's CellExecutionError."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path).resolve()
    nb = nbformat.read(str(path), as_version=4)
    with tempfile.TemporaryDirectory(prefix="llm-notebook-run-") as scratch:
        log_dir = Path(log_dir or scratch)
        client = NotebookClient(nb, timeout=timeout, kernel_name=_kernel(nb),
                                store_widget_state=False,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute(env=_kernel_env(mode, log_dir))
    return nb


def _kernel(nb) -> str:
    return nb.metadata.get("kernelspec", {}).get("name") or "python3"


def _kernel_env(mode: str, log_dir: Path) -> dict:
    import llm_notebook

    # No key, and nothing naming another notebook or recordings file than this one.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")
           and k not in ("JPY_SESSION_NAME", "LLM_NOTEBOOK_RECORDINGS")}
    package_root = str(Path(llm_notebook.__file__).resolve().parents[1])
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p),
        "LLM_NOTEBOOK_REPLAY": mode,
        "LLM_NOTEBOOK_LOG": str(log_dir / "log.db"),
        "IPYTHONDIR": str(log_dir / "ipython"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    })
    return env


def record(path: str | os.PathLike) -> None:
    """Record the notebook's calls, then save its outputs as replayed from the recordings."""
    run(path, "record")
    save(path)


def save(path: str | os.PathLike) -> None:
    """Save the notebook's outputs as replayed from its recordings."""
    import nbformat

    replayed = run(path, "replay")
    saved = nbformat.read(str(path), as_version=4)
    for cell, new in zip(saved.cells, replayed.cells):
        if cell.cell_type == "code":
            cell.outputs = new.outputs
            cell.execution_count = new.execution_count
    saved.metadata.pop("widgets", None)
    nbformat.write(saved, str(path))


def differences(saved, replayed) -> list[str]:
    """What the replayed notebook shows differently from the saved one, cell by cell (a unified
    diff of each cell's sanitized outputs); empty when they show the same."""
    out = []
    code = [(i, c) for i, c in enumerate(saved.cells) if c.cell_type == "code"]
    again = [c for c in replayed.cells if c.cell_type == "code"]
    for (index, cell), new in zip(code, again):
        before, after = shown(cell), shown(new)
        if before != after:
            diff = difflib.unified_diff(before.splitlines(), after.splitlines(), "saved",
                                        "replayed", lineterm="", n=2)
            first = cell.source.splitlines()[0] if cell.source else ""
            out.append(f"cell {index} ({first[:60]!r}):\n" + "\n".join(diff))
    return out


def shown(cell) -> str:
    """A code cell's outputs as compared: each output's kind and content by mime type (not the
    widget-view, whose model id is random), consecutive stream outputs joined, sanitized."""
    parts: list[str] = []
    last_stream = None
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            text = output.get("text", "")
            if last_stream == output.get("name"):
                parts[-1] += text
            else:
                parts.append(f"[{output.get('name')}]\n{text}")
            last_stream = output.get("name")
            continue
        last_stream = None
        if kind == "error":
            parts.append(f"[error] {output.get('ename')}: {output.get('evalue')}")
            continue
        data = output.get("data", {})
        for mime in sorted(data):
            if mime != WIDGET_VIEW:
                value = data[mime]
                value = value if isinstance(value, str) else "".join(value) \
                    if isinstance(value, list) else repr(value)
                parts.append(f"[{kind} {mime}]\n{value}")
    return sanitize("\n".join(parts))


def check(path: str | os.PathLike) -> list[str]:
    """Replay the notebook and return how what it shows differs from its saved outputs."""
    import nbformat

    saved = nbformat.read(str(path), as_version=4)
    return differences(saved, run(path, "replay"))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m llm_notebook.testing.notebooks",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("record", "save", "check"))
    parser.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    args = parser.parse_args(argv)
    failed = 0
    for notebook in args.notebooks:
        if args.command in ("record", "save"):
            (record if args.command == "record" else save)(notebook)
            print(f"{'recorded' if args.command == 'record' else 'saved'} {notebook}")
            continue
        found = check(notebook)
        failed += bool(found)
        print(f"{notebook}: " + ("shows what it was saved with" if not found
                                 else "differs from its saved outputs\n" + "\n".join(found)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
