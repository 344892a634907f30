"""Time, injected: the wall clock, the monotonic clock and sleeping, in one object.

The planner and the retry waits take a `Clock`, so every schedule and every
backoff can be tested without sleeping: `FakeClock` moves only when told to
(or when something sleeps on it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable

from ._errors import InvalidArgument

__all__ = ["Clock", "FakeClock", "SystemClock", "monotonic_of", "received_monotonic"]


@runtime_checkable
class Clock(Protocol):
    """What the SDK needs to know about time."""

    def now(self) -> datetime:
        """The wall-clock time, as an aware UTC ``datetime``."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for waiting and deadlines)."""

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for ``seconds``."""


class SystemClock:
    """The real clocks: ``datetime.now(timezone.utc)``, ``time.monotonic``, ``asyncio.sleep``."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock for tests: time passes only through `advance` or `sleep`.

    ``sleep`` advances the clock at once by the seconds asked (and yields to the
    event loop once), so code that waits an hour runs in microseconds. Every sleep
    is recorded in :attr:`sleeps`. `jump_wall` moves the wall clock alone, as
    an NTP step or a user changing the system time would. ``on_advance`` hears every
    move: ``FakeClock(on_advance=sandbox.advance)`` keeps the sandbox's clock in step.

    Example:
        >>> clock = FakeClock()
        >>> clock.advance(90)
        >>> clock.monotonic()
        90.0
    """

    def __init__(
        self,
        start: datetime | None = None,
        *,
        on_advance: Callable[[float], object] | None = None,
    ) -> None:
        self._wall = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
        if self._wall.tzinfo is None:
            raise InvalidArgument("FakeClock needs an aware datetime")
        self._mono = 0.0
        self._on_advance = on_advance
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        if seconds < 0:
            raise InvalidArgument("time does not go back on a monotonic clock")
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)
        if self._on_advance is not None:
            self._on_advance(seconds)

    def jump_wall(self, seconds: float) -> None:
        """Move the wall clock alone (forward or back), leaving the monotonic clock."""
        self._wall += timedelta(seconds=seconds)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._wall.isoformat()}, monotonic={self._mono})"


def monotonic_of(clock: Clock, moment: datetime) -> float:
    """The wall-clock ``moment`` on ``clock``'s monotonic timeline (as seen now)."""
    return clock.monotonic() + (moment - clock.now()).total_seconds()


def received_monotonic(
    clock: Clock, observed_monotonic: float | None, observed_at: datetime
) -> float:
    """When an answer arrived, on ``clock``'s monotonic timeline: its own stamp when it
    was taken on this clock, else placed by its wall-clock time (an answer read back from
    storage, or from another process); never later than now."""
    now = clock.monotonic()
    if observed_monotonic is not None and observed_monotonic <= now:
        return observed_monotonic
    return min(now, monotonic_of(clock, observed_at))
