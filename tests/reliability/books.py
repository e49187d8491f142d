"""The reliability suites' books: what each test tried and what was kept, counted as observed.

A test asks for the `record` fixture (a `Tally` for its module's SUITE) and counts *while it
observes*, before it asserts anything, so a test that fails still shows what it lost:

    with record.trial("stall, ask"):          # tried +1; kept +1 if the block ends cleanly
        ...
    record.check("row 3 logged", ok)          # tried +1; kept +1 if ok
    record.count(tried=len(prompts), kept=len(answered), what="rows")
    record.note(f"{refused} of {len(requests)} requests answered 429")

Everything counted goes into the suite's book at once. At the end one line per suite goes to
the terminal summary and to test-artifacts/reliability-summary.txt:

    FAIL suite 2 deadlines: tried 58, kept 56 (11/12 tests) — lost: 2 rows; ... — notes

A test that asks for `record` and passes without counting anything fails at teardown (its
figures would be missing from the line); one that fails before counting is named in the line.

The hooks and the fixture are wired in by conftest.py; this module is also a pytest plugin
(`-p reliability.books`), which is how tests/reliability/test_books.py runs it on its own.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import pytest

SUMMARY_FILE = os.path.join("test-artifacts", "reliability-summary.txt")
# How many lost items a line names before it says "+N more".
LOST_SHOWN = 5

_ORDER = {"passed": 0, "skipped": 1, "failed": 2}


@dataclass
class SuiteBook:
    tried: int = 0
    kept: int = 0
    notes: list = field(default_factory=list)
    lost: list = field(default_factory=list)
    outcomes: dict = field(default_factory=dict)      # test id -> passed / failed / skipped
    uncounted: list = field(default_factory=list)     # failed tests that counted nothing

    def outcome(self, test: str, outcome: str) -> None:
        """A phase's outcome; a test's worst phase is its outcome (a failed teardown fails it)."""
        if _ORDER[outcome] >= _ORDER.get(self.outcomes.get(test), -1):
            self.outcomes[test] = outcome

    def line(self, name: str) -> str:
        results = list(self.outcomes.values())
        passed, failed, skipped = (results.count(o) for o in ("passed", "failed", "skipped"))
        verdict = "FAIL" if failed else ("PASS" if passed else "SKIP")
        tests = f"{passed}/{passed + failed} tests"
        if skipped:
            tests += f", {skipped} skipped"
        if self.uncounted:
            tests += f", {len(self.uncounted)} failed before counting: {', '.join(self.uncounted)}"
        parts = [f"{verdict} suite {name}: tried {self.tried:,}, kept {self.kept:,} ({tests})"]
        if self.lost:
            shown = "; ".join(self.lost[:LOST_SHOWN])
            more = len(self.lost) - LOST_SHOWN
            parts.append("lost: " + shown + (f" (+{more} more)" if more > 0 else ""))
        if self.notes:
            parts.append("; ".join(self.notes))
        return " — ".join(parts)


class Tally:
    """One test's counts, written into its suite's book as they are made."""

    def __init__(self, book: SuiteBook, test: str = ""):
        self.book = book
        self.test = test
        self.tried = 0
        self.kept = 0

    @property
    def counted(self) -> bool:
        return self.tried > 0

    def count(self, *, tried: int, kept: int, what: str = "") -> None:
        """`tried` things done, `kept` of them as they should be (both observed counts)."""
        tried, kept = int(tried), int(kept)
        if not 0 <= kept <= tried:
            raise ValueError(f"kept must be between 0 and tried: tried {tried}, kept {kept}")
        self.tried += tried
        self.kept += kept
        self.book.tried += tried
        self.book.kept += kept
        if kept < tried:
            self.book.lost.append(f"{tried - kept} of {tried} {what or 'tried'}".rstrip())

    def check(self, label: str, ok) -> bool:
        """One thing tried; kept if `ok`. Returns `ok` as a bool."""
        ok = bool(ok)
        self.tried += 1
        self.book.tried += 1
        if ok:
            self.kept += 1
            self.book.kept += 1
        else:
            self.book.lost.append(label)
        return ok

    @contextlib.contextmanager
    def trial(self, label: str):
        """Tried on entry; kept if the block ends without an exception (which goes on up)."""
        try:
            yield
        except BaseException:
            self.check(label, False)
            raise
        self.check(label, True)

    def note(self, text: str) -> None:
        if text:
            self.book.notes.append(text)


class Books:
    """Every suite's book in one run."""

    def __init__(self):
        self.suites: dict[str, SuiteBook] = {}

    def of(self, suite: str) -> SuiteBook:
        return self.suites.setdefault(suite, SuiteBook())

    def lines(self) -> list[str]:
        def order(name: str):
            head = name.split(" ", 1)[0]
            return (int(head) if head.isdigit() else 99, name)

        return [self.suites[name].line(name) for name in sorted(self.suites, key=order)]


BOOKS = Books()
_TALLY = pytest.StashKey[Tally]()
_CALL = pytest.StashKey[pytest.TestReport]()


def suite_of(item) -> str | None:
    return getattr(getattr(item, "module", None), "SUITE", None)


@pytest.fixture
def record(request):
    """The test's `Tally`: count what it tries and keeps as it observes it (see the module doc)."""
    suite = suite_of(request.node)
    assert suite, "a reliability test module must set SUITE = '<n> <name>'"
    tally = Tally(BOOKS.of(suite), request.node.name)
    request.node.stash[_TALLY] = tally
    yield tally
    call = request.node.stash.get(_CALL, None)
    if call is not None and call.passed and not tally.counted:
        pytest.fail("this test asked for `record` but counted nothing: its suite's line would "
                    "not show it (count what it tried with record.trial/check/count)",
                    pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    suite = suite_of(item)
    if suite is None:
        return
    book = BOOKS.of(suite)
    if report.when == "call":
        item.stash[_CALL] = report
    book.outcome(item.nodeid, report.outcome)
    if report.when == "teardown" and book.outcomes.get(item.nodeid) == "failed":
        tally = item.stash.get(_TALLY, None)
        if (tally is None or not tally.counted) and item.name not in book.uncounted:
            book.uncounted.append(item.name)


def pytest_sessionfinish(session, exitstatus):
    if not BOOKS.suites:
        return
    path = os.path.join(str(session.config.rootpath), SUMMARY_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(BOOKS.lines()) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not BOOKS.suites:
        return
    terminalreporter.section("reliability suites")
    for line in BOOKS.lines():
        terminalreporter.write_line(line)
