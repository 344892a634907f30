"""The registration routes: wire format, decoding, input checks, and retry safety."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers import CLIENT_TOKEN, CONFIG

import plugz_async as pz
from plugz_async._models import decode_code_request
from plugz_async.sandbox import (
    APPEAL_TOKEN,
    CAPTCHA_TEXT,
    CONFIRMATION_CODE,
    PIN,
    Reply,
    Sandbox,
    SandboxConfig,
    running,
)
from plugz_async.sandbox._routes import path_of

READY = "+55 11 90000-0001"
NUMBER = pz.PhoneNumber.parse(READY)


async def test_request_code_wire_and_result(api: Sandbox, client: pz.PlugzClient) -> None:
    await client.check_availability(READY)
    request = await client.request_code(READY, "voice")
    seen = api.requests(route="request-registration-code")[0]
    assert seen["method"] == "POST" and seen["auth"] == "ok"
    assert seen["body"] == {"ddi": "55", "phone": "11900000001", "method": "voice"}
    assert request.success and request.channel is pz.Channel.VOICE and request.method == "voice"
    assert request.retry_after == 165.0  # sent as the string "165"
    assert (request.sms_wait_seconds, request.voice_wait_seconds) == (125.0, 125.0)
    assert request.captcha is None and not request.needs_captcha and not request.blocked
    assert request.number == NUMBER and request.raw["retryAfter"] == "165"


async def test_every_route_on_the_happy_paths(api: Sandbox, client: pz.PlugzClient) -> None:
    await client.check_availability("+55 11 90000-0008")  # captcha
    request = await client.request_code("+55 11 90000-0008", pz.Channel.SMS)
    assert request.needs_captcha and request.captcha is not None
    assert request.captcha.startswith(b"\x89PNG\r\n\x1a\n")
    assert not (await client.respond_captcha("nope")).success
    assert (await client.respond_captcha(CAPTCHA_TEXT)).success
    confirmation = await client.confirm_code(CONFIRMATION_CODE[:3] + "-" + CONFIRMATION_CODE[3:])
    assert confirmation.success and not confirmation.needs_pin
    assert api.requests(route="confirm-registration-code")[0]["body"] == {"code": CONFIRMATION_CODE}

    await client.check_availability("+55 11 90000-0009")  # PIN
    await client.request_code("+55 11 90000-0009", "sms")
    confirmation = await client.confirm_code(CONFIRMATION_CODE)
    assert confirmation.needs_pin and not confirmation.success
    assert not (await client.confirm_pin("000000")).success
    assert (await client.confirm_pin(PIN)).success
    assert (await client.recover_pin()).success

    await client.check_availability("+55 11 90000-0010")  # device transfer
    await client.request_code("+55 11 90000-0010", "sms")
    assert (await client.confirm_code(CONFIRMATION_CODE)).needs_device_confirmation
    first = await client.confirm_device_transfer()
    assert not first.confirmed and first.raw["message"] == "the transfer was not approved yet"
    assert (await client.confirm_device_transfer()).confirmed
    device = api.requests(route="device-transfer-confirmed")
    assert [e["method"] for e in device] == ["GET", "GET"] and device[0]["body"] is None

    unban = await client.request_unbanning(APPEAL_TOKEN, "my number was banned by mistake")
    assert unban.success and unban.status is pz.UnbanStatus.UNBANNED
    assert api.requests(route="request-unbanning")[0]["body"] == {
        "appealToken": APPEAL_TOKEN,
        "description": "my number was banned by mistake",
    }
    other = await client.request_unbanning("Ae0B_other", "please review")
    assert other.status is pz.UnbanStatus.IN_REVIEW and str(other.status) == "IN_REVIEW"


async def test_random_codes_are_readable_through_the_control_api() -> None:
    config = SandboxConfig(random_codes=True, seed=3)
    async with running(config, clock=pz.FakeClock()) as sb:
        await sb.client.check_availability(READY)
        await sb.client.request_code(READY, "sms")
        (sent,) = sb.state.codes(number=READY)
        assert sent["channel"] == "sms" and len(sent["code"]) == 6
        assert (await sb.client.confirm_code(sent["code"])).success


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.request_code(READY, "fax"), "channel must be one of 'sms', 'voice', 'wa_old'"),
        (lambda c: c.request_code("12", "sms"), "not a possible phone number"),
        (lambda c: c.confirm_code("12ab56"), "the code must be 4 to 8 digits"),
        (lambda c: c.confirm_code(123456), "the code must be text, not int"),
        (lambda c: c.confirm_pin("12345"), "the PIN must be 6 digits"),
        (lambda c: c.respond_captcha("   "), "captcha text must be non-empty text"),
        (lambda c: c.request_unbanning("", "x"), "appeal_token must be non-empty text"),
        (lambda c: c.request_unbanning("t", ""), "description must be non-empty text"),
    ],
)
async def test_bad_input_is_refused_before_any_request(
    api: Sandbox, client: pz.PlugzClient, call: Any, message: str
) -> None:
    with pytest.raises(pz.InvalidArgument, match=message) as info:
        await call(client)
    assert isinstance(info.value, ValueError)
    assert api.requests() == []


# -- retry safety: counted at the sandbox ------------------------------------------------------

Call = Callable[[pz.PlugzClient], Awaitable[object]]

UNSAFE_CALLS: dict[str, Call] = {
    "request-registration-code": lambda c: c.request_code(READY, "sms"),
    "respond-captcha": lambda c: c.respond_captcha("x"),
    "confirm-registration-code": lambda c: c.confirm_code("123456"),
    "confirm-pin-code": lambda c: c.confirm_pin("123456"),
    "recovery-pin-code": lambda c: c.recover_pin(),
    "request-unbanning": lambda c: c.request_unbanning("t", "d"),
}
SAFE_CALLS: dict[str, Call] = {
    "registration-available": lambda c: c.check_availability(READY),
    "device-transfer-confirmed": lambda c: c.confirm_device_transfer(),
    "status": lambda c: c.instance_status(),
}
MAYBE_PROCESSED = [
    ("500", Reply(500, body="<html>oops</html>"), pz.ServerError),
    ("502", Reply(502, body="<html>bad gateway</html>"), pz.ServerError),
    ("504", Reply(504, body="<html>gateway timeout</html>"), pz.ServerError),
    ("dropped", Reply(drop=True), pz.TransportError),
]
NOT_PROCESSED = [
    ("429", Reply(429, json={"error": "Too Many Requests"}, headers={"Retry-After": "1"})),
    ("503", Reply(503, body="<html>unavailable</html>")),
]


def route_of(call: str) -> pz.Route[Any]:
    (route,) = [r for r in pz.ROUTES if r.path == path_of(call)]
    return route


def test_every_route_has_its_retry_safety() -> None:
    assert {r.path for r in pz.ROUTES} == {path_of(name) for name in (*UNSAFE_CALLS, *SAFE_CALLS)}
    assert all(route_of(name).safety is pz.RetrySafety.UNSAFE for name in UNSAFE_CALLS)
    assert all(route_of(name).safety is pz.RetrySafety.SAFE for name in SAFE_CALLS)


@pytest.fixture
async def fast(api: Sandbox) -> Any:
    # Retry waits take no time on the fake clock; the timeout is generous (the machine may
    # be loaded): the read-timeout cells below set a short one of their own.
    async with api.new_client(clock=pz.FakeClock(), timeout=5.0) as client:
        yield client


@pytest.mark.parametrize(
    ("route", "attempts"),
    [("request-registration-code", 1), ("registration-available", 3)],
)
async def test_a_read_timeout_is_retried_only_on_safe_routes(
    api: Sandbox, route: str, attempts: int
) -> None:
    api.then(*[Reply(delay=5.0)] * 3, route=route)
    calls = {**UNSAFE_CALLS, **SAFE_CALLS}
    async with api.new_client(clock=pz.FakeClock(), timeout=0.05) as client:
        with pytest.raises(pz.RequestTimeout) as info:
            await calls[route](client)
    assert info.value.attempts == attempts
    assert len(api.requests(route=route)) == attempts


@pytest.mark.parametrize("route", list(UNSAFE_CALLS))
@pytest.mark.parametrize(
    ("fault", "reply", "error"), MAYBE_PROCESSED, ids=[f[0] for f in MAYBE_PROCESSED]
)
async def test_unsafe_routes_are_not_retried_when_the_request_may_have_arrived(
    api: Sandbox,
    fast: pz.PlugzClient,
    route: str,
    fault: str,
    reply: Reply,
    error: type[pz.PlugzError],
) -> None:
    api.then(reply, reply, reply, route=route)
    with pytest.raises(error) as info:
        await UNSAFE_CALLS[route](fast)
    assert info.value.attempts == 1
    assert len(api.requests(route=route)) == 1


@pytest.mark.parametrize("route", list(UNSAFE_CALLS))
@pytest.mark.parametrize(("status", "reply"), NOT_PROCESSED, ids=[f[0] for f in NOT_PROCESSED])
async def test_unsafe_routes_are_retried_when_the_server_says_it_did_not_process(
    api: Sandbox, fast: pz.PlugzClient, route: str, status: str, reply: Reply
) -> None:
    api.then(reply, route=route)
    try:
        await UNSAFE_CALLS[route](fast)
    except pz.APIError as error:  # the sandbox's own answer after the retry may be an error
        assert error.status != int(status)
    assert len(api.requests(route=route)) == 2


@pytest.mark.parametrize("route", list(UNSAFE_CALLS))
async def test_unsafe_routes_are_retried_when_the_connection_was_never_made(
    refused_client: pz.PlugzClient, route: str
) -> None:
    with pytest.raises(pz.ConnectError) as info:
        await UNSAFE_CALLS[route](refused_client)
    assert info.value.attempts == 3


@pytest.mark.parametrize("route", list(SAFE_CALLS))
@pytest.mark.parametrize(
    ("fault", "reply", "error"), MAYBE_PROCESSED, ids=[f[0] for f in MAYBE_PROCESSED]
)
async def test_safe_routes_are_retried_on_every_passing_failure(
    api: Sandbox,
    fast: pz.PlugzClient,
    route: str,
    fault: str,
    reply: Reply,
    error: type[pz.PlugzError],
) -> None:
    api.then(*[reply] * 6, route=route)
    with pytest.raises(error) as info:
        await SAFE_CALLS[route](fast)
    assert info.value.attempts == 3
    # One request an attempt: a GET on a dropped connection is not sent again behind the
    # policy's back (aiohttp's session does that; the client's own connections do not).
    assert len(api.requests(route=route)) == 3


# -- decoding -----------------------------------------------------------------------------


def decode(data: Any) -> pz.CodeRequest:
    return decode_code_request(
        data, number=NUMBER, channel=pz.Channel.SMS, observed_at=pz.FakeClock().now()
    )


def test_code_request_decoding_is_lenient() -> None:
    png = b"\x89PNG\r\n\x1a\nrest"
    request = decode(
        {"success": "true", "captcha": base64.b64encode(png).decode(), "retryAfter": "30.5"}
    )
    assert request.success and request.captcha == png and request.retry_after == 30.5
    assert request.sms_wait_seconds is None  # not given: the plan keeps its time
    plain = decode({"success": False, "blocked": True})
    assert plain.blocked and plain.retry_after is None and plain.captcha is None
    assert "<4 bytes>" in repr(decode({"captcha": "data:image/png;base64,AAECAw=="}))


@pytest.mark.parametrize(
    "data",
    [{"captcha": "not base64!"}, {"captcha": 5}, {"retryAfter": "soon"}, {"success": "maybe"}, []],
)
def test_code_request_decoding_refuses_what_cannot_be_read(data: Any) -> None:
    with pytest.raises(pz.ResponseDecodeError):
        decode(data)


async def test_unknown_unban_status_is_kept_raw(api: Sandbox, client: pz.PlugzClient) -> None:
    api.then(Reply(json={"success": True, "status": "ESCALATED"}), route="request-unbanning")
    unban = await client.request_unbanning("t", "d")
    assert unban.status is None and unban.raw["status"] == "ESCALATED"


async def test_device_transfer_errors_other_than_400_still_raise(
    api: Sandbox, client: pz.PlugzClient
) -> None:
    api.then(Reply(404, json={"error": "Not Found"}), route="device-transfer-confirmed")
    with pytest.raises(pz.InstanceNotFoundError):
        await client.confirm_device_transfer()


async def test_routes_answer_errors_with_the_same_tree(api: Sandbox) -> None:
    async with pz.PlugzClient(
        CONFIG.instance_id, "wrong-token", CONFIG.client_token, base_url=api.base_url
    ) as stranger:
        with pytest.raises(pz.InstanceNotFoundError):
            await stranger.confirm_code("123456")


ROUTE_CALLS: dict[str, tuple[type, Callable[[pz.PlugzClient, Any], Awaitable[object]]]] = {
    "mobile/registration-available": (
        pz.Availability,
        lambda c, m: c.check_availability(READY, middlewares=m),
    ),
    "mobile/request-registration-code": (
        pz.CodeRequest,
        lambda c, m: c.request_code(READY, "sms", middlewares=m),
    ),
    "mobile/respond-captcha": (
        pz.CaptchaAnswer,
        lambda c, m: c.respond_captcha(CAPTCHA_TEXT, middlewares=m),
    ),
    "mobile/confirm-registration-code": (
        pz.CodeConfirmation,
        lambda c, m: c.confirm_code(CONFIRMATION_CODE, middlewares=m),
    ),
    "mobile/device-transfer-confirmed": (
        pz.DeviceTransfer,
        lambda c, m: c.confirm_device_transfer(middlewares=m),
    ),
    "mobile/confirm-pin-code": (pz.PinConfirmation, lambda c, m: c.confirm_pin(PIN, middlewares=m)),
    "mobile/recovery-pin-code": (pz.PinRecovery, lambda c, m: c.recover_pin(middlewares=m)),
    "mobile/request-unbanning": (
        pz.UnbanRequest,
        lambda c, m: c.request_unbanning(APPEAL_TOKEN, "please", middlewares=m),
    ),
    "status": (pz.InstanceStatus, lambda c, m: c.instance_status(middlewares=m)),
}


def test_every_route_is_called_by_one_method() -> None:
    assert set(ROUTE_CALLS) == {route.path for route in pz.ROUTES}


@pytest.mark.parametrize("path", sorted(ROUTE_CALLS))
async def test_every_route_method_takes_middlewares_and_returns_its_routes_answer(
    client: pz.PlugzClient, path: str
) -> None:
    """Each route method is one `_call` of its `Route`: a middleware given to the call sees
    its one attempt, and the answer is the type the route's decoder makes."""
    seen: list[str] = []

    async def middleware(route: str, send: pz.Send) -> dict[str, Any]:
        seen.append(route)
        return await send()

    await client.check_availability(READY)
    expected, call = ROUTE_CALLS[path]
    answer = await call(client, [middleware])
    assert seen == [path]
    assert isinstance(answer, expected)


