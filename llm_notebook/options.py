"""The one definition of call options: which only shape the answer, and which decide where a
request goes or what credentials and extra data it carries.

Templates (saved, imported, edited in the TemplateEditor) and `%%llm --option` may come from
someone else, so they may carry only *generation* options from `GENERATION` (an allowlist:
litellm alone accepts hundreds of keyword arguments, several of which name hosts, proxies,
callbacks or credentials, so no denylist could keep up). The user's own Python calls
(`s.ask(..., api_base=..., api_key=...)`) may still route per call; `providers.resolve` then
never attaches a configured provider key (see `changes_destination`).

The same names decide what the log drops (`is_credential`) and what the lean HTTP client puts
in a request body (`body_options`).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from typing import Any

# Options that shape the answer and nothing else: the only ones a template or `--option` may set.
# Tools are left out on purpose: a tool definition can name a remote server (MCP) that a
# provider would call with the conversation, and nothing here runs tool calls anyway.
GENERATION: dict[str, str] = {
    "temperature": "number",
    "top_p": "number",
    "top_k": "integer",
    "min_p": "number",
    "max_tokens": "integer",
    "max_completion_tokens": "integer",
    "n": "integer",
    "seed": "integer",
    "stop": "stop",
    "presence_penalty": "number",
    "frequency_penalty": "number",
    "repetition_penalty": "number",
    "logit_bias": "mapping",
    "logprobs": "boolean",
    "top_logprobs": "integer",
    "response_format": "mapping",
    "reasoning_effort": "text",
    "verbosity": "text",
    "thinking": "mapping",
    "user": "text",
}

# Handled by llm-notebook itself (retry policy, streaming), never sent as such.
CALL_CONTROL = frozenset({"timeout", "stream", "deadline", "max_retries", "num_retries"})

# Options whose value is a credential: never logged, never stored in a template.
# Besides these, any name the redaction patterns call secret (redact.is_secret_name).
CREDENTIALS = frozenset({
    "api_key", "azure_ad_token", "azure_password", "client_secret", "aws_access_key_id",
    "aws_secret_access_key", "aws_session_token", "vertex_credentials", "token", "password",
    "secret", "key",
})

# Options that send a request somewhere other than its model's own API.
DESTINATIONS = frozenset({
    "api_base", "base_url", "custom_llm_provider", "model_list", "fallbacks",
    "context_window_fallback_dict", "deployment_id", "use_litellm_proxy",
    "aws_bedrock_runtime_endpoint", "proxy", "proxies", "http_client", "client",
})
_DESTINATION_NAME = re.compile(r"(?i)(?:_base|_url|_uri|_endpoint|_host|_proxy|_proxies)$")

# Options that add to what a request carries (headers, extra body fields) or hand the call's
# data to someone else (callbacks, loggers).
CARRIERS = frozenset({
    "headers", "extra_headers", "default_headers", "extra_body", "extra_query", "metadata",
    "litellm_metadata", "callbacks", "success_callback", "failure_callback", "input_callback",
    "logger_fn", "api_version", "organization", "api_type",
})
_CARRIER_NAME = re.compile(r"(?i)(?:header|headers|callback|callbacks)$")

# Options that belong elsewhere in a template (with where they go instead).
_MISPLACED = {
    "model": "set it with model=, not in options",
    "system": "set it with system=, not in options",
    "prompt": "the prompt is the template's text, not an option",
    "messages": "a template builds the messages from its prompt and system",
    "cache": "choose caching when you call the model, not in the template",
    "stream": "choose streaming when you call the model, not in the template",
}

ENDPOINT_HINT = ("configure the server in your own code with session.add_endpoint('name', url, "
                 "api_key_env=...) and use the model 'name/<model>'")


def is_credential(name: str) -> bool:
    """Whether an option's value is a credential (never logged, never in a template)."""
    from .redact import is_secret_name

    return name in CREDENTIALS or is_secret_name(name)


def changes_destination(name: str) -> bool:
    """Whether an option sends the request somewhere other than its model's own API."""
    return name in DESTINATIONS or bool(_DESTINATION_NAME.search(name))


def is_routing_or_secret(name: str) -> bool:
    """Whether an option decides where a request goes or what it carries besides the prompt."""
    return (is_credential(name) or changes_destination(name) or name in CARRIERS
            or bool(_CARRIER_NAME.search(name)))


def destination_options(options: Mapping[str, Any]) -> list[str]:
    """The options of a call (its own code's) that send it elsewhere than the model's API."""
    return sorted(k for k, v in options.items()
                  if isinstance(k, str) and v and changes_destination(k))


def untrusted_problem(name: Any, value: Any) -> str | None:
    """Why a template or `--option` may not carry this option (None when it may).

    The message names the option and says what to do instead, in one line.
    """
    if not isinstance(name, str) or not name:
        return f"option names are text, got {name!r}"
    if name in _MISPLACED:
        return f"option '{name}' is not allowed: {_MISPLACED[name]}"
    if is_routing_or_secret(name):
        what = ("a credential" if is_credential(name)
                else "where the request goes" if changes_destination(name)
                else "what the request carries besides the prompt")
        return (f"option '{name}' sets {what}, which a template or a notebook cell may not "
                f"decide (they can come from someone else): {ENDPOINT_HINT}")
    kind = GENERATION.get(name)
    if kind is None:
        return (f"option '{name}' is not a generation option a template or --option may carry "
                f"(those are {', '.join(GENERATION)}); pass it from your own code instead, "
                f"e.g. session.ask(..., {name}=...)")
    if value is None or _fits(kind, value):
        return None
    return f"option '{name}' takes {_KIND_TEXT[kind]}, got {_shown(value)}"


_KIND_TEXT = {
    "number": "a number", "integer": "a whole number", "boolean": "true or false",
    "text": "text", "mapping": "a mapping such as {\"type\": \"json_object\"}",
    "stop": "text or a list of texts",
}


def _fits(kind: str, value: Any) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "number":
        return isinstance(value, numbers.Real)
    if kind == "integer":
        return isinstance(value, numbers.Integral)
    if kind == "text":
        return isinstance(value, str) and len(value) <= 1000
    if kind == "mapping":
        return isinstance(value, Mapping)
    if kind == "stop":
        return isinstance(value, str) or (isinstance(value, (list, tuple))
                                          and all(isinstance(v, str) for v in value))
    return False


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def body_options(options: Mapping[str, Any]) -> dict:
    """What the lean OpenAI-compatible client may put in a request body: no call controls, no
    routing, credentials or headers (headers travel as headers)."""
    return {k: v for k, v in options.items()
            if v is not None and k not in CALL_CONTROL and not is_routing_or_secret(k)}


def request_headers(options: Mapping[str, Any]) -> dict[str, str]:
    """Extra HTTP headers the user's own code asked for (`extra_headers=` / `headers=`)."""
    out: dict[str, str] = {}
    for name in ("headers", "extra_headers"):
        given = options.get(name)
        if isinstance(given, Mapping):
            out.update({str(k): str(v) for k, v in given.items() if v is not None})
    return out
