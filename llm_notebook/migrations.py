"""Append-only, named schema migrations of the SQLite log.

Never edit or reorder a migration that has shipped: add a new one at the end. Each runs once per
database inside the caller's `BEGIN IMMEDIATE` transaction and is recorded in `_migrations`.
"""

from __future__ import annotations

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
    # Latency histograms use the buckets of llm_notebook.latency.bucket_of().
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


def apply(db: sqlite3.Connection) -> list[str]:
    """Apply pending migrations; returns the names applied. Caller holds BEGIN IMMEDIATE, so
    an upgrade is all or nothing, and other kernels opening the log wait for it."""
    from . import legacy_histograms

    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    pending = [(name, fn) for name, fn in MIGRATIONS if name not in done]
    # The shipped migrations of the blob-histogram days call their SQL functions: present only
    # while they run (legacy_histograms.py), never on a connection that logs calls.
    legacy = any(name in legacy_histograms.USERS for name, _ in pending)
    if legacy:
        legacy_histograms.install(db)
    try:
        for name, fn in pending:
            fn(db)
            db.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)", (name, time.time()))
    finally:
        if legacy:
            legacy_histograms.remove(db)
    return [name for name, _ in pending]


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


@migration
def m030_compare(db: sqlite3.Connection) -> None:
    # Comparison grids (llm_notebook.compare): one `comparisons` row per grid, and the user's
    # ratings of its cells. A rating is keyed by the cell's request (model, messages, options;
    # comparison/spec.py cell_key), not by the grid, so a grid re-created over the same prompts,
    # models and inputs finds the ratings again. Its cells' answers live in `calls`.
    run_script(db,
        """
        CREATE TABLE comparisons (
            id TEXT PRIMARY KEY,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            prompts TEXT NOT NULL,         -- JSON list of prompt labels
            models TEXT NOT NULL,          -- JSON list of model ids
            inputs INTEGER NOT NULL,       -- number of input rows
            checks TEXT NOT NULL DEFAULT '[]',  -- JSON list of check names
            cells INTEGER NOT NULL,
            ok INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0,
            notebook TEXT,
            cell_id TEXT,
            kernel_session TEXT
        );
        CREATE INDEX comparisons_created ON comparisons(created);

        CREATE TABLE ratings (
            cell_key TEXT PRIMARY KEY,
            thumb INTEGER,                 -- 1 up, -1 down, NULL none
            score REAL,                    -- 0..1, NULL none
            comment TEXT,
            model TEXT,
            prompt TEXT,                   -- the prompt as sent (for reading the log alone)
            output TEXT,                   -- the output that was rated
            call_id INTEGER,
            comparison_id TEXT,
            created REAL NOT NULL,
            updated REAL NOT NULL
        );
        CREATE INDEX ratings_comparison ON ratings(comparison_id);
        """
    )


