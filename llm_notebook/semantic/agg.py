"""`agg(instruction)`: one answer over many rows, folded hierarchically.

The rows are packed, in order, into parts that fit a share of the model's context window
(`part_tokens`, by the one token estimate); each part gets one call answering the instruction
over its rows; when there is more than one part, the partial answers are packed and answered
again ("combine these partial answers"), level by level, until one answer is left. Calls: one
per part at each level; `estimate` bounds them by assuming each partial answer is as long as
`max_tokens` allows (or the usual answer length).
"""

from __future__ import annotations

from ..errors import OperatorArgumentError
from . import plan, rows

DEFAULT_OUTPUT_TOKENS = 256
CONTEXT_SHARE = 0.5             # of the context window for a part's rows (the rest: answer, system)
MAX_PART_TOKENS = 16_000        # a part need not fill a huge window: smaller parts answer better
SYSTEM = "Answer the instruction below over all the rows the user sends.\nInstruction: {instruction}"
FOLD_SYSTEM = ("The user sends partial answers, each over a part of the rows. Combine them into "
               "one answer over all the rows.\nInstruction: {instruction}")


def _instruction(instruction) -> str:
    if not isinstance(instruction, str) or not instruction.strip():
        raise OperatorArgumentError("agg takes an instruction for the whole set of rows, e.g. "
                         "\"summarize the main complaints\"")
    return instruction.strip()


def _part_budget(session, settings: dict, given: int | None) -> int:
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int) or given < 16:
            raise OperatorArgumentError(f"part_tokens must be a whole number >= 16, got {given!r}")
        return given
    from ..batch.inputs import max_prompt_tokens

    route = session.resolve(settings.get("model"), {})
    return max(16, min(MAX_PART_TOKENS, int(max_prompt_tokens(route) * CONTEXT_SHARE)))


def pack(entries: list[tuple], budget: int, at_least: int = 1) -> list[list[tuple]]:
    """Consecutive (name, text) entries in parts of at most `budget` estimated tokens, but at
    least `at_least` entries each (a fold level takes two, however long its answers: every
    level then halves the parts, so folding ends)."""
    parts, current, used = [], [], 0
    for name, text in entries:
        size = max(1, (len(text) + len(str(name)) + 6) // 4)
        if len(current) >= at_least and used + size > budget:
            parts.append(current)
            current, used = [], 0
        current.append((name, text))
        used += size
    if current:
        parts.append(current)
    return parts


def levels_bound(sizes: list[int], budget: int, answer_tokens: int) -> list[int]:
    """Calls per level when every partial answer is `answer_tokens` long."""
    parts = len(pack([(i, "x" * (4 * s)) for i, s in enumerate(sizes)], budget))
    out = [parts]
    while parts > 1:
        parts = len(pack([(i, "x" * (4 * answer_tokens)) for i in range(parts)], budget, 2))
        out.append(parts)
    return out


def agg(session, frame, instruction: str, *, columns=None, part_tokens: int | None = None,
        **settings) -> "AggResult":
    """The answer, a string with `levels` (calls per level) and `calls`. A call that fails on
    the way fails the aggregation (its answer would leave rows out): LLMError, naming the job."""
    instruction = _instruction(instruction)
    if len(frame) == 0:
        raise OperatorArgumentError("agg needs at least one row")
    budget = _part_budget(session, settings, part_tokens)
    entries = list(zip(range(len(frame)), rows.texts(frame, columns)))
    system = SYSTEM.format(instruction=instruction)
    levels = []
    while True:
        parts = pack(entries, budget, 2 if levels else 1)
        answers = plan.run_stage(session, [[{"role": "user", "content": rows.items(p)}]
                                           for p in parts], system=system, settings=settings)
        levels.append(len(parts))
        failed = sum(1 for a in answers if a is None)
        if failed:
            from ..errors import LLMError

            raise LLMError(f"agg: {failed} of {len(parts)} calls of level {len(levels)} failed, so "
                           f"no answer covers every row; see session.job({answers.job_id!r})"
                           ".errors(), then run agg again (answered parts are cached)")
        if len(parts) == 1:
            return AggResult(answers[0], levels)
        entries = [(f"part {i + 1}", a) for i, a in enumerate(answers)]
        system = FOLD_SYSTEM.format(instruction=instruction)


class AggResult(str):
    """The answer as a string, with `levels` (calls per level) and `calls`."""

    def __new__(cls, text: str, levels: list[int]):
        self = super().__new__(cls, text)
        self.levels = levels
        self.calls = sum(levels)
        return self


def estimate(session, frame, instruction: str, *, columns=None, part_tokens: int | None = None,
             **settings):
    instruction = _instruction(instruction)
    budget = _part_budget(session, settings, part_tokens)
    entries = list(zip(range(len(frame)), rows.texts(frame, columns)))
    parts = pack(entries, budget)
    first = plan.estimate_stage(session, [[{"role": "user", "content": rows.items(p)}]
                                          for p in parts],
                                system=SYSTEM.format(instruction=instruction), settings=settings)
    answer = settings.get("max_tokens") or DEFAULT_OUTPUT_TOKENS
    sizes = [max(1, (len(t) + len(str(n)) + 6) // 4) for n, t in entries]
    per_level = levels_bound(sizes, budget, answer)
    how = (f"parts of ≤ {budget:,} tokens, folded: " + " + ".join(str(c) for c in per_level)
           + f" by level (answers of ≤ {answer} tokens)")
    return plan.OperatorEstimate("agg", first.model, sum(per_level), how, first)
