"""One line, one registration, in the durable queue: the two forms of a Brazilian mobile
(``+55 44 9999-9999`` and ``+55 44 99999-9999``) are one registration, on a real
redis-server; and the records the previous version wrote (keyed by the number as written)
keep working.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

pytest.importorskip("saq")
import redis.asyncio as aioredis
from test_dashboard import served
from test_queue import CONFIG, new_worker, worker_running
from test_queue import queue as queue  # the fixtures: a queue, the sandbox
from test_queue import sandbox as sandbox
from test_queue_cli import env as env  # the fixture
from test_queue_cli import run

import plugz_async as pz
from plugz_async._registration import ACTIONS, RegistrationMachine, RegistrationState, StepContext
from plugz_async.cli import EXIT_INCOMPLETE, EXIT_OK
from plugz_async.queue import QueueWorker, RegistrationQueue
from plugz_async.queue._record import CodeIntent
from plugz_async.queue._store import Store
from plugz_async.sandbox import CONFIRMATION_CODE, Sandbox, SandboxConfig, running
from plugz_async.sandbox._scenarios import mixed_answer

OLD = "+55 44 9999-9999"
NEW = "+55 44 99999-9999"


def digits(number: str) -> str:
    return pz.PhoneNumber.parse(number).e164[1:]


def line_requests(sandbox: Sandbox, number: str, route: str) -> list[dict[str, Any]]:
    """The requests of ``route`` the sandbox saw for ``number``'s line, in either form."""
    forms = {form.e164[1:] for form in pz.PhoneNumber.parse(number).forms}
    return [e for e in sandbox.requests() if e["route"] == route and e["number"] in forms]


# -- one line, two forms -----------------------------------------------------------------


async def test_the_other_form_on_another_instance_is_refused_naming_the_first(
    queue: RegistrationQueue,
) -> None:
    first = await queue.register(OLD, instance="A")
    assert (first.number, first.line) == ("+554499999999", "+5544999999999")
    with pytest.raises(pz.RegistrationStateError) as caught:
        await queue.register(NEW, instance="B")
    assert str(caught.value) == (
        "+5544999999999 is the same line as +554499999999, which is queued on instance"
        " 'A', not 'B' (it is check): nothing new was started; cancel it first to move it"
    )
    # Nothing was written for the refused one: the instance is free, one record in all.
    assert await queue.size() == 1
    assert await queue.counts() == {"check": 1}
    await queue.register("+55 44 98888-7777", instance="B")


async def test_the_other_form_on_the_same_instance_is_the_same_registration(
    queue: RegistrationQueue,
) -> None:
    first = await queue.register(NEW, instance="A")
    again = await queue.register(OLD, instance="A")
    assert again.number == first.number == "+5544999999999"
    assert again.version == first.version
    # Either form finds it, and every input goes to it.
    for form in (OLD, NEW, "55 44 9999-9999"):
        assert (await pz.queue.RegistrationQueue.status(queue, form)).number == "+5544999999999"
    cancelled = await queue.cancel(OLD)
    assert cancelled.status == "cancelled" and cancelled.number == "+5544999999999"


async def test_a_landline_and_its_nine_prefixed_mobile_stay_two_lines(
    queue: RegistrationQueue,
) -> None:
    await queue.register("+55 44 3222-2222", instance="A")
    await queue.register("+55 44 93222-2222", instance="B")
    assert await queue.size() == 2


async def test_a_restart_in_the_other_form_starts_the_line_afresh(
    queue: RegistrationQueue,
) -> None:
    first = await queue.register(OLD, instance="A")
    await queue.cancel(OLD)
    kept = await queue.register(NEW, instance="A")
    assert kept.status == "cancelled" and kept.number == first.number
    restarted = await queue.register(NEW, instance="A", restart=True)
    assert not restarted.done and restarted.number == "+5544999999999"
    assert restarted.version > kept.version
    assert await queue.size() == 1


# -- two processes, two forms, two instances, at the same moment ---------------------------

