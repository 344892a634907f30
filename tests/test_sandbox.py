"""The sandbox itself: the real checks, every test number, the flow, the control API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import socket
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from helpers import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN

import plugz_async as pz
from plugz_async.sandbox import (
    APPEAL_TOKEN,
    CAPTCHA_TEXT,
    CONFIRMATION_CODE,
    PIN,
    SANDBOX_ROUTES,
    SCENARIOS,
    Reply,
    Sandbox,
    SandboxConfig,
    SandboxState,
    SandboxThread,
    running,
    scenario_table,
)
from plugz_async.sandbox._routes import path_of
from plugz_async.sandbox._scenarios import (
    ALREADY_CONNECTED,
    NOT_CONNECTED,
    RESTORE_SESSION,
    mixed_answer,
)

READY = "+55 11 90000-0001"


def path(route: str, instance: str = INSTANCE_ID, token: str = INSTANCE_TOKEN) -> str:
    from urllib.parse import quote

    return f"/instances/{quote(instance, safe='')}/token/{quote(token, safe='')}/{path_of(route)}"


async def call(
    api: Sandbox,
    route: str,
    body: Any = None,
    *,
    method: str | None = None,
    headers: dict[str, str] | None = None,
    instance_token: str = INSTANCE_TOKEN,
) -> tuple[int, Any]:
    """A raw request, as any HTTP client would send it (no SDK in the way)."""
    sent = {"Client-Token": CLIENT_TOKEN, "Content-Type": "application/json"}
    sent.update(headers or {})
    sent = {k: v for k, v in sent.items() if v}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method or SANDBOX_ROUTES.get(route, "POST"),
            api.base_url + path(route, token=instance_token),
            json=body,
            headers=sent,
        ) as response,
    ):
        try:
            return response.status, await response.json(content_type=None)
        except ValueError:
            return response.status, await response.text()


# -- the real checks, on every route -------------------------------------------------------

BODIES = {
    "registration-available": {"ddi": "55", "phone": "11900000001"},
    "request-registration-code": {"ddi": "55", "phone": "11900000001", "method": "sms"},
    "respond-captcha": {"captcha": "x"},
    "confirm-registration-code": {"code": "1"},
    "device-transfer-confirmed": None,
    "confirm-pin-code": {"code": "1"},
    "recovery-pin-code": {},
    "request-unbanning": {"appealToken": "t", "description": "d"},
    "status": None,
}


@pytest.mark.parametrize("route", list(SANDBOX_ROUTES))
async def test_wrong_method_is_405(api: Sandbox, route: str) -> None:
    wrong = "GET" if SANDBOX_ROUTES[route] == "POST" else "POST"
    assert await call(api, route, BODIES[route], method=wrong) == (
        405,
        {"error": "Method Not Allowed"},
    )


@pytest.mark.parametrize("route", [r for r in SANDBOX_ROUTES if SANDBOX_ROUTES[r] == "POST"])
async def test_missing_json_content_type_is_415(api: Sandbox, route: str) -> None:
    status, body = await call(api, route, BODIES[route], headers={"Content-Type": "text/plain"})
    assert status == 415 and body["error"] == "Unsupported Media Type"


@pytest.mark.parametrize("route", list(SANDBOX_ROUTES))
async def test_client_token_missing_400_and_wrong_403_echoed(api: Sandbox, route: str) -> None:
    assert await call(api, route, BODIES[route], headers={"Client-Token": ""}) == (
        400,
        {"error": "your client-token is not configured"},
    )
    assert await call(api, route, BODIES[route], headers={"Client-Token": "nope"}) == (
        403,
        {"error": "Client-Token nope not allowed"},
    )


@pytest.mark.parametrize("route", list(SANDBOX_ROUTES))
async def test_unknown_instance_token_is_200_not_found(api: Sandbox, route: str) -> None:
    assert await call(api, route, BODIES[route], instance_token="other") == (
        200,
        {"error": "NOT_FOUND", "message": "Instance not found"},
    )


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("registration-available", {"ddi": 55, "phone": "11900000001"}),
        ("registration-available", {"ddi": "55"}),
        ("registration-available", ["55", "11900000001"]),
        ("request-registration-code", {"ddi": "55", "phone": "11900000001", "method": "fax"}),
        ("respond-captcha", {}),
        ("confirm-registration-code", {"code": 123456}),
        ("confirm-pin-code", {}),
        ("request-unbanning", {"appealToken": "", "description": "x"}),
    ],
)
async def test_bad_bodies_are_400(api: Sandbox, route: str, body: Any) -> None:
    status, answer = await call(api, route, body)
    assert status == 400 and answer["error"]


async def test_unknown_route_is_404(api: Sandbox) -> None:
    status, _ = await call(api, "no-such-route", {}, method="POST")
    assert status == 404


@pytest.mark.parametrize(
    ("below", "method"),
    [("mobile/status", "GET"), ("registration-available", "POST"), ("no-such-route", "GET")],
)
async def test_a_route_at_the_other_path_is_404(api: Sandbox, below: str, method: str) -> None:
    """The instance's status is served at its root, the registration routes under mobile/:
    neither at the other's path."""
    url = f"{api.base_url}{path('x').removesuffix('mobile/x')}{below}"
    headers = {"Client-Token": CLIENT_TOKEN, "Content-Type": "application/json"}
    body = {"ddi": "55", "phone": "11900000001"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=headers) as response,
    ):
        assert response.status == 404
        assert await response.json() == {"error": "Not Found", "message": f"no route {below}"}
    (logged,) = api.requests()
    assert logged["route"] == below and logged["number"] is None


