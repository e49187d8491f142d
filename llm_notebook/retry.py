"""Our one retry policy (litellm's own retries are turned off so attempts are not multiplied).

Only retryable error kinds are retried; Retry-After is honoured (never retry sooner);
otherwise exponential backoff with full jitter; and one overall deadline bounds the whole call:
no attempt starts after it, and each attempt's timeout is cut to the time left.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from .errors import LLMError, TIMEOUT


@dataclass
class RetryPolicy:
    max_retries: int = 3
    deadline: float = 180.0          # seconds for the whole call
    timeout: float = 60.0            # seconds for one attempt
    base_delay: float = 0.5
    max_delay: float = 30.0

    def start(self) -> "RetryState":
        return RetryState(self, time.monotonic() + self.deadline)


@dataclass
class RetryState:
    policy: RetryPolicy
    deadline_at: float
    attempts: int = 0
    last_error: LLMError | None = None

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()

    def attempt_timeout(self) -> float:
        """Timeout of the next attempt: the per-attempt timeout, cut to the deadline."""
        left = self.remaining()
        if left <= 0:
            raise self.gave_up()
        return min(self.policy.timeout, left)

    def gave_up(self) -> LLMError:
        """The error of a call whose deadline passed after `attempts` attempts."""
        last = self.last_error
        if last is not None:
            # The deadline ran out while retrying: the call failed because of its last error
            # (a 500, a 429...), and that is the kind to log, not a timeout.
            return LLMError(f"{last.message} (gave up after {self.attempts} attempt(s): the "
                            f"{self.policy.deadline:g} s deadline passed; raise "
                            "LLMNotebook.deadline to wait longer)",
                            kind=last.kind, status=last.status, partial=last.partial)
        return LLMError(f"call gave up after its {self.policy.deadline:g} s deadline "
                        f"({self.attempts} attempt(s)); raise LLMNotebook.deadline to wait longer",
                        kind=TIMEOUT)

    def next_delay(self, error: LLMError) -> float | None:
        """Seconds to wait before retrying `error`, or None if it must not be retried.

        The caller keeps `attempts` current (attempts made so far)."""
        self.last_error = error
        if not error.retryable or self.attempts > self.policy.max_retries:
            return None
        backoff = min(self.policy.max_delay, self.policy.base_delay * 2 ** (self.attempts - 1))
        delay = random.uniform(0, backoff)
        if error.retry_after is not None:
            delay = max(delay, float(error.retry_after))
        if delay >= self.remaining():
            return None
        return delay
