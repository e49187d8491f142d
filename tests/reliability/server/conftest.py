"""A real jupyter_server (pytest-jupyter) with llm_notebook's extension, reading the per-test
log the test's Session writes: the same fixtures as the server-extension tests, reused here.
pytest-jupyter's fixtures come in through that module, not globally: its autouse event-loop
fixture must not reach the other suites."""

from server_ext.conftest import *  # noqa: F401,F403  (jp_server_config, api, Reply, pytest-jupyter)
