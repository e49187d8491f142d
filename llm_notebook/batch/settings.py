"""The settings of a batch run: the one list of batch parameters.

`df.llm.map` / `df.llm.estimate`, `Session.batch` / `abatch` and `compare()` take these by
keyword; every other keyword is a model option (temperature, max_tokens, ...) or a per-row
retry setting (deadline, timeout, max_retries), sent with every row.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class BatchSettings:
    model: str | None = None          # the model (default: the session's)
    system: str | None = None         # system prompt; may hold {column} placeholders
    concurrency: int | None = None    # calls in flight (default 16; the embedded model runs 1)
    rpm: float | None = None          # requests per minute to stay under
    tpm: float | None = None          # tokens per minute to stay under
    cache: bool = True                # reuse answers of identical requests from the log
    schema: Any = None                # a JSON schema dict or a pydantic model: parsed replies
    on_error: str = "keep"            # "keep" (failed rows are <NA>) or "raise" (stop at one)
    budget: float | None = None       # USD the run may spend; it stops before crossing it
    progress: Any = None              # None (auto), True, False, "widget" or "text"
    background: bool = False          # return a Job at once; the kernel stays free
    via: str = "calls"                # "calls" (one request a row) or "batch_api" (provider batches)
    attachments: Any = None           # column(s) of images/PDFs (paths, bytes, URLs, PIL images)

    @classmethod
    def split(cls, keywords: dict) -> tuple["BatchSettings", dict]:
        """(the batch settings among `keywords`, the rest: options sent with every row)."""
        names = _NAMES
        settings = cls(**{k: v for k, v in keywords.items() if k in names})
        settings.check()
        return settings, {k: v for k, v in keywords.items() if k not in names}

    def check(self) -> None:
        if self.on_error not in ("keep", "raise"):
            raise ValueError(f"on_error must be 'keep' (failed rows become <NA>) or 'raise' (stop "
                             f"at the first failed row), not {self.on_error!r}")
        if self.via not in VIA:
            raise ValueError(f"via must be 'calls' (one request per row) or 'batch_api' (a "
                             f"provider batch at the batch price), not {self.via!r}")
        if not isinstance(self.background, bool):
            raise ValueError(f"background must be True or False, not {self.background!r}")
        if self.via == "batch_api" and self.on_error == "raise":
            raise ValueError("on_error='raise' cannot stop a provider batch at its first failed "
                             "row (the provider answers them all at once); use on_error='keep' "
                             "and look at job.errors()")


_NAMES = frozenset(f.name for f in fields(BatchSettings))
VIA = ("calls", "batch_api")

# The parameters as the public functions' docstrings list them.
HELP = """model: the model (default: the session's default model).
        system: a system prompt ({column} placeholders are filled too).
        concurrency: calls in flight (default 16; the embedded model runs one at a time).
        rpm / tpm: requests / tokens per minute to stay under.
        cache: reuse answers of identical requests from the log (default True).
        schema: a JSON schema dict or a pydantic model: replies are parsed into columns.
        on_error: "keep" (failed rows are <NA>) or "raise" (stop at the first failed row).
        budget: USD this run may spend; it stops before it would cross it.
        progress: None (auto), True, False, "widget" or "text".
        background: True returns a Job at once (job.wait(), .result(), .cancel()); the kernel
            stays free and JupyterLab says when it ends.
        via: "calls" (default: one request per row) or "batch_api": the rows go as one provider
            batch at the provider's batch price (about half), answered within 24 h.
        attachments: a column name (or a list of them) whose cells are images or PDFs (file
            paths, bytes, http(s) URLs or PIL images) sent with each row's prompt.
        Any other keyword goes to the model (temperature, max_tokens, ...), except the per-row
        `deadline`, `timeout` (seconds) and `max_retries`."""
