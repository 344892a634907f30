from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer
from fakeapi import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN, FakeAPI

import plugz_async as pz


@pytest.fixture
async def api() -> AsyncIterator[FakeAPI]:
    fake = FakeAPI()
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    fake.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        fake.release.set()
        await server.close()


@pytest.fixture
async def refused_client() -> AsyncIterator[pz.PlugzClient]:
    """A client for a loopback port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with pz.PlugzClient(
        INSTANCE_ID,
        INSTANCE_TOKEN,
        CLIENT_TOKEN,
        base_url=f"http://127.0.0.1:{port}",
        clock=pz.FakeClock(),
    ) as c:
        yield c


@pytest.fixture
def clock() -> pz.FakeClock:
    return pz.FakeClock()


@pytest.fixture
async def client(api: FakeAPI, clock: pz.FakeClock) -> AsyncIterator[pz.PlugzClient]:
    async with pz.PlugzClient(
        INSTANCE_ID,
        INSTANCE_TOKEN,
        CLIENT_TOKEN,
        base_url=api.base_url,
        clock=clock,
        timeout=5.0,
        retry=pz.RetryPolicy(jitter=False),
    ) as c:
        yield c
