"""A notebook that uses every face of llm-notebook, executed headless with nbclient against the
loopback server: what the export and reopen tests read without a kernel.

Its answers are chosen by `[[reply:...]]` markers, and one of them is hostile (a script, an
image with onerror, a javascript: link, a remote image), so every reader also checks that a
shared notebook runs and loads nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat

from . import helpers

HOSTILE_ANSWER = ("**Paris** is the capital. <img src=http://192.0.2.1/beacon.png "
                  "onerror=window.__pwned=1> <script>window.__pwned=2</script> "
                  "[more](javascript:window.__pwned=3) ![map](http://192.0.2.1/map.png)")

# What a reader must see, by widget.
EXPECTED = {
    "magic": "Bonjour from the magic cell",
    "ask": "Hello from session ask",
    "chat_prompt": "What is the capital of France?",
    "chat_answer": "Paris is the capital.",
    "grid_answers": ["The capital is Paris", "The capital is Lima"],
    "batch": "2/2 rows",
    "usage": "calls",
    "template": "Greet {name} warmly",
    "picker": "loop/m",
}


def cells(loopback_url: str) -> list[str]:
    return [
        "%load_ext llm_notebook\n"
        "import pandas as pd\n"
        "import llm_notebook\n"
        "s = llm_notebook.session()\n"
        f"s.add_endpoint('loop', {loopback_url!r})",
        "%%llm -m loop/m\nSay hello [[reply:Bonjour from the magic cell]]",
        "s.ask('Hi [[reply:Hello from session ask]]', model='loop/m')",
        "chat = llm_notebook.Chat(model='loop/m', name='travelling')\nchat",
        f"r = chat.ask('What is the capital of France? [[reply:{HOSTILE_ANSWER}]]')",
        "df = pd.DataFrame({'city': ['Paris', 'Lima']})\n"
        "out = df.llm.map('Country of {city}? [[reply:the country of {city}]]', model='loop/m')\n"
        "out",
        "grid = llm_notebook.compare('Capital of {country}? [[reply:The capital is {expected}]]',\n"
        "                            ['loop/a', 'loop/b'],\n"
        "                            inputs=[{'country': 'France', 'expected': 'Paris'},\n"
        "                                    {'country': 'Peru', 'expected': 'Lima'}]).wait()\n"
        "grid",
        "llm_notebook.UsagePanel()",
        "s.templates.save('greet', 'Greet {name} warmly')\n"
        "llm_notebook.TemplateEditor('greet', models=['loop/m'])",
        "llm_notebook.ModelPicker(value='loop/m')",
    ]


def execute(path: Path, loopback_url: str, *, store_widget_state: bool, monkeypatch,
            replay: str = "off", log_dir: Path | None = None) -> Path:
    """Writes the notebook to `path` and runs it with nbclient in a kernel that imports this
    checkout; returns `path` (now with outputs)."""
    write(path, loopback_url)
    return run(path, store_widget_state=store_widget_state, monkeypatch=monkeypatch,
               replay=replay, log_dir=log_dir)


def write(path: Path, loopback_url: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells(loopback_url)]
    nbformat.write(nb, str(path))
    return path


def run(path: Path, *, store_widget_state: bool, monkeypatch, replay: str = "off",
        log_dir: Path | None = None) -> Path:
    """Runs the notebook at `path` in place with nbclient, as a headless runner does: in a
    kernel started in the notebook's folder, which is told nothing about the notebook, with
    LLM_NOTEBOOK_REPLAY=`replay`, no provider key, and its log (and IPython's folder) in
    `log_dir` (default: the notebook's folder)."""
    from nbclient import NotebookClient

    work = path.parent
    log_dir = log_dir or work
    log_dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(helpers.REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("LLM_NOTEBOOK_LOG", str(log_dir / "llm-log.db"))
    monkeypatch.setenv("LLM_NOTEBOOK_REPLAY", replay)
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("IPYTHONDIR", str(log_dir / "ipython"))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    for var in list(os.environ):
        if var.endswith("_API_KEY"):
            monkeypatch.delenv(var)
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=180, kernel_name="python3",
                            store_widget_state=store_widget_state,
                            resources={"metadata": {"path": str(work)}})
    client.execute()
    nbformat.write(nb, str(path))
    return path


def record_and_replay(work: Path, monkeypatch) -> tuple[Path, Path, dict]:
    """The notebook recorded against a loopback server of its own in `work/author/`, that folder
    copied to `work/colleague/`, the server stopped, and the copy run again in replay mode with
    a fresh log. Returns both notebooks and what the server saw."""
    import shutil

    from llm_notebook.testing import LoopbackServer

    author, colleague = work / "author", work / "colleague"
    author.mkdir()
    with LoopbackServer() as server:
        recorded = execute(author / "travelling.ipynb", server.url, store_widget_state=False,
                           monkeypatch=monkeypatch, replay="record", log_dir=work / "author-log")
        seen = server.stats()
    shutil.copytree(author, colleague)
    replayed = run(colleague / "travelling.ipynb", store_widget_state=False,
                   monkeypatch=monkeypatch, replay="replay", log_dir=work / "colleague-log")
    return recorded, replayed, seen


def nbconvert_html(path: Path) -> Path:
    import subprocess

    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(path)],
                   check=True, capture_output=True, timeout=180)
    return path.with_suffix(".html")