# -- every test number, through the client ----------------------------------------------


@pytest.fixture
async def sb_client(api: Sandbox) -> Any:
    # The 429-date number sends a real HTTP date: the fake clock starts at the real time.
    clock = pz.FakeClock(start=pz.SystemClock().now())
    async with api.new_client(clock=clock, timeout=5.0) as client:
        yield client, clock


EXPECTED: dict[str, tuple[type[pz.PlugzError] | None, int]] = {
    # name: (error class or None, requests the sandbox sees)
    "ready": (None, 1),
    "waits": (None, 1),
    "wa_old-not-eligible": (None, 1),
    "banned": (None, 1),
    "unavailable": (None, 1),
    "voice-first": (None, 1),
    "blocked-at-code-request": (None, 1),
    "captcha": (None, 1),
    "pin": (None, 1),
    "device-transfer": (None, 1),
    "code-expires": (None, 1),
    "growing-waits": (None, 1),
    "never-connects": (None, 1),
    "503-twice": (None, 3),
    "503-always": (pz.ServerError, 3),
    "429-seconds": (None, 2),
    "429-date": (None, 2),
    "slow": (pz.RequestTimeout, 3),
    "drop": (pz.TransportError, 3),
    "broken-json": (pz.ResponseDecodeError, 1),
    "error-body": (pz.APIError, 1),
}


def test_every_scenario_has_an_expectation() -> None:
    assert {s.name for s in SCENARIOS} == set(EXPECTED)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_each_test_number(api: Sandbox, sb_client: Any, scenario: Any) -> None:
    client, clock = sb_client
    error_class, requests = EXPECTED[scenario.name]
    if error_class is None:
        availability = await client.check_availability(scenario.number)
        for key, value in scenario.answer.items():
            assert availability.raw[key] == value
    else:
        timeout = 0.05 if scenario.name == "slow" else None  # the only real wait
        with pytest.raises(error_class) as info:
            await client.check_availability(scenario.number, timeout=timeout)
        assert info.value.attempts == requests
    assert len(api.requests(number=scenario.number)) == requests
    if scenario.name == "429-seconds":
        assert clock.sleeps == [1.0]
    if scenario.name == "429-date":
        # The date is 1 to 2 s ahead of the sandbox's real time when it answered: never
        # waited less, and more only by the real time since the fake clock started.
        started = clock.now() - timedelta(seconds=sum(clock.sleeps))
        late = (pz.SystemClock().now() - started).total_seconds()
        assert 1.0 <= clock.sleeps[0] <= 2.0 + late


async def test_fault_counters_reset(api: Sandbox, sb_client: Any) -> None:
    client, _ = sb_client
    await client.check_availability("+55 11 90000-5032")
    api.reset()
    with pytest.raises(pz.ServerError):
        await client.check_availability("+55 11 90000-5032", retry=pz.RetryPolicy.none())