# -- the instance's status --------------------------------------------------------------------


async def test_instance_status_before_and_after_a_registration(
    api: Sandbox, client: pz.PlugzClient
) -> None:
    before = await client.instance_status()
    assert not before.connected and before.error == "You are not connected."
    assert before.smartphone_connected is False
    (seen,) = api.requests(route="status")
    assert seen["method"] == "GET" and seen["body"] is None and seen["auth"] == "ok"
    assert seen["path"].endswith("/token/***/status")  # at the instance's root, not mobile/
    await client.check_availability(READY)
    await client.request_code(READY, "sms")
    await client.confirm_code(CONFIRMATION_CODE)
    after = await client.instance_status()
    # An answer that says connected and holds an error ("already connected") is an answer.
    assert after.connected and after.error == "You are already connected."
    assert dict(after.raw) == {
        "connected": True,
        "error": "You are already connected.",
        "smartphoneConnected": True,
    }


async def test_instance_status_is_decoded_leniently(api: Sandbox, client: pz.PlugzClient) -> None:
    api.then(
        Reply(json={"connected": "true", "smartphoneConnected": 0, "error": "", "new": 1}),
        route="status",
    )
    status = await client.instance_status()
    assert status.connected and status.smartphone_connected is False and status.error is None
    assert status.raw["new"] == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        # An unknown instance can be answered 200 with an error and no `connected`.
        (
            Reply(json={"error": "NOT_FOUND", "message": "Instance not found"}),
            pz.InstanceNotFoundError,
        ),
        (Reply(json={"error": "INTERNAL", "message": "try later"}), pz.APIError),
        (Reply(405, json={"error": "Method Not Allowed"}), pz.MethodNotAllowedError),
        (Reply(415, json={"error": "Unsupported Media Type"}), pz.UnsupportedMediaTypeError),
        (Reply(json={"connected": "maybe"}), pz.ResponseDecodeError),
        (Reply(json=[True]), pz.ResponseDecodeError),
    ],
)
async def test_instance_status_errors_are_the_same_tree(
    api: Sandbox, client: pz.PlugzClient, reply: Reply, error: type[pz.PlugzError]
) -> None:
    api.then(reply, route="status")
    with pytest.raises(error) as info:
        await client.instance_status()
    assert "status" in str(info.value)
    assert len(api.requests(route="status")) == 1  # none of these is retried


