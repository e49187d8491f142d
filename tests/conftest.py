# Shared fixtures: `loopback_server` (one loopback OpenAI-compatible server per session) and
# `loopback` (the same server, reset before each test).
pytest_plugins = ["llm_notebook.testing.fixtures"]
