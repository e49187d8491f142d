"""Comparison grids: prompts × models × inputs side by side, with checks, ratings, diffs, export.

    grid = llm_notebook.compare(prompts, models, inputs, checks=[llm_notebook.checks.contains("x")])

grid.py: compare() and the ComparisonGrid widget; spec.py: prompts/models/inputs → cells;
run.py: cells through the batch engine; checks.py: the checks; export.py: DataFrame, CSV, JSON,
HTML report; store.py: the SQL (comparisons, ratings).
"""

import sys
import types

from . import checks
from .grid import ComparisonGrid, compare

__all__ = ["ComparisonGrid", "checks", "compare"]


class _CallableModule(types.ModuleType):
    """Importing this package sets the attribute `llm_notebook.compare` to the package itself,
    replacing the lazily exported function of the same name; so the package is callable too:
    `llm_notebook.compare(...)` is `compare(...)` whichever of the two it finds."""

    def __call__(self, *args, **kwargs):
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
