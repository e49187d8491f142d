"""Budgets: refusal before sending (the server never sees the call), 80% warnings, the day
budget shared by every Session on one log, calls in flight, and what batch runs use."""

from __future__ import annotations

import asyncio
import time
import warnings

import pytest

from llm_notebook import budget
from llm_notebook.errors import BudgetExceeded
from llm_notebook.session import Session

# Tests that do not look at warnings may still pass 80% of a budget on the way.
pytestmark = pytest.mark.filterwarnings("ignore::llm_notebook.budget.BudgetWarning")

# USD per million tokens for the loopback endpoint: high, so a few words cost cents.
PRICES = {"loop/*": {"input": 1000.0, "output": 2000.0}}
IN, OUT = 1000.0 / 1e6, 2000.0 / 1e6


@pytest.fixture
def priced(loop_session):
    loop_session.config.prices = dict(PRICES)
    return loop_session


def est(prompt: str, max_tokens: int) -> float:
    """What budget.py estimates for a one-message prompt."""
    return max(1, len(prompt) // 4) * IN + max_tokens * OUT


def test_refused_before_sending_with_a_clear_message(priced, loopback):
    priced.config.budget_session = 0.01
    prompt = "tell me a long story"
    assert est(prompt, 50) > 0.01
    with pytest.raises(BudgetExceeded) as caught:
        priced.ask(prompt, model="loop/m", max_tokens=50)
    message = str(caught.value)
    assert "refused before sending" in message
    assert "session budget of $0.01" in message and "spent so far $0.0000" in message
    assert "%config LLMNotebook.budget_session =" in message
    assert caught.value.kind == "budget"
    assert loopback.stats()["requests"] == 0      # the server never saw it
    assert priced.log.count_calls() == 0          # and nothing was logged as a call


def test_spending_accumulates_until_the_next_call_would_cross(priced, loopback):
    prompt = "count to three"
    priced.config.budget_session = 2.5 * est(prompt, 5)
    r1 = priced.ask(prompt, model="loop/m", max_tokens=5)
    r2 = priced.ask(prompt, model="loop/m", max_tokens=5)
    assert r1.cost and r2.cost
    assert priced.spent == pytest.approx(r1.cost + r2.cost)
    # Each call really costs 3 words in + "Echo: count to three" (4 words) out, a little under
    # its estimate (5 output tokens): 0.022 spent, 0.0105 left, a third call needs 0.013.
    assert r1.cost == pytest.approx(3 * IN + 4 * OUT)
    with pytest.raises(BudgetExceeded, match=r"spent so far \$0\.0220"):
        priced.ask(prompt, model="loop/m", max_tokens=5)
    assert loopback.stats()["requests"] == 2
    priced.config.budget_session = 0  # 0 means no limit
    priced.ask(prompt, model="loop/m", max_tokens=5)
    assert loopback.stats()["requests"] == 3


def test_the_estimate_uses_max_tokens(priced, loopback):
    prompt = "short"
    priced.config.budget_session = est(prompt, 10) * 1.2
    with pytest.raises(BudgetExceeded, match=r"1,000 output tokens of loop/m"):
        priced.ask(prompt, model="loop/m")        # no max_tokens: 1000 assumed
    assert loopback.stats()["requests"] == 0
    priced.ask(prompt, model="loop/m", max_tokens=10)
    assert loopback.stats()["requests"] == 1


def test_streamed_calls_are_refused_too(priced, loopback):
    priced.config.budget_session = 0.001
    with pytest.raises(BudgetExceeded):
        list(priced.stream("stream a long answer", model="loop/m", max_tokens=100))
    assert loopback.stats()["requests"] == 0


def test_warning_at_80_percent_once(priced, loopback):
    prompt = "warn me"
    e = est(prompt, 5)
    priced.config.budget_session = e / 0.85      # this call's estimate alone is 85% of it
    with pytest.warns(budget.BudgetWarning, match=r"session budget to 8\d%") as record:
        priced.ask(prompt, model="loop/m", max_tokens=5)
    assert len([w for w in record if issubclass(w.category, budget.BudgetWarning)]) == 1
    assert "%config LLMNotebook.budget_session" in str(record[0].message)
    priced.config.budget_session = 100 * e       # far from the limit: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", budget.BudgetWarning)
        priced.ask(prompt, model="loop/m", max_tokens=5)


def test_below_80_percent_no_warning(priced):
    priced.config.budget_session = 10 * est("fine", 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", budget.BudgetWarning)
        priced.ask("fine", model="loop/m", max_tokens=5)


def test_day_budget_is_shared_by_two_sessions_on_one_log(priced, loopback, log_path):
    first = priced
    first.ask("spend some money now", model="loop/m", max_tokens=20)
    spent = first.spent
    assert spent > 0

    second = Session(log_path=log_path)          # another kernel on the same log
    second.add_endpoint("loop", loopback.url)
    second.config.prices = dict(PRICES)
    assert budget.spent_today(second) == pytest.approx(spent)
    second.config.budget_day = spent + 0.5 * est("and more", 20)
    with pytest.raises(BudgetExceeded) as caught:
        second.ask("and more", model="loop/m", max_tokens=20)
    assert "day budget" in str(caught.value) and "all kernels, today UTC" in str(caught.value)
    assert f"spent so far ${spent:.4f}" in str(caught.value)
    assert loopback.stats()["requests"] == 1
    # Its own session spend is still zero: only the day budget refused it.
    assert second.spent == 0
    second.config.budget_day = 0
    second.config.budget_session = est("and more", 20) * 1.1
    second.ask("and more", model="loop/m", max_tokens=20)
    assert loopback.stats()["requests"] == 2


def test_yesterdays_spend_does_not_count_today(priced):
    priced.log.insert_call({"ts": time.time() - 86400 * 1.5, "model": "loop/m", "status": "ok",
                            "cost": 50.0})
    priced.log.insert_call({"ts": time.time(), "model": "loop/m", "status": "ok", "cost": 0.25})
    assert budget.spent_today(priced) == pytest.approx(0.25)
    priced.config.budget_day = 0.26
    with pytest.raises(BudgetExceeded, match=r"spent so far \$0\.2500"):
        priced.ask("anything at all", model="loop/m", max_tokens=50)


def test_concurrent_calls_hold_their_estimates(priced, loopback):
    # Five calls started together: each is checked with the estimates of those already in
    # flight, so only what fits is sent.
    loopback.configure(latency=0.3)
    prompt = "in flight"
    priced.config.budget_session = 2.5 * est(prompt, 8)

    async def five():
        return await asyncio.gather(*(priced.aask(prompt, model="loop/m", max_tokens=8)
                                      for _ in range(5)), return_exceptions=True)

    from llm_notebook import runner

    results = runner.run(five())
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    sent = [r for r in results if not isinstance(r, BaseException)]
    assert len(sent) == 2 and len(refused) == 3
    assert "in flight" in str(refused[0])
    assert loopback.stats()["requests"] == 2
    # Once they are logged, nothing is held any more.
    assert budget.headroom(priced) == pytest.approx(priced.config.budget_session - priced.spent)


def test_a_failed_call_releases_its_hold(priced, loopback):
    loopback.script([{"kind": "400"}])
    priced.config.budget_session = 10 * est("boom", 5)
    with pytest.raises(Exception):
        priced.ask("boom", model="loop/m", max_tokens=5)
    assert budget.headroom(priced) == pytest.approx(priced.config.budget_session)


def test_unpriced_models_pass_with_one_warning(loop_session, loopback):
    loop_session.config.budget_session = 0.0001
    with pytest.warns(budget.BudgetWarning, match="has no known price"):
        loop_session.ask("free?", model="loop/m", max_tokens=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", budget.BudgetWarning)
        loop_session.ask("free?", model="loop/m", max_tokens=5)
    assert loopback.stats()["requests"] == 2


def test_no_budget_no_checks(priced, loopback):
    assert budget.headroom(priced) is None
    budget.check_run(priced, 1e9)               # nothing set: nothing refused
    priced.ask("no limits", model="loop/m", max_tokens=5)
    assert loopback.stats()["requests"] == 1


def test_what_batch_runs_use(priced):
    priced.config.budget_session = 1.0
    priced.config.budget_day = 0.5
    assert budget.headroom(priced) == pytest.approx(0.5)
    budget.check_run(priced, 0.3)
    with pytest.raises(BudgetExceeded) as caught:
        budget.check_run(priced, 0.7, what="this batch run of 700 rows",
                         detail="est. $0.7000 for 700 rows")
    message = str(caught.value)
    assert message.startswith("refused before sending: this batch run of 700 rows")
    assert "day budget of $0.50" in message and "budget_day = 0.71" in message
    with pytest.warns(budget.BudgetWarning, match="day budget to 90%"):
        budget.check_run(priced, 0.45)
    e = budget.estimate(priced, "loop/m", [{"role": "user", "content": "x" * 400}], {"max_tokens": 7})
    assert (e.input_tokens, e.output_tokens) == (100, 7)
    assert e.cost == pytest.approx(100 * IN + 7 * OUT)
    assert budget.output_tokens("openai/gpt-4o-mini", {}) == budget.DEFAULT_OUTPUT_TOKENS
    assert budget.estimate(priced, "nobody/m", [{"role": "user", "content": "x"}]).cost is None
