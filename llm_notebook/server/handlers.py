"""REST handlers under `<base_url>/llm-notebook/api/`, read by the JupyterLab sidebar.

All are GET and read the same SQLite log the kernels write. Every one is authenticated and
authorized: jupyter_server's authorizer is asked for "read" on the resource `llm_notebook`, so a
deployment can refuse identities that must not see the history. Parameters are validated
(params.py): a bad one answers 400 with `{"message": ...}`, never a 500. Answers are bounded
(rows, characters per text, and bytes in all) and name no file on the server: the log is named
by its file name only, notebooks outside the server's root by theirs. Queries run on a small
thread pool so a slow disk never blocks the server's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from ..call_store import CALL_FIELDS
from ..errors import LogUnavailable
from .params import BadParam, Param, choice, integer, parse_query, text, timestamp

API_PREFIX = "llm-notebook/api"
# What jupyter_server's authorizer is asked about (action "read" for GET).
AUTH_RESOURCE = "llm_notebook"
# Bounds of every answer. A call's page is the largest: its own texts (5 × FIELD_LIMIT), its
# latest messages (MESSAGES_LIMIT × MAX_PREVIEW) and its thread's latest calls (THREAD_LIMIT × 4
# texts × MAX_PREVIEW): at most 5.5 million characters, under MAX_REPLY_BYTES even if every one
# took 4 bytes. A history page can ask for more (500 rows × 20,000 characters): it gets a 413
# that says to ask for fewer.
DEFAULT_PREVIEW = 400
MAX_PREVIEW = 20_000          # characters of a text in a history row, a thread, a message
FIELD_LIMIT = 100_000         # characters of each text of the call a page is about
THREAD_LIMIT = 50             # calls of a thread (the latest ones)
MESSAGES_LIMIT = 50           # messages of a call (the latest ones)
ROWS_LIMIT = 5_000            # rows of a usage table, templates listed
MAX_REPLY_BYTES = 24 * 1024 * 1024
_CONVERSATION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_log = logging.getLogger("llm_notebook.server")


class LogAccess:
    """The server's one connection to the log, opened on first use, used from a thread pool."""

    def __init__(self, path: str, root_dir: str):
        self.path = path
        self.root_dir = os.path.abspath(os.path.expanduser(root_dir or os.getcwd()))
        self._log = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="llm-notebook-log")

    def _get(self):
        with self._lock:
            if self._log is None:
                from ..log import Log

                self._log = Log(self.path)
            return self._log

    async def run(self, fn: Callable, *args, **kwargs) -> Any:
        def job():
            return fn(self._get(), *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._pool, job)

    # Kernels log the notebook's absolute path (jupyter_server's JPY_SESSION_NAME); the lab
    # speaks in paths relative to the server's root dir.
    def absolute_notebook(self, path: str | None) -> str | None:
        if path is None or os.path.isabs(path):
            return path
        return os.path.normpath(os.path.join(self.root_dir, path))

    def relative_notebook(self, path: str | None) -> str | None:
        """A notebook as the lab names it; one outside the root by its file name alone (no
        answer names a place on the server's disk)."""
        if not path or not os.path.isabs(path):
            return path
        rel = os.path.relpath(path, self.root_dir)
        return os.path.basename(path) if rel.startswith("..") else rel.replace(os.sep, "/")

    def inside_root(self, path: str | None) -> bool:
        return bool(path) and (not os.path.isabs(path)
                               or not os.path.relpath(path, self.root_dir).startswith(".."))

    @property
    def name(self) -> str:
        """The log's file name (its folder is the server's business)."""
        return os.path.basename(self.path)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None


