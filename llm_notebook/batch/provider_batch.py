"""A batch run through a provider's Batch API (`via="batch_api"`): half the price, within 24 h.

The run's rows come from the same feed as a run of calls (cache hits, bad rows and equal
requests are taken care of there, so cached rows are never sent). The rows left become JSONL
lines, `{"custom_id": "<row>", "method": "POST", "url": "/v1/chat/completions", "body": ...}`,
in parts of at most PART_ROWS lines (OpenAI takes 50,000 per batch) that are uploaded and
submitted as provider batches (providers.batch_client: the endpoint's own /files and /batches,
or litellm's batch functions). Each part is recorded in the log (`job_batches`: the provider's
batch id, the rows it covers) as soon as it is created.

Then the parts are polled with a growing interval (LLMNotebook.batch_api_poll_min to _max).
When one ends, its output and error files are downloaded and each line is matched back to its
row by custom_id (in any order) and logged like a call's outcome, priced at the batch price
(pricing.pricer(batch=True)), through the run's books (`BatchRun.record`): answers, per-row
errors, cache entries, job rows, progress. Lines a provider never ran (the batch expired or was
cancelled) leave their rows without an answer: the same call again sends them.

What each line asked (its messages and cache key) is kept beside the log, in a private file per
part (`batch-requests/<job>-<part>.jsonl` next to the log), not in memory: the run holds one
part's lines at a time, and after a kernel restart `session.job(id).result()` (or the same call
again) picks the job up from `job_batches` and those files, polling where it is.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time

from .. import options as call_options
from .. import providers
from ..call import outcome as outcomes
from ..errors import BAD_REQUEST, INVALID_RESPONSE, LLMError
from . import store
from .feed import Chunk

PART_ROWS = 50_000              # lines per provider batch (OpenAI's limit)
PART_BYTES = 100 * 2**20        # and bytes per input file (OpenAI's limit is 200 MB)
FINAL = ("completed", "failed", "expired", "cancelled")
ENDPOINT = "/v1/chat/completions"
# Error codes of lines the provider never ran: the rows stay without an answer (resent later).
NOT_RUN = ("batch_expired", "batch_cancelled")


async def send(run, feed) -> None:
    """Submit the rows of `feed` no provider batch of the job covers yet (none when `feed` is
    None: a job picked up after a restart), then poll every part until it is logged."""
    client = providers.batch_client(run.route)
    parts = await _writer(store.provider_batches, run.log, run.job_id)
    earlier = {p["part"] for p in parts if p["recorded"]}   # logged by an earlier run
    for part in parts:   # parts that ended while no kernel was watching
        if not part["recorded"] and part["status"] in FINAL:
            await _record(run, client, part)
    if feed is not None:
        live = [(p["first_row"], p["end_row"]) for p in parts if not p["recorded"]]
        builder = _PartBuilder(run, len(parts))
        try:
            while run.stop_reason is None and (got := await feed.next_chunk()) is not None:
                chunk, todo = got
                for i in todo:
                    if any(first <= i < end for first, end in live):
                        continue   # a provider batch of this job is answering it already
                    builder.add(i, chunk)
                    if builder.full:
                        parts.append(await builder.submit(client))
                        builder = _PartBuilder(run, len(parts))
            if builder.count and run.stop_reason is None:
                parts.append(await builder.submit(client))
        finally:
            builder.discard()
    await _poll(run, client, parts)
    here = [p for p in parts if p["part"] not in earlier]
    ended = {p["status"] for p in here}
    if "failed" in ended:
        run.stop_reason = "failed"
        reasons = "; ".join(f"{p['batch_id']}: {p.get('error') or 'no reason given'}"
                            for p in here if p["status"] == "failed")
        raise LLMError(f"the provider's batch failed ({reasons}); rows it did not answer were "
                       f"not run: run the same call again to send them", kind=BAD_REQUEST)
    for status in ("expired", "cancelled"):
        if status in ended and run.counters["done"] < run.n:
            run.stop_reason = run.stop_reason or status


async def _poll(run, client, parts: list) -> None:
    config = run.session.config
    delay = float(config.batch_api_poll_min)
    asked_to_cancel: set = set()
    while pending := [p for p in parts if not p["recorded"]]:
        for part in pending:
            if run.stop_reason == "cancelled" and part["batch_id"] not in asked_to_cancel \
                    and part["status"] not in FINAL:
                asked_to_cancel.add(part["batch_id"])
                await client.cancel(part["batch_id"])
            batch = await client.retrieve(part["batch_id"])
            changed = _take_status(part, batch)
            if changed:
                await _writer(store.update_provider_batch, run.log, run.job_id, part["part"],
                              **changed)
            if part["status"] in FINAL:
                await _record(run, client, part)
        run.provider_status = describe(parts)
        run._tell([])
        if any(not p["recorded"] for p in parts):
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, float(config.batch_api_poll_max))


def describe(parts: list) -> str:
    """The provider's side in a few words: 'in_progress 120/1,000 (3 failed)'."""
    statuses = sorted({p["status"] for p in parts})
    total = sum(p["requests"] for p in parts)
    done = sum((p.get("completed") or 0) + (p.get("failed") or 0) for p in parts)
    failed = sum(p.get("failed") or 0 for p in parts)
    text = f"{'/'.join(statuses)} {done:,}/{total:,}"
    return text + (f" ({failed:,} failed)" if failed else "")


