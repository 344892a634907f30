"""The client sends through aiohttp, so what users hang on aiohttp sees every request:
proxies (given, or the environment's), tracing (OpenTelemetry's instrumentation, for real),
mocks (aioresponses, ``mock.patch.object`` of the session's methods), and aiohttp's DNS
cache. Everything here stays on loopback: the proxy is a forwarding proxy of the test's own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ClassVar
from unittest import mock

import aiohttp
import attrs
import pytest
from aiohttp import web
from aioresponses import aioresponses
from helpers import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN

import plugz_async as pz
from plugz_async.sandbox import Reply, Sandbox

NUMBER = "+55 44 99999-9999"
ROUTE = "registration-available"


# -- a forwarding proxy on loopback ------------------------------------------------------------


@attrs.define
class Proxy:
    """A plain-HTTP forwarding proxy: takes absolute-form requests, checks its
    credentials (when it has some), and sends them on to where they were going."""

    login: str | None = None
    password: str | None = None
    seen: list[dict[str, Any]] = attrs.field(factory=list)
    url: str = ""

    def authorized(self, request: web.Request) -> bool:
        if self.login is None:
            return True
        expected = base64.b64encode(f"{self.login}:{self.password}".encode()).decode()
        return request.headers.get("Proxy-Authorization") == f"Basic {expected}"

    async def forward(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            {
                "url": str(request.url),
                "proxy_authorization": "Proxy-Authorization" in request.headers,
            }
        )
        if not self.authorized(request):
            return web.Response(status=407, text="proxy authentication required")
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "proxy-authorization", "proxy-connection", "connection")
        }
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, request.url, data=await request.read(), headers=headers
            ) as answer,
        ):
            return web.Response(
                status=answer.status, body=await answer.read(), content_type="application/json"
            )


async def serve_proxy(proxy: Proxy) -> web.AppRunner:
    """Serve ``proxy`` on a free loopback port (its ``url`` set); clean the runner up."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    proxy.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return runner


@pytest.fixture
async def proxy_server() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def start(login: str | None = None, password: str | None = None) -> Proxy:
        proxy = Proxy(login=login, password=password)
        runners.append(await serve_proxy(proxy))
        return proxy

    yield start
    for runner in runners:
        await runner.cleanup()


def client_of(api: Sandbox, **options: Any) -> pz.PlugzClient:
    return pz.PlugzClient(
        INSTANCE_ID, INSTANCE_TOKEN, CLIENT_TOKEN, base_url=api.base_url, **options
    )


async def test_a_proxy_given_carries_every_request(
    api: Sandbox, proxy_server: Callable[..., Any]
) -> None:
    proxy = await proxy_server(login="me", password="pr0xy-s3cret")
    async with client_of(api, proxy=proxy.url, proxy_auth=("me", "pr0xy-s3cret")) as client:
        assert (await client.check_availability(NUMBER)).available
        assert "pr0xy-s3cret" not in repr(client) + repr(vars(client))
    assert len(api.requests()) == 1  # through the proxy, to the sandbox
    (hop,) = proxy.seen
    assert hop["proxy_authorization"] and hop["url"].startswith(api.base_url)


async def test_a_proxys_password_never_shows(
    api: Sandbox, proxy_server: Callable[..., Any]
) -> None:
    proxy = await proxy_server(login="me", password="right")
    url = proxy.url.replace("http://", "http://me:wr0ng-pa55@")
    async with client_of(api, proxy=url, retry=pz.RetryPolicy.none()) as client:
        with pytest.raises(pz.APIError) as info:
            await client.check_availability(NUMBER)
    assert info.value.status == 407
    text = str(info.value) + repr(info.value) + repr(vars(info.value))
    assert "wr0ng-pa55" not in text and api.requests() == []


