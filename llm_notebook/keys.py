"""Where API keys come from: environment, a `.env` file in the working folder, the OS keyring,
or `Session.set_key` (memory). Keys never go to the log, notebooks or widget state."""

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

_memory: dict[str, str] = {}
_dotenv_loaded = False


def load_dotenv_once() -> None:
    """Read `.env` from the working folder (never overriding real environment variables)."""
    global _dotenv_loaded
    if _dotenv_loaded:
        return
    _dotenv_loaded = True
    path = os.path.join(os.getcwd(), ".env")
    if os.path.isfile(path):
        from dotenv import dotenv_values

        for k, v in dotenv_values(path).items():
            if v is not None and k not in os.environ:
                os.environ[k] = v


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
