"""Append-only, named schema migrations of the SQLite log.

Never edit or reorder a migration that has shipped: add a new one at the end. Each runs once per
database inside the caller's `BEGIN IMMEDIATE` transaction and is recorded in `_migrations`.
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Callable

MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = []


def migration(fn: Callable[[sqlite3.Connection], None]):
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_calls(db: sqlite3.Connection) -> None:
    run_script(db, 
        """
        CREATE TABLE calls (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,              -- unix time the call started
            model TEXT NOT NULL,           -- resolved model id
            provider TEXT,
            endpoint TEXT,
            system TEXT,
            prompt TEXT,                   -- the last user message, for search
            messages TEXT,                 -- JSON list sent to the provider
            options TEXT,                  -- JSON of temperature, max_tokens, ...
            response TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cost REAL,                     -- USD; NULL when the price is unknown
            unpriced INTEGER NOT NULL DEFAULT 0,
            duration_ms REAL,
            ttft_ms REAL,
            status TEXT NOT NULL,          -- ok | error | interrupted | incomplete
            error_kind TEXT,
            error TEXT,                    -- redacted
            attempts INTEGER NOT NULL DEFAULT 1,
            cache_key TEXT,
            cached INTEGER NOT NULL DEFAULT 0,
            conversation_id TEXT,
            parent_id INTEGER,
            notebook TEXT,
            cell_id TEXT,
            job_id TEXT,
            row_key TEXT,
            kernel_session TEXT
        );
        CREATE INDEX calls_ts ON calls(ts);
        CREATE INDEX calls_conversation ON calls(conversation_id, id);
        CREATE INDEX calls_parent ON calls(parent_id);
        CREATE INDEX calls_model_ts ON calls(model, ts);
        CREATE INDEX calls_job ON calls(job_id, row_key);

        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            name TEXT,
            created REAL NOT NULL,
            head_id INTEGER,               -- the latest call of this branch
            forked_from INTEGER,           -- the call this branch started after
            model TEXT,
            system TEXT
        );
        CREATE UNIQUE INDEX conversations_name ON conversations(name) WHERE name IS NOT NULL;

        CREATE TABLE cache (
            key TEXT PRIMARY KEY,
            call_id INTEGER,
            response TEXT NOT NULL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            created REAL NOT NULL
        );
        """
    )


@migration
def m002_calls_fts(db: sqlite3.Connection) -> None:
    run_script(db, 
        """
        CREATE VIRTUAL TABLE calls_fts USING fts5(
            prompt, response, content='calls', content_rowid='id'
        );
        CREATE TRIGGER calls_fts_insert AFTER INSERT ON calls BEGIN
            INSERT INTO calls_fts(rowid, prompt, response) VALUES (new.id, new.prompt, new.response);
        END;
        CREATE TRIGGER calls_fts_delete AFTER DELETE ON calls BEGIN
            INSERT INTO calls_fts(calls_fts, rowid, prompt, response)
            VALUES ('delete', old.id, old.prompt, old.response);
        END;
        CREATE TRIGGER calls_fts_update AFTER UPDATE OF prompt, response ON calls BEGIN
            INSERT INTO calls_fts(calls_fts, rowid, prompt, response)
            VALUES ('delete', old.id, old.prompt, old.response);
            INSERT INTO calls_fts(rowid, prompt, response) VALUES (new.id, new.prompt, new.response);
        END;
        """
    )


@migration
def m003_usage_rollup(db: sqlite3.Connection) -> None:
    # Usage queries must answer in ≤ 0.1 s over a million calls, so a trigger keeps hourly totals
    # per (model, notebook) and latency histograms up to date on every insert, in the same
    # transaction: every writer (any kernel, any process) keeps them right without extra code.
    # Latency histograms use the buckets of bucket_of() below.
    run_script(db, 
        """
        CREATE TABLE usage_hourly (
            hour INTEGER NOT NULL,         -- unix time // 3600
            model TEXT NOT NULL,
            notebook TEXT NOT NULL DEFAULT '',
            calls INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0,
            unpriced INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            cached INTEGER NOT NULL DEFAULT 0,
            duration_ms REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (hour, model, notebook)
        ) WITHOUT ROWID;

        CREATE TABLE usage_latency (
            hour INTEGER NOT NULL,
            model TEXT NOT NULL,
            notebook TEXT NOT NULL DEFAULT '',
            metric TEXT NOT NULL,          -- 'duration' | 'ttft'
            bucket INTEGER NOT NULL,
            n INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (hour, model, notebook, metric, bucket)
        ) WITHOUT ROWID;

        CREATE TRIGGER calls_usage_insert AFTER INSERT ON calls BEGIN
            INSERT INTO usage_hourly (hour, model, notebook, calls, input_tokens, output_tokens,
                                      cost, unpriced, errors, cached, duration_ms)
            VALUES (CAST(new.ts / 3600 AS INTEGER), new.model, COALESCE(new.notebook, ''), 1,
                    COALESCE(new.input_tokens, 0), COALESCE(new.output_tokens, 0),
                    COALESCE(new.cost, 0), new.unpriced, new.status != 'ok', new.cached,
                    COALESCE(new.duration_ms, 0))
            ON CONFLICT (hour, model, notebook) DO UPDATE SET
                calls = calls + 1,
                input_tokens = input_tokens + excluded.input_tokens,
                output_tokens = output_tokens + excluded.output_tokens,
                cost = cost + excluded.cost,
                unpriced = unpriced + excluded.unpriced,
                errors = errors + excluded.errors,
                cached = cached + excluded.cached,
                duration_ms = duration_ms + excluded.duration_ms;

            INSERT INTO usage_latency (hour, model, notebook, metric, bucket, n)
            SELECT CAST(new.ts / 3600 AS INTEGER), new.model, COALESCE(new.notebook, ''),
                   'duration', llmnb_bucket(new.duration_ms), 1
            WHERE new.duration_ms IS NOT NULL AND new.cached = 0
            ON CONFLICT DO UPDATE SET n = n + 1;

            INSERT INTO usage_latency (hour, model, notebook, metric, bucket, n)
            SELECT CAST(new.ts / 3600 AS INTEGER), new.model, COALESCE(new.notebook, ''),
                   'ttft', llmnb_bucket(new.ttft_ms), 1
            WHERE new.ttft_ms IS NOT NULL AND new.cached = 0
            ON CONFLICT DO UPDATE SET n = n + 1;
        END;
        """
    )


def run_script(db: sqlite3.Connection, sql: str) -> None:
    """Run several statements inside the current transaction.

    `executescript` would COMMIT first and break the migration's atomicity, so statements are
    split with sqlite3.complete_statement (which understands trigger bodies) and run one by one.
    """
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            buffer = ""
            if statement:
                db.execute(statement)
    if buffer.strip():
        db.execute(buffer)


def bucket_of(ms: float | None) -> int:
    """Histogram bucket of a latency: quarter powers of two (about 19% wide), 0 below 1 ms."""
    if ms is None or ms < 1:
        return 0
    return min(120, int(4 * math.log2(ms)) + 1)


def bucket_mid_ms(bucket: int) -> float:
    """A representative latency of a bucket (its geometric middle)."""
    if bucket <= 0:
        return 0.5
    return 2 ** ((bucket - 0.5) / 4)


def install_functions(db: sqlite3.Connection) -> None:
    """SQL functions the schema's triggers use; must exist on every connection that writes."""
    db.create_function("llmnb_bucket", 1, bucket_of, deterministic=True)


