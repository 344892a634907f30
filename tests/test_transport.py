"""The transport alone: an answer (status, body, headers) becomes the JSON object or the error
it means, with every secret out; ``Retry-After`` in both of its forms; attempt middlewares.

``Transport.decode``, ``parse_retry_after`` and ``through`` are called directly. Only the limit
on the body's size, which applies while an answer is read, goes over the wire: to a small
aiohttp server on loopback. What the client makes of these errors (retries, waits) is
tested in test_retry.py, and over the wire in test_wire.py and test_client.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from helpers import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN, JSON_VALUES, RESPONSE_FIELDS, fuzz
from hypothesis import given
from hypothesis import strategies as st

import plugz_async as pz
from plugz_async._redact import Redactor
from plugz_async._transport import (
    DEFAULT_MAX_BODY_BYTES,
    AttemptMiddleware,
    Send,
    Transport,
    parse_retry_after,
    through,
)

ROUTE = "mobile/registration-available"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)  # where a FakeClock starts


def make_transport(
    clock: pz.Clock | None = None,
    *,
    base_url: str = "http://127.0.0.1:9",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Transport:
    """A transport built the way PlugzClient builds its own."""
    return Transport(
        base_url,
        INSTANCE_ID,
        INSTANCE_TOKEN,
        CLIENT_TOKEN,
        Redactor.of([INSTANCE_TOKEN, CLIENT_TOKEN]),
        clock or pz.FakeClock(),
        "plugz-async/tests",
        max_body_bytes,
    )


def decode(
    status: int,
    body: object = b"",
    headers: Mapping[str, str] | None = None,
    *,
    clock: pz.Clock | None = None,
) -> dict[str, Any]:
    """Decode one answer; a body given as anything but bytes is sent as its JSON."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return make_transport(clock).decode(status, raw, headers or {}, ROUTE)


def api_error(
    status: int,
    body: object = b"",
    headers: Mapping[str, str] | None = None,
    *,
    clock: pz.Clock | None = None,
) -> pz.APIError:
    """The `APIError` an answer decodes to."""
    with pytest.raises(pz.APIError) as info:
        decode(status, body, headers, clock=clock)
    return info.value


def decode_error(status: int, body: bytes) -> pz.ResponseDecodeError:
    """The `ResponseDecodeError` an answer decodes to."""
    with pytest.raises(pz.ResponseDecodeError) as info:
        decode(status, body)
    return info.value


# -- a successful answer is one JSON object ---------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 299])
def test_a_json_object_is_the_answer_as_sent(status: int) -> None:
    answer = {"available": True, "smsWaitSeconds": "30", "brandNew": {"kept": [1, None]}}
    assert decode(status, answer) == answer


@pytest.mark.parametrize("empty", [None, False, ""])
def test_an_empty_error_field_is_not_an_error(empty: object) -> None:
    assert decode(200, {"available": True, "error": empty})["available"] is True


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"available": tru', "is not JSON (HTTP 200)"),
        (b'{"available": true, "smsWait', "is not JSON (HTTP 200)"),
        (b"<html>ok</html>", "is not JSON (HTTP 200)"),
        (b"", "is not JSON (HTTP 200)"),
        (b"\xff\xfe\x00garbage", "is not JSON (HTTP 200)"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "is not JSON (HTTP 200)", id="too-deep"),
        (b"[1, 2]", "should be a JSON object, got list"),
        (b'"ok"', "should be a JSON object, got str"),
        (b"42", "should be a JSON object, got int"),
        (b"null", "should be a JSON object, got NoneType"),
    ],
)
def test_a_2xx_body_that_is_not_a_json_object_is_a_decode_error(body: bytes, says: str) -> None:
    error = decode_error(200, body)
    assert type(error) is pz.ResponseDecodeError
    assert str(error).startswith(f"the answer of {ROUTE} ") and says in str(error)
    assert (error.status, error.route, error.attempts) == (200, ROUTE, 0)
    assert len(error.body_excerpt) <= 200 and "\n" not in error.body_excerpt


def test_an_empty_204_is_a_decode_error_too() -> None:
    # Every route answers a JSON object: an empty success is not one.
    assert decode_error(204, b"").status == 204


def test_the_excerpt_of_an_undecodable_body_is_short_and_on_one_line() -> None:
    error = decode_error(200, b"<html>\n  <p>" + b"maintenance " * 100 + b"</p>\n</html>")
    assert error.body_excerpt.startswith("<html> <p>maintenance maintenance")
    assert len(error.body_excerpt) == 200 and error.body_excerpt.endswith("…")


