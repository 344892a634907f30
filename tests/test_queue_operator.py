"""What an operator asks of the queue: which workers run it, what is overdue, and how to
cancel a registration without a second code."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

pytest.importorskip("saq")

from test_queue import (  # the queue's own fixtures: a sandbox with scaled waits, a worker
    READY,
    WAITS,
    code_requests,
    digits,
    instances,
    queue,
    sandbox,
    worker_running,
)

import plugz_async as pz
from plugz_async.cli import EXIT_INCOMPLETE, EXIT_OK, main
from plugz_async.cli.queue._parser import OVERDUE_AFTER as CLI_OVERDUE_AFTER
from plugz_async.queue import RegistrationQueue
from plugz_async.queue._status import OVERDUE_AFTER
from plugz_async.sandbox import Sandbox

__all__ = ["instances", "queue", "sandbox"]  # fixtures, used by name


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_workers_are_seen_with_their_host_pid_and_steps_then_stopped(
    sandbox: Sandbox, redis_url: str, queue: RegistrationQueue
) -> None:
    assert await queue.workers() == []
    async with worker_running(sandbox, redis_url):

        async def seen() -> bool:
            return any(w.alive for w in await queue.workers())

        await until(seen)
        (alive,) = await queue.workers()
        assert (alive.host, alive.pid) == (socket.gethostname(), os.getpid())
        assert alive.alive and alive.stopped_at is None and alive.concurrency == 10
        assert alive.started_at is not None and alive.started_at <= alive.last_seen
    (stopped,) = await queue.workers()
    assert stopped.id == alive.id and not stopped.alive and stopped.stopped_at is not None
    assert stopped.running == 0
    assert stopped.to_dict()["stopped_at"] is not None


async def test_a_step_due_long_ago_is_overdue_and_no_worker_is_said(
    queue: RegistrationQueue,
    instances: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
) -> None:
    status = await queue.register(READY, instance=instances[0])  # no worker runs
    assert status.next_at is not None
    assert status.overdue(status.next_at + timedelta(seconds=5)) is None
    assert status.overdue(status.next_at + timedelta(seconds=31)) == pytest.approx(31)
    assert OVERDUE_AFTER == CLI_OVERDUE_AFTER == 30.0
    monkeypatch.setenv("PLUGZ_REDIS_URL", redis_url)
    await asyncio.sleep(0.05)
    code = await asyncio.to_thread(main, ["queue", "status", "--overdue", "0"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "overdue" in out and "no worker has run on this queue" in out
    assert "1 overdue (due more than 0 s ago)" in out
    assert await asyncio.to_thread(main, ["queue", "list", "--stuck", "--overdue", "0"]) == 0
    assert pz.PhoneNumber.parse(READY).e164 in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["queue", "list", "--stuck"]) == EXIT_OK
    assert "no overdue registrations" in capsys.readouterr().out


async def test_a_code_given_while_no_worker_runs_is_kept_and_said(
    sandbox: Sandbox,
    redis_url: str,
    queue: RegistrationQueue,
    instances: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await queue.register(READY, instance=instances[0])
    async with worker_running(sandbox, redis_url):

        async def waits_for_code() -> bool:
            return (await queue.status(READY)).wants == "code"

        await until(waits_for_code)
    monkeypatch.setenv("PLUGZ_REDIS_URL", redis_url)
    code = await asyncio.to_thread(main, ["queue", "code", READY, "123456"])
    err = capsys.readouterr().err
    assert code == EXIT_OK
    assert "accepted, but no worker alive: none seen for" in err


async def test_cancel_with_nothing_in_flight_ends_at_once_and_sends_nothing(
    sandbox: Sandbox, redis_url: str, queue: RegistrationQueue, instances: list[str]
) -> None:
    await queue.register(WAITS, instance=instances[0])
    cancelled = await queue.cancel(WAITS)
    assert cancelled.done and cancelled.cancelled and cancelled.status == "cancelled"
    assert "no further code request" in (cancelled.error or "")
    async with worker_running(sandbox, redis_url):
        await asyncio.sleep(1.5)  # a worker runs the queue: nothing is left to do
    assert sandbox.requests() == []
    with pytest.raises(pz.RegistrationStateError, match="ended already"):
        await queue.cancel(WAITS)
    with pytest.raises(pz.UnknownRegistrationError):
        await queue.cancel("+55 11 90000-0099")


async def test_cancel_with_a_code_request_in_flight_lets_it_end_then_cancels(
    sandbox: Sandbox, redis_url: str, queue: RegistrationQueue, instances: list[str]
) -> None:
    sandbox.hold("request-registration-code", 1.0, number=digits(READY))
    await queue.register(READY, instance=instances[0])
    async with worker_running(sandbox, redis_url):

        async def requested() -> bool:
            return bool(code_requests(sandbox, READY))

        await until(requested)
        asked = await queue.cancel(READY)
        assert not asked.done  # the request in flight ends first

        async def ended() -> bool:
            return (await queue.status(READY)).done

        await until(ended)
        await asyncio.sleep(1.0)  # time for any further step: none may send
    final = await queue.status(READY)
    assert final.cancelled
    (request,) = code_requests(sandbox, READY)  # exactly one code request, and its answer
    assert request["status"] == 200
    assert any(event.kind.value == "code_requested" for event in final.events)


def test_queue_cancel_from_the_command_line(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLUGZ_REDIS_URL", redis_url)
    assert main(["queue", "register", WAITS, "--instance", "instance-z"]) == EXIT_OK
    capsys.readouterr()
    assert main(["queue", "cancel", WAITS]) == EXIT_OK
    assert "is cancelled" in capsys.readouterr().out
    assert main(["queue", "cancel", WAITS]) == EXIT_INCOMPLETE
    assert "ended already (cancelled)" in capsys.readouterr().err


async def test_a_worker_starting_forgets_workers_gone_for_a_day(
    sandbox: Sandbox, redis_url: str, queue: RegistrationQueue
) -> None:
    import json

    from plugz_async.queue._inputs import WORKERS_KEPT

    raw = queue.saq_queue.redis
    old = {"id": "old", "host": "h", "seen": time.time() - WORKERS_KEPT - 60}
    await raw.hset(f"plugz:{queue.name}:workers", "old", json.dumps(old))
    assert [w.id for w in await queue.workers()] == ["old"]
    async with worker_running(sandbox, redis_url):

        async def only_the_new_one() -> bool:
            return [w.alive for w in await queue.workers()] == [True]

        await until(only_the_new_one)
