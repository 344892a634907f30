"""The real redis-server the queue's tests run against (plugz_async/testing/_redis_server.py, and the
``redis_server`` / ``redis_url`` fixtures of conftest.py): it answers, it keeps what it
acknowledged through a SIGKILL, it starts each test empty, it listens on loopback only.

Skips without redis-py (the suite without the ``queue`` extra); without redis-server the
fixture skips, or fails under CI.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

pytest.importorskip("redis")

import redis.asyncio as aioredis
import redis_server as rs
from redis_server import INSTALL_HINT, RedisError, RedisServer, require_redis_server

from plugz_async.testing import _redis_server


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test's own, for the tests that kill or stop it."""
    with RedisServer(require_redis_server()) as server:
        yield server


async def test_set_and_get_a_key(redis_url: str) -> None:
    r = aioredis.from_url(redis_url)
    try:
        assert await r.set("plugz:key", "value")
        assert await r.get("plugz:key") == b"value"
        assert await r.dbsize() == 1
    finally:
        await r.aclose()


async def test_each_test_starts_empty(redis_url: str, redis_server: RedisServer) -> None:
    assert redis_server.dbsize() == 0
    r = aioredis.from_url(redis_url, decode_responses=True)
    try:
        await r.set("plugz:left-behind", "1")
    finally:
        await r.aclose()
    assert redis_server.dbsize() == 1  # the next test's redis_url empties it


async def test_flush_empties_every_database(redis_url: str, redis_server: RedisServer) -> None:
    r0 = aioredis.from_url(redis_url)
    r1 = aioredis.from_url(redis_url.rsplit("/", 1)[0] + "/1")
    try:
        await r0.mset({"a": "1", "b": "2"})
        await r1.set("c", "3")
        redis_server.flush()
        assert await r0.dbsize() == 0
        assert await r1.dbsize() == 0
    finally:
        await r0.aclose()
        await r1.aclose()


def test_the_url_is_loopback(redis_server: RedisServer) -> None:
    url = urlsplit(redis_server.url)
    assert url.scheme == "redis"
    assert url.hostname is not None
    assert ipaddress.ip_address(url.hostname).is_loopback
    assert url.port == redis_server.port
    assert url.path == "/0"
    # Bound to loopback only, and nothing but loopback.
    assert redis_server.info("server")["tcp_port"] == str(redis_server.port)
    assert redis_server.command("CONFIG", "GET", "bind") == [b"bind", b"127.0.0.1"]


def test_writes_are_synced_to_the_append_only_file(redis_server: RedisServer) -> None:
    config = redis_server.command("CONFIG", "GET", "a*")
    assert isinstance(config, list)
    pairs = dict(zip(config[::2], config[1::2], strict=True))
    assert pairs[b"appendonly"] == b"yes"
    assert pairs[b"appendfsync"] == b"always"
    assert redis_server.command("CONFIG", "GET", "save") == [b"save", b""]


def test_appendfsync_is_an_option() -> None:
    with RedisServer(require_redis_server(), appendfsync="everysec") as server:
        assert server.command("CONFIG", "GET", "appendfsync") == [b"appendfsync", b"everysec"]
        server.command("SET", "k", "v")
        server.restart()
        assert server.command("GET", "k") == b"v"


def test_without_appendonly_it_keeps_nothing() -> None:
    """What ``demo --queue`` runs: no append-only file, no snapshots; a restart starts empty."""
    with RedisServer(require_redis_server(), appendonly=False) as server:
        assert server.command("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
        assert server.command("CONFIG", "GET", "save") == [b"save", b""]
        server.command("SET", "k", "v")
        server.restart()
        assert server.command("GET", "k") is None


async def test_acknowledged_writes_survive_sigkill_and_restart(own_server: RedisServer) -> None:
    url, port, pid = own_server.url, own_server.port, own_server.pid
    r = aioredis.from_url(url)
    try:
        await r.set("plugz:durable", "kept")
        await r.set("plugz:big", "x" * 100_000)
    finally:
        await r.aclose()

    own_server.kill()
    assert not own_server.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

    own_server.restart()
    assert own_server.command("PING") == b"PONG"
    assert own_server.pid not in (None, pid)
    assert own_server.url == url  # same port: the clients' URL still holds
    r = aioredis.from_url(url, decode_responses=True)
    try:
        assert await r.get("plugz:durable") == "kept"
        assert await r.get("plugz:big") == "x" * 100_000
    finally:
        await r.aclose()


def test_stop_then_restart_keeps_the_data_too(own_server: RedisServer) -> None:
    own_server.command("SET", "k", "v")
    own_server.stop()
    assert not own_server.running
    own_server.restart()
    assert own_server.command("GET", "k") == b"v"


def test_close_ends_the_process_and_removes_its_directory() -> None:
    server = RedisServer(require_redis_server())
    with server:
        directory, pid = server.directory, server.pid
        assert pid is not None
        assert (directory / "redis-server.log").is_file()
        assert server.info_memory() > 0
    assert not server.running
    assert server.pid is None
    assert not directory.exists()


def test_start_takes_another_port_when_its_port_was_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real = _redis_server.free_port
        monkeypatch.setattr(_redis_server, "free_port", lambda: next(ports, None) or real())
        with RedisServer(require_redis_server()) as server:
            assert server.port != taken
            assert server.command("PING") == b"PONG"
            assert "Address already in use" in server.log_path.read_text()


def test_a_server_that_does_not_come_up_raises_with_its_log() -> None:
    false = shutil.which("false")
    if false is None:
        pytest.skip("no `false` executable")
    server = RedisServer(false)
    try:
        with pytest.raises(RedisError, match="exited with status 1"):
            server.start()
        assert not server.running
    finally:
        server.close()


def test_info_memory_is_used_memory_in_bytes(redis_server: RedisServer) -> None:
    before = redis_server.info_memory()
    redis_server.command("SET", "plugz:big", "x" * 1_000_000)
    assert redis_server.info_memory() > before + 900_000
    redis_server.flush()


def test_an_error_reply_raises(redis_server: RedisServer) -> None:
    with pytest.raises(RedisError, match="unknown command"):
        redis_server.command("NO-SUCH-COMMAND")


def test_without_redis_server_the_fixture_skips_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rs, "find_redis_server", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_redis_server()
    assert skipped.value.msg == INSTALL_HINT
    assert "\n" not in INSTALL_HINT


def test_without_redis_server_the_fixture_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rs, "find_redis_server", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set and redis-server is not installed"):
        require_redis_server()


def test_a_test_that_does_not_ask_for_redis_does_not_need_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without redis-server, under CI, a test that does not use the fixture passes; one that
    does fails with the install line."""
    pytester.makeconftest(
        """
        import pytest
        import redis_server as rs

        @pytest.fixture(scope="session")
        def redis_server():
            with pytest.MonkeyPatch.context() as m:  # a machine without redis-server
                m.setattr(rs, "find_redis_server", lambda: None)
                yield rs.RedisServer(rs.require_redis_server())
        """
    )
    pytester.makepyfile(
        """
        def test_plain():
            pass

        def test_redis(redis_server):
            pass
        """
    )
    monkeypatch.setenv("CI", "1")
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function", "-W", "error"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*CI is set and redis-server is not installed*"])
    assert rs.find_redis_server() is not None  # the stand-in is gone
