"""The SQLite log: the source of truth for history, usage, cost, cache and conversations.

It is a plain SQLite file: its triggers and rollups are plain SQL, so the sqlite3 command line,
sqlite-utils and Datasette can open, query and insert into it (a call inserted by any of them
counts in usage()). This module is the connection: opening (migrations.py brings the schema up
to date), WAL, a busy timeout, every write in a `BEGIN IMMEDIATE` transaction (a deferred
read-then-write transaction can fail or lose rows when several kernels write at once), and the
helpers the stores share. The SQL of each table family lives in its store:

    call_store.py          calls (+ calls_fts): insert, history, threads, details
    conversation_store.py  conversations
    cache_store.py         cache
    usage_store.py         usage rollups (usage_*, latency_buckets): usage(), facets, spend
    template_store.py      templates
    batch/store.py         jobs, job_rows
    comparison/store.py    comparisons, ratings
The first four are mixins of `Log` (`log.call(id)`, `log.usage_rows(...)`); the last three
are modules of functions taking the Log.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Iterable, Iterator, Sequence

from . import log_files, migrations
from .cache_store import CacheStore
from .call_store import CALL_COLUMNS, HISTORY_COLUMNS, CallStore, fts_query  # noqa: F401
from .conversation_store import ConversationStore
from .usage_store import UsageStore

_BUSY_TIMEOUT_MS = 30_000
# SQLite's limit on bound parameters is 999 (older builds): longer IN lists go in chunks.
PARAMETER_CHUNK = 900


class Log(CallStore, ConversationStore, CacheStore, UsageStore):
    """One connection to the log file, shared by the threads of this process under a lock."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.RLock()
        try:
            if path != ":memory:":
                log_files.prepare(path)  # folder 0700, file 0600; warns if others can read it
            self._conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000,
                                         isolation_level=None, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # Reading the schema opens the file: a bad path fails here, at once, with a message
            # that says which setting to fix (not SQLite's "unable to open database file").
            self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except (OSError, sqlite3.DatabaseError) as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise
            raise _unavailable(path, exc) from None
        self._conn.row_factory = sqlite3.Row
        if path != ":memory:":
            self._set_wal()
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        with self.write() as db:
            migrations.apply(db)
        from sqlite_utils import Database

        # sqlite-utils over the same connection (used under self._lock): bulk inserts and
        # row reads; no pragma or plugin of its own touches the connection.
        self.db = Database(self._conn, recursive_triggers=False, execute_plugins=False)

    def _set_wal(self) -> None:
        # Switching to WAL needs a moment without other writers; retry while another kernel is
        # creating the same file.
        for _ in range(50):
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError:
                time.sleep(0.1)
        self._conn.execute("PRAGMA journal_mode = WAL")

    # -- transactions ---------------------------------------------------------------------------

    def write(self):
        return _WriteTransaction(self)

    def read(self, sql: str, params: Sequence | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def rows_where(self, table: str, where: str | None = None, args: Sequence = (), *,
                   order_by: str | None = None, limit: int | None = None,
                   offset: int | None = None, select: str = "*") -> list[dict]:
        """Rows of `table` as dicts (sqlite-utils' rows_where, under this log's lock)."""
        with self._lock:
            return list(self.db[table].rows_where(where, list(args), order_by=order_by,
                                                  select=select, limit=limit, offset=offset))

    def select_in(self, sql: str, values: Iterable, params: Sequence = ()) -> Iterator[tuple]:
        """Run `sql`, whose `{in}` is an IN list of `values` (after `params`), in chunks of
        PARAMETER_CHUNK values; yields plain tuples."""
        values = list(dict.fromkeys(values))
        for start in range(0, len(values), PARAMETER_CHUNK):
            chunk = values[start:start + PARAMETER_CHUNK]
            yield from self._tuples(sql.format(**{"in": ",".join("?" for _ in chunk)}),
                                    [*params, *chunk])

    def _tuples(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Like read(), as plain tuples (about twice as fast to build as sqlite3.Row)."""
        with self._lock:
            cursor = self._conn.cursor()
            cursor.row_factory = None
            return cursor.execute(sql, params).fetchall()

def _unavailable(path: str, exc: BaseException):
    from .errors import LogUnavailable

    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        why = "part of its folder path is a file"
    elif isinstance(exc, IsADirectoryError):
        why = "it is a folder"
    elif isinstance(exc, PermissionError):
        why = "permission denied"
    elif isinstance(exc, OSError):
        why = exc.strerror or str(exc)
    elif "not a database" in str(exc):
        why = "the file is not an SQLite database"
    else:
        why = "SQLite cannot open or create it there"
    return LogUnavailable(f"cannot open the llm-notebook log at {path}: {why}; set "
                          "LLMNotebook.log_path (or $LLM_NOTEBOOK_LOG) to a file in a folder you "
                          "can write to")


class _WriteTransaction:
    """`with log.write() as db:` — BEGIN IMMEDIATE ... COMMIT, rolled back on error.

    busy_timeout makes BEGIN IMMEDIATE wait for other writers; the loop covers the rare
    SQLITE_BUSY that SQLite returns without waiting (e.g. during a WAL checkpoint race).
    """

    def __init__(self, log: Log):
        self.log = log

    def __enter__(self) -> sqlite3.Connection:
        self.log._lock.acquire()
        conn = self.log._conn
        delay = 0.01
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return conn
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    self.log._lock.release()
                    raise
                if time.monotonic() > deadline:
                    self.log._lock.release()
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def __exit__(self, exc_type, exc, tb) -> None:
        conn = self.log._conn
        try:
            if exc_type is None:
                conn.execute("COMMIT")
            else:
                conn.execute("ROLLBACK")
        finally:
            self.log._lock.release()
