"""Test helpers shipped with llm_notebook: the loopback OpenAI-compatible server.

The pytest fixtures live in `llm_notebook.testing.fixtures` (a pytest plugin), kept apart so
that importing this package never needs pytest.
"""

__all__ = ["LoopbackError", "LoopbackServer"]


def __getattr__(name: str):
    # Lazy, so `python -m llm_notebook.testing.loopback` does not import the module twice
    # (once here, once as __main__) and `import llm_notebook.testing` stays free of aiohttp.
    if name in __all__:
        from . import loopback

        return getattr(loopback, name)
    raise AttributeError(f"module 'llm_notebook.testing' has no attribute {name!r}")
