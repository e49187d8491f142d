"""`join(other, condition)`: the pairs of rows (one from each frame) for which the model judges
`condition` true.

Judging every pair costs n×m calls. With blocking (the default when it is cheaper), both sides
are embedded (cached in the log) and only the pairs near each other are judged: each left row's
`candidates` nearest right rows, and each right row's `candidates` nearest left rows, at most
(n+m)·candidates calls. Pairs the embeddings put far apart are taken as non-matches: blocking
trades recall for calls, so give `candidates` room (or `blocking=False`) when matches may share
few words. `estimate` prints the bound before anything is sent.
"""

from __future__ import annotations

from ..errors import OperatorArgumentError
from . import plan, rows
from .judgements import VERDICT_SCHEMA, _condition

DEFAULT_CANDIDATES = 5
SYSTEM = ("Decide whether the condition below holds for the pair of rows the user sends (the "
          "left row after ### left, the right row after ### right). Answer true or false.\n"
          "Condition: {condition}")


def _candidates(candidates) -> int:
    candidates = DEFAULT_CANDIDATES if candidates is None else candidates
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise OperatorArgumentError(f"candidates must be a whole number >= 1, got {candidates!r}")
    return candidates


def blocks(n: int, m: int, candidates: int, blocking) -> bool:
    """Whether to block: asked for, or (None) when it judges fewer pairs than n×m."""
    if blocking is None:
        return (n + m) * candidates < n * m
    return bool(blocking)


def pairs_bound(n: int, m: int, candidates: int, blocking) -> int:
    if not blocks(n, m, candidates, blocking):
        return n * m
    return min(n * m, n * min(candidates, m) + m * min(candidates, n))


def candidate_pairs(session, left_texts, right_texts, candidates: int, model) -> list[tuple]:
    """The pairs near each other (both directions), in (left, right) order."""
    from ..embeddings import embed
    from ..embeddings.vectors import nearest

    vectors = embed(session, left_texts + right_texts, model)
    left, right = vectors[:len(left_texts)], vectors[len(left_texts):]
    found = set()
    by_left, _ = nearest(left, right, candidates)
    for i, row in enumerate(by_left):
        found.update((i, int(j)) for j in row)
    by_right, _ = nearest(right, left, candidates)
    for j, row in enumerate(by_right):
        found.update((int(i), j) for i in row)
    return sorted(found)


def _pair_prompt(left: str, right: str) -> list[dict]:
    return [{"role": "user", "content": rows.items([("left", left), ("right", right)])}]


def join(session, frame, other, condition: str, *, columns=None, other_columns=None,
         blocking: bool | None = None, candidates: int | None = None,
         embedding_model: str | None = None, suffixes=("_left", "_right"), **settings):
    """The matching pairs as a DataFrame: the left row's columns then the right row's (names
    both sides share get `suffixes`); `.attrs["llm"]` holds the pairs judged and whether
    blocking was used. With background=True the embeddings are made first and the judging runs
    as a job (an OperatorJob whose result() is that DataFrame)."""
    system = SYSTEM.format(condition=_condition(condition))
    candidates = _candidates(candidates)
    left_texts, right_texts = rows.texts(frame, columns), rows.texts(other, other_columns)
    n, m = len(left_texts), len(right_texts)
    blocked = blocks(n, m, candidates, blocking)
    if blocked:
        pairs = candidate_pairs(session, left_texts, right_texts, candidates, embedding_model)
    else:
        pairs = [(i, j) for i in range(n) for j in range(m)]
    return plan.run_stage(session, [_pair_prompt(left_texts[i], right_texts[j]) for i, j in pairs],
                          system=system, schema=VERDICT_SCHEMA, settings=settings,
                          finish=lambda result: _pairs_frame(frame, other, pairs, result, suffixes,
                                                             blocked))


def _pairs_frame(frame, other, pairs, result, suffixes, blocked):
    """The matching pairs as rows: the left row's columns, then the right row's."""
    import pandas as pd

    matched = [pair for pair, v in zip(pairs, result) if v is not None and v.get("answer")]
    failed = sum(1 for v in result if v is None)
    left_rows = frame.iloc[[i for i, _ in matched]]
    right_rows = other.iloc[[j for _, j in matched]]
    shared = set(frame.columns) & set(other.columns)
    left_rows = left_rows.rename(columns={c: f"{c}{suffixes[0]}" for c in shared})
    right_rows = right_rows.rename(columns={c: f"{c}{suffixes[1]}" for c in shared})
    out = pd.concat([left_rows.reset_index(drop=True), right_rows.reset_index(drop=True)], axis=1)
    out.index = pd.MultiIndex.from_arrays([frame.index[[i for i, _ in matched]],
                                           other.index[[j for _, j in matched]]],
                                          names=["left", "right"])
    out.attrs["llm"] = {"pairs_judged": len(pairs), "all_pairs": len(frame) * len(other),
                        "blocking": blocked, "failed": failed,
                        **({"job_id": result.job_id} if pairs else {})}
    return out


def estimate(session, frame, other, condition: str, *, columns=None, other_columns=None,
             blocking: bool | None = None, candidates: int | None = None,
             embedding_model: str | None = None, **settings):
    """Calls bounded without embedding anything: every pair, or with blocking at most
    (n+m)·candidates pairs; the first stage's tokens and cost are those of the first pairs."""
    system = SYSTEM.format(condition=_condition(condition))
    candidates = _candidates(candidates)
    left_texts, right_texts = rows.texts(frame, columns), rows.texts(other, other_columns)
    n, m = len(left_texts), len(right_texts)
    bound = pairs_bound(n, m, candidates, blocking)
    sample = [(i, j) for i in range(n) for j in range(m)][:bound] if n * m <= 10_000 else \
        [(i % n, i % m) for i in range(bound)]
    first = plan.estimate_stage(session, [_pair_prompt(left_texts[i], right_texts[j])
                                          for i, j in sample],
                                system=system, schema=VERDICT_SCHEMA, settings=settings)
    if blocks(n, m, candidates, blocking):
        how = (f"blocking by embeddings: each row's {candidates} nearest on the other side, "
               f"≤ ({n}+{m})×{candidates} of {n * m:,} pairs")
        from ..embeddings import not_cached

        embeds = not_cached(session, left_texts + right_texts, embedding_model)
    else:
        how = f"every pair: {n}×{m}"
        embeds = 0
    return plan.OperatorEstimate("join", first.model, bound, how, first, embeddings=embeds)
