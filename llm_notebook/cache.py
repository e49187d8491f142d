"""The cache key of a request: exact match on model, messages, options and endpoint.

Options that do not change the answer (timeouts, streaming, retries) are left out, so a streamed
and a non-streamed call share an entry.
"""

from __future__ import annotations

import hashlib
import json

_NOT_SEMANTIC = frozenset({"stream", "timeout", "deadline", "max_retries", "stream_options",
                           "api_key", "metadata", "user"})


def cache_key(model: str, messages: list[dict], options: dict, endpoint: str | None) -> str:
    semantic = {k: v for k, v in options.items() if k not in _NOT_SEMANTIC and v is not None}
    payload = json.dumps(
        {"model": model, "messages": messages, "options": semantic, "endpoint": endpoint or ""},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
