"""How the magics report problems: one line, no traceback, cell marked as failed.

A mistake the user can fix (unknown model, missing key, bad placeholder, a provider refusing the
call) becomes IPython's UsageError, which IPython prints as a single `UsageError: ...` line.
Ctrl-C while a reply streams becomes `ReplyInterrupted`: still a KeyboardInterrupt (so "Run
all" stops at this cell, as after any interrupt), but shown as one line instead of a traceback
through the magic's internals.
"""

from __future__ import annotations

import contextlib

from IPython.core.error import UsageError

from .. import placeholders
from ..errors import LLMError


class ReplyInterrupted(KeyboardInterrupt):
    """Ctrl-C during a `%%llm` call; the partial reply stays on screen and in the log."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of formatting a traceback.
        return [f"Interrupted: {self.message}"]


@contextlib.contextmanager
def user_errors(prefix: str = ""):
    """Turn errors a user can fix into UsageError (their messages already say how to fix them)."""
    try:
        yield
    except LLMError as exc:
        raise UsageError(prefix + exc.message) from None
    except placeholders.PlaceholderSyntaxError as exc:
        raise UsageError(f"{prefix}the prompt has a bad placeholder at {exc}; or add --raw to "
                         "send the cell exactly as written") from None
    except placeholders.PlaceholderError as exc:
        raise UsageError(prefix + str(exc)) from None
