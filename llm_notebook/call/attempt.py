"""One attempt of a call over a provider's chunks: the one place a call's time is cut.

`timeout` means one thing for every provider: the longest wait for the next chunk (for an
answer that comes in one piece, the wait for it). The call's deadline cuts the attempt whatever
the gaps. The attempt records the time to the first text chunk, keeps every piece of text that
arrived, and classifies what went wrong: an answer that stopped after some text is `incomplete`
and carries that text; one that never started keeps its provider's kind (`timeout` for a
stall).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from ..errors import INCOMPLETE, TIMEOUT, LLMError


class Received:
    """What an attempt has received so far: its text pieces and the time to the first one.
    The caller keeps it, so an attempt cut short or cancelled still has both."""

    __slots__ = ("parts", "ttft_ms")

    def __init__(self):
        self.parts: list[str] = []
        self.ttft_ms: float | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass(slots=True)
class Answer:
    """What a complete attempt produced."""
    text: str
    input_tokens: int | None
    output_tokens: int | None
    finish_reason: str | None
    ttft_ms: float | None          # None when the answer came in one piece


async def attempt(chunks: AsyncIterator, received: Received, *, gap: float, deadline_at: float,
                  deadline: float, on_text: Callable[[str], None] | None = None) -> Answer:
    """Read one provider attempt to its Finish chunk.

    `received` collects the text as it arrives; `deadline_at` is the event loop time the call
    must end by, `deadline` its length in seconds (for the message). Raises LLMError with
    `partial` set to the text received.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    parts = received.parts
    finish = None
    exhausted = False
    try:
        async with asyncio.timeout_at(min(started + gap, deadline_at)) as cut:
            async for chunk in chunks:
                if type(chunk) is str:
                    now = loop.time()
                    if received.ttft_ms is None:
                        received.ttft_ms = (now - started) * 1000
                    parts.append(chunk)
                    if on_text is not None:
                        on_text(chunk)
                    cut.reschedule(min(now + gap, deadline_at))
                else:
                    finish = chunk
        exhausted = True
    except TimeoutError:
        raise _cut_short(parts, gap, deadline, at_deadline=loop.time() >= deadline_at) from None
    except LLMError as exc:
        raise _after_text(exc, parts) from None
    finally:
        if not exhausted:  # cut short: let the producer let go of its connection or thread
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
    if finish is None:
        raise LLMError("the stream ended before the response was complete", kind=INCOMPLETE,
                       partial="".join(parts))
    text = "".join(parts) if parts else (finish.text or "")
    return Answer(text, finish.input_tokens, finish.output_tokens, finish.finish_reason,
                  received.ttft_ms)


def _cut_short(parts: list[str], gap: float, deadline: float, *, at_deadline: bool) -> LLMError:
    partial = "".join(parts)
    if at_deadline:
        message = (f"call cut at its {deadline:g} s deadline; raise LLMNotebook.deadline to "
                   "wait longer")
        error = LLMError(message, kind=INCOMPLETE if partial else TIMEOUT, partial=partial)
        error.at_deadline = True
        return error
    elif partial:
        message = (f"the answer stalled: nothing for {gap:g} s after its last chunk; raise "
                   "LLMNotebook.timeout to wait longer")
    else:
        message = (f"no answer within {gap:g} s; raise LLMNotebook.timeout to wait longer")
    return LLMError(message, kind=INCOMPLETE if partial else TIMEOUT, partial=partial)


def _after_text(exc: LLMError, parts: list[str]) -> LLMError:
    """A provider error after some text arrived: the answer is incomplete, its text kept."""
    if parts:
        exc.kind = INCOMPLETE
        exc.partial = "".join(parts)
    return exc