async def test_instance_status_of_an_unknown_instance(api: Sandbox) -> None:
    async with pz.PlugzClient(
        CONFIG.instance_id, "wrong-token", CONFIG.client_token, base_url=api.base_url
    ) as stranger:
        with pytest.raises(pz.InstanceNotFoundError, match="status: HTTP 200: NOT_FOUND"):
            await stranger.instance_status()


async def test_the_status_error_text_is_redacted(api: Sandbox, client: pz.PlugzClient) -> None:
    said = f"session of {CONFIG.instance_token} for {CONFIG.client_token} lost"
    api.then(Reply(json={"connected": False, "error": said}), route="status")
    status = await client.instance_status()
    assert status.error == "session of *** for *** lost"
    assert CONFIG.instance_token not in repr(status)


async def test_instance_status_masks_a_secret_the_server_echoes_everywhere_it_keeps_it(
    api: Sandbox, client: pz.PlugzClient
) -> None:
    echoed = f"Client-Token {CLIENT_TOKEN} not allowed"
    api.then(Reply(json={"connected": False, "error": echoed, "note": echoed}), route="status")
    status = await client.instance_status()
    assert status.error == "Client-Token *** not allowed"
    assert CLIENT_TOKEN not in repr(status) and CLIENT_TOKEN not in json.dumps(status.to_dict())
    assert status.raw["note"] == "Client-Token *** not allowed"