@migration
def m040_usage_histograms_and_groups(db: sqlite3.Connection) -> None:
    # Usage answers in <= 0.1 s over a million calls only if a query reads a few thousand rollup
    # rows. m003 kept latency histograms as one row per (hour, model, notebook, metric, bucket):
    # ~50 rows per rollup row, read with a sorting GROUP BY, far over budget. Now each rollup
    # row carries its two histograms as blobs (llm_notebook/latency.py), which numpy adds up.
    # by=conversation and by=job get the same rollup in `usage_groups` (kind, key, hour, model,
    # notebook) rather than a scan of `calls`: batch jobs are most of a big log, and an index
    # scan of half a million call rows takes seconds, not milliseconds.
    run_script(db,
        """
        ALTER TABLE usage_hourly ADD COLUMN duration_hist BLOB;
        ALTER TABLE usage_hourly ADD COLUMN ttft_hist BLOB;

        CREATE TABLE usage_groups (
            kind TEXT NOT NULL,            -- 'conversation' | 'job'
            key TEXT NOT NULL,             -- calls.conversation_id | calls.job_id
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
            duration_hist BLOB,            -- latency histograms, see latency.py
            ttft_hist BLOB,
            PRIMARY KEY (kind, key, hour, model, notebook)
        ) WITHOUT ROWID;

        DROP TRIGGER calls_usage_insert;
        DROP TABLE usage_latency;
        """
    )

    def add_to(table: str, keys: dict[str, str], only_if: str = "1") -> str:
        # Create the rollup row if missing, then one UPDATE: the histogram function runs once
        # per histogram and not at all for a missing latency (an upsert would run it twice).
        # Cache hits stay out of the histograms (their ~0 ms would hide real latencies).
        columns, values = ", ".join(keys), ", ".join(keys.values())
        match = " AND ".join(f"{k} = {v}" for k, v in keys.items())
        return f"""
            INSERT OR IGNORE INTO {table} ({columns}) SELECT {values} WHERE {only_if};
            UPDATE {table} SET
                calls = calls + 1,
                input_tokens = input_tokens + COALESCE(new.input_tokens, 0),
                output_tokens = output_tokens + COALESCE(new.output_tokens, 0),
                cost = cost + COALESCE(new.cost, 0),
                unpriced = unpriced + new.unpriced,
                errors = errors + (new.status != 'ok'),
                cached = cached + new.cached,
                duration_ms = duration_ms + COALESCE(new.duration_ms, 0),
                duration_hist = CASE WHEN new.cached OR new.duration_ms IS NULL THEN duration_hist
                                     ELSE llmnb_hist_add(duration_hist, new.duration_ms) END,
                ttft_hist = CASE WHEN new.cached OR new.ttft_ms IS NULL THEN ttft_hist
                                 ELSE llmnb_hist_add(ttft_hist, new.ttft_ms) END
            WHERE {match} AND {only_if};"""

    common = {"hour": "CAST(new.ts / 3600 AS INTEGER)", "model": "new.model",
              "notebook": "COALESCE(new.notebook, '')"}
    run_script(db,
        "CREATE TRIGGER calls_usage_rollup AFTER INSERT ON calls BEGIN"
        + add_to("usage_hourly", common)
        + add_to("usage_groups", {"kind": "'conversation'", "key": "new.conversation_id", **common},
                 "new.conversation_id IS NOT NULL")
        + add_to("usage_groups", {"kind": "'job'", "key": "new.job_id", **common},
                 "new.job_id IS NOT NULL")
        + "\nEND;"
    )

    # Rebuild both rollups from the calls already logged (the same sums the trigger keeps).
    totals = ("count(*), sum(COALESCE(input_tokens, 0)), sum(COALESCE(output_tokens, 0)), "
              "sum(COALESCE(cost, 0)), sum(unpriced), sum(status != 'ok'), sum(cached), "
              "sum(COALESCE(duration_ms, 0)), "
              "llmnb_hist_agg(CASE WHEN cached THEN NULL ELSE duration_ms END), "
              "llmnb_hist_agg(CASE WHEN cached THEN NULL ELSE ttft_ms END)")
    columns = ("calls, input_tokens, output_tokens, cost, unpriced, errors, cached, duration_ms, "
               "duration_hist, ttft_hist")
    hour_model_notebook = "CAST(ts / 3600 AS INTEGER), model, COALESCE(notebook, '')"
    db.execute("DELETE FROM usage_hourly")
    db.execute(f"INSERT INTO usage_hourly (hour, model, notebook, {columns}) "
               f"SELECT {hour_model_notebook}, {totals} FROM calls GROUP BY 1, 2, 3")
    for kind, column in (("conversation", "conversation_id"), ("job", "job_id")):
        db.execute(f"INSERT INTO usage_groups (kind, key, hour, model, notebook, {columns}) "
                   f"SELECT '{kind}', {column}, {hour_model_notebook}, {totals} FROM calls "
                   f"WHERE {column} IS NOT NULL GROUP BY 1, 2, 3, 4, 5")