# -- every status to its error class ----------------------------------------------------------

STATUS_ERRORS: list[tuple[int, type[pz.APIError]]] = [
    (400, pz.BadRequestError),
    (401, pz.AuthenticationError),
    (403, pz.AuthenticationError),
    (404, pz.InstanceNotFoundError),
    (405, pz.MethodNotAllowedError),
    (408, pz.APIError),
    (415, pz.UnsupportedMediaTypeError),
    (422, pz.APIError),
    (429, pz.RateLimitError),
    (500, pz.ServerError),
    (501, pz.ServerError),
    (502, pz.ServerError),
    (503, pz.ServerError),
    (504, pz.ServerError),
    (599, pz.ServerError),
]


@pytest.mark.parametrize(("status", "cls"), STATUS_ERRORS)
def test_each_status_maps_to_its_error_class(status: int, cls: type[pz.APIError]) -> None:
    error = api_error(status, {"error": "Refused", "message": "see the docs"})
    assert type(error) is cls
    assert (error.status, error.error, error.message) == (status, "Refused", "see the docs")
    assert (error.route, error.retry_after, error.attempts) == (ROUTE, None, 0)
    assert str(error) == f"{ROUTE}: HTTP {status}: Refused: see the docs"
    assert repr(error) == f"{cls.__name__}({str(error)!r})"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_an_html_page_from_a_gateway_is_a_server_error_with_an_excerpt(status: int) -> None:
    page = f"<html>\n<head><title>{status} Bad Gateway</title></head>\n<body>nginx</body>\n</html>"
    error = api_error(status, page.encode())
    assert type(error) is pz.ServerError and error.error is None and error.message is None
    excerpt = f"<html> <head><title>{status} Bad Gateway</title></head> <body>nginx</body> </html>"
    assert error.body_excerpt == excerpt  # the page is kept, for whoever looks into it...
    # ...but its markup is not pasted into the message.
    assert str(error) == (
        f"{ROUTE}: HTTP {status}: an HTML error page, from a proxy or gateway in front of the API"
    )


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"<!DOCTYPE html><html><body>Service Unavailable</body></html>", {}),
        (b"  <HTML><TITLE>503</TITLE></HTML>", {}),
        (b"Service Unavailable", {"Content-Type": "text/html; charset=utf-8"}),
    ],
)
def test_an_html_page_is_told_by_its_start_or_its_type(
    body: bytes, headers: dict[str, str]
) -> None:
    error = api_error(503, body, headers)
    assert str(error).endswith(": an HTML error page, from a proxy or gateway in front of the API")
    assert error.body_excerpt


def test_a_long_error_body_is_cut_in_the_message_and_the_excerpt() -> None:
    error = api_error(502, b"upstream failed: " + b"x" * 10_000)
    assert str(error) == f"{ROUTE}: HTTP 502: upstream failed: " + "x" * 63
    assert len(error.body_excerpt) == 200 and error.body_excerpt.endswith("x…")


def test_an_error_with_no_body_says_only_its_status() -> None:
    error = api_error(503, b"")
    assert type(error) is pz.ServerError and str(error) == f"{ROUTE}: HTTP 503"
    assert error.body_excerpt == "" and error.error is None


def test_an_error_status_with_json_that_is_not_an_object_keeps_it_as_an_excerpt() -> None:
    error = api_error(500, [1, 2])
    assert type(error) is pz.ServerError and error.error is None
    assert error.body_excerpt == "[1, 2]" and str(error) == f"{ROUTE}: HTTP 500: [1, 2]"


@pytest.mark.parametrize("status", [300, 301, 302, 303, 304, 307, 308])
def test_a_redirect_is_an_api_error_and_is_not_followed(status: int) -> None:
    error = api_error(status, b"<a href='/elsewhere'>moved</a>", {"Location": "/elsewhere"})
    assert type(error) is pz.APIError and error.status == status
    assert str(error) == f"{ROUTE}: HTTP {status}: unexpected redirect (not followed)"
    assert error.body_excerpt == "<a href='/elsewhere'>moved</a>"


def test_a_redirect_with_an_error_body_says_the_error() -> None:
    error = api_error(302, {"error": "moved"})
    assert type(error) is pz.APIError and str(error) == f"{ROUTE}: HTTP 302: moved"


