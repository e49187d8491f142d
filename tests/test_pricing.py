"""Pricing: our numbers equal litellm's, unknown prices are flagged, config prices apply."""

from __future__ import annotations

import random
import warnings

import pytest

from llm_notebook import pricing

# Providers whose chat models litellm prices with cost_per_token alone (no network, no cloud
# SDK): every chat model of theirs in the price map is compared.
PROVIDERS = ("openai", "anthropic", "gemini", "mistral", "groq", "xai", "deepseek", "dashscope",
             "cohere_chat", "together_ai", "fireworks_ai", "perplexity", "openrouter",
             "azure", "vertex_ai-anthropic_models", "cerebras", "moonshot", "novita")


@pytest.fixture(scope="module")
def litellm():
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def _comparable_models():
    for key, info in pricing.price_map().items():
        provider = info.get("litellm_provider")
        if info.get("mode") != "chat" or provider not in PROVIDERS:
            continue
        if "off_peak_pricing" in info:
            continue  # time-of-day discounts: we charge the standard (higher) rate
        if info.get("input_cost_per_token") is None and info.get("output_cost_per_token") is None \
                and "tiered_pricing" not in info:
            continue  # no price: we say unpriced where litellm says $0
        yield key if "/" in key else f"{provider}/{key}"


def test_cost_equals_litellm_for_every_comparable_chat_model(litellm):
    rng = random.Random(4)
    compared = mismatched = 0
    problems = []
    for model in _comparable_models():
        # Small, large, just over the 128k/200k/256k/272k thresholds, and at one exactly.
        for tin, tout in ((1000, 500), (rng.randint(1, 400_000), rng.randint(1, 8000)),
                          (200_001, 37), (272_001, 5), (128_000, 11), (256_001, 3)):
            try:
                prompt, completion = litellm.cost_per_token(model=model, prompt_tokens=tin,
                                                            completion_tokens=tout)
            except Exception:
                continue  # an id litellm itself cannot resolve without a cloud client
            ours = pricing.cost_of(model, tin, tout)
            compared += 1
            if ours is None or ours != pytest.approx(prompt + completion, rel=1e-9, abs=1e-15):
                mismatched += 1
                problems.append((model, tin, tout, ours, prompt + completion))
    assert compared > 1500
    assert not problems, problems[:10]


def test_completion_cost_of_a_real_call_through_litellm(nb_session, loopback, litellm):
    # The litellm route over real HTTP: usage comes back from the loopback server, we price
    # it, and litellm's completion_cost over the same response agrees.
    r = nb_session.ask("price this call please", model="openai/gpt-4o-mini",
                       api_base=loopback.url, api_key="sk-test-pricing", max_tokens=20)
    assert r.input_tokens == 4 and r.output_tokens > 0
    response = litellm.ModelResponse(model="gpt-4o-mini", usage=litellm.Usage(
        prompt_tokens=r.input_tokens, completion_tokens=r.output_tokens,
        total_tokens=r.input_tokens + r.output_tokens))
    theirs = litellm.completion_cost(completion_response=response, model="openai/gpt-4o-mini")
    assert r.cost == pytest.approx(theirs, rel=1e-12)
    prompt, completion = litellm.cost_per_token(model="openai/gpt-4o-mini",
                                                prompt_tokens=r.input_tokens,
                                                completion_tokens=r.output_tokens)
    assert r.cost == pytest.approx(prompt + completion, rel=1e-12) and r.cost > 0
    assert not r.unpriced
    row = nb_session.log.call(r.id)
    assert row["cost"] == pytest.approx(theirs, rel=1e-12) and row["unpriced"] == 0

    # Streamed through litellm: usage is recorded and priced too.
    stream = nb_session.stream("and this streamed one", model="openai/gpt-4o-mini",
                               api_base=loopback.url, api_key="sk-test-pricing")
    "".join(stream)
    s = stream.response
    assert s.input_tokens == 4 and s.output_tokens > 0
    assert s.cost == pytest.approx(sum(litellm.cost_per_token(
        model="openai/gpt-4o-mini", prompt_tokens=s.input_tokens,
        completion_tokens=s.output_tokens)), rel=1e-12)
    assert loopback.stats()["requests"] == 2