@migration
def m041_usage_daily_rollups(db: sqlite3.Connection) -> None:
    # A million calls spread over many notebooks and models make ~100k hourly rollup rows:
    # too many to add up in 0.1 s. Usage over whole days reads daily rollups instead, each
    # keyed first by what it is grouped by, so SQLite adds them up without sorting:
    #   usage_model_daily (model, day), usage_notebook_daily (notebook, day) for by=model/day/
    #   notebook with at most one of the two filters; usage_daily (day, model, notebook) when
    #   both matter; usage_hour_totals (hour) for by=hour without filters.
    # usage_hourly still serves the whole hours of partial days, and filtered by=hour.
    # Every table gets the same sums and histograms (llm_notebook/latency.py).
    sums = """
            calls INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0,
            unpriced INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            cached INTEGER NOT NULL DEFAULT 0,
            duration_ms REAL NOT NULL DEFAULT 0,
            duration_hist BLOB,
            ttft_hist BLOB,"""
    run_script(db,
        f"""
        CREATE TABLE usage_daily (
            day INTEGER NOT NULL,          -- unix time // 86400 (UTC days)
            model TEXT NOT NULL,
            notebook TEXT NOT NULL DEFAULT '',{sums}
            PRIMARY KEY (day, model, notebook)
        ) WITHOUT ROWID;

        CREATE TABLE usage_model_daily (
            model TEXT NOT NULL,
            day INTEGER NOT NULL,{sums}
            PRIMARY KEY (model, day)
        ) WITHOUT ROWID;

        CREATE TABLE usage_notebook_daily (
            notebook TEXT NOT NULL DEFAULT '',
            day INTEGER NOT NULL,{sums}
            PRIMARY KEY (notebook, day)
        ) WITHOUT ROWID;

        CREATE TABLE usage_hour_totals (
            hour INTEGER NOT NULL PRIMARY KEY,{sums[:-1]}
        ) WITHOUT ROWID;

        DROP TRIGGER calls_usage_rollup;
        """
    )

    def add_to(table: str, keys: dict[str, str], only_if: str = "1") -> str:
        # Create the rollup row if missing, then one UPDATE: the histogram function runs once
        # per histogram and not at all for a missing latency (an upsert would run it twice).
        # Cache hits stay out of the histograms (their ~0 ms would hide real latencies).
        columns, values = ", ".join(keys), ", ".join(keys.values())
        match = " AND ".join(f"{k} = {v}" for k, v in keys.items())
        return f"""
            INSERT OR IGNORE INTO {table} ({columns}) SELECT {values} WHERE {only_if};
            UPDATE {table} SET
                calls = calls + 1,
                input_tokens = input_tokens + COALESCE(new.input_tokens, 0),
                output_tokens = output_tokens + COALESCE(new.output_tokens, 0),
                cost = cost + COALESCE(new.cost, 0),
                unpriced = unpriced + new.unpriced,
                errors = errors + (new.status != 'ok'),
                cached = cached + new.cached,
                duration_ms = duration_ms + COALESCE(new.duration_ms, 0),
                duration_hist = CASE WHEN new.cached OR new.duration_ms IS NULL THEN duration_hist
                                     ELSE llmnb_hist_add(duration_hist, new.duration_ms) END,
                ttft_hist = CASE WHEN new.cached OR new.ttft_ms IS NULL THEN ttft_hist
                                 ELSE llmnb_hist_add(ttft_hist, new.ttft_ms) END
            WHERE {match} AND {only_if};"""

    hour = "CAST(new.ts / 3600 AS INTEGER)"
    day = "CAST(new.ts / 86400 AS INTEGER)"
    notebook = "COALESCE(new.notebook, '')"
    hourly = {"hour": hour, "model": "new.model", "notebook": notebook}
    run_script(db,
        "CREATE TRIGGER calls_usage_rollups AFTER INSERT ON calls BEGIN"
        + add_to("usage_hourly", hourly)
        + add_to("usage_daily", {"day": day, "model": "new.model", "notebook": notebook})
        + add_to("usage_model_daily", {"model": "new.model", "day": day})
        + add_to("usage_notebook_daily", {"notebook": notebook, "day": day})
        + add_to("usage_hour_totals", {"hour": hour})
        + add_to("usage_groups", {"kind": "'conversation'", "key": "new.conversation_id", **hourly},
                 "new.conversation_id IS NOT NULL")
        + add_to("usage_groups", {"kind": "'job'", "key": "new.job_id", **hourly},
                 "new.job_id IS NOT NULL")
        + "\nEND;"
    )

    # Fill the new tables from usage_hourly (kept right by m003/m040 until now).
    columns = ("calls, input_tokens, output_tokens, cost, unpriced, errors, cached, duration_ms, "
               "duration_hist, ttft_hist")
    added = ("sum(calls), sum(input_tokens), sum(output_tokens), sum(cost), sum(unpriced), "
             "sum(errors), sum(cached), sum(duration_ms), llmnb_hist_sum(duration_hist), "
             "llmnb_hist_sum(ttft_hist)")
    for table, keys, exprs in (
        ("usage_daily", "day, model, notebook", "hour / 24, model, notebook"),
        ("usage_model_daily", "model, day", "model, hour / 24"),
        ("usage_notebook_daily", "notebook, day", "notebook, hour / 24"),
        ("usage_hour_totals", "hour", "hour"),
    ):
        groups = ", ".join(str(i + 1) for i in range(keys.count(",") + 1))
        db.execute(f"INSERT INTO {table} ({keys}, {columns}) SELECT {exprs}, {added} "
                   f"FROM usage_hourly GROUP BY {groups}")


