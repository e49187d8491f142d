"""Spending limits: refuse a call before it is sent if it could cross a budget."""

from __future__ import annotations

import time
import warnings

from . import pricing
from .errors import BudgetExceeded

WARN_AT = 0.8
_warned: set[tuple[str, float]] = set()


def estimate_cost(session, route, messages: list[dict], options: dict) -> float | None:
    from .providers import estimate_tokens

    text = "".join(str(m.get("content") or "") for m in messages)
    tin = estimate_tokens(text)
    tout = int(options.get("max_tokens") or 1000)
    return pricing.cost_of(route.model, tin, tout, session.config.prices)


def spent_today(session) -> float:
    start_hour = int(time.time() // 86400) * 24
    rows = session.log.read("SELECT coalesce(sum(cost), 0) FROM usage_hourly WHERE hour >= ?",
                            (start_hour,))
    return float(rows[0][0] or 0)


def check(session, route, messages: list[dict], options: dict, *, extra: float = 0.0) -> None:
    """Raise BudgetExceeded if this call (plus `extra` already committed) could cross a limit."""
    limits = []
    if session.config.budget_session > 0:
        limits.append(("session", session.config.budget_session, session.spent, "budget_session"))
    if session.config.budget_day > 0:
        limits.append(("day", session.config.budget_day, spent_today(session), "budget_day"))
    if not limits:
        return
    estimate = estimate_cost(session, route, messages, options) or 0.0
    for label, limit, spent, trait in limits:
        if spent + extra + estimate > limit:
            raise BudgetExceeded(
                f"refused: this call (est. ${estimate:.4f}) would cross the {label} budget of "
                f"${limit:.2f} (spent ${spent + extra:.4f}); raise it with "
                f"%config LLMNotebook.{trait} = <USD> or llm_notebook.session().config.{trait} = <USD>")
        if spent + extra + estimate > WARN_AT * limit and (label, limit) not in _warned:
            _warned.add((label, limit))
            warnings.warn(f"llm-notebook: {label} spend ${spent:.4f} is past 80% of its ${limit:.2f} budget",
                          stacklevel=2)
