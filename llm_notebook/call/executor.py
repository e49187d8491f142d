"""The executor: every call that is sent goes through `execute()`, whoever asks.

It owns what a call is between "send this" and "this is what happened": the retry policy
(retryable kinds, Retry-After, backoff), the one overall deadline, the budget hold of each
attempt, structured-output negotiation, pricing (`pricing.pricer` on the provider's real token
counts) and the Outcome. The caller hands it a `sink` that records the outcome (a log row now,
or a buffered one in a batch): the sink runs before the budget hold is released, so spending is
never invisible to other calls, and it runs for an interrupted call too before the
cancellation goes on.

Callers differ only through two small hooks:
- `gate` (batch runs): `await gate.enter(call)` before each attempt (concurrency slot,
  pacing), `gate.leave(call, error, answer) -> bool` after it (adapt to 429s; False forbids a
  retry, e.g. the run is stopping). Retry waits happen outside the gate.
- `budget`: `budget.take(call) -> hold` before each attempt, raising BudgetExceeded when the
  attempt could cross a limit (before the first attempt nothing is sent or logged: the error
  goes to the caller), and `budget.release(hold)` when the attempt is over.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

from .. import providers
from ..errors import BudgetExceeded, LLMError
from ..retry import RetryPolicy
from . import outcome as outcomes
from .attempt import Answer, Received, attempt
from .structured import Negotiation

# Providers' own network timeouts (aiohttp's socket reads, litellm's) are set this much past the
# attempt's gap, so the attempt is what cuts a call, with one message for every provider.
NETWORK_MARGIN_S = 1.0


@dataclass(slots=True)
class Call:
    """One request, ready to send."""
    route: providers.Route
    messages: list[dict]
    options: dict
    policy: RetryPolicy
    price: Callable[[int | None, int | None], float | None]   # pricing.pricer(model, prices)
    stream: bool = False           # ask the provider for a stream of chunks
    est_in: int = 0                # estimated prompt tokens (budget holds, pacing)
    est_out: int = 0               # output tokens the call may produce


async def execute(call: Call, *, sink: Callable[[outcomes.Outcome], object],
                  on_text: Callable[[str], None] | None = None, gate=None,
                  budget=None) -> outcomes.Outcome:
    """Send `call` until it is answered, fails for good or runs out of time; return its Outcome
    (also given to `sink`). `on_text` receives text as it arrives: once some has reached it, a
    failed attempt is not retried (the text would be shown twice)."""
    ts, t0 = time.time(), time.perf_counter()
    negotiation = Negotiation.of(call)
    retry = None
    attempts = 0
    received = Received()
    hold = None
    try:
        while True:
            answer = error = None
            if gate is not None:
                await gate.enter(call)
            try:
                if retry is None:
                    retry = call.policy.start()   # the deadline runs from the first send
                # Before counting the attempt: with the deadline gone, none is made.
                timeout = retry.attempt_timeout()
                if budget is not None:
                    hold = budget.take(call)
                attempts += 1
                retry.attempts = attempts - (negotiation.steps if negotiation else 0)
                received = Received()
                if negotiation is None:
                    messages, options = call.messages, call.options
                else:
                    messages, options = negotiation.request()
                loop = asyncio.get_running_loop()
                chunks = providers.chunks(call.route, messages, options, stream=call.stream,
                                          timeout=timeout + NETWORK_MARGIN_S)
                answer = await attempt(chunks, received, gap=timeout, deadline=call.policy.deadline,
                                       deadline_at=loop.time() + retry.remaining(),
                                       on_text=on_text)
            except BudgetExceeded:
                if not attempts:
                    raise                          # refused before sending: nothing to log
                error = BudgetExceeded("retry not sent: it could cross the budget")
            except LLMError as exc:
                error = exc
                if exc.at_deadline and not exc.partial and retry.last_error is not None:
                    # Cut at the deadline after earlier failures: those are why it failed.
                    error = retry.gave_up()
            finally:
                may_retry = gate.leave(call, error, answer) if gate is not None else True
            if answer is not None:
                break
            if budget is not None and hold is not None:
                budget.release(hold)
                hold = None
            if may_retry and negotiation is not None and negotiation.step_down(error):
                continue                           # the server refused the format: next one
            shown = on_text is not None and bool(error.partial)
            wait = retry.next_delay(error) if may_retry and not shown and attempts else None
            if wait is None:
                result = outcomes.failed(error, ts=ts, attempts=attempts,
                                         ttft_ms=received.ttft_ms if error.partial else None,
                                         duration_ms=(time.perf_counter() - t0) * 1000)
                _sink(sink, result, budget, hold)
                return result
            await asyncio.sleep(wait)   # Retry-After or jittered backoff
    except asyncio.CancelledError:
        if attempts:
            result = outcomes.interrupted(received.text, ts=ts, attempts=attempts,
                                          ttft_ms=received.ttft_ms,
                                          duration_ms=(time.perf_counter() - t0) * 1000)
            _sink(sink, result, budget, hold)
        elif budget is not None and hold is not None:
            budget.release(hold)
        raise
    if negotiation is not None:
        negotiation.remember()
    result = _answered(call, answer, ts=ts, attempts=attempts,
                       duration_ms=(time.perf_counter() - t0) * 1000)
    _sink(sink, result, budget, hold)
    return result


def _answered(call: Call, answer: Answer, *, ts: float, attempts: int,
              duration_ms: float) -> outcomes.Outcome:
    return outcomes.Outcome("ok", answer.text, ts, duration_ms, attempts=attempts,
                            input_tokens=answer.input_tokens, output_tokens=answer.output_tokens,
                            cost=call.price(answer.input_tokens, answer.output_tokens),
                            ttft_ms=answer.ttft_ms)


def _sink(sink, result: outcomes.Outcome, budget, hold) -> None:
    try:
        sink(result)
    finally:
        if budget is not None and hold is not None:
            budget.release(hold)
