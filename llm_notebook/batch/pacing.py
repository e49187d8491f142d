"""Pacing of a batch: requests/tokens per minute, and a concurrency limit that adapts to 429s.

`RatePacer` spaces sends evenly (GCRA: each send pushes a "theoretical arrival time" forward by
its cost), so a run never exceeds `rpm`/`tpm` over any 60 s window, including providers that
enforce the limit per second. Token costs are estimates made before the call and corrected
afterwards with the real usage.

`AdaptiveLimit` is an AIMD gate on in-flight calls: halve on a 429 (at most once per cool-down,
so one burst of 429s from calls already in flight counts once), add one slot per `limit`
successes (one per round trip at full use), never above the user's maximum.

Both are single-event-loop objects (no locks) with a fast path that never suspends, because
they sit on the per-row path of runs that must reach thousands of rows a second.
"""

from __future__ import annotations

import asyncio
import collections
import time


class RatePacer:
    def __init__(self, rpm: float | None = None, tpm: float | None = None):
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value > 0):
                unit = "requests" if name == "rpm" else "tokens"
                raise ValueError(f"{name} must be a positive number of {unit} per minute, or "
                                 f"None for no limit; got {value!r}")
        self.rpm = rpm
        self.tpm = tpm
        self._request_gap = 60.0 / rpm if rpm else 0.0
        self._token_gap = 60.0 / tpm if tpm else 0.0
        self._next_request = 0.0     # monotonic time the next request may start
        self._next_token = 0.0       # monotonic time the token budget is free again
        self.not_before = 0.0        # a provider's Retry-After, for every row

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.tpm)

    def reserve(self, tokens: int) -> float:
        """Book a send of `tokens`; returns seconds to wait before sending (0 if none)."""
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
            self._next_token = max(time.monotonic() if actual < estimated else 0.0,
                                   self._next_token + (actual - estimated) * self._token_gap)

    def pause(self, seconds: float | None) -> None:
        """The provider asked every caller to wait (Retry-After): no send starts before then."""
        if seconds:
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

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            future = self._waiters.popleft()
            if not future.done():
                self.in_flight += 1
                future.set_result(None)

    def open_wide(self) -> None:
        """Let every waiter through and take no more turns (the gate is closing: they are
        about to hear that their run is over)."""
        self.limit = float(max(self.maximum, self.in_flight + len(self._waiters)) + 1)
        self._wake()

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
