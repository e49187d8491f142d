"""Tests of the Jupyter server extension (REST handlers) under pytest-jupyter."""
