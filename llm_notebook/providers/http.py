"""A lean client for OpenAI-compatible endpoints (aiohttp).

litellm spends about 5 ms of CPU per call, which caps a 2-core machine far below what the
network allows at high concurrency. For endpoints that speak the OpenAI chat API (custom
endpoints, the loopback test server, local servers) this client does one POST with a
pre-serialised body and parses one JSON document or an SSE stream, at a fraction of that cost.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from typing import Callable

from .. import options as call_options
from ..errors import (AUTH, BAD_REQUEST, CONNECTION, CONTEXT_WINDOW, INCOMPLETE, INVALID_RESPONSE,
                      RATE_LIMIT, SERVER, TIMEOUT, LLMError)
from . import Result, Route

_sessions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()


def _session():
    import aiohttp

    loop = asyncio.get_running_loop()
    sess = _sessions.get(loop)
    if sess is None or sess.closed:
        # No connection cap here: the batch engine bounds concurrency itself.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        sess = aiohttp.ClientSession(connector=connector, raise_for_status=False,
                                     json_serialize=json.dumps)
        _sessions[loop] = sess
    return sess


def build_body(route: Route, messages: list[dict], options: dict, stream: bool) -> bytes:
    body = {"model": route.api_model, "messages": messages}
    # Never a key, a URL or a header in the body (llm_notebook.options says which those are).
    body.update(call_options.body_options(options))
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode("utf-8")


def classify(status: int, text: str, retry_after: str | None) -> LLMError:
    message = text.strip()
    try:
        err = json.loads(text).get("error")
        if isinstance(err, dict):
            message = err.get("message") or message
            code = err.get("code") or err.get("type") or ""
        else:
            code = ""
            message = str(err or message)
    except (ValueError, AttributeError):
        code = ""
    lowered = f"{code} {message}".lower()
    ra = None
    if retry_after:
        try:
            ra = float(retry_after)
        except ValueError:
            ra = None
    if status == 429:
        kind = RATE_LIMIT
    elif status in (401, 403):
        kind = AUTH
    elif "context_length" in lowered or "maximum context length" in lowered:
        kind = CONTEXT_WINDOW
    elif 400 <= status < 500:
        kind = BAD_REQUEST
    else:
        kind = SERVER
    # Redact before cutting: a key cut in half is no longer recognised, and half a key leaks.
    from ..redact import redact

    return LLMError(f"HTTP {status} from provider: {redact(message)[:500]}", kind=kind,
                    status=status, retry_after=ra)


async def run(route: Route, messages: list[dict], options: dict, *, stream: bool,
              timeout: float, on_delta: Callable[[str], None] | None) -> Result:
    import aiohttp

    url = route.base_url.rstrip("/") + "/chat/completions"
    # Headers the caller's own code asked for (templates and cells cannot carry any).
    headers = {**call_options.request_headers(options), "Content-Type": "application/json"}
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    body = build_body(route, messages, options, stream)
    started = time.perf_counter()
    result = Result()
    parts: list[str] = []
    try:
        async with asyncio.timeout(timeout) if not stream else _nullcontext():
            async with _session().post(url, data=body, headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout,
                                                                     sock_read=timeout)) as resp:
                if resp.status >= 400:
                    raise classify(resp.status, await resp.text(), resp.headers.get("Retry-After"))
                if not stream:
                    raw = await resp.read()
                    try:
                        data = json.loads(raw)
                        choice = data["choices"][0]
                        result.text = choice["message"].get("content") or ""
                        result.finish_reason = choice.get("finish_reason")
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                        raise LLMError(f"provider sent an unreadable response ({exc.__class__.__name__})",
                                       kind=INVALID_RESPONSE) from None
                    _usage(result, data.get("usage"))
                    return result
                done = False
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(payload)
                    except ValueError:
                        raise LLMError("provider sent an unreadable stream chunk",
                                       kind=INVALID_RESPONSE if not parts else INCOMPLETE,
                                       partial="".join(parts)) from None
                    if chunk.get("usage"):
                        _usage(result, chunk["usage"])
                    for choice in chunk.get("choices") or ():
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            if result.ttft_ms is None:
                                result.ttft_ms = (time.perf_counter() - started) * 1000
                            parts.append(delta)
                            if on_delta is not None:
                                on_delta(delta)
                        if choice.get("finish_reason"):
                            result.finish_reason = choice["finish_reason"]
                if not done and result.finish_reason is None:
                    raise LLMError("the stream ended before the response was complete",
                                   kind=INCOMPLETE, partial="".join(parts))
                result.text = "".join(parts)
                return result
    except LLMError:
        raise
    except (asyncio.TimeoutError, TimeoutError):
        raise LLMError(f"no answer within {timeout:.1f} s", kind=TIMEOUT if not parts else INCOMPLETE,
                       partial="".join(parts)) from None
    except aiohttp.ClientPayloadError:
        raise LLMError("the connection dropped mid-response", kind=INCOMPLETE,
                       partial="".join(parts)) from None
    except (aiohttp.ClientError, OSError) as exc:
        kind = INCOMPLETE if parts else CONNECTION
        from . import without_userinfo

        raise LLMError(f"connection to {without_userinfo(route.base_url)} failed: "
                       f"{exc.__class__.__name__}: {exc}", kind=kind, partial="".join(parts)) from None


def _usage(result: Result, usage: dict | None) -> None:
    if usage:
        result.input_tokens = usage.get("prompt_tokens")
        result.output_tokens = usage.get("completion_tokens")


class _nullcontext:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


async def close_all() -> None:
    loop = asyncio.get_running_loop()
    sess = _sessions.pop(loop, None)
    if sess is not None:
        await sess.close()
