"""The durable queue against a real redis-server and the sandbox (waits scaled to seconds).

The worker here runs in the test's event loop (`QueueWorker.run` as a task); the tests that
kill and stall worker processes are tests/test_queue_chaos.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import attrs
import pytest

pytest.importorskip("saq")
import redis.asyncio as aioredis
from helpers import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN, a_person

import plugz_async as pz
from plugz_async._registration import RegistrationMachine, RegistrationState
from plugz_async.queue import QueueWorker, RegistrationQueue, RegistrationStatus
from plugz_async.queue._record import CodeIntent
from plugz_async.queue._store import Store
from plugz_async.sandbox import (
    CAPTCHA_TEXT,
    PIN,
    Reply,
    Sandbox,
    SandboxConfig,
    running,
)

CONFIG = SandboxConfig(
    instance_id=INSTANCE_ID,
    instance_token=INSTANCE_TOKEN,
    client_token=CLIENT_TOKEN,
    instances=12,
    wait_scale=0.01,
)

READY = "+55 11 90000-0001"
WAITS = "+55 11 90000-0002"
BANNED = "+55 11 90000-0004"
UNAVAILABLE = "+55 11 90000-0005"
BLOCKED = "+55 11 90000-0007"
CAPTCHA = "+55 11 90000-0008"
PIN_NUMBER = "+55 11 90000-0009"
DEVICE = "+55 11 90000-0010"
GROWING = "+55 11 90000-0012"


def e164(number: str) -> str:
    return pz.PhoneNumber.parse(number).e164


def digits(number: str) -> str:
    return e164(number)[1:]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with running(CONFIG) as sb:
        yield sb


@pytest.fixture
def instances(sandbox: Sandbox) -> list[str]:
    return list(sandbox.instances())


def new_worker(sandbox: Sandbox, redis_url: str, **options: Any) -> QueueWorker:
    settings: dict[str, Any] = {
        "credentials": sandbox.instances(),
        "client_token": sandbox.client_token,
        "base_url": sandbox.base_url,
        "heartbeat": 2,
        "sweep_interval": 1,
        "request_timeout": 2.0,
        "input_timeout": 20.0,
        "device_poll_interval": 0.1,
        "rate_limit": None,
        "environ": {},
    }
    settings.update(options)
    return QueueWorker(redis_url, **settings)


@pytest.fixture
async def worker(sandbox: Sandbox, redis_url: str) -> AsyncIterator[QueueWorker]:
    async with worker_running(sandbox, redis_url) as running_worker:
        yield running_worker


@contextlib.asynccontextmanager
async def worker_running(
    sandbox: Sandbox, redis_url: str, **options: Any
) -> AsyncIterator[QueueWorker]:
    """A worker of these settings, running in this loop for the block, stopped after it."""
    worker = new_worker(sandbox, redis_url, **options)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop()
        await asyncio.wait_for(task, 15)


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[RegistrationQueue]:
    async with RegistrationQueue(redis_url, environ={}) as q:
        yield q


async def answer_until_done(
    queue: RegistrationQueue,
    sandbox: Sandbox,
    numbers: list[str],
    *,
    timeout: float = 30.0,
    give: Callable[[RegistrationStatus], Awaitable[None]] | None = None,
) -> dict[str, RegistrationStatus]:
    """Feed codes (from the sandbox's code log), captcha text and PINs as the registrations
    ask, the way a person or an SMS gateway would, until every one is done."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = {n: await queue.status(n) for n in numbers}
        if all(s.done for s in statuses.values()):
            return statuses
        assert time.monotonic() < deadline, {n: s.status for n, s in statuses.items()}
        for number, status in statuses.items():
            if give is not None:
                await give(status)
            elif status.wants == "code":
                sent = sandbox.codes(number=digits(number))
                if sent:
                    await queue.submit_code(number, sent[-1]["code"])
            elif status.wants == "captcha":
                assert status.captcha is not None and status.captcha.startswith(b"\x89PNG")
                assert status.to_dict()["captcha"].startswith("data:image/png;base64,")
                await queue.submit_captcha(number, CAPTCHA_TEXT)
            elif status.wants == "pin":
                await queue.submit_pin(number, PIN)
        await asyncio.sleep(0.1)


def code_requests(sandbox: Sandbox, number: str) -> list[dict[str, Any]]:
    return [
        e
        for e in sandbox.requests()
        if e["route"] == "request-registration-code" and e["number"] == digits(number)
    ]


# -- every ending, through the queue ---------------------------------------------------------


async def test_every_scenario_reaches_its_ending_through_the_queue(
    sandbox: Sandbox, worker: QueueWorker, queue: RegistrationQueue, instances: list[str]
) -> None:
    expected = {
        READY: "connected",
        WAITS: "connected",
        BANNED: "appeal",
        UNAVAILABLE: "unavailable",
        BLOCKED: "blocked_at_code_request",
        CAPTCHA: "connected",
        PIN_NUMBER: "connected",
        DEVICE: "connected",
        GROWING: "connected",
    }
    numbers = list(expected)
    for number, instance in zip(numbers, instances, strict=False):
        status = await queue.register(number, instance=instance)
        assert status.instance == instance and not status.done
    statuses = await answer_until_done(queue, sandbox, numbers)
    assert {n: s.status for n, s in statuses.items()} == expected
    for number, status in statuses.items():
        assert status.outcome is not None and status.outcome.value == expected[number]
        assert status.events[-1].kind is pz.EventKind.FINISHED
        assert status.next_at is None and status.wants is None
    # One code request per number that got that far, none answered "too early".
    for number in (READY, WAITS, CAPTCHA, PIN_NUMBER, DEVICE, GROWING):
        requests = code_requests(sandbox, number)
        assert len(requests) == 1, number
        assert requests[0]["status"] == 200
    assert statuses[BANNED].appeal_token is not None
    assert await queue.counts() == {
        "appeal": 1,
        "blocked_at_code_request": 1,
        "connected": 6,
        "unavailable": 1,
    }


async def test_a_code_request_waits_for_its_channel_never_early(
    sandbox: Sandbox, worker: QueueWorker, queue: RegistrationQueue, instances: list[str]
) -> None:
    await queue.register(WAITS, instance=instances[0])
    checked_at = time.time()
    statuses = await answer_until_done(queue, sandbox, [WAITS])
    assert statuses[WAITS].status == "connected"
    (request,) = code_requests(sandbox, WAITS)
    answer = request["answer"]
    assert answer is None or "retryAfter" not in str(answer) or request["status"] == 200
    # The waits number's SMS waits 30 s, scaled to 0.3 s and reported as 1 s.
    sent_at = pz.SystemClock().now().fromisoformat(request["time"]).timestamp()
    assert sent_at >= checked_at + 1.0


async def test_the_same_number_twice_is_one_registration(
    sandbox: Sandbox, worker: QueueWorker, queue: RegistrationQueue, instances: list[str]
) -> None:
    first = await queue.register(READY, instance=instances[0])
    again = await asyncio.gather(*(queue.register(READY, instance=instances[0]) for _ in range(5)))
    assert {s.number for s in again} == {first.number}
    assert all(s.instance == instances[0] for s in again)
    statuses = await answer_until_done(queue, sandbox, [READY])
    assert statuses[READY].status == "connected"
    checks = [e for e in sandbox.requests() if e["route"] == "registration-available"]
    assert len(checks) == 1
    # Registered again once finished: the same one, unless a restart is asked for.
    again_done = await queue.register(READY, instance=instances[0])
    assert again_done.done and again_done.version == statuses[READY].version
    restarted = await queue.register(READY, instance=instances[0], restart=True)
    assert not restarted.done and restarted.version > statuses[READY].version


async def test_one_number_per_instance_at_a_time(
    queue: RegistrationQueue, instances: list[str]
) -> None:
    await queue.register(READY, instance=instances[0])
    with pytest.raises(pz.InstanceBusyError, match="is registering \\+5511900000001") as caught:
        await queue.register(WAITS, instance=instances[0])
    assert caught.value.instance == instances[0]
    with pytest.raises(pz.UnknownRegistrationError):
        await queue.status(WAITS)
    assert await queue.counts() == {"check": 1}


async def test_bad_input_is_refused_before_anything_is_written(
    queue: RegistrationQueue, instances: list[str], redis_url: str
) -> None:
    with pytest.raises(pz.InvalidPhoneNumber):
        await queue.register("+55 11 9", instance=instances[0])
    with pytest.raises(pz.ConfigurationError, match="name the instance"):
        await queue.register(READY)
    with pytest.raises(pz.UnknownRegistrationError):
        await queue.submit_code(READY, "123456")
    await queue.register(READY, instance=instances[0])
    with pytest.raises(pz.InvalidArgument, match="the code must be 4 to 8 digits"):
        await queue.submit_code(READY, "12ab")
    with pytest.raises(pz.InvalidArgument, match="the PIN must be 6 digits"):
        await queue.submit_pin(READY, "12")
    with pytest.raises(pz.RegistrationStateError, match="does not wait for a pin"):
        await queue.submit_pin(READY, "123456")
    with pytest.raises(pz.RegistrationStateError, match="does not wait for a code"):
        await queue.submit_code(READY, "123456")  # still at the check, no code asked yet
    r = aioredis.from_url(redis_url)
    try:
        assert await r.keys("plugz:plugz:input:*") == []
    finally:
        await r.aclose()


async def test_a_code_that_never_comes_moves_to_the_next_channel(
    sandbox: Sandbox, redis_url: str, queue: RegistrationQueue, instances: list[str]
) -> None:
    async with worker_running(sandbox, redis_url, input_timeout=0.3):
        await queue.register(READY, instance=instances[0])

        async def never(status: RegistrationStatus) -> None:
            return None

        statuses = await answer_until_done(queue, sandbox, [READY], give=never, timeout=40)
    status = statuses[READY]
    assert status.status == "no_code"
    timeouts = [e for e in status.events if e.kind is pz.EventKind.CODE_TIMEOUT]
    # The ready number is not eligible for wa_old: SMS, then voice, then no channel left.
    assert [e.channel for e in timeouts] == [pz.Channel.SMS, pz.Channel.VOICE]
    assert len(code_requests(sandbox, READY)) == 2  # one per channel window


async def test_a_wrong_code_is_asked_again_then_the_right_one_connects(
    sandbox: Sandbox, worker: QueueWorker, queue: RegistrationQueue, instances: list[str]
) -> None:
    await queue.register(READY, instance=instances[0])
    given: list[str] = []

    async def wrong_then_right(status: RegistrationStatus) -> None:
        if status.wants == "code" and len(given) == len(
            [e for e in status.events if e.kind is pz.EventKind.CODE_REJECTED]
        ):
            code = "000000" if not given else sandbox.codes(number=digits(READY))[-1]["code"]
            given.append(code)
            await queue.submit_code(READY, code)

    statuses = await answer_until_done(queue, sandbox, [READY], give=wrong_then_right)
    assert statuses[READY].status == "connected"
    assert [e.message for e in statuses[READY].events].count("wrong code") == 1


async def test_status_counts_and_events_follow_the_registrations(
    sandbox: Sandbox, worker: QueueWorker, queue: RegistrationQueue, instances: list[str]
) -> None:
    seen: list[tuple[str, str]] = []

    async def follow() -> None:
        async for item in queue.events(after="0", timeout=5.0):
            seen.append((item.number, item.event.kind.value))
            if item.event.kind is pz.EventKind.FINISHED:
                return

    following = asyncio.create_task(follow())
    await queue.register(BANNED, instance=instances[0])
    await asyncio.wait_for(following, 10)
    assert seen == [(e164(BANNED), k) for k in ("checked", "planned", "finished")]
    status = await queue.status(BANNED)
    assert status.to_dict()["outcome"] == "appeal"
    assert [s.number for s in await queue.statuses()] == [e164(BANNED)]
    assert await queue.statuses(offset=1) == []
    assert repr(queue) == "RegistrationQueue(queue='plugz')"


async def test_request_unbanning_follows_an_appeal(
    sandbox: Sandbox, worker: QueueWorker, queue: RegistrationQueue, instances: list[str]
) -> None:
    await queue.register(BANNED, instance=instances[0])
    await answer_until_done(queue, sandbox, [BANNED])
    async with sandbox.new_client(instance=instances[0]) as client:
        answer = await queue.request_unbanning(
            BANNED, "my number was banned by mistake", client=client
        )
        assert answer.success
        await queue.register(READY, instance=instances[1])
        with pytest.raises(pz.RegistrationStateError, match="did not end banned"):
            await queue.request_unbanning(READY, "no", client=client)


# -- errors: waited out, or the registration given up ------------------------------------


async def test_an_outage_is_waited_out(
    sandbox: Sandbox, worker: QueueWorker, queue: RegistrationQueue, instances: list[str]
) -> None:
    sandbox.outage()
    await queue.register(READY, instance=instances[0])
    # However long a busy machine takes to get there: the step met the outage, said so,
    # and keeps the registration (the deadline only ends a test that went wrong).
    deadline = time.monotonic() + 60
    while (status := await queue.status(READY)).error is None:
        assert time.monotonic() < deadline, "the step never met the outage"
        await asyncio.sleep(0.05)
    assert not status.done and "503" in status.error
    sandbox.end_outage()
    statuses = await answer_until_done(queue, sandbox, [READY])
    assert statuses[READY].status == "connected" and statuses[READY].error is None


async def test_a_refused_client_token_holds_the_registrations_without_showing_it(
    sandbox: Sandbox, redis_url: str, queue: RegistrationQueue, instances: list[str]
) -> None:
    # The worker's configuration, not the registration's fault: it waits for a worker with
    # the right token (a minute at a time) instead of ending failed.
    wrong = "ct-WRONG-secret-7f3a"
    async with worker_running(sandbox, redis_url, client_token=wrong):
        await queue.register(READY, instance=instances[0])
        deadline = time.monotonic() + 10
        while (status := await queue.status(READY)).error is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    assert not status.done and status.status == "check"
    assert status.error is not None and "AuthenticationError" in status.error
    assert wrong not in status.error and wrong not in repr(status)
    assert status.next_at is not None
    assert status.next_at.timestamp() > time.time() + 50  # the next try, a minute on
    # A worker with the right token takes it from there once its time comes.
    assert await queue.counts() == {"check": 1}


async def test_a_worker_without_the_instance_token_retries_then_gives_up_clearly(
    sandbox: Sandbox, redis_url: str, queue: RegistrationQueue, instances: list[str]
) -> None:
    # Another worker may hold the token (or it is being rolled out): not given up at once.
    async with worker_running(sandbox, redis_url, credentials={}, max_errors=2):
        await queue.register(READY, instance=instances[0])
        await asyncio.sleep(0.5)
        status = await queue.status(READY)
        assert not status.done and status.error is not None
        assert "no token for instance" in status.error
        statuses = await answer_until_done(queue, sandbox, [READY])
    error = statuses[READY].error
    assert statuses[READY].status == "failed"
    assert error is not None
    assert "no token for instance" in error


# -- secrets ---------------------------------------------------------------------------------


async def test_no_token_reaches_redis_or_the_logs(
    sandbox: Sandbox,
    worker: QueueWorker,
    queue: RegistrationQueue,
    instances: list[str],
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    numbers = [READY, CAPTCHA, PIN_NUMBER, BANNED]
    for number, instance in zip(numbers, instances, strict=False):
        await queue.register(number, instance=instance)
    await answer_until_done(queue, sandbox, numbers)
    secrets = [CLIENT_TOKEN, *sandbox.instances().values()]
    r = aioredis.from_url(redis_url)
    try:
        dump = []
        for key in await r.keys("*"):
            kind = (await r.type(key)).decode()
            if kind == "string":
                dump.append(await r.get(key))
            elif kind == "hash":
                dump.append(repr(await cast(Any, r.hgetall(key))).encode())
            elif kind in ("list",):
                dump.append(repr(await cast(Any, r.lrange(key, 0, -1))).encode())
            elif kind == "zset":
                dump.append(repr(await r.zrange(key, 0, -1)).encode())
            elif kind == "stream":
                dump.append(repr(await r.xrange(key)).encode())
            dump.append(key)
        everything = b"\n".join(d for d in dump if d)
    finally:
        await r.aclose()
    assert b"+5511900000008" in everything  # the dump did read the registrations
    for secret in secrets:
        assert secret.encode() not in everything, secret
        assert secret not in caplog.text
        assert secret not in repr(worker)


def test_the_worker_needs_a_redis_url_and_a_client_token() -> None:
    with pytest.raises(pz.ConfigurationError, match="PLUGZ_REDIS_URL"):
        QueueWorker(environ={})
    with pytest.raises(pz.ConfigurationError, match="redis://"):
        QueueWorker("http://localhost", environ={})
    with pytest.raises(pz.ConfigurationError, match="PLUGZ_CLIENT_TOKEN"):
        QueueWorker("redis://127.0.0.1:1/0", environ={})
    with pytest.raises(pz.InvalidArgument, match="concurrency"):
        QueueWorker("redis://127.0.0.1:1/0", concurrency=0, client_token="x", environ={})
    worker = QueueWorker(
        environ={"PLUGZ_REDIS_URL": "redis://127.0.0.1:1/0", "PLUGZ_CLIENT_TOKEN": "x"}
    )
    assert worker.redis_url == "redis://127.0.0.1:1/0"


async def test_a_code_request_the_server_refused_is_not_sent_again_blindly(
    sandbox: Sandbox, redis_url: str, queue: RegistrationQueue, instances: list[str]
) -> None:
    # A 400 answer: certainly not acted on, and it will not pass: given up at once (it
    # used to be kept as "maybe sent" and sent again after every lease).
    sandbox.then(Reply(400, json={"error": "Bad Request"}), route="request-registration-code")
    async with worker_running(sandbox, redis_url):
        await queue.register(READY, instance=instances[0])
        statuses = await answer_until_done(queue, sandbox, [READY])
    assert statuses[READY].status == "failed"
    assert len(code_requests(sandbox, READY)) == 1


async def test_a_503_at_the_code_request_is_tried_again_and_sends_one_code(
    sandbox: Sandbox, worker: QueueWorker, queue: RegistrationQueue, instances: list[str]
) -> None:
    # 503 (by HTTP, not handled) is retried by the client itself while the request's time
    # lasts; three of them outlast it, and the step is tried again a second later.
    sandbox.then(*[Reply(503, body="busy")] * 3, route="request-registration-code")
    await queue.register(READY, instance=instances[0])
    statuses = await answer_until_done(queue, sandbox, [READY])
    assert statuses[READY].status == "connected"
    answered = [e["status"] for e in code_requests(sandbox, READY)]
    assert answered.count(200) == 1 and len(sandbox.codes(number=digits(READY))) == 1


async def test_a_worker_asked_to_stop_before_it_runs_stops_at_once(
    sandbox: Sandbox, redis_url: str
) -> None:
    worker = new_worker(sandbox, redis_url)
    task = asyncio.create_task(worker.run())
    await worker.stop()
    await asyncio.wait_for(task, 5)
    again = new_worker(sandbox, redis_url, handle_signals=False)
    await again.stop()
    await asyncio.wait_for(again.run(), 5)


@pytest.mark.parametrize("rate", ["0/second", "5/second;10/minute", "fast", "-1/second"])
def test_a_rate_limit_that_cannot_work_is_refused_at_once(rate: str) -> None:
    with pytest.raises(pz.InvalidArgument, match="rate limit must read like"):
        QueueWorker("redis://127.0.0.1:1/0", client_token="x", rate_limit=rate, environ={})


async def test_prune_forgets_finished_registrations_and_only_them(
    sandbox: Sandbox, worker: QueueWorker, queue: RegistrationQueue, instances: list[str]
) -> None:
    await queue.register(BANNED, instance=instances[0])  # ends at the check: appeal
    await answer_until_done(queue, sandbox, [BANNED])
    await queue.register(READY, instance=instances[1])  # waits for its code: unfinished
    assert await queue.prune(older_than=3600) == 0  # finished, but not that long ago
    assert await queue.prune(older_than=0) == 1
    with pytest.raises(pz.UnknownRegistrationError):
        await queue.status(BANNED)
    assert [s.number for s in await queue.statuses()] == [e164(READY)]
    assert "appeal" not in await queue.counts()
    # Registered again after it was forgotten: a new registration, not the old one.
    again = await queue.register(BANNED, instance=instances[0])
    assert again.version == 1
    with pytest.raises(pz.InvalidArgument, match="0 or more"):
        await queue.prune(older_than=-1)
    statuses = await answer_until_done(queue, sandbox, [READY, BANNED])
    assert statuses[READY].status == "connected"
    assert await queue.prune(older_than=0) == 2
    assert await queue.counts() == {}


# -- a dead run's code request, looked at again ------------------------------------------------


async def dead_run_intent(sandbox: Sandbox, redis_url: str, number: str, age: float | None) -> None:
    """Leave ``number``'s registration as a run that died ``age`` seconds after writing its
    code request's intent (its lease long over) would: checked, planned, intent written.
    ``age`` None: no intent, and the record written under another run of Redis (restored
    from a snapshot taken before its code request)."""
    redis = aioredis.from_url(redis_url)
    try:
        store = Store(redis, queue="plugz")
        record = await store.load(e164(number))
        assert record is not None
        machine = RegistrationMachine(planner=pz.RegistrationPlanner())
        state = RegistrationState.from_dict(record.state)
        async with sandbox.new_client() as client:  # the dead run's check
            state = machine.checked(state, await client.check_availability(number))
        if age is None:
            await store.write(record, state)
            await cast(
                "Awaitable[int]",
                redis.hset(store.key(f"reg:{e164(number)}"), "run", "an-earlier-run"),
            )
            return
        at = await store.server_time()
        intent = CodeIntent(
            id="dead-run", channel="sms", lease_until=at - age + 1.0, written_at=at - age
        )
        await store.write(record, state, intent=intent)
    finally:
        await redis.aclose()


async def test_a_record_from_before_a_redis_restart_is_checked_even_after_a_failed_try(
    redis_url: str, queue: RegistrationQueue
) -> None:
    """The check a record from another run of Redis needs is not skipped because the first
    try of it failed (a retry writes the record again, and must not stamp it as checked)."""
    # Waits of 25 s and 33 s: still in force when the step is tried again.
    async with running(attrs.evolve(CONFIG, wait_scale=0.2)) as sandbox:
        await _checked_after_a_failed_try(sandbox, redis_url, queue)


async def _checked_after_a_failed_try(
    sandbox: Sandbox, redis_url: str, queue: RegistrationQueue
) -> None:
    await queue.register(READY, instance=INSTANCE_ID)  # no worker yet: it waits
    await dead_run_intent(sandbox, redis_url, READY, None)
    async with sandbox.new_client() as client:  # the code that went out before the restart
        assert (await client.request_code(READY, pz.Channel.SMS)).success
    # The first check after the restart fails, attempts and all; the step is tried again.
    sandbox.then(*[Reply(503, body="busy")] * 4, route="registration-available")
    async with worker_running(sandbox, redis_url):
        deadline = time.monotonic() + 15
        while (status := await queue.status(READY)).status != "confirm_code":
            assert time.monotonic() < deadline, (status.status, status.error)
            await asyncio.sleep(0.05)
    assert len(code_requests(sandbox, READY)) == 1  # the one from before: no second
    assert "the answer was lost" in status.events[-1].message


@pytest.mark.parametrize(
    ("age", "requests", "said"),
    [
        # Looked at well inside the shortest wait (60 s): no wait means never sent.
        (5.0, 1, "code sent by sms"),
        # Looked at later than any wait it started could last: cannot tell; no second code.
        (
            100.0,
            0,
            "code treated as sent by sms: a run that died left no answer, and the check 100 s",
        ),
    ],
)
async def test_a_dead_runs_code_request_with_no_wait_in_force(
    age: float,
    requests: int,
    said: str,
    sandbox: Sandbox,
    redis_url: str,
    queue: RegistrationQueue,
    instances: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await queue.register(READY, instance=instances[0])  # no worker yet: it waits
    await dead_run_intent(sandbox, redis_url, READY, age)
    async with worker_running(sandbox, redis_url):
        deadline = time.monotonic() + 10
        while (status := await queue.status(READY)).status != "confirm_code":
            assert time.monotonic() < deadline, status.status
            await asyncio.sleep(0.05)
    assert len(code_requests(sandbox, READY)) == requests
    assert status.wants == "code"
    assert status.events[-1].message.startswith(said), status.events[-1].message
    if requests == 0:
        assert "treated as sent, no second code" in caplog.text


async def test_a_wait_shorter_than_the_floor_lowers_it_and_says_so(
    sandbox: Sandbox,
    redis_url: str,
    queue: RegistrationQueue,
    instances: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The sandbox's waits here are 2 s (scaled by 0.01), far below the floor of 60 s.
    async with worker_running(sandbox, redis_url):
        await queue.register(READY, instance=instances[0])
        await answer_until_done(queue, sandbox, [READY])
    redis = aioredis.from_url(redis_url)
    try:
        assert await Store(redis, queue="plugz").code_wait_floor(60.0) == 2.0
    finally:
        await redis.aclose()
    assert "started a wait of only 2 s on sms, shorter than the code_wait_floor of 60 s" in (
        caplog.text
    )


@pytest.mark.parametrize(
    "settings",
    [{"heartbeat": 30}, {"code_wait_floor": 20.0}, {"request_timeout": 60.0}],
)
def test_a_worker_that_would_look_again_too_late_refuses_to_start(
    settings: dict[str, Any],
) -> None:
    with pytest.raises(pz.ConfigurationError, match="too close to code_wait_floor"):
        QueueWorker("redis://127.0.0.1:1/0", client_token="x", environ={}, **settings)
    worker = QueueWorker("redis://127.0.0.1:1/0", client_token="x", environ={})
    assert worker.recheck_within == 19 + 5 + 10 + 1 + 1  # lease, heartbeat, sweep, grace, engine
    assert worker.recheck_within <= worker.code_wait_floor - 2


class StallingClock(pz.SystemClock):
    """The real clocks, but the monotonic one can jump ahead: a stall of the process."""

    def __init__(self) -> None:
        self.stalled = 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self.stalled


async def test_a_code_request_that_ended_past_its_lease_after_a_takeover_is_an_error_logged(
    sandbox: Sandbox,
    redis_url: str,
    queue: RegistrationQueue,
    instances: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first premise broken on purpose: the run stalls on the way back from the wire
    for longer than its lease, while another run settles the step. Its answer is refused,
    and the log says plainly that a second code may have gone out."""
    clock = StallingClock()
    redis = aioredis.from_url(redis_url)
    store = Store(redis, queue="plugz")

    async def stall(route: str, send: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
        answer = await send()
        if route.endswith("request-registration-code"):
            clock.stalled += 60.0
            record = await store.load(e164(READY))
            assert record is not None and record.intent is not None
            await store.write(record, RegistrationState.from_dict(record.state), step_id="other")
        return answer

    try:
        async with worker_running(sandbox, redis_url, clock=clock, middlewares=[stall]):
            await queue.register(READY, instance=instances[0])
            deadline = time.monotonic() + 10
            while "may have been sent two codes" not in caplog.text:
                assert time.monotonic() < deadline, caplog.text
                await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
    assert "past its lease of 6 s, and another run had taken the step over" in caplog.text


# -- one table of actions, two runners --------------------------------------------------------


async def test_the_driver_and_the_queue_run_the_same_table_of_actions(
    sandbox: Sandbox,
    queue: RegistrationQueue,
    redis_url: str,
    instances: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every step either runner takes goes through ``ACTIONS``: a change to the table (here,
    a wrapper that records the step) is seen by the in-process driver and by the queue's
    worker alike, step for step."""
    from plugz_async._registration import ACTIONS, Action, RegistrationStep

    taken: dict[str, list[tuple[str, RegistrationStep]]] = {"driver": [], "queue": []}
    runner = "driver"

    def recording(step: RegistrationStep, action: Action) -> Action:
        async def wrapped(context: Any, state: RegistrationState, given: str | None) -> Any:
            taken[runner].append((state.number.e164, step))
            return await action(context, state, given)

        return wrapped

    for step, action in list(ACTIONS.items()):
        monkeypatch.setitem(
            cast("dict[RegistrationStep, Action]", ACTIONS), step, recording(step, action)
        )

    numbers = [CAPTCHA, PIN_NUMBER, DEVICE]
    async with pz.PlugzClient(
        sandbox.instance_id, sandbox.instance_token, sandbox.client_token, base_url=sandbox.base_url
    ) as client:
        for number in numbers:

            async def code(channel: pz.Channel, number: str = number) -> str:
                return str(sandbox.codes(number=digits(number))[-1]["code"])

            result = await client.registration(number).run(**a_person(code))
            assert result.connected, number

    runner = "queue"
    async with worker_running(sandbox, redis_url):
        for number, instance in zip(numbers, instances[1:], strict=False):
            await queue.register(number, instance=instance)
        statuses = await answer_until_done(queue, sandbox, numbers)
    assert {s.status for s in statuses.values()} == {"connected"}

    def steps_of(which: str, number: str) -> list[RegistrationStep]:
        return [step for n, step in taken[which] if n == e164(number)]

    for number in numbers:
        assert steps_of("driver", number) == steps_of("queue", number), number
    assert {step for _, step in taken["queue"]} == set(ACTIONS)  # every action, both runners


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"base_url": "api.plugzapi.com.br"}, "base_url"),
        ({"client_token": "two words"}, "client_token must not contain spaces"),
        ({"request_timeout": 0}, "timeout must be a positive number"),
    ],
)
def test_a_worker_refuses_a_bad_client_setting_as_it_is_made(
    redis_url: str, setting: dict[str, Any], message: str
) -> None:
    """Not at each instance's first step, where it would fail every registration in turn."""
    settings: dict[str, Any] = {"client_token": "ct", "credentials": {}, "environ": {}}
    with pytest.raises(pz.ConfigurationError, match=message):
        QueueWorker(redis_url, **{**settings, **setting})


async def test_a_step_that_sends_nothing_needs_no_client() -> None:
    """No input came, or a transfer is to be polled: the action sends nothing, so the
    runner asks for no instance token and no place in the rate limit."""
    from plugz_async.queue._steps import StepRunner

    async def no_token(instance: str) -> pz.PlugzClient:
        raise AssertionError(f"asked for the client of {instance}")

    runner = StepRunner(
        store=cast("Store", None),
        scheduler=cast("Any", None),
        machine=RegistrationMachine(planner=pz.RegistrationPlanner()),
        client_for=no_token,
    )
    context = await runner._context(cast("Any", None), sending=False)
    with pytest.raises(RuntimeError, match="sends nothing"):
        _ = context.client


def test_a_stored_plan_is_shown_as_it_stands_now() -> None:
    from plugz_async._models import decode_availability
    from plugz_async.queue._status import plan_as_it_stands

    clock = pz.FakeClock()
    number = pz.PhoneNumber.parse(WAITS)

    def planned(**wire: Any) -> pz.RegistrationPlan:
        availability = decode_availability(
            wire, number=number, observed_at=clock.now(), observed_monotonic=clock.monotonic()
        )
        plan = pz.RegistrationPlanner(clock=clock).plan(availability)
        return pz.RegistrationPlan.from_dict(plan.to_dict(), clock=clock)  # as Redis keeps it

    waiting = planned(available=True, smsWaitSeconds=30, voiceWaitSeconds=90)
    banned = planned(available=False, blocked=True, appealToken="Ae0B_x")
    assert plan_as_it_stands(waiting) is waiting and waiting.outcome is pz.PlanOutcome.WAIT
    clock.advance(31)
    now = plan_as_it_stands(waiting)
    assert now is not None and now.outcome is pz.PlanOutcome.READY
    assert now.windows == waiting.windows
    assert plan_as_it_stands(banned) is banned and plan_as_it_stands(None) is None
