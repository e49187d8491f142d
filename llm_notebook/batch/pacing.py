"""Pacing of a batch: requests/tokens per minute, and a concurrency limit that adapts to 429s.

`RatePacer` spaces sends evenly (GCRA: each send pushes a "theoretical arrival time" forward by
its cost), so a run never exceeds `rpm`/`tpm` over any 60 s window, including providers that
enforce the limit per second. Token costs are estimates made before the call and corrected
afterwards with the real usage.

`AdaptiveLimit` is an AIMD gate on in-flight calls: halve on a 429 (at most once per cool-down,
so one burst of 429s from calls already in flight counts once), add one slot per `limit`
successes (one per round trip at full use), never above the user's maximum.

A rate limit belongs to the model, not to one run: `shared_pacer(route, rpm, tpm)` gives every
run on the same model and endpoint the same RatePacer, so two background jobs (or a job and a
comparison) on one model stay under its limit together, and a Retry-After pauses them all. While
runs are attached, the strictest rpm/tpm any of them gave applies; the pacer's clock outlives
them, so a run that starts as another ends does not burst.

`AdaptiveLimit` is a single-event-loop object (no locks) with a fast path that never suspends,
because it sits on the per-row path of runs that must reach thousands of rows a second. The
pacer's arithmetic takes a lock (runs of one model may be on two loops: `abatch` runs on the
caller's), only when a limit or a pause is set.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time


def _check_limit(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not value > 0):
        unit = "requests" if name == "rpm" else "tokens"
        raise ValueError(f"{name} must be a positive number of {unit} per minute, or "
                         f"None for no limit; got {value!r}")


_pacers: dict = {}
_pacers_lock = threading.Lock()


def shared_pacer(route, rpm: float | None = None, tpm: float | None = None) -> "RatePacer":
    """The pacer of a route's model (one per model and endpoint in this process). `rpm`/`tpm`
    are checked here; a run applies them while it runs (`attach`)."""
    _check_limit("rpm", rpm)
    _check_limit("tpm", tpm)
    key = (route.model, route.base_url or route.endpoint or "")
    with _pacers_lock:
        pacer = _pacers.get(key)
        if pacer is None:
            pacer = _pacers[key] = RatePacer()
        return pacer


class RatePacer:
    def __init__(self, rpm: float | None = None, tpm: float | None = None):
        _check_limit("rpm", rpm)
        _check_limit("tpm", tpm)
        self._lock = threading.Lock()
        self._own = (rpm, tpm)
        self._attached: dict = {}     # run -> (rpm, tpm) it asked for
        self._next_request = 0.0     # monotonic time the next request may start
        self._next_token = 0.0       # monotonic time the token budget is free again
        self.not_before = 0.0        # a provider's Retry-After, for every row
        self._apply(rpm, tpm)

    def _apply(self, rpm, tpm) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._request_gap = 60.0 / rpm if rpm else 0.0
        self._token_gap = 60.0 / tpm if tpm else 0.0

    def attach(self, owner, rpm: float | None, tpm: float | None) -> None:
        """A run starts: the strictest limit of the runs attached applies to them all."""
        with self._lock:
            self._attached[owner] = (rpm, tpm)
            self._recompute()

    def detach(self, owner) -> None:
        with self._lock:
            self._attached.pop(owner, None)
            self._recompute()

    def _recompute(self) -> None:
        limits = [self._own, *self._attached.values()]
        rpms = [r for r, _ in limits if r]
        tpms = [t for _, t in limits if t]
        self._apply(min(rpms) if rpms else None, min(tpms) if tpms else None)

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.tpm)

    def reserve(self, tokens: int) -> float:
        """Book a send of `tokens`; returns seconds to wait before sending (0 if none)."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self.not_before)
            if self._request_gap:
                start = max(start, self._next_request)
                self._next_request = start + self._request_gap
            if self._token_gap:
                start = max(start, self._next_token)
                self._next_token = start + tokens * self._token_gap
            return start - now

    def correct(self, estimated: int, actual: int | None) -> None:
        """The call used `actual` tokens where `estimated` were booked: shift the token clock."""
        if self._token_gap and actual is not None and actual != estimated:
            with self._lock:
                self._next_token = max(time.monotonic() if actual < estimated else 0.0,
                                       self._next_token + (actual - estimated) * self._token_gap)

    def pause(self, seconds: float | None) -> None:
        """The provider asked every caller to wait (Retry-After): no send starts before then."""
        if seconds:
            with self._lock:
                self.not_before = max(self.not_before, time.monotonic() + float(seconds))

    def wait_for_pause(self) -> float:
        return max(0.0, self.not_before - time.monotonic())


class AdaptiveLimit:
    """An async gate on in-flight calls whose width adapts (AIMD) to rate limiting."""

    def __init__(self, maximum: int, *, cooldown: float = 1.0, floor: int = 1):
        if isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 1:
            raise ValueError(f"concurrency must be a whole number >= 1, got {maximum!r}")
        self.maximum = maximum
        self.floor = min(floor, maximum)
        self.limit = float(maximum)
        self.in_flight = 0
        self.cooldown = cooldown
        self.decreases = 0
        self._last_decrease = -1e9
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    async def acquire(self) -> None:
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # we were handed a slot just as we were cancelled: give it back
            else:
                try:
                    self._waiters.remove(future)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def resize(self, maximum: int) -> None:
        """A new maximum (and limit), e.g. a setting that changed; waiters get freed slots."""
        self.maximum = maximum
        self.floor = min(self.floor, maximum)
        self.limit = float(maximum)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            future = self._waiters.popleft()
            if not future.done():
                self.in_flight += 1
                future.set_result(None)

    def on_success(self) -> None:
        if self.limit < self.maximum:
            self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
            self._wake()

    def on_rate_limited(self) -> None:
        now = time.monotonic()
        if now - self._last_decrease < self.cooldown:
            return
        self._last_decrease = now
        self.decreases += 1
        self.limit = max(float(self.floor), self.limit / 2)