def test_the_mix_is_deterministic_and_close_to_its_documented_shares() -> None:
    numbers = [f"5531{n:09d}" for n in range(4000)]
    names = Counter(mixed_answer(n, seed=7)[0] for n in numbers)
    assert [mixed_answer(n, seed=7) for n in numbers[:50]] == [
        mixed_answer(n, seed=7) for n in numbers[:50]
    ]
    shares = {name: count / len(numbers) for name, count in names.items()}
    assert 0.50 < shares["ready"] < 0.60
    assert 0.21 < shares["waits"] < 0.29
    assert 0.04 < shares["banned"] < 0.07
    assert set(names) == {
        "ready",
        "waits",
        "wa_old-not-eligible",
        "banned",
        "unavailable",
        "blocked",
    }
    different_seeds = sum(mixed_answer(n, seed=1) != mixed_answer(n, seed=2) for n in numbers[:200])
    assert different_seeds > 50


async def test_mixed_numbers_decode_into_availability(client: pz.PlugzClient) -> None:
    planner = pz.RegistrationPlanner()
    outcomes: Counter[pz.PlanOutcome] = Counter()
    for n in range(60):
        availability = await client.check_availability(f"+55 31 9{n:04d}-0000")
        outcomes[planner.plan(availability).outcome] += 1
    assert outcomes[pz.PlanOutcome.READY] > 20 and len(outcomes) >= 3


async def test_fault_rate_fails_that_share_of_requests() -> None:
    async with running(SandboxConfig(fault_rate=1.0), retry=pz.RetryPolicy.none()) as sb:
        with pytest.raises(pz.ServerError):
            await sb.client.check_availability("+55 31 99999-0000")


# -- the rest of the flow ------------------------------------------------------------------


async def check(api: Sandbox, number: str) -> Any:
    ddi, phone = "55", number
    return await call(api, "registration-available", {"ddi": ddi, "phone": phone})


async def request_code(api: Sandbox, phone: str, method: str = "sms") -> tuple[int, Any]:
    body = {"ddi": "55", "phone": phone, "method": method}
    return await call(api, "request-registration-code", body)


async def test_code_request_needs_the_check_first(api: Sandbox) -> None:
    status, body = await request_code(api, "11900000001")
    assert status == 400 and "registration-available" in body["message"]


async def test_code_request_and_confirmation(api: Sandbox) -> None:
    await check(api, "11900000001")
    status, body = await request_code(api, "11900000001", "voice")
    assert status == 200
    assert body == {
        "success": True,
        "retryAfter": "165",
        "smsWaitSeconds": 125,
        "voiceWaitSeconds": 125,
        "waOldWaitSeconds": 125,
        "method": "voice",
    }
    assert (await call(api, "confirm-registration-code", {"code": "000000"}))[1] == {
        "success": False
    }
    assert (await call(api, "confirm-registration-code", {"code": CONFIRMATION_CODE}))[1] == {
        "success": True
    }


async def test_waits_are_enforced_until_the_clock_moves(api: Sandbox) -> None:
    await check(api, "11900000002")
    _, body = await request_code(api, "11900000002")
    assert body["success"] is False and 29 <= body["retryAfter"] <= 30 and body["method"] == "sms"
    api.advance(30)
    _, body = await request_code(api, "11900000002")
    assert body["success"] is True and body["retryAfter"] == 165
    _, again = await request_code(api, "11900000002")
    assert again["success"] is False and again["retryAfter"] >= 164  # the channel just used


async def test_a_new_check_reports_the_waits_a_code_request_started(api: Sandbox) -> None:
    # A server that reset them on every check would let anyone skip them by checking again;
    # durable registrations rely on it to tell, after a crash, whether a code went out.
    _, first = await check(api, "11900000001")
    assert first["smsWaitSeconds"] == 0
    assert (await request_code(api, "11900000001", "voice"))[1]["success"] is True
    _, again = await check(api, "11900000001")
    assert 124 <= again["smsWaitSeconds"] <= 125 and 164 <= again["voiceWaitSeconds"] <= 165
    assert again["available"] is True
    api.advance(100)
    _, later = await check(api, "11900000001")
    assert 24 <= later["smsWaitSeconds"] <= 25 and 64 <= later["voiceWaitSeconds"] <= 65
    api.advance(200)
    assert (await check(api, "11900000001"))[1]["voiceWaitSeconds"] == 0
    # A number's own waits run from its first check: checking again reports the time left
    # (neither restarts them: after a crash, a wait in force must mean a code went out).
    assert (await check(api, "11900000002"))[1]["smsWaitSeconds"] == 30
    api.advance(10)
    assert (await check(api, "11900000002"))[1]["smsWaitSeconds"] == 20
    api.advance(30)
    assert (await check(api, "11900000002"))[1]["smsWaitSeconds"] == 0


