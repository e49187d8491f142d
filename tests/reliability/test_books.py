"""The reliability books show a loss: a failing check makes a FAIL line whose kept < tried.

Counted directly on a `Tally`, then end to end: a pytest run in a subprocess, with the books
plugin, of a small suite whose tests count what they observe and then fail an assertion.
(No SUITE here: this module checks the books, it is not one of the suites.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from .books import SUMMARY_FILE, SuiteBook, Tally

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_failed_check_and_a_failed_trial_are_counted_as_lost():
    book = SuiteBook()
    tally = Tally(book)
    tally.check("first row answered", True)
    tally.check("second row answered", False)
    with pytest.raises(AssertionError):
        with tally.trial("the stall ended at its deadline"):
            assert 3.9 <= 2.5 + 1.5 - 0.5
    tally.count(tried=10, kept=7, what="rows logged")
    book.outcome("t::a", "passed")
    book.outcome("t::b", "failed")

    line = book.line("2 deadlines")
    assert (tally.tried, tally.kept) == (13, 8)
    assert line.startswith("FAIL suite 2 deadlines: tried 13, kept 8 (1/2 tests)")
    assert "lost: second row answered; the stall ended at its deadline; 3 of 10 rows logged" in line


def test_kept_cannot_exceed_tried():
    tally = Tally(SuiteBook())
    with pytest.raises(ValueError, match="kept must be between 0 and tried"):
        tally.count(tried=43, kept=44)
    assert tally.tried == 0


def test_a_passing_phase_does_not_hide_a_failed_teardown():
    book = SuiteBook()
    for phase in ("passed", "passed", "failed"):       # setup, call, teardown
        book.outcome("t::x", phase)
    book.outcome("t::y", "skipped")
    assert book.line("9 x").startswith("FAIL suite 9 x: tried 0, kept 0 (0/1 tests, 1 skipped)")


FAILING_SUITE = '''
SUITE = "99 books self-test"

ROWS = ["a", "b", "c", "d", "e"]


def test_rows_are_counted_before_the_assertion(record):
    answered = [r for r in ROWS if r != "c"]        # what the "server" answered
    record.count(tried=len(ROWS), kept=len(answered), what="rows answered")
    record.note(f"{len(ROWS) - len(answered)} of {len(ROWS)} rows lost")
    assert answered == ROWS


def test_checks_before_the_assertion(record):
    record.check("one", True)
    assert record.check("two", 1 + 1 == 3)


def test_fails_before_counting(record):
    raise RuntimeError("the server never started")


def test_passes(record):
    with record.trial("fine"):
        pass


def test_counts_nothing(record):
    pass
'''


def test_a_failing_suite_run_by_pytest_writes_a_fail_line_with_its_loss(tmp_path):
    (tmp_path / "test_selftest.py").write_text(textwrap.dedent(FAILING_SUITE))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = dict(os.environ, PYTHONPATH=TESTS_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "reliability.books",
                          "-p", "no:cacheprovider", "-q", "test_selftest.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    lines = (tmp_path / SUMMARY_FILE).read_text().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    # 5 rows + 2 checks + 1 trial tried; 4 + 1 + 1 kept. Four tests fail: two after counting,
    # one before, and one at teardown because it passed without counting anything.
    assert line.startswith("FAIL suite 99 books self-test: tried 8, kept 6 (1/5 tests, "
                           "2 failed before counting: test_fails_before_counting, "
                           "test_counts_nothing)"), line
    assert "lost: 1 of 5 rows answered; two" in line and "1 of 5 rows lost" in line
    assert "reliability suites" in run.stdout and line in run.stdout
    assert "counted nothing" in run.stdout