@migration
def m042_usage_hourly_indexes(db: sqlite3.Connection) -> None:
    # usage(by="hour", model=... or notebook=...) reads usage_hourly for one model or notebook:
    # without these, a scan of every hourly row (~100k for a million calls). An index entry is
    # only written when a rollup row is created, not on every logged call.
    run_script(db,
        """
        CREATE INDEX IF NOT EXISTS usage_hourly_model ON usage_hourly(model, hour);
        CREATE INDEX IF NOT EXISTS usage_hourly_notebook ON usage_hourly(notebook, hour);
        """
    )


@migration
def m043_usage_group_totals(db: sqlite3.Connection) -> None:
    # usage(by="conversation" or "job") over the whole log: one row per conversation or job,
    # so thousands of conversations are read without adding up their hourly rows (which costs
    # a Python call per row and per group). Filtered queries still read usage_groups.
    run_script(db,
        """
        CREATE TABLE usage_group_totals (
            kind TEXT NOT NULL,            -- 'conversation' | 'job'
            key TEXT NOT NULL,
            calls INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0,
            unpriced INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            cached INTEGER NOT NULL DEFAULT 0,
            duration_ms REAL NOT NULL DEFAULT 0,
            duration_hist BLOB,
            ttft_hist BLOB,
            PRIMARY KEY (kind, key)
        ) WITHOUT ROWID;
        """
    )

    def add_to(kind: str, column: str) -> str:
        # As m041's rollup trigger does: create the row if missing, then one UPDATE.
        only_if = f"new.{column} IS NOT NULL"
        return f"""
            INSERT OR IGNORE INTO usage_group_totals (kind, key)
                SELECT '{kind}', new.{column} WHERE {only_if};
            UPDATE usage_group_totals SET
                calls = calls + 1,
                input_tokens = input_tokens + COALESCE(new.input_tokens, 0),
                output_tokens = output_tokens + COALESCE(new.output_tokens, 0),
                cost = cost + COALESCE(new.cost, 0),
                unpriced = unpriced + new.unpriced,
                errors = errors + (new.status != 'ok'),
                cached = cached + new.cached,
                duration_ms = duration_ms + COALESCE(new.duration_ms, 0),
                duration_hist = CASE WHEN new.cached OR new.duration_ms IS NULL THEN duration_hist
                                     ELSE llmnb_hist_add(duration_hist, new.duration_ms) END,
                ttft_hist = CASE WHEN new.cached OR new.ttft_ms IS NULL THEN ttft_hist
                                 ELSE llmnb_hist_add(ttft_hist, new.ttft_ms) END
            WHERE kind = '{kind}' AND key = new.{column} AND {only_if};"""

    run_script(db,
        "CREATE TRIGGER calls_usage_group_totals AFTER INSERT ON calls "
        "WHEN new.conversation_id IS NOT NULL OR new.job_id IS NOT NULL BEGIN"
        + add_to("conversation", "conversation_id") + add_to("job", "job_id") + "\nEND;"
    )
    db.execute(
        "INSERT INTO usage_group_totals (kind, key, calls, input_tokens, output_tokens, cost, "
        "unpriced, errors, cached, duration_ms, duration_hist, ttft_hist) "
        "SELECT kind, key, sum(calls), sum(input_tokens), sum(output_tokens), sum(cost), "
        "sum(unpriced), sum(errors), sum(cached), sum(duration_ms), llmnb_hist_sum(duration_hist), "
        "llmnb_hist_sum(ttft_hist) FROM usage_groups GROUP BY kind, key")


