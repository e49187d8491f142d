"""Embeddings of texts, cached in the log: `embed(session, texts, model)` → a float32 matrix.

A vector is looked up by (model, SHA-256 of the text) in the log's `embeddings` table (m080),
so embedding a column again, or a query already seen, sends nothing. The texts not cached are
sent in requests of `BATCH` texts (equal texts once) through `providers.embeddings`: litellm's
`aembedding`, the lean client's POST /embeddings, or the embedded model (a second llama.cpp
instance with `embedding=True`, offline). Each request is a row of the `calls` log (its prompt
says how many texts; tokens and cost priced like any call, so usage and the session/day budgets
count it; a request whose estimate could cross a budget is refused before it is sent).
Embeddings are not in the recordings: replaying, the embedded model computes them again
(offline, free); another provider's must be cached.
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
    """(An empty text, e.g. a missing cell, is a zero vector, near nothing: providers refuse
    empty input.)"""
    hashes = [text_hash(t) if t.strip() else None for t in texts]
    found = store.get_many(session.log, route.model, [h for h in hashes if h is not None])
    missing = list(dict.fromkeys(h for h in hashes if h is not None and h not in found))
    if missing:
        _refuse_when_replaying(session, route, len(missing))
        from .. import providers

        text_of = dict(zip(hashes, texts))
        providers.check_key(route)
        await providers.prepare_embeddings(route)
        for start in range(0, len(missing), BATCH):
            chunk = missing[start:start + BATCH]
            found.update(await _request(session, route, chunk, [text_of[h] for h in chunk]))
    width = len(vectors.from_blob(next(iter(found.values())))) if found else 1
    if not texts:
        return np.zeros((0, width), dtype=np.float32)
    empty = np.zeros(width, dtype=np.float32)
    return np.stack([vectors.from_blob(found[h]) if h is not None else empty for h in hashes])


async def _request(session, route, hashes: list[str], texts: list[str]) -> dict[str, bytes]:
    """One embeddings request, logged as a call (its row and its vectors in one transaction);
    a failed one is logged with its error and raised."""
    import time

    from .. import budget, pricing, providers, tokens
    from ..call import outcome as outcomes
    from ..errors import LLMError

    price = pricing.pricer(route.model, session.config.prices)
    estimated = sum(tokens.estimate_prompt([{"content": t}]) for t in texts)
    budget.check_run(session, price(estimated, 0), what=f"embedding {len(texts)} texts")
    ts, started = time.time(), time.perf_counter()
    try:
        got = await providers.embeddings(route, texts, timeout=TIMEOUT)
    except LLMError as exc:
        row = _row(session, route, texts, outcomes.failed(
            exc, ts=ts, duration_ms=(time.perf_counter() - started) * 1000, attempts=1))
        row["id"] = session.log.insert_call(row)
        session._notify(row)
        raise
    used = got.input_tokens if got.input_tokens is not None else estimated
    result = outcomes.Outcome("ok", "", ts, (time.perf_counter() - started) * 1000, attempts=1,
                              input_tokens=used, output_tokens=0, cost=price(used, 0))
    blobs = [vectors.to_blob(v) for v in got.vectors]
    row = _row(session, route, texts, result)
    with session.log.write() as db:
        row["id"] = session.log.insert_calls_into(db, [row])[0]
        store.put_many(db, route.model, [(h, len(v), b) for h, v, b in
                                         zip(hashes, got.vectors, blobs)], call_id=row["id"])
    if result.cost:
        session.spent += result.cost
    session._notify(row)
    return dict(zip(hashes, blobs))


def _row(session, route, texts: list[str], result) -> dict:
    """The request's row of `calls`: its prompt says how many texts (not the texts)."""
    from .. import context
    from ..call import outcome as outcomes

    base = outcomes.base_row(route, {"embeddings": len(texts)},
                             kernel_session=session.kernel_session,
                             context={"notebook": context.notebook_path(),
                                      "cell_id": context.cell_id()}, system=None)
    return result.row(base, [{"role": "user", "content": f"[embeddings of {len(texts)} texts]"}])


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
    hashes = list(dict.fromkeys(text_hash(t) for t in texts if t.strip()))
    return len(hashes) - len(store.get_many(session.log, route.model, hashes))
