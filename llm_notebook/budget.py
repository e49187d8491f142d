"""Spending limits: refuse a call (or a batch run) before it is sent if it could cross a budget.

Two limits, both USD and 0 = none: `LLMNotebook.budget_session` (what this kernel's Session
spends) and `LLMNotebook.budget_day` (what every kernel sharing the log spends per UTC day,
read from the log's usage rollup). Before a call is sent, its cost is estimated from its
prompt's size and `max_tokens` (or DEFAULT_OUTPUT_TOKENS): if spent + in flight + estimate
would pass a limit, the call is refused with BudgetExceeded; past WARN_AT of a limit, a
BudgetWarning is shown once per limit (and per day for the day budget).

Calls in flight hold their estimate until they are logged (`SessionBudget`, the executor's
budget hook: llm_notebook/call/executor.py), so concurrent calls (gather, a comparison grid)
cannot all slip under the same remaining budget. Models without a known price cannot be
limited: they are let through, with one warning saying how to price them.

Batch runs (llm_notebook.batch) use `headroom()` (USD left under the tightest limit) to stop
before crossing, and `check_run()` to refuse a whole run whose estimate does not fit.
"""

from __future__ import annotations

import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field

from . import pricing
from .errors import BudgetExceeded

WARN_AT = 0.8
# Output tokens assumed when a call sets no max_tokens (the batch engine reserves the same).
DEFAULT_OUTPUT_TOKENS = 1000


class BudgetWarning(UserWarning):
    """Spending has passed 80% of a budget (filter it with the warnings module if unwanted)."""


@dataclass
class Estimate:
    model: str
    input_tokens: int
    output_tokens: int
    cost: float | None          # None: the model has no known price

    def describe(self) -> str:
        cost = "unknown" if self.cost is None else f"${self.cost:.4f}"
        return (f"est. {cost}: ~{self.input_tokens:,} input + {self.output_tokens:,} output "
                f"tokens of {self.model}")


