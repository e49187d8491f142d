"""What a call costs, from litellm's offline price map or from `LLMNotebook.prices`.

The price map is read straight from the JSON file litellm ships, so pricing a call never
imports litellm (3-5 s) nor touches the network. The arithmetic follows litellm's
`cost_per_token` for prompt and completion tokens: a flat rate per token, a higher rate for
every token of a request whose prompt is above a threshold (`input_cost_per_token_above_200k_
tokens`; xAI bills from the threshold itself), or a `tiered_pricing` table picked by prompt
size. tests/test_pricing.py checks the result against litellm for every chat model it knows.

A provider's Batch API bills less: `pricer(model, batch=True)` uses litellm's
`input_cost_per_token_batches` / `output_cost_per_token_batches` where the map has them (~600
models, 563 of them at exactly half), `batch_input` / `batch_output` of a configured price, and
otherwise half the model's price: the discount of every Batch API the map prices.

An unknown price is not an error: the cost is None and the call is logged as unpriced.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import re
import warnings
from typing import Callable

# Providers that bill the higher rate once the prompt *reaches* the threshold (litellm: xai).
_INCLUSIVE_THRESHOLD = frozenset({"xai"})
_ABOVE = re.compile(r"^input_cost_per_token_above_(\d+(?:\.\d+)?)(k?)_tokens$")


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


_warned_bad_prices: set[str] = set()


def _configured_rates(model: str, prices: dict) -> tuple[float, float] | None:
    """USD per token from LLMNotebook.prices (given per million tokens), or None."""
    entry = _configured(model, prices)
    if entry is None:
        return None
    try:
        rin, rout = float(entry.get("input", 0)), float(entry.get("output", 0))
        if not (math.isfinite(rin) and math.isfinite(rout)) or rin < 0 or rout < 0:
            raise ValueError
    except (AttributeError, TypeError, ValueError):
        # A call has already been made when it is priced: a typo in the config must not lose
        # its answer, so the call is logged as unpriced and the user told once.
        if model not in _warned_bad_prices:
            _warned_bad_prices.add(model)
            warnings.warn(f"llm-notebook: LLMNotebook.prices entry for {model!r} is {entry!r}; "
                          "write it as {'input': <USD per 1M tokens>, 'output': <USD per 1M "
                          "tokens>}. Its calls are logged as unpriced until then.", stacklevel=3)
        return None
    return rin / 1e6, rout / 1e6


def _threshold(value: str, k: str) -> float:
    return float(value) * (1000 if k else 1)


def _litellm_rates(info: dict) -> Callable[[int], tuple[float, float] | None]:
    """The rates of one price map entry as a function of the prompt's size (the thresholds and
    tiers are read once, so pricing a batch row is a few comparisons)."""
    cin, cout = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    tiers = info.get("tiered_pricing")
    ranged = _ranged_tiers(tiers) if isinstance(tiers, list) and tiers else []
    flat = None if cin is None and cout is None else (float(cin or 0), float(cout or 0))
    inclusive = info.get("litellm_provider") in _INCLUSIVE_THRESHOLD
    # The highest threshold the prompt is over wins, so they are tried highest first.
    above = sorted(((_threshold(*m.groups()), float(info[key]),
                     info.get(f"output_cost_per_token{key[len('input_cost_per_token'):]}"))
                    for key in info if (m := _ABOVE.match(key)) and info[key] is not None),
                   reverse=True)

    def rates_for(prompt_tokens: int) -> tuple[float, float] | None:
        if ranged and prompt_tokens > 0:
            tier = _tier_for(ranged, prompt_tokens)
            if "input_cost_per_token" in tier:
                rout = tier.get("output_cost_per_token", cout)
                return float(tier["input_cost_per_token"]), float(rout or 0)
        if flat is None:
            return None
        for threshold, rin, rout in above:
            if prompt_tokens > threshold or (inclusive and prompt_tokens == threshold):
                return rin, float(flat[1] if rout is None else rout or 0)
        return flat

    return rates_for


def _ranged_tiers(tiers: list) -> list[dict]:
    return sorted((t for t in tiers if isinstance(t, dict) and _range(t) is not None),
                  key=lambda t: _range(t)[0])


def _tier_for(ranged: list[dict], prompt_tokens: int) -> dict:
    """litellm's rule: the tier with start < prompt_tokens <= end, else the last (highest) one."""
    for tier in ranged:
        start, end = _range(tier)
        if start < prompt_tokens <= end:
            return tier
    return ranged[-1]