# The usage rollup tables, with the columns (besides the sums) that key each row.
ROLLUPS = {
    "usage_hourly": ("hour", "model", "notebook"),
    "usage_daily": ("day", "model", "notebook"),
    "usage_model_daily": ("model", "day"),
    "usage_notebook_daily": ("notebook", "day"),
    "usage_hour_totals": ("hour",),
    "usage_groups": ("kind", "key", "hour", "model", "notebook"),
    "usage_group_totals": ("kind", "key"),
}


@migration
def m050_plain_sql_usage_rollups(db: sqlite3.Connection) -> None:
    # A log any tool can read and write. Until now the rollup triggers called Python functions
    # registered on our own connection (llmnb_hist_add): a call inserted by the sqlite3 command
    # line, sqlite-utils or Datasette failed with "no such function". Now:
    # - `latency_buckets` holds the histogram buckets' bounds (llm_notebook/latency.py);
    # - each rollup row's histograms are JSON objects {"<bucket>": <calls>} in the new columns
    #   duration_buckets / ttft_buckets (converted from the old blobs, which are dropped);
    # - one trigger keeps every rollup in plain SQL (json_set, a bucket looked up in SQL).
    from sqlite_utils import Database

    from . import latency, legacy_histograms

    database = Database(db, recursive_triggers=False, execute_plugins=False)
    buckets = database["latency_buckets"]
    buckets.create({"bucket": int, "low_ms": float, "high_ms": float}, pk="bucket",
                   not_null={"low_ms", "high_ms"})
    buckets.create_index(["low_ms"], unique=True)
    buckets.insert_all(latency.bucket_table_rows())

    run_script(db, """
        DROP TRIGGER IF EXISTS calls_usage_rollups;
        DROP TRIGGER IF EXISTS calls_usage_group_totals;
        """)
    for table, keys in ROLLUPS.items():
        rollup = database[table]
        rollup.add_column("duration_buckets", str)
        rollup.add_column("ttft_buckets", str)
        match = " AND ".join(f"{k} = ?" for k in keys)
        old = db.execute(f"SELECT {', '.join(keys)}, duration_hist, ttft_hist FROM {table} "
                         "WHERE duration_hist IS NOT NULL OR ttft_hist IS NOT NULL").fetchall()
        db.executemany(
            f"UPDATE {table} SET duration_buckets = ?, ttft_buckets = ? WHERE {match}",
            [(legacy_histograms.blob_to_json(r[-2]), legacy_histograms.blob_to_json(r[-1]),
              *r[:-2]) for r in old])
        db.execute(f"ALTER TABLE {table} DROP COLUMN duration_hist")
        db.execute(f"ALTER TABLE {table} DROP COLUMN ttft_hist")
    run_script(db, rollup_trigger_sql("calls_usage_rollups"))


