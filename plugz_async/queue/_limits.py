"""Per-instance rate limits shared by every worker, kept in Redis by the ``limits``
library (a moving window: no more than N requests to one instance in any window)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from plugz_async._errors import InvalidArgument

__all__ = ["InstanceRateLimit", "limits_url", "parse_rate"]


def limits_url(redis_url: str) -> str:
    """The ``limits`` storage address of a Redis URL."""
    for scheme, storage in (
        ("redis://", "async+redis://"),
        ("rediss://", "async+rediss://"),
        ("unix://", "async+redis+unix://"),
    ):
        if redis_url.startswith(scheme):
            return storage + redis_url[len(scheme) :]
    raise InvalidArgument("the Redis URL must start with redis://, rediss:// or unix://")


def parse_rate(rate: str) -> RateLimitItem:
    """One ``limits`` rate of at least one request, e.g. ``"5/second"``.

    Raises:
        InvalidArgument: not such a rate (``"0/second"``, two rates, words).
    """
    wrong = InvalidArgument(
        f"the rate limit must read like '5/second' or '100 per minute', not {rate!r}"
    )
    if not isinstance(rate, str) or any(sep in rate for sep in ";,|"):
        raise wrong
    try:
        item = parse(rate)
    except ValueError:
        raise wrong from None
    if item.amount < 1:
        raise wrong
    return item


class InstanceRateLimit:
    """At most ``rate`` API requests per instance, across all workers.

    Args:
        redis_url: the Redis the workers share.
        connection_pool: a redis-py connection pool to use (the worker's own).
        rate: a ``limits`` rate, e.g. ``"5/second"`` or ``"100 per minute"``.
        namespace: keeps the limits of two queues apart.
    """

    def __init__(
        self, redis_url: str, rate: str, *, namespace: str, connection_pool: Any = None
    ) -> None:
        self.item = parse_rate(rate)
        self.rate = rate
        self.namespace = namespace
        # On the connections of the worker's own Redis client when given: nothing more to
        # open or to close.
        options: dict[str, Any] = {}
        if connection_pool is not None:
            options["connection_pool"] = connection_pool
        self._storage = RedisStorage(limits_url(redis_url), implementation="redispy", **options)
        self._limiter = MovingWindowRateLimiter(self._storage)

    async def acquire(self, instance: str) -> float:
        """Wait until a request to ``instance`` is allowed, and count it; returns the
        seconds waited."""
        waited = 0.0
        while not await self._limiter.hit(self.item, self.namespace, instance):
            stats = await self._limiter.get_window_stats(self.item, self.namespace, instance)
            pause = min(max(stats.reset_time - time.time(), 0.01), 1.0)
            await asyncio.sleep(pause)
            waited += pause
        return waited
