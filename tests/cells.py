"""Running cells in a test IPython shell with their output captured."""

from __future__ import annotations

from IPython.utils.capture import capture_output


def run(shell, cell: str):
    with capture_output() as cap:
        result = shell.run_cell(cell)
    return result, cap


def ok(shell, cell: str):
    """Runs a cell that must succeed; returns its captured output."""
    result, cap = run(shell, cell)
    assert result.error_in_exec is None, (cap.stdout, cap.stderr)
    assert result.error_before_exec is None, (cap.stdout, cap.stderr)
    return cap