@dataclass
class _Ledger:
    """Per-Session state: estimates of calls in flight, and which warnings were shown."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    held: dict = field(default_factory=dict)        # hold token -> USD reserved
    warned: set = field(default_factory=set)

    def in_flight(self) -> float:
        return sum(self.held.values())


_ledgers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_ledgers_lock = threading.Lock()


def _ledger(session) -> _Ledger:
    with _ledgers_lock:
        ledger = _ledgers.get(session)
        if ledger is None:
            ledger = _ledgers[session] = _Ledger()
        return ledger


# -- estimates ------------------------------------------------------------------------------------

def output_tokens(model: str, options: dict) -> int:
    """The output tokens a call may produce: its max_tokens, else DEFAULT_OUTPUT_TOKENS (capped
    at the model's own output limit when litellm knows it)."""
    limit = options.get("max_tokens") or options.get("max_completion_tokens")
    if limit:
        return int(limit)
    cap = pricing.max_output_tokens(model)
    return min(DEFAULT_OUTPUT_TOKENS, cap) if cap else DEFAULT_OUTPUT_TOKENS


def estimate(session, model: str, messages: list[dict], options: dict | None = None) -> Estimate:
    """What a call would cost at most: its prompt's tokens (tokens.estimate_prompt) plus its
    max_tokens of output, at the model's price."""
    from .tokens import estimate_prompt

    options = options or {}
    tin = estimate_prompt(messages)
    tout = output_tokens(model, options)
    return Estimate(model, tin, tout, pricing.cost_of(model, tin, tout, session.config.prices))


def estimate_cost(session, route, messages: list[dict], options: dict) -> float | None:
    return estimate(session, route.model, messages, options).cost


# -- spending -------------------------------------------------------------------------------------

def day_start(now: float | None = None) -> float:
    """Unix time of the current UTC day's midnight (the day budget's period)."""
    now = time.time() if now is None else now
    return (now // 86400) * 86400


def spent_today(session) -> float:
    """USD logged today (UTC) by every kernel sharing this Session's log."""
    return session.log.cost_since(day_start())


def _limits(session) -> list[tuple[str, float, float, str]]:
    """(label, limit, spent, trait) of each budget that is set."""
    config = session.config
    limits = []
    if config.budget_session > 0:
        limits.append(("session", float(config.budget_session), float(session.spent),
                       "budget_session"))
    if config.budget_day > 0:
        limits.append(("day", float(config.budget_day), spent_today(session), "budget_day"))
    return limits


def headroom(session) -> float | None:
    """USD that can still be spent under the tightest budget (calls in flight counted), or None
    when no budget is set."""
    limits = _limits(session)
    if not limits:
        return None
    in_flight = _ledger(session).in_flight()
    return max(0.0, min(limit - spent - in_flight for _, limit, spent, _ in limits))


# -- checks ---------------------------------------------------------------------------------------

class SessionBudget:
    """The session and day budgets as the executor's budget hook (llm_notebook/call): before
    each attempt `take(call)` refuses it (BudgetExceeded) if it could cross a budget, counting
    the estimates of the calls in flight, or holds its estimate; `release(hold)` drops the hold
    once the call is logged (or the attempt failed)."""

    def __init__(self, session):
        self.session = session

    def take(self, call) -> object | None:
        session = self.session
        limits = _limits(session)
        if not limits:
            return None
        model = call.route.model
        cost = call.price(call.est_in, call.est_out)
        if cost is None:
            _warn_unpriced(session, model)
            return None
        ledger = _ledger(session)
        detail = Estimate(model, call.est_in, call.est_out, cost).describe()
        with ledger.lock:
            _judge(session, ledger, limits, cost, ledger.in_flight(), "this call", detail)
            hold = object()
            ledger.held[hold] = cost
        return hold

    def release(self, hold: object) -> None:
        ledger = _ledger(self.session)
        with ledger.lock:
            ledger.held.pop(hold, None)


def check_run(session, cost: float | None, *, what: str = "this batch run",
              detail: str = "") -> None:
    """Raise BudgetExceeded if a run estimated at `cost` USD could cross a budget (warn past
    80%). For batch runs: call it with the run's estimate before sending anything."""
    limits = _limits(session)
    if not limits or cost is None:
        return
    ledger = _ledger(session)
    with ledger.lock:
        _judge(session, ledger, limits, float(cost), ledger.in_flight(), what,
               detail or f"est. ${float(cost):.4f}")


def _judge(session, ledger: _Ledger, limits, cost: float, committed: float, what: str,
           detail: str) -> None:
    for label, limit, spent, trait in limits:
        total = spent + committed + cost
        if total > limit:
            scope = "this kernel" if label == "session" else "all kernels, today UTC"
            suggestion = _round_up(total)
            raise BudgetExceeded(
                f"refused before sending: {what} ({detail}) would cross the {label} budget of "
                f"${limit:.2f}; spent so far ${spent:.4f} ({scope})"
                + (f" + ${committed:.4f} in flight" if committed > 0 else "")
                + f". Raise it with %config LLMNotebook.{trait} = {suggestion} (or "
                f"llm_notebook.session().config.{trait} = {suggestion}), or lower max_tokens.")
        period = day_start() if label == "day" else None
        key = (label, limit, period)
        if total >= WARN_AT * limit and key not in ledger.warned:
            ledger.warned.add(key)
            warnings.warn(
                f"llm-notebook: {what} brings the {label} budget to {total / limit:.0%} "
                f"(${total:.4f} of ${limit:.2f}, counting its estimate); calls that would cross "
                f"it will be refused. Raise it with %config LLMNotebook.{trait} = <USD>.",
                BudgetWarning, stacklevel=4)


def _round_up(amount: float) -> str:
    """A limit a little above `amount`, written plainly (for the error's suggestion)."""
    for step in (0.01, 0.1, 1, 10, 100, 1000):
        if amount < step * 100:
            value = (int(amount / step) + 1) * step
            return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{int(amount) + 1}"


def _warn_unpriced(session, model: str) -> None:
    ledger = _ledger(session)
    key = ("unpriced", model)
    if key in ledger.warned:
        return
    ledger.warned.add(key)
    warnings.warn(
        f"llm-notebook: {model} has no known price, so the budget cannot limit it; set one with "
        f"llm_notebook.session().config.prices = {{{model!r}: {{'input': <USD per 1M tokens>, "
        f"'output': <USD per 1M tokens>}}}}", BudgetWarning, stacklevel=4)
