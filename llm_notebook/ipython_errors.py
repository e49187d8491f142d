"""Errors a user can fix show as one line in IPython, not as a traceback.

Every llm-notebook error a user can act on derives from `errors.UserError` and says how to fix
the problem in its message; a traceback through our internals would only bury that line. Other
exceptions (real bugs, the user's own code) keep IPython's normal traceback.
"""

from __future__ import annotations

from .errors import UserError


def _one_line(shell, etype, value, tb, tb_offset=None):
    # IPython calls this from run_code and ignores what it returns, so show the line here
    # (through _showtraceback, so ipykernel still sends a proper error reply).
    shell._showtraceback(etype, value, shell.InteractiveTB.get_exception_only(etype, value))
    return None


def install(shell) -> None:
    """Show UserErrors briefly in this shell, unless the user set a handler of their own."""
    if shell is None or getattr(shell, "custom_exceptions", ()):
        return
    shell.set_custom_exc((UserError,), _one_line)
