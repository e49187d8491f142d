"""Record and replay: a notebook's recordings (llm_notebook/recordings.py) as a source of answers.

`LLMNotebook.replay` (`$LLM_NOTEBOOK_REPLAY`, `%llm replay MODE`) is one of:
- `off`: recordings are neither read nor written;
- `record`: every answer a call gets (sent, or from the cache: a colleague's fresh log has no
  cache) is also written to the recordings;
- `replay`: answers come from the recordings, with no network and no key; a request that is not
  recorded fails (`NotRecorded`) before anything is sent;
- `auto`: recorded answers are replayed, anything else is called (cache, then provider) and
  recorded.

A recorded answer is taken where the pipeline takes an answer without sending, before the cache
(`call/single.py` for one call, the batch engine's bulk read for rows): it becomes an Outcome at
once, marked `replayed`, free (cost 0: nothing was spent, and no budget is held) and timeless
(0 ms), and is logged like any call. Replayed answers are not put in the cache: they come from
someone else's file, and a later call with replay off must not take one for the model's. A streamed call gets the recorded
text in pieces, as a stream would bring it.

A request is identified by its cache key (`cache.py`: model, messages, options) with the endpoint
named as the notebook names it (`lab`, not the URL it had on the author's machine), so a
recording matches wherever the notebook runs. Chats replay because their history is the replayed
answers, identical to the recorded ones. While replaying, a provider's model resolves without its
key (`Session.resolve`): the key is asked for only when a call would be sent
(`providers.check_key`), so a notebook made with someone else's keys replays without them.
"""

from __future__ import annotations

import re

from ..cache import cache_key
from ..errors import INCOMPLETE, LLMError, NotRecorded
from . import outcome as outcomes

REPLAYING = ("replay", "auto")
RECORDING = ("record", "auto")
_PIECE = re.compile(r"\s*\S+|\s+")       # a word with the space before it
_PIECE_WORDS = 4


class Replay:
    """A session's replay mode over its recordings, for one call or one batch run."""

    __slots__ = ("mode", "recordings")

    def __init__(self, mode: str, recordings):
        self.mode = mode
        self.recordings = recordings

    @classmethod
    def of(cls, session) -> "Replay | None":
        """The session's replay, or None when the mode is off (the pipeline then does nothing
        more than before)."""
        mode = session.config.replay_mode()
        return None if mode == "off" else cls(mode, session.recordings)

    @property
    def replays(self) -> bool:
        return self.mode in REPLAYING

    @property
    def strict(self) -> bool:
        return self.mode == "replay"

    @property
    def records(self) -> bool:
        return self.mode in RECORDING

    # -- keys -------------------------------------------------------------------------------

    @staticmethod
    def key(route, messages: list[dict], options: dict) -> str:
        return cache_key(route.model, messages, options, _endpoint(route))

    @staticmethod
    def keys(route, messages_per_row: list, options: dict, cache_keys: list) -> list:
        """One key per row (None where a row has no request). Equal to the cache keys unless
        the route's endpoint has a name as well as a URL."""
        endpoint = _endpoint(route)
        if endpoint == (route.base_url or route.endpoint):
            return list(cache_keys)
        from ..batch.cachekeys import cache_keys as many_keys

        return many_keys(route.model, messages_per_row, options, endpoint)

    # -- replaying --------------------------------------------------------------------------

    def find(self, key: str):
        """The recording to replay for `key`, if any (in `auto`, only a complete answer: one
        that was cut short is asked again)."""
        found = self.recordings.get(key)
        return found if found is not None and (self.strict or found.status == "ok") else None

    def find_many(self, keys) -> dict:
        found = self.recordings.get_many(k for k in keys if k is not None)
        if not self.strict:
            found = {k: r for k, r in found.items() if r.status == "ok"}
        return found

    def not_recorded(self, route, messages: list[dict], *, rows: int | None = None,
                     total: int | None = None) -> NotRecorded:
        """The one-line error of a request (or `rows` of a batch) the recordings do not hold."""
        from .. import context

        what = (f"{rows} of the {total} rows of this run ({route.model})" if rows is not None
                else f"this call ({route.model}: {_preview(messages)})")
        cell = context.cell_label()
        where = f" in {cell}" if cell else ""
        plural = rows is not None and rows != 1
        return NotRecorded(
            f"replay: {what}{where} {'are' if plural else 'is'} not recorded in "
            f"{self.recordings.path}; record {'them' if plural else 'it'} by "
            "running the notebook with %llm replay record (or LLM_NOTEBOOK_REPLAY=record), or "
            "use %llm replay auto to call what is not recorded")

    # -- recording --------------------------------------------------------------------------

    def line(self, key: str, route, messages: list[dict], options: dict,
             result: outcomes.Outcome) -> str | None:
        """The recording of an outcome, or None if it is not an answer to record (a failure, an
        interruption, or an answer that was itself replayed)."""
        from ..recordings import STATUSES, entry_line

        if result.replayed or result.status not in STATUSES or key is None:
            return None
        answer = {"status": result.status, "text": result.text or "",
                  "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
                  # a cache hit's own price is not known: it is not "free"
                  "cost": None if result.cached else result.cost, "model": route.model,
                  "error": result.error if result.status != "ok" else None}
        return entry_line(key, model=route.model, endpoint=_endpoint(route), messages=messages,
                          options=options, answer=answer)

    def add(self, lines: list) -> None:
        """Write recordings; a file that cannot be written is a warning, never a lost call (its
        row is already in the log)."""
        import warnings

        lines = [line for line in lines if line is not None]
        if not lines:
            return
        try:
            self.recordings.add(lines)
        except LLMError as exc:
            warnings.warn(f"llm-notebook: not recorded: {exc}", stacklevel=2)


def outcome(recording, *, ts: float) -> outcomes.Outcome:
    """A recorded answer as the Outcome of a call that sent nothing, cost nothing and took no
    time: its duration is 0 ms wherever it is replayed (a replayed notebook shows the same
    numbers on every machine; the latency histograms leave replayed calls out)."""
    duration_ms = 0.0
    if recording.status == "ok":
        return outcomes.Outcome("ok", recording.text, ts, duration_ms, attempts=0,
                                input_tokens=recording.input_tokens,
                                output_tokens=recording.output_tokens, cost=0.0, replayed=True)
    message = f"{recording.error or 'the answer stopped before it was complete'} (as recorded)"
    error = LLMError(message, kind=INCOMPLETE, partial=recording.text)
    return outcomes.Outcome("incomplete", recording.text or None, ts, duration_ms, attempts=0,
                            input_tokens=recording.input_tokens,
                            output_tokens=recording.output_tokens, cost=0.0,
                            error_kind=INCOMPLETE, error=error.message, exception=error,
                            replayed=True)


def pieces(text: str) -> list[str]:
    """A recorded text in the pieces a stream replays it in (a few words each)."""
    words = _PIECE.findall(text)
    return ["".join(words[i:i + _PIECE_WORDS]) for i in range(0, len(words), _PIECE_WORDS)]


def _endpoint(route) -> str | None:
    return route.endpoint or route.base_url


def _preview(messages: list[dict]) -> str:
    content = messages[-1].get("content") if messages else ""
    text = " ".join(str(content or "").split())
    return repr(text[:60] + "…" if len(text) > 60 else text)
