"""What the semantic operators share: running one stage of calls on the batch engine
(`Session.batch`: pacing, retries, cache, budgets, progress, the log), estimating a stage
without sending it, and the estimate an operator prints (calls, and how they are bounded)."""

from __future__ import annotations

from dataclasses import dataclass


def _settings(settings: dict, system: str, schema) -> dict:
    """The batch settings of a stage: the caller's, with the operator's instructions after the
    caller's own system prompt, and the operator's schema."""
    if settings.get("background"):
        raise TypeError("semantic operators wait for their answers (a later stage, or the result's "
                        "shape, depends on them); run them without background=, or use "
                        "df.llm.map(..., background=True)")
    if settings.get("schema") is not None:
        raise TypeError("semantic operators set their own schema; use df.llm.extract(schema) "
                        "or df.llm.map(prompt, schema=...) for yours")
    own = settings.get("system")
    merged = dict(settings)
    merged["system"] = f"{own}\n\n{system}" if own else system
    if schema is not None:
        merged["schema"] = schema
    return merged


def run_stage(session, prompts: list, *, system: str, schema=None, settings: dict):
    """One stage of an operator: the prompts as one batch run; its BatchResult (None where a
    row failed)."""
    if not prompts:
        return []
    return session.batch(prompts, **_settings(settings, system, schema))


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