def _range(tier: dict) -> tuple[float, float] | None:
    bounds = tier.get("range")
    if isinstance(bounds, (list, tuple)) and len(bounds) == 2:
        try:
            return float(bounds[0]), float(bounds[1])
        except (TypeError, ValueError):
            return None
    return None


def _unpriced(_prompt_tokens: int) -> None:
    return None


def _rates_function(model: str, prices: dict) -> Callable[[int], tuple[float, float] | None]:
    if model.startswith("local/"):
        return lambda _prompt_tokens: (0.0, 0.0)
    if _configured(model, prices) is not None:
        configured = _configured_rates(model, prices)
        return lambda _prompt_tokens: configured
    info = model_info(model)
    return _litellm_rates(info) if info else _unpriced


BATCH_DISCOUNT = 0.5   # what a Batch API costs, as a share of the price, when nothing says more


def _batch_rates_function(model: str, prices: dict) -> Callable[[int], tuple[float, float] | None]:
    """Rates of a Batch API request: the batch prices where known, else BATCH_DISCOUNT of the
    model's (tiers and thresholds kept)."""
    entry = _configured(model, prices)
    if isinstance(entry, dict) and ("batch_input" in entry or "batch_output" in entry):
        try:
            rin, rout = float(entry.get("batch_input", 0)), float(entry.get("batch_output", 0))
            if math.isfinite(rin) and math.isfinite(rout) and rin >= 0 and rout >= 0:
                return lambda _prompt_tokens: (rin / 1e6, rout / 1e6)
        except (TypeError, ValueError):
            pass
    info = model_info(model) if entry is None else None
    if info and info.get("input_cost_per_token_batches") is not None:
        rin = float(info["input_cost_per_token_batches"])
        rout = float(info.get("output_cost_per_token_batches") or 0)
        return lambda _prompt_tokens: (rin, rout)
    full = _rates_function(model, prices)

    def discounted(prompt_tokens: int) -> tuple[float, float] | None:
        found = full(prompt_tokens)
        return None if found is None else (found[0] * BATCH_DISCOUNT, found[1] * BATCH_DISCOUNT)

    return discounted


def pricer(model: str, prices: dict | None = None, *,
           batch: bool = False) -> Callable[[int | None, int | None], float | None]:
    """The price of a call of `model` as a function of its real token counts:
    `pricer(model)(input_tokens, output_tokens)` is USD, or None when the price is unknown.

    Every call and batch row is priced through this (a batch makes it once per run), so the
    same request costs the same whichever way it was sent; tiered prices depend on the
    call's own prompt size. `batch=True`: the price of a request sent through the provider's
    Batch API."""
    rates_for = (_batch_rates_function if batch else _rates_function)(model, prices or {})

    def price(input_tokens: int | None, output_tokens: int | None) -> float | None:
        tin, tout = int(input_tokens or 0), int(output_tokens or 0)
        found = rates_for(tin)
        if found is None:
            return None
        return tin * found[0] + tout * found[1]

    return price


def rates(model: str, prompt_tokens: int = 0, prices: dict | None = None) -> tuple[float, float] | None:
    """(USD per input token, USD per output token) for a call of `model` with that many prompt
    tokens (tiered prices depend on it), or None when the price is unknown."""
    return _rates_function(model, prices or {})(prompt_tokens)


def cost_of(model: str, input_tokens: int | None, output_tokens: int | None,
            prices: dict | None = None) -> float | None:
    """USD cost of a call, or None when the model's price is unknown."""
    return pricer(model, prices)(input_tokens, output_tokens)


def is_priced(model: str, prices: dict | None = None) -> bool:
    return rates(model, 0, prices) is not None


def context_window(model: str) -> int | None:
    info = model_info(model) or {}
    return info.get("max_input_tokens") or info.get("max_tokens")


def max_output_tokens(model: str) -> int | None:
    info = model_info(model) or {}
    value = info.get("max_output_tokens")
    return int(value) if isinstance(value, (int, float)) and value > 0 else None