@pytest.mark.parametrize(
    ("env", "through"),
    [
        ({"HTTP_PROXY": "{proxy}"}, True),
        ({"http_proxy": "{proxy}"}, True),
        ({"HTTP_PROXY": "{proxy}", "NO_PROXY": "127.0.0.1"}, False),
        ({"HTTP_PROXY": "{proxy}", "no_proxy": "*"}, False),
        ({"HTTPS_PROXY": "{proxy}"}, False),  # the sandbox is plain http
        ({}, False),
    ],
)
async def test_the_environments_proxy_is_honoured(
    env: dict[str, str],
    through: bool,
    api: Sandbox,
    proxy_server: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = await proxy_server()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(proxy=proxy.url))
    async with client_of(api) as client:
        await client.check_availability(NUMBER)
    assert len(proxy.seen) == (1 if through else 0)
    async with client_of(api, trust_env=False) as client:  # asked not to
        await client.check_availability(NUMBER)
    assert len(proxy.seen) == (1 if through else 0)
    assert len(api.requests()) == 2


def test_a_bad_proxy_in_the_environment_is_named_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://me:s3cret@proxy.example:1080")
    client = pz.PlugzClient(INSTANCE_ID, INSTANCE_TOKEN, CLIENT_TOKEN)
    with pytest.raises(pz.ConfigurationError, match="environment's HTTPS_PROXY") as info:
        client._open()  # the environment is read when the client opens
    assert "s3cret" not in str(info.value)


@contextlib.contextmanager
def proxy_in_a_thread(login: str, password: str) -> Iterator[Proxy]:
    """The forwarding proxy, served from a thread of its own (for the CLI's own loop)."""
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        proxy = Proxy(login=login, password=password)
        runner = await serve_proxy(proxy)
        holder.update(proxy=proxy, stop=asyncio.Event(), loop=asyncio.get_running_loop())
        started.set()
        await holder["stop"].wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield holder["proxy"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)


def test_the_cli_sends_through_its_proxy_and_never_prints_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from plugz_async.cli import main

    with proxy_in_a_thread(login="cli", password="cl1-pr0xy") as proxy:
        url = proxy.url.replace("http://", "http://cli:cl1-pr0xy@")
        code = main(["check", "--sandbox", "--proxy", url, "+55 11 90000-0001"])
        assert code == 0, capsys.readouterr()
        assert len(proxy.seen) == 1 and proxy.seen[0]["proxy_authorization"]
        bad = url.replace("cl1-pr0xy", "wr0ng-one")
        code = main(["check", "--sandbox", "--proxy", bad, "--attempts", "1", "+55 11 90000-0001"])
    out, err = capsys.readouterr()
    assert code != 0 and "407" in out + err
    assert "cl1-pr0xy" not in out + err and "wr0ng-one" not in out + err


# -- tracing: OpenTelemetry's aiohttp instrumentation, for real ------------------------------


@pytest.fixture
def spans() -> Iterator[Any]:
    """OpenTelemetry's aiohttp-client instrumentation, as a service would turn it on, with
    the SDK's ``redact_url`` as its URL filter; the spans it finishes."""
    otel = pytest.importorskip("opentelemetry.instrumentation.aiohttp_client")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = otel.AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider, url_filter=pz.redact_url)
    try:
        yield exporter
    finally:
        instrumentor.uninstrument()


async def test_opentelemetry_sees_one_client_span_per_attempt_and_no_secret(
    api: Sandbox, spans: Any
) -> None:
    from opentelemetry.trace import SpanKind

    api.then(Reply(503, body="busy"), Reply(503, body="busy"), route=ROUTE)
    retry = pz.RetryPolicy(wait_initial=0.001, wait_max=0.001, jitter=False)
    async with client_of(api, retry=retry) as client:  # the defaults: nothing to opt into
        assert (await client.check_availability(NUMBER)).available
    finished = spans.get_finished_spans()
    assert [span.kind for span in finished] == [SpanKind.CLIENT] * 3  # one per attempt
    assert [span.attributes.get("http.status_code") for span in finished] == [503, 503, 200]
    # The trace context went out with every attempt.
    sent = [request["headers"] for request in api.requests()]
    assert len(sent) == 3 and all("traceparent" in headers for headers in sent)
    trace_ids = {f"{span.context.trace_id:032x}" for span in finished}
    assert all(headers["traceparent"].split("-")[1] in trace_ids for headers in sent)
    # The instance token sits in the URL's path: the filter keeps it out of the span.
    shown = repr([(span.name, dict(span.attributes or {})) for span in finished])
    assert "/token/***/mobile/registration-available" in shown
    for secret in (INSTANCE_TOKEN, CLIENT_TOKEN, "tok%2FSECRET"):
        assert secret not in shown


