"""Comparison grids: prompts × models × inputs side by side, with checks, ratings, diffs, export.

    grid = llm_notebook.compare(prompts, models, inputs, checks=[llm_notebook.checks.contains("x")])

grid.py: compare() and the ComparisonGrid widget; spec.py: prompts/models/inputs → cells;
run.py: cells through the batch engine; checks.py: the checks; export.py: DataFrame, CSV, JSON,
HTML report; store.py: the SQL (comparisons, ratings).

The package is `comparison`, not `compare`, so importing it never replaces the function
`llm_notebook.compare` with a module of the same name.
"""

from . import checks
from .grid import ComparisonGrid, compare

__all__ = ["ComparisonGrid", "checks", "compare"]
