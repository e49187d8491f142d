"""Removes API keys from any text before it is logged, shown or raised.

Provider error bodies can echo the key that was sent, so every error passes through here.
Two nets: the exact keys we know about (registered ones and key-like environment variables),
and patterns of common key shapes for keys we were never told about.
"""

from __future__ import annotations

import os
import re
import threading

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
