"""saq's Redis queue as a worker of ours uses it: dead workers' steps taken over at once,
and a Redis that is away waited for quietly.

**Taking over.** saq's own sweep takes a dead worker's jobs one at a time, waiting up
to 5 s for each to acknowledge its abort, from a list read once at the start: the k-th
step of a dead worker was taken over about 5k seconds late, long after a code request's
wait could have ended, and a job that a healthy worker had meanwhile finished could be
aborted and run again. `WorkerQueue.sweep` reads the active jobs once, then takes every
abandoned one over concurrently: at once when its worker is known dead (its saq worker
record, refreshed every heartbeat, has expired), after ``stall_wait`` seconds at most
when its worker still looks alive (stalled: stopped, or its loop blocked). A job seen
dequeued but never marked active (its worker died in between) is taken over at its
second sighting. A step taken over is run again at once: what it does
is fenced by the registration's version and, for a code request, by its intent; it runs as
a new job under a key of its own, so that the old worker, should it wake, can only end its
own job.

**Redis away.** saq's worker loops straight back into ``dequeue`` when it fails: with
Redis down, each idle worker spun a core. Here every call the worker's loops make waits
with a pause that grows to 2 s when Redis is away, and the worker says so once every
few seconds (`RedisHealth`), then once more when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from saq.job import Job, Status
from saq.queue.redis import RedisQueue

__all__ = ["RedisHealth", "WorkerQueue"]

logger = logging.getLogger("plugz_async.queue")

_ACTIVE = (Status.ACTIVE, Status.ABORTING)

# Lock the sweep (one worker at a time), then read the active jobs' ids and the jobs.
_ACTIVE_JOBS = """
local found = {}
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SETEX', KEYS[1], ARGV[1], 1)
  for i, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    found[i] = {id, redis.call('GET', id)}
  end
