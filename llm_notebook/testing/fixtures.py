"""pytest plugin: a loopback OpenAI-compatible server shared by the whole test session, and
llama-cpp-python's server (a real third-party one) for the tests that ask for it.

Enable with ``pytest_plugins = ["llm_notebook.testing.fixtures"]`` in a top-level conftest.py.
"""

from __future__ import annotations

import pytest

from .loopback import LoopbackServer


@pytest.fixture(scope="session")
def loopback_server():
    """One server subprocess for the session (starting one costs ~0.5 s)."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def loopback(loopback_server: LoopbackServer):
    """The session's server, reset to its startup settings with no faults, stats or records."""
    if not loopback_server.running:  # a test stopped or killed it: bring it back
        loopback_server.start()
    loopback_server.reset()
    yield loopback_server


@pytest.fixture(scope="session")
def llama_server():
    """llama-cpp-python's OpenAI-compatible server serving the embedded SmolLM2 as `smollm2`."""
    from .llama_server import LlamaServer

    with LlamaServer() as server:
        yield server
