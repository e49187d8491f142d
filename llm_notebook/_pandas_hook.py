"""Registers the `df.llm` accessor without importing pandas.

`df.llm` must work whether the user imports pandas before or after llm_notebook, and pandas
offers no entry point for accessors (pandas 3.1), so the accessor is registered by running
`batch/accessor.py` once pandas is loaded. Importing pandas ourselves would cost every
`import llm_notebook` what pandas costs. Measured here (warm file cache, best of 3):
`import llm_notebook` 52-60 ms with this hook; importing pandas and the accessor eagerly
instead adds 280-300 ms (over a second on a cold start), beyond the package's 0.3 s import
budget (tests/test_import.py); registering after pandas has loaded costs nothing measurable.

So: if pandas is already loaded we register now; otherwise a one-shot finder on sys.meta_path
waits for `import pandas`, lets pandas load normally, registers the accessor right after, and
removes itself. It touches no other import.
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
