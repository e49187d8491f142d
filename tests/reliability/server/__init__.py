"""Reliability suites against a real jupyter_server with the llm_notebook extension."""
