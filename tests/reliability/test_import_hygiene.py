"""Suite 8 — import hygiene.

`import llm_notebook` and `%load_ext llm_notebook` in a fresh interpreter whose network is
blocked (every socket refused, including the local socketpair an event loop would open): no
socket is asked for, no thread is left running, and both together take ≤ 0.3 s (best of 3,
of up to 5 on a loaded machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from .helpers import REPO_ROOT

SUITE = "8 import hygiene"
BUDGET_S = 0.3

PROBE = textwrap.dedent("""
    import json, socket, sys, threading, time

    asked = []
    class BlockedSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            asked.append("socket" + repr(args))
            raise OSError("network blocked by the import-hygiene probe")
    def blocked(name):
        def refuse(*args, **kwargs):
            asked.append(name + repr(args)[:80])
            raise OSError("network blocked by the import-hygiene probe")
        return refuse
    socket.socket = BlockedSocket
    for name in ("create_connection", "getaddrinfo", "socketpair", "fromfd"):
        setattr(socket, name, blocked(name))

    # IPython's shell first (its own history thread off): what it costs is not ours.
    from traitlets.config import Config
    from IPython.core.interactiveshell import InteractiveShell
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    threads_before = {t.ident for t in threading.enumerate()}
    modules_before = set(sys.modules)

    started = time.perf_counter()
    import llm_notebook
    imported = time.perf_counter()
    shell.run_line_magic("load_ext", "llm_notebook")
    loaded = time.perf_counter()

    time.sleep(0.05)   # a thread started in the background would be running by now
    new_threads = [t.name for t in threading.enumerate() if t.ident not in threads_before]
    print(json.dumps({
        "import_s": imported - started,
        "load_ext_s": loaded - imported,
        "asked": asked,
        "threads": new_threads,
        "magics": sorted(shell.magics_manager.magics["cell"]),
        "heavy": sorted(m for m in ("litellm", "aiohttp", "llama_cpp", "anywidget", "ipywidgets",
                                    "openai", "httpx", "pandas", "asyncio")
                        if m in sys.modules and m not in modules_before),
    }))
""")


def probe(tmp_path) -> dict:
    env = dict(os.environ, LLM_NOTEBOOK_LOG=str(tmp_path / "log.db"),
               PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_and_load_ext_offline(tmp_path, record):
    runs = [probe(tmp_path) for _ in range(3)]
    # A slow run is another process's noise on a shared machine; a regression is slow in all.
    while min(r["import_s"] + r["load_ext_s"] for r in runs) > BUDGET_S and len(runs) < 5:
        runs.append(probe(tmp_path))
    best = min(runs, key=lambda r: r["import_s"] + r["load_ext_s"])
    total = best["import_s"] + best["load_ext_s"]
    log_opened = os.path.exists(tmp_path / "log.db")

    for i, r in enumerate(runs):
        record.check(f"run {i + 1}: no socket, no thread, no heavy module, %%llm registered",
                     not r["asked"] and not r["threads"] and not r["heavy"] and "llm" in r["magics"])
    record.check("no log file opened", not log_opened)
    record.check(f"import + %load_ext ≤ {BUDGET_S} s (best run)", total <= BUDGET_S)
    record.note(f"import {best['import_s'] * 1000:.0f} ms + %load_ext "
                f"{best['load_ext_s'] * 1000:.0f} ms (best of {len(runs)}); "
                f"{sum(len(r['asked']) for r in runs)} sockets asked for, "
                f"{sum(len(r['threads']) for r in runs)} threads left, "
                f"heavy modules: {sorted({m for r in runs for m in r['heavy']}) or 'none'}")

    for r in runs:
        assert r["asked"] == [], f"asked for a socket: {r['asked']}"
        assert r["threads"] == [], f"left threads running: {r['threads']}"
        assert "llm" in r["magics"]
        assert r["heavy"] == [], f"loaded {r['heavy']} eagerly"
    assert not log_opened, "the log was opened at import"
    assert total <= BUDGET_S, (f"import + %load_ext took {total:.3f} s (best of {len(runs)}), "
                               f"budget {BUDGET_S} s")
