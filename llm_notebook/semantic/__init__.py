"""Semantic operators over DataFrames (`df.llm.filter / classify / extract / topk / join / agg /
embed / search`), each built on the batch engine (`Session.batch`), so pacing, retries, the
cache, budgets, progress and the log are those of any batch run. Each operator has an
`estimate` that says how many calls it makes at most, and why (plan.OperatorEstimate).

| module | job |
|---|---|
| `rows.py` | a row as the text a model judges; several rows as numbered items |
| `plan.py` | one stage of calls on the batch engine; a stage's estimate; the operator estimate |
| `judgements.py` | filter (boolean), classify (enum), extract (map with a schema): one call a row |
| `topk.py` | a listwise tournament with a bounded number of calls |
| `join.py` | pairs judged by a condition, blocked by embeddings when that is cheaper |
| `agg.py` | one answer over all rows, folded level by level to fit the context window |
| `search.py` | a column's embeddings and nearest rows to a query |
"""

from .judgements import filter_mask

__all__ = ["filter_mask"]