def rollup_trigger_sql(name: str, untimed: str = "new.cached") -> str:
    """The trigger that adds each new call to every usage rollup, in plain SQL. Calls for which
    `untimed` holds add nothing to the latency histograms."""
    hour = "CAST(new.ts / 3600 AS INTEGER)"
    day = "CAST(new.ts / 86400 AS INTEGER)"
    notebook = "COALESCE(new.notebook, '')"
    hourly = {"hour": hour, "model": "new.model", "notebook": notebook}
    conversation = "new.conversation_id IS NOT NULL"
    job = "new.job_id IS NOT NULL"
    return (
        f"CREATE TRIGGER {name} AFTER INSERT ON calls BEGIN"
        + _add_call_to("usage_hourly", hourly, untimed=untimed)
        + _add_call_to("usage_daily", {"day": day, "model": "new.model", "notebook": notebook},
                       untimed=untimed)
        + _add_call_to("usage_model_daily", {"model": "new.model", "day": day}, untimed=untimed)
        + _add_call_to("usage_notebook_daily", {"notebook": notebook, "day": day},
                       untimed=untimed)
        + _add_call_to("usage_hour_totals", {"hour": hour}, untimed=untimed)
        + _add_call_to("usage_groups", {"kind": "'conversation'", "key": "new.conversation_id",
                                        **hourly}, conversation, untimed=untimed)
        + _add_call_to("usage_groups", {"kind": "'job'", "key": "new.job_id", **hourly}, job,
                       untimed=untimed)
        + _add_call_to("usage_group_totals", {"kind": "'conversation'",
                                              "key": "new.conversation_id"}, conversation,
                       untimed=untimed)
        + _add_call_to("usage_group_totals", {"kind": "'job'", "key": "new.job_id"}, job,
                       untimed=untimed)
        + "\nEND;")


# What each rollup row adds up, per call (the columns of rollup.TOTALS).
_ADDED_PER_CALL = {
    "calls": "1",
    "input_tokens": "COALESCE(new.input_tokens, 0)",
    "output_tokens": "COALESCE(new.output_tokens, 0)",
    "cost": "COALESCE(new.cost, 0)",
    "unpriced": "new.unpriced",
    "errors": "(new.status != 'ok')",
    "cached": "new.cached",
    "duration_ms": "COALESCE(new.duration_ms, 0)",
}


def _add_call_to(table: str, keys: dict[str, str], only_if: str = "1", *,
                 untimed: str = "new.cached") -> str:
    """Create the rollup row if missing, then add the call to its sums and histograms. Cache
    hits (and whatever else `untimed` names) stay out of the histograms (their ~0 ms would hide
    real latencies)."""
    from .latency import histogram_update_sql

    columns, values = ", ".join(keys), ", ".join(keys.values())
    match = " AND ".join(f"{k} = {v}" for k, v in keys.items())
    sums = ",\n            ".join(f"{c} = {c} + {v}" for c, v in _ADDED_PER_CALL.items())
    histograms = ",\n            ".join(
        f"{hist} = CASE WHEN {untimed} OR {ms} IS NULL THEN {hist} "
        f"ELSE {histogram_update_sql(hist, ms)} END"
        for hist, ms in (("duration_buckets", "new.duration_ms"), ("ttft_buckets", "new.ttft_ms")))
    return f"""
        INSERT OR IGNORE INTO {table} ({columns}) SELECT {values} WHERE {only_if};
        UPDATE {table} SET
            {sums},
            {histograms}
        WHERE {match} AND {only_if};"""


@migration
def m051_calls_fts_as_sqlite_utils_sets_it_up(db: sqlite3.Connection) -> None:
    # The full-text index of m002 said content='calls' (single quotes): sqlite-utils and
    # Datasette look for content=[calls] or content="calls" to find a table's index, so they
    # offered no search over calls. sqlite-utils sets the index up the way they expect (its
    # triggers calls_ai/_ad/_au keep it current) and fills it from the calls already logged.
    from sqlite_utils import Database

    run_script(db, """
        DROP TRIGGER IF EXISTS calls_fts_insert;
        DROP TRIGGER IF EXISTS calls_fts_delete;
        DROP TRIGGER IF EXISTS calls_fts_update;
        DROP TABLE IF EXISTS calls_fts;
        """)
    database = Database(db, recursive_triggers=False, execute_plugins=False)
    database["calls"].enable_fts(["prompt", "response"], fts_version="FTS5",
                                 create_triggers=True)


@migration
def m052_calls_replayed(db: sqlite3.Connection) -> None:
    # A call answered from a notebook's recordings (llm_notebook/call/replay.py) is logged as
    # replayed: nothing was sent and it cost nothing. Its time is a file read's, so like a cache
    # hit it stays out of the latency histograms: the rollup trigger is made again to say so.
    from sqlite_utils import Database

    database = Database(db, recursive_triggers=False, execute_plugins=False)
    database["calls"].add_column("replayed", int, not_null_default=0)
    run_script(db, "DROP TRIGGER IF EXISTS calls_usage_rollups;")
    run_script(db, rollup_trigger_sql("calls_usage_rollups", untimed="new.cached OR new.replayed"))


