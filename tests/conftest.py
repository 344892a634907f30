from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import CLIENT_TOKEN, CONFIG, INSTANCE_ID, INSTANCE_TOKEN
from redis_server import RedisServer, require_redis_server

import plugz_async as pz
from plugz_async.sandbox import Sandbox, running

pytest_plugins = ["pytester"]

# Every Python process a test starts resolves loopback only too (tests/loopback/).
_GUARD = str(Path(__file__).with_name("loopback"))
sys.path.insert(0, _GUARD)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_GUARD, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)

from loopback_guard import guarded  # noqa: E402

# A suite started as a background job of a shell without job control (a CI script's `&`,
# nohup) inherits SIGINT ignored, and so would every command it starts and then stops with
# SIGINT, as Ctrl-C would: they would run on. Caught here, it is the default in them again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# -- the chaos tests ---------------------------------------------------------------------------

#: The tests marked chaos this run left out (said at its end).
_LEFT_OUT = pytest.StashKey[int]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that wait for real (marked ``chaos``: kills, signals, Redis restarts) are
    ``nox -s chaos``'s (``pytest -m chaos``): a run with no ``-m`` leaves them out, so the
    README's test command stays fast and passes on a busy machine. A test file named on the
    command line keeps them (``pytest tests/test_queue_chaos.py``)."""
    if config.option.markexpr:
        return
    named = {Path(arg.split("::")[0]).resolve() for arg in config.args}
    kept: list[pytest.Item] = []
    left: list[pytest.Item] = []
    for item in items:
        chaos = item.get_closest_marker("chaos") is not None
        (left if chaos and item.path.resolve() not in named else kept).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept
    config.stash[_LEFT_OUT] = len(left)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    left = config.stash.get(_LEFT_OUT, 0)
    if left:
        terminalreporter.write_line(
            f"{left} tests that wait for real (marked chaos) were left out: "
            "python3 -m nox -s chaos runs them"
        )


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches beyond loopback: resolving any other host fails at once.

    (aiohttp resolves every host through ``socket.getaddrinfo``; tests that mock the real
    API's address with aioresponses never resolve it.)
    """
    monkeypatch.setattr(socket, "getaddrinfo", guarded(socket.getaddrinfo))


@pytest.fixture
async def api() -> AsyncIterator[Sandbox]:
    """The sandbox, in this event loop, with this suite's credentials."""
    async with running(CONFIG) as sandbox:
        yield sandbox


@pytest.fixture
def clock() -> pz.FakeClock:
    return pz.FakeClock()


@pytest.fixture
async def client(api: Sandbox, clock: pz.FakeClock) -> AsyncIterator[pz.PlugzClient]:
    async with api.new_client(clock=clock, timeout=5.0, retry=pz.RetryPolicy(jitter=False)) as c:
        yield c


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


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the whole session, on a free loopback port, in a temporary
    directory, writes synced to its append-only file; stopped (and the directory removed) at
    the end of the session, Ctrl-C included.

    Without redis-server the tests that use it skip, with the line that installs it; under CI
    (``CI`` set) they fail instead: CI must run them.
    """
    server = RedisServer(require_redis_server())
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's redis-server, emptied for this test (FLUSHALL): its ``redis://`` URL.

    A server a previous test stopped or killed is started again first, on the same port.
    """
    if not redis_server.running:
        redis_server.start()
    redis_server.flush()
    return redis_server.url