async def test_captcha_flow(api: Sandbox) -> None:
    await check(api, "11900000008")
    _, body = await request_code(api, "11900000008")
    assert body["success"] is False and body["captcha"].startswith("data:image/png;base64,")
    png = base64.b64decode(body["captcha"].split(",", 1)[1])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert (await call(api, "respond-captcha", {"captcha": "wrong"}))[1] == {"success": False}
    assert (await call(api, "respond-captcha", {"captcha": CAPTCHA_TEXT.lower()}))[1] == {
        "success": True
    }
    assert (await call(api, "confirm-registration-code", {"code": CONFIRMATION_CODE}))[1] == {
        "success": True
    }


async def test_pin_flow(api: Sandbox) -> None:
    await check(api, "11900000009")
    await request_code(api, "11900000009")
    _, body = await call(api, "confirm-registration-code", {"code": CONFIRMATION_CODE})
    assert body == {"success": False, "confirmSecurityCode": True}
    assert (await call(api, "confirm-pin-code", {"code": "000000"}))[1] == {"success": False}
    assert (await call(api, "confirm-pin-code", {"code": PIN}))[1] == {"success": True}
    assert (await call(api, "recovery-pin-code", {}))[1] == {"success": True}


async def test_the_instance_is_connected_once_its_registration_succeeds(api: Sandbox) -> None:
    not_yet = {"connected": False, "error": NOT_CONNECTED, "smartphoneConnected": False}
    assert await call(api, "status") == (200, not_yet)  # nothing registered on it yet
    await check(api, "11900000001")
    await request_code(api, "11900000001")
    assert await call(api, "status") == (200, not_yet)  # the code was sent, not confirmed
    assert (await call(api, "confirm-registration-code", {"code": "000000"}))[1] == {
        "success": False
    }
    assert await call(api, "status") == (200, not_yet)
    await call(api, "confirm-registration-code", {"code": CONFIRMATION_CODE})
    connected = {"connected": True, "error": ALREADY_CONNECTED, "smartphoneConnected": True}
    assert await call(api, "status") == (200, connected)
    await check(api, "11900000002")  # the instance works on another number now
    assert await call(api, "status") == (200, not_yet)
    (seen, *_) = api.requests(route="status")
    assert seen["method"] == "GET" and seen["body"] is None and seen["number"] is None
    assert seen["path"].endswith("/token/***/status")


async def test_the_instance_is_connected_after_the_pin_and_after_the_transfer(
    api: Sandbox,
) -> None:
    await check(api, "11900000009")
    await request_code(api, "11900000009")
    await call(api, "confirm-registration-code", {"code": CONFIRMATION_CODE})
    assert (await call(api, "status"))[1]["connected"] is False  # the PIN is still wanted
    await call(api, "confirm-pin-code", {"code": PIN})
    assert (await call(api, "status"))[1]["connected"] is True
    await check(api, "11900000010")
    await request_code(api, "11900000010")
    await call(api, "confirm-registration-code", {"code": CONFIRMATION_CODE})
    await call(api, "device-transfer-confirmed")
    assert (await call(api, "status"))[1]["connected"] is False  # not approved yet
    await call(api, "device-transfer-confirmed")
    assert (await call(api, "status"))[1]["connected"] is True


async def test_the_never_connects_number_asks_to_restore_the_session(api: Sandbox) -> None:
    await check(api, "11900000013")
    await request_code(api, "11900000013")
    assert (await call(api, "status"))[1]["error"] == NOT_CONNECTED
    assert (await call(api, "confirm-registration-code", {"code": CONFIRMATION_CODE}))[1] == {
        "success": True
    }
    for _ in range(3):  # it stays so
        assert await call(api, "status") == (
            200,
            {"connected": False, "error": RESTORE_SESSION, "smartphoneConnected": False},
        )


async def test_device_transfer_flow(api: Sandbox) -> None:
    assert (await call(api, "device-transfer-confirmed"))[0] == 400
    await check(api, "11900000010")
    await request_code(api, "11900000010")
    _, body = await call(api, "confirm-registration-code", {"code": CONFIRMATION_CODE})
    assert body == {"success": False, "deviceConfirm": True}
    assert (await call(api, "device-transfer-confirmed"))[0] == 400  # not approved yet
    assert await call(api, "device-transfer-confirmed") == (200, {"success": True})