def _take_status(part: dict, batch: dict) -> dict:
    """Copy what changed of the provider's batch object into `part`; returns the changes."""
    counts = batch.get("request_counts") or {}
    if not isinstance(counts, dict):
        counts = dict(getattr(counts, "__dict__", {}))
    seen = {"status": str(batch.get("status") or part["status"]),
            "output_file_id": batch.get("output_file_id"),
            "error_file_id": batch.get("error_file_id"),
            "completed": int(counts.get("completed") or 0),
            "failed": int(counts.get("failed") or 0)}
    if seen["status"] == "failed":
        seen["error"] = _batch_error(batch)
    changed = {k: v for k, v in seen.items() if part.get(k) != v}
    part.update(changed)
    return changed


def _batch_error(batch: dict) -> str:
    from ..redact import redact

    errors = batch.get("errors") or {}
    data = errors.get("data") if isinstance(errors, dict) else errors
    if isinstance(data, list) and data:
        first = data[0] if isinstance(data[0], dict) else {"message": str(data[0])}
        where = f" (line {first['line']})" if first.get("line") is not None else ""
        return redact(f"{first.get('code') or 'error'}: {first.get('message') or ''}{where}")[:500]
    return "no reason given"


# -- logging a part's answers -------------------------------------------------------------------

async def _record(run, client, part: dict) -> None:
    """Download a part's output and error files and log every line against its row."""
    results: dict = {}
    for field in ("output_file_id", "error_file_id"):
        if part.get(field):
            data = await client.content(part[field])
            for line in data.splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("custom_id") is not None:
                    results[str(entry["custom_id"])] = entry
    ts = part["submitted"]
    for row, key, messages in _requests(run, part, results):
        entry = results.pop(str(row), None)
        if entry is None or not 0 <= row < run.n or run.status[row] is not None:
            continue
        result = outcome(run, entry, ts)
        if result is not None:
            run.record(row, result, Chunk(row, [messages], [key], {}))
    await run._flush()
    await _writer(store.update_provider_batch, run.log, run.job_id, part["part"], recorded=1)
    part["recorded"] = 1
    try:
        os.remove(_requests_path(run.log, run.job_id, part["part"]))
    except OSError:
        pass


def _requests(run, part: dict, results: dict):
    """(row, cache key, messages) of each line of the part, from its file beside the log; from
    the answers alone (no messages to log) if that file is gone."""
    path = _requests_path(run.log, run.job_id, part["part"])
    try:
        fh = open(path, encoding="utf-8")
    except OSError:
        for custom_id in list(results):
            try:
                yield int(custom_id), None, None
            except ValueError:
                continue
        return
    with fh:
        for line in fh:
            entry = json.loads(line)
            yield entry["row"], entry.get("cache_key"), entry.get("messages")


def outcome(run, entry: dict, ts: float):
    """A line of an output or error file as the Outcome of its row (None: never run)."""
    from ..providers.http import classify

    response = entry.get("response") or {}
    error = entry.get("error")
    status = response.get("status_code") if isinstance(response, dict) else None
    body = response.get("body") if isinstance(response, dict) else None
    if status == 200 and isinstance(body, dict):
        try:
            text = body["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            exc = LLMError("the provider's batch answered this row with an unreadable response",
                           kind=INVALID_RESPONSE)
            return outcomes.failed(exc, ts=ts, duration_ms=None, attempts=1)
        usage = body.get("usage") or {}
        tin, tout = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return outcomes.Outcome("ok", text, ts, None, attempts=1, input_tokens=tin,
                                output_tokens=tout, cost=run.price(tin, tout))
    if isinstance(error, dict) and error.get("code") in NOT_RUN:
        return None
    if status:
        exc = classify(int(status), json.dumps(body) if body is not None else "", None)
    else:
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else str(error)
        exc = LLMError(f"the provider's batch did not answer this row: {code or 'error'}: "
                       f"{message}", kind=BAD_REQUEST)
    return outcomes.failed(exc, ts=ts, duration_ms=None, attempts=1)


