"""`topk(criterion, k)`: the k best rows by the model's listwise judgement, in a tournament.

The rows are split into groups of `group` rows (at least 2k, so every round at least halves the
candidates); one call per group names its k best (a JSON array constrained to the group's row
numbers); the winners go on to the next round, until one group is left, whose call ranks the
final k. If the model's judgement is a consistent order, each group's best k hold every overall
top-k row of that group, so the answer is the true top k. Calls are bounded before anything is
sent (`calls_bound`): ceil(n/g) + ceil(n1/g) + ... with n1 = k·ceil(n/g), ... (a group of k rows
or fewer goes on without a call); for 1,000 rows, k=5 and groups of 20: 50 + 13 + 3 + 1 = 67
calls, against 499,500 pairwise comparisons.
"""

from __future__ import annotations

from ..errors import OperatorArgumentError
from . import plan, rows

DEFAULT_GROUP = 20
SYSTEM = ("Rank the rows the user sends (each after a ### line with its number) by this "
          "criterion, best first, and answer with the numbers of the best {k}.\n"
          "Criterion: {criterion}")


def _check(n: int, k, group) -> tuple[int, int]:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise OperatorArgumentError(f"k must be a whole number >= 1, got {k!r}")
    group = DEFAULT_GROUP if group is None else group
    if isinstance(group, bool) or not isinstance(group, int) or group < 2:
        raise OperatorArgumentError(f"group must be a whole number >= 2, got {group!r}")
    return k, max(group, 2 * k)


def rounds(n: int, k: int, group: int) -> list[int]:
    """Calls of each round if every call names k rows (the most it may). Before the last round
    a group of k rows or fewer goes on whole, without a call."""
    out = []
    while n > 0:
        sizes = [min(group, n - start) for start in range(0, n, group)]
        if len(sizes) == 1:
            out.append(1)
            break
        out.append(sum(1 for size in sizes if size > k))
        n = sum(min(k, size) for size in sizes)
    return out


def calls_bound(n: int, k: int, group: int) -> int:
    return sum(rounds(n, k, group))


def _schema(k: int) -> dict:
    # A batch run takes one schema and the groups' row numbers differ, so it allows any integer;
    # each group's answer is checked against its own rows (_winners).
    return {"type": "object",
            "properties": {"best": {"type": "array", "items": {"type": "integer"}, "maxItems": k}},
            "required": ["best"], "additionalProperties": False}


def _groups(candidates: list[int], group: int) -> list[list[int]]:
    return [candidates[i:i + group] for i in range(0, len(candidates), group)]


def _prompts(texts: list[str], groups: list[list[int]]) -> list[list[dict]]:
    return [[{"role": "user", "content": rows.items((i, texts[i]) for i in members)}]
            for members in groups]


def topk(session, frame, criterion: str, k: int, *, columns=None, group: int | None = None,
         **settings):
    """The k best rows of `frame` by `criterion`, best first (a DataFrame; `.attrs["llm"]`
    holds the calls made by round and the bound)."""
    k, group = _check(len(frame), k, group)
    texts = rows.texts(frame, columns)
    system = SYSTEM.format(k=k, criterion=_criterion(criterion))
    candidates = list(range(len(frame)))
    made = []
    while candidates:
        groups = _groups(candidates, group)
        last = len(groups) == 1
        judged = [g for g in groups if last or len(g) > k]
        answers = dict(zip(map(tuple, judged), plan.run_stage(
            session, _prompts(texts, judged), system=system, schema=_schema(k), settings=settings)))
        made.append(len(judged))
        candidates = [w for members in groups
                      for w in (_winners(members, answers[tuple(members)], min(k, len(members)))
                                if tuple(members) in answers else members)]
        if last:
            break
    out = frame.iloc[candidates[:k]]
    out.attrs["llm"] = {"calls": sum(made), "rounds": made,
                        "bound": calls_bound(len(frame), k, group)}
    return out


def _winners(members: list[int], answer, want: int) -> list[int]:
    """The group's best `want`, as the model named them; rows it named twice or that are not
    in the group are dropped, and a short answer is filled with the group's other rows in their
    order (a failed call keeps the group's first rows: the result is then not a true top k)."""
    named = answer.get("best") if isinstance(answer, dict) else None
    picked = []
    for value in named or []:
        if isinstance(value, int) and value in members and value not in picked:
            picked.append(value)
    picked += [m for m in members if m not in picked]
    return picked[:want]


def _criterion(criterion) -> str:
    if not isinstance(criterion, str) or not criterion.strip():
        raise OperatorArgumentError("a criterion says what makes a row better, e.g. \"most urgent\"")
    return criterion.strip()


def estimate(session, frame, criterion: str, k: int, *, columns=None, group: int | None = None,
             **settings):
    k, group = _check(len(frame), k, group)
    texts = rows.texts(frame, columns)
    system = SYSTEM.format(k=k, criterion=_criterion(criterion))
    first_round = _groups(list(range(len(frame))), group)
    first_round = [g for g in first_round if len(first_round) == 1 or len(g) > k]
    first = plan.estimate_stage(session, _prompts(texts, first_round),
                                system=system, schema=_schema(k), settings=settings)
    per_round = rounds(len(frame), k, group)
    how = (f"a tournament of groups of {group}: " + " + ".join(str(c) for c in per_round)
           + " by round")
    return plan.OperatorEstimate("topk", first.model, sum(per_round), how, first)
