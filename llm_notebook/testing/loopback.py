"""A loopback OpenAI-compatible server for tests, benchmarks and example notebooks.

Real HTTP and real SSE on 127.0.0.1, deterministic replies, configurable latency and rate
limits, and scripted faults (429 with Retry-After, 500, stalls, dropped streams, malformed JSON,
401 bodies that echo the key) so every client path can be exercised without the internet.

Start it as a subprocess, so its event loop never competes with the code under test:

    python -m llm_notebook.testing.loopback --port 0 [--latency 0.1] [--host 127.0.0.1]

prints ``LOOPBACK_URL=http://127.0.0.1:PORT`` once it listens and serves until SIGTERM/SIGINT
or, when stdin is a pipe, until stdin closes (so it dies with the process that started it).
From Python, ``LoopbackServer`` does that and wraps the control endpoints.

Replies:
- A *token* is a whitespace-separated word. ``prompt_tokens`` is the number of words across all
  message contents (at least 1); ``completion_tokens`` the number of words in the reply.
- The reply is, by priority: the text of a ``[[reply:TEXT]]`` marker in a message (the latest
  message that has one); the configured ``reply`` / cycling ``replies``; for JSON mode
  (``response_format`` json_object/json_schema, or model ``loopback-json``) the string
  ``{"echo": "<last user message>"}``; otherwise ``"Echo: " + <last user message>``. Echoes are
  cut to ``ECHO_MAX_TOKENS`` words so huge prompts don't make huge replies. The model
  ``loopback-judge`` answers instead by the fixed rules of ``loopback_rules.py`` (yes/no,
  labels, rankings, fields and sums decided from the prompt), so semantic operators have known
  right answers.
- ``POST /v1/embeddings`` answers any model with hashed bag-of-words vectors
  (``loopback_rules.embedding``): texts that share words are near each other.
- ``max_tokens`` (or ``max_completion_tokens``) cuts the reply to that many tokens and sets
  finish_reason "length". Streaming sends one chunk per token (the word plus the whitespace
  after it), after a first chunk carrying the role.

The Batch API (OpenAI's files and batches endpoints) is served too: ``POST /v1/files`` (multipart,
purpose "batch"), ``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches/{id}`` and
``POST /v1/batches/{id}/cancel``. A batch is ``validating`` for ``batch_validate_seconds``, then
``in_progress`` while its lines are answered one after another (``batch_line_seconds`` each), as
chat requests are (markers, replies, JSON mode, scripted faults matched on the last user
message; a fault's error becomes the line's entry in the error file), then ``completed`` with
an output file and, if any line failed, an error file. A batch not done within
``batch_expire_seconds`` expires (the lines not run get ``batch_expired`` errors); a cancelled one
ends ``cancelled`` the same way. An input file with an unreadable line fails the whole batch, as
does a line matching a scripted ``batch_failed`` fault.
Each line is recorded like a chat request, with the path ``batch:<batch id>``.

Order of checks for a chat request: scripted fault, then ``require_key``, then
``context_window``, then the rpm/tpm limits, then the reply. Error faults answer at once; the
reply (and the stall, drop and malformed faults) waits ``latency`` first. A ``stall`` waits
``seconds`` before any token (before the headers too with ``"headers": false``), or, with
``after_tokens``, streams that many tokens and then waits: an answer stopping mid-way.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import math
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from aiohttp import web

try:  # run as a plain file (how LoopbackServer starts it), or imported from the package
    from . import loopback_rules as rules
except ImportError:
    import loopback_rules as rules

__all__ = ["LoopbackServer", "LoopbackError", "MODELS", "DEFAULT_SETTINGS", "ECHO_MAX_TOKENS"]

MODELS = ["loopback-model", "loopback-json", "loopback-small", rules.JUDGE_MODEL,
          "loopback-embed"]
ECHO_MAX_TOKENS = 256
# Bounded so a long-running notebook or benchmark server can't grow without limit.
MAX_RECORDED = 10_000

DEFAULT_SETTINGS: dict = {
    "latency": 0.0,            # seconds before the first byte of a reply
    "tokens_per_second": 0.0,  # 0 = no delay between streamed tokens
    "reply": None,             # fixed reply text
    "replies": None,           # list of replies used in turn
    "rpm": None,               # requests per sliding 60 s window
    "tpm": None,               # prompt + completion tokens per sliding 60 s window
    "require_key": None,       # if set, other Bearer keys get a 401 echoing them
    "context_window": None,    # if set, longer prompts get context_length_exceeded
    # rpm/tpm are enforced over a sliding window of this many seconds, scaled to it (rpm=6000
    # with rate_window=5 admits 500 requests per 5 s), as providers that quantize their
    # per-minute limits to shorter windows do; tests use it to make a limit bind in seconds.
    "rate_window": 60.0,
    # The Batch API: seconds a batch spends validating, seconds per line while in progress,
    # and the seconds after which an unfinished batch expires (None: never).
    "batch_validate_seconds": 0.0,
    "batch_line_seconds": 0.0,
    "batch_expire_seconds": None,
}

FAULT_KINDS = {"429", "500", "400", "401", "403", "context_window", "stall",
               "drop_mid_stream", "malformed_json", "batch_failed"}

_TOKEN_RE = re.compile(r"\s*\S+\s*")
_MARKER_RE = re.compile(r"\[\[reply:(.*?)\]\]", re.DOTALL)
_COMPACT = (",", ":")
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_DONE = b"data: [DONE]\n\n"


class LoopbackError(RuntimeError):
    """The loopback server refused a control request or could not start."""


# ---------------------------------------------------------------- pure helpers

def split_tokens(text: str) -> list[str]:
    """Tokens of `text`: each word with the whitespace after it (leading space kept on the first)."""
    return _TOKEN_RE.findall(text)


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts; only text parts count
        return "\n".join(p.get("text", "") for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _last_user_text(messages: list) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return _text_of(m.get("content"))
    return _text_of(messages[-1].get("content")) if messages and isinstance(messages[-1], dict) else ""


def _bearer(authorization: str | None) -> str:
    if not authorization:
        return ""
    scheme, _, key = authorization.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else authorization.strip()


def validate_settings(updates: dict) -> dict:
    """Checked copy of `updates`; raises ValueError naming the bad setting and what it accepts."""
    unknown = sorted(set(updates) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(DEFAULT_SETTINGS)}")
    out = {}
    for key, value in updates.items():
        if value is None:
            out[key] = DEFAULT_SETTINGS[key]  # null means "back to the default"
        elif key == "rate_window":
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value <= 3600:
                raise ValueError(f"rate_window must be a number of seconds in (0, 3600], got {value!r}")
            out[key] = float(value)
        elif key == "batch_expire_seconds":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{key} must be a number of seconds > 0 or null, got {value!r}")
            out[key] = float(value)
        elif key in ("latency", "tokens_per_second", "batch_validate_seconds",
                     "batch_line_seconds"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{key} must be a number >= 0, got {value!r}")
            out[key] = float(value)
        elif key in ("rpm", "tpm", "context_window"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1 or null, got {value!r}")
            out[key] = value
        elif key in ("reply", "require_key"):
            if not isinstance(value, str):
                raise ValueError(f"{key} must be a string or null, got {value!r}")
            out[key] = value
        elif key == "replies":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise ValueError(f"replies must be a non-empty list of strings, got {value!r}")
            out[key] = list(value)
    return out


def validate_fault(fault) -> dict:
    if not isinstance(fault, dict) or str(fault.get("kind")) not in FAULT_KINDS:
        raise ValueError(f"a fault needs a 'kind' among {sorted(FAULT_KINDS)}, got {fault!r}")
    fault = dict(fault, kind=str(fault["kind"]))
    times = fault.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError(f"fault 'times' must be an integer >= 1, got {times!r}")
    if "match" in fault and not isinstance(fault["match"], str):
        raise ValueError(f"fault 'match' must be a string, got {fault['match']!r}")
    fault["times"] = times
    return fault


class _Reply:
    __slots__ = ("tokens", "finish_reason", "prompt_tokens")

    def __init__(self, tokens: list[str], finish_reason: str, prompt_tokens: int):
        self.tokens = tokens
        self.finish_reason = finish_reason
        self.prompt_tokens = prompt_tokens

    @property
    def usage(self) -> dict:
        n = len(self.tokens)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": n,
                "total_tokens": self.prompt_tokens + n}


# ---------------------------------------------------------------- the server

class _Loopback:
    """State and handlers of one server process (single event loop: no locks needed)."""

    def __init__(self, settings: dict):
        self.startup_settings = dict(DEFAULT_SETTINGS, **settings)
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        for task in getattr(self, "batch_tasks", {}).values():
            task.cancel()
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.batch_tasks: dict[str, asyncio.Task] = {}
        self.batch_ids = itertools.count(1)
        self.settings = dict(self.startup_settings)
        self.faults: list[dict] = []
        self.reply_cycle = itertools.count()
        self.window: collections.deque = collections.deque()   # (time, tokens) admitted
        self.window_tokens = 0
        self.recorded: collections.deque = collections.deque(maxlen=MAX_RECORDED)
        self.ids = itertools.count(1)
        # In-flight requests survive a reset; the high-water mark starts again from them.
        self.stats = {
            "requests": 0, "by_status": {}, "by_model": {}, "request_times": [],
            "in_flight": self.in_flight, "max_in_flight": self.in_flight,
            "rate_limited": [], "dropped": 0, "models_requests": 0, "embeddings_requests": 0,
            "batch_api": {"uploads": 0, "batches": 0, "polls": 0, "downloads": 0,
                          "cancels": 0, "lines": 0},
        }

    # -- bookkeeping

    def _status(self, status: int) -> None:
        by = self.stats["by_status"]
        by[status] = by.get(status, 0) + 1

    def _record(self, request: web.Request, body, authorization: str | None) -> dict:
        now = time.time()
        stats = self.stats
        stats["requests"] += 1
        stats["request_times"].append(now)
        model = body.get("model") if isinstance(body, dict) else None
        stats["by_model"][model] = stats["by_model"].get(model, 0) + 1
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        entry = {"time": now, "path": request.path, "body": body, "headers": headers,
                 "authorization": authorization, "auth_present": authorization is not None}
        self.recorded.append(entry)
        # chat() adds the answer's status (and Retry-After) to the entry once it is known.
        request["loopback_record"] = entry
        return entry

    def _take_fault(self, last_user: str) -> dict | None:
        for i, fault in enumerate(self.faults):
            if fault["kind"] == "batch_failed":
                continue  # fails a whole provider batch, when it is validated
            if "match" in fault and fault["match"] not in last_user:
                continue
            fault["times"] -= 1
            if fault["times"] <= 0:
                del self.faults[i]
            return fault
        return None

    # -- error replies, shaped like OpenAI's

    def _error(self, status: int, message: str, type_: str, code=None, param=None,
               headers=None) -> web.Response:
        self._status(status)
        body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        return web.Response(text=json.dumps(body), status=status, headers=headers,
                            content_type="application/json")

    def _rate_limited(self, retry_after: float | None, message: str, type_: str) -> web.Response:
        headers = None
        if retry_after is not None:
            # Retry-After must be whole seconds; retry-after-ms (read by the OpenAI SDK and
            # litellm) keeps sub-second scripted waits usable in fast tests.
            headers = {"Retry-After": str(math.ceil(retry_after)),
                       "retry-after-ms": str(int(retry_after * 1000))}
        self.stats["rate_limited"].append({"time": time.time(), "retry_after": retry_after})
        return self._error(429, message, type_, code="rate_limit_exceeded", headers=headers)

    def _bad_key(self, authorization: str | None) -> web.Response:
        key = _bearer(authorization)
        if not key:
            message = ("You didn't provide an API key. You need to provide your API key in an "
                       "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        else:
            # Echoing the key is deliberate: some providers do, and clients must redact it.
            message = (f"Incorrect API key provided: {key}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.")
        return self._error(401, message, "invalid_request_error", code="invalid_api_key")

    def _context_exceeded(self, limit: int, prompt_tokens: int) -> web.Response:
        return self._error(
            400, f"This model's maximum context length is {limit} tokens. However, your messages "
                 f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages.",
            "invalid_request_error", code="context_length_exceeded", param="messages")

    def _fault_error(self, fault: dict, authorization: str | None, prompt_tokens: int):
        kind = fault["kind"]
        if kind == "429":
            retry_after = fault.get("retry_after", 1)
            return self._rate_limited(retry_after, fault.get(
                "message", "Rate limit reached (scripted by the loopback server)."), "requests")
        if kind == "500":
            return self._error(500, fault.get("message", "The server had an error while "
                               "processing your request. Sorry about that!"), "server_error")
        if kind == "400":
            return self._error(400, fault.get("message", "Invalid request (scripted)."),
                               "invalid_request_error", code=fault.get("code"))
        if kind == "401":
            return self._bad_key(authorization)
        if kind == "403":
            return self._error(403, fault.get("message", "You are not allowed to use this model."),
                               "permission_error", code="permission_denied")
        if kind == "context_window":
            return self._context_exceeded(fault.get("limit", 8192),
                                          max(prompt_tokens, fault.get("limit", 8192) + 1))
        return None  # stall, drop_mid_stream, malformed_json happen while replying

    # -- rate limits over a sliding 60 s window

    def _admit(self, tokens: int) -> web.Response | None:
        now = time.time()
        span = self.settings["rate_window"]
        window, cutoff = self.window, now - span
        while window and window[0][0] <= cutoff:
            self.window_tokens -= window.popleft()[1]
        rpm, tpm = self.settings["rpm"], self.settings["tpm"]
        if span != 60.0:  # the per-minute limits, scaled to the window
            rpm = rpm and max(1, int(rpm * span / 60.0))
            tpm = tpm and max(1, int(tpm * span / 60.0))
        if rpm and len(window) >= rpm:
            # The request becomes possible when enough of the oldest ones leave the window.
            wait = window[len(window) - rpm][0] + span - now
            return self._rate_limited(max(1, math.ceil(wait)), (
                f"Rate limit reached for requests per min (RPM): Limit {rpm}, Used {len(window)}, "
                f"Requested 1. Please try again in {max(1, math.ceil(wait))}s."), "requests")
        if tpm and self.window_tokens + tokens > tpm:
            wait, freed = span, 0
            if tokens <= tpm:
                for t, n in window:
                    freed += n
                    if self.window_tokens - freed + tokens <= tpm:
                        wait = t + span - now
                        break
            return self._rate_limited(max(1, math.ceil(wait)), (
                f"Rate limit reached for tokens per min (TPM): Limit {tpm}, Used "
                f"{self.window_tokens}, Requested {tokens}. Please try again in "
                f"{max(1, math.ceil(wait))}s."), "tokens")
        if rpm or tpm:
            window.append((now, tokens))
            self.window_tokens += tokens
        return None

    # -- composing the reply

    def _compose(self, body: dict, messages: list, last_user: str, prompt_tokens: int) -> _Reply:
        fixed = None
        for m in reversed(messages):
            match = _MARKER_RE.search(_text_of(m.get("content")) if isinstance(m, dict) else "")
            if match:
                fixed = match.group(1)
                break
        if fixed is None:
            if self.settings["reply"] is not None:
                fixed = self.settings["reply"]
            elif self.settings["replies"]:
                replies = self.settings["replies"]
                fixed = replies[next(self.reply_cycle) % len(replies)]
        if fixed is None and body.get("model") == rules.JUDGE_MODEL:
            instructions = "\n".join(_text_of(m.get("content")) for m in messages
                                      if isinstance(m, dict) and m.get("role") == "system")
            fixed = rules.judge(instructions, last_user, rules.schema_of(body))
        if fixed is not None:
            tokens = split_tokens(fixed)
        else:
            echoed = "".join(split_tokens(last_user)[:ECHO_MAX_TOKENS]).strip()
            fmt = body.get("response_format")
            json_mode = body.get("model") == "loopback-json" or (
                isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"))
            text = json.dumps({"echo": echoed}) if json_mode else "Echo: " + echoed
            tokens = split_tokens(text)
        finish = "stop"
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit < len(tokens):
            tokens = tokens[:limit]
            if tokens:
                tokens[-1] = tokens[-1].rstrip()
            finish = "length"
        return _Reply(tokens, finish, prompt_tokens)

    # -- handlers

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        stats = self.stats
        stats["in_flight"] = self.in_flight
        if self.in_flight > stats["max_in_flight"]:
            stats["max_in_flight"] = self.in_flight
        try:
            response = await self._chat(request)
            entry = request.get("loopback_record")
            if entry is not None and response is not None:
                entry["status"] = response.status
                if response.status == 429:
                    entry["retry_after"] = response.headers.get("Retry-After")
            return response
        finally:
            self.in_flight -= 1
            self.stats["in_flight"] = self.in_flight

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization")
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._record(request, raw.decode("utf-8", "replace"), authorization)
            return self._error(400, "We could not parse the JSON body of your request.",
                               "invalid_request_error")
        self._record(request, body, authorization)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, "'messages' must be a non-empty list.",
                               "invalid_request_error", param="messages")

        last_user = _last_user_text(messages)
        prompt_tokens = max(1, sum(len(_text_of(m.get("content")).split())
                                   for m in messages if isinstance(m, dict)))
        fault = self._take_fault(last_user)
        if fault is not None:
            error = self._fault_error(fault, authorization, prompt_tokens)
            if error is not None:
                return error

        settings = self.settings
        if settings["require_key"] is not None and _bearer(authorization) != settings["require_key"]:
            return self._bad_key(authorization)
        if settings["context_window"] is not None and prompt_tokens > settings["context_window"]:
            return self._context_exceeded(settings["context_window"], prompt_tokens)
        reply = self._compose(body, messages, last_user, prompt_tokens)
        refused = self._admit(prompt_tokens + len(reply.tokens))
        if refused is not None:
            return refused
        request["loopback_record"]["usage"] = reply.usage   # what this answer reports

        ident = f"chatcmpl-loopback-{next(self.ids)}"
        if body.get("stream"):
            return await self._stream(request, body, reply, fault, ident)
        return await self._json(request, body, reply, fault, ident)

    async def _json(self, request, body, reply: _Reply, fault, ident) -> web.StreamResponse:
        kind = fault["kind"] if fault else None
        if kind == "stall":
            await asyncio.sleep(fault.get("seconds", 30))
        tps = self.settings["tokens_per_second"]
        delay = self.settings["latency"] + (len(reply.tokens) / tps if tps else 0.0)
        if delay:
            await asyncio.sleep(delay)
        if kind == "drop_mid_stream":
            return self._drop(request)
        self._status(200)
        if kind == "malformed_json":
            return web.Response(body=b'{"id": "chatcmpl-loopback", "choices": [{"message": {"con',
                                content_type="application/json")
        payload = {
            "id": ident, "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"), "system_fingerprint": "loopback",
            "choices": [{"index": 0, "logprobs": None, "finish_reason": reply.finish_reason,
                         "message": {"role": "assistant", "content": "".join(reply.tokens)}}],
            "usage": reply.usage,
        }
        return web.Response(text=json.dumps(payload, separators=_COMPACT),
                            content_type="application/json")

    async def _stream(self, request, body, reply: _Reply, fault, ident) -> web.StreamResponse:
        kind = fault["kind"] if fault else None
        if kind == "stall" and not fault.get("headers", True):
            await asyncio.sleep(fault.get("seconds", 30))
        if self.settings["latency"]:
            await asyncio.sleep(self.settings["latency"])
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        self._status(200)
        # A stall after some tokens is a stream that stops mid-answer (it resumes afterwards).
        stall_after = fault.get("after_tokens") if kind == "stall" else None
        if kind == "stall" and fault.get("headers", True) and stall_after is None:
            await asyncio.sleep(fault.get("seconds", 30))

        head = {"id": ident, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model"), "system_fingerprint": "loopback"}

        def event(delta: dict, finish_reason=None, **extra) -> bytes:
            chunk = dict(head, choices=[{"index": 0, "delta": delta,
                                         "finish_reason": finish_reason}], **extra)
            return b"data: " + json.dumps(chunk, separators=_COMPACT).encode() + b"\n\n"

        # Token chunks differ only in their content: build the JSON once and splice each token
        # in, which keeps per-token CPU to one small json.dumps.
        sentinel = "\x00token\x00"
        prefix, suffix = event({"content": sentinel}).split(json.dumps(sentinel).encode(), 1)

        tokens = reply.tokens
        if kind == "drop_mid_stream":
            tokens = tokens[:fault.get("after_tokens", 3)]
        tail: list[bytes] = []
        if kind == "malformed_json":
            tokens, tail = [], [b'data: {"choices": [{"delta": {"content": "oops"\n\n', _DONE]
        elif kind != "drop_mid_stream":
            tail.append(event({}, reply.finish_reason))
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):
                tail.append(b"data: " + json.dumps(dict(head, choices=[], usage=reply.usage),
                                                   separators=_COMPACT).encode() + b"\n\n")
            tail.append(_DONE)

        first = event({"role": "assistant", "content": ""})
        tps = self.settings["tokens_per_second"]
        if stall_after is not None:
            await response.write(first + b"".join(prefix + json.dumps(t).encode() + suffix
                                                  for t in tokens[:stall_after]))
            await asyncio.sleep(fault.get("seconds", 30))
            await response.write(b"".join(prefix + json.dumps(t).encode() + suffix
                                          for t in tokens[stall_after:]) + b"".join(tail))
        elif tps:
            await response.write(first)
            for token in tokens:
                await asyncio.sleep(1.0 / tps)
                await response.write(prefix + json.dumps(token).encode() + suffix)
            await response.write(b"".join(tail))
        else:
            # No pacing: one write for the whole stream (still one SSE event per token).
            await response.write(first + b"".join(prefix + json.dumps(t).encode() + suffix
                                                  for t in tokens) + b"".join(tail))
        if kind == "drop_mid_stream":
            return self._drop(request, response)
        await response.write_eof()
        return response

    def _drop(self, request: web.Request, response: web.StreamResponse | None = None):
        # close() (not abort()) so bytes already written still reach the client before the
        # connection ends without the chunked terminator or [DONE]. aiohttp then fails to
        # write the rest and treats it as a client disconnect, which is what we want.
        self.stats["dropped"] += 1
        if request.transport is not None:
            request.transport.close()
        return response if response is not None else web.Response()

    async def embeddings(self, request: web.Request) -> web.Response:
        """POST /v1/embeddings: hashed bag-of-words vectors (loopback_rules.embedding), as
        floats or, with encoding_format "base64", as little-endian float32 (OpenAI's SDK asks
        for that). Scripted error faults and rpm/tpm limits apply as to chat requests."""
        import base64
        import struct

        authorization = request.headers.get("Authorization")
        try:
            body = await request.json()
        except ValueError:
            body = None
        self._record(request, body, authorization)
        self.stats["embeddings_requests"] = self.stats.get("embeddings_requests", 0) + 1
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return self._error(400, "'input' must be a string or a non-empty list of strings.",
                               "invalid_request_error", param="input")
        tokens = sum(max(1, rules.word_count(t)) for t in texts)
        fault = self._take_fault("\n".join(texts))
        if fault is not None:
            error = self._fault_error(fault, authorization, tokens)
            if error is not None:
                return error
        if self.settings["require_key"] is not None and \
                _bearer(authorization) != self.settings["require_key"]:
            return self._bad_key(authorization)
        refused = self._admit(tokens)
        if refused is not None:
            return refused
        if self.settings["latency"]:
            await asyncio.sleep(self.settings["latency"])
        dimensions = body.get("dimensions")
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= 4096:
            dimensions = rules.DIMENSIONS
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vector = rules.embedding(text, dimensions)
            if as_base64:
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        self._status(200)
        request["loopback_record"]["status"] = 200
        return web.json_response({"object": "list", "data": data, "model": body.get("model"),
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def models(self, request: web.Request) -> web.Response:
        self.stats["models_requests"] += 1
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "loopback"} for m in MODELS]
        return web.json_response({"object": "list", "data": data})

    # -- the Batch API: files and batches

    def _batch_auth(self, request: web.Request) -> web.Response | None:
        authorization = request.headers.get("Authorization")
        if self.settings["require_key"] is not None and _bearer(authorization) != self.settings["require_key"]:
            return self._bad_key(authorization)
        return None

    @staticmethod
    def _public(entry: dict) -> dict:
        return {k: v for k, v in entry.items() if not k.startswith("_")}

    async def files_create(self, request: web.Request) -> web.Response:
        refused = self._batch_auth(request)
        if refused is not None:
            return refused
        try:
            form = await request.post()
        except ValueError:
            form = {}
        upload, purpose = form.get("file"), form.get("purpose")
        if not hasattr(upload, "file") or not purpose:
            return self._error(400, "A multipart body with 'file' and 'purpose' is required.",
                               "invalid_request_error")
        file_id = self._store_file(upload.file.read(), upload.filename, str(purpose))
        self.stats["batch_api"]["uploads"] += 1
        return web.json_response(self._public(self.files[file_id]))

    async def files_content(self, request: web.Request) -> web.Response:
        refused = self._batch_auth(request)
        if refused is not None:
            return refused
        entry = self.files.get(request.match_info["file_id"])
        if entry is None:
            return self._error(404, "No such file.", "invalid_request_error")
        self.stats["batch_api"]["downloads"] += 1
        return web.Response(body=entry["_data"], content_type="application/octet-stream")

    async def batches_create(self, request: web.Request) -> web.Response:
        refused = self._batch_auth(request)
        if refused is not None:
            return refused
        body = await self._json_body(request)
        if not isinstance(body, dict) or body.get("input_file_id") not in self.files:
            return self._error(400, "input_file_id must name an uploaded file.",
                               "invalid_request_error", param="input_file_id")
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return self._error(400, "endpoint must be /v1/chat/completions and completion_window "
                               "24h.", "invalid_request_error")
        batch_id = f"batch_loopback_{next(self.batch_ids)}"
        now = int(time.time())
        batch = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                 "input_file_id": body["input_file_id"], "completion_window": "24h",
                 "status": "validating", "output_file_id": None, "error_file_id": None,
                 "created_at": now, "in_progress_at": None, "expires_at": now + 86400,
                 "finalizing_at": None, "completed_at": None, "failed_at": None,
                 "expired_at": None, "cancelling_at": None, "cancelled_at": None,
                 "request_counts": {"total": 0, "completed": 0, "failed": 0},
                 "metadata": body.get("metadata"), "_cancel": False}
        self.batches[batch_id] = batch
        self.batch_tasks[batch_id] = asyncio.ensure_future(self._run_batch(batch))
        self.stats["batch_api"]["batches"] += 1
        return web.json_response(self._public(batch))

    def _batch_of(self, request: web.Request, counter: str):
        """The batch a request names (and counts it), or the error response to answer with."""
        refused = self._batch_auth(request)
        if refused is not None:
            return refused
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return self._error(404, "No such batch.", "invalid_request_error")
        self.stats["batch_api"][counter] += 1
        return batch

    async def batches_get(self, request: web.Request) -> web.Response:
        batch = self._batch_of(request, "polls")
        if isinstance(batch, web.Response):
            return batch
        return web.json_response(self._public(batch))

    async def batches_cancel(self, request: web.Request) -> web.Response:
        batch = self._batch_of(request, "cancels")
        if isinstance(batch, web.Response):
            return batch
        if batch["status"] in ("validating", "in_progress"):
            batch["_cancel"] = True
            batch["status"] = "cancelling"
            batch["cancelling_at"] = int(time.time())
        return web.json_response(self._public(batch))

    def _new_file(self, lines: list[dict], purpose: str) -> str:
        data = b"".join(json.dumps(line, separators=_COMPACT).encode() + b"\n" for line in lines)
        return self._store_file(data, f"{purpose}.jsonl", purpose)

    def _store_file(self, data: bytes, filename: str, purpose: str) -> str:
        file_id = f"file-loopback-{len(self.files) + 1}"
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data),
                               "created_at": int(time.time()), "filename": filename,
                               "purpose": purpose, "_data": data}
        return file_id

    def _read_batch_input(self, batch: dict) -> list[dict] | dict:
        """The lines of a batch's input file, or the error that fails the whole batch."""
        lines, seen = [], set()
        for number, raw in enumerate(self.files[batch["input_file_id"]]["_data"].splitlines(), 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                return {"code": "invalid_json_line", "line": number,
                        "message": "This line is not parseable as valid JSON."}
            if not isinstance(line, dict) or not isinstance(line.get("body"), dict) \
                    or not isinstance(line.get("custom_id"), str):
                return {"code": "invalid_request", "line": number,
                        "message": "Each line needs a custom_id string and a body object."}
            if line["custom_id"] in seen:
                return {"code": "duplicate_custom_id", "line": number,
                        "message": "The custom_id for this request is a duplicate."}
            if line.get("url") != batch["endpoint"]:
                return {"code": "mismatched_url", "line": number,
                        "message": "The url of this line does not match the batch's endpoint."}
            seen.add(line["custom_id"])
            lines.append(line)
        if not lines:
            return {"code": "empty_file", "line": None, "message": "The input file has no lines."}
        for number, line in enumerate(lines, 1):
            messages = line["body"].get("messages")
            last_user = _last_user_text(messages) if isinstance(messages, list) else ""
            for i, fault in enumerate(self.faults):
                if fault["kind"] == "batch_failed" and fault.get("match", "") in last_user:
                    fault["times"] -= 1
                    if fault["times"] <= 0:
                        del self.faults[i]
                    return {"code": "invalid_request", "line": number,
                            "message": fault.get("message", "This line was refused (scripted).")}
        return lines

    async def _run_batch(self, batch: dict) -> None:
        settings = self.settings
        started = time.monotonic()
        expire = settings["batch_expire_seconds"]
        lines = self._read_batch_input(batch)
        if isinstance(lines, dict):
            batch.update(status="failed", failed_at=int(time.time()),
                         errors={"object": "list", "data": [lines]})
            return
        counts = batch["request_counts"]
        counts["total"] = len(lines)
        if settings["batch_validate_seconds"]:
            await asyncio.sleep(settings["batch_validate_seconds"])
        if batch["_cancel"]:
            lines_left = lines
            output, errors = [], []
        else:
            batch.update(status="in_progress", in_progress_at=int(time.time()))
            output, errors = [], []
            lines_left = []
            for index, line in enumerate(lines):
                if batch["_cancel"] or (expire is not None and time.monotonic() - started > expire):
                    lines_left = lines[index:]
                    break
                if settings["batch_line_seconds"]:
                    await asyncio.sleep(settings["batch_line_seconds"])
                status, body = self._batch_line(batch, line)
                entry = {"id": f"batch_req_{batch['id']}_{index}", "custom_id": line["custom_id"],
                         "response": {"status_code": status, "request_id": f"req_{index}",
                                      "body": body}, "error": None}
                if status == 200:
                    output.append(entry)
                    counts["completed"] += 1
                else:
                    errors.append(entry)
                    counts["failed"] += 1
        ending = "cancelled" if batch["_cancel"] else ("expired" if lines_left else "completed")
        code, message = (("batch_cancelled", "This request was not executed because the batch "
                          "was cancelled.") if ending == "cancelled" else
                         ("batch_expired", "This request could not be executed before the "
                          "completion window expired."))
        for line in lines_left:
            errors.append({"id": None, "custom_id": line["custom_id"], "response": None,
                           "error": {"code": code, "message": message}})
        batch.update(status="finalizing", finalizing_at=int(time.time()))
        batch["output_file_id"] = self._new_file(output, "batch_output") if output else None
        batch["error_file_id"] = self._new_file(errors, "batch_error") if errors else None
        batch.update(status=ending, **{f"{ending}_at": int(time.time())})

    def _batch_line(self, batch: dict, line: dict) -> tuple[int, dict]:
        """One line answered as a chat request (without HTTP): (status, body)."""
        body = line["body"]
        now = time.time()
        self.stats["batch_api"]["lines"] += 1
        self.recorded.append({"time": now, "path": f"batch:{batch['id']}", "body": body,
                              "headers": {}, "authorization": None, "auth_present": False,
                              "custom_id": line["custom_id"]})
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, {"error": {"message": "'messages' must be a non-empty list.",
                                   "type": "invalid_request_error", "param": "messages",
                                   "code": None}}
        last_user = _last_user_text(messages)
        prompt_tokens = max(1, sum(len(_text_of(m.get("content")).split())
                                   for m in messages if isinstance(m, dict)))
        fault = self._take_fault(last_user)
        if fault is not None:
            error = self._fault_error(fault, None, prompt_tokens)
            if error is not None:
                return error.status, json.loads(error.text)
        window = self.settings["context_window"]
        if window is not None and prompt_tokens > window:
            error = self._context_exceeded(window, prompt_tokens)
            return error.status, json.loads(error.text)
        reply = self._compose(body, messages, last_user, prompt_tokens)
        self.recorded[-1]["usage"] = reply.usage
        self.recorded[-1]["status"] = 200
        return 200, {"id": f"chatcmpl-loopback-{next(self.ids)}", "object": "chat.completion",
                     "created": int(now), "model": body.get("model"),
                     "choices": [{"index": 0, "logprobs": None, "finish_reason": reply.finish_reason,
                                  "message": {"role": "assistant",
                                              "content": "".join(reply.tokens)}}],
                     "usage": reply.usage}

    # -- control endpoints

    async def _json_body(self, request: web.Request):
        try:
            return await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text=json.dumps({"error": "body must be JSON"}),
                                     content_type="application/json")

    @staticmethod
    def _refuse(message: str) -> web.Response:
        return web.json_response({"error": message}, status=400)

    async def control_configure(self, request: web.Request) -> web.Response:
        updates = await self._json_body(request)
        try:
            if not isinstance(updates, dict):
                raise ValueError("configure takes a JSON object of settings")
            updates = validate_settings(updates)
        except ValueError as e:
            return self._refuse(str(e))
        self.settings.update(updates)
        if "replies" in updates:
            self.reply_cycle = itertools.count()
        return web.json_response(self.settings)

    async def control_script(self, request: web.Request) -> web.Response:
        payload = await self._json_body(request)
        faults = payload.get("faults") if isinstance(payload, dict) else payload
        try:
            if not isinstance(faults, list):
                raise ValueError("script takes a list of faults (or {'faults': [...], 'append': bool})")
            faults = [validate_fault(f) for f in faults]
        except ValueError as e:
            return self._refuse(str(e))
        if not (isinstance(payload, dict) and payload.get("append")):
            self.faults.clear()
        self.faults.extend(faults)
        return web.json_response({"pending": len(self.faults)})

    async def control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.stats, faults_pending=len(self.faults)))

    async def control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def control_requests(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.recorded))

    async def control_batches(self, request: web.Request) -> web.Response:
        return web.json_response([self._public(b) for b in self.batches.values()])


