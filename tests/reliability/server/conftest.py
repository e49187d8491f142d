"""A real jupyter_server (pytest-jupyter) with llm_notebook's extension, reading the per-test
log the test's Session writes. pytest-jupyter's fixtures are imported here, not globally: its
autouse event-loop fixture must not reach the other suites (see tests/server_ext/conftest.py,
which this mirrors)."""

from __future__ import annotations

import json

import pytest
from traitlets.config import Config

from pytest_jupyter.jupyter_server import *  # noqa: F401,F403


@pytest.fixture
def jp_server_config(log_path):
    return Config({
        "ServerApp": {"jpserver_extensions": {"llm_notebook": True}},
        "LLMNotebook": {"log_path": log_path},
    })


class Reply:
    def __init__(self, response):
        self.code = response.code
        self.text = (response.body or b"").decode("utf-8", errors="replace")
        try:
            self.json = json.loads(self.text) if self.text else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"<Reply {self.code} {self.text[:200]!r}>"


@pytest.fixture
def api(jp_fetch, jp_asyncio_loop):
    """`api("history", search="x")` → Reply from /llm-notebook/api/history (never raises)."""

    def call(path: str, _params: dict | None = None, **params) -> Reply:
        merged = {**(_params or {}), **params}
        response = jp_asyncio_loop.run_until_complete(
            jp_fetch("llm-notebook", "api", *path.split("/"), params=merged, raise_error=False))
        return Reply(response)

    return call
