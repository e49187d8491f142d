"""Embeddings of texts, cached in the log: `embed(session, texts, model)` → a float32 matrix.

A vector is looked up by (model, SHA-256 of the text) in the log's `embeddings` table (m080),
so embedding a column again, or a query already seen, sends nothing. The texts not cached are
sent in requests of `BATCH` texts (equal texts once) through `providers.embeddings`: litellm's
`aembedding`, the lean client's POST /embeddings, or the embedded model (a second llama.cpp
instance with `embedding=True`, offline). Embeddings are not in the recordings: replaying, the
embedded model computes them again (offline, free); another provider's must be cached.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import EmbeddingsNotRecorded
from . import store, vectors

DEFAULT_MODEL = "local/smollm2"
BATCH = 128                     # texts per embeddings request
TIMEOUT = 120.0                 # seconds per request


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def embed(session, texts: list[str], model: str | None = None) -> np.ndarray:
    """One row per text (float32), from the cache or the provider."""
    from .. import runner

    route = session.resolve(model or DEFAULT_MODEL, {})
    return runner.run(aembed(session, route, list(texts)))


async def aembed(session, route, texts: list[str]) -> np.ndarray:
    hashes = [text_hash(t) for t in texts]
    found = store.get_many(session.log, route.model, hashes)
    missing = list(dict.fromkeys(h for h in hashes if h not in found))
    if missing:
        _refuse_when_replaying(session, route, len(missing))
        from .. import providers

        text_of = dict(zip(hashes, texts))
        await providers.prepare_embeddings(route)
        for start in range(0, len(missing), BATCH):
            chunk = missing[start:start + BATCH]
            got = await providers.embeddings(route, [text_of[h] for h in chunk], timeout=TIMEOUT)
            blobs = [vectors.to_blob(v) for v in got.vectors]
            with session.log.write() as db:
                store.put_many(db, route.model,
                               [(h, len(v), b) for h, v, b in zip(chunk, got.vectors, blobs)],
                               call_id=None)
            found.update(zip(chunk, blobs))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([vectors.from_blob(found[h]) for h in hashes])


def _refuse_when_replaying(session, route, missing: int) -> None:
    from ..call.replay import Replay

    replay = Replay.of(session)
    if replay is not None and replay.strict and route.kind != "local":
        raise EmbeddingsNotRecorded(
            f"{missing} text(s) have no cached {route.model} embedding, and embeddings are not in "
            "the recordings; use model='local/smollm2' (computed offline) or %llm replay auto")


def not_cached(session, texts: list[str], model: str | None = None) -> int:
    """How many different texts have no cached vector for `model` (what embedding would send)."""
    route = session.resolve(model or DEFAULT_MODEL, {})
    hashes = list(dict.fromkeys(text_hash(t) for t in texts))
    return len(hashes) - len(store.get_many(session.log, route.model, hashes))
