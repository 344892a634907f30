"""The sandbox's many instances, and its held answers (the server acted, the answer is late).

Real loopback HTTP throughout. Held answers are held 0.05 to 0.2 s; a hold that would
last longer is ended (or the sandbox stopped) by the test, so little real time passes.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from helpers import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN

import plugz_async as pz
from plugz_async.cli import main
from plugz_async.sandbox import (
    SANDBOX_ROUTES,
    Sandbox,
    SandboxConfig,
    SandboxState,
    SandboxThread,
    running,
)
from plugz_async.sandbox._routes import path_of
from plugz_async.sandbox._scenarios import mixed_answer

READY = "+55 11 90000-0001"
WAITS = "+55 11 90000-0002"
CODE_ROUTE = "request-registration-code"
MANY = SandboxConfig(
    instance_id=INSTANCE_ID,
    instance_token=INSTANCE_TOKEN,
    client_token=CLIENT_TOKEN,
    instances=4,
    random_codes=True,  # a different code for each number: a mix-up shows
)


def ready_numbers(count: int) -> list[str]:
    """Numbers of the mix that are ready (every channel open now), one per instance."""
    found = []
    for n in range(1000):
        number = f"+55 31 9{n:04d}-0000"
        if mixed_answer(f"55319{n:04d}0000", seed=0)[0] == "ready":
            found.append(number)
        if len(found) == count:
            return found
    raise AssertionError("the mix has too few ready numbers")


async def raw_call(
    base_url: str, instance: str, token: str, route: str, body: Any
) -> tuple[int, Any]:
    """A request as any HTTP client sends it, for any instance and token."""
    from urllib.parse import quote

    path = f"/instances/{quote(instance, safe='')}/token/{quote(token, safe='')}/{path_of(route)}"
    headers = {"Client-Token": CLIENT_TOKEN}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            SANDBOX_ROUTES[route], base_url + path, json=body, headers=headers
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


async def control(sb: Sandbox, method: str, what: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{sb.base_url}/_sandbox/{what}", json=body) as response,
    ):
        return response.status, await response.json()


async def until(condition: Any, seconds: float = 5.0) -> None:
    """Wait (briefly, in small steps) until ``condition()`` is true."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


@pytest.fixture
async def many() -> AsyncIterator[Sandbox]:
    async with running(MANY, clock=pz.FakeClock(), timeout=5.0) as sandbox:
        yield sandbox


# -- many instances ----------------------------------------------------------------------------


def test_instances_are_numbered_after_the_test_instance() -> None:
    state = SandboxState(MANY)
    assert state.instances == {
        INSTANCE_ID: INSTANCE_TOKEN,
        f"{INSTANCE_ID}-2": f"{INSTANCE_TOKEN}-2",
        f"{INSTANCE_ID}-3": f"{INSTANCE_TOKEN}-3",
        f"{INSTANCE_ID}-4": f"{INSTANCE_TOKEN}-4",
    }
    assert SandboxState(SandboxConfig()).instances == {"sandbox-instance": "sandbox-instance-token"}


