"""Every setting of llm-notebook, as traits of one Configurable.

Settable from `%config LLMNotebook.default_model = "..."`, from `jupyter_*_config.py`
(`c.LLMNotebook.default_model = ...`) or in Python (`llm_notebook.session().config.timeout = 30`).
"""

from __future__ import annotations

import os

from traitlets import Bool, Dict, Float, Int, Unicode, default, validate, TraitError
from traitlets.config import Configurable

# How calls use a notebook's recordings (llm_notebook/call/replay.py).
REPLAY_MODES = ("off", "record", "replay", "auto")


class LLMNotebook(Configurable):
    default_model = Unicode(
        "",
        help="Model used when a call names none (a litellm id such as 'openai/gpt-4o-mini', an "
        "alias, or 'local/smollm2'). Empty: the 'default' alias if set, else the embedded model "
        "when no provider key is present.",
    ).tag(config=True)

    log_path = Unicode(
        "",
        help="Path of the SQLite log of every call. Empty: $LLM_NOTEBOOK_LOG if set, else "
        "llm-notebook/log.db in the user data directory.",
    ).tag(config=True)

    cache = Bool(
        False,
        help="Whether single calls (ask, %%llm) use the response cache by default. Batch runs "
        "always default to using it.",
    ).tag(config=True)

    timeout = Float(
        60.0,
        help="Seconds to wait for the next piece of an answer, for every provider: the first "
        "chunk, then the gap between chunks (for an answer that comes in one piece, all of it). "
        "An answer that stops after some text is logged as incomplete with that text.",
    ).tag(config=True)

    max_retries = Int(
        3, help="Retries of a failed call whose error is retryable (429, 5xx, timeouts)."
    ).tag(config=True)

    deadline = Float(
        180.0,
        help="Seconds one call may take in all, retries and waits included. No attempt starts "
        "after it, and a running attempt is cut at it.",
    ).tag(config=True)

    budget_session = Float(
        0.0, help="USD this kernel may spend; 0 means no limit. Calls that would cross it are refused."
    ).tag(config=True)

    budget_day = Float(
        0.0, help="USD all kernels sharing the log may spend per calendar day (UTC); 0 means no limit."
    ).tag(config=True)

    prices = Dict(
        {},
        help="Prices for models litellm does not know, in USD per million tokens: "
        "{'myendpoint/model': {'input': 0.5, 'output': 1.5}}. A key ending in '/*' matches a "
        "whole endpoint. The embedded model is always free.",
    ).tag(config=True)

    background_jobs = Int(
        4,
        help="Background batch jobs (df.llm.map(..., background=True)) this kernel runs at once; "
        "more wait, queued, in the order they were started.",
    ).tag(config=True)

    batch_api_poll_min = Float(
        2.0, help="Seconds between the first polls of a provider batch (via='batch_api'); the "
        "interval grows by half each poll up to batch_api_poll_max.",
    ).tag(config=True)

    batch_api_poll_max = Float(
        60.0, help="Longest interval, in seconds, between two polls of a provider batch.",
    ).tag(config=True)

    replay = Unicode(
        "off",
        help="Record and replay a notebook's calls: 'off'; 'record' (every answer is also written "
        "to the recordings beside the notebook); 'replay' (answers come from the recordings, with "
        "no network and no key; a call that was not recorded fails); 'auto' (replay what is "
        "recorded, call and record the rest). Default: $LLM_NOTEBOOK_REPLAY, else 'off'.",
    ).tag(config=True)

    recordings = Unicode(
        "",
        help="The recordings file. Empty: $LLM_NOTEBOOK_RECORDINGS if set, else "
        "llm-recordings.jsonl in the notebook's folder.",
    ).tag(config=True)

    @default("log_path")
    def _default_log_path(self):
        return os.environ.get("LLM_NOTEBOOK_LOG", "")

    @default("replay")
    def _default_replay(self):
        # An unknown mode in the environment is reported when a call reads it (replay_mode()),
        # not here, where it would stop the Session from being created at all.
        return os.environ.get("LLM_NOTEBOOK_REPLAY", "").strip().lower() or "off"

    @validate("replay")
    def _replay_mode(self, proposal):
        value = str(proposal["value"]).strip().lower()
        if value not in REPLAY_MODES:
            raise TraitError(f"replay must be one of {', '.join(REPLAY_MODES)}, "
                             f"not {proposal['value']!r}")
        return value

    @validate("timeout", "deadline", "batch_api_poll_min", "batch_api_poll_max")
    def _positive(self, proposal):
        if not proposal["value"] > 0:  # (NaN too)
            raise TraitError(f"{proposal['trait'].name} must be a positive number of seconds")
        return proposal["value"]

    @validate("max_retries")
    def _non_negative(self, proposal):
        if proposal["value"] < 0:
            raise TraitError("max_retries must be 0 or more")
        return proposal["value"]

    @validate("background_jobs")
    def _at_least_one(self, proposal):
        if proposal["value"] < 1:
            raise TraitError("background_jobs must be 1 or more")
        return proposal["value"]

    @validate("budget_session", "budget_day")
    def _budget(self, proposal):
        if not proposal["value"] >= 0:  # (NaN too: it would silently mean "no limit")
            raise TraitError(f"{proposal['trait'].name} must be 0 (no limit) or a positive USD amount")
        return proposal["value"]

    def replay_mode(self) -> str:
        """The replay mode in force; an unknown one from the environment is a clear error."""
        mode = self.replay
        if mode not in REPLAY_MODES:
            from .errors import UserError

            raise UserError(f"LLM_NOTEBOOK_REPLAY={mode!r} is not a replay mode: set it to one of "
                            f"{', '.join(REPLAY_MODES)} (or run %llm replay MODE)")
        return mode

    def recordings_path(self) -> str:
        """The recordings file as configured ($LLM_NOTEBOOK_RECORDINGS too); empty: the default
        place beside the notebook (llm_notebook/recordings.py)."""
        path = self.recordings or os.environ.get("LLM_NOTEBOOK_RECORDINGS", "")
        return os.path.expanduser(path) if path else ""

    def resolved_log_path(self) -> str:
        if self.log_path:
            return os.path.expanduser(self.log_path)
        env = os.environ.get("LLM_NOTEBOOK_LOG")
        if env:
            return os.path.expanduser(env)
        from platformdirs import user_data_dir

        return os.path.join(user_data_dir("llm-notebook", appauthor=False), "log.db")