async def test_without_the_url_filter_a_span_would_hold_the_token(api: Sandbox) -> None:
    """Why docs/service.md says to pass ``url_filter=pz.redact_url``."""
    otel = pytest.importorskip("opentelemetry.instrumentation.aiohttp_client")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_config = otel.create_trace_config(tracer_provider=provider)
    async with client_of(api, trace_configs=[trace_config]) as client:
        await client.check_availability(NUMBER)
    (span,) = exporter.get_finished_spans()
    assert "tok%2FSECRET" in repr(dict(span.attributes or {}))


# -- mocks: whatever a user's tests patch is what the client calls -----------------------------


async def test_aioresponses_sees_a_client_made_before_it_started(api: Sandbox) -> None:
    from test_wire import _CompatResponse  # aioresponses 0.7 on aiohttp 3.14

    async with client_of(api) as client:
        await client.check_availability(NUMBER)  # opened, and a real request
        with (
            mock.patch("aioresponses.core.ClientResponse", _CompatResponse),
            aioresponses() as mocked,
        ):
            mocked.post(re.compile(r".*/mobile/registration-available$"), payload={})
            assert not (await client.check_availability(NUMBER)).available
            assert len(mocked.requests) == 1
    assert len(api.requests()) == 1  # the mocked one never reached the server


@pytest.mark.parametrize("method", ["request", "_request"])
async def test_patching_the_sessions_method_catches_every_request(
    method: str, api: Sandbox
) -> None:
    async with client_of(api) as client:
        await client.check_availability(NUMBER)  # the client opened before the patch

        class Answer:
            status = 200
            headers: ClassVar[dict[str, str]] = {}
            content_length = 17

            async def read(self) -> bytes:
                return b'{"available": true}'

            async def __aenter__(self) -> Answer:
                return self

            async def __aexit__(self, *exc: object) -> None:
                return None

            def __await__(self) -> Any:
                async def itself() -> Answer:
                    return self

                return itself().__await__()

        fake = mock.MagicMock(return_value=Answer())
        with mock.patch.object(aiohttp.ClientSession, method, fake):
            assert (await client.check_availability(NUMBER)).available
        assert fake.call_count == 1
    assert len(api.requests()) == 1  # the patched call sent nothing


# -- DNS: aiohttp's resolver cache -------------------------------------------------------------


async def test_a_burst_of_first_calls_looks_the_host_up_once(
    api: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[Any] = []
    real = socket.getaddrinfo

    def counted(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counted)
    base_url = api.base_url.replace("127.0.0.1", "localhost")
    async with pz.PlugzClient(
        INSTANCE_ID, INSTANCE_TOKEN, CLIENT_TOKEN, base_url=base_url, trust_env=False
    ) as client:
        await asyncio.gather(*(client.check_availability(NUMBER) for _ in range(64)))
    assert lookups.count("localhost") == 1
    assert len(api.requests()) == 64


async def test_the_environments_proxy_password_is_masked_for_siblings_too(
    api: Sandbox, proxy_server: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = await proxy_server(login="me", password="right")
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://me:env-s3cret@"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with client_of(api, retry=pz.RetryPolicy.none()) as client:
        sibling = client.for_instance(INSTANCE_ID, INSTANCE_TOKEN)
        for one in (client, sibling):
            with pytest.raises(pz.APIError) as info:
                await one.check_availability(NUMBER)
            assert info.value.status == 407
            shown = str(info.value) + repr(vars(info.value)) + one.redact("env-s3cret")
            assert "env-s3cret" not in shown
    assert len(proxy.seen) == 2 and api.requests() == []
