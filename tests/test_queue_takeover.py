"""How a worker takes a dead or stalled worker's steps over, and waits out a dead Redis
(plugz_async/queue/_takeover.py), against a real redis-server.

The processes that die and stall for real are tests/test_queue_chaos.py; these tests pin
the rules: every abandoned step at once, no wait for a worker known dead, a short one for
a worker that still looks alive, a step dequeued and never started taken at its second
sighting, and a worker's loops pausing instead of spinning while Redis is away.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("saq")
from saq.job import Job, Status
from saq.utils import now

from plugz_async.queue._takeover import RedisHealth, WorkerQueue


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[WorkerQueue]:
    q = WorkerQueue.from_url(redis_url, name="takeover")
    assert isinstance(q, WorkerQueue)
    await q.connect()
    try:
        yield q
    finally:
        await q.disconnect()


@pytest.fixture
def waited(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """How long each job was waited for to acknowledge its abort (`Job.refresh`, which
    returns at once here)."""
    seen: list[Any] = []

    async def refresh(self: Job, until_complete: float | None = None) -> None:
        seen.append(until_complete)

    monkeypatch.setattr(Job, "refresh", refresh)
    return seen


async def running_jobs(queue: WorkerQueue, count: int, worker: str) -> list[Job]:
    """``count`` jobs dequeued and started by ``worker``, whose heartbeat ran out 5 s ago."""
    for i in range(count):
        await queue.enqueue(
            "step", key=f"step-{i}", heartbeat=1, retries=100, retry_delay=1.0, number=f"n{i}"
        )
    jobs = []
    for _ in range(count):
        job = await queue.dequeue(timeout=1)
        assert job is not None
        job.worker_id, job.attempts, job.started = worker, 1, now()
        await job.update(status=Status.ACTIVE)
        job.touched = now() - 5000
        await queue.redis.set(job.id, queue.serialize(job))
        jobs.append(job)
    return jobs


async def test_a_dead_workers_steps_are_all_taken_over_at_once(
    queue: WorkerQueue, waited: list[Any]
) -> None:
    await running_jobs(queue, 20, "gone")  # no saq record of "gone": it is dead
    swept = await queue.sweep(lock=1)
    assert len(swept) == 20 and queue.taken_over == 20
    assert waited == []  # nobody is asked to acknowledge: its worker is dead
    assert await queue.count("queued") == 20  # run again at once, not after a retry pause
    jobs = await queue.jobs(f"step-{i}" for i in range(20))
    # The old jobs end; the steps run again as new jobs of keys of their own, so that the
    # old worker, should it wake and acknowledge its abort, touches only its own.
    assert {job.status for job in jobs if job} == {Status.ABORTED}
    taken = [await queue.dequeue(timeout=1) for _ in range(20)]
    assert all(job is not None and job.key.startswith("step-") for job in taken)
    assert all(job is not None and ":takeover-" in job.key for job in taken)
    # The new job is the step's: its arguments and its retry pauses as they were.
    assert sorted((job.kwargs or {})["number"] for job in taken if job) == sorted(
        f"n{i}" for i in range(20)
    )
    assert {job.retry_delay for job in taken if job} == {1.0}


async def test_a_stalled_workers_steps_get_a_short_wait_together(
    queue: WorkerQueue, waited: list[Any]
) -> None:
    await running_jobs(queue, 5, "stalled")
    await queue.redis.set(queue.namespace("worker_info:stalled"), "{}", ex=10)  # looks alive
    assert len(await queue.sweep(lock=1)) == 5
    assert waited == [queue.stall_wait] * 5  # each gets the short wait, side by side
    assert queue.stall_wait <= 1.0
    assert await queue.count("queued") == 5


async def test_healthy_steps_are_left_alone(queue: WorkerQueue) -> None:
    jobs = await running_jobs(queue, 3, "busy")
    for job in jobs:
        await job.update()  # a heartbeat just now
    assert await queue.sweep(lock=1) == []
    assert queue.taken_over == 0


async def test_a_step_dequeued_and_never_started_is_taken_at_its_second_sighting(
    queue: WorkerQueue,
) -> None:
    await queue.enqueue("step", key="orphan", heartbeat=1, retries=100)
    job = await queue.dequeue(timeout=1)  # its worker died before marking it active
    assert job is not None and job.status is Status.QUEUED
    assert await queue.sweep(lock=1) == []  # it may be starting this very moment
    await queue.redis.delete(queue._sweep)  # the sweep's lock, as it expires
    assert await queue.sweep(lock=1) == [job.id]
    assert await queue.count("queued") == 1


def test_redis_away_is_said_once_every_few_seconds_and_paused_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [100.0]
    health = RedisHealth(every=5.0, longest_pause=2.0, monotonic=lambda: clock[0])
    pauses = []
    with caplog.at_level(logging.WARNING, logger="plugz_async.queue"):
        for _ in range(40):  # 40 failed calls over 10 s
            pauses.append(health.failed(ConnectionRefusedError()))
            clock[0] += 0.25
        health.ok()
        health.ok()
    assert pauses == sorted(pauses) and pauses[0] < 0.5 and pauses[-1] == 2.0
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "Redis is unreachable or failing (ConnectionRefusedError) for 0 s: the worker waits for it",
        "Redis is unreachable or failing (ConnectionRefusedError) for 5 s: the worker waits for it",
        "Redis is reachable again, after 10 s",
    ]
    assert health.down_since is None and health.failed(OSError()) < 0.5
