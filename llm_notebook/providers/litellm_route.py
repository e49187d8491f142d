"""The one place litellm is imported (lazily: it takes 3-5 s).

litellm's own retries are switched off (ours honour a deadline and Retry-After), its debug
banners are silenced, and its errors are classified into our kinds and redacted.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Callable

from ..errors import (AUTH, BAD_REQUEST, CONNECTION, CONTEXT_WINDOW, INCOMPLETE, INVALID_RESPONSE,
                      RATE_LIMIT, SERVER, TIMEOUT, LLMError)
from . import Result, Route

_litellm = None

_SKIP = {"timeout", "stream", "deadline", "max_retries", "num_retries", "base_url"}


def get_litellm():
    """Import and configure litellm once."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        litellm.num_retries = 0
        litellm.drop_params = True
        litellm.telemetry = False
        from . import local

        local.register_with_litellm(litellm)
        _litellm = litellm
    return _litellm


def classify(exc: BaseException, partial: str = "") -> LLMError:
    litellm = get_litellm()
    status = getattr(exc, "status_code", None)
    text = f"{exc.__class__.__name__}: {exc}"
    retry_after = None
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            value = headers.get("retry-after")
            retry_after = float(value) if value is not None else None
        except (TypeError, ValueError):
            retry_after = None
    if isinstance(exc, litellm.ContextWindowExceededError):
        kind = CONTEXT_WINDOW
    elif isinstance(exc, litellm.RateLimitError) or status == 429:
        kind = RATE_LIMIT
    elif isinstance(exc, (litellm.AuthenticationError, litellm.PermissionDeniedError)) or status in (401, 403):
        kind = AUTH
    elif isinstance(exc, litellm.Timeout):
        kind = TIMEOUT if not partial else INCOMPLETE
    elif isinstance(exc, (litellm.BadRequestError, litellm.NotFoundError)) or (status and 400 <= status < 500):
        kind = BAD_REQUEST
        if "context length" in text.lower() or "context_length" in text.lower():
            kind = CONTEXT_WINDOW
    elif isinstance(exc, litellm.APIConnectionError):
        kind = INCOMPLETE if partial else CONNECTION
        if status and status >= 500:
            kind = SERVER
    elif status and status >= 500:
        kind = SERVER
    elif isinstance(exc, (ValueError, KeyError)):
        kind = INVALID_RESPONSE
    else:
        kind = INCOMPLETE if partial else SERVER
    # Redact before cutting: a key cut in half is no longer recognised, and half a key leaks.
    from ..redact import redact

    return LLMError(redact(text)[:800], kind=kind, status=status, retry_after=retry_after,
                    partial=partial)


async def run(route: Route, messages: list[dict], options: dict, *, stream: bool,
              timeout: float, on_delta: Callable[[str], None] | None) -> Result:
    litellm = get_litellm()
    kwargs = {k: v for k, v in options.items() if k not in _SKIP and v is not None}
    if route.base_url:
        kwargs["api_base"] = route.base_url
    if route.api_key:
        kwargs["api_key"] = route.api_key
    model = route.api_model
    if route.endpoint:  # a named endpoint routed through litellm speaks the OpenAI API
        model = f"openai/{route.api_model}"
    started = time.perf_counter()
    result = Result()
    parts: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            if not stream:
                resp = await litellm.acompletion(model=model, messages=messages, timeout=timeout,
                                                 num_retries=0, max_retries=0, **kwargs)
                choice = resp.choices[0]
                result.text = choice.message.content or ""
                result.finish_reason = choice.finish_reason
                usage = getattr(resp, "usage", None)
                if usage:
                    result.input_tokens = usage.prompt_tokens
                    result.output_tokens = usage.completion_tokens
                return result
            resp = await litellm.acompletion(model=model, messages=messages, timeout=timeout,
                                             stream=True, stream_options={"include_usage": True},
                                             num_retries=0, max_retries=0, **kwargs)
            async for chunk in resp:
                usage = getattr(chunk, "usage", None)
                if usage and getattr(usage, "prompt_tokens", None) is not None:
                    result.input_tokens = usage.prompt_tokens
                    result.output_tokens = usage.completion_tokens
                for choice in chunk.choices or ():
                    delta = getattr(choice.delta, "content", None) if choice.delta else None
                    if delta:
                        if result.ttft_ms is None:
                            result.ttft_ms = (time.perf_counter() - started) * 1000
                        parts.append(delta)
                        if on_delta is not None:
                            on_delta(delta)
                    if choice.finish_reason:
                        result.finish_reason = choice.finish_reason
            result.text = "".join(parts)
            if result.finish_reason is None:
                raise LLMError("the stream ended before the response was complete",
                               kind=INCOMPLETE, partial=result.text)
            if result.input_tokens is None:
                result.input_tokens = litellm.token_counter(model=model, messages=messages)
                result.output_tokens = litellm.token_counter(model=model, text=result.text)
            return result
    except LLMError:
        raise
    except asyncio.CancelledError:
        raise
    except (asyncio.TimeoutError, TimeoutError):
        raise LLMError(f"no answer within {timeout:.1f} s", kind=TIMEOUT if not parts else INCOMPLETE,
                       partial="".join(parts)) from None
    except Exception as exc:  # litellm raises many types; classify them all
        raise classify(exc, "".join(parts)) from None