def apply(db: sqlite3.Connection) -> list[str]:
    """Apply pending migrations; returns the names applied. Caller holds BEGIN IMMEDIATE."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        fn(db)
        db.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)", (name, time.time()))
        applied.append(name)
    return applied


@migration
def m020_templates(db: sqlite3.Connection) -> None:
    # Prompt templates (llm_notebook.templates): every save is a new immutable row; the latest
    # version of a name is the row with the highest version. options/defaults/tags are JSON.
    run_script(db,
        """
        CREATE TABLE templates (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            system TEXT,
            model TEXT,
            options TEXT NOT NULL DEFAULT '{}',
            defaults TEXT NOT NULL DEFAULT '{}',
            tags TEXT NOT NULL DEFAULT '[]',
            message TEXT,
            created REAL NOT NULL,
            UNIQUE (name, version)
        );
        """
    )


@migration
def m010_batch_jobs(db: sqlite3.Connection) -> None:
    # Batch runs (llm_notebook.batch): one `jobs` row per run, one `job_rows` row per finished
    # input row. A row's answer lives in `calls` (job_rows.call_id; for a cache hit, the call
    # that filled the cache), so a job is resumable and reportable from the log alone. Cache
    # hits write no calls row: re-running 10,000 cached rows must not add 10,000 duplicates.
    run_script(db,
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            finished REAL,
            status TEXT NOT NULL,          -- running | done | interrupted | cancelled | budget | stopped
            fingerprint TEXT NOT NULL,     -- digest of every row's request: the same run resumes
            model TEXT NOT NULL,
            prompt TEXT,                   -- the template (or the first prompt of a list)
            system TEXT,
            options TEXT,                  -- JSON
            schema TEXT,                   -- JSON schema of structured output, if any
            rows INTEGER NOT NULL,
            done INTEGER NOT NULL DEFAULT 0,
            ok INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            cached INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0,
            unpriced INTEGER NOT NULL DEFAULT 0,
            notebook TEXT,
            cell_id TEXT,
            kernel_session TEXT
        );
        CREATE INDEX jobs_fingerprint ON jobs(fingerprint, created);
        CREATE INDEX jobs_created ON jobs(created);

        CREATE TABLE job_rows (
            job_id TEXT NOT NULL,
            row INTEGER NOT NULL,          -- 0-based position in the input
            status TEXT NOT NULL,          -- ok | error
            call_id INTEGER,               -- the call that answered (NULL: failed before any call)
            cached INTEGER NOT NULL DEFAULT 0,
            error_kind TEXT,
            error TEXT,                    -- redacted
            attempts INTEGER NOT NULL DEFAULT 0,
            cost REAL,
            PRIMARY KEY (job_id, row)
        ) WITHOUT ROWID;
        """
    )
