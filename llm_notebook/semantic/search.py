"""`embed(column)` and `search(query, k)`: vectors of a column's texts (cached in the log) and
the rows nearest a query by cosine similarity."""

from __future__ import annotations

from ..errors import OperatorArgumentError
from . import rows


def embed(session, frame, columns=None, *, model: str | None = None):
    """A Series of float32 vectors (numpy arrays) on the frame's index."""
    import pandas as pd

    from ..embeddings import embed as embed_texts

    matrix = embed_texts(session, rows.texts(frame, columns), model)
    return pd.Series(list(matrix), index=frame.index, dtype=object)


def search(session, frame, query: str, k: int = 5, *, columns=None, model: str | None = None):
    """The k rows nearest `query`, nearest first, with a `similarity` column (cosine)."""
    from ..embeddings import embed as embed_texts
    from ..embeddings.vectors import nearest

    if not isinstance(query, str) or not query.strip():
        raise OperatorArgumentError("search takes a query text, e.g. df.llm.search('late delivery', k=5)")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise OperatorArgumentError(f"k must be a whole number >= 1, got {k!r}")
    texts = rows.texts(frame, columns)
    matrix = embed_texts(session, texts + [query], model)
    order, scores = nearest(matrix[-1:], matrix[:-1], k)
    out = frame.iloc[list(order[0])].copy()
    out["similarity"] = scores[0]
    return out


def _estimate(session, texts: list[str], model, operator: str):
    import math

    from ..embeddings import BATCH, DEFAULT_MODEL, not_cached
    from .plan import OperatorEstimate

    todo = not_cached(session, texts, model)
    return OperatorEstimate(operator, session.resolve(model or DEFAULT_MODEL, {}).model,
                            math.ceil(todo / BATCH),
                            f"embeddings requests of ≤ {BATCH} texts; the rest are cached",
                            embeddings=todo)


def estimate_embed(session, frame, columns=None, *, model: str | None = None):
    """Embeddings requests `embed` would send (texts not cached yet), without sending any."""
    return _estimate(session, rows.texts(frame, columns), model, "embed")


def estimate_search(session, frame, query: str, k: int = 5, *, columns=None,
                    model: str | None = None):
    return _estimate(session, rows.texts(frame, columns) + [query], model, "search")