class _LogHandler(APIHandler):
    """Validated params in, JSON out; every route of the extension derives from this."""

    accepted: tuple[Param, ...] = ()
    auth_resource = AUTH_RESOURCE

    @property
    def access(self) -> LogAccess:
        return self.settings["llm_notebook_log"]

    def params(self) -> dict[str, Any]:
        return parse_query(self.request.query_arguments, self.accepted)

    def reply(self, payload: Any) -> None:
        body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
        if len(body) > MAX_REPLY_BYTES:  # the per-field and per-row caps keep far below this
            self.set_status(413)
            body = json.dumps({"message": f"the answer would be {len(body) // 2**20} MB; ask "
                                          "for fewer rows or shorter previews"}).encode("utf-8")
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.reply({"message": message})

    async def answer(self, produce: Callable[[], Any]) -> None:
        """Run `produce` (a coroutine function) and reply with its result or a clean error."""
        try:
            self.reply(await produce())
        except BadParam as exc:
            self.fail(400, str(exc))
        except _NotFound as exc:
            self.fail(404, str(exc))
        except sqlite3.OperationalError as exc:
            if "fts5" in str(exc).lower() or "match" in str(exc).lower():
                self.fail(400, "the search text could not be used; try plain words")
            else:
                self._unavailable(exc)
        except (LogUnavailable, sqlite3.Error, OSError) as exc:  # not a database, disk full...
            self._unavailable(exc)

    def _unavailable(self, exc: Exception) -> None:
        # The details (the path, the OS error) go to the server's log, not to the browser.
        _log.warning("llm-notebook: reading the log %s failed: %s", self.access.path, exc)
        self.fail(503, f"the llm-notebook log ({self.access.name}) could not be read; the "
                       "server's log says why (check c.LLMNotebook.log_path or $LLM_NOTEBOOK_LOG)")

    def write_error(self, status_code: int, **kwargs) -> None:
        # Never send a traceback to the browser (APIHandler would for unexpected errors).
        self.set_header("Content-Type", "application/json")
        reason = self._reason if status_code != 500 else "internal error; see the server log"
        self.finish(json.dumps({"message": reason}))


class _NotFound(LookupError):
    pass


def _preview(value: str | None, limit: int) -> str | None:
    if not isinstance(value, str) or len(value) <= limit:
        return value
    return value[:limit] + "…"


# The texts of a call, each cut to a limit in every answer.
_TEXT_FIELDS = ("prompt", "response", "system", "error")


def _visible_call(access: LogAccess, row: dict, *, limit: int = FIELD_LIMIT,
                  with_messages: bool = False) -> dict:
    call = {k: row.get(k) for k in CALL_FIELDS
            if k in row and (with_messages or k != "messages")}
    call["notebook"] = access.relative_notebook(call.get("notebook"))
    for field in _TEXT_FIELDS:
        if field in call:
            call[field] = _preview(call[field], limit)
    if call.get("options") is not None:
        options = call["options"]
        text = options if isinstance(options, str) else json.dumps(options, default=str)
        call["options"] = options if len(text) <= limit else _preview(text, limit)
    return call


def _capped_messages(messages: Any) -> Any:
    """The latest MESSAGES_LIMIT messages of a call, each text cut to MAX_PREVIEW."""
    if isinstance(messages, str):
        return _preview(messages, FIELD_LIMIT)
    if not isinstance(messages, list):
        return messages
    out = []
    for message in messages[-MESSAGES_LIMIT:]:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            message = {**message, "content": _preview(message["content"], MAX_PREVIEW)}
        elif not isinstance(message, dict) or len(json.dumps(message, default=str)) > MAX_PREVIEW:
            message = _preview(json.dumps(message, default=str), MAX_PREVIEW)
        out.append(message)
    return out


def _thread(access: LogAccess, rows: list[dict]) -> list[dict]:
    """The latest THREAD_LIMIT calls of a thread, texts previewed (a call's own page has them
    in full), without each call's copy of the whole conversation."""
    return [_visible_call(access, r, limit=MAX_PREVIEW) for r in rows[-THREAD_LIMIT:]]


class StatusHandler(_LogHandler):
    """The log's name, and markers that change when calls or templates are added."""

    @tornado.web.authenticated
    @authorized
    async def get(self):
        async def produce():
            self.params()
            from .. import __version__

            marker = await self.access.run(lambda log: log.change_marker())
            return {"version": __version__, "log_name": self.access.name, **marker}

        await self.answer(produce)


