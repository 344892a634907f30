"""The durable queue when processes die: worker processes (tests/queue_worker.py, real
subprocesses) killed with SIGKILL and stalled with SIGSTOP at exact points of a code request,
two producers racing, Redis killed and restarted, a rate limit shared by four workers.

The API is the sandbox (waits scaled to seconds), in this event loop; codes are read from the
sandbox's code log. The invariant every test checks: the sandbox saw exactly one code request
per channel window of each registration, and every registration reached a final state.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("saq")
from helpers import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN
from redis_server import RedisServer

import plugz_async as pz
from plugz_async.queue import RegistrationQueue
from plugz_async.sandbox import CAPTCHA_TEXT, PIN, Sandbox, SandboxConfig, running
from plugz_async.sandbox._scenarios import mixed_answer

WORKER = Path(__file__).with_name("queue_worker.py")
READY = "+55 11 90000-0001"
CODE_ROUTE = "request-registration-code"
CONFIG = SandboxConfig(
    instance_id=INSTANCE_ID,
    instance_token=INSTANCE_TOKEN,
    client_token=CLIENT_TOKEN,
    instances=12,
    # The waits a code request starts (125 s, 165 s for the channel used) become 12.5 s and
    # 16.5 s: longer than a dead worker's takeover (heartbeat, sweep, lease: about 8 s here),
    # as the real ones are much longer than the default lease (19 s). The server's wait is
    # the proof that a lost request went out; a wait shorter than the takeover would be gone
    # before anyone looked (docs/scale.md says so).
    wait_scale=0.1,
)


def _quick_mixed(count: int) -> list[str]:
    """Undocumented numbers (answered from the sandbox's seeded mix) whose registrations end
    quickly: no initial wait, or not available at all."""
    found = []
    for i in range(1000):
        _name, answer = mixed_answer(f"55119876{i:05d}", CONFIG.seed)
        waits = [
            answer.get(k, 0) for k in ("smsWaitSeconds", "voiceWaitSeconds", "waOldWaitSeconds")
        ]
        if not answer.get("available") or max(waits) == 0:
            found.append(f"+55119876{i:05d}")
        if len(found) == count:
            return found
    raise AssertionError("the mix has too few quick numbers")


MIXED = _quick_mixed(10)


def digits(number: str) -> str:
    return pz.PhoneNumber.parse(number).e164[1:]


class Workers:
    """Worker processes of one test, their logs, and their end."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.env = env
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, fault: str = "", **env: str) -> subprocess.Popen[bytes]:
        log = self.directory / f"worker-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER)],
                env={**self.env, "PLUGZ_TEST_FAULT": fault, **env},
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        self.procs.append((proc, log))
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        for candidate, path in self.procs:
            if candidate is proc:
                return path.read_text(errors="replace")
        raise LookupError(proc)

    def logs(self) -> list[str]:
        return [path.read_text(errors="replace") for _, path in self.procs]

    async def wait_for_exit(self, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            assert time.monotonic() < deadline, self.log(proc)
            await asyncio.sleep(0.05)
        return proc.returncode

    async def wait_for_log(
        self, proc: subprocess.Popen[bytes], text: str, timeout: float = 20.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(proc):
            assert time.monotonic() < deadline, f"{text!r} not in:\n{self.log(proc)}"
            await asyncio.sleep(0.05)

    def stop_all(self) -> list[int | None]:
        """SIGTERM (and SIGCONT, for a stalled one) to every live worker; their exit codes."""
        codes: list[int | None] = []
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc, _ in self.procs:
            try:
                codes.append(proc.wait(timeout=20))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with running(CONFIG) as sb:
        yield sb


@pytest.fixture
def workers(tmp_path: Path, sandbox: Sandbox, redis_url: str) -> Iterator[Workers]:
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps(sandbox.instances()))
    instances.chmod(0o600)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PLUGZ_")},
        "PLUGZ_REDIS_URL": redis_url,
        "PLUGZ_BASE_URL": sandbox.base_url,
        "PLUGZ_CLIENT_TOKEN": sandbox.client_token,
        "PLUGZ_INSTANCES_FILE": str(instances),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    pool = Workers(tmp_path, env)
    yield pool
    pool.stop_all()


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[RegistrationQueue]:
    async with RegistrationQueue(redis_url, environ={}) as q:
        yield q


async def feed_until_done(
    queue: RegistrationQueue, sandbox: Sandbox, numbers: list[str], timeout: float = 60.0
) -> dict[str, Any]:
    """Give each registration what it asks for, until all are done; tolerates Redis being
    away for a moment (the producer's side of a Redis restart)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            statuses = {n: await queue.status(n) for n in numbers}
        except (ConnectionError, OSError) as error:
            last = {"redis": repr(error)}
            await asyncio.sleep(0.2)
            continue
        last = {n: (s.status, s.error) for n, s in statuses.items()}
        if all(s.done for s in statuses.values()):
            return statuses
        for number, status in statuses.items():
            try:
                if status.wants == "code":
                    sent = sandbox.codes(number=digits(number))
                    if sent:
                        await queue.submit_code(number, sent[-1]["code"])
                elif status.wants == "captcha":
                    await queue.submit_captcha(number, CAPTCHA_TEXT)
                elif status.wants == "pin":
                    await queue.submit_pin(number, PIN)
            except pz.RegistrationStateError:
                pass  # it moved on meanwhile
            except (ConnectionError, OSError):
                pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"not done in {timeout} s: {last}")


def code_requests(sandbox: Sandbox, number: str) -> list[dict[str, Any]]:
    return sandbox.requests(number=digits(number), route=CODE_ROUTE)


def windows(status: Any) -> int:
    """Channel windows a registration used: one per channel it asked a code on, plus one per
    "too early" answer (each opens the next window of that channel)."""
    return len({e.channel for e in status.events if e.kind is pz.EventKind.CODE_REQUESTED})


# -- a worker killed before, during and right after the code request -----------------------


WAITS = "+55 11 90000-0002"  # its own waits (30 s for SMS, scaled to 3 s) before the code


@pytest.mark.parametrize(
    ("fault", "number"),
    [
        ("kill-before", READY),
        ("kill-during", READY),
        ("kill-after", READY),
        # A wait in force after a dead run must be the code request's, not the number's
        # own wait: this one had a wait before its code was ever asked for.
        ("kill-before", WAITS),
    ],
)
async def test_a_worker_killed_at_the_code_request_costs_no_second_code(
    fault: str, number: str, sandbox: Sandbox, workers: Workers, queue: RegistrationQueue
) -> None:
    if fault == "kill-during":
        sandbox.hold(CODE_ROUTE, 3.0, number=digits(number))
    victim = workers.start(fault)
    await queue.register(number, instance=INSTANCE_ID)
    assert await workers.wait_for_exit(victim) == -signal.SIGKILL
    assert f"fault {fault}" in workers.log(victim)
    sent_before_takeover = len(code_requests(sandbox, number))
    assert sent_before_takeover == (0 if fault == "kill-before" else 1)

    workers.start()  # another worker takes the registration over
    statuses = await feed_until_done(queue, sandbox, [number])
    status = statuses[number]
    assert status.status == "connected"
    assert len(code_requests(sandbox, number)) == 1
    assert len(sandbox.codes(number=digits(number))) == 1
    requested = [e.message for e in status.events if e.kind is pz.EventKind.CODE_REQUESTED]
    if fault == "kill-before":
        assert requested == ["code sent by sms"]  # the request never left: sent by the survivor
    else:
        # The survivor learnt from the server's new wait that the code went out.
        assert len(requested) == 1 and "the answer was lost" in requested[0]
    assert workers.stop_all()[-1] == 0


# -- a worker stalled past its heartbeat, then woken -------------------------------------------


async def test_a_stalled_worker_woken_after_a_takeover_has_its_late_write_refused(
    sandbox: Sandbox, workers: Workers, queue: RegistrationQueue
) -> None:
    victim = workers.start("stop-after")
    await queue.register(READY, instance=INSTANCE_ID)
    await workers.wait_for_log(victim, "fault stop-after")
    survivor = workers.start()
    statuses = await feed_until_done(queue, sandbox, [READY])
    assert statuses[READY].status == "connected"
    assert victim.poll() is None  # still stalled all along

    victim.send_signal(signal.SIGCONT)
    await workers.wait_for_log(victim, "another run took its step over")
    status = await queue.status(READY)
    assert status.status == "connected" and status.version == statuses[READY].version
    assert len(code_requests(sandbox, READY)) == 1
    assert "another run took its step over" not in workers.log(survivor)
    assert workers.stop_all() == [0, 0]


# -- two producers, three workers ---------------------------------------------------------


PRODUCER = """
import asyncio, sys
from plugz_async.queue import RegistrationQueue

async def main():
    async with RegistrationQueue(sys.argv[1], environ={}) as queue:
        for number, instance in zip(sys.argv[2::2], sys.argv[3::2]):
            await queue.register(number, instance=instance)

asyncio.run(main())
"""


def start_producers(count: int, args: list[str], env: dict[str, str]) -> list[Any]:
    return [
        subprocess.Popen([sys.executable, "-c", PRODUCER, *args], env=env) for _ in range(count)
    ]


async def test_the_same_numbers_from_two_producers_on_three_workers_register_once_each(
    sandbox: Sandbox, workers: Workers, queue: RegistrationQueue, redis_url: str
) -> None:
    for _ in range(3):
        workers.start()
    pairs = [x for n, i in zip(MIXED, list(sandbox.instances())[1:], strict=False) for x in (n, i)]
    producers = start_producers(2, [redis_url, *pairs], workers.env)
    for producer in producers:
        assert await asyncio.to_thread(producer.wait, 30) == 0
    statuses = await feed_until_done(queue, sandbox, MIXED)
    for number, status in statuses.items():
        assert status.done and status.status != "failed", (number, status.error)
        checks = sandbox.requests(number=digits(number), route="registration-available")
        assert len(checks) == 1, number  # one registration, not two
        assert len(code_requests(sandbox, number)) == windows(status), number
    # The work was shared: more than one worker ran steps.
    assert sum("step " in log for log in workers.logs()) >= 2
    assert workers.stop_all() == [0, 0, 0]


# -- Redis killed and restarted mid-run ------------------------------------------------------


async def test_redis_killed_and_restarted_mid_run_loses_nothing_and_sends_no_second_code(
    sandbox: Sandbox,
    workers: Workers,
    queue: RegistrationQueue,
    redis_server: RedisServer,
) -> None:
    for _ in range(3):
        workers.start()
    numbers = [READY, *MIXED[:7]]
    for number, instance in zip(numbers, sandbox.instances(), strict=False):
        await queue.register(number, instance=instance)
    # Once the registrations are under way, Redis dies and comes back (append-only file).
    deadline = time.monotonic() + 10
    while len(sandbox.requests(route="registration-available")) < 4:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    redis_server.kill()
    await asyncio.sleep(1.0)
    redis_server.restart()
    statuses = await feed_until_done(queue, sandbox, numbers, timeout=90)
    for number, status in statuses.items():
        assert status.done and status.status != "failed", (number, status.error)
        assert len(code_requests(sandbox, number)) == windows(status), number
    assert all(code in (0,) for code in workers.stop_all())


# -- a rate limit four workers share ---------------------------------------------------------


async def test_the_per_instance_rate_limit_holds_across_four_workers(
    sandbox: Sandbox, workers: Workers, queue: RegistrationQueue
) -> None:
    for _ in range(4):
        workers.start(PLUGZ_TEST_RATE_LIMIT="2/second", PLUGZ_TEST_CONCURRENCY="4")
    device = "+55 11 90000-0010"  # check, code, confirm, then polls: many requests, one instance
    numbers = [device, READY]
    instances = list(sandbox.instances())[:2]
    for number, instance in zip(numbers, instances, strict=True):
        await queue.register(number, instance=instance)
    statuses = await feed_until_done(queue, sandbox, numbers)
    assert all(s.status == "connected" for s in statuses.values())
    assert len(sandbox.requests(number=None)) >= 8
    for instance in instances:
        times = sorted(
            datetime.fromisoformat(e["time"]).timestamp()
            for e in sandbox.requests()
            if e["instance"] == instance
        )
        assert len(times) >= 3
        # Two requests per second at most: any three are a second apart (less the time
        # between a worker's hit on the limit and the sandbox receiving the request).
        assert all(b - a >= 0.9 for a, b in zip(times, times[2:], strict=False)), times
    ran = [log for log in workers.logs() if "step " in log]
    assert len(ran) >= 2  # the limit was shared, not one worker's own
    assert workers.stop_all() == [0, 0, 0, 0]


# -- a graceful stop ---------------------------------------------------------------------------


async def test_sigterm_lets_the_code_request_in_flight_finish(
    sandbox: Sandbox, workers: Workers, queue: RegistrationQueue
) -> None:
    sandbox.hold(CODE_ROUTE, 1.5, number=digits(READY))
    worker = workers.start()
    await queue.register(READY, instance=INSTANCE_ID)
    deadline = time.monotonic() + 10
    while not code_requests(sandbox, READY):  # the request is on the wire, its answer held
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    worker.terminate()
    assert await workers.wait_for_exit(worker) == 0
    # The step finished before the worker left: its answer was written, nothing is left over.
    status = await queue.status(READY)
    assert status.status == "confirm_code" and status.wants == "code"
    assert status.events[-1].message == "code sent by sms"
    assert "worker stopped" in workers.log(worker)
    workers.start()
    statuses = await feed_until_done(queue, sandbox, [READY])
    assert statuses[READY].status == "connected"
    assert len(code_requests(sandbox, READY)) == 1