# -- a 200 with an error body -----------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 404])
@pytest.mark.parametrize("word", ["NOT_FOUND", "not_found"])
def test_not_found_in_the_body_is_instance_not_found(status: int, word: str) -> None:
    error = api_error(status, {"error": word, "message": "Instance not found"})
    assert type(error) is pz.InstanceNotFoundError and error.status == status
    assert (error.error, error.message) == (word, "Instance not found")
    assert str(error) == f"{ROUTE}: HTTP {status}: {word}: Instance not found"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("INTERNAL", "INTERNAL"),
        (True, "true"),
        (1, "1"),
        ("0", "0"),
        ({"code": 7}, '{"code": 7}'),
        (["busy"], '["busy"]'),
    ],
)
def test_a_200_with_another_error_is_an_api_error(value: object, text: str) -> None:
    error = api_error(200, {"available": True, "error": value, "message": 42})
    assert type(error) is pz.APIError
    assert (error.status, error.error, error.message) == (200, text, "42")
    assert str(error) == f"{ROUTE}: HTTP 200: {text}: 42"


def test_a_long_error_field_is_cut_and_flattened() -> None:
    error = api_error(400, {"error": "line one\n\tline two " + "y" * 500})
    assert error.error is not None and error.error.startswith("line one line two y")
    assert len(error.error) == 200 and error.error.endswith("…")


# -- Retry-After -------------------------------------------------------------------------------


def test_a_429_carries_retry_after_in_seconds() -> None:
    error = api_error(429, {"error": "Too Many Requests"}, {"Retry-After": "7"})
    assert type(error) is pz.RateLimitError and error.retry_after == 7.0
    assert str(error) == f"{ROUTE}: HTTP 429: Too Many Requests (retry after 7 s)"


def test_a_429_carries_retry_after_as_an_http_date_from_the_clocks_now() -> None:
    clock = pz.FakeClock()
    date = format_datetime(START + timedelta(seconds=30), usegmt=True)
    assert api_error(429, b"", {"Retry-After": date}, clock=clock).retry_after == 30.0
    clock.advance(12)  # the same date, read 12 s later
    error = api_error(429, b"", {"Retry-After": date}, clock=clock)
    assert error.retry_after == 18.0 and str(error) == f"{ROUTE}: HTTP 429 (retry after 18 s)"
    clock.advance(60)  # a date that has passed: no wait
    assert api_error(429, b"", {"Retry-After": date}, clock=clock).retry_after == 0.0


@pytest.mark.parametrize("header", [{}, {"Retry-After": "soon"}, {"Retry-After": ""}])
def test_a_429_without_a_readable_retry_after_has_none(header: dict[str, str]) -> None:
    error = api_error(429, {"error": "slow down"}, header)
    assert type(error) is pz.RateLimitError and error.retry_after is None
    assert str(error) == f"{ROUTE}: HTTP 429: slow down"


def test_retry_after_is_carried_on_any_error_that_has_one() -> None:
    error = api_error(503, b"<html>busy</html>", {"Retry-After": "120"})
    assert type(error) is pz.ServerError and error.retry_after == 120.0
    assert str(error).endswith("(retry after 120 s)")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("nan", None),
        ("inf", None),
        ("1e400", None),
        ("", None),
        ("soon", None),
        ("0x10", None),
        ("Thu, 01 Jan 2026 00:01:00 GMT", 60.0),
        ("Thu, 01 Jan 2026 02:01:00 +0200", 60.0),
        ("Thu, 01 Jan 2026 00:01:00", 60.0),  # no zone: HTTP dates are GMT
        ("Wed, 31 Dec 2025 00:00:00 GMT", 0.0),
        ("Thu, 32 Jan 2026 00:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, START) == seconds


# -- the Client-Token named in the server's words ---------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": "your client-token is not configured"}),
        (200, {"error": "your client-token is not configured"}),
        (401, {"message": "Client-Token inválido"}),
        (403, {"error": f"Client-Token {CLIENT_TOKEN} not allowed"}),
        (403, {"error": "CLIENT   TOKEN refused"}),
    ],
)
def test_words_naming_the_client_token_are_an_authentication_error_about_it(
    status: int, body: dict[str, str]
) -> None:
    error = api_error(status, body)
    assert isinstance(error, pz.AuthenticationError) and error.status == status
    assert error.credential == "client_token"