@pytest.mark.parametrize(
    ("phone", "method", "answer"),
    [
        ("11900000007", "sms", {"success": False, "blocked": True}),
        ("11900000004", "sms", {"success": False, "blocked": True}),
        ("11900000005", "sms", {"success": False, "reason": "number not available"}),
        (
            "11900000003",
            "wa_old",
            {"success": False, "method": "wa_old", "reason": "wa_old not eligible"},
        ),
    ],
)
async def test_code_requests_that_cannot_succeed(
    api: Sandbox, phone: str, method: str, answer: dict[str, Any]
) -> None:
    await check(api, phone)
    assert (await request_code(api, phone, method))[1] == answer


async def test_unbanning(api: Sandbox) -> None:
    body = {"appealToken": APPEAL_TOKEN, "description": "my number was banned by mistake"}
    assert (await call(api, "request-unbanning", body))[1] == {
        "success": True,
        "status": "UNBANNED",
    }
    body["appealToken"] = "Ae0B_other"
    assert (await call(api, "request-unbanning", body))[1] == {
        "success": True,
        "status": "IN_REVIEW",
    }


# -- the control API and the log --------------------------------------------------------


async def control(api: Sandbox, method: str, what: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{api.base_url}/_sandbox/{what}", json=body) as response,
    ):
        return response.status, await response.json()


async def test_control_api_scripts_logs_moves_the_clock_and_resets(
    api: Sandbox, client: pz.PlugzClient
) -> None:
    status, _ = await control(
        api,
        "POST",
        "script",
        {"number": READY, "replies": [{"status": 502, "body": "<html>bad gateway</html>"}]},
    )
    assert status == 200
    await client.check_availability(READY)
    _, log = await control(api, "GET", f"requests?number={READY.replace('+', '%2B')}")
    assert [entry["status"] for entry in log] == [502, 200]
    assert [entry["answer"] for entry in log] == ["scripted", None]
    _, info = await control(api, "GET", "")
    assert info["sandbox"] is True and info["requests"] == 2
    _, scenarios = await control(api, "GET", "scenarios")
    assert [s["number"] for s in scenarios] == [s.number for s in SCENARIOS]
    assert (await control(api, "POST", "clock", {"advance": 30}))[0] == 200
    assert (await control(api, "POST", "clock", {"advance": -1}))[0] == 400
    assert (await control(api, "POST", "reset"))[1] == {"reset": True}
    assert api.requests() == []


@pytest.mark.parametrize(
    "body",
    [{}, {"replies": [{"sttus": 500}]}, {"replies": [{}], "route": "nope"}, {"replies": "x"}],
)
async def test_control_api_refuses_bad_scripts(api: Sandbox, body: Any) -> None:
    status, answer = await control(api, "POST", "script", body)
    assert status == 400 and answer["error"] == "Invalid script"


async def test_scripts_by_route_and_chunked_bodies(api: Sandbox, client: pz.PlugzClient) -> None:
    api.then(
        Reply(json={"available": True, "smsWaitSeconds": 5}, chunked=True),
        route="registration-available",
    )
    availability = await client.check_availability(READY)
    assert availability.sms_wait_seconds == 5.0