@pytest.mark.parametrize(
    ("instances", "error"), [(0, ValueError), (-1, ValueError), ("2", TypeError)]
)
def test_instances_are_checked(instances: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        SandboxConfig(instances=instances)


def test_ten_thousand_instances_keep_only_their_tokens() -> None:
    state = SandboxState(SandboxConfig(instances=10_000))
    assert len(state.instances) == 10_000
    assert state.knows_instance("sandbox-instance-10000", "sandbox-instance-token-10000")
    assert not state.knows_instance("sandbox-instance-10001", "sandbox-instance-token-10001")
    assert state.registration_count() == 0 and state.registration("sandbox-instance-9") is None


async def test_instances_on_both_handles_and_the_info_route(many: Sandbox) -> None:
    expected = SandboxState(MANY).instances
    assert many.instances() == expected
    assert list(many.instances()) == list(expected)  # the test instance first, in order
    _, info = await control(many, "GET", "")
    assert info["instances"] == 4
    assert {"POST hold", "DELETE hold", "GET codes"} <= set(info["control"])
    with SandboxThread(SandboxConfig(instances=3)) as sandbox:
        assert sandbox.instances() == {
            "sandbox-instance": "sandbox-instance-token",
            "sandbox-instance-2": "sandbox-instance-token-2",
            "sandbox-instance-3": "sandbox-instance-token-3",
        }
    with pytest.raises(RuntimeError, match="not running"):
        sandbox.instances()


async def test_each_instance_registers_its_own_number_at_the_same_time(many: Sandbox) -> None:
    ids = list(many.instances())
    numbers = dict(zip(ids, ready_numbers(len(ids)), strict=True))
    clients = {i: many.new_client(instance=i, clock=pz.FakeClock(), timeout=5.0) for i in ids}
    try:

        async def ask(instance: str) -> pz.CodeRequest:
            client = clients[instance]
            assert (await client.check_availability(numbers[instance])).available
            return await client.request_code(numbers[instance], "sms")

        asked = await asyncio.gather(*(ask(i) for i in ids))
        assert all(request.success for request in asked)
        sent = {i: many.state.codes(number=numbers[i]) for i in ids}
        assert all(len(codes) == 1 and codes[0]["instance"] == i for i, codes in sent.items())
        code = {i: codes[0]["code"] for i, codes in sent.items()}
        assert len(set(code.values())) == len(ids)

        # Another instance's code is wrong here: each instance confirms its own number.
        wrong = await asyncio.gather(
            *(clients[i].confirm_code(code[ids[(k + 1) % len(ids)]]) for k, i in enumerate(ids))
        )
        assert not any(confirmation.success for confirmation in wrong)
        right = await asyncio.gather(*(clients[i].confirm_code(code[i]) for i in ids))
        assert all(confirmation.success for confirmation in right)
    finally:
        for client in clients.values():
            await client.aclose()
    by_instance = {i: {e["number"] for e in many.requests() if e["instance"] == i} for i in ids}
    assert by_instance == {i: {numbers[i].replace(" ", "").replace("-", "")[1:], None} for i in ids}


async def test_each_instance_has_its_own_token(many: Sandbox) -> None:
    second, third = f"{INSTANCE_ID}-2", f"{INSTANCE_TOKEN}-3"
    body = {"ddi": "55", "phone": "11900000001"}
    refused = (200, {"error": "NOT_FOUND", "message": "Instance not found"})
    for token in (INSTANCE_TOKEN, third, "wrong"):
        assert await raw_call(many.base_url, second, token, "registration-available", body) == (
            refused
        )
    status, answer = await raw_call(
        many.base_url, second, f"{INSTANCE_TOKEN}-2", "registration-available", body
    )
    assert status == 200 and answer["available"] is True
    assert [e["auth"] for e in many.requests()] == ["unknown-instance"] * 3 + ["ok"]
    # Past the last instance there is none.
    assert (
        await raw_call(
            many.base_url, f"{INSTANCE_ID}-5", f"{INSTANCE_TOKEN}-5", "registration-available", body
        )
        == refused
    )
    async with pz.PlugzClient(
        second, third, CLIENT_TOKEN, base_url=many.base_url, clock=pz.FakeClock()
    ) as client:
        with pytest.raises(pz.InstanceNotFoundError):
            await client.check_availability(READY)
    with pytest.raises(ValueError, match="no instance"):
        many.new_client(instance=f"{INSTANCE_ID}-5")


def test_the_sandbox_command_serves_as_many_instances_as_asked() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "plugz_async", "sandbox", "--port", "0", "--instances", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        base_url = first.split()[3]
        lines: list[str] = []  # the banner, to its last line (the codes)
        while not lines or not lines[-1].startswith("A registration here takes"):
            line = process.stdout.readline()
            assert line, "the banner ended early:\n" + "".join(lines)
            lines.append(line)
        banner = " ".join("".join(lines).split())  # as wide as the output is (COLUMNS)
        assert "Serving 20 instances: the one above, and sandbox-instance-i for i from 2" in banner
        printed = "".join(lines)
        assert "sandbox-instance-token" in printed  # the documented test token, only it
        assert "sandbox-instance-token-" not in printed

        async def check() -> pz.Availability:
            async with pz.PlugzClient(
                "sandbox-instance-20",
                "sandbox-instance-token-20",
                "sandbox-client-token",
                base_url=base_url,
            ) as client:
                return await client.check_availability(READY)

        assert asyncio.run(check()).available
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    assert process.returncode == 0


@pytest.mark.parametrize("given", ["0", "-3", "many"])
def test_the_sandbox_command_refuses_a_bad_instance_count(
    given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sandbox", "--instances", given])
    assert exit_info.value.code == 2 and "--instances" in capsys.readouterr().err


# -- held answers ------------------------------------------------------------------------------


async def test_a_held_code_request_is_acted_on_before_its_answer_goes(api: Sandbox) -> None:
    async with api.new_client(clock=pz.FakeClock(), timeout=5.0) as client:
        await client.check_availability(READY)
        api.hold(CODE_ROUTE, 0.2)
        started = time.monotonic()
        task = asyncio.create_task(client.request_code(READY, "sms"))
        await api.wait_for_requests(2)
        # The request is in the log and its code was sent; the answer has not gone yet.
        [entry] = api.requests(route=CODE_ROUTE)
        assert entry["status"] is None and entry["held"] == 0.2
        assert [c["code"] for c in api.state.codes(number=READY)] == ["123456"]
        assert not task.done()
        answer = await task
        assert answer.success and time.monotonic() - started >= 0.15
        assert api.requests(route=CODE_ROUTE)[0]["status"] == 200


async def test_a_client_gone_while_its_answer_is_held(api: Sandbox) -> None:
    async with api.new_client(clock=pz.FakeClock(), timeout=5.0) as client:
        await client.check_availability(READY)
        api.hold(CODE_ROUTE, 0.1)
        task = asyncio.create_task(client.request_code(READY, "sms"))
        await api.wait_for_requests(2)
        task.cancel()  # a client killed with its request on the wire
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(api.state.codes(number=READY)) == 1  # the server acted all the same
    await until(lambda: api.requests(route=CODE_ROUTE)[0]["status"] is not None)
    # Asking again: the waits that request started are in force.
    async with api.new_client(clock=pz.FakeClock(), timeout=5.0) as client:
        assert (await client.check_availability(READY)).sms_wait_seconds > 100


async def test_holds_count_their_times_and_match_their_number(api: Sandbox) -> None:
    async with api.new_client(clock=pz.FakeClock(), timeout=5.0) as client:
        api.hold("registration-available", 0.05, number=WAITS, times=2)
        for number in (READY, WAITS, READY, WAITS, WAITS):
            await client.check_availability(number)
    held = [(e["number"][-1], e["held"]) for e in api.requests()]
    assert held == [("1", None), ("2", 0.05), ("1", None), ("2", 0.05), ("2", None)]


async def test_reset_and_end_holds_forget_holds_and_let_held_answers_go(api: Sandbox) -> None:
    async with api.new_client(clock=pz.FakeClock(), timeout=5.0) as client:
        for end in (api.reset, api.end_holds):
            api.hold("registration-available", 30.0, times=2)
            task = asyncio.create_task(client.check_availability(READY))
            await until(lambda: bool(api.requests()) and api.requests()[-1]["held"] == 30.0)
            end()
            assert (await asyncio.wait_for(task, 5)).available  # sent at once
            await client.check_availability(READY)  # the hold's second time was forgotten
            assert api.requests()[-1]["held"] is None


async def test_a_hold_applies_to_the_routes_answer_only(api: Sandbox) -> None:
    api.hold("registration-available", 30.0)
    body = {"ddi": "55", "phone": "11900000001"}
    # A refused request is answered at once, and does not use the hold.
    assert (await raw_call(api.base_url, INSTANCE_ID, "wrong", "registration-available", body))[
        0
    ] == 200
    assert api.requests()[-1]["held"] is None
    api.end_holds()


async def test_stopping_the_sandbox_cuts_a_held_answer_short() -> None:
    with SandboxThread() as sandbox:
        sandbox.hold("registration-available", 30.0)
        async with sandbox.new_client(clock=pz.FakeClock(), timeout=5.0) as client:
            task = asyncio.create_task(client.check_availability(READY))
            await until(lambda: bool(sandbox.requests()))
            assert sandbox.requests()[0]["held"] == 30.0 and sandbox.requests()[0]["status"] is None
            started = time.monotonic()
            await asyncio.to_thread(sandbox.stop)
            assert time.monotonic() - started < 5
            # Answered at once as it stops (or cut off, had it taken longer).
            [result] = await asyncio.gather(task, return_exceptions=True)
            assert isinstance(result, (pz.Availability, pz.PlugzError))


async def test_the_control_api_holds_and_ends_holds(api: Sandbox) -> None:
    async with api.new_client(clock=pz.FakeClock(), timeout=5.0) as client:
        await client.check_availability(READY)
        status, answer = await control(
            api, "POST", "hold", {"route": CODE_ROUTE, "seconds": 0.1, "number": READY}
        )
        assert status == 200
        assert answer == {
            "hold": True,
            "route": CODE_ROUTE,
            "seconds": 0.1,
            "number": READY,
            "times": 1,
        }
        started = time.monotonic()
        task = asyncio.create_task(client.request_code(READY, "voice"))
        await api.wait_for_requests(2)
        _, codes = await control(api, "GET", "codes")
        assert [c["channel"] for c in codes] == ["voice"]
        assert (await task).success and time.monotonic() - started >= 0.05
        assert api.requests()[-1]["held"] == 0.1

        await control(api, "POST", "hold", {"route": "registration-available", "seconds": 30})
        assert await control(api, "DELETE", "hold") == (200, {"hold": False})
        await client.check_availability(READY)
        assert api.requests()[-1]["held"] is None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "route and seconds are required"),
        ([], "JSON object"),
        ({"route": "nope", "seconds": 1}, "unknown route"),
        ({"route": 5, "seconds": 1}, "route must be a string"),
        ({"route": CODE_ROUTE, "seconds": -1}, "0 or more"),
        ({"route": CODE_ROUTE, "seconds": "1"}, "seconds must be a number"),
        ({"route": CODE_ROUTE, "seconds": 1, "times": 0}, "times"),
        ({"route": CODE_ROUTE, "seconds": 1, "times": 1.5}, "times"),
        ({"route": CODE_ROUTE, "seconds": 1, "number": 5511}, "number must be a string"),
        ({"route": CODE_ROUTE, "seconds": 1, "number": "none"}, "no digits"),
        ({"route": "confirm-registration-code", "seconds": 1, "number": READY}, "names no number"),
        ({"route": CODE_ROUTE, "seconds": 1, "nmber": READY}, "unknown hold fields"),
    ],
)
async def test_the_control_api_refuses_bad_holds(api: Sandbox, body: Any, says: str) -> None:
    status, answer = await control(api, "POST", "hold", body)
    assert status == 400 and answer["error"] == "Invalid hold" and says in answer["message"]


