"""Due steps first: checks and timed steps run on two lanes (two saq queues), each with its
share of a worker's concurrency, against a real redis-server and the sandbox."""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

import pytest

pytest.importorskip("saq")
import attrs
from saq.queue.redis import RedisQueue
from test_queue import (
    CONFIG,
    READY,
    answer_until_done,
    digits,
    new_worker,
    worker_running,
)
from test_queue import sandbox as sandbox  # the fixture
from test_queue_chaos import ready_numbers

from plugz_async import InvalidArgument
from plugz_async.queue import (
    Lateness,
    QueueWorker,
    RegistrationQueue,
    checks_queue_name,
)
from plugz_async.queue._engine import STEP_FUNCTION, SaqScheduler, job_key
from plugz_async.sandbox import Sandbox, running

CHECK_ROUTE = "registration-available"
CODE_ROUTE = "request-registration-code"


def seq_of(sandbox: Sandbox, number: str, route: str) -> int:
    entries = sandbox.requests(number=digits(number), route=route)
    assert entries, (number, route)
    return int(entries[0]["seq"])


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_due_code_request_never_waits_behind_a_burst_of_checks(redis_url: str) -> None:
    # One check lane slot, every check of the burst answered 0.3 s late: the burst keeps
    # that lane busy for seconds. The ready number's code request, due as its check is
    # answered, goes out on the timed lane meanwhile (one queue, first in, first out, it
    # would wait behind every check registered after it).
    config = attrs.evolve(CONFIG, instances=14)
    burst = ready_numbers(12, config.seed)
    async with running(config) as sandbox:
        for number in burst:
            sandbox.hold(CHECK_ROUTE, 0.3, number=digits(number))
        instances = list(sandbox.instances())
        async with RegistrationQueue(redis_url, environ={}) as queue:
            await queue.register(READY, instance=instances[0])
            for number, instance in zip(burst, instances[1:], strict=False):
                await queue.register(number, instance=instance)
            async with worker_running(sandbox, redis_url, concurrency=3, timed_concurrency=2):
                await until(
                    lambda: sandbox.requests(number=digits(READY), route=CODE_ROUTE),
                    10,
                    "the ready number's code request",
                )
                sent_at = seq_of(sandbox, READY, CODE_ROUTE)
                checks_before = [
                    number for number in burst if seq_of_or_none(sandbox, number) < sent_at
                ]
                # The check lane's one slot: one held check in flight, perhaps a second.
                assert len(checks_before) <= 2, checks_before
                statuses = await answer_until_done(queue, sandbox, [READY, *burst])
            assert {s.status for s in statuses.values()} == {"connected"}
            workers = await queue.workers()
    # Each lane's steps, as the worker said with its heartbeat (its record once stopped).
    (said,) = workers
    assert (said.concurrency, said.timed_concurrency) == (3, 2)
    kinds = said.lateness.summaries()
    assert kinds["check"].count == 13
    assert kinds["request_code"].count == 13 and kinds["request_code"].early == 0
    assert kinds["confirm_code"].count >= 13


def seq_of_or_none(sandbox: Sandbox, number: str) -> float:
    entries = sandbox.requests(number=digits(number), route=CHECK_ROUTE)
    return int(entries[0]["seq"]) if entries else math.inf


async def test_checks_go_to_their_own_saq_queue_and_every_other_step_to_the_queue(
    redis_url: str,
) -> None:
    timed = RedisQueue.from_url(redis_url, name="lanes")
    checks = RedisQueue(timed.redis, name=checks_queue_name("lanes"))
    scheduler = SaqScheduler(timed, checks)
    try:
        await scheduler.schedule("+5511900000001", "a1", 0.0, step="check")
        await scheduler.schedule("+5511900000001", "a2", 0.0, step="request_code")
        await scheduler.schedule("+5511900000001", "a3", time.time() + 60, step="poll_device")
        assert checks.name == "lanes-checks"
        assert await checks.job(job_key("+5511900000001", "a1")) is not None
        assert await timed.job(job_key("+5511900000001", "a1")) is None
        for step_id in ("a2", "a3"):
            job = await timed.job(job_key("+5511900000001", step_id))
            assert job is not None and job.function == STEP_FUNCTION
            assert await checks.job(job_key("+5511900000001", step_id)) is None
    finally:
        await timed.disconnect()