def make_app(settings: dict | None = None) -> web.Application:
    state = _Loopback(validate_settings(settings or {}))
    app = web.Application(client_max_size=64 * 1024 * 1024)
    for prefix in ("/v1", ""):  # also serve clients whose base URL lacks /v1
        app.router.add_post(prefix + "/chat/completions", state.chat)
        app.router.add_post(prefix + "/embeddings", state.embeddings)
        app.router.add_get(prefix + "/models", state.models)
        app.router.add_post(prefix + "/files", state.files_create)
        app.router.add_get(prefix + "/files/{file_id}/content", state.files_content)
        app.router.add_post(prefix + "/batches", state.batches_create)
        app.router.add_get(prefix + "/batches/{batch_id}", state.batches_get)
        app.router.add_post(prefix + "/batches/{batch_id}/cancel", state.batches_cancel)
    app.router.add_post("/_control/configure", state.control_configure)
    app.router.add_post("/_control/script", state.control_script)
    app.router.add_get("/_control/stats", state.control_stats)
    app.router.add_post("/_control/reset", state.control_reset)
    app.router.add_get("/_control/requests", state.control_requests)
    app.router.add_get("/_control/batches", state.control_batches)
    return app


async def serve(host: str, port: int, settings: dict) -> None:
    app = make_app(settings)
    # handler_cancellation: a client that hangs up (e.g. during a stall) ends its handler, so
    # in_flight stays true; no access log: per-request logging would cost benchmark CPU.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # A deep backlog: benchmarks open hundreds of connections at once, and a full accept
    # queue costs a 1 s SYN retransmit that would show up as fake latency.
    await web.SockSite(runner, sock, backlog=2048).start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if stat.S_ISFIFO(os.fstat(0).st_mode):
        # Only a pipe means "my parent holds the other end": /dev/null or a TTY would end us
        # at once or never, so those are not watched.
        def watch_stdin() -> None:
            # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader's lock
            # aborts the interpreter at exit.
            while os.read(0, 65536):
                pass
            loop.call_soon_threadsafe(stop.set)
        threading.Thread(target=watch_stdin, daemon=True).start()

    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"LOOPBACK_URL=http://{shown}:{bound_port}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m llm_notebook.testing.loopback",
        description="Loopback OpenAI-compatible server for tests (prints LOOPBACK_URL=...).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, help="seconds before replying (default 0)")
    parser.add_argument("--tokens-per-second", type=float,
                        help="streaming pace (default 0: all tokens at once)")
    parser.add_argument("--settings", default="{}",
                        help='JSON object of other settings, e.g. \'{"rpm": 60}\'')
    args = parser.parse_args(argv)
    try:
        settings = dict(json.loads(args.settings))
        for key in ("latency", "tokens_per_second"):
            if getattr(args, key) is not None:  # explicit flags win over --settings
                settings[key] = getattr(args, key)
        settings = validate_settings(settings)
    except (ValueError, TypeError) as e:
        parser.error(f"bad settings: {e}")
    try:
        asyncio.run(serve(args.host, args.port, settings))
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------- client side

