"""Registers the `df.llm` accessor without importing pandas.

pandas takes over a second to import here, far beyond the 0.3 s budget of `import llm_notebook`.
So: if pandas is already loaded we register now; otherwise a one-shot import hook registers the
accessor right after pandas finishes loading, whenever the user imports it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_registered = False


def register_accessor() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    from .batch import accessor  # noqa: F401  (importing registers df.llm)


class _AfterPandasLoads(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "pandas":
            return None
        sys.meta_path.remove(self)  # one shot; also avoids recursing into ourselves
        spec = importlib.util.find_spec("pandas")
        if spec is None or spec.loader is None:
            return spec
        original_exec = spec.loader.exec_module

        def exec_then_register(module):
            original_exec(module)
            try:
                register_accessor()
            except Exception:  # the accessor must never break `import pandas`
                pass

        spec.loader.exec_module = exec_then_register
        return spec


def install() -> None:
    if "pandas" in sys.modules:
        try:
            register_accessor()
        except ImportError:
            pass
    elif not any(isinstance(f, _AfterPandasLoads) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterPandasLoads())


install()
