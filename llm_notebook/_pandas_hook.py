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

_registered = set()


def register_accessor() -> None:
    _register("pandas")


def _register(module: str) -> None:
    if module in _registered:
        return
    _registered.add(module)
    if module == "pandas":
        from .batch import accessor  # noqa: F401  (importing registers df.llm)
    else:
        from .cluster import accessor  # noqa: F401,F811  (registers ddf.llm; the [dask] extra)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Registers an accessor right after `module` is imported by someone, then leaves."""

    def __init__(self, module: str):
        self.module = module

    def find_spec(self, fullname, path, target=None):
        if fullname != self.module:
            return None
        sys.meta_path.remove(self)  # one shot; also avoids recursing into ourselves
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        original_exec = spec.loader.exec_module
        module = self.module

        def exec_then_register(loaded):
            original_exec(loaded)
            try:
                _register(module)
            except Exception:  # the accessor must never break the user's import
                pass

        spec.loader.exec_module = exec_then_register
        return spec


# dask.dataframe's `ddf.llm` (cluster/accessor.py) is registered the same way, when dask.dataframe
# loads: dask offers no entry point for accessors either.
_WATCHED = ("pandas", "dask.dataframe")


def install() -> None:
    for module in _WATCHED:
        if module in sys.modules:
            try:
                _register(module)
            except ImportError:
                pass
        elif not any(isinstance(f, _AfterImport) and f.module == module for f in sys.meta_path):
            sys.meta_path.insert(0, _AfterImport(module))


install()
