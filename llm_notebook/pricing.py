"""What a call costs, from litellm's offline price map or from `LLMNotebook.prices`.

The price map is read straight from the JSON file litellm ships, so pricing a call never
imports litellm (3-5 s) nor touches the network. An unknown price is not an error: the cost is
None and the call is flagged as unpriced.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os


@functools.lru_cache(maxsize=1)
def price_map() -> dict[str, dict]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = os.path.join(spec.submodule_search_locations[0],
                        "model_prices_and_context_window_backup.json")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    data.pop("sample_spec", None)
    return data


def model_info(model: str) -> dict | None:
    """litellm's entry for a model id, trying it with and without its provider prefix."""
    table = price_map()
    if model in table:
        return table[model]
    if "/" in model:
        provider, _, bare = model.partition("/")
        entry = table.get(bare)
        if entry and entry.get("litellm_provider") in (provider, None):
            return entry
        if entry and provider in ("openai", "text-completion-openai"):
            return entry
    return None


def _configured(model: str, prices: dict) -> dict | None:
    if model in prices:
        return prices[model]
    if "/" in model:
        wildcard = model.split("/", 1)[0] + "/*"
        if wildcard in prices:
            return prices[wildcard]
    return None


def cost_of(model: str, input_tokens: int | None, output_tokens: int | None,
            prices: dict | None = None) -> float | None:
    """USD cost of a call, or None when the model's price is unknown."""
    if model.startswith("local/"):
        return 0.0
    tin, tout = input_tokens or 0, output_tokens or 0
    conf = _configured(model, prices or {})
    if conf is not None:
        return (tin * float(conf.get("input", 0)) + tout * float(conf.get("output", 0))) / 1e6
    info = model_info(model)
    if not info:
        return None
    cin, cout = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if cin is None and cout is None:
        return None
    return tin * float(cin or 0) + tout * float(cout or 0)


def context_window(model: str) -> int | None:
    info = model_info(model) or {}
    return info.get("max_input_tokens") or info.get("max_tokens")
