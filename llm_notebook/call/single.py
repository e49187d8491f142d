"""One call from a face to the log: the path of ask/stream, conversations, widgets and %%llm.

    call_once(session, messages, ...)
      1. resolve the model to a Route; open the log (a log that cannot be opened fails the call
         before anything is sent); the cache key when the cache is on;
      2. with replay on, a recorded answer becomes an Outcome at once (call/replay.py; in
         `replay` mode a request that is not recorded fails here); then a cache hit does;
      3. otherwise providers.prepare(route) (litellm's import, the model's weights: outside the
         deadline), then executor.execute(): attempts, retries, deadline, budget hold, price;
      4. its sink writes the Outcome's row (Log.insert_call, with the cache entry of an answer),
         records the answer when recording, and tells the Session's listeners;
         `Response.from_row` is what the caller gets back;
      5. a call that failed raises its LLMError, whose `call_id` is its row.
Batch runs take the same executor and Outcome rows with their own bulk cache reads and
buffered writes (llm_notebook/batch/engine.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from .. import attachments, budget, pricing, providers, tokens
from ..cache import cache_key
from ..response import Response
from . import outcome as outcomes
from . import replay as replays
from .executor import Call, execute


class CallState:
    """Filled in by a call as it runs, so a caller that was interrupted can still see the result."""

    def __init__(self):
        self.partial: list[str] = []
        self.response: Response | None = None


async def call_once(session, messages: list[dict], *, model: str | None, options: dict,
                    cache: bool | None, stream: bool,
                    on_text: Callable[[str], None] | None = None,
                    conversation_id: str | None = None, parent_id: int | None = None,
                    state: CallState | None = None, context: dict | None = None) -> Response:
    """Send one request and log it, whatever happens; return its Response (or raise its
    LLMError). `on_text` receives the answer's text as it arrives (`stream=True`)."""
    from .. import context as where

    state = state or CallState()
    log = session.log
    route = session.resolve(model, options)
    attachments.check_route(route, messages)   # a text-only model: refused before anything
    use_cache = session.config.cache if cache is None else cache
    key = cache_key(route.model, messages, options, route.base_url or route.endpoint) \
        if use_cache else None
    if context is None:
        context = {"notebook": where.notebook_path(), "cell_id": where.cell_id()}
    system = next((m["content"] for m in messages if m.get("role") == "system"), None)
    base = outcomes.base_row(route, options, kernel_session=session.kernel_session,
                             context=context, system=system, conversation_id=conversation_id,
                             parent_id=parent_id)
    replay = replays.Replay.of(session)
    replay_key = replay.key(route, messages, options) if replay is not None else None

    def record(result: outcomes.Outcome) -> None:
        row = result.row(base, messages, cache_key=key)
        fresh_answer = result.ok and not result.cached and not result.replayed
        row["id"] = log.insert_call(row, cache_key=key if fresh_answer else None)
        if fresh_answer and result.cost:
            session.spent += result.cost
        state.response = Response.from_row(row)
        if replay is not None and replay.records:
            replay.add([replay.line(replay_key, route, messages, options, result)])
        session._notify(row)

    if replay is not None and replay.replays:
        recorded = replay.find(replay_key)
        if recorded is not None:
            ts = time.time()
            if on_text is not None:
                for piece in replays.pieces(recorded.text):
                    state.partial.append(piece)
                    on_text(piece)
                    await asyncio.sleep(0)    # a stream's reader takes each piece as it comes
            result = replays.outcome(recorded, ts=ts)
            record(result)
            return _returned(result, state)
        if replay.strict:
            raise replay.not_recorded(route, messages)

    if key is not None:
        ts, started = time.time(), time.perf_counter()
        hit = log.cache_get(key)
        if hit is not None:
            if on_text is not None:
                on_text(hit["response"])
            record(outcomes.from_cache(hit, ts=ts,
                                       duration_ms=(time.perf_counter() - started) * 1000))
            return state.response

    providers.check_key(route)          # (resolved without its key while replaying)
    await providers.prepare(route)

    def text_arrived(text: str) -> None:
        state.partial.append(text)
        on_text(text)

    call = Call(route, messages, options, session.policy(),
                pricing.pricer(route.model, session.config.prices), stream=stream,
                est_in=tokens.estimate_prompt(messages),
                est_out=budget.output_tokens(route.model, options))
    result = await execute(call, sink=record, budget=budget.SessionBudget(session),
                           on_text=text_arrived if on_text is not None else None)
    return _returned(result, state)


def _returned(result: outcomes.Outcome, state: CallState) -> Response:
    """The logged call's Response, or its LLMError (naming its row) if it failed."""
    if not result.ok:
        error = result.exception
        error.call_id = state.response.id if state.response is not None else None
        raise error
    return state.response
