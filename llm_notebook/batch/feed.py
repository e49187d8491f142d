"""The rows of a batch run, a chunk at a time: what keeps a run of a million rows in bounded memory.

A run never builds every row's request up front. The feed builds CHUNK_ROWS rows at a time in a
thread of its own (messages from the DataFrame or list, their cache keys), reads the cache for
the chunk in one query, sets aside rows asking the same request as an earlier row of the chunk,
and hands the rows left to the run's workers. The next chunk is built while the workers send
this one. A chunk's messages and keys live as long as one of its rows is in flight (the row's
sink holds its chunk), so a run holds a few chunks, whatever its size; what it keeps per row for
the whole run is its status and its call id (and its answer, for runs that keep answers: a
comparison's; map and batch read them back from the log when they end).
"""

from __future__ import annotations

import asyncio
import collections
from concurrent.futures import ThreadPoolExecutor

from .. import providers
from .cachekeys import cache_keys
from .inputs import BAD_INPUT

CHUNK_ROWS = 4096

_builder: ThreadPoolExecutor | None = None


def _builder_pool() -> ThreadPoolExecutor:
    global _builder
    if _builder is None:
        _builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-notebook-batch-rows")
    return _builder


class Chunk:
    """Rows [start, start + len(messages)) of a run: their messages and cache keys (None for a
    row that cannot be sent), the rows that failed to make a request, and with replay on the
    rows' keys in the recordings."""

    __slots__ = ("start", "messages", "keys", "errors", "replay_keys")

    def __init__(self, start: int, messages: list, keys: list, errors: dict,
                 replay_keys: list | None = None):
        self.start = start
        self.messages = messages
        self.keys = keys
        self.errors = errors
        self.replay_keys = replay_keys

    def messages_of(self, i: int):
        return self.messages[i - self.start]

    def key_of(self, i: int):
        return self.keys[i - self.start]

    def replay_key_of(self, i: int):
        return self.replay_keys[i - self.start]

    @property
    def stop(self) -> int:
        return self.start + len(self.messages)


def build_chunk(rows, route, options: dict, start: int, stop: int, replay=None) -> Chunk:
    """(any thread) The requests of rows [start, stop) and their cache keys (and their keys in
    the recordings, with a `replay`: call/replay.py)."""
    requests = rows.build(start, stop)
    messages = requests.messages
    keys = cache_keys(route.model, messages, options, route.base_url or route.endpoint)
    errors = requests.errors
    for j, m in enumerate(messages):
        if m is not None and keys[j] is None:
            messages[j] = None
            errors[start + j] = (BAD_INPUT, "the text holds invalid Unicode (lone surrogates); "
                                            "clean it, e.g. with .str.encode('utf-8', 'replace')"
                                            ".str.decode('utf-8'); the row was not sent")
    replay_keys = replay.keys(route, messages, options, keys) if replay is not None else None
    return Chunk(start, messages, keys, errors, replay_keys)


def chunks(rows, route, options: dict, size: int = CHUNK_ROWS, replay=None):
    """Every chunk of `rows`, built in this thread (estimates, Batch API files, replay checks)."""
    for start in range(0, rows.n, size):
        yield build_chunk(rows, route, options, start, min(rows.n, start + size), replay)


class Feed:
    """Hands a run's workers the rows to send, one at a time, building chunks as they go."""

    def __init__(self, run, *, size: int = CHUNK_ROWS):
        self.run = run
        self.size = size
        self.next_start = 0
        self.ready: collections.deque = collections.deque()   # (row, chunk) to send
        self.lock = asyncio.Lock()
        self.ahead: asyncio.Future | None = None
        self.prepared = False

    def _build(self, start: int) -> asyncio.Future:
        run = self.run
        stop = min(run.n, start + self.size)
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(_builder_pool(), build_chunk, run.rows, run.route, run.options,
                                    start, stop, run.replay)

    async def take(self):
        """The next (row, chunk) to send, or None when the input is used up or the run stops."""
        while True:
            if self.ready:
                return self.ready.popleft()
            if self.run.stop_reason is not None:
                return None
            async with self.lock:
                if self.ready:
                    continue
                if self.next_start >= self.run.n and self.ahead is None:
                    return None
                await self._load()

    async def next_chunk(self) -> tuple[Chunk, list] | None:
        """The next chunk whose rows are to be sent, with the cached and duplicate rows taken
        care of (for runs that send rows some other way: the Batch API)."""
        async with self.lock:
            while self.next_start < self.run.n or self.ahead is not None:
                chunk, todo = await self._prepare_next()
                if todo:
                    return chunk, todo
            return None

    async def _load(self) -> None:
        chunk, todo = await self._prepare_next()
        self.ready.extend((i, chunk) for i in todo)

    async def _prepare_next(self):
        run = self.run
        if self.ahead is None:
            self.ahead = self._build(self.next_start)
            self.next_start = min(run.n, self.next_start + self.size)
        chunk = await self.ahead
        self.ahead = None
        if self.next_start < run.n:   # build the next chunk while this one is sent
            self.ahead = self._build(self.next_start)
            self.next_start = min(run.n, self.next_start + self.size)
        todo = await run.take_chunk(chunk)
        if todo and not self.prepared:
            providers.check_key(run.route)   # (resolved without its key while replaying)
            await providers.prepare(run.route)
            self.prepared = True
        return chunk, todo

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.cancel()
            self.ahead = None
