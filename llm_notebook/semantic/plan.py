"""What the semantic operators share: running one stage of calls on the batch engine
(`Session.batch`: pacing, retries, cache, budgets, progress, the log), estimating a stage
without sending it, and the estimate an operator prints (calls, and how they are bounded)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import OperatorArgumentError


def _settings(settings: dict, system: str, schema) -> dict:
    """The batch settings of a stage: the caller's, with the operator's instructions after the
    caller's own system prompt, and the operator's schema."""
    if settings.get("schema") is not None:
        raise OperatorArgumentError("semantic operators set their own schema; use df.llm.extract(schema) "
                        "or df.llm.map(prompt, schema=...) for yours")
    own = settings.get("system")
    merged = dict(settings)
    merged["system"] = f"{own}\n\n{system}" if own else system
    if schema is not None:
        merged["schema"] = schema
    return merged


def run_stage(session, prompts: list, *, system: str, schema=None, settings: dict,
              finish=None):
    """One stage of an operator: the prompts as one batch run; `finish(BatchResult)` (None
    where a row failed) is the operator's answer. An operator of one stage passes `finish`, and
    with `background=True` gets an OperatorJob at once; one of several stages cannot (each
    stage's prompts come from the answers of the one before)."""
    if settings.get("background") and finish is None:
        raise OperatorArgumentError("this operator runs in stages, each from the answers of the one before, "
                        "so it cannot run in the background; run it without background=, or "
                        "use filter/classify/extract/join/map, which can")
    finish = finish or (lambda result: result)
    if not prompts:
        return finish([])
    result = session.batch(prompts, **_settings(settings, system, schema))
    if settings.get("background"):
        return OperatorJob(result, finish)
    return finish(result)


class OperatorJob:
    """An operator running in the background: its batch Job (`status`, `progress`, `wait()`,
    `cancel()`, `errors()`...), whose `result()` is what the operator returns."""

    def __init__(self, job, finish):
        self.job = job
        self._finish = finish

    def result(self, timeout: float | None = None):
        return self._finish(self.job.result(timeout))

    def then(self, more) -> "OperatorJob":
        """The same job, its result passed through `more` too."""
        return OperatorJob(self.job, lambda result: more(self._finish(result)))

    def __getattr__(self, name):
        return getattr(self.job, name)

    def __repr__(self) -> str:
        return f"<operator {self.job!r}>"


def estimate_stage(session, prompts: list, *, system: str, schema=None, settings: dict):
    """The batch Estimate of one stage (nothing is sent)."""
    from ..batch import api
    from ..batch.accessor import estimate_run

    run, _ = api.prepare(session, prompts=prompts, check_budget=False,
                         **_settings(settings, system, schema))
    return estimate_run(session, run)


@dataclass
class OperatorEstimate:
    """What a semantic operator would send: at most `calls` model calls (`how` says why that
    many), of which the first stage's are estimated exactly (`first`: cached rows, tokens,
    cost); `cost` is at most that of `calls` calls like the first stage's."""
    operator: str
    model: str
    calls: int
    how: str
    first: object = None
    embeddings: int = 0            # texts to embed that are not cached yet (join blocking)

    @property
    def cost(self) -> float | None:
        first = self.first
        if first is None or first.cost is None:
            return None
        if not first.to_send:
            return 0.0 if not self.calls else None
        return first.cost / first.to_send * self.calls

    def __str__(self) -> str:
        cost = self.cost
        money = "price unknown" if cost is None else f"≈ ${cost:,.4f} at most"
        first = ""
        if self.first is not None:
            f = self.first
            replayed = f"{f.replayed:,} replayed, " if f.replayed else ""
            first = (f" · first stage: {f.to_send:,} to send ({replayed}{f.cached:,} cached), "
                     f"~{f.input_tokens:,} input tokens")
        embeds = f" · {self.embeddings:,} texts to embed" if self.embeddings else ""
        return (f"{self.operator} on {self.model}: at most {self.calls:,} calls ({self.how})"
                f"{first}{embeds} · {money}")

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))
