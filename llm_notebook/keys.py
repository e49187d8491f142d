"""Where API keys come from: environment, a `.env` file in the working folder, the OS keyring,
or `Session.set_key` (memory). Keys never go to the log, notebooks or widget state.

A `.env` may have come with a project from someone else, so it gives keys and nothing else:
only the provider key variables named in PROVIDER_ENV (and `LLM_NOTEBOOK_*`) are read from it,
never a base URL, a proxy or any other setting, and never over a variable already set.
"""

from __future__ import annotations

import os

from . import redact

# Provider prefix of a litellm model id -> environment variables that hold its key.
PROVIDER_ENV = {
    "openai": ["OPENAI_API_KEY"],
    "anthropic": ["ANTHROPIC_API_KEY"],
    "gemini": ["GEMINI_API_KEY", "GOOGLE_API_KEY"],
    "vertex_ai": ["GOOGLE_APPLICATION_CREDENTIALS"],
    "mistral": ["MISTRAL_API_KEY"],
    "groq": ["GROQ_API_KEY"],
    "cohere": ["COHERE_API_KEY"],
    "together_ai": ["TOGETHERAI_API_KEY", "TOGETHER_API_KEY"],
    "deepseek": ["DEEPSEEK_API_KEY"],
    "xai": ["XAI_API_KEY"],
    "openrouter": ["OPENROUTER_API_KEY"],
    "perplexity": ["PERPLEXITYAI_API_KEY"],
    "fireworks_ai": ["FIREWORKS_AI_API_KEY"],
    "azure": ["AZURE_API_KEY"],
    "bedrock": ["AWS_ACCESS_KEY_ID"],
    "huggingface": ["HF_TOKEN", "HUGGINGFACE_API_KEY"],
    "replicate": ["REPLICATE_API_KEY"],
}
# Providers that need no key (local servers).
KEYLESS = {"ollama", "ollama_chat", "local", "lm_studio", "vllm", "hosted_vllm", "llamafile"}

# What a .env may set: keys (a credentials *file* path is not a key: it would pick the account).
DOTENV_KEYS = frozenset(v for names in PROVIDER_ENV.values() for v in names
                        if v != "GOOGLE_APPLICATION_CREDENTIALS")
DOTENV_PREFIX = "LLM_NOTEBOOK_"

_memory: dict[str, str] = {}
_dotenv_loaded = False
_dotenv: dict[str, str] = {}   # the whole .env as read, for named_value()


def _dotenv_path() -> str:
    return os.path.join(os.getcwd(), ".env")


def _dotenv_values() -> dict[str, str]:
    path = _dotenv_path()
    if not os.path.isfile(path):
        return {}
    from dotenv import dotenv_values

    # No ${VAR} expansion: a value is taken as written, never built from the environment.
    return {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}


def dotenv_allows(name: str) -> bool:
    return name in DOTENV_KEYS or name.startswith(DOTENV_PREFIX)


def load_dotenv_once() -> None:
    """Read the provider keys (and LLM_NOTEBOOK_* settings) of `.env` in the working folder
    into the environment; everything else in it is ignored, and nothing already set changes."""
    global _dotenv_loaded, _dotenv
    if _dotenv_loaded:
        return
    _dotenv_loaded = True
    _dotenv = _dotenv_values()
    for k, v in _dotenv.items():
        if dotenv_allows(k) and k not in os.environ:
            os.environ[k] = v


def named_value(name: str) -> str | None:
    """The value of the variable an endpoint's `api_key_env` names: the environment, else that
    one variable of `.env` (the user named it in their own code, and its value is only ever
    sent as the key of the endpoint they configured); `.env` never enters the environment."""
    load_dotenv_once()
    return os.environ.get(name) or _dotenv.get(name) or None


def env_vars_for(provider: str) -> list[str]:
    return PROVIDER_ENV.get(provider, [f"{provider.upper()}_API_KEY"])


def get_key(provider: str) -> str | None:
    """The key for a provider, or None. Memory first, then environment, then keyring."""
    load_dotenv_once()
    if provider in _memory:
        return _memory[provider]
    for var in env_vars_for(provider):
        if os.environ.get(var):
            redact.register(os.environ[var])
            return os.environ[var]
    try:
        import keyring  # optional extra
    except ImportError:
        return None
    try:
        value = keyring.get_password("llm-notebook", provider)
    except Exception:
        return None
    if value:
        redact.register(value)
    return value


def has_key(provider: str) -> bool:
    if provider in KEYLESS:
        return True
    return get_key(provider) is not None


def set_key(provider: str, value: str, *, keyring_store: bool = False) -> None:
    redact.register(value)
    _memory[provider] = value
    if keyring_store:
        import keyring

        keyring.set_password("llm-notebook", provider, value)


def providers_with_keys() -> list[str]:
    return [p for p in PROVIDER_ENV if has_key(p)]