def test_known_prices_by_hand():
    info = pricing.model_info("openai/gpt-4o-mini")
    assert pricing.cost_of("openai/gpt-4o-mini", 1000, 100) == pytest.approx(
        1000 * info["input_cost_per_token"] + 100 * info["output_cost_per_token"])
    assert pricing.cost_of("gpt-4o-mini", 1000, 100) == pricing.cost_of("openai/gpt-4o-mini", 1000, 100)
    assert pricing.cost_of("local/smollm2", 10_000, 10_000) == 0.0
    assert pricing.rates("local/smollm2") == (0.0, 0.0)


def test_prompts_over_a_threshold_pay_the_higher_rate_for_every_token():
    model = next(k for k, v in pricing.price_map().items()
                 if v.get("input_cost_per_token_above_200k_tokens") and v.get("mode") == "chat"
                 and v.get("litellm_provider") == "gemini" and "off_peak_pricing" not in v)
    info = pricing.price_map()[model]
    below = pricing.cost_of(model, 200_000, 10)
    above = pricing.cost_of(model, 200_001, 10)
    assert below == pytest.approx(200_000 * info["input_cost_per_token"]
                                  + 10 * info["output_cost_per_token"])
    assert above == pytest.approx(200_001 * info["input_cost_per_token_above_200k_tokens"]
                                  + 10 * info["output_cost_per_token_above_200k_tokens"])


def test_tiered_pricing_table():
    model, info = next((k, v) for k, v in pricing.price_map().items()
                       if isinstance(v.get("tiered_pricing"), list) and v.get("mode") == "chat")
    tiers = sorted(info["tiered_pricing"], key=lambda t: t["range"][0])
    low, high = tiers[0], tiers[-1]
    small = int(low["range"][1])            # the top of the first tier still belongs to it
    assert pricing.cost_of(model, small, 7) == pytest.approx(
        small * low["input_cost_per_token"] + 7 * low.get("output_cost_per_token", 0))
    huge = int(high["range"][1]) + 10        # above every range: the last tier
    assert pricing.cost_of(model, huge, 7) == pytest.approx(
        huge * high["input_cost_per_token"] + 7 * high.get("output_cost_per_token", 0))


def test_unknown_models_are_unpriced_not_free():
    assert pricing.cost_of("myendpoint/some-model", 100, 100) is None
    assert pricing.rates("myendpoint/some-model") is None
    assert not pricing.is_priced("myendpoint/some-model")
    # litellm knows the name for openai, not for an endpoint of ours that borrows it.
    assert pricing.cost_of("lab/gpt-4o-mini", 100, 100) is None


def test_configured_prices_win_and_are_per_million_tokens():
    prices = {"lab/*": {"input": 0.5, "output": 1.5}, "openai/gpt-4o-mini": {"input": 1, "output": 2}}
    assert pricing.cost_of("lab/llama", 2_000_000, 1_000_000, prices) == pytest.approx(1.0 + 1.5)
    assert pricing.cost_of("openai/gpt-4o-mini", 1_000_000, 0, prices) == pytest.approx(1.0)
    assert pricing.cost_of("lab/llama", None, None, prices) == 0.0
    assert pricing.is_priced("lab/x", prices)


def test_a_broken_price_entry_warns_once_and_leaves_the_call_unpriced():
    prices = {"broken/*": {"input": "cheap", "output": 1}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pricing.cost_of("broken/m", 10, 10, prices) is None
        assert pricing.cost_of("broken/m", 10, 10, prices) is None
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "LLMNotebook.prices entry for 'broken/m'" in messages[0]
    assert pricing.cost_of("neg/m", 1, 1, {"neg/m": {"input": -1, "output": 1}}) is None


def test_output_token_limits_and_context_window():
    assert pricing.max_output_tokens("openai/gpt-4o-mini") == 16384
    assert pricing.context_window("openai/gpt-4o-mini") == 128000
    assert pricing.max_output_tokens("nobody/knows") is None
