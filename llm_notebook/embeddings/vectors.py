"""Vectors as the log stores them and as search compares them (numpy, float32)."""

from __future__ import annotations

import numpy as np


def to_blob(vector) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


def normalized(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), so a dot product is the cosine."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def nearest(queries: np.ndarray, candidates: np.ndarray, k: int,
            chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the indices of its k most similar candidate rows (cosine), best
    first (ties: the lower index first), and their similarities. Queries are compared in chunks,
    so a large join never holds the whole similarity matrix."""
    n, m = queries.shape[0], candidates.shape[0]
    k = max(0, min(k, m))
    if k == 0 or n == 0:
        return np.zeros((n, 0), dtype=int), np.zeros((n, 0), dtype=np.float32)
    right = normalized(candidates).T
    left = normalized(queries)
    indices = np.empty((n, k), dtype=int)
    scores = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        block = left[start:start + chunk] @ right
        top = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < m else \
            np.broadcast_to(np.arange(m), block.shape).copy()
        picked = np.take_along_axis(block, top, axis=1)
        order = np.lexsort((top, -picked), axis=1)
        indices[start:start + chunk] = np.take_along_axis(top, order, axis=1)
        scores[start:start + chunk] = np.take_along_axis(picked, order, axis=1)
    return indices, scores