RACER = """
import asyncio, json, sys
import redis.asyncio as aioredis
from plugz_async import RegistrationStateError
from plugz_async.queue import RegistrationQueue

async def main():
    url, me, other, pairs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    said = []
    barrier = aioredis.from_url(url)
    async with RegistrationQueue(url, environ={}) as queue:
        await queue.size()  # connected before the first round
        for i, (number, instance) in enumerate(zip(pairs[::2], pairs[1::2])):
            # A barrier a round: each racer says it is there, and waits for the other.
            await barrier.rpush(f"race:{other}:{i}", 1)
            assert await barrier.blpop([f"race:{me}:{i}"], timeout=30)
            try:
                await queue.register(number, instance=instance)
                said.append("accepted")
            except RegistrationStateError:
                said.append("refused")
    await barrier.aclose()
    print(json.dumps(said))

asyncio.run(main())
"""

ROUNDS = 24


def start_racers(redis_url: str, *pairs: list[str]) -> list[subprocess.Popen[str]]:
    """Two processes, each with a list of (number, instance) pairs, that register their
    pairs of round i together (a barrier in Redis a round)."""
    names = ["a", "b"]
    return [
        subprocess.Popen(
            [sys.executable, "-c", RACER, redis_url, me, other, *each],
            stdout=subprocess.PIPE,
            text=True,
        )
        for me, other, each in zip(names, reversed(names), pairs, strict=True)
    ]


def ready_lines(count: int) -> list[tuple[str, str]]:
    """Lines whose two forms the sandbox's seeded mix answers ready, with no wait."""
    found = []
    for i in range(2000):
        old = f"554498{i:06d}"
        new = old[:4] + "9" + old[4:]
        answers = [mixed_answer(d, CONFIG.seed)[1] for d in (old, new)]
        waits = [a.get(k, 0) for a in answers for k in ("smsWaitSeconds", "voiceWaitSeconds")]
        if all(a.get("available") for a in answers) and max(waits) == 0:
            found.append(("+" + old, "+" + new))
        if len(found) == count:
            return found
    raise AssertionError("the mix has too few ready lines")


async def test_two_processes_registering_the_two_forms_at_once_register_the_line_once(
    redis_url: str, queue: RegistrationQueue
) -> None:
    sandbox_config = SandboxConfig(
        instance_id=CONFIG.instance_id,
        instance_token=CONFIG.instance_token,
        client_token=CONFIG.client_token,
        instances=2 * ROUNDS,
        wait_scale=CONFIG.wait_scale,
    )
    lines = ready_lines(ROUNDS)
    async with running(sandbox_config) as sandbox:
        names = list(sandbox.instances())
        # Round i: one process registers the old form on one instance, the other the
        # current form on another, both at the same moment.
        old_pairs = [x for i, (old, _) in enumerate(lines) for x in (old, names[2 * i])]
        new_pairs = [x for i, (_, new) in enumerate(lines) for x in (new, names[2 * i + 1])]
        racers = start_racers(redis_url, old_pairs, new_pairs)
        said = [json.loads((await asyncio.to_thread(r.communicate, None, 60))[0]) for r in racers]
        assert [r.returncode for r in racers] == [0, 0]
        for i in range(ROUNDS):
            assert sorted([said[0][i], said[1][i]]) == ["accepted", "refused"], lines[i]
        assert await queue.size() == ROUNDS
        # A worker runs them: one availability check and one code request a line.
        async with worker_running(sandbox, redis_url):
            deadline = time.monotonic() + 30
            while True:  # until every line's code is sent
                statuses = [await queue.status(old) for old, _ in lines]
                if all(status.wants == "code" for status in statuses):
                    break
                assert time.monotonic() < deadline, [s.status for s in statuses]
                await asyncio.sleep(0.1)
        for old, new in lines:
            status = await queue.status(new)
            assert status.number in (old, new)
            checks = line_requests(sandbox, old, "registration-available")
            codes = line_requests(sandbox, old, "request-registration-code")
            assert (len(checks), len(codes)) == (1, 1), (old, checks, codes)
            assert codes[0]["number"] == status.number[1:]  # sent as first written


# -- records the previous version wrote ----------------------------------------------------

PREVIOUS = Path(__file__).with_name("data") / "previous_queue.json"
#: What tests/data/make_previous_queue.py registered with version 0.1.0 (see there).
WAITING = "+55 44 9999-9999"  # old form, waits for its code on instance A
ENDED = "+55 21 8765-4321"  # old form, ended (appeal) on A-2
CURRENT = "+55 41 99876-5432"  # current form, waits for its code on A-3
QUEUED = "+55 31 7654-3210"  # old form, queued on A-4, not yet run


def _value(value: Any) -> bytes:
    if isinstance(value, dict):
        return base64.b64decode(value["base64"])
    return str(value).encode()


