"""Pacing a bulk run's attempts: `RateSchedule` (a fixed timetable of slots), the
`Limiter` protocol it fills, and `Pacer`, the attempt middleware through which every
attempt of a run goes (paced, counted per row, paused with the whole run on a 429).
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections import deque
from typing import Any, Protocol

from plugz_async._clock import Clock, SystemClock
from plugz_async._errors import InvalidArgument, RateLimitError
from plugz_async._transport import Send

__all__ = ["WINDOW", "Limiter", "Pacer", "RateSchedule", "count_attempts"]

logger = logging.getLogger("plugz_async")


class Limiter(Protocol):
    """What paces requests: ``aiolimiter.AsyncLimiter`` or anything with ``acquire()``."""

    async def acquire(self, amount: float = 1) -> None: ...


# The window a RateSchedule counts its releases in: a second, and ten milliseconds for the
# time between a release and the request leaving (on a busy machine the process can be
# descheduled in between: 3 ms let a 502nd request into a second at 500 a second), so that
# counted where requests leave, too, no second holds more than rate + 1 of them. (It caps the
# rate at (floor(rate) + 1) / WINDOW: 0.8% under 500 a second, nothing under 20.)
WINDOW = 1.01


class RateSchedule:
    """Paces to ``rate`` requests a second.

    Each ``acquire()`` takes the next slot of a fixed timetable, one every ``1/rate``
    seconds, and sleeps until it (never before). The slots follow each other on the
    timetable, not on when sleepers wake, so late wake-ups do not slow the run down (a
    leaky bucket restarted from each wake-up fell 28% short at 500 a second). A caller
    that comes after its slot has passed takes a slot from now: the run never bursts to
    catch up. And whatever the wake-ups do, no one-second window holds more than
    ``rate`` requests and one: a release waits until the one ``floor(rate) + 1`` before
    it is a second old, and 10 ms more (so at high rates the rate reached is a little
    under the rate asked: 496 a second at 500; 20 at 20).

    ``check_many(max_rate=...)`` makes one; make one yourself to share a rate between
    runs: ``limiter = pz.RateSchedule(20)``, then ``check_many(..., limiter=limiter)``.
    """

    def __init__(self, rate: float, clock: Clock | None = None) -> None:
        if not rate > 0:
            raise InvalidArgument("the rate must be more than 0 requests a second")
        self._interval = 1.0 / rate
        self._clock = clock or SystemClock()
        self._next = -math.inf
        self._recent: deque[float] = deque(maxlen=math.floor(rate) + 1)

    async def acquire(self, amount: float = 1) -> None:
        """Wait for the next slot (``amount``: slots to take at once, for ``Limiter``'s
        signature; a request takes one)."""
        for _ in range(max(1, math.ceil(amount))):
            await self._take()

    async def _take(self) -> None:
        clock = self._clock
        now = clock.monotonic()
        slot = max(self._next, now)
        self._next = slot + self._interval
        if slot > now:
            await clock.sleep(slot - now)
        recent = self._recent
        while len(recent) == recent.maxlen and (wait := recent[0] + WINDOW - clock.monotonic()) > 0:
            await clock.sleep(wait)
        recent.append(clock.monotonic())


class Pacer:
    """The attempt middleware of a bulk run: paces every attempt (retries included),
    counts each row's attempts, and pauses the whole run when the server answers 429."""

    def __init__(self, limiter: Limiter | None, clock: Clock) -> None:
        self._limiter = limiter
        self._clock = clock
        self._paused_until = 0.0

    async def __call__(self, route: str, send: Send) -> dict[str, Any]:
        while (pause := self._paused_until - self._clock.monotonic()) > 0:
            await self._clock.sleep(pause)
        if self._limiter is not None:
            await self._limiter.acquire()
        attempts = _ATTEMPTS.get()
        if attempts is not None:
            attempts[0] += 1
        try:
            return await send()
        except RateLimitError as error:
            # The server is overloaded: the whole run waits, not only this row.
            pause = error.retry_after if error.retry_after is not None else 1.0
            self._paused_until = max(self._paused_until, self._clock.monotonic() + pause)
            logger.info("the server answered 429: pausing the run for %.1f s", pause)
            raise


# The attempt counter of the row being checked (each row runs in a task of its own).
_ATTEMPTS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "plugz_bulk_attempts", default=None
)


def count_attempts() -> list[int]:
    """A fresh attempt counter for the row the current task checks: `Pacer` adds one to
    ``counter[0]`` for each attempt it lets through (retries included)."""
    counter = [0]
    _ATTEMPTS.set(counter)
    return counter
