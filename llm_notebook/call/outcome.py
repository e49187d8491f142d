"""What one call came to, and the log row it makes.

An `Outcome` is made by the executor for every call that was sent (answered, failed, cut short
or interrupted), for a cache hit and for a replayed answer (call/replay.py). `Outcome.row()` turns it into the call's log row (the
columns of `log.CALL_COLUMNS`); a `Response` is only ever made back from such a row
(`Response.from_row`), so what a caller holds is what the log holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..attachments import prompt_text
from ..errors import INTERRUPTED, LLMError


@dataclass(slots=True)
class Outcome:
    status: str                          # ok | error | incomplete | interrupted
    text: str | None                     # the answer, or the partial text of one cut short
    ts: float                            # unix time the call started
    duration_ms: float
    attempts: int = 0                    # requests sent (0: refused or failed before sending)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None            # USD from the real token counts; None: unpriced
    ttft_ms: float | None = None
    error_kind: str | None = None
    error: str | None = None             # redacted, one line
    cached: bool = False
    exception: LLMError | None = None    # the error to raise to a single caller (not logged)
    replayed: bool = False               # taken from the notebook's recordings (call/replay.py)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self, base: dict, messages: list[dict] | None = None, *, cache_key: str | None = None,
            row_key: str | None = None) -> dict:
        """The call's log row: the request's fields (`base`, see base_row) and this outcome."""
        row = base.copy()
        if messages is not None:
            prompt = messages[-1].get("content") if messages else ""
            # (an attachment is logged by its name, type, size and hash: never its content)
            row["prompt"] = prompt if type(prompt) is str else prompt_text(prompt)
            row["messages"] = messages
        row["cache_key"] = cache_key
        row["row_key"] = row_key
        row["ts"] = self.ts
        row["response"] = self.text
        row["input_tokens"] = self.input_tokens
        row["output_tokens"] = self.output_tokens
        row["cost"] = self.cost
        row["unpriced"] = self.status == "ok" and not self.cached and self.cost is None
        row["duration_ms"] = self.duration_ms
        row["ttft_ms"] = self.ttft_ms
        row["status"] = self.status
        row["error_kind"] = self.error_kind
        row["error"] = self.error
        row["attempts"] = self.attempts
        row["cached"] = self.cached
        row["replayed"] = self.replayed
        return row


def failed(exc: LLMError, *, ts: float, duration_ms: float, attempts: int,
           ttft_ms: float | None = None) -> Outcome:
    partial = exc.partial or None
    return Outcome("incomplete" if partial else "error", partial, ts, duration_ms,
                   attempts=attempts, ttft_ms=ttft_ms, error_kind=exc.kind, error=exc.message,
                   exception=exc)


def interrupted(partial: str, *, ts: float, duration_ms: float, attempts: int,
                ttft_ms: float | None = None) -> Outcome:
    return Outcome("interrupted", partial or None, ts, duration_ms, attempts=attempts,
                   ttft_ms=ttft_ms, error_kind=INTERRUPTED, error="interrupted by the user")


def from_cache(hit: dict, *, ts: float, duration_ms: float) -> Outcome:
    """A cache hit: the stored answer and its token counts, free (`cost` 0)."""
    return Outcome("ok", hit["response"], ts, duration_ms, attempts=0,
                   input_tokens=hit["input_tokens"], output_tokens=hit["output_tokens"],
                   cost=0.0, cached=True)


def base_row(route, options: dict, *, kernel_session: str, context: dict,
             system: str | None, conversation_id: str | None = None,
             parent_id: int | None = None, job_id: str | None = None) -> dict:
    """The fields of a call's row known before it is sent (a batch makes them once per run).
    Options are logged as `redact.loggable_options` leaves them: never a credential."""
    from ..redact import loggable_options

    return {
        "model": route.model, "provider": route.provider,
        "endpoint": route.endpoint or route.base_url, "system": system,
        "options": json.dumps(loggable_options(options), ensure_ascii=False, default=str),
        "conversation_id": conversation_id, "parent_id": parent_id, "job_id": job_id,
        "kernel_session": kernel_session,
        "notebook": context.get("notebook"), "cell_id": context.get("cell_id"),
    }
