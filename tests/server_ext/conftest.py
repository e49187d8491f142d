"""Fixtures of the server-extension tests: a real jupyter_server (pytest-jupyter) with
llm_notebook's extension enabled, reading a per-test log.

pytest-jupyter's fixtures are imported here rather than listed in the top-level
`pytest_plugins`: the plugin brings an autouse event-loop fixture and test-call hooks that
other tests must not get. Its server runs on `jp_asyncio_loop`, so the tests are plain
functions that drive requests on that loop (`api`), not pytest-asyncio coroutines.
"""

from __future__ import annotations

import json
import time

import pytest
from pytest_jupyter.jupyter_server import *
from traitlets.config import Config


@pytest.fixture
def jp_server_config(log_path):
    return Config({
        "ServerApp": {"jpserver_extensions": {"llm_notebook": True}},
        "LLMNotebook": {"log_path": log_path},
    })


class Reply:
    def __init__(self, response):
        self.code = response.code
        self.headers = response.headers
        raw = response.body or b""
        self.text = raw.decode("utf-8", errors="replace")
        try:
            self.json = json.loads(self.text) if self.text else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"<Reply {self.code} {self.text[:200]!r}>"


@pytest.fixture
def api(jp_fetch, jp_asyncio_loop):
    """`api("history", search="x")` → Reply (code, json) from /llm-notebook/api/history."""

    def call(path: str, _params: dict | None = None, **params) -> Reply:
        merged = {**(_params or {}), **params}
        response = jp_asyncio_loop.run_until_complete(
            jp_fetch("llm-notebook", "api", *path.split("/"), params=merged, raise_error=False))
        return Reply(response)

    return call


@pytest.fixture
def root_dir(jp_root_dir):
    return str(jp_root_dir)


@pytest.fixture
def log(log_path):
    from llm_notebook.log import Log

    log = Log(log_path)
    yield log
    log.close()


def call_row(**fields) -> dict:
    row = {"ts": time.time(), "model": "loop/alpha", "status": "ok", "prompt": "hello",
           "response": "Echo: hello", "input_tokens": 1, "output_tokens": 2, "cost": 0.001,
           "duration_ms": 120.0}
    row.update(fields)
    return row