class HistoryHandler(_LogHandler):
    accepted = (
        Param("search", text(500)),
        Param("model", text(300)),
        Param("notebook", text(4096)),
        Param("conversation", text(128)),
        Param("limit", integer(1, 500), 50),
        Param("offset", integer(0, 10**9), 0),
        Param("preview", integer(1, MAX_PREVIEW), DEFAULT_PREVIEW),
    )

    @tornado.web.authenticated
    @authorized
    async def get(self):
        async def produce():
            p = self.params()
            rows = await self.access.run(
                lambda log: log.history_rows(
                    search=p["search"], model=p["model"],
                    notebook=self.access.absolute_notebook(p["notebook"]),
                    conversation_id=p["conversation"], limit=p["limit"] + 1, offset=p["offset"]))
            has_more = len(rows) > p["limit"]
            out = [_visible_call(self.access, row, limit=p["preview"]) for row in rows[:p["limit"]]]
            return {"rows": out, "limit": p["limit"], "offset": p["offset"], "has_more": has_more}

        await self.answer(produce)


class FacetsHandler(_LogHandler):
    """The models and notebooks found in the log (for the sidebar's filters)."""

    @tornado.web.authenticated
    @authorized
    async def get(self):
        async def produce():
            self.params()
            found = await self.access.run(lambda log: log.usage_facets())
            # A filter must name the notebook exactly: those outside the root are not offered.
            found["notebooks"] = [self.access.relative_notebook(n) for n in found["notebooks"]
                                  if self.access.inside_root(n)]
            return found

        await self.answer(produce)


class CallHandler(_LogHandler):
    """One call in full, with the thread of calls leading to it (oldest first)."""

    @tornado.web.authenticated
    @authorized
    async def get(self, call_id: str):
        async def produce():
            self.params()
            number = integer(1)("call id", call_id)
            call = await self.access.run(lambda log: log.call_detail(number))
            if call is None:
                raise _NotFound(f"no call {number} in the log")
            thread = await self.access.run(lambda log: log.thread(number))
            shown = _visible_call(self.access, call, with_messages=True)
            shown["messages"] = _capped_messages(call.get("messages"))
            return {"call": shown, "thread": _thread(self.access, thread),
                    "thread_length": len(thread)}

        await self.answer(produce)


class ConversationsHandler(_LogHandler):
    accepted = (Param("limit", integer(1, 500), 50),)

    @tornado.web.authenticated
    @authorized
    async def get(self):
        async def produce():
            p = self.params()

            def load(log):
                rows = log.conversations(limit=p["limit"])
                titles = log.conversation_titles([r["id"] for r in rows])
                for r in rows:
                    r["title"] = _preview(titles.get(r["id"]), DEFAULT_PREVIEW)
                return rows

            return {"conversations": await self.access.run(load)}

        await self.answer(produce)


class ConversationHandler(_LogHandler):
    """A conversation and the thread of its current branch."""

    @tornado.web.authenticated
    @authorized
    async def get(self, conversation_id: str):
        async def produce():
            self.params()
            if not _CONVERSATION_ID.fullmatch(conversation_id):
                raise BadParam("a conversation id is 1-128 letters, digits, '_', '-', '.' or ':'")

            def load(log):
                conv = log.conversation(conv_id=conversation_id)
                head = conv["head_id"] if conv else None
                if head is None:
                    head = log.conversation_head(conversation_id)
                if conv is None and head is None:
                    raise _NotFound(f"no conversation {conversation_id} in the log")
                return conv, log.thread(head)

            conv, thread = await self.access.run(load)
            return {"conversation": conv or {"id": conversation_id},
                    "thread": _thread(self.access, thread), "thread_length": len(thread)}

        await self.answer(produce)


class UsageHandler(_LogHandler):
    accepted = (
        Param("by", choice(("model", "day", "hour", "notebook")), "model"),
        Param("since", timestamp),
        Param("until", timestamp),
        Param("model", text(300)),
        Param("notebook", text(4096)),
    )

    @tornado.web.authenticated
    @authorized
    async def get(self):
        async def produce():
            p = self.params()
            if p["since"] is not None and p["until"] is not None and p["since"] > p["until"]:
                raise BadParam("'since' is after 'until'")
            rows = await self.access.run(lambda log: log.usage_rows(
                by=p["by"], since=p["since"], until=p["until"], model=p["model"],
                notebook=self.access.absolute_notebook(p["notebook"])))
            if p["by"] == "notebook":
                for r in rows:
                    r["grp"] = self.access.relative_notebook(r["grp"]) or None
            return {"by": p["by"], "rows": rows[:ROWS_LIMIT], "has_more": len(rows) > ROWS_LIMIT}

        await self.answer(produce)


