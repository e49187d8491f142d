"""Errors users see. Every message is one line that says how to fix the problem, and is redacted."""

from __future__ import annotations

# Error kinds, as logged in calls.error_kind.
AUTH = "auth"
BAD_REQUEST = "bad_request"
CONTEXT_WINDOW = "context_window"
RATE_LIMIT = "rate_limit"
SERVER = "server"
TIMEOUT = "timeout"
CONNECTION = "connection"
INVALID_RESPONSE = "invalid_response"
INCOMPLETE = "incomplete"
INTERRUPTED = "interrupted"
BUDGET = "budget"
CONFIG = "config"
NOT_RECORDED = "not_recorded"     # replay mode: the notebook's recordings hold no answer to it
UNKNOWN = "unknown"

RETRYABLE = frozenset({RATE_LIMIT, SERVER, TIMEOUT, CONNECTION, INVALID_RESPONSE, INCOMPLETE})


class UserError(Exception):
    """Marks errors a user can fix. In IPython they show as one line (their message says how to
    fix the problem), not as a traceback: see llm_notebook/ipython_errors.py."""


class LLMError(UserError):
    """A call failed. `kind` is one of the kinds above; `status` the HTTP status if any."""

    def __init__(self, message: str, *, kind: str = UNKNOWN, status: int | None = None,
                 retry_after: float | None = None, partial: str = ""):
        from .redact import redact

        self.message = redact(str(message))
        super().__init__(self.message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.partial = partial
        self.at_deadline = False           # an attempt cut at the call's deadline

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


class UnknownModelError(LLMError, ValueError):
    def __init__(self, message: str):
        super().__init__(message, kind=CONFIG)


class MissingKeyError(LLMError):
    def __init__(self, message: str):
        super().__init__(message, kind=AUTH)


class LocalModelUnavailable(LLMError):
    def __init__(self, message: str):
        super().__init__(message, kind=CONFIG)


class BadOptionError(LLMError, ValueError):
    """A call option no provider could accept (e.g. temperature=NaN); nothing was sent."""

    def __init__(self, message: str):
        super().__init__(message, kind=CONFIG)


class LogUnavailable(LLMError):
    """The log file cannot be opened or created where LLMNotebook.log_path points."""

    def __init__(self, message: str):
        super().__init__(message, kind=CONFIG)


class NotRecorded(LLMError):
    """Replay mode, and the notebook's recordings hold no answer to this request: nothing sent."""

    def __init__(self, message: str):
        super().__init__(message, kind=NOT_RECORDED)


class RecordingsUnavailable(LLMError):
    """The recordings file cannot be read or written (or is too large to be a notebook's)."""

    def __init__(self, message: str):
        super().__init__(message, kind=CONFIG)


class BudgetExceeded(LLMError):
    def __init__(self, message: str):
        super().__init__(message, kind=BUDGET)


class BatchAPIUnavailable(LLMError, ValueError):
    """via="batch_api" on a model whose provider has no Batch API we can use; nothing was sent."""

    def __init__(self, message: str):
        super().__init__(message, kind=CONFIG)


class ResponseFormatError(UserError, ValueError):
    """A response's text was not what the caller asked for (e.g. not JSON)."""


class AttachmentError(LLMError, ValueError):
    """An attachment that cannot be sent (unreadable, too large, not an image or PDF, or for a
    model that takes none): refused before anything is sent."""

    def __init__(self, message: str):
        super().__init__(message, kind=CONFIG)


class EmbeddingsNotRecorded(LLMError):
    """Replaying, an embedding that is neither cached nor computable offline."""

    def __init__(self, message: str):
        super().__init__(message, kind=CONFIG)


class OperatorArgumentError(UserError, ValueError):
    """A semantic operator's argument that cannot work (an empty condition, one label, k < 1,
    background= for an operator that runs in stages...): refused before anything is sent."""
