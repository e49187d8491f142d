# Shared fixtures: `loopback_server` (one loopback OpenAI-compatible server per session) and
# `loopback` (the same server, reset before each test).
pytest_plugins = ["llm_notebook.testing.fixtures"]

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
    import llm_notebook.session as session_module

    # No provider keys leak in from the machine: tests decide which keys exist.
    for var in list(os.environ):
        if var.endswith("_API_KEY"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(session_module, "_SESSION", None)
    s = session_module.session()
    s.config.log_path = log_path
    yield s
    session_module._SESSION = None


@pytest.fixture
def loop_session(nb_session, loopback):
    """A Session with the loopback server added as endpoint `loop` (lean HTTP path)."""
    nb_session.add_endpoint("loop", loopback.url)
    return nb_session
