"""The errors of workflows: one line that says what to fix, never a traceback in IPython."""

from __future__ import annotations

from ..errors import UserError


class WorkflowError(UserError, ValueError):
    """A workflow problem a user can fix (a bad step, a missing column or function, a bad file)."""


class WorkflowNotFound(WorkflowError, LookupError):
    """No saved workflow (or no such version) under that name."""


class WorkflowFileError(WorkflowError):
    """A workflow file that cannot be read; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}; nothing was imported")


class WorkflowStopped(UserError):
    """A run was stopped (Stop in the builder): what had finished is logged and cached."""
