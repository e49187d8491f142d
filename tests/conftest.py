# Shared fixtures: `loopback_server` (one loopback OpenAI-compatible server per session) and
# `loopback` (the same server, reset before each test).
pytest_plugins = ["llm_notebook.testing.fixtures"]

import copy
import os

import pytest


@pytest.fixture
def log_path(tmp_path, monkeypatch):
    """A fresh log file per test, through the same env var users can set."""
    path = str(tmp_path / "log.db")
    monkeypatch.setenv("LLM_NOTEBOOK_LOG", path)
    return path


@pytest.fixture
def nb_session(log_path, monkeypatch):
    """A fresh kernel Session (the singleton reset) writing to a per-test log."""
    import llm_notebook
    from llm_notebook.session import reset_session

    # No provider keys leak in from the machine: tests decide which keys exist.
    for var in list(os.environ):
        if var.endswith("_API_KEY"):
            monkeypatch.delenv(var, raising=False)
    # Nor a replay mode: tests that record or replay say so (and where their recordings go).
    monkeypatch.delenv("LLM_NOTEBOOK_REPLAY", raising=False)
    monkeypatch.delenv("LLM_NOTEBOOK_RECORDINGS", raising=False)
    # Nor from a developer's .env in the working folder, nor from an earlier test's set_key.
    from llm_notebook import keys

    monkeypatch.setattr(keys, "_dotenv_loaded", True)
    monkeypatch.setattr(keys, "_memory", {})
    reset_session()
    s = llm_notebook.session()
    # Once a test has created IPython's shell, the config object is the shell's and outlives
    # this Session: put back every setting a test changes (deadline, cache, default_model...).
    saved_config = {name: getattr(s.config, name) for name in s.config.trait_names(config=True)}
    s.config.log_path = log_path
    yield s
    for name, value in saved_config.items():
        setattr(s.config, name, value)
    reset_session()


@pytest.fixture
def loop_session(nb_session, loopback):
    """A Session with the loopback server added as endpoint `loop` (lean HTTP path)."""
    nb_session.add_endpoint("loop", loopback.url)
    return nb_session


@pytest.fixture
def ipshell(nb_session):
    """IPython's InteractiveShell with `%load_ext llm_notebook` (the process-wide instance).

    The shell outlives the test, so the settings a test may change (LLMMagics, LLMNotebook via
    %config or %llm use) are put back afterwards, and `_llm` is removed.
    """
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "llm_notebook")
    # %config also writes into shell.config, which configurables created later start from.
    saved_config = copy.deepcopy(shell.config)
    saved = [(c, {name: getattr(c, name) for name in c.trait_names(config=True)})
             for c in shell.configurables
             if type(c).__name__ in ("LLMMagics", "LLMNotebook")]
    yield shell
    shell.config = saved_config
    for configurable, values in saved:
        for name, value in values.items():
            setattr(configurable, name, value)
    shell.user_ns.pop("_llm", None)
