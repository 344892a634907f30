"""PlugzClient against a real HTTP server on loopback: wire, errors, retries, lifecycle."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import aiohttp
import pytest
from helpers import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN

import plugz_async as pz
from plugz_async._transport import AttemptMiddleware, Send
from plugz_async.sandbox import Reply, Sandbox

NUMBER = "+55 44 99999-9999"


def make(api: Sandbox, **options: Any) -> pz.PlugzClient:
    options.setdefault("clock", pz.FakeClock())
    options.setdefault("retry", pz.RetryPolicy(jitter=False))
    return api.new_client(**options)


async def test_check_availability_end_to_end(client: pz.PlugzClient, api: Sandbox) -> None:
    answer = {
        "available": True,
        "smsWaitSeconds": "30",
        "voiceWaitSeconds": 90.0,
        "waOldWaitSeconds": 0,
        "waOldEligible": False,
        "brandNew": "kept",
    }
    api.then(Reply(json=answer), number="+5544999999999")
    availability = await client.check_availability(NUMBER)
    assert availability.available and availability.sms_wait_seconds == 30.0
    assert availability.voice_wait_seconds == 90.0 and availability.raw["brandNew"] == "kept"
    (seen,) = api.requests()
    assert seen["method"] == "POST"
    assert seen["route"] == "registration-available"
    # The token has / + = in it: it matched only if the path carried it encoded.
    assert seen["instance"] == INSTANCE_ID and seen["auth"] == "ok"
    assert seen["path"] == "/instances/3C0FFEE-instance/token/***/mobile/registration-available"
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["body"] == {"ddi": "55", "phone": "44999999999"}


async def test_accepts_a_phone_number_value(client: pz.PlugzClient, api: Sandbox) -> None:
    number = pz.PhoneNumber(ddi="1", phone="2025550123")
    assert (await client.check_availability(number)).number == number
    assert api.requests()[0]["body"] == {"ddi": "1", "phone": "2025550123"}


async def test_refused_client_token_is_an_authentication_error_without_the_secret(
    api: Sandbox,
) -> None:
    async with pz.PlugzClient(
        INSTANCE_ID,
        INSTANCE_TOKEN,
        "wrong-SECRET-value",
        base_url=api.base_url,
    ) as c:
        with pytest.raises(pz.AuthenticationError) as info:
            await c.check_availability(NUMBER)
    assert info.value.status == 403 and len(api.requests()) == 1
    assert info.value.error == "Client-Token *** not allowed"
    assert "wrong-SECRET-value" not in str(info.value) + repr(info.value)


async def test_unknown_instance_is_instance_not_found_even_with_200(api: Sandbox) -> None:
    async with pz.PlugzClient(
        INSTANCE_ID,
        "another-token",
        CLIENT_TOKEN,
        base_url=api.base_url,
    ) as c:
        with pytest.raises(pz.InstanceNotFoundError) as info:
            await c.check_availability(NUMBER)
    assert info.value.status == 200 and info.value.error == "NOT_FOUND" and len(api.requests()) == 1


async def test_5xx_html_is_retried_then_succeeds(client: pz.PlugzClient, api: Sandbox) -> None:
    api.then(Reply(503, body="<html>busy</html>"), Reply(502, body="<html>bad gateway</html>"))
    assert (await client.check_availability(NUMBER)).available
    assert len(api.requests()) == 3


async def test_dropped_connection_is_a_transport_error_after_retries(
    client: pz.PlugzClient, api: Sandbox
) -> None:
    api.then(*[Reply(drop=True)] * 3)
    with pytest.raises(pz.TransportError) as info:
        await client.check_availability(NUMBER)
    assert info.value.attempts == 3 and len(api.requests()) == 3


async def test_dropped_once_then_answered(client: pz.PlugzClient, api: Sandbox) -> None:
    api.then(Reply(drop=True))
    assert (await client.check_availability(NUMBER)).available
    assert len(api.requests()) == 2


async def test_slow_answer_times_out_per_attempt(api: Sandbox) -> None:
    api.then(Reply(delay=5.0), Reply(delay=5.0))
    async with make(api, timeout=0.05, retry=pz.RetryPolicy(attempts=2, jitter=False)) as c:
        with pytest.raises(pz.RequestTimeout) as info:
            await c.check_availability(NUMBER)
    assert info.value.attempts == 2 and len(api.requests()) == 2
    assert isinstance(info.value, TimeoutError)


async def test_per_call_timeout(client: pz.PlugzClient, api: Sandbox) -> None:
    api.then(Reply(delay=5.0))
    with pytest.raises(pz.RequestTimeout, match=r"within 0\.05 s"):
        await client.check_availability(
            NUMBER, timeout=aiohttp.ClientTimeout(total=0.05), retry=pz.RetryPolicy.none()
        )


async def test_deadline_cuts_the_attempt_timeout(api: Sandbox) -> None:
    api.then(Reply(delay=5.0))
    policy = pz.RetryPolicy(attempts=5, deadline=0.08)
    async with make(api, timeout=30.0, retry=policy, clock=pz.SystemClock()) as c:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(pz.RequestTimeout):
            await c.check_availability(NUMBER)
        # The answer comes after 5 s and an attempt may take 30: the deadline ended the call
        # before either (the bound is the promise's other side, not the scheduler's noise).
        assert loop.time() - started < 5.0


async def test_connection_refused_is_a_connect_error(refused_client: pz.PlugzClient) -> None:
    with pytest.raises(pz.ConnectError) as info:
        await refused_client.check_availability(NUMBER)
    assert info.value.attempts == 3 and isinstance(info.value, ConnectionError)
    assert INSTANCE_TOKEN not in str(info.value)


@pytest.mark.parametrize("chunked", [False, True])
async def test_refuses_to_read_a_body_past_the_limit(api: Sandbox, chunked: bool) -> None:
    api.then(Reply(body="x" * 5000, chunked=chunked))
    async with make(api, max_body_bytes=1000) as c:
        with pytest.raises(pz.ResponseDecodeError, match="larger than 1000 bytes"):
            await c.check_availability(NUMBER)
    assert len(api.requests()) == 1


async def test_redirects_are_not_followed(client: pz.PlugzClient, api: Sandbox) -> None:
    api.then(Reply(302, headers={"Location": "http://127.0.0.1:1/elsewhere"}))
    with pytest.raises(pz.APIError, match="unexpected redirect") as info:
        await client.check_availability(NUMBER)
    assert info.value.status == 302 and len(api.requests()) == 1


async def test_middlewares_run_around_every_attempt_the_clients_own_first(api: Sandbox) -> None:
    seen: list[tuple[str, str, str]] = []

    def watching(name: str) -> AttemptMiddleware:
        async def middleware(route: str, send: Send) -> dict[str, Any]:
            try:
                answer = await send()
            except pz.PlugzError as error:
                seen.append((name, route, type(error).__name__))
                raise
            seen.append((name, route, "ok"))
            return answer

        return middleware

    api.then(Reply(503, body="busy"))
    async with make(api, middlewares=[watching("own")]) as c:
        await c.check_availability(NUMBER, middlewares=[watching("this call")])
        await c.check_availability(NUMBER)
    route = "mobile/registration-available"
    assert seen == [
        ("this call", route, "ServerError"),  # the innermost hears of the attempt first
        ("own", route, "ServerError"),
        ("this call", route, "ok"),  # the retry went through both again
        ("own", route, "ok"),
        ("own", route, "ok"),  # the next call: only the client's own
    ]


async def test_a_waiting_middleware_does_not_carry_an_attempt_past_the_deadline(
    api: Sandbox,
) -> None:
    clock = pz.FakeClock()

    async def slow(route: str, send: Send) -> dict[str, Any]:
        clock.advance(5.0)  # waits longer than the whole deadline
        return await send()

    async with make(api, clock=clock, retry=pz.RetryPolicy(attempts=1, deadline=1.0)) as c:
        with pytest.raises(pz.RequestTimeout, match="no time was left"):
            await c.check_availability(NUMBER, middlewares=[slow])
    assert api.requests() == []


async def test_a_middleware_cannot_send_an_attempt_twice(api: Sandbox) -> None:
    async def twice(route: str, send: Send) -> dict[str, Any]:
        await send()
        return await send()

    async with make(api) as c:
        with pytest.raises(pz.InvalidArgument, match="sent mobile/registration-available twice"):
            await c.check_availability(NUMBER, middlewares=[twice])
    assert len(api.requests()) == 1


# -- lifecycle -----------------------------------------------------------------


async def test_aclose_twice_and_use_after_close(api: Sandbox) -> None:
    client = make(api)
    assert "state=unopened" in repr(client)
    await client.check_availability(NUMBER)  # opens lazily, without async with
    assert "state=open" in repr(client)
    await client.aclose()
    await client.aclose()
    assert client.closed and "state=closed" in repr(client)
    with pytest.raises(pz.ClientClosedError, match="closed"):
        await client.check_availability(NUMBER)
    with pytest.raises(pz.ClientClosedError):
        async with client:
            pass  # pragma: no cover
    assert len(api.requests()) == 1


async def test_resource_warning_when_never_closed(api: Sandbox) -> None:
    client = make(api)
    await client.check_availability(NUMBER)
    session = client._session
    assert session is not None
    with pytest.warns(ResourceWarning, match="never closed"):
        del client
        gc.collect()
    await session.close()


async def test_no_warning_for_a_client_never_used(api: Sandbox) -> None:
    client = make(api)
    del client
    gc.collect()


async def test_a_users_own_session_is_used_and_not_closed(api: Sandbox) -> None:
    async with aiohttp.ClientSession(headers={"X-Trace": "mine"}) as session:
        async with make(api, session=session) as client:
            await client.check_availability(NUMBER)
        assert client.closed and not session.closed
        assert api.requests()[0]["headers"]["X-Trace"] == "mine"


async def test_a_closed_users_session_is_a_clear_error(api: Sandbox) -> None:
    session = aiohttp.ClientSession()
    await session.close()
    client = make(api, session=session)
    with pytest.raises(pz.ClientClosedError, match="session given to this PlugzClient"):
        await client.check_availability(NUMBER)
    with pytest.raises(pz.ClientClosedError, match="session given to this PlugzClient"):
        async with client:
            pass  # pragma: no cover
    assert len(api.requests()) == 0


def test_a_client_belongs_to_the_event_loop_of_its_first_request() -> None:
    """From another loop, it refuses to send or close, and says what to do; it is still
    open, and closes in its own loop."""
    from plugz_async.sandbox import SandboxThread

    first = asyncio.new_event_loop()
    try:
        with SandboxThread() as sandbox:
            client = sandbox.new_client()
            assert first.run_until_complete(client.check_availability(NUMBER)).available

            async def elsewhere() -> None:
                with pytest.raises(pz.WrongEventLoopError, match="belongs to another event loop"):
                    await client.check_availability(NUMBER)
                with pytest.raises(pz.WrongEventLoopError, match="new_client"):
                    client.for_instance("sandbox-instance-2", "sandbox-instance-token-2")
                with pytest.raises(pz.WrongEventLoopError, match="run_until_complete"):
                    await client.aclose()

            asyncio.run(elsewhere())
            assert "state=open" in repr(client)  # still open, to be closed in its loop
            assert first.run_until_complete(client.check_availability(NUMBER)).available
            first.run_until_complete(client.aclose())
            assert client.closed
            assert len(sandbox.requests()) == 2
    finally:
        first.close()


def test_a_client_whose_loop_ended_says_so_and_one_that_keeps_nothing_closes_anywhere() -> None:
    from plugz_async.sandbox import SandboxThread

    async def check(client: pz.PlugzClient) -> bool:
        return (await client.check_availability(NUMBER)).available

    with SandboxThread() as sandbox:
        client = sandbox.new_client(keep_alive=False)
        assert client.connections is not None and not client.connections.keep_alive
        assert asyncio.run(check(client))
        with pytest.raises(pz.WrongEventLoopError, match=r"has ended \(asyncio.run returned"):
            asyncio.run(check(client))
        asyncio.run(client.aclose())  # no connection was kept: nothing of the old loop's
        assert client.closed
        gc.collect()  # an unclosed socket would warn here (an error in this suite)


def test_a_client_whose_loop_runs_in_another_thread_is_closed_there() -> None:
    import threading

    from plugz_async.sandbox import SandboxThread

    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        with SandboxThread() as sandbox:
            client = sandbox.new_client(keep_alive=False)
            asyncio.run_coroutine_threadsafe(client.check_availability(NUMBER), loop).result(10)
            with pytest.raises(pz.WrongEventLoopError, match="running in another thread"):
                asyncio.run(client.aclose())
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(10)
            assert client.closed
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
        loop.close()


async def test_a_client_that_keeps_no_connection_opens_one_a_request(api: Sandbox) -> None:
    opened = 0

    async def count(*_: Any) -> None:
        nonlocal opened
        opened += 1

    tracing = aiohttp.TraceConfig()
    tracing.on_connection_create_end.append(count)
    for keep_alive, connections in ((True, 1), (False, 2)):
        opened = 0
        async with make(api, keep_alive=keep_alive, trace_configs=[tracing]) as client:
            await client.check_availability(NUMBER)
            await client.check_availability(NUMBER)
            assert client.connections is not None and client.connections.in_flight == 0
        assert opened == connections, keep_alive
    with pytest.raises(pz.ConfigurationError, match="keep-alive"):
        make(api, keep_alive=False, connections=pz.Connections())


async def cancel_mid_flight(client: pz.PlugzClient, api: Sandbox) -> None:
    """Start a check the server holds, and cancel it once the server has it."""
    api.then(Reply(delay=5.0))
    task = asyncio.create_task(client.check_availability(NUMBER))
    await api.wait_for_requests(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelling_mid_flight_releases_the_connection(api: Sandbox) -> None:
    connector = aiohttp.TCPConnector(limit=1)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        make(api, session=session, timeout=2.0) as client,
    ):
        await cancel_mid_flight(client, api)
        # With a pool of one, a leaked connection would block this call.
        assert (await client.check_availability(NUMBER)).available
    assert len(api.requests()) == 2


async def test_cancelling_with_an_own_session_then_closing_warns_nothing(api: Sandbox) -> None:
    client = make(api)
    await cancel_mid_flight(client, api)
    await client.aclose()


# -- configuration -------------------------------------------------------------


def test_from_env_reads_the_variables(api: Sandbox) -> None:
    env = {
        "PLUGZ_INSTANCE_ID": "i",
        "PLUGZ_INSTANCE_TOKEN": "t",
        "PLUGZ_CLIENT_TOKEN": "c",
        "PLUGZ_BASE_URL": "http://127.0.0.1:9/",
    }
    client = pz.PlugzClient.from_env(env)
    assert client.base_url == "http://127.0.0.1:9" and client.instance_id == "i"
    assert pz.PlugzClient.from_env({**env, "PLUGZ_BASE_URL": ""}).base_url == pz.DEFAULT_BASE_URL


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLUGZ_INSTANCE_ID", "i")
    monkeypatch.setenv("PLUGZ_INSTANCE_TOKEN", "t")
    monkeypatch.setenv("PLUGZ_CLIENT_TOKEN", "c")
    monkeypatch.delenv("PLUGZ_BASE_URL", raising=False)
    assert pz.PlugzClient.from_env(timeout=3).base_url == pz.DEFAULT_BASE_URL


def test_from_env_names_every_missing_variable() -> None:
    with pytest.raises(pz.ConfigurationError) as info:
        pz.PlugzClient.from_env({"PLUGZ_INSTANCE_ID": "i", "PLUGZ_CLIENT_TOKEN": " "})
    assert (
        str(info.value) == "missing environment variables PLUGZ_INSTANCE_TOKEN, PLUGZ_CLIENT_TOKEN"
    )
    with pytest.raises(
        pz.ConfigurationError, match=r"^missing environment variable PLUGZ_CLIENT_TOKEN$"
    ):
        pz.PlugzClient.from_env({"PLUGZ_INSTANCE_ID": "i", "PLUGZ_INSTANCE_TOKEN": "t"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"instance_token": ""}, "instance_token must be a non-empty string"),
        ({"client_token": "has space"}, "client_token must not contain spaces"),
        ({"instance_id": None}, "instance_id must be a non-empty string"),
        ({"base_url": "ftp://example.org"}, "must be an http"),
        ({"base_url": "api.plugzapi.com.br"}, "must be an http"),
        ({"base_url": "https://h/?x=1"}, "query"),
        ({"base_url": "https://me:s3cret@api.example"}, "must not carry a user name or a pass"),
        ({"base_url": "https://api..example"}, "is not a valid name"),
        ({"base_url": f"https://{'a' * 64}.example"}, "is not a valid name"),
        ({"timeout": 0}, "timeout must be a positive"),
        ({"timeout": "5"}, "timeout must be a positive"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    options = {"instance_id": "i", "instance_token": "t", "client_token": "c", **kwargs}
    with pytest.raises(pz.ConfigurationError, match=message) as info:
        pz.PlugzClient(**options)
    assert isinstance(info.value, ValueError)
    assert "s3cret" not in str(info.value)


def test_repr_and_redact_hide_secrets() -> None:
    client = pz.PlugzClient("inst", "tok-SECRET", "ct-SECRET")
    assert "SECRET" not in repr(client)
    assert client.redact("url /token/tok-SECRET/ and ct-SECRET") == "url /token/***/ and ***"


async def test_the_suite_cannot_reach_the_real_api() -> None:
    # The autouse guard in conftest.py: the default host is refused before any connection.
    client = pz.PlugzClient("instance", "token-1234", "client-5678", retry=pz.RetryPolicy.none())
    async with client:
        with pytest.raises(pz.ConnectError, match=r"api\.plugzapi\.com\.br:443") as info:
            await client.check_availability("+55 11 90000-0001")
    cause = info.value.__cause__
    assert cause is not None
    assert "tests stay on loopback" in str(cause.__cause__ or cause)


# -- how the client sends: through aiohttp, always ---------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ssl": True}, "ssl must be an ssl.SSLContext"),
        ({"max_connections": -1}, "max_connections must be a whole number, 0 for no limit"),
        ({"max_connections": 2.5}, "max_connections must be a whole number"),
        ({"proxy": "socks5://127.0.0.1:1080"}, "proxy must be an http"),
        ({"proxy": "not a url"}, "proxy must be an http"),
        ({"proxy_auth": ("u", "p")}, "proxy_auth= needs a proxy="),
        ({"proxy": "http://127.0.0.1:3128", "proxy_auth": "u:p"}, r"\(login, password\) pair"),
        (
            {"proxy": "http://u:p@127.0.0.1:3128", "proxy_auth": ("u", "p")},
            "has a user name already",
        ),
    ],
)
def test_the_way_to_send_is_checked_when_the_client_is_made(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(pz.ConfigurationError, match=message):
        pz.PlugzClient(INSTANCE_ID, INSTANCE_TOKEN, CLIENT_TOKEN, **options)


def ssl_context() -> Any:
    import ssl

    return ssl.create_default_context()


@pytest.mark.parametrize(
    "options",
    [
        {"ssl": ssl_context()},
        {"trace_configs": [aiohttp.TraceConfig()]},
        {"proxy": "http://127.0.0.1:3128"},
        {"proxy": "http://127.0.0.1:3128", "proxy_auth": ("login", "password")},
    ],
)
@pytest.mark.parametrize("given", ["session", "connections"])
async def test_what_a_session_or_pool_of_yours_carries_is_not_given_twice(
    options: dict[str, Any], given: str
) -> None:
    """Never silently ignored: the session's (or pool's) own settings would win, and the
    ones given here would be lost without a word."""
    async with aiohttp.ClientSession() as session:
        pool: Any = {"session": session, "connections": pz.Connections()}[given]
        settings: dict[str, Any] = {given: pool, **options}
        with pytest.raises(pz.ConfigurationError, match="carries its own trace_configs, proxy"):
            pz.PlugzClient(INSTANCE_ID, INSTANCE_TOKEN, CLIENT_TOKEN, **settings)
        with pytest.raises(pz.ConfigurationError, match="a session or a connection pool, not both"):
            pz.PlugzClient(
                INSTANCE_ID,
                INSTANCE_TOKEN,
                CLIENT_TOKEN,
                session=session,
                connections=pz.Connections(),
            )


async def test_clients_of_many_instances_share_one_pool_and_never_close_it(api: Sandbox) -> None:
    """A pool of one's own (a worker's, a service's): every client sends through its one
    session, closing a client leaves it open, and closing the pool ends them all."""
    pool = pz.Connections(max_connections=4)
    first = make(api, connections=pool)
    second = make(api, connections=pool)
    await first.check_availability(NUMBER)
    await second.check_availability(NUMBER)
    assert first._session is second._session is pool.open(api.base_url)
    await first.aclose()
    await second.check_availability(NUMBER)  # the pool is still open
    assert not pool.closed
    await pool.aclose()
    with pytest.raises(pz.ClientClosedError, match="connection pool of this PlugzClient is closed"):
        await second.check_availability(NUMBER)
    await second.aclose()
    assert len(api.requests()) == 3
    assert all(r["headers"].get("Client-Token") for r in api.requests())


async def test_a_pool_takes_the_headers_of_its_first_client(api: Sandbox) -> None:
    """The clients of one account share their headers as the pool's defaults: none of them
    merges headers per request. One of another account sends its own."""
    pool = pz.Connections()
    first, second = make(api, connections=pool), make(api, connections=pool)
    other = pz.PlugzClient(
        INSTANCE_ID,
        INSTANCE_TOKEN,
        "another-account-token",
        base_url=api.base_url,
        connections=pool,
        retry=pz.RetryPolicy(attempts=1),
    )
    await first.check_availability(NUMBER)
    await second.check_availability(NUMBER)
    with pytest.raises(pz.AuthenticationError):  # the sandbox knows one account
        await other.check_availability(NUMBER)
    session = pool.open(api.base_url)
    assert first._transport.own_session is second._transport.own_session is session
    assert other._transport.own_session is None
    assert [r["auth"] for r in api.requests()][-1] != "ok"  # its own token went
    for client in (first, second, other):
        await client.aclose()
    await pool.aclose()


async def test_what_goes_on_the_wire(api: Sandbox) -> None:
    async with make(api) as client:
        await client.check_availability(NUMBER)
        await client.confirm_device_transfer()  # a GET, without a body
    post, get = api.requests()[-2:]
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["Content-Length"] == str(len(b'{"ddi":"55","phone":"44999999999"}'))
    assert post["headers"]["User-Agent"].startswith("plugz-async/")
    assert "Content-Length" not in get["headers"] and "Cookie" not in get["headers"]


async def test_a_sibling_shares_the_connections_and_their_end(api: Sandbox) -> None:
    parent = make(api)
    sibling = parent.for_instance(INSTANCE_ID, INSTANCE_TOKEN)
    async with parent:
        await parent.check_availability(NUMBER)
        await sibling.check_availability(NUMBER)
        assert sibling._session is parent._session
    with pytest.raises(pz.ClientClosedError, match="connection pool of this PlugzClient is closed"):
        await sibling.check_availability(NUMBER)
    await sibling.aclose()  # never closes what it shares
    assert len(api.requests()) == 2


async def test_https_with_a_tls_context_of_yours() -> None:
    """The client speaks TLS, checks the server's name, and takes the context given."""
    import ssl

    import trustme
    from aiohttp import web

    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    async def available(request: web.Request) -> web.Response:
        assert request.secure and request.headers["Client-Token"] == CLIENT_TOKEN
        return web.json_response({"available": True, "smsWaitSeconds": 5})

    app = web.Application()
    app.router.add_post("/instances/{i}/token/{t}/mobile/registration-available", available)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = runner.addresses[0][1]
    base_url = f"https://127.0.0.1:{port}"
    try:
        options: dict[str, Any] = {"base_url": base_url}
        async with pz.PlugzClient(
            INSTANCE_ID, INSTANCE_TOKEN, CLIENT_TOKEN, ssl=client_context, **options
        ) as client:
            assert (await client.check_availability(NUMBER)).sms_wait_seconds == 5
        # Without the context, the system's authorities refuse this certificate.
        async with pz.PlugzClient(
            INSTANCE_ID, INSTANCE_TOKEN, CLIENT_TOKEN, retry=pz.RetryPolicy.none(), **options
        ) as client:
            with pytest.raises(pz.ConnectError, match="CERTIFICATE_VERIFY_FAILED") as info:
                await client.check_availability(NUMBER)
            assert INSTANCE_TOKEN not in str(info.value) + repr(info.value)
    finally:
        await runner.cleanup()


def test_the_client_runs_on_uvloop() -> None:
    """uvicorn's loop when it is installed: the client, the sandbox and a bulk run on it."""
    uvloop = pytest.importorskip("uvloop")
    from plugz_async.sandbox import running

    async def main() -> tuple[bool, int]:
        async with running() as sandbox:
            available = (await sandbox.client.check_availability(NUMBER)).available
            items = [item async for item in sandbox.client.check_many([NUMBER] * 20)]
        return available, len(items)

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(main()) == (True, 20)
    finally:
        loop.close()