end
return found
"""


class RedisHealth:
    """Whether Redis answers, said in the log once every ``every`` seconds while it does
    not (and once when it is back); the pause before the next try."""

    def __init__(
        self,
        every: float = 5.0,
        longest_pause: float = 2.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every = every
        self.longest_pause = longest_pause
        self._monotonic = monotonic
        self.down_since: float | None = None
        #: The worker is stopping: its connections close under calls in flight, which is
        #: no outage to report.
        self.stopping = False
        self._said = 0.0
        self._failures = 0

    def failed(self, error: BaseException) -> float:
        """Note a failed call; the seconds to pause before the next."""
        now = self._monotonic()
        if self.down_since is None:
            self.down_since, self._said = now, now - self.every
        if now - self._said >= self.every and not self.stopping:
            self._said = now
            logger.warning(
                "Redis is unreachable or failing (%s) for %.0f s: the worker waits for it",
                type(error).__name__,
                now - self.down_since,
            )
        self._failures += 1
        pause: float = min(0.05 * 2 ** min(self._failures, 10), self.longest_pause)
        return pause

    def ok(self) -> None:
        """Note a call that succeeded."""
        if self.down_since is not None:
            logger.warning(
                "Redis is reachable again, after %.0f s", self._monotonic() - self.down_since
            )
        self.down_since = None
        self._failures = 0


class WorkerQueue(RedisQueue):
    """saq's `RedisQueue`, with the sweep and the Redis outages of the module's docstring.

    Attributes:
        stall_wait: seconds an abandoned step of a worker that still looks alive is
            given to acknowledge its abort before it runs elsewhere.
        health: how Redis has been answering.
        on_worker_info: called with a worker's id and what it says of itself (its
            metadata, its counts) every time saq writes its record: the queue's own
            registry of workers keeps it past the record's short life.
    """

    stall_wait: float = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.health = RedisHealth()
        self.on_worker_info: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
        self._active_jobs: Any = None
        self._suspects: set[bytes] = set()
        self.taken_over = 0

    # -- Redis away: every loop of the worker pauses instead of spinning -----------------

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Job | None:
        try:
            job = await super().dequeue(timeout, poll_interval)
        except (OSError, RedisError) as error:
            await asyncio.sleep(self.health.failed(error))
            return None
        self.health.ok()
        return job

    async def schedule(self, lock: int = 1) -> list[str]:
        try:
            scheduled: list[str] = await super().schedule(lock)
        except (OSError, RedisError) as error:
            self.health.failed(error)
            return []
        return scheduled

    async def write_worker_info(self, worker_id: str, info: Any, ttl: int) -> None:
        try:
            await super().write_worker_info(worker_id, info, ttl)
            if self.on_worker_info is not None:
                said = {**(info.get("metadata") or {}), "stats": info.get("stats"), "ttl": ttl}
                await self.on_worker_info(worker_id, said)
        except (OSError, RedisError) as error:
            self.health.failed(error)

    async def jobs(self, job_keys: Any) -> list[Job | None]:
        try:
            return await super().jobs(job_keys)
        except (OSError, RedisError) as error:
            self.health.failed(error)
            return []

    # -- taking abandoned steps over -----------------------------------------------------

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        try:
            return await self._take_over_abandoned(lock)
        except (OSError, RedisError) as error:
            self.health.failed(error)
            return []

    async def _take_over_abandoned(self, lock: int) -> list[str]:
        if self._active_jobs is None:
            self._active_jobs = self.redis.register_script(_ACTIVE_JOBS)
        found = await self._active_jobs(keys=[self._sweep, self._active], args=[lock])
        if not found:
            return []
        seen: list[tuple[bytes, Job | None]] = [
            (job_id, self.deserialize(raw)) for job_id, raw in found
        ]
        workers = {str(job.worker_id) for _, job in seen if job is not None and job.worker_id}
        alive = await self._alive(workers)
        suspects: set[bytes] = set()
        taking: list[asyncio.Task[None]] = []
        swept: list[str] = []
        for job_id, job in seen:
            if job is None:
                await self._forget(job_id)
                swept.append(job_id.decode())
                continue
            if job.status in _ACTIVE:
                if not job.stuck:
                    continue
                dead = str(job.worker_id) not in alive
            elif job_id in self._suspects:
                dead = True  # dequeued, never marked active: its worker died in between
            else:
                suspects.add(job_id)
                continue
            swept.append(job_id.decode())
            taking.append(asyncio.create_task(self._take_over(job, dead=dead)))
        self._suspects = suspects
        if taking:
            await asyncio.gather(*taking)
        return swept

    async def _alive(self, workers: set[str]) -> set[str]:
        """The worker ids of ``workers`` whose saq record has not expired."""
        if not workers:
            return set()
        names = sorted(workers)
        found = await self.redis.mget([self.namespace(f"worker_info:{w}") for w in names])
        return {name for name, info in zip(names, found, strict=True) if info is not None}

    async def _forget(self, job_id: bytes) -> None:
        """A job id on the active list whose job is gone (as saq's sweep does)."""
        pipe: Any
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.lrem(self._active, 0, job_id).zrem(self._incomplete, job_id).execute()

    async def _take_over(self, job: Job, *, dead: bool) -> None:
        logger.info(
            "taking over step %s of %s worker %s",
            job.key,
            "dead" if dead else "stalled",
            job.worker_id,
        )
        error = self.swept_error_message
        await self.abort(job, error=error)
        if not dead:
            with contextlib.suppress(asyncio.TimeoutError):
                await job.refresh(self.stall_wait)
        self.taken_over += 1
        # The old job ends here, and the step runs again as a new job under a key of its
        # own: a stalled worker that acknowledges its abort late (or finishes) can then
        # only touch its own job, never the one that took over. (Retrying the same job
        # would let that late acknowledgement abort the run that took over.)
        await self.finish(job, Status.ABORTED, error=error)
        await self.enqueue(
            job.function,
            key=f"{job.key}:takeover-{uuid.uuid4().hex[:8]}",
            timeout=job.timeout,
            heartbeat=job.heartbeat,
            retries=job.retries,
            retry_delay=job.retry_delay,
            retry_backoff=job.retry_backoff,
            **(job.kwargs or {}),
        )