async def restore_previous(redis_url: str) -> dict[str, Any]:
    """Put back, in the emptied Redis, every key the previous version left."""
    dump: dict[str, Any] = json.loads(PREVIOUS.read_text())
    redis: Any = aioredis.from_url(redis_url)  # redis-py's stubs type its replies loosely
    try:
        for entry in dump["keys"]:
            key, kind, value = _value(entry["key"]), entry["type"], entry["value"]
            if kind == "hash":
                await redis.hset(key, mapping={_value(k): _value(v) for k, v in value.items()})
            elif kind == "zset":
                await redis.zadd(key, {_value(m): s for m, s in value})
            elif kind == "string":
                await redis.set(key, _value(value))
            elif kind == "list":
                await redis.rpush(key, *[_value(v) for v in value])
            elif kind == "stream":
                for entry_id, fields in value:
                    await redis.xadd(
                        key, {_value(k): _value(v) for k, v in fields.items()}, entry_id
                    )
            if entry["pttl"] > 0:
                await redis.pexpire(key, entry["pttl"])
    finally:
        await redis.aclose()
    return dump


PREVIOUS_CONFIG = SandboxConfig(
    instance_id="A",
    instance_token="t" * 32,
    client_token="c" * 32,
    instances=4,
    wait_scale=0.001,
)


async def test_records_the_previous_version_wrote_are_found_by_either_form(
    redis_url: str, queue: RegistrationQueue
) -> None:
    dump = await restore_previous(redis_url)
    assert dump["version"] == "0.1.0"
    waiting = await queue.status(WAITING)
    assert (waiting.number, waiting.line, waiting.instance) == (
        "+554499999999",
        "+554499999999",  # kept where the previous version put it
        "A",
    )
    assert waiting.wants == "code"
    assert await queue.status("+55 44 99999-9999") == waiting
    assert (await queue.status("+55 21 98765-4321")).status == "appeal"
    assert (await queue.status(CURRENT)).number == "+5541998765432"
    # The other form, on another instance, is refused naming the first; on its own
    # instance it is the same registration.
    with pytest.raises(
        pz.RegistrationStateError,
        match=r"same line as \+554499999999, which is queued on instance 'A'",
    ):
        await queue.register("+55 44 99999-9999", instance="A-2")
    assert await queue.register("+55 44 99999-9999", instance="A") == waiting
    # A finished one, started afresh in the other form: under its line now, the old gone.
    restarted = await queue.register("+55 21 98765-4321", instance="A-2", restart=True)
    assert (restarted.number, restarted.line) == ("+5521987654321", "+5521987654321")
    assert "+552187654321" not in await queue._store.numbers()
    assert await queue.counts() == {"check": 2, "confirm_code": 2}  # the appeal is gone
    # The dashboard finds a record by the form it was not written in.
    async with (
        served(queue) as base,
        aiohttp.ClientSession() as http,
        http.get(base + "api/registrations/+5544999999999") as answer,
    ):
        assert answer.status == 200
        assert (await answer.json())["number"] == "+554499999999"


async def test_a_worker_of_this_version_finishes_what_the_previous_one_started(
    redis_url: str, queue: RegistrationQueue
) -> None:
    await restore_previous(redis_url)
    async with running(PREVIOUS_CONFIG) as sandbox:
        # The server remembers what the previous version's worker asked of it.
        async with pz.PlugzClient(
            "A", sandbox.instances()["A"], sandbox.client_token, base_url=sandbox.base_url
        ) as client:
            await client.check_availability(WAITING)
            await client.request_code(WAITING, "sms")
        worker: QueueWorker = new_worker(sandbox, redis_url)
        task = asyncio.create_task(worker.run())
        try:
            # The code comes, given in the form the record was not written in.
            await queue.submit_code("+55 44 99999-9999", CONFIRMATION_CODE)
            deadline = time.monotonic() + 20
            while True:
                waiting, queued = await queue.status(WAITING), await queue.status(QUEUED)
                if waiting.done and queued.wants == "code":
                    break
                assert time.monotonic() < deadline, (waiting.status, queued.status)
                await asyncio.sleep(0.1)
        finally:
            await worker.stop()
            await asyncio.wait_for(task, 15)
        assert waiting.status == "connected" and waiting.number == "+554499999999"
        # The one not yet run was checked and asked for a code once, as it was written.
        assert queued.number == "+553176543210"
        codes = line_requests(sandbox, QUEUED, "request-registration-code")
        assert [c["number"] for c in codes] == ["553176543210"]