def test_the_refused_client_token_is_named_but_not_shown() -> None:
    # The words are judged before redaction masks the secret inside them.
    error = api_error(403, {"error": f"Client-Token {CLIENT_TOKEN} not allowed"})
    assert isinstance(error, pz.AuthenticationError) and error.credential == "client_token"
    assert error.error == "Client-Token *** not allowed"
    assert str(error) == f"{ROUTE}: HTTP 403: Client-Token *** not allowed"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "Unauthorized"}),
        (401, b""),
        (403, {"error": "Forbidden", "message": "invalid token"}),
        (403, b"<html>403 Forbidden</html>"),
    ],
)
def test_a_refusal_that_names_no_client_token_is_about_the_token(status: int, body: object) -> None:
    error = api_error(status, body)
    assert isinstance(error, pz.AuthenticationError) and error.credential == "token"


# -- no secret in any field of an error -------------------------------------------------------

OTHER_TOKEN = "OTHER-instance-token"  # a token the transport was not given
SECRETS = [INSTANCE_TOKEN, CLIENT_TOKEN, OTHER_TOKEN]
PATH = f"/instances/{INSTANCE_ID}/token/{INSTANCE_TOKEN}/{ROUTE}"

LEAKY_ANSWERS: dict[str, tuple[int, object]] = {
    "403 echoing the Client-Token": (403, {"error": f"Client-Token {CLIENT_TOKEN} not allowed"}),
    "200 error body naming both": (
        200,
        {"error": f"bad {CLIENT_TOKEN}", "message": f"see {quote(INSTANCE_TOKEN, safe='')}"},
    ),
    "400 nested error object": (400, {"error": {"token": CLIENT_TOKEN}, "message": [PATH]}),
    "429 naming the token": (429, {"message": quote_plus(INSTANCE_TOKEN)}),
    "502 HTML echoing the URL": (502, f"<html><p>upstream {PATH} failed</p></html>".encode()),
    "404 echoing another token's URL": (404, f"no /instances/x/token/{OTHER_TOKEN}/ here".encode()),
    "broken JSON with the token": (200, f'{{"available": "{INSTANCE_TOKEN}'.encode()),
    "a JSON array of secrets": (200, [INSTANCE_TOKEN, quote(CLIENT_TOKEN)]),
    "HTML with a secret on every line": (
        200,
        "\n".join(f"<p>{s}</p>" for s in [INSTANCE_TOKEN, CLIENT_TOKEN] * 30).encode(),
    ),
}


def forms(secret: str) -> set[str]:
    """The ways a secret can appear in text: as is, and URL-encoded."""
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}


def leaks(error: BaseException) -> list[str]:
    """The texts of ``error`` (its message, repr, args and every attribute) showing a secret."""
    texts = [str(error), repr(error), *map(repr, error.args), *map(repr, vars(error).values())]
    return [text for text in texts for s in SECRETS for form in forms(s) if form in text]


@pytest.mark.parametrize("answer", list(LEAKY_ANSWERS))
def test_no_secret_in_any_field_of_the_error(answer: str) -> None:
    status, body = LEAKY_ANSWERS[answer]
    with pytest.raises(pz.PlugzError) as info:
        decode(status, body, {"Retry-After": "1"})
    assert isinstance(info.value, (pz.APIError, pz.ResponseDecodeError))
    assert leaks(info.value) == []
    assert "***" in repr(vars(info.value))  # the secret was there, and was masked


PLANTED = st.sampled_from(sorted(form for s in (INSTANCE_TOKEN, CLIENT_TOKEN) for form in forms(s)))
WITH_A_SECRET = st.builds(
    lambda before, secret, after: before + secret + after,
    st.text(max_size=20),
    PLANTED,
    st.text(max_size=20),
)


@pytest.mark.fuzz
@fuzz(200)
@given(
    st.sampled_from([200, 302, 400, 401, 403, 404, 429, 500, 502]),
    st.dictionaries(st.sampled_from(RESPONSE_FIELDS), WITH_A_SECRET | JSON_VALUES, max_size=6),
    st.booleans(),
)
def test_no_secret_in_the_error_of_any_answer(
    status: int, fields: dict[str, object], as_json: bool
) -> None:
    body = json.dumps(fields) if as_json else "\n".join(map(str, fields.values()))
    try:
        decode(status, body.encode())
    except pz.PlugzError as error:
        assert leaks(error) == []


def test_no_part_of_a_secret_across_the_excerpts_cut() -> None:
    body = b" " * (4096 - len(INSTANCE_TOKEN) + 1) + INSTANCE_TOKEN.encode()
    error = api_error(502, body)
    assert INSTANCE_TOKEN[:-1] not in str(error) + error.body_excerpt


def test_no_json_escaped_secret_in_the_excerpt() -> None:
    body = json.dumps({"error": INSTANCE_TOKEN}).replace("/", "\\/").encode()
    error = api_error(400, body)
    assert error.error == "***"
    assert INSTANCE_TOKEN.replace("/", "\\/") not in error.body_excerpt


