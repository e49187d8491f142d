"""The reliability suites' books: every suite counts what it tried and what was kept.

A test calls `record(tried=..., kept=..., note=...)` (the suite is its module's SUITE); at the
end of the run one line per suite goes to the terminal summary and to
test-artifacts/reliability-summary.txt, with PASS or FAIL from the outcomes of the suite's
tests, so `.ci/test` can show it whatever else it prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

SUMMARY_FILE = os.path.join("test-artifacts", "reliability-summary.txt")


@dataclass
class SuiteBook:
    tried: int = 0
    kept: int = 0
    notes: list = field(default_factory=list)
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    def line(self, name: str) -> str:
        verdict = "FAIL" if self.failed else ("PASS" if self.passed else "SKIP")
        tests = f"{self.passed}/{self.passed + self.failed} tests"
        if self.skipped:
            tests += f", {self.skipped} skipped"
        notes = "; ".join(self.notes)
        return (f"{verdict} suite {name}: tried {self.tried:,}, kept {self.kept:,} ({tests})"
                + (f" — {notes}" if notes else ""))


_BOOKS: dict[str, SuiteBook] = {}


def _suite_of(item) -> str | None:
    module = getattr(item, "module", None)
    return getattr(module, "SUITE", None)


@pytest.fixture
def record(request):
    """`record(tried=n, kept=m, note="...")` adds to the suite's books (its module's SUITE)."""
    suite = _suite_of(request.node)
    assert suite, "a reliability test module must set SUITE = '<n> <name>'"

    def add(*, tried: int, kept: int, note: str = "") -> None:
        book = _BOOKS.setdefault(suite, SuiteBook())
        book.tried += int(tried)
        book.kept += int(kept)
        if note:
            book.notes.append(note)

    return add


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    suite = _suite_of(item)
    if suite is None:
        return
    book = _BOOKS.setdefault(suite, SuiteBook())
    if report.when == "call":
        if report.passed:
            book.passed += 1
        elif report.failed:
            book.failed += 1
        else:
            book.skipped += 1
    elif report.failed:            # a fixture failed: the test did not pass
        book.failed += 1
    elif report.skipped and report.when == "setup":
        book.skipped += 1


def _lines() -> list[str]:
    def order(name: str):
        head = name.split(" ", 1)[0]
        return (int(head) if head.isdigit() else 99, name)

    return [_BOOKS[name].line(name) for name in sorted(_BOOKS, key=order)]


def pytest_sessionfinish(session, exitstatus):
    if not _BOOKS:
        return
    path = os.path.join(str(session.config.rootpath), SUMMARY_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(_lines()) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _BOOKS:
        return
    terminalreporter.section("reliability suites")
    for line in _lines():
        terminalreporter.write_line(line)