class UsageSummaryHandler(_LogHandler):
    """Totals for today (all notebooks), and for one notebook today and in all."""

    accepted = (Param("day_start", timestamp), Param("notebook", text(4096)))

    @tornado.web.authenticated
    @authorized
    async def get(self):
        async def produce():
            p = self.params()
            # The browser sends its local midnight; without it, today starts at UTC midnight.
            day_start = p["day_start"] if p["day_start"] is not None else (time.time() // 86400) * 86400
            notebook = self.access.absolute_notebook(p["notebook"])

            def load(log):
                today = log.usage_totals(since=day_start)
                if notebook is None:
                    return today, None, None
                nb_today = log.usage_totals(since=day_start, notebook=notebook)
                nb_all = log.usage_totals(notebook=notebook)
                return today, nb_today, nb_all

            today, nb_today, nb_all = await self.access.run(load)
            return {"day_start": day_start, "today": today,
                    "notebook": self.access.relative_notebook(notebook),
                    "notebook_today": nb_today, "notebook_total": nb_all}

        await self.answer(produce)


class TemplatesHandler(_LogHandler):
    """The latest version of every saved prompt template (llm_notebook.templates)."""

    accepted = (Param("tag", text(100)),)

    @tornado.web.authenticated
    @authorized
    async def get(self):
        async def produce():
            p = self.params()
            return {"templates": await self.access.run(_templates, p["tag"])}

        await self.answer(produce)


class JobsEndedHandler(_LogHandler):
    """Background batch jobs that ended after `after` (unix time, the server's clock), oldest
    first, with `now` to ask from next time: what the lab extension announces. Read from the
    log, not from a kernel, so it answers while the kernel is busy, after a page reload, and for
    a job whose kernel has died since."""

    accepted = (Param("after", timestamp), Param("limit", integer(1, 200), 50))

    @tornado.web.authenticated
    @authorized
    async def get(self):
        async def produce():
            p = self.params()
            now = time.time()
            if p["after"] is None:   # a first look: nothing is announced, the clock is set
                return {"now": now, "jobs": []}
            from ..batch import store

            rows = await self.access.run(store.ended_background_jobs, p["after"], p["limit"])
            for r in rows:
                r["notebook"] = self.access.relative_notebook(r["notebook"])
                r["prompt"] = _preview(r["prompt"], 120)
            return {"now": now, "jobs": rows}

        await self.answer(produce)


def _templates(log, tag: str | None) -> list[dict]:
    try:
        from .. import template_store
        from ..templates import Template
    except ImportError:  # a build without the template library
        return []
    out = []
    for row in template_store.latest_all(log, tag)[:ROWS_LIMIT]:
        try:
            variables = Template.from_row(row).variables
        except Exception:  # a row another version wrote and this one cannot read: still list it
            variables = []
        out.append({
            "name": row["name"], "version": row["version"], "versions": row.get("versions"),
            "prompt": _preview(row["prompt"], MAX_PREVIEW),
            "system": _preview(row.get("system"), MAX_PREVIEW), "model": row.get("model"),
            "tags": row.get("tags") or [], "defaults": row.get("defaults") or {},
            "variables": variables, "updated": row.get("created"),
        })
    return out


ROUTES: list[tuple[str, type[_LogHandler]]] = [
    (r"/status", StatusHandler),
    (r"/history", HistoryHandler),
    (r"/facets", FacetsHandler),
    (r"/calls/([^/]+)", CallHandler),
    (r"/conversations", ConversationsHandler),
    (r"/conversations/([^/]+)", ConversationHandler),
    (r"/usage", UsageHandler),
    (r"/usage/summary", UsageSummaryHandler),
    (r"/templates", TemplatesHandler),
    (r"/jobs/ended", JobsEndedHandler),
]


def handlers(base_url: str) -> list[tuple[str, type[_LogHandler]]]:
    prefix = url_path_join(base_url, API_PREFIX)
    return [(prefix + pattern, handler) for pattern, handler in ROUTES]
