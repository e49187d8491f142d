"""The OpenAI Batch API of a named endpoint, over the lean aiohttp client: upload a JSONL file
(`POST /files`, purpose "batch"), create a batch (`POST /batches`), read it (`GET /batches/{id}`),
download its output and error files (`GET /files/{id}/content`), cancel it.

Errors are classified and redacted like a call's (http.classify); a connection that fails or a
server that answers 429/5xx is asked again a few times (Retry-After honoured), because a poll
that fails once must not lose a batch the provider is still running.
"""

from __future__ import annotations

import asyncio
import json

from ..errors import CONNECTION, INVALID_RESPONSE, LLMError
from . import Route, without_userinfo
from .http import _session, classify

ATTEMPTS = 4
TIMEOUT_S = 120.0           # one request (an upload of a 100 MB file included)
BATCH_ENDPOINT = "/v1/chat/completions"


class HttpBatches:
    def __init__(self, route: Route):
        self.route = route
        self.base = route.base_url.rstrip("/")

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.route.api_key}"} if self.route.api_key else {}

    async def _request(self, method: str, path: str, *, json_body=None, form=None,
                       raw: bool = False):
        import aiohttp

        url = self.base + path
        delay = 1.0
        for attempt in range(1, ATTEMPTS + 1):
            try:
                data = form() if form is not None else None
                async with _session().request(
                        method, url, json=json_body, data=data, headers=self._headers(),
                        timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as resp:
                    body = await resp.read()
                    if resp.status >= 400:
                        raise classify(resp.status, body.decode("utf-8", "replace"),
                                       resp.headers.get("Retry-After"))
                    if raw:
                        return body
                    try:
                        return json.loads(body)
                    except ValueError:
                        raise LLMError(f"{without_userinfo(self.base)}{path} answered with "
                                       "something that is not JSON", kind=INVALID_RESPONSE) from None
            except LLMError as exc:
                if not exc.retryable or attempt == ATTEMPTS:
                    raise
                wait = exc.retry_after or delay
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                if attempt == ATTEMPTS:
                    raise LLMError(f"connection to {without_userinfo(self.base)} failed: "
                                   f"{exc.__class__.__name__}: {exc}", kind=CONNECTION) from None
                wait = delay
            await asyncio.sleep(wait)
            delay = min(delay * 2, 30.0)

    async def upload(self, data: bytes, filename: str) -> str:
        import aiohttp

        def form():
            f = aiohttp.FormData()
            f.add_field("purpose", "batch")
            f.add_field("file", data, filename=filename, content_type="application/jsonl")
            return f

        answer = await self._request("POST", "/files", form=form)
        return _field(answer, "id", "the file upload")

    async def create(self, input_file_id: str, metadata: dict | None = None) -> dict:
        body = {"input_file_id": input_file_id, "endpoint": BATCH_ENDPOINT,
                "completion_window": "24h"}
        if metadata:
            body["metadata"] = metadata
        answer = await self._request("POST", "/batches", json_body=body)
        _field(answer, "id", "creating the batch")
        return answer

    async def retrieve(self, batch_id: str) -> dict:
        return await self._request("GET", f"/batches/{batch_id}")

    async def content(self, file_id: str) -> bytes:
        return await self._request("GET", f"/files/{file_id}/content", raw=True)

    async def cancel(self, batch_id: str) -> dict:
        return await self._request("POST", f"/batches/{batch_id}/cancel")


def _field(answer, name: str, what: str):
    value = answer.get(name) if isinstance(answer, dict) else None
    if not isinstance(value, str) or not value:
        raise LLMError(f"the provider's answer to {what} has no {name!r}", kind=INVALID_RESPONSE)
    return value
