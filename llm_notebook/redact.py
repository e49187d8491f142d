"""Removes API keys from any text before it is logged, shown or raised.

Provider error bodies can echo the key that was sent, so every error passes through here.
Two nets: the exact keys we know about (registered ones and key-like environment variables),
and patterns of common key shapes for keys we were never told about.
"""

from __future__ import annotations

import os
import re
import threading

# Credential options are defined with every other kind of option in llm_notebook.options.
from .options import CREDENTIALS as SECRET_OPTIONS  # noqa: F401  (this module's old name for it)

MASK = "[REDACTED]"

_known: set[str] = set()
_lock = threading.Lock()

_KEY_ENV_SUFFIXES = ("_API_KEY", "_KEY", "_TOKEN", "_SECRET", "_ACCESS_KEY", "_SECRET_KEY")

_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{12,}"),               # OpenAI, Anthropic (sk-ant-...)
    re.compile(r"\b(?:gsk|xai|pplx|hf|ghp|gho|glpat|r8)_[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\bxai-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),               # Google
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),                     # AWS access key id
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.=:+/]{8,}"),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]{0,20}://[^/\s:@]{0,200}:)[^/\s@]{1,200}(?=@)"),  # URL password
    re.compile(r"(?i)((?:api[_-]?key|access[_-]?token|secret|password|x-api-key)[\"']?\s*[:=]\s*[\"']?)"
               r"[^\s\"',;&]{6,}"),
]


def register(secret: str | None) -> None:
    """Remember a secret so that it is masked wherever it appears."""
    if secret and len(secret) >= 6:
        with _lock:
            _known.add(secret)


def _env_secrets() -> list[str]:
    return [v for k, v in os.environ.items()
            if k.upper().endswith(_KEY_ENV_SUFFIXES) and v and len(v) >= 8
            and v.lower() not in ("true", "false")]


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        secrets = list(_known)
    secrets.extend(_env_secrets())
    # Longest first, so a key that contains another is masked whole.
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = pattern.sub(MASK, text)
    return text


# Names (of variables, options, headers) that say their value is a credential.
_SECRET_NAME = re.compile(
    r"(?i)(?:^|[_\-.])(?:api[_-]?key|access[_-]?key|key|keys|token|secret|password|passwd|"
    r"credentials?|cookie|authorization|auth)(?:$|[_\-.])")


def is_secret_name(name: str) -> bool:
    """Whether a name (`OPENAI_API_KEY`, `api_key`, `X-Api-Key`, `github_token`...) says that
    its value is a credential."""
    return isinstance(name, str) and bool(_SECRET_NAME.search(name))


def looks_secret(name: str, text: str) -> bool:
    """Whether a named value looks like a credential: by its name, or because redaction would
    change its text (a key shape, a known key, a key-like environment variable's value)."""
    return is_secret_name(name) or (bool(text) and redact(text) != text)




def register_options(options: dict | None) -> None:
    """Remember the credentials a call's options carry: `api_key`, and the values of
    authorization/key headers in `extra_headers`/`headers` (with or without "Bearer ")."""
    if not options:
        return
    key = options.get("api_key")
    if isinstance(key, str):
        register(key)
    for name in ("extra_headers", "headers"):
        headers = options.get(name)
        if not isinstance(headers, dict):
            continue
        for header, value in headers.items():
            if isinstance(value, str) and is_secret_name(str(header)):
                register(value)
                scheme, _, credential = value.strip().partition(" ")
                if credential:
                    register(credential.strip())


def loggable_options(options: dict) -> dict:
    """A call's options as they may be logged: no credential options (llm_notebook.options
    decides which), credential-named entries inside them masked, every string redacted."""
    from .options import is_credential

    def clean(value):
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, dict):
            return {k: MASK if is_secret_name(str(k)) and isinstance(v, str) else clean(v)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return {k: clean(v) for k, v in options.items() if not is_credential(str(k))}