async def test_the_control_api_refuses_a_hold_that_is_not_json(api: Sandbox) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{api.base_url}/_sandbox/hold", data=b"{") as response,
    ):
        assert response.status == 400
        assert (await response.json())["error"] == "Invalid hold"


def test_hold_checks_its_arguments() -> None:
    state = SandboxState(SandboxConfig())
    with pytest.raises(ValueError, match="unknown route"):
        state.hold("nope", 1)
    with pytest.raises(ValueError, match="finite"):
        state.hold(CODE_ROUTE, float("inf"))
    with pytest.raises(ValueError, match="finite"):
        state.hold(CODE_ROUTE, float("nan"))
    with pytest.raises(ValueError, match="times"):
        state.hold(CODE_ROUTE, 1, times=True)
    state.hold(CODE_ROUTE, 0, number="55 11 90000-0001", times=2)
    assert state.take_hold("5511900000002", CODE_ROUTE) is None
    assert state.take_hold("5511900000001", "registration-available") is None
    assert [state.take_hold("5511900000001", CODE_ROUTE) for _ in range(3)] == [0.0, 0.0, None]


# -- scaled waits ----------------------------------------------------------------------------


async def test_wait_scale_shortens_every_wait_and_reports_whole_seconds_rounded_up() -> None:
    config = SandboxConfig(
        instance_id=INSTANCE_ID,
        instance_token=INSTANCE_TOKEN,
        client_token=CLIENT_TOKEN,
        wait_scale=0.01,
    )
    async with running(config) as sandbox, sandbox.new_client(timeout=2.0) as client:
        waits = await client.check_availability(WAITS)
        # 30, 90 and 600 s become 0.3, 0.9 and 6 s, reported as 1, 1 and 6.
        assert (waits.sms_wait_seconds, waits.voice_wait_seconds) == (1.0, 1.0)
        assert waits.wa_old_wait_seconds == 6.0
        await client.check_availability(READY)
        sent = await client.request_code(READY, "voice")
        # The documented 125 s (165 s for the channel used) become 2 s each.
        assert sent.success
        assert (sent.sms_wait_seconds, sent.retry_after) == (2.0, 2.0)
        early = await client.request_code(READY, "voice")
        assert not early.success and early.retry_after is not None and early.retry_after <= 2.0


def test_wait_scale_must_be_positive() -> None:
    with pytest.raises(ValueError, match="wait_scale"):
        SandboxConfig(wait_scale=0.0)
