"""The reliability suites' books (books.py): the `record` fixture each test counts with, and the
hooks that write one line per suite to the terminal summary and to
test-artifacts/reliability-summary.txt, so `.ci/test` can show it whatever else it prints."""

from __future__ import annotations

from .books import (  # noqa: F401  (the fixture and the hooks, for pytest to find here)
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_terminal_summary,
    record,
)