@migration
def m060_background_jobs_and_provider_batches(db: sqlite3.Connection) -> None:
    # Batch jobs that run in the background or through a provider's Batch API (issue 17).
    # jobs.via: 'calls' (one request per row) or 'batch_api'. jobs.background: the user got a
    # Job back at once; the lab extension tells when such a job ends (it polls `finished`).
    # jobs.owner_host/owner_pid: the process running a 'running' or 'queued' job, so a kernel
    # that died is known at once (its job resumes) instead of after STALE_AFTER seconds.
    # job_batches: one row per provider batch of a job (a job of more rows than a provider
    # batch takes has several): its ids at the provider, the input rows it covers, its status;
    # `recorded` once its answers are in `calls`. After a kernel restart the job's provider
    # batches are picked up from here.
    from sqlite_utils import Database

    database = Database(db, recursive_triggers=False, execute_plugins=False)
    jobs = database["jobs"]
    jobs.add_column("via", str, not_null_default="calls")
    jobs.add_column("background", int, not_null_default=0)
    jobs.add_column("owner_host", str)
    jobs.add_column("owner_pid", int)
    jobs.create_index(["background", "finished"], index_name="jobs_background_finished")
    database["job_batches"].create({
        "job_id": str,
        "part": int,                  # 0, 1, ... in the order submitted
        "batch_id": str,              # the provider's batch id
        "input_file_id": str,
        "first_row": int,             # the input rows [first_row, end_row) it was built from
        "end_row": int,
        "requests": int,              # lines in its input file
        "status": str,                # the provider's word: validating, in_progress, completed...
        "output_file_id": str,
        "error_file_id": str,
        "completed": int,             # the provider's request counts
        "failed": int,
        "submitted": float,
        "updated": float,
        "recorded": int,              # 1 once every line is logged
        "error": str,                 # why a batch failed as a whole (redacted)
    }, pk=("job_id", "part"), not_null={"job_id", "part", "batch_id", "first_row", "end_row",
                                        "requests", "status", "submitted", "updated", "recorded"},
        defaults={"recorded": 0, "completed": 0, "failed": 0})


@migration
def m070_workflows(db: sqlite3.Connection) -> None:
    # Workflows (llm_notebook/workflows): every save is a new immutable version, like templates;
    # `steps` is the JSON list of step definitions (data only: Python steps name a function, they
    # never hold code). `workflow_results` keeps what finished steps produced, keyed by a hash of
    # the step's definition and its input (workflows/keys.py), so an unchanged step is skipped:
    # the columns an LLM step added, or the rows a filter kept, as JSON.
    from sqlite_utils import Database

    database = Database(db, recursive_triggers=False, execute_plugins=False)
    workflows = database["workflows"]
    workflows.create({"id": int, "name": str, "version": int, "description": str, "steps": str,
                      "tags": str, "message": str, "created": float}, pk="id",
                     not_null={"name", "version", "steps", "tags", "created"},
                     defaults={"tags": "[]"})
    workflows.create_index(["name", "version"], unique=True)
    results = database["workflow_results"]
    results.create({"key": str, "workflow": str, "step": str, "kind": str, "rows": int,
                    "data": str, "created": float}, pk="key",
                   not_null={"data", "created"})
    results.create_index(["workflow", "step", "created"])


@migration
def m080_embeddings(db: sqlite3.Connection) -> None:
    # Embeddings are cached like answers (llm_notebook/embeddings/): one vector per model and
    # text, as little-endian float32 bytes; the call that computed it is in `calls`.
    from sqlite_utils import Database

    database = Database(db, recursive_triggers=False, execute_plugins=False)
    database["embeddings"].create(
        {"model": str, "text_sha256": str, "dimensions": int, "vector": bytes, "call_id": int,
         "created": float},
        pk=("model", "text_sha256"), not_null={"dimensions", "vector", "created"})