# -- the command line ----------------------------------------------------------------------


def test_queue_register_refuses_the_other_form_naming_the_first(
    capsys: pytest.CaptureFixture[str], env: str
) -> None:
    assert run(capsys, "queue", "register", OLD, "--instance", "A")[0] == EXIT_OK
    code, out, err = run(capsys, "queue", "register", NEW, "--instance", "B")
    assert code == EXIT_INCOMPLETE
    assert "same line as +554499999999, which is queued on instance 'A'" in " ".join(err.split())
    code, out, _ = run(capsys, "queue", "register", NEW, "--instance", "A")
    assert code == EXIT_OK
    assert "already queued as +554499999999, the same line" in " ".join(out.split())
    code, out, _ = run(capsys, "queue", "register", NEW, "--instance", "A", "--json")
    assert json.loads(out)["rows"][0]["same_line_as_queued"] is True
    # Two forms of one line on one command line are one number.
    code, out, _ = run(capsys, "queue", "register", OLD, NEW, "--instance", "A")
    assert code == EXIT_OK
    code, out, _ = run(capsys, "queue", "status", NEW)
    assert code == EXIT_OK
    assert "+554499999999" in out and "+5544999999999 (the current form of this line)" in out


async def test_a_worker_sends_the_number_as_queued_or_with_its_ninth_digit(
    redis_url: str, queue: RegistrationQueue, sandbox: Sandbox
) -> None:
    names = list(sandbox.instances())
    await queue.register(OLD, instance=names[0])
    async with worker_running(sandbox, redis_url):
        await checked(queue, OLD)
    await queue.register("+55 44 8888-7777", instance=names[1])
    async with worker_running(sandbox, redis_url, canonical_numbers=True):
        await checked(queue, "+55 44 8888-7777")
    sent = [
        line_requests(sandbox, number, "registration-available")[0]["number"]
        for number in (OLD, "+55 44 8888-7777")
    ]
    assert sent == ["554499999999", "5544988887777"]
    status = await queue.status("+55 44 8888-7777")
    assert status.number == "+554488887777"  # the registration keeps it as queued


async def checked(queue: RegistrationQueue, number: str) -> None:
    """Until the registration of ``number`` is past its availability check."""
    deadline = time.monotonic() + 20
    while (status := await queue.status(number)).step.value == "check":
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.05)


def test_a_worker_refuses_a_canonical_setting_that_is_neither_true_nor_false() -> None:
    with pytest.raises(pz.ConfigurationError, match="PLUGZ_CANONICAL_NUMBERS must be true"):
        QueueWorker(
            "redis://127.0.0.1:1/0",
            client_token="c" * 32,
            credentials={"A": "t" * 32},
            environ={"PLUGZ_CANONICAL_NUMBERS": "maybe"},
        )
    worker = QueueWorker(
        "redis://127.0.0.1:1/0",
        client_token="c" * 32,
        credentials={"A": "t" * 32},
        environ={"PLUGZ_CANONICAL_NUMBERS": "yes"},
    )
    assert worker.canonical_numbers


def test_queue_register_notes_an_old_form_once(
    capsys: pytest.CaptureFixture[str], env: str, tmp_path: Path
) -> None:
    numbers = tmp_path / "numbers.csv"
    numbers.write_text(
        "number,instance\n+55 44 9999-9999,A\n+55 44 8888-7777,B\n+55 44 99777-6666,C\n"
        "+55 44 9999-9999,A\n"  # the same line again: no other number
    )
    code, _, err = run(capsys, "queue", "register", str(numbers))
    assert code == EXIT_OK
    said = " ".join(err.split())
    assert said.count("note:") == 1
    assert (
        "+554499999999 is the old 8-digit form of +5544999999999 (Brazil's ninth digit): the"
        " same line; 1 more number of this run is an old form too; queued as written, and the"
        " workers send it so (plugz-async worker --canonical-numbers sends the form with the"
        " ninth digit)"
    ) in said


# -- the form a registration is sent in, kept across workers --------------------------------


