"""`import llm_notebook` is cheap: ≤ 0.3 s, no litellm or pandas, no thread, no socket, no file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import llm_notebook

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(llm_notebook.__file__)))
BUDGET_S = 0.3

PROBE = textwrap.dedent("""
    import json, os, socket, sys, threading, time

    connects = []
    for name in ("connect", "connect_ex"):
        original = getattr(socket.socket, name)
        def spy(self, *args, _original=original, **kwargs):
            connects.append(repr(args))
            return _original(self, *args, **kwargs)
        setattr(socket.socket, name, spy)
    threads_before = threading.active_count()

    started = time.perf_counter()
    import llm_notebook
    elapsed = time.perf_counter() - started

    print(json.dumps({
        "elapsed": elapsed,
        "heavy": sorted(m for m in ("litellm", "pandas", "numpy", "ipywidgets", "anywidget",
                                    "llama_cpp", "aiohttp", "openai", "httpx") if m in sys.modules),
        "threads": threading.active_count() - threads_before,
        "connects": connects,
        "log_exists": os.path.exists(os.environ["LLM_NOTEBOOK_LOG"]),
        "cost_map": os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP"),
        "session_callable": callable(llm_notebook.session),
    }))
""")


def probe(tmp_path, **env) -> dict:
    full_env = dict(os.environ, LLM_NOTEBOOK_LOG=str(tmp_path / "log.db"),
                    PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)   # as on a fresh machine
    full_env.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=full_env, capture_output=True,
                         text=True, timeout=60, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_is_fast_and_light(tmp_path):
    # Best of three (five when the first three are slow): the machine is shared, and a slow
    # run is another process's noise, not a regression. A real regression fails every run.
    runs = [probe(tmp_path) for _ in range(3)]
    while min(r["elapsed"] for r in runs) > BUDGET_S and len(runs) < 5:
        runs.append(probe(tmp_path))
    best = min(r["elapsed"] for r in runs)
    assert best <= BUDGET_S, (f"import llm_notebook took {best:.3f} s (best of {len(runs)}), "
                              f"budget {BUDGET_S} s")
    for r in runs:
        assert r["heavy"] == [], f"import llm_notebook loaded {r['heavy']}"
        assert r["threads"] == 0
        assert r["connects"] == []
        assert r["log_exists"] is False           # the log opens on first use, not at import
        assert r["session_callable"] is True


def test_import_pins_litellm_to_the_offline_price_map(tmp_path):
    assert probe(tmp_path)["cost_map"] == "True"
    # A user's own choice is left alone.
    assert probe(tmp_path, LITELLM_LOCAL_MODEL_COST_MAP="False")["cost_map"] == "False"
