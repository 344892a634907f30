"""The request on the wire, and what the client makes of each kind of answer, with aioresponses
(no server). How the transport decodes an answer is tested on its own in test_transport.py."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core

import plugz_async as pz

# aioresponses answers every request of these tests: nothing leaves the process.
MOCKED = "https://api.plugzapi.com.br"
ID, TOKEN, CLIENT_TOKEN = "inst-1", "tok-SECRET-1", "ct-SECRET-2"
URL = f"{MOCKED}/instances/{ID}/token/{TOKEN}/mobile/registration-available"
OK = {"available": True, "smsWaitSeconds": 0, "voiceWaitSeconds": 0, "waOldWaitSeconds": 0}


class _Written:
    output_size = 0


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.x builds responses without the ``stream_writer`` that
    aiohttp 3.14 requires; give it one (the request is "already sent")."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _Written())
        super().__init__(*args, **kwargs)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Any:
    if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)
    with aioresponses() as m:
        yield m


@pytest.fixture
async def client(clock: pz.FakeClock) -> AsyncIterator[pz.PlugzClient]:
    async with pz.PlugzClient(
        ID, TOKEN, CLIENT_TOKEN, clock=clock, retry=pz.RetryPolicy(jitter=False)
    ) as c:
        yield c


def sent(mocked: Any) -> list[Any]:
    return [call for calls in mocked.requests.values() for call in calls]


async def test_exact_wire_format(mocked: Any, client: pz.PlugzClient) -> None:
    mocked.post(URL, payload=OK)
    await client.check_availability("+55 (44) 99999-9999")
    (call,) = sent(mocked)
    (key,) = mocked.requests
    assert key[0] == "POST" and str(key[1]) == URL
    headers = call.kwargs["headers"]
    assert headers["Client-Token"] == CLIENT_TOKEN
    assert headers["Content-Type"] == "application/json"
    assert json.loads(call.kwargs["data"]) == {"ddi": "55", "phone": "44999999999"}
    assert call.kwargs["allow_redirects"] is False


async def test_zapi_host_works_by_one_setting(mocked: Any, clock: pz.FakeClock) -> None:
    url = f"{pz.ZAPI_BASE_URL}/instances/{ID}/token/{TOKEN}/mobile/registration-available"
    mocked.post(url, payload=OK)
    async with pz.PlugzClient(ID, TOKEN, CLIENT_TOKEN, base_url=pz.ZAPI_BASE_URL + "/") as c:
        assert (await c.check_availability("5544999999999")).available


async def test_path_segments_are_encoded(mocked: Any, clock: pz.FakeClock) -> None:
    mocked.post(
        re.compile(r".*/instances/a%23b/token/t%2Fk%3F/mobile/registration-available$"), payload=OK
    )
    async with pz.PlugzClient("a#b", "t/k?", CLIENT_TOKEN) as c:
        assert (await c.check_availability("5544999999999")).available


STATUS_CASES = [
    (400, {"error": "Invalid body"}, pz.BadRequestError),
    (400, {"error": "your client-token is not configured"}, pz.AuthenticationError),
    (401, {"error": "Unauthorized"}, pz.AuthenticationError),
    (403, {"error": f"Client-Token {CLIENT_TOKEN} not allowed"}, pz.AuthenticationError),
    (404, {"error": "Not Found"}, pz.InstanceNotFoundError),
    (405, {"error": "Method Not Allowed"}, pz.MethodNotAllowedError),
    (415, {"error": "Unsupported Media Type"}, pz.UnsupportedMediaTypeError),
    (422, {"error": "Unprocessable"}, pz.APIError),
    (200, {"error": "NOT_FOUND", "message": "Instance not found"}, pz.InstanceNotFoundError),
    (200, {"error": "something else", "message": "odd"}, pz.APIError),
    (200, {"error": "your client-token is not configured"}, pz.AuthenticationError),
    (501, {"error": "Not Implemented"}, pz.ServerError),
]


@pytest.mark.parametrize(("status", "body", "cls"), STATUS_CASES)
async def test_statuses_map_to_error_classes_without_retry(
    mocked: Any, client: pz.PlugzClient, status: int, body: dict[str, str], cls: type[pz.APIError]
) -> None:
    mocked.post(URL, status=status, payload=body, repeat=True)
    with pytest.raises(cls) as info:
        await client.check_availability("+5544999999999")
    error = info.value
    assert type(error) is cls
    assert error.status == status and error.attempts == 1 and len(sent(mocked)) == 1
    assert error.route == "mobile/registration-available"
    assert (
        error.error is not None
        and CLIENT_TOKEN not in str(error)
        and CLIENT_TOKEN not in repr(error)
    )
    assert CLIENT_TOKEN not in (error.error or "") + (error.message or "") + error.body_excerpt


async def test_error_carries_the_servers_error_and_message(
    mocked: Any, client: pz.PlugzClient
) -> None:
    mocked.post(URL, payload={"error": "NOT_FOUND", "message": "Instance not found"})
    with pytest.raises(pz.InstanceNotFoundError) as info:
        await client.check_availability("+5544999999999")
    assert (info.value.error, info.value.message) == ("NOT_FOUND", "Instance not found")
    assert (
        str(info.value) == "mobile/registration-available: HTTP 200: NOT_FOUND: Instance not found"
    )


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried(
    mocked: Any, client: pz.PlugzClient, clock: pz.FakeClock, status: int
) -> None:
    mocked.post(
        URL, status=status, body="<html><h1>Bad Gateway</h1></html>", content_type="text/html"
    )
    mocked.post(
        URL, status=status, body="<html><h1>Bad Gateway</h1></html>", content_type="text/html"
    )
    mocked.post(URL, payload=OK)
    assert (await client.check_availability("+5544999999999")).available
    assert len(sent(mocked)) == 3 and clock.sleeps == [0.5, 1.0]


async def test_html_from_a_gateway_is_a_server_error_with_an_excerpt(
    mocked: Any, client: pz.PlugzClient
) -> None:
    mocked.post(URL, status=502, body="<html>\n<h1>502 Bad Gateway</h1>\n</html>", repeat=True)
    with pytest.raises(pz.ServerError) as info:
        await client.check_availability("+5544999999999")
    assert (
        info.value.attempts == 3
        and info.value.body_excerpt == "<html> <h1>502 Bad Gateway</h1> </html>"
    )
    assert info.value.error is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"available": tru', "is not JSON"),
        ("<html>ok</html>", "is not JSON"),
        ("[1, 2]", "should be a JSON object, got list"),
        ('"ok"', "should be a JSON object, got str"),
        ("", "is not JSON"),
        (b"\xff\xfe\x00garbage", "is not JSON"),
    ],
)
async def test_bodies_that_are_not_an_object_are_decode_errors(
    mocked: Any, client: pz.PlugzClient, body: str | bytes, message: str
) -> None:
    mocked.post(URL, status=200, body=body, repeat=True)
    with pytest.raises(pz.ResponseDecodeError, match=message) as info:
        await client.check_availability("+5544999999999")
    assert info.value.attempts == 1 and info.value.status == 200


async def test_a_null_error_field_is_not_an_error(mocked: Any, client: pz.PlugzClient) -> None:
    mocked.post(URL, payload={**OK, "error": None})
    assert (await client.check_availability("+5544999999999")).available


async def test_a_retry_after_date_is_read_on_the_clients_clock(
    mocked: Any, client: pz.PlugzClient, clock: pz.FakeClock
) -> None:
    # The client hands its clock (a FakeClock, far from the real date) to the transport.
    date = format_datetime(clock.now() + timedelta(seconds=12), usegmt=True)
    mocked.post(URL, status=429, headers={"Retry-After": "3"})
    mocked.post(URL, status=503, headers={"Retry-After": date})
    mocked.post(URL, payload=OK)
    await client.check_availability("+5544999999999")
    # The date is 12 s after the first attempt; 3 s of them were already waited.
    assert clock.sleeps == [3.0, 9.0]


async def test_connection_errors_are_translated_and_retried(
    mocked: Any, client: pz.PlugzClient
) -> None:
    mocked.post(URL, exception=aiohttp.ServerDisconnectedError())
    mocked.post(URL, exception=aiohttp.ClientPayloadError("cut"))
    mocked.post(URL, exception=aiohttp.ServerDisconnectedError(), repeat=True)
    with pytest.raises(pz.TransportError) as info:
        await client.check_availability("+5544999999999")
    assert info.value.attempts == 3 and isinstance(info.value, ConnectionError)
    assert not isinstance(info.value.__cause__, pz.PlugzError)


async def test_timeouts_become_request_timeout(mocked: Any, client: pz.PlugzClient) -> None:
    mocked.post(URL, exception=aiohttp.SocketTimeoutError(), repeat=True)
    with pytest.raises(pz.RequestTimeout) as info:
        await client.check_availability("+5544999999999", retry=pz.RetryPolicy.none())
    assert isinstance(info.value, TimeoutError) and info.value.attempts == 1


async def test_connect_timeout_is_a_connect_error(mocked: Any, client: pz.PlugzClient) -> None:
    mocked.post(URL, exception=aiohttp.ConnectionTimeoutError(), repeat=True)
    with pytest.raises(pz.ConnectError, match="could not connect"):
        await client.check_availability("+5544999999999", retry=pz.RetryPolicy.none())


async def test_per_call_retry_policy_overrides_the_clients(
    mocked: Any, client: pz.PlugzClient
) -> None:
    mocked.post(URL, status=503, repeat=True)
    with pytest.raises(pz.ServerError) as info:
        await client.check_availability(
            "+5544999999999", retry=pz.RetryPolicy(attempts=5, jitter=False)
        )
    assert info.value.attempts == 5


async def test_invalid_number_sends_nothing(mocked: Any, client: pz.PlugzClient) -> None:
    with pytest.raises(pz.InvalidPhoneNumber):
        await client.check_availability("call me maybe")
    assert sent(mocked) == []


async def test_a_client_made_with_the_defaults_sends_through_the_mock(mocked: Any) -> None:
    """aioresponses in a user's tests sees every request of a client made with the
    defaults: the client always sends through aiohttp."""
    mocked.post(URL, payload=OK)
    async with pz.PlugzClient(ID, TOKEN, CLIENT_TOKEN, base_url=MOCKED) as client:
        assert (await client.check_availability("+55 44 99999-9999")).available
        assert isinstance(client._session, aiohttp.ClientSession)