async def test_the_log_and_access_log_hold_no_secret(
    api: Sandbox, client: pz.PlugzClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plugz_async.sandbox.access")
    await client.check_availability(READY)
    await call(
        api,
        "registration-available",
        BODIES["registration-available"],
        headers={"Client-Token": "wrong"},
    )
    text = repr(api.requests()) + " ".join(r.getMessage() for r in caplog.records)
    for secret in (INSTANCE_TOKEN, CLIENT_TOKEN, "tok%2FSECRET", "SECRET"):
        assert secret not in text
    assert [entry["auth"] for entry in api.requests()] == ["ok", "refused"]
    assert len(caplog.records) == 2


def test_scenario_table_lists_every_number() -> None:
    table = scenario_table()
    assert all(s.number in table and s.name in table for s in SCENARIOS)


def test_sandbox_config_is_frozen_and_reply_checks_its_fields() -> None:
    with pytest.raises(AttributeError):
        SandboxConfig().seed = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown reply fields"):
        Reply.from_dict({"stauts": 200})
    with pytest.raises(ValueError, match="unknown route"):
        SandboxState(SandboxConfig()).then(Reply(), route="nope")


# -- in a thread ----------------------------------------------------------------------------


async def test_sandbox_thread_serves_any_event_loop() -> None:
    with SandboxThread() as sandbox:
        assert "SandboxThread(base_url='http://127.0.0.1:" in repr(sandbox)
        sandbox.then(Reply(503, body="busy"), number=READY)
        async with sandbox.new_client(clock=pz.FakeClock()) as client:
            assert (await client.check_availability(READY)).available
        assert [e["status"] for e in sandbox.requests()] == [503, 200]
        sandbox.advance(5)
        sandbox.reset()
        assert sandbox.requests() == []
        assert sandbox.env()["PLUGZ_BASE_URL"] == sandbox.base_url
    with pytest.raises(RuntimeError, match="not running"):
        sandbox.requests()


@contextlib.contextmanager
def nothing_left_open() -> Iterator[None]:
    """Fail if what the block did leaves a socket, a transport or a session open: each
    warns (a ResourceWarning) when collected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    left = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not left, left


def serving(base_url: str) -> bool:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


async def available(client: pz.PlugzClient) -> bool:
    return (await client.check_availability(READY)).available


async def test_sandbox_thread_client_is_used_from_the_callers_loop_and_closed_by_stop() -> None:
    # As in a notebook: started, used and stopped from code running in one event loop.
    with nothing_left_open():
        sandbox = SandboxThread(clock=pz.FakeClock()).start()
        client = sandbox.client
        assert client is sandbox.client and client.base_url == sandbox.base_url
        assert await available(client)
        assert await available(client)  # any later cell
        assert client.connections is not None and not client.connections.keep_alive
        assert client.connections.loop is asyncio.get_running_loop()
        sandbox.stop()  # from within the client's loop: its close runs when this code awaits
        assert not serving(sandbox.base_url)
        with pytest.raises(RuntimeError, match="not running"):
            _ = sandbox.client
        for _ in range(10):
            if client.closed and client.connections.closed:
                break
            await asyncio.sleep(0)
        assert client.closed and client.connections.closed


def test_sandbox_thread_client_in_a_script_that_stops_it_in_its_loop() -> None:
    async def main() -> tuple[bool, pz.PlugzClient]:
        sandbox = SandboxThread().start()
        ok = await available(sandbox.client)
        client = sandbox.client
        sandbox.stop()  # the close is a task of this loop: it runs before asyncio.run returns
        return ok, client

    with nothing_left_open():
        ok, client = asyncio.run(main())
    assert ok and client.closed


def test_sandbox_thread_client_with_asyncio_run_per_call() -> None:
    """Its loop ends before the sandbox stops: nothing of it is left open, the next loop is
    told to take a client of its own, and stop() closes the rest."""
    with nothing_left_open(), SandboxThread() as sandbox:
        client = sandbox.client
        assert asyncio.run(available(sandbox.client))
        gc.collect()  # the loop has ended: a connection kept for it would warn here
        with pytest.raises(pz.WrongEventLoopError, match=r"has ended .*new_client\(\)"):
            asyncio.run(available(sandbox.client))

        async def in_this_loop() -> bool:
            async with sandbox.new_client() as own:
                return await available(own)

        assert asyncio.run(in_this_loop())
    assert client.closed and not serving(sandbox.base_url)


def test_sandbox_thread_client_from_a_loop_in_another_thread() -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        with nothing_left_open():
            with SandboxThread(timeout=5.0) as sandbox:
                client = sandbox.client
                asked = asyncio.run_coroutine_threadsafe(available(client), loop)
                assert asked.result(timeout=10)
            assert client.closed and client.connections is not None
            assert client.connections.closed
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
        loop.close()


def test_sandbox_thread_client_unused_or_in_a_loop_at_rest_is_closed_by_stop() -> None:
    with SandboxThread() as sandbox:
        unused = sandbox.client
        assert repr(unused).endswith("state=unopened)")
    assert unused.closed
    loop = asyncio.new_event_loop()
    try:
        with nothing_left_open():
            with SandboxThread() as sandbox:
                client = sandbox.client
                assert loop.run_until_complete(available(client))
            assert client.closed and client.connections is not None
            assert client.connections.closed
    finally:
        loop.close()


def test_sandbox_thread_stops_from_another_loop_while_the_clients_loop_is_at_rest() -> None:
    loop = asyncio.new_event_loop()
    try:
        with nothing_left_open():
            sandbox = SandboxThread().start()
            client = sandbox.client
            assert loop.run_until_complete(available(client))

            async def elsewhere() -> None:
                with pytest.raises(pz.WrongEventLoopError, match="belongs to another event loop"):
                    await available(client)
                sandbox.stop()

            asyncio.run(elsewhere())
            assert client.closed and not serving(sandbox.base_url)
    finally:
        loop.close()


def test_sandbox_thread_stop_with_a_call_left_pending_in_a_loop_at_rest() -> None:
    """Its connection is that loop's: it is not touched from here, and stop() says where
    to close the client, once the server has stopped."""
    loop = asyncio.new_event_loop()
    try:
        with nothing_left_open():
            sandbox = SandboxThread().start()
            client = sandbox.client
            sandbox.hold("registration-available", 5.0)
            pending = loop.create_task(available(client))

            async def until_sent() -> None:
                for _ in range(500):
                    if sandbox.requests():
                        return
                    await asyncio.sleep(0.01)

            loop.run_until_complete(until_sent())
            with pytest.raises(pz.WrongEventLoopError, match="a call still in flight"):
                sandbox.stop()
            assert not serving(sandbox.base_url)
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(pending)
            loop.run_until_complete(client.aclose())
            assert client.closed
    finally:
        loop.close()


def test_sandbox_thread_stop_stops_the_server_when_the_client_cannot_be_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = SandboxThread().start()

    async def fails() -> None:
        raise OSError("closing failed")

    monkeypatch.setattr(sandbox.client, "aclose", fails)
    with pytest.raises(OSError, match="closing failed"):
        sandbox.stop()
    assert not serving(sandbox.base_url)
    with pytest.raises(RuntimeError, match="not running"):
        sandbox.requests()


def test_sandbox_thread_stop_stops_the_server_when_the_clients_loop_is_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from plugz_async.sandbox import _running

    monkeypatch.setattr(_running, "_CLOSE_TIMEOUT", 0.2)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        sandbox = SandboxThread().start()
        client = sandbox.client
        assert asyncio.run_coroutine_threadsafe(available(client), loop).result(timeout=10)
        loop.call_soon_threadsafe(time.sleep, 1.0)  # the loop is busy for a second
        with pytest.raises(TimeoutError, match=r"not closed within 0\.2 s"):
            sandbox.stop()
        assert not serving(sandbox.base_url)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=10)
        assert client.closed  # the close ran once the loop was free
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
        loop.close()


def test_sandbox_thread_client_takes_options_and_bad_ones_stop_the_server() -> None:
    with SandboxThread(default_region="BR") as sandbox:
        assert sandbox.client.default_region == "BR"
    with pytest.raises(pz.ConfigurationError, match=r"new_client\(keep_alive=True\)"):
        SandboxThread(keep_alive=True)
    failed = SandboxThread(max_connections=-1)
    with pytest.raises(pz.ConfigurationError):
        failed.start()
    with pytest.raises(RuntimeError, match="not running"):
        failed.requests()


def test_sandbox_thread_reports_a_port_in_use() -> None:
    with SandboxThread() as first:
        port = int(first.base_url.rsplit(":", 1)[1])
        with pytest.raises(OSError, match="address already in use"):
            SandboxThread(port=port).start()


async def test_running_gives_a_ready_client_and_stops_slow_answers(api: Sandbox) -> None:
    assert repr(api).startswith("Sandbox(base_url='http://127.0.0.1:")
    assert (await api.client.check_availability(READY)).available
    api.then(Reply(delay=30.0))
    task = asyncio.create_task(api.client.check_availability(READY))
    await api.wait_for_requests(2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_long_running_sandbox_forgets_old_numbers() -> None:
    async with running(SandboxConfig(registration_limit=3), clock=pz.FakeClock()) as sb:
        for n in range(5):
            await sb.client.check_availability(f"+55 31 9{n:04d}-0000")
        assert sb.state.registration_count() == 3
        # The latest ones are kept: a code can still be asked for the last number checked.
        assert (await sb.client.request_code("+55 31 90004-0000", "sms")).success


def test_the_old_name_of_the_route_table_still_answers() -> None:
    import plugz_async.sandbox as sandbox

    with pytest.warns(DeprecationWarning, match="now plugz_async.sandbox.SANDBOX_ROUTES"):
        assert sandbox.ROUTES is SANDBOX_ROUTES