class LoopbackServer:
    """Runs the loopback server in a subprocess and drives its control endpoints.

    >>> with LoopbackServer(latency=0.1) as server:
    ...     server.url          # 'http://127.0.0.1:PORT/v1', for api_base / base_url
    """

    def __init__(self, latency: float = 0.0, *, host: str = "127.0.0.1", port: int = 0,
                 startup_timeout: float = 30.0, **settings):
        validate_settings(dict(settings, latency=latency))  # fail here, not in the subprocess
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.settings = dict(settings, latency=latency)
        self.origin: str | None = None
        self._proc: subprocess.Popen | None = None
        # Control calls must never go through a proxy configured in the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def url(self) -> str:
        """Base URL of the OpenAI-compatible API, ending in /v1."""
        if self.origin is None:
            raise LoopbackError("the loopback server is not running; call .start() first")
        return self.origin + "/v1"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "LoopbackServer":
        if self.running:
            return self
        # Run the file itself rather than `-m llm_notebook...`: the server then needs neither
        # the package's __init__ nor an installed package, and starts faster.
        cmd = [sys.executable, os.path.abspath(__file__), "--host", self.host,
               "--port", str(self.port), "--settings", json.dumps(self.settings)]
        # stdin is a pipe we hold: if this process dies, the server sees EOF and exits.
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        lines: queue.Queue = queue.Queue()

        def read_url(stream) -> None:
            for line in stream:
                if line.startswith(b"LOOPBACK_URL="):
                    lines.put(line.decode().strip().partition("=")[2])
                    return
            lines.put(None)  # exited without listening

        threading.Thread(target=read_url, args=(self._proc.stdout,), daemon=True).start()
        try:
            origin = lines.get(timeout=self.startup_timeout)
        except queue.Empty:
            origin = None
        if origin is None:
            code = self._proc.poll()
            self.stop()
            raise LoopbackError(
                f"loopback server did not start within {self.startup_timeout:g} s "
                f"(exit code {code}); its error, if any, is on stderr above")
        self.origin = origin
        self.port = int(origin.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        self.origin = None

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LoopbackServer {self.origin or 'stopped'}>"

    # -- control endpoints

    def _control(self, method: str, path: str, payload=None):
        if self.origin is None:
            raise LoopbackError("the loopback server is not running; call .start() first")
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.origin + "/_control/" + path, data=data,
                                         method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")
            raise LoopbackError(f"loopback {path} refused ({e.code}): {detail}") from None

    def configure(self, **settings) -> dict:
        """Change settings (see DEFAULT_SETTINGS); returns all current settings."""
        return self._control("POST", "configure", settings)

    def script(self, faults: list[dict], append: bool = False) -> int:
        """Queue faults for the next chat requests (replacing queued ones unless append);
        returns how many are pending."""
        return self._control("POST", "script", {"faults": faults, "append": append})["pending"]

    def stats(self) -> dict:
        """Counters since the last reset; by_status has int keys."""
        stats = self._control("GET", "stats")
        stats["by_status"] = {int(k): v for k, v in stats["by_status"].items()}
        return stats

    def reset(self) -> None:
        """Back to the startup settings; no faults, stats or recorded requests."""
        self._control("POST", "reset", {})

    def requests(self) -> list[dict]:
        """Recorded chat requests, oldest first (the last MAX_RECORDED): time, path, body,
        headers, and once answered `status`, `retry_after` (the 429's Retry-After header) and
        `usage` (the token counts the reply reported). A request whose client hung up before
        the answer has no status. Lines of provider batches are recorded too, with the path
        `batch:<batch id>` and their `custom_id`."""
        return self._control("GET", "requests")

    def batches(self) -> list[dict]:
        """Every batch created since the last reset (the Batch API's batch objects)."""
        return self._control("GET", "batches")


if __name__ == "__main__":
    main()