# -- the size limit, applied while the answer is read (over loopback) -------------------------

LIMIT = 64
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answering(body: bytes, *, status: int = 200, chunked: bool = False) -> Handler:
    """A handler answering ``body``, with its length declared or in 16-byte chunks."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        if not chunked:
            return web.Response(status=status, body=body, content_type="application/json")
        response = web.StreamResponse(status=status)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 16):
            await response.write(body[start : start + 16])
        await response.write_eof()
        return response

    return handle


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Transport]:
    """A transport (with a body limit of ``LIMIT`` bytes) to a server answering with ``handler``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        yield make_transport(base_url=str(server.make_url("/")).rstrip("/"), max_body_bytes=LIMIT)


async def send_to(handler: Handler) -> dict[str, Any]:
    async with serving(handler) as transport, aiohttp.ClientSession() as session:
        timeout = aiohttp.ClientTimeout(total=10.0)
        return await transport.send(session, "POST", ROUTE, {"phone": "1"}, timeout)


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
@pytest.mark.parametrize("status", [200, 502])
async def test_a_body_over_the_limit_is_not_read(status: int, chunked: bool) -> None:
    with pytest.raises(pz.ResponseDecodeError) as info:
        await send_to(answering(b" " * (LIMIT + 1), status=status, chunked=chunked))
    assert str(info.value) == f"the answer of {ROUTE} is larger than {LIMIT} bytes; not read"
    assert (info.value.status, info.value.route) == (status, ROUTE)


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
async def test_a_body_of_exactly_the_limit_is_read_and_decoded(chunked: bool) -> None:
    body = b'{"available": true}'.ljust(LIMIT)
    assert await send_to(answering(body, chunked=chunked)) == {"available": True}


async def test_a_read_answer_is_decoded_like_any_other() -> None:
    with pytest.raises(pz.InstanceNotFoundError) as info:
        await send_to(answering(b'{"error": "NOT_FOUND"}'))
    assert info.value.status == 200


# -- attempt middlewares ----------------------------------------------------------------------


def recording(name: str, log: list[str]) -> AttemptMiddleware:
    async def middleware(route: str, send: Send) -> dict[str, Any]:
        log.append(f"{name} {route}")
        try:
            return await send()
        finally:
            log.append(f"{name} done")

    return middleware


async def test_middlewares_run_around_the_send_the_first_outermost() -> None:
    log: list[str] = []

    async def send() -> dict[str, Any]:
        log.append("send")
        return {"available": True}

    names = ["pace", "count", "time"]
    answer = await through([recording(n, log) for n in names], ROUTE, send)
    assert answer == {"available": True}
    assert log == [
        f"pace {ROUTE}",
        f"count {ROUTE}",
        f"time {ROUTE}",
        "send",
        "time done",
        "count done",
        "pace done",
    ]


async def test_one_middleware_alone() -> None:
    log: list[str] = []

    async def send() -> dict[str, Any]:
        return {}

    assert await through([recording("only", log)], ROUTE, send) == {}
    assert log == [f"only {ROUTE}", "only done"]


async def test_each_call_sends_one_attempt_through_every_middleware() -> None:
    log: list[str] = []
    sent: list[int] = []

    async def send() -> dict[str, Any]:
        sent.append(len(sent) + 1)
        return {"attempt": len(sent)}

    middlewares = [recording("a", log), recording("b", log)]
    assert await through(middlewares, ROUTE, send) == {"attempt": 1}
    assert await through(middlewares, ROUTE, send) == {"attempt": 2}
    assert sent == [1, 2] and log.count(f"a {ROUTE}") == log.count(f"b {ROUTE}") == 2


async def test_a_middleware_may_wait_first_and_sees_the_attempts_error() -> None:
    clock = pz.FakeClock()
    seen: list[str] = []

    async def pace(route: str, send: Send) -> dict[str, Any]:
        await clock.sleep(2.0)
        return await send()

    async def watch(route: str, send: Send) -> dict[str, Any]:
        try:
            return await send()
        except pz.PlugzError as error:
            seen.append(type(error).__name__)
            raise

    async def overloaded() -> dict[str, Any]:
        raise pz.RateLimitError("429", status=429, retry_after=7.0)

    with pytest.raises(pz.RateLimitError):
        await through([watch, pace], ROUTE, overloaded)
    assert seen == ["RateLimitError"] and clock.sleeps == [2.0]