async def test_a_worker_set_otherwise_that_takes_a_dead_run_over_sends_no_second_code(
    redis_url: str, queue: RegistrationQueue
) -> None:
    """The code went out in the old form, then its run died; the worker that takes the step
    over sends numbers with their ninth digit. It must ask about the form the code went in
    (the wait it started is there), not its own: else it sees no wait and sends again."""
    old, _new = ready_lines(1)[0]
    # Waits of 25 s and more: still in force when the step is looked at again.
    async with running(attrs.evolve(CONFIG, wait_scale=0.2)) as sandbox:
        name = next(iter(sandbox.instances()))
        await queue.register(old, instance=name)
        redis: Any = aioredis.from_url(redis_url)
        try:
            store = Store(redis, queue="plugz")
            record = await store.find(pz.PhoneNumber.parse(old))
            assert record is not None
            machine = RegistrationMachine(planner=pz.RegistrationPlanner())
            state = RegistrationState.from_dict(record.state)
            async with sandbox.new_client() as client:  # the dead run, sending as written
                context = StepContext(machine, client)
                state = await ACTIONS[state.step](context, state, None)
                assert state.canonical is False and state.step.value == "request_code"
                await client.request_code(old, pz.Channel.SMS)  # its request went out
            at = await store.server_time()
            intent = CodeIntent(id="dead-run", channel="sms", lease_until=at - 4, written_at=at - 5)
            await store.write(record, state, intent=intent)
        finally:
            await redis.aclose()
        async with worker_running(sandbox, redis_url, canonical_numbers=True):
            deadline = time.monotonic() + 15
            while (status := await queue.status(old)).status != "confirm_code":
                assert time.monotonic() < deadline, (status.status, status.error)
                await asyncio.sleep(0.05)
        codes = line_requests(sandbox, old, "request-registration-code")
        checks = line_requests(sandbox, old, "registration-available")
        assert [c["number"] for c in codes] == [digits(old)]  # one code, no second
        assert {c["number"] for c in checks} == {digits(old)}  # every check in its form


async def test_a_registration_checked_as_written_sends_its_code_as_written(
    sandbox: Sandbox,
) -> None:
    """One form for every request of a registration: the one its check went in."""
    old, _new = ready_lines(1)[0]
    machine = RegistrationMachine(planner=pz.RegistrationPlanner())
    state = machine.start(pz.PhoneNumber.parse(old))
    async with sandbox.new_client() as as_written:
        state = await ACTIONS[state.step](StepContext(machine, as_written), state, None)
    async with sandbox.new_client(canonical_numbers=True) as canonical:
        state = await ACTIONS[state.step](StepContext(machine, canonical), state, None)
    assert state.step.value == "confirm_code"
    sent = [
        e["number"]
        for e in sandbox.requests()
        if e["route"] in ("registration-available", "request-registration-code")
    ]
    assert sent == [digits(old), digits(old)]
    # A state stored before the form was kept was sent as written, once checked.
    stored = state.to_dict()
    del stored["canonical"]
    assert RegistrationState.from_dict(stored).canonical is False


# -- two records of one line, left by 0.1.0 --------------------------------------------------


async def test_two_records_of_one_line_from_0_1_0_each_stay_reachable(
    redis_url: str, queue: RegistrationQueue
) -> None:
    """0.1.0 could queue both forms of a line: the unfinished one is found, and of two
    unfinished ones the one under the form asked for."""
    await restore_previous(redis_url)
    redis: Any = aioredis.from_url(redis_url)
    try:
        old_key, line_key = "plugz:plugz:reg:+554499999999", "plugz:plugz:reg:+5544999999999"
        copy = await redis.hgetall(old_key)
        state = json.loads(copy[b"state"])
        state.update(number="+5544999999999", phone="44999999999")
        copy.update({b"state": json.dumps(state).encode(), b"instance": b"A-9"})
        await redis.hset(line_key, mapping=copy)
        await redis.zadd("plugz:plugz:numbers", {"+5544999999999": 1.0})
    finally:
        await redis.aclose()
    assert (await queue.status("+55 44 9999-9999")).instance == "A"
    assert (await queue.status("+55 44 99999-9999")).instance == "A-9"
    cancelled = await queue.cancel("+55 44 9999-9999")
    assert (cancelled.instance, cancelled.status) == ("A", "cancelled")
    # Now the unfinished one is found by either form.
    assert (await queue.status("+55 44 9999-9999")).instance == "A-9"
    assert (await queue.cancel("+55 44 9999-9999")).instance == "A-9"
    # Both ended: the one under the form asked for.
    assert (await queue.status("+55 44 9999-9999")).instance == "A"