async def test_a_check_left_on_the_queue_by_an_older_producer_still_runs(
    sandbox: Sandbox, redis_url: str
) -> None:
    # An older producer put every step on one queue: the timed lane runs any step it
    # finds, so registrations queued before an upgrade finish.
    async with RegistrationQueue(redis_url, environ={}) as queue:
        queue._scheduler.checks = queue._scheduler.queue  # as an older producer did
        await queue.register(READY, instance=next(iter(sandbox.instances())))
        assert await queue.saq_queue.count("queued") == 1
        async with worker_running(sandbox, redis_url):
            statuses = await answer_until_done(queue, sandbox, [READY])
    assert statuses[READY].status == "connected"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 1}, "concurrency must be at least 2"),
        ({"concurrency": 4, "timed_concurrency": 4}, "timed_concurrency must be from 1 to 3"),
        ({"concurrency": 4, "timed_concurrency": 0}, "timed_concurrency must be from 1 to 3"),
    ],
)
def test_shares_that_leave_a_lane_nothing_are_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        QueueWorker("redis://127.0.0.1:1/0", client_token="x", environ={}, **options)


@pytest.mark.parametrize(("concurrency", "timed"), [(2, 1), (3, 2), (4, 3), (10, 8), (32, 24)])
def test_the_timed_steps_keep_three_quarters_by_default(concurrency: int, timed: int) -> None:
    worker = QueueWorker(
        "redis://127.0.0.1:1/0", concurrency=concurrency, client_token="x", environ={}
    )
    assert worker.timed_concurrency == timed
    assert f"timed_concurrency={timed}" in repr(worker)


def test_a_worker_keeps_its_lateness_from_its_first_step(sandbox: Sandbox) -> None:
    worker = new_worker(sandbox, "redis://127.0.0.1:1/0")
    assert worker.lateness.kinds() == []


# -- Lateness: the counts a worker says with its heartbeat ------------------------------------


def test_lateness_percentiles_are_within_a_bucket_of_the_true_ones() -> None:
    rng = random.Random(3)
    values = [rng.expovariate(1 / 0.05) for _ in range(20_000)]
    lateness = Lateness()
    for value in values:
        lateness.note("request_code", value)
    summary = lateness.summary("request_code")
    ordered = sorted(values)
    for got, share in ((summary.p50, 0.50), (summary.p99, 0.99)):
        true = ordered[math.ceil(share * len(ordered)) - 1]
        assert true <= got <= true * 1.19 + 1e-9, (share, got, true)
    assert summary.max == max(values) and summary.count == len(values)
    assert summary.early == 0


def test_lateness_counts_the_early_apart_and_adds_up_across_workers() -> None:
    one, two = Lateness(), Lateness()
    one.note("check", 0.0)
    one.note("check", -0.5)
    two.note("check", 2.0)
    two.note("confirm_code", 0.004)
    merged = Lateness.merge([one.to_dict(), two.to_dict(), {"x": "not counts"}])
    assert merged.kinds() == ["check", "confirm_code"]
    check = merged.summary("check")
    assert (check.count, check.early, check.max) == (3, 1, 2.0)
    assert check.p50 == 0.0  # on time (or early: counted apart)
    assert 1.68 <= check.p99 <= 2.0
    assert merged.summary("poll_device").count == 0
    assert merged.summary("poll_device").p99 == 0.0
    assert Lateness.from_dict(merged.to_dict()).summaries() == merged.summaries()
    assert "check" in repr(merged)


def test_a_lateness_of_hours_lands_in_the_last_bucket() -> None:
    lateness = Lateness()
    lateness.note("poll_device", 10 * 86_400.0)
    summary = lateness.summary("poll_device")
    assert summary.p50 == summary.max == 10 * 86_400.0


async def test_cancelling_run_lets_the_lanes_finish_their_steps_before_closing(
    sandbox: Sandbox, redis_url: str
) -> None:
    # The check is held 0.5 s at the sandbox; `run` is cancelled meanwhile: the check's
    # answer is still written (the lanes stop gracefully before the pool and Redis close).
    sandbox.hold(CHECK_ROUTE, 0.5, number=digits(READY))
    async with RegistrationQueue(redis_url, environ={}) as queue:
        await queue.register(READY, instance=next(iter(sandbox.instances())))
        worker = new_worker(sandbox, redis_url)
        task = asyncio.create_task(worker.run())
        await until(
            lambda: sandbox.requests(number=digits(READY), route=CHECK_ROUTE), 10, "the check"
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)
        status = await queue.status(READY)
    assert status.status != "check" and status.error is None, (status.status, status.error)
