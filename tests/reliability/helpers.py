"""Small helpers shared by the reliability suites: what the loopback and the log observed (the
figures a suite records are counted from these), calls whose outcome is recorded before it is
judged, and a real Jupyter kernel driven through jupyter_client."""

from __future__ import annotations

import collections
import os
import queue
import sqlite3
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

import llm_notebook
from llm_notebook.errors import LLMError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(llm_notebook.__file__)))


# -- the loopback's records --------------------------------------------------------------------

def last_user(body) -> str | None:
    if not isinstance(body, dict):
        return None
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return message.get("content")
    return None


def sent(loopback) -> collections.Counter:
    """How many times the server received each prompt (the last user message)."""
    return collections.Counter(last_user(r["body"]) for r in loopback.requests())


def by_prompt(records) -> dict[str, list[dict]]:
    """Recorded requests grouped by prompt, each list in arrival order."""
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for r in sorted(records, key=lambda r: r["time"]):
        out[last_user(r["body"])].append(r)
    return out


def final_status(records) -> dict[str, int | None]:
    """Each prompt's answer as the server gave it: the status of its last recorded request."""
    return {prompt: tries[-1].get("status") for prompt, tries in by_prompt(records).items()}


def early_retries(records) -> list[tuple]:
    """(prompt, waited, asked) for every retry that came sooner than the 429's Retry-After."""
    early = []
    for prompt, tries in by_prompt(records).items():
        for before, after in zip(tries, tries[1:]):
            if before.get("status") == 429 and before.get("retry_after") is not None:
                waited = after["time"] - before["time"]
                if waited < float(before["retry_after"]):
                    early.append((prompt, round(waited, 3), before["retry_after"]))
    return early


# -- the log's records -------------------------------------------------------------------------

def log_rows(source, where: str = "1", params=()) -> list[dict]:
    """Rows of the log's `calls` table: `source` is a Session's Log, or the path of a log file
    another process (a kernel, a writer) wrote."""
    return read_log(source, f"SELECT * FROM calls WHERE {where} ORDER BY id", params)


def job_rows(source, job_id: str) -> dict[int, dict]:
    """A batch job's rows as the log holds them (status, cached, attempts...) by input position,
    each with the prompt and response of the call that answered it."""
    rows = read_log(source, "SELECT job_rows.*, calls.prompt, calls.response FROM job_rows "
                            "LEFT JOIN calls ON calls.id = job_rows.call_id WHERE job_rows.job_id = ?",
                    (job_id,))
    return {r["row"]: r for r in rows}


def read_log(source, sql: str, params=()) -> list[dict]:
    if isinstance(source, (str, os.PathLike)):
        db = sqlite3.connect(os.fspath(source))
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute(sql, params)]
        finally:
            db.close()
    return [dict(r) for r in source.read(sql, params)]


# -- calls whose outcome is recorded before it is judged ---------------------------------------

@dataclass
class Attempt:
    value: Any
    error: BaseException | None
    seconds: float

    @property
    def kind(self) -> str | None:
        return getattr(self.error, "kind", None)


def attempt(fn, *args, **kwargs) -> Attempt:
    """Run `fn`, keeping its value or its LLMError and how long it took, for the test to count
    and then assert on (any other exception is a defect and goes on up)."""
    started = time.monotonic()
    try:
        value = fn(*args, **kwargs)
    except LLMError as exc:
        return Attempt(None, exc, time.monotonic() - started)
    return Attempt(value, None, time.monotonic() - started)


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


# -- the browser's monitors -------------------------------------------------------------------

def record_page_safety(record, page, request_monitor) -> tuple[list, list, list]:
    """Counts what the browser harness's monitors saw (a script that ran: `window.__pwned` in a
    frame or a dialog; a request off 127.0.0.1), before the test asserts on them."""
    pwned = page.console_monitor.pwned_frames()
    dialogs = list(page.console_monitor.dialogs)
    external = list(request_monitor.external)
    record.check("no script ran (window.__pwned in a frame, a dialog)", not pwned and not dialogs)
    record.check("no request left 127.0.0.1", not external)
    return pwned, dialogs, external


# -- a real kernel -----------------------------------------------------------------------------

class Kernel:
    """A python3 kernel (jupyter_client) with its own environment; `run(code)` → Outcome."""

    def __init__(self, env: dict, cwd: str | None = None):
        from jupyter_client import KernelManager

        full_env = dict(os.environ)
        full_env.update(env)
        full_env["PYTHONPATH"] = REPO_ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env=full_env, cwd=cwd)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=90)

    def send(self, code: str) -> str:
        """Start running `code`; returns the message id (collect with `collect`)."""
        return self.client.execute(code, store_history=True)

    def collect(self, msg_id: str, timeout: float = 60) -> "Outcome":
        outcome = Outcome()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the kernel did not finish within {timeout:g} s")
            try:
                msg = self.client.get_iopub_msg(timeout=left)
            except queue.Empty:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            outcome.messages.append(msg)
            if kind == "stream":
                getattr(outcome, content["name"]).append(content["text"])
            elif kind in ("execute_result", "display_data", "update_display_data"):
                outcome.data.append(content.get("data", {}))
            elif kind == "error":
                outcome.error = (content["ename"], content["evalue"], content["traceback"])
            elif kind == "status" and content["execution_state"] == "idle":
                break
        reply = self.client.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=timeout)
        outcome.status = reply["content"]["status"]
        return outcome

    def run(self, code: str, timeout: float = 60) -> "Outcome":
        return self.collect(self.send(code), timeout)

    def interrupt(self) -> None:
        self.manager.interrupt_kernel()

    def alive(self) -> bool:
        return self.manager.is_alive()

    def close(self) -> None:
        try:
            self.client.stop_channels()
        finally:
            self.manager.shutdown_kernel(now=True)


class Outcome:
    def __init__(self):
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.data: list[dict] = []
        self.messages: list[dict] = []
        self.error: tuple | None = None
        self.status: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.stdout)

    def value(self):
        """The text/plain of the last execute_result or display."""
        for data in reversed(self.data):
            if "text/plain" in data:
                return data["text/plain"]
        return None

    def __repr__(self) -> str:
        return (f"<Outcome {self.status} error={self.error and self.error[:2]} "
                f"stdout={self.text[-300:]!r} stderr={''.join(self.stderr)[-300:]!r}>")


# -- secrets -----------------------------------------------------------------------------------

class Sentinels:
    """Fresh secrets, and the places where any of them turned up."""

    def __init__(self):
        self.all: list[str] = []

    def plain(self) -> str:
        key = "Zq" + uuid.uuid4().hex + "Xw"
        self.all.append(key)
        return key

    def shaped(self) -> str:
        key = "sk-" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
        self.all.append(key)
        return key

    def markers(self) -> list[str]:
        # The first 12 random characters: a key cut in half still shows its start.
        return [k[2:14] if k.startswith("Zq") else k[3:15] for k in self.all]

    def found_in(self, text) -> list[str]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return [m for m in self.markers() if m in text]


def exception_texts(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc)),
                      str(getattr(exc, "message", ""))])


def log_bytes(path: str) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            with open(path + suffix, "rb") as fh:
                out += fh.read()
    return out
