"""Where a model id leads: the embedded model, a lean OpenAI-compatible HTTP client, or litellm.

`resolve()` turns a model id (after aliases) into a Route; `chunks()` opens one attempt of a call
on a Route as an async iterator of chunks: text deltas (str) as they arrive, then one `Finish`
with the provider's usage. A provider only produces chunks and classifies its own errors:
timeouts, time to first token, partial text and retries belong to llm_notebook.call.
Only `litellm_route.py` imports litellm, and only when a call needs it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import AsyncIterator

from .. import keys, pricing
from .. import options as call_options
from ..errors import MissingKeyError, UnknownModelError

LOCAL_MODELS = {"smollm2"}
# A sensible default model per provider, used when the user has a key but chose no model.
PROVIDER_DEFAULTS = {
    "openai": "openai/gpt-4o-mini",
    "anthropic": "anthropic/claude-3-5-haiku-latest",
    "gemini": "gemini/gemini-2.0-flash",
    "mistral": "mistral/mistral-small-latest",
    "groq": "groq/llama-3.1-8b-instant",
}


@dataclass
class Endpoint:
    """A named OpenAI-compatible endpoint: `name/<model>` is sent to `base_url`."""
    name: str
    base_url: str
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False)
    via: str = "http"                  # "http" (lean client) or "litellm"
    attachments: bool | None = None    # takes images/PDFs: True, False, None (unknown: allowed)

    def __post_init__(self) -> None:
        from .. import redact

        # A password in the URL (http://user:pass@host) is as secret as a key.
        redact.register(url_password(self.base_url))

    def key(self) -> str | None:
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            from .. import redact

            value = keys.named_value(self.api_key_env)
            # The variable's name need not look key-like, so register the value itself: an
            # error body that echoes it must still be redacted.
            redact.register(value)
            return value
        return None

    def __repr__(self) -> str:
        return (f"Endpoint(name={self.name!r}, base_url={without_userinfo(self.base_url)!r}, "
                f"api_key_env={self.api_key_env!r}, via={self.via!r})")


def url_password(url: str | None) -> str | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password if url else None
    except ValueError:
        return None


def without_userinfo(url: str | None) -> str | None:
    """The URL without `user:pass@`, for anything shown or logged."""
    from urllib.parse import urlsplit, urlunsplit

    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


@dataclass
class Route:
    model: str                          # the resolved id, as logged
    kind: str                           # "local" | "http" | "litellm"
    provider: str
    api_model: str                      # the name sent to the provider
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    endpoint: str | None = None         # endpoint name, for cache keys and logs
    missing_key: str | None = None      # resolved without the key it needs (replay): why
    attachments: bool | None = None     # an endpoint's: takes images/PDFs (None: unknown)


@dataclass(slots=True)
class Finish:
    """The last chunk of a complete answer: the provider's token counts and finish reason.

    `text` holds the whole answer when it came in one piece (a non-streamed response); a
    streamed answer's text came before it as str chunks. A producer whose answer was cut short
    ends without a Finish."""
    text: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None


def known_providers() -> set[str]:
    found = {entry.get("litellm_provider") for entry in pricing.price_map().values()}
    found.discard(None)
    return found | set(keys.PROVIDER_ENV) | keys.KEYLESS


def resolve(model: str, *, endpoints: dict[str, Endpoint], aliases: dict[str, str],
            options: dict | None = None, require_key: bool = True) -> Route:
    """The Route of `model`. A provider's key must be present, unless `require_key` is False
    (replaying: a recorded answer needs no key), when a Route without it says why in
    `missing_key`, and `check_key` refuses to send it."""
    if not isinstance(model, str):
        raise UnknownModelError(f"a model id is a string such as 'openai/gpt-4o-mini' or "
                                f"'local/smollm2', not {type(model).__name__}")
    seen = []
    while model in aliases:
        if model in seen:
            raise UnknownModelError(f"alias loop: {' -> '.join(seen + [model])}; fix it with alias()")
        seen.append(model)
        model = aliases[model]
    options = options or {}
    from .. import redact

    redact.register_options(options)   # a per-call key (or auth header) is as secret as a configured one
    _check_finite(options)
    prefix, _, rest = model.partition("/")
    if prefix == "local":
        if rest not in LOCAL_MODELS:
            raise UnknownModelError(f"unknown embedded model {model!r}; the embedded model is 'local/smollm2'")
        return Route(model=model, kind="local", provider="local", api_model=rest)
    if rest and prefix in endpoints:
        ep = endpoints[prefix]
        return Route(model=model, kind=ep.via, provider="openai", api_model=rest,
                     base_url=ep.base_url, api_key=ep.key(), endpoint=ep.name,
                     attachments=ep.attachments)
    provider = prefix if rest else ((pricing.model_info(model) or {}).get("litellm_provider") or "")
    if not provider or (rest and provider not in known_providers()):
        raise UnknownModelError(_unknown_model_message(model, endpoints, aliases))
    if not rest and not pricing.model_info(model):
        raise UnknownModelError(_unknown_model_message(model, endpoints, aliases))
    base_url = options.get("api_base") or options.get("base_url")
    api_key = options.get("api_key")
    elsewhere = call_options.destination_options(options)
    if elsewhere:
        # The caller's own code sends this call somewhere of its choosing: the key configured
        # for the provider stays with the provider, so that server needs its own.
        _check_per_call_destination(provider, elsewhere, base_url, api_key)
        return Route(model=model, kind="litellm", provider=provider, api_model=model,
                     base_url=base_url, api_key=api_key)
    if not api_key and not keys.has_key(provider):
        env = " or ".join(keys.env_vars_for(provider))
        missing = (f"no API key for {provider}: set {env} in the environment (or a .env file), "
                   f"or run llm_notebook.session().set_key({provider!r})")
        if require_key:
            raise MissingKeyError(missing)
        return Route(model=model, kind="litellm", provider=provider, api_model=model,
                     base_url=base_url, missing_key=missing)
    return Route(model=model, kind="litellm", provider=provider, api_model=model,
                 base_url=base_url, api_key=api_key or keys.get_key(provider))


def check_key(route: Route) -> None:
    """Before anything is sent on a route resolved without its key: the error it would have
    raised then."""
    if route.missing_key:
        raise MissingKeyError(route.missing_key)


def _check_per_call_destination(provider: str, names: list[str], base_url, api_key) -> None:
    from ..errors import BadOptionError

    shown = ", ".join(f"{n}=" for n in names)
    if isinstance(base_url, str) and "@" in base_url and url_password(base_url) is not None:
        raise BadOptionError(
            f"{shown} holds a user name and password ({without_userinfo(base_url)}), which would "
            "be logged with the call; pass the credential as api_key= instead")
    if not api_key and provider not in keys.KEYLESS:
        raise BadOptionError(
            f"{shown} sends this call somewhere other than {provider}'s own API, so your "
            f"{provider} key is not sent with it: pass api_key= for that server, or configure "
            f"it once with add_endpoint(name, url, api_key_env=...)")


def _check_finite(options: dict) -> None:
    """NaN and infinity have no JSON form: the lean client would send invalid JSON and a
    provider answer with an obscure 400, so such an option is refused before any call."""
    import json
    import math

    from ..errors import BadOptionError

    for name, value in options.items():
        if isinstance(value, float):
            bad = not math.isfinite(value)
        elif isinstance(value, (dict, list, tuple)):
            try:
                json.dumps(value, allow_nan=False, default=str)
                bad = False
            except ValueError:
                bad = True
        else:
            bad = False
        if bad:
            raise BadOptionError(f"option {name}={value!r} holds NaN or an infinite number, "
                                 "which cannot be sent; use a finite number")


def _unknown_model_message(model: str, endpoints: dict, aliases: dict) -> str:
    names = list(aliases) + [f"{e}/" for e in endpoints] + ["local/smollm2"]
    names += list(pricing.price_map())
    close = difflib.get_close_matches(model, names, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    prefix, _, rest = model.partition("/")
    if rest and prefix not in endpoints:
        # Most likely a template or notebook made with an endpoint of someone else's kernel.
        return (f"unknown model {model!r}: no endpoint {prefix!r} is configured in this kernel "
                f"and {prefix!r} is not a provider.{hint} Add the endpoint with "
                f"add_endpoint({prefix!r}, url), or use another model.")
    return (f"unknown model {model!r}.{hint} Use a litellm id such as 'openai/gpt-4o-mini', "
            f"'local/smollm2', an alias, or add an endpoint with add_endpoint().")


async def prepare(route: Route) -> None:
    """Load what a route needs before a call's deadline starts, in a thread: litellm's first
    import (3-5 s) or the embedded model's weights. Counted against a deadline it would fail the
    first call, and run on the event loop it would stall every other call in flight."""
    if route.kind == "litellm":
        from . import litellm_route

        if not litellm_route.loaded():
            await _load_in_background(litellm_route.get_litellm)
    elif route.kind == "local":
        from . import local

        if not local.loaded():
            await _load_in_background(local.get_model)


def _load_in_background(load) -> "asyncio.Future":
    """Run `load` on a daemon thread; the future is its result on the running loop.

    A load cannot be stopped half-way, and a call cancelled by Ctrl-C stops waiting for it. A
    daemon thread is what lets an interrupted script exit then: the interpreter joins the
    default executor's threads at exit, and an interrupted script waited 4.5-17 s (measured, on a
    busy 2-CPU machine) for litellm's import to end before it could. Whatever call comes next waits for the same
    load (litellm_route and local each load under a lock)."""
    import asyncio
    import threading

    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def settle(result, error) -> None:
        if done.done():              # the call was cancelled meanwhile
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def work() -> None:
        result = error = None
        try:
            result = load()
        except BaseException as exc:  # raised again on the loop, in the waiting call
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:          # the loop is closed: nobody is waiting any more
            pass

    threading.Thread(target=work, name="llm-notebook-load", daemon=True).start()
    return done


# Providers whose Batch API litellm wraps with create_file / create_batch / retrieve_batch /
# file_content, and that take a JSONL of OpenAI chat requests with an API key alone (litellm's
# vertex_ai and bedrock batches also need a storage bucket set up: not offered here).
LITELLM_BATCH_PROVIDERS = ("openai", "azure", "mistral", "hosted_vllm")


def batch_api_support(route: Route) -> None:
    """Raise BatchAPIUnavailable (one line, nothing sent) unless `route` has a Batch API:
    a named OpenAI-compatible endpoint (its /files and /batches) or a provider of
    LITELLM_BATCH_PROVIDERS."""
    from ..errors import BatchAPIUnavailable

    if route.kind == "local":
        raise BatchAPIUnavailable(
            "the embedded model has no Batch API; run it with via='calls' (the default)")
    if route.endpoint is not None or route.provider in LITELLM_BATCH_PROVIDERS:
        return
    offered = ", ".join(LITELLM_BATCH_PROVIDERS)
    raise BatchAPIUnavailable(
        f"{route.provider} has no Batch API llm-notebook can use (it can for {offered}, and "
        f"for endpoints added with add_endpoint()); nothing was sent: drop via='batch_api' "
        f"to send {route.model!r} one request per row")


def batch_client(route: Route):
    """The Batch API client of `route` (upload, create, retrieve, content, cancel)."""
    batch_api_support(route)
    if route.kind == "http":
        from .http_batches import HttpBatches

        return HttpBatches(route)
    from .litellm_route import LitellmBatches

    return LitellmBatches(route)


def chunks(route: Route, messages: list[dict], options: dict, *, stream: bool,
           timeout: float) -> AsyncIterator["str | Finish"]:
    """One attempt of a call: text chunks, then a Finish. Raises LLMError (already classified
    and redacted). `stream=False` asks the provider for one whole response where it can;
    `timeout` is the provider's own network timeout (the attempt enforces the gap between
    chunks and the deadline whatever the provider does)."""
    if route.kind == "local":
        from . import local as producer
    elif route.kind == "http":
        from . import http as producer
    else:
        from . import litellm_route as producer
    return producer.chunks(route, messages, options, stream=stream, timeout=timeout)


async def embeddings(route: Route, texts: list[str], *, timeout: float) -> "Embedded":
    """One embeddings request: a vector per text, in order, and the prompt tokens the provider
    counted (None when it says nothing). Raises LLMError (classified and redacted)."""
    if route.kind == "local":
        from . import local as producer
    elif route.kind == "http":
        from . import http as producer
    else:
        from . import litellm_route as producer
    return await producer.embeddings(route, texts, timeout=timeout)


async def prepare_embeddings(route: Route) -> None:
    """`prepare` for embeddings: litellm's import, or the embedded model's embedding weights."""
    if route.kind == "local":
        from . import local

        if not local.embedder_loaded():
            await _load_in_background(local.get_embedder)
    else:
        await prepare(route)


@dataclass(slots=True)
class Embedded:
    """What an embeddings request returned."""
    vectors: list
    input_tokens: int | None = None