# -- building and submitting a part ---------------------------------------------------------------

class _PartBuilder:
    """The JSONL lines of one provider batch, and the file of what each line asked."""

    def __init__(self, run, number: int):
        self.run = run
        self.number = number
        self.lines: list[bytes] = []
        self.size = 0
        self.first_row = self.end_row = None
        self.path = _requests_path(run.log, run.job_id, number)
        self._file = None
        route = run.route
        # The model as the provider knows it (litellm's ids carry the provider in front).
        self.model = route.api_model
        if route.kind == "litellm" and not route.endpoint and "/" in self.model:
            self.model = self.model.split("/", 1)[1]
        self.body_options = call_options.body_options(run.options)

    @property
    def count(self) -> int:
        return len(self.lines)

    @property
    def full(self) -> bool:
        return self.count >= PART_ROWS or self.size >= PART_BYTES

    def add(self, i: int, chunk: Chunk) -> None:
        messages = chunk.messages_of(i)
        body = {"model": self.model, "messages": messages, **self.body_options}
        line = json.dumps({"custom_id": str(i), "method": "POST", "url": ENDPOINT, "body": body},
                          ensure_ascii=False).encode("utf-8")
        self.lines.append(line)
        self.size += len(line) + 1
        if self._file is None:
            self._file = _private_file(self.path)
            self.first_row = i
        self._file.write(json.dumps({"row": i, "cache_key": chunk.key_of(i), "messages": messages},
                                    ensure_ascii=False) + "\n")
        self.end_row = i + 1

    async def submit(self, client) -> dict:
        run = self.run
        self._file.close()
        self._file = None
        data = b"\n".join(self.lines) + b"\n"
        self.lines = []
        file_id = await client.upload(data, f"llm-notebook-{run.job_id}-{self.number}.jsonl")
        batch = await client.create(file_id, metadata={"llm_notebook_job": run.job_id})
        part = {"part": self.number, "batch_id": str(batch["id"]), "input_file_id": file_id,
                "first_row": self.first_row, "end_row": self.end_row,
                "requests": len(data.splitlines()), "status": str(batch.get("status") or "validating"),
                "completed": 0, "failed": 0}
        await _writer(store.add_provider_batch, run.log, run.job_id, part)
        part.update(recorded=0, submitted=time.time())
        return part

    def discard(self) -> None:
        """A part never submitted (the run stopped first): its file goes."""
        if self._file is not None:
            self._file.close()
            self._file = None
            try:
                os.remove(self.path)
            except OSError:
                pass


def _requests_path(log, job_id: str, part: int) -> str:
    if log.path == ":memory:":
        folder = os.path.join(tempfile.gettempdir(), f"llm-notebook-batch-requests-{os.getpid()}")
    else:
        folder = os.path.join(os.path.dirname(os.path.abspath(log.path)), "batch-requests")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return os.path.join(folder, f"{job_id}-{part}.jsonl")


def _private_file(path: str):
    """A new file only its owner can read (it holds prompts, as the log does)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


async def _writer(fn, *args, **kwargs):
    from .engine import _writer_pool

    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_writer_pool(), lambda: fn(*args, **kwargs))


def pick_up(session, record: dict):
    """A run that polls and logs the provider batches of job `record` (a Batch API job whose
    kernel is gone): its model must resolve in this kernel (add its endpoint first)."""
    from .engine import BatchRun
    from .settings import BatchSettings

    route = session.resolve(record["model"])
    options = record.get("options")
    try:
        options = json.loads(options) if isinstance(options, str) else dict(options or {})
    except ValueError:
        options = {}
    settings = BatchSettings(via="batch_api", progress=False)
    run = BatchRun(session, route, None, settings, options=options, concurrency=1,
                   system=record.get("system"), n=record["rows"])
    run.job_id = record["id"]
    run.prompt_label = record.get("prompt")
    run._base_row["job_id"] = run.job_id
    store.reopen_job(session.log, run.job_id, session.kernel_session, None, None,
                     background=bool(record.get("background")))
    run.take_resumed_rows()
    return run
