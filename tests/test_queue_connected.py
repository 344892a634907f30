"""The queue confirms "connected" against the instance, as the in-process driver does: real
redis-server, the sandbox (waits scaled), a worker in this event loop, and the command line
that shows what the instance said."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import datetime, timezone
from typing import cast

import pytest

pytest.importorskip("saq")

from test_queue import (  # the queue's own fixtures: a sandbox with scaled waits, a worker
    DEVICE,
    READY,
    answer_until_done,
    code_requests,
    digits,
    e164,
    instances,
    queue,
    sandbox,
    worker_running,
)

import plugz_async as pz
from plugz_async._registration import RegistrationMachine
from plugz_async.cli import EXIT_OK, main
from plugz_async.cli._render import connected_text, registration_facts, statuses_table
from plugz_async.queue import QueueWorker, RegistrationQueue, RegistrationStatus
from plugz_async.sandbox import CONFIRMATION_CODE, Sandbox

__all__ = ["instances", "queue", "sandbox"]  # fixtures, used by name

NEVER = "+55 11 90000-0013"
RESTORE = "You need to restore the session."
# Asked for half a second, every tenth: the registrations end quickly on the real clock.
QUICK = {"connected_timeout": 0.5, "connected_poll_interval": 0.1}


def status_requests(sandbox: Sandbox, instance: str) -> list[dict[str, object]]:
    return [e for e in sandbox.requests(route="status") if e["instance"] == instance]


async def test_the_worker_ends_an_instance_that_never_connects_not_connected(
    sandbox: Sandbox,
    redis_url: str,
    queue: RegistrationQueue,
    instances: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with worker_running(sandbox, redis_url, **QUICK):
        await queue.register(NEVER, instance=instances[0])
        await queue.register(READY, instance=instances[1])
        statuses = await answer_until_done(queue, sandbox, [NEVER, READY])
    never, ready = statuses[NEVER], statuses[READY]
    assert never.done and never.status == "not_connected"
    assert never.outcome is pz.RegistrationOutcome.NOT_CONNECTED
    assert never.instance_error == RESTORE and never.error is None  # an ending, not a failure
    assert [e.kind.value for e in never.events][-4:] == [
        "code_requested",
        "code_confirmed",
        "instance_not_connected",
        "finished",
    ]
    assert never.events[-2].message == f"the instance is not connected after 0.5 s: {RESTORE}"
    data = never.to_dict()
    assert data["instance_error"] == RESTORE and data["outcome"] == "not_connected"
    # It only asked: one code, however many times the status was asked.
    assert len(code_requests(sandbox, NEVER)) == 1
    # Asked before its deadline and once past it, at least; never more often than the
    # poll interval allows (QUICK: every 0.1 s for 0.5 s).
    assert 2 <= len(status_requests(sandbox, instances[0])) <= 8
    assert ready.status == "connected" and ready.instance_error is None
    assert [e.kind.value for e in ready.events][-2:] == ["instance_connected", "finished"]
    assert len(status_requests(sandbox, instances[1])) == 1
    assert await queue.counts() == {"connected": 1, "not_connected": 1}

    # The command line shows it: one registration's facts and JSON, and the table of all.
    monkeypatch.setenv("PLUGZ_REDIS_URL", redis_url)
    assert await asyncio.to_thread(main, ["queue", "status", NEVER]) == EXIT_OK
    out = " ".join(capsys.readouterr().out.split())
    assert f"Connected no: {RESTORE}" in out and "instance_not_connected" in out
    assert await asyncio.to_thread(main, ["queue", "status", NEVER, "--json"]) == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "not_connected" and shown["instance_error"] == RESTORE
    assert await asyncio.to_thread(main, ["queue", "status", READY]) == EXIT_OK
    assert "Connected yes" in " ".join(capsys.readouterr().out.split())
    assert await asyncio.to_thread(main, ["queue", "status"]) == EXIT_OK
    listed = " ".join(capsys.readouterr().out.split())
    assert f"the instance says: {RESTORE}" in listed and "not_connected" in listed


async def test_a_record_of_the_previous_version_goes_on_to_the_status_check(
    sandbox: Sandbox, redis_url: str, queue: RegistrationQueue, instances: list[str]
) -> None:
    """A registration stored by the version before this one (its state without the status
    check's fields), polling a transfer: a worker of this version loads it, sees the transfer
    approved, and asks the instance before it ends connected."""
    instance = instances[0]
    await queue.register(DEVICE, instance=instance)  # no worker yet: it waits at the check
    # The sandbox's side of the flow, as the previous version's worker left it.
    async with sandbox.new_client(instance=instance) as client:
        await client.check_availability(DEVICE)
        await client.request_code(DEVICE, "sms")
        assert (await client.confirm_code(CONFIRMATION_CODE)).needs_device_confirmation
    machine = RegistrationMachine(planner=pz.RegistrationPlanner())
    state = pz.RegistrationState(
        number=pz.PhoneNumber.parse(DEVICE), step=pz.RegistrationStep.CONFIRM_DEVICE
    )
    old = machine.device_approved(state).to_dict()
    del old["connected_deadline"], old["instance_error"]
    store = queue._store
    written = store.redis.hset(store.key(f"reg:{e164(DEVICE)}"), "state", json.dumps(old))
    await cast("Awaitable[int]", written)
    assert (await queue.status(DEVICE)).step is pz.RegistrationStep.POLL_DEVICE
    async with worker_running(sandbox, redis_url, **QUICK):
        statuses = await answer_until_done(queue, sandbox, [DEVICE])
    done = statuses[DEVICE]
    assert done.status == "connected" and done.instance_error is None
    assert [e.kind.value for e in done.events][-3:] == [
        "device_confirmed",
        "instance_connected",
        "finished",
    ]
    assert [e["number"] for e in code_requests(sandbox, DEVICE)] == [digits(DEVICE)]


def test_the_connected_fact_says_what_the_instance_said() -> None:
    def status(step: str, outcome: str | None, error: str | None) -> RegistrationStatus:
        return RegistrationStatus(
            number="+5511900000013",
            line="+5511900000013",
            instance="i-1",
            status=outcome or step,
            done=outcome is not None,
            outcome=None if outcome is None else pz.RegistrationOutcome(outcome),
            step=pz.RegistrationStep(step),
            channel="sms",
            wants=None,
            next_at=None,
            plan=None,
            instance_error=error,
        )

    cases = {
        ("confirm_connected", None, None): "asking the instance",
        ("confirm_connected", None, "You are not connected."): "not yet: You are not connected.",
        ("done", "not_connected", RESTORE): f"no: {RESTORE}",
        ("done", "not_connected", None): "no (the instance gave no reason)",
        ("done", "connected", None): "yes",
    }
    for (step, outcome, error), said in cases.items():
        shown = connected_text(status(step, outcome, error))
        assert shown is not None and shown.plain == said
    assert connected_text(status("confirm_code", None, None)) is None
    assert connected_text(status("done", "no_code", None)) is None
    now = datetime.now(timezone.utc)
    waiting = status("confirm_connected", None, "You are not connected.")
    assert registration_facts(waiting, now, 30.0) is not None
    assert statuses_table([waiting], now, overdue=30.0) is not None


def test_the_worker_command_passes_the_status_settings(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugz_async.cli import build_parser
    from plugz_async.cli._app import App
    from plugz_async.cli.queue._redis import redis_target
    from plugz_async.cli.queue._worker import _queue_worker

    monkeypatch.setenv("PLUGZ_CLIENT_TOKEN", "ct")
    monkeypatch.setenv("PLUGZ_INSTANCE_ID", "i-1")
    monkeypatch.setenv("PLUGZ_INSTANCE_TOKEN", "t-1")
    parser = build_parser()

    def worker_of(*options: str) -> QueueWorker:
        args = parser.parse_args(["worker", "--redis-url", redis_url, *options])
        app = App(args, pz.FakeClock())
        made, _ = _queue_worker(app, redis_target(app), pz.RegistrationPlanner())
        return made

    default = worker_of()
    assert default.machine.connected_timeout == 5.0 and default.connected_poll_interval == 1.0
    chosen = worker_of("--connected-timeout", "0", "--connected-poll-interval", "0.25")
    assert chosen.machine.connected_timeout == 0.0 and chosen.connected_poll_interval == 0.25
    for wrong in (["--connected-timeout", "-1"], ["--connected-poll-interval", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["worker", *wrong])


def test_the_worker_refuses_a_poll_interval_of_nothing(redis_url: str) -> None:
    settings: dict[str, object] = {"client_token": "ct", "credentials": {}, "environ": {}}
    with pytest.raises(pz.InvalidArgument, match="connected_poll_interval must be more than 0"):
        QueueWorker(redis_url, connected_poll_interval=0, **settings)  # type: ignore[arg-type]
    with pytest.raises(pz.InvalidArgument, match="connected_timeout must be 0 or more"):
        QueueWorker(redis_url, connected_timeout=-1.0, **settings)  # type: ignore[arg-type]
    unasked = QueueWorker(redis_url, connected_timeout=None, **settings)  # type: ignore[arg-type]
    assert unasked.machine.connected_timeout is None
