"""Http1Pool, the client's own HTTP/1.1 (``_http1``), against real servers on loopback.

``RawServer`` is a TCP server of a few lines on 127.0.0.1: it reads each request (the head up
to the empty line, then ``Content-Length`` bytes), records it, and answers with the bytes the
test scripted, written at once or in pieces, then keeps the connection, closes it, or holds it
without answering. Each test states the exact bytes a server sends and asserts the exact
answer (status, headers, body) or the exact error class, and how many connections the server
accepted and saw closed. TLS goes through a ``trustme`` CA, uvloop through a loop of its own,
and the parser alone through a Hypothesis property test that feeds a fake transport a valid
answer cut at random places.

Each way a server's answer can go wrong has a test of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import itertools
import socket
import ssl
import threading
import warnings
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import pytest
import trustme
from helpers import fuzz
from hypothesis import given
from hypothesis import strategies as st

import plugz_async as pz
from plugz_async._http1 import (
    MAX_HEAD_BYTES,
    Answer,
    BodyTooLarge,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    Http1Pool,
    MalformedAnswer,
    Origin,
    ReadTimeout,
    Timeouts,
    WireError,
    _Connection,
)

T = TypeVar("T")

#: The largest body the tests read, unless a test is about the limit.
LIMIT = 64 * 1024
#: Every exchange has a total time, so that a regression fails instead of hanging the suite.
SAFE = Timeouts(total=5.0)

# -- the raw server --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A scripted reply: ``pieces`` written one after another (a tiny pause between two),
    then ``then``: keep the connection for the next request, close it, or hold it (read
    nothing more, answer nothing more) until the client leaves."""

    pieces: tuple[bytes, ...] = ()
    then: Literal["keep", "close", "hold"] = "keep"


CLOSE = Reply(then="close")  # close without answering
HOLD = Reply(then="hold")  # never answer

#: A step of a script: bytes written at once, a list of pieces, or a `Reply`.
Step = bytes | list[bytes] | Reply


def reply_of(step: Step) -> Reply:
    if isinstance(step, Reply):
        return step
    if isinstance(step, bytes):
        return Reply((step,))
    return Reply(tuple(step))


@dataclass(frozen=True)
class Seen:
    """A request as the server read it, and the number of the connection it came on."""

    connection: int
    head: bytes
    body: bytes

    @property
    def raw(self) -> bytes:
        return self.head + self.body

    @property
    def request_line(self) -> str:
        return self.head.decode("latin-1").split("\r\n", 1)[0]

    @property
    def headers(self) -> dict[str, str]:
        """The headers by name, as sent."""
        headers: dict[str, str] = {}
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            if line:
                name, _, value = line.partition(": ")
                headers[name] = value
        return headers


@dataclass
class Peer:
    """One accepted connection; ``left`` is set when the server sees the client close it."""

    number: int
    writer: asyncio.StreamWriter
    left: asyncio.Event = field(default_factory=asyncio.Event)


class RawServer:
    """A TCP server on 127.0.0.1 that answers each request with the next step of its script
    (past the script's end: it closes the connection)."""

    def __init__(
        self, *script: Step, tls: ssl.SSLContext | None = None, pause: float = 0.001
    ) -> None:
        self.script: deque[Step] = deque(script)
        self.requests: list[Seen] = []
        self.peers: list[Peer] = []
        self.port = 0
        self._tls = tls
        self._pause = pause
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def accepted(self) -> int:
        """How many connections the server accepted."""
        return len(self.peers)

    @property
    def origin(self) -> Origin:
        """The server's origin: one object for every exchange (the pool keys its idle
        connections by the `Origin` object; see test_equal_origins_share_connections)."""
        return self._origin

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]
        self._origin = Origin("https" if self._tls else "http", "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
            await asyncio.sleep(0)  # a connection accepted, its handler not yet started
        await self._server.wait_closed()

    async def __aenter__(self) -> RawServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = Peer(len(self.peers) + 1, writer)
        self.peers.append(peer)
        try:
            await self._converse(peer, reader, writer)
        except (OSError, asyncio.IncompleteReadError):  # the client left (reset, or EOF)
            peer.left.set()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _converse(
        self, peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                peer.left.set()
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            self.requests.append(Seen(peer.number, head, body))
            reply = reply_of(self.script.popleft()) if self.script else CLOSE
            for i, piece in enumerate(reply.pieces):
                if i:
                    await asyncio.sleep(self._pause)
                writer.write(piece)
                await writer.drain()
            if reply.then == "close":
                return
            if reply.then == "hold":
                while await reader.read(1 << 16):
                    pass
                peer.left.set()
                return


@contextlib.contextmanager
def served_from_a_thread(*script: Step) -> Iterator[RawServer]:
    """A `RawServer` on an event loop of its own, in a thread: it outlives the test's loops."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = RawServer(*script)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


# -- requests, answers, waiting --------------------------------------------------------------------


def post(origin: Origin, path: str = "/path", body: bytes = b'{"q":1}', *headers: str) -> bytes:
    """A request as the transport builds one."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {origin.host_header}",
        *headers,
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def head(status: str = "200 OK", *headers: str, version: str = "HTTP/1.1") -> bytes:
    """An answer's head: the status line, ``headers``, the empty line."""
    return "\r\n".join([f"{version} {status}", *headers, "", ""]).encode("latin-1")


def ok(
    body: bytes = b"ok", *headers: str, status: str = "200 OK", version: str = "HTTP/1.1"
) -> bytes:
    """An answer with a ``Content-Length`` body."""
    return head(status, f"Content-Length: {len(body)}", *headers, version=version) + body


def chunked(*chunks: bytes, headers: Sequence[str] = (), trailers: Sequence[str] = ()) -> bytes:
    """A chunked answer of ``chunks``, then the last chunk and ``trailers``."""
    parts = [head("200 OK", "Transfer-Encoding: chunked", *headers)]
    parts += [b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks]
    parts.append(b"0\r\n" + "".join(f"{t}\r\n" for t in trailers).encode() + b"\r\n")
    return b"".join(parts)


def pieces_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def fetch(
    pool: Http1Pool,
    server: RawServer,
    request: bytes | None = None,
    *,
    limit: int = LIMIT,
    timeouts: Timeouts = SAFE,
) -> Answer:
    """One exchange with ``server`` (a plain POST unless ``request`` is given)."""
    if request is None:
        request = post(server.origin)
    return await pool.exchange(server.origin, request, limit=limit, timeouts=timeouts)


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait (two seconds at most) until ``check()`` holds."""
    loop = asyncio.get_running_loop()
    until = loop.time() + 2.0
    while not check():
        if loop.time() > until:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.001)


async def left(peer: Peer) -> None:
    """Wait until the server sees the client close ``peer``'s connection."""
    await asyncio.wait_for(peer.left.wait(), 2.0)


@contextlib.asynccontextmanager
async def opened(
    *, limit: int = 100, tls: ssl.SSLContext | None = None, keepalive: float = 15.0
) -> AsyncIterator[Http1Pool]:
    """A pool, closed at the end whatever happens."""
    pool = Http1Pool(limit=limit, ssl=tls, keepalive=keepalive)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def pool() -> AsyncIterator[Http1Pool]:
    async with opened() as pool:
        yield pool


def free_port() -> int:
    """A loopback port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FakeTransport(asyncio.Transport):
    """What a `_Connection` asks of its transport, and nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))


ORIGIN = Origin("http", "127.0.0.1", 8080)
REQUEST = post(ORIGIN)


def fake_connection() -> tuple[_Connection, FakeTransport]:
    """A `_Connection` on a fake transport, in a pool bound to the running loop."""
    pool = Http1Pool()
    pool._loop = asyncio.get_running_loop()
    connection = _Connection(pool, ORIGIN)
    transport = FakeTransport()
    connection.connection_made(transport)
    return connection, transport


# -- origins and the pool's arguments --------------------------------------------------------------


def test_an_origin_shows_its_port_in_the_host_header_only_when_it_is_not_the_default() -> None:
    assert Origin("http", "api.example", None).host_header == "api.example"
    assert Origin("http", "api.example", 80).host_header == "api.example"
    assert Origin("https", "api.example", 443).host_header == "api.example"
    assert Origin("https", "api.example", 8443).host_header == "api.example:8443"
    assert Origin("http", "::1", 8080).host_header == "[::1]:8080"
    assert repr(Origin("https", "127.0.0.1", 1234)) == "Origin(https://127.0.0.1:1234)"
    with pytest.raises(ValueError, match="not an http"):
        Origin("ftp", "api.example", None)


# -- a Content-Length answer; the request on the wire ----------------------------------------------


async def test_a_content_length_answer_is_read_and_the_request_goes_out_byte_for_byte(
    pool: Http1Pool,
) -> None:
    async with RawServer(ok(b'{"ok":true}', "Content-Type: application/json")) as server:
        request = post(server.origin, "/path", b'{"a":1}', "Accept: application/json")
        answer = await fetch(pool, server, request)
    assert answer.status == 200
    assert answer.body == b'{"ok":true}'
    assert dict(answer.headers) == {"content-length": "11", "content-type": "application/json"}
    [seen] = server.requests
    assert seen.raw == request
    assert seen.request_line == "POST /path HTTP/1.1"
    assert seen.headers == {
        "Host": f"127.0.0.1:{server.port}",
        "Accept": "application/json",
        "Content-Length": "7",
    }
    assert seen.body == b'{"a":1}'


# -- keep-alive ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "status", "body", "connections"),
    [
        (ok(b"one"), 200, b"one", 1),
        (ok(b"", status="201 Created"), 201, b"", 1),
        (ok(b"one", "Connection: close"), 200, b"one", 2),
        (ok(b"one", version="HTTP/1.0"), 200, b"one", 2),
        (ok(b"one", "Connection: Keep-Alive", version="HTTP/1.0"), 200, b"one", 1),
    ],
    ids=["http-1.1", "empty-body", "connection-close", "http-1.0", "http-1.0-keep-alive"],
)
async def test_the_next_exchange_reuses_the_connection_only_when_the_answer_allows(
    pool: Http1Pool, first: bytes, status: int, body: bytes, connections: int
) -> None:
    async with RawServer(first, ok(b"two")) as server:
        answer = await fetch(pool, server)
        assert (answer.status, answer.body) == (status, body)
        if connections == 2:
            await left(server.peers[0])  # the client closed it at once
        assert (await fetch(pool, server)).body == b"two"
    assert server.accepted == connections
    assert [seen.connection for seen in server.requests] == [1, connections]


async def test_equal_origins_share_connections(pool: Http1Pool) -> None:
    async with RawServer(ok(b"one"), ok(b"two")) as server:
        for body in (b"one", b"two"):
            origin = Origin("http", "127.0.0.1", server.port)
            answer = await pool.exchange(origin, post(origin), limit=LIMIT, timeouts=SAFE)
            assert answer.body == body
    assert server.accepted == 1


# -- chunked ---------------------------------------------------------------------------------------


CHUNKED_WITH_EXTENSIONS = (
    head("200 OK", "Transfer-Encoding: chunked", "Content-Type: text/plain")
    + b"5;ext=1\r\nhello\r\n"
    + b'A; name="quoted"\r\n, chunked!\r\n'
    + b"0;last\r\nX-Checksum: 42\r\nExpires: 0\r\n\r\n"
)


async def test_a_chunked_answer_with_extensions_and_trailers_is_read(pool: Http1Pool) -> None:
    async with RawServer(CHUNKED_WITH_EXTENSIONS, ok(b"next")) as server:
        answer = await fetch(pool, server)
        assert (await fetch(pool, server)).body == b"next"
    assert answer.status == 200
    assert answer.body == b"hello, chunked!"
    assert answer.headers["Content-Type"] == "text/plain"
    assert "X-Checksum" not in answer.headers  # trailers are read past, not kept
    assert server.accepted == 1


async def test_a_chunked_answer_split_across_many_writes_is_read(pool: Http1Pool) -> None:
    answer_bytes = chunked(b"the first chunk ", b"and ", b"the last one", trailers=["X-T: 1"])
    async with RawServer(pieces_of(answer_bytes, 7), ok(b"next")) as server:
        answer = await fetch(pool, server)
        assert (await fetch(pool, server)).body == b"next"
    assert answer.body == b"the first chunk and the last one"
    assert server.accepted == 1


async def test_a_chunked_answer_without_chunks_is_an_empty_body(pool: Http1Pool) -> None:
    async with RawServer(chunked(), ok(b"next")) as server:
        assert (await fetch(pool, server)).body == b""
        assert (await fetch(pool, server)).body == b"next"
    assert server.accepted == 1


async def test_a_chunked_answer_after_a_content_length_one_on_the_same_connection(
    pool: Http1Pool,
) -> None:
    async with RawServer(ok(b"hello"), chunked(b"world")) as server:
        assert (await fetch(pool, server)).body == b"hello"
        assert (await fetch(pool, server)).body == b"world"


# -- a body that ends when the connection closes ---------------------------------------------------


async def test_a_body_that_ends_when_the_server_closes_is_read_whole(pool: Http1Pool) -> None:
    close_delimited = Reply((head("200 OK"), b"read until ", b"the end"), then="close")
    async with RawServer(close_delimited, ok(b"next")) as server:
        answer = await fetch(pool, server)
        assert (answer.status, answer.body) == (200, b"read until the end")
        assert (await fetch(pool, server)).body == b"next"
    assert server.accepted == 2


async def test_a_transfer_coding_other_than_chunked_is_read_until_the_close(
    pool: Http1Pool,
) -> None:
    async with RawServer(
        Reply((head("200 OK", "Transfer-Encoding: identity") + b"all",), "close")
    ) as server:
        assert (await fetch(pool, server)).body == b"all"


# -- content codings -------------------------------------------------------------------------------

JSON = b'{"available": true, "padding": "' + b"x" * 200 + b'"}'


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(JSON)),
        ("x-gzip", gzip.compress(JSON)),
        (" GZip ", gzip.compress(JSON)),
        ("deflate", zlib.compress(JSON)),
        ("deflate", raw_deflate(JSON)),
        ("identity", JSON),
    ],
    ids=["gzip", "x-gzip", "gzip-any-case", "deflate-zlib", "deflate-raw", "identity"],
)
async def test_a_compressed_body_is_decoded(pool: Http1Pool, coding: str, encoded: bytes) -> None:
    async with RawServer(ok(encoded, f"Content-Encoding: {coding}")) as server:
        answer = await fetch(pool, server)
    assert answer.body == JSON
    assert answer.headers["content-length"] == str(len(encoded))  # as sent, not decoded


async def test_a_chunked_gzip_body_is_decoded(pool: Http1Pool) -> None:
    encoded = gzip.compress(JSON)
    answer_bytes = chunked(*pieces_of(encoded, 50), headers=["Content-Encoding: gzip"])
    async with RawServer(answer_bytes, ok(b"next")) as server:
        assert (await fetch(pool, server)).body == JSON
        assert (await fetch(pool, server)).body == b"next"
    assert server.accepted == 1


async def test_an_unknown_content_coding_is_a_malformed_answer(pool: Http1Pool) -> None:
    async with RawServer(ok(b"\x1b\x03\x00", "Content-Encoding: br"), ok(b"next")) as server:
        with pytest.raises(MalformedAnswer, match="'br', which was not asked for"):
            await fetch(pool, server)
        assert (await fetch(pool, server)).body == b"next"
    assert server.accepted == 2  # not reused after it


async def test_corrupt_gzip_is_a_malformed_answer_caused_by_zlib(pool: Http1Pool) -> None:
    async with RawServer(ok(b"this is not gzip at all", "Content-Encoding: gzip")) as server:
        with pytest.raises(MalformedAnswer, match="gzip content is corrupt") as caught:
            await fetch(pool, server)
    assert isinstance(caught.value.__cause__, zlib.error)


async def test_a_truncated_gzip_body_is_a_malformed_answer(pool: Http1Pool) -> None:
    truncated = gzip.compress(JSON)[:-20]  # its end (and the CRC and length) missing
    async with RawServer(ok(truncated, "Content-Encoding: gzip")) as server:
        with pytest.raises(MalformedAnswer):
            await fetch(pool, server)


# -- interim answers, 204 --------------------------------------------------------------------------


async def test_interim_answers_come_before_the_real_one(pool: Http1Pool) -> None:
    interim = head("100 Continue") + head("103 Early Hints", "Link: </style.css>; rel=preload")
    async with RawServer([interim, ok(b"real", "X-Real: yes")], ok(b"next")) as server:
        answer = await fetch(pool, server)
        assert (await fetch(pool, server)).body == b"next"
    assert (answer.status, answer.body) == (200, b"real")
    assert dict(answer.headers) == {"content-length": "4", "x-real": "yes"}
    assert server.accepted == 1


async def test_an_interim_answer_in_the_same_write_as_the_real_one(pool: Http1Pool) -> None:
    async with RawServer(head("100 Continue") + ok(b"real")) as server:
        assert (await fetch(pool, server)).body == b"real"


async def test_switching_protocols_unasked_is_a_malformed_answer(pool: Http1Pool) -> None:
    switch = head("101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade")
    async with RawServer(switch) as server:
        with pytest.raises(MalformedAnswer, match="switched protocols"):
            await fetch(pool, server)


async def test_204_has_no_body_and_its_connection_is_reused(pool: Http1Pool) -> None:
    async with RawServer(head("204 No Content"), ok(b"next")) as server:
        answer = await fetch(pool, server)
        assert (answer.status, answer.body) == (204, b"")
        assert (await fetch(pool, server)).body == b"next"
    assert server.accepted == 1


async def test_304_has_no_body_even_with_a_content_length(pool: Http1Pool) -> None:
    not_modified = head("304 Not Modified", "Content-Length: 120")
    async with RawServer(not_modified, ok(b"next")) as server:
        assert (await fetch(pool, server)).body == b""
        assert (await fetch(pool, server)).body == b"next"
    assert server.accepted == 1


# -- malformed answers, headers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer_bytes",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/2 200\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nthis line has no colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Space : before the colon\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: continuation\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: no name\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2a\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;ext\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0_5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
    ],
    ids=[
        "not-http",
        "lower-case-version",
        "http-2",
        "no-status-code",
        "header-without-colon",
        "space-before-colon",
        "obsolete-line-folding",
        "empty-header-name",
        "two-content-lengths",
        "content-length-not-a-number",
        "content-length-negative",
        "content-length-empty",
        "chunk-size-not-hex",
        "chunk-size-negative",
        "chunk-size-missing",
        "chunk-not-ending-in-crlf",
        "status-code-of-four-digits",
        "status-code-run-into-the-reason",
        "chunk-size-with-0x",
        "chunk-size-with-a-sign",
        "chunk-size-with-an-underscore",
        "a-transfer-coding-not-asked-for",
        "content-length-of-five-thousand-digits",
    ],
)
async def test_a_malformed_answer_is_refused(pool: Http1Pool, answer_bytes: bytes) -> None:
    async with RawServer(answer_bytes, ok(b"next")) as server:
        with pytest.raises(MalformedAnswer):
            await fetch(pool, server)
        assert (await fetch(pool, server)).body == b"next"
    assert server.accepted == 2  # the connection of a malformed answer is not reused


@pytest.mark.parametrize(
    "answer_bytes",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb9\r\n\r\nx",
        b"HTTP/1.1 2\xb2\xb3 OK\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["content-length", "status-code"],
)
async def test_superscript_digits_are_a_malformed_answer(
    pool: Http1Pool, answer_bytes: bytes
) -> None:
    async with RawServer(answer_bytes) as server:
        with pytest.raises(MalformedAnswer):
            await fetch(pool, server)


async def test_one_content_length_repeated_with_the_same_value_is_accepted(
    pool: Http1Pool,
) -> None:
    async with RawServer(
        head("200 OK", "Content-Length: 3", "Content-Length: 3") + b"abc"
    ) as server:
        assert (await fetch(pool, server)).body == b"abc"


async def test_a_head_longer_than_the_limit_is_a_malformed_answer(pool: Http1Pool) -> None:
    padding = b"".join(b"X-Padding-%05d: %s\r\n" % (i, b"p" * 80) for i in range(800))
    assert len(padding) > MAX_HEAD_BYTES
    long_head = Reply((b"HTTP/1.1 200 OK\r\n", padding), then="hold")  # never ends
    async with RawServer(long_head) as server:
        with pytest.raises(MalformedAnswer, match="head is too long"):
            await fetch(pool, server)
        await left(server.peers[0])


async def test_a_head_longer_than_the_limit_in_one_read_is_a_malformed_answer() -> None:
    padding = b"".join(b"X-Padding-%05d: %s\r\n" % (i, b"p" * 80) for i in range(800))
    connection, _ = fake_connection()
    waiter = connection.send(REQUEST, LIMIT, Timeouts(), None)
    connection.data_received(b"HTTP/1.1 200 OK\r\n" + padding + b"Content-Length: 0\r\n\r\n")
    with pytest.raises(MalformedAnswer):
        waiter.result()


async def test_header_names_are_looked_up_whatever_their_case_and_repeats_are_joined(
    pool: Http1Pool,
) -> None:
    headers = ["Retry-After: 7", "X-Multi: a", "x-multi:b ", "X-MULTI:\tc", "X-Empty:"]
    async with RawServer(ok(b"{}", *headers, status="429 Too Many Requests")) as server:
        answer = await fetch(pool, server)
    assert answer.status == 429
    assert answer.headers.get("retry-after") == answer.headers.get("Retry-After") == "7"
    assert answer.headers["RETRY-AFTER"] == "7"
    assert answer.headers["x-multi"] == "a, b, c"
    assert answer.headers["X-Empty"] == ""
    assert "Retry-after" in answer.headers
    not_a_name: object = 42
    assert not_a_name not in answer.headers
    assert answer.headers.get("missing") is None
    assert answer.headers.get("missing", "default") == "default"
    with pytest.raises(KeyError):
        answer.headers["missing"]
    assert len(answer.headers) == 4
    assert sorted(answer.headers) == ["content-length", "retry-after", "x-empty", "x-multi"]


# -- the body's limit ------------------------------------------------------------------------------


async def test_a_declared_length_over_the_limit_is_refused_before_its_body_comes(
    pool: Http1Pool,
) -> None:
    declared = Reply((head("503 Service Unavailable", "Content-Length: 10000"),), then="hold")
    async with RawServer(declared) as server:
        with pytest.raises(BodyTooLarge) as caught:
            await fetch(pool, server, limit=1000)  # no body comes: it did not wait for one
        await left(server.peers[0])
    assert caught.value.status == 503
    assert str(caught.value) == "the answer (HTTP 503) is larger than the limit"


async def test_a_body_of_exactly_the_limit_is_read(pool: Http1Pool) -> None:
    body = b"b" * 1000
    exact = (ok(body), chunked(body[:600], body[600:]), Reply((head() + body,), "close"))
    async with RawServer(*exact) as server:
        for _ in range(3):
            assert (await fetch(pool, server, limit=1000)).body == body


async def test_a_chunked_body_over_the_limit_is_refused(pool: Http1Pool) -> None:
    async with RawServer(chunked(b"c" * 600, b"c" * 600)) as server:
        with pytest.raises(BodyTooLarge) as caught:
            await fetch(pool, server, limit=1000)
    assert caught.value.status == 200


async def test_a_close_delimited_body_over_the_limit_is_refused(pool: Http1Pool) -> None:
    async with RawServer(Reply((head("200 OK"), b"c" * 600, b"c" * 600), then="close")) as server:
        with pytest.raises(BodyTooLarge):
            await fetch(pool, server, limit=1000)


async def test_gzip_that_inflates_past_the_limit_is_refused(pool: Http1Pool) -> None:
    bomb = gzip.compress(b"\0" * 200_000)
    assert len(bomb) < 1000
    async with RawServer(ok(bomb, "Content-Encoding: gzip", status="201 Created")) as server:
        with pytest.raises(BodyTooLarge) as caught:
            await fetch(pool, server, limit=1000)
    assert caught.value.status == 201


# -- disconnections --------------------------------------------------------------------------------


async def test_a_server_that_closes_before_answering_disconnects(pool: Http1Pool) -> None:
    async with RawServer(CLOSE) as server:
        with pytest.raises(Disconnected) as caught:
            await fetch(pool, server)
    assert isinstance(caught.value, WireError)


async def test_a_server_that_closes_in_the_middle_of_the_head_disconnects(pool: Http1Pool) -> None:
    async with RawServer(Reply((b"HTTP/1.1 200 OK\r\nContent-Le",), then="close")) as server:
        with pytest.raises(Disconnected):
            await fetch(pool, server)


async def test_a_server_that_closes_before_the_content_length_is_reached_disconnects(
    pool: Http1Pool,
) -> None:
    short = Reply((head("200 OK", "Content-Length: 10") + b"hello",), then="close")
    async with RawServer(short) as server:
        with pytest.raises(Disconnected):
            await fetch(pool, server)


async def test_a_server_that_closes_in_the_middle_of_a_chunked_body_disconnects(
    pool: Http1Pool,
) -> None:
    short = Reply((chunked(b"hello")[:-5],), then="close")
    async with RawServer(short) as server:
        with pytest.raises(Disconnected):
            await fetch(pool, server)


async def test_bytes_after_a_complete_answer_keep_its_connection_from_reuse(
    pool: Http1Pool,
) -> None:
    async with RawServer(ok(b"one") + b"garbage", ok(b"two")) as server:
        assert (await fetch(pool, server)).body == b"one"
        assert (await fetch(pool, server)).body == b"two"
    assert server.accepted == 2


async def test_bytes_sent_on_an_idle_connection_close_it(pool: Http1Pool) -> None:
    async with RawServer([ok(b"one"), b"out of turn"], ok(b"two")) as server:
        assert (await fetch(pool, server)).body == b"one"
        await left(server.peers[0])  # the client closed it when the stray bytes came
        assert (await fetch(pool, server)).body == b"two"
    assert server.accepted == 2


# -- timeouts --------------------------------------------------------------------------------------


async def test_the_total_time_running_out_is_a_total_read_timeout(pool: Http1Pool) -> None:
    loop = asyncio.get_running_loop()
    async with RawServer(HOLD, ok(b"after")) as server:
        started = loop.time()
        with pytest.raises(ReadTimeout) as caught:
            await fetch(pool, server, timeouts=Timeouts(total=0.1))
        elapsed = loop.time() - started
        await left(server.peers[0])  # a connection that timed out is closed, never reused
        assert (await fetch(pool, server)).body == b"after"
    assert caught.value.total is True
    assert str(caught.value) == "no answer in the time given"
    assert 0.09 <= elapsed < 0.5
    assert server.accepted == 2


async def test_a_stall_in_the_head_is_a_read_timeout_between_reads(pool: Http1Pool) -> None:
    stall = Reply((b"HTTP/1.1 200 OK\r\n",), then="hold")
    async with RawServer(stall, ok(b"after")) as server:
        with pytest.raises(ReadTimeout) as caught:
            await fetch(pool, server, timeouts=Timeouts(total=5.0, sock_read=0.05))
        await left(server.peers[0])
        assert (await fetch(pool, server)).body == b"after"
    assert caught.value.total is False
    assert str(caught.value) == "nothing read for 0.05 s"
    assert server.accepted == 2


async def test_the_time_between_reads_starts_again_with_every_read(pool: Http1Pool) -> None:
    # Four pieces 30 ms apart: 90 ms in all, more than sock_read, but never 70 ms without one.
    slow = pieces_of(ok(b"0123456789"), 13)
    assert len(slow) == 4
    async with RawServer(slow, pause=0.03) as server:
        answer = await fetch(pool, server, timeouts=Timeouts(total=5.0, sock_read=0.07))
    assert answer.body == b"0123456789"


# -- connecting ------------------------------------------------------------------------------------


async def test_a_refused_connection_is_connect_failed_naming_the_address(pool: Http1Pool) -> None:
    port = free_port()
    origin = Origin("http", "127.0.0.1", port)
    with pytest.raises(ConnectFailed) as caught:
        await pool.exchange(origin, post(origin), limit=LIMIT, timeouts=SAFE)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


# -- the pool's limit ------------------------------------------------------------------------------


async def test_two_exchanges_at_once_in_a_pool_of_one_share_its_one_connection() -> None:
    async with RawServer(ok(b"one"), ok(b"two")) as server, opened(limit=1) as pool:
        answers = await asyncio.gather(fetch(pool, server), fetch(pool, server))
    assert sorted(answer.body for answer in answers) == [b"one", b"two"]
    assert server.accepted == 1


async def test_no_place_in_the_pool_within_the_connect_time_is_a_connect_timeout() -> None:
    async with RawServer(HOLD) as server, opened(limit=1) as pool:
        holder = asyncio.create_task(fetch(pool, server))
        await eventually(lambda: len(server.requests) == 1, "the first request arrives")
        with pytest.raises(ConnectTimeout, match=r"no free connection within 0\.05 s"):
            await fetch(pool, server, timeouts=Timeouts(total=5.0, connect=0.05))
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
    assert server.accepted == 1


async def test_no_place_in_the_pool_within_the_total_time_is_a_total_read_timeout() -> None:
    async with RawServer(HOLD) as server, opened(limit=1) as pool:
        holder = asyncio.create_task(fetch(pool, server))
        await eventually(lambda: len(server.requests) == 1, "the first request arrives")
        with pytest.raises(ReadTimeout) as caught:
            await fetch(pool, server, timeouts=Timeouts(total=0.05))
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
    assert caught.value.total is True


async def test_a_full_pool_closes_an_idle_connection_to_another_origin_to_make_room() -> None:
    async with RawServer(ok(b"a")) as a, RawServer(ok(b"b")) as b, opened(limit=1) as pool:
        assert (await fetch(pool, a)).body == b"a"
        assert (await fetch(pool, b)).body == b"b"
        await left(a.peers[0])


# -- cancellation ----------------------------------------------------------------------------------


async def test_a_cancelled_exchange_aborts_its_connection_and_frees_its_place() -> None:
    async with RawServer(HOLD, ok(b"after")) as server, opened(limit=1) as pool:
        task = asyncio.create_task(fetch(pool, server))
        await eventually(lambda: len(server.requests) == 1, "the request arrives")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await left(server.peers[0])
        assert (await fetch(pool, server)).body == b"after"  # the one place is free again
    assert server.accepted == 2


async def test_an_exchange_cancelled_while_waiting_for_a_place_leaves_the_queue() -> None:
    async with (
        RawServer(Reply((b"HTTP/1.1 200 OK\r\n",), then="hold"), ok(b"third")) as server,
        opened(limit=1) as pool,
    ):
        first = asyncio.create_task(fetch(pool, server))
        await eventually(lambda: len(server.requests) == 1, "the first request arrives")
        second = asyncio.create_task(fetch(pool, server))
        await eventually(lambda: len(pool._waiters) == 1, "the second waits for a place")
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert not pool._waiters
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert (await fetch(pool, server)).body == b"third"
    assert server.accepted == 2


# -- idle connections ------------------------------------------------------------------------------


async def test_a_connection_idle_longer_than_keepalive_is_not_reused() -> None:
    async with RawServer(ok(b"one"), ok(b"two")) as server, opened(keepalive=0.05) as pool:
        assert (await fetch(pool, server)).body == b"one"
        await asyncio.sleep(0.08)
        assert (await fetch(pool, server)).body == b"two"
        await left(server.peers[0])  # the expired one was closed
    assert server.accepted == 2


async def test_an_idle_connection_the_server_closes_is_dropped(pool: Http1Pool) -> None:
    async with RawServer(Reply((ok(b"one"),), then="close"), ok(b"two")) as server:
        assert (await fetch(pool, server)).body == b"one"
        await eventually(lambda: not pool._open, "the pool drops the closed connection")
        assert (await fetch(pool, server)).body == b"two"
    assert server.accepted == 2


# -- closing the pool ------------------------------------------------------------------------------


async def test_closing_the_pool_closes_its_idle_connections_and_refuses_more() -> None:
    async with RawServer(ok(b"one"), ok(b"two")) as server, opened() as pool:
        assert (await fetch(pool, server)).body == b"one"
        await pool.close()
        await left(server.peers[0])
        await pool.close()  # again: nothing to do
        with pytest.raises(WireError) as caught:
            await fetch(pool, server)
    assert type(caught.value) is WireError
    assert str(caught.value) == "the connection pool is closed"
    assert pool.closed
    assert server.accepted == 1
    assert repr(pool) == "Http1Pool(limit=100, open=0, closed=True)"


async def test_closing_the_pool_fails_the_exchange_waiting_for_a_place() -> None:
    async with RawServer(HOLD) as server, opened(limit=1) as pool:
        holder = asyncio.create_task(fetch(pool, server))
        await eventually(lambda: len(server.requests) == 1, "the first request arrives")
        waiting = asyncio.create_task(fetch(pool, server))
        await eventually(lambda: len(pool._waiters) == 1, "the second waits for a place")
        await pool.close()
        with pytest.raises(WireError) as waited:
            await waiting
        with pytest.raises(Disconnected):  # the one in flight: its connection is gone
            await holder
        await left(server.peers[0])
    assert type(waited.value) is WireError
    assert str(waited.value) == "the connection pool is closed"


async def test_closing_the_pool_opens_no_connection_for_the_exchange_waiting_for_a_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    connects: list[object] = []
    create_connection = loop.create_connection

    def counted(*args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        connects.append(args)
        return create_connection(*args, **kwargs)

    monkeypatch.setattr(loop, "create_connection", counted)
    async with RawServer(HOLD) as server, opened(limit=1) as pool:
        holder = asyncio.create_task(fetch(pool, server))
        await eventually(lambda: len(server.requests) == 1, "the first request arrives")
        waiting = asyncio.create_task(fetch(pool, server))
        await eventually(lambda: len(pool._waiters) == 1, "the second waits for a place")
        await pool.close()
        results = await asyncio.gather(holder, waiting, return_exceptions=True)
    assert [type(result) for result in results] == [Disconnected, WireError]
    assert len(connects) == 1


# -- one pool, one event loop after another --------------------------------------------------------


def run_in_a_new_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` in a new loop, then close the loop (as ``asyncio.run`` does)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


@dataclass
class TwoLoops:
    """What `two_loops` saw."""

    bodies: list[bytes]
    accepted: int
    close_error: str | None  # what closing the pool from a loop of its own raised
    leaks: list[str]  # the ResourceWarnings: sockets left open


def two_loops(close_in_second_loop: bool) -> TwoLoops:
    """One pool, an exchange in one loop, then one in another (a notebook's cells, each
    run with ``asyncio.run``); the pool closed at the end of the second, or from a third
    loop. The server lives in a thread, past both loops. Every socket left open is
    collected here, under ``catch_warnings``, so that no ResourceWarning escapes this test."""
    pools = [Http1Pool()]  # in a list: emptied at the end, so that its sockets can be collected
    close_error: str | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with served_from_a_thread(ok(b"first"), ok(b"second")) as server:
            origin = server.origin

            async def exchange(close: bool) -> bytes:
                pool = pools[0]
                answer = await pool.exchange(origin, post(origin), limit=LIMIT, timeouts=SAFE)
                if close:
                    await pool.close()
                return answer.body

            bodies = [
                run_in_a_new_loop(exchange(False)),
                run_in_a_new_loop(exchange(close_in_second_loop)),
            ]
            accepted = server.accepted
            if not close_in_second_loop:
                try:
                    run_in_a_new_loop(pools[0].close())
                except RuntimeError as exc:  # kept as text: its traceback holds the sockets
                    close_error = str(exc)
        pools.clear()
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    return TwoLoops(bodies, accepted, close_error, leaks)


def test_one_pool_serves_one_event_loop_after_another() -> None:
    seen = two_loops(close_in_second_loop=True)
    assert seen.bodies == [b"first", b"second"]
    assert seen.accepted == 2  # a connection of the first loop cannot serve the second


def test_the_connections_of_an_ended_loop_warn_as_asyncio_does() -> None:
    """A connection left open when its loop ended cannot be closed on another loop: the pool
    shuts its socket down and drops it, and asyncio warns of the transport left unclosed
    (the client was not closed on the loop it sent on). Nothing else leaks."""
    leaks = two_loops(close_in_second_loop=True).leaks
    # One connection (the first loop's): its transport, and the socket it holds.
    assert len(leaks) <= 2 and all(leak.startswith("unclosed") for leak in leaks)


def test_a_pool_can_be_closed_from_another_event_loop() -> None:
    seen = two_loops(close_in_second_loop=False)
    assert seen.bodies == [b"first", b"second"]
    assert seen.close_error is None


# -- TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The server's TLS context (a certificate for 127.0.0.1 and localhost) and a client's
    that trusts its CA."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def test_an_exchange_over_tls_keeps_its_connection(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_tls, client_tls = tls
    async with (
        RawServer(chunked(b"one"), ok(b"two"), tls=server_tls) as server,
        opened(tls=client_tls) as pool,
    ):
        assert server.origin.tls
        assert (await fetch(pool, server)).body == b"one"
        assert (await fetch(pool, server)).body == b"two"
    assert server.accepted == 1
    assert server.requests[0].headers["Host"] == f"127.0.0.1:{server.port}"


async def test_the_default_tls_context_refuses_an_untrusted_certificate(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], pool: Http1Pool
) -> None:
    server_tls, _ = tls
    async with RawServer(ok(b"never"), tls=server_tls) as server:
        with pytest.raises(ConnectFailed) as caught:
            await fetch(pool, server)
    assert f"127.0.0.1:{server.port}" in str(caught.value)
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert server.requests == []


# -- uvloop ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_exchanges_and_keep_alive_on_each_kind_of_loop(loop_kind: str) -> None:
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()

    async def scenario() -> RawServer:
        script = (
            chunked(b"o", b"ne"),
            ok(b"two"),
            ok(gzip.compress(b"three"), "Content-Encoding: gzip"),
        )
        async with RawServer(*script) as server, opened() as pool:
            bodies = [(await fetch(pool, server)).body for _ in range(3)]
            assert bodies == [b"one", b"two", b"three"]
            await pool.close()
            await left(server.peers[0])
        return server

    try:
        server = loop.run_until_complete(scenario())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert server.accepted == 1


# -- the parser alone, fed in random pieces --------------------------------------------------------


Framing = Literal["length", "chunked", "close"]
FRAMINGS: tuple[Framing, ...] = ("length", "chunked", "close")


@dataclass(frozen=True)
class WireAnswer:
    """An answer's bytes, and what the parser should make of them."""

    raw: bytes
    status: int
    headers: dict[str, str]
    body: bytes
    framing: Framing


NAMES = ("X-Trace", "x-trace", "Server", "Retry-After", "X-A")
VALUES = st.from_regex(r"[A-Za-z0-9._~/-]{0,12}", fullmatch=True)


def cut(body: bytes, sizes: Sequence[int]) -> list[bytes]:
    """``body`` cut in chunks of ``sizes`` (the rest in one more)."""
    chunks: list[bytes] = []
    at = 0
    for size in sizes:
        if at >= len(body):
            break
        chunks.append(body[at : at + size])
        at += size
    if at < len(body):
        chunks.append(body[at:])
    return chunks


@st.composite
def wire_answers(draw: st.DrawFn) -> WireAnswer:
    status = draw(st.integers(200, 599).filter(lambda s: s not in (204, 304)))
    pairs = draw(st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=4))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(FRAMINGS))
    lines = [f"HTTP/1.1 {status} {draw(st.sampled_from(['Whatever', 'OK', '']))}"]
    expected: dict[str, str] = {}
    for name, value in pairs:
        lines.append(f"{name}: {value}")
        key = name.lower()
        expected[key] = f"{expected[key]}, {value}" if key in expected else value
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
        expected["content-length"] = str(len(body))
        payload = body
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        expected["transfer-encoding"] = "chunked"
        parts = []
        for chunk in cut(body, draw(st.lists(st.integers(1, 64), max_size=8))):
            size = draw(st.sampled_from(["%x", "%X", "%04x"])) % len(chunk)
            extension = draw(st.sampled_from(["", ";x=1", "; name"]))
            parts.append(f"{size}{extension}\r\n".encode() + chunk + b"\r\n")
        trailers = draw(st.lists(st.sampled_from(["X-Sum: 1", "Expires: 0"]), max_size=2))
        parts.append(b"0\r\n" + "".join(f"{t}\r\n" for t in trailers).encode() + b"\r\n")
        payload = b"".join(parts)
    else:
        payload = body
    interim = head("100 Continue") if draw(st.booleans()) else b""
    raw = interim + ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    return WireAnswer(raw, status, expected, body, framing)


@pytest.mark.fuzz
@fuzz(200)
@given(answer=wire_answers(), data=st.data())
async def test_any_valid_answer_cut_anywhere_is_read_whole(
    answer: WireAnswer, data: st.DataObject
) -> None:
    points = sorted(set(data.draw(st.lists(st.integers(1, len(answer.raw) - 1), max_size=12))))
    bounds = [0, *points, len(answer.raw)]
    pieces = [answer.raw[a:b] for a, b in itertools.pairwise(bounds)]
    connection, transport = fake_connection()
    waiter = connection.send(REQUEST, LIMIT, Timeouts(), None)
    assert transport.written == [REQUEST]
    for piece in pieces:
        assert not waiter.done()
        connection.data_received(piece)
    if answer.framing == "close":
        assert not waiter.done()
        connection.eof_received()
    got = waiter.result()
    assert got.status == answer.status
    assert got.body == answer.body
    assert dict(got.headers) == answer.headers
    if answer.framing == "close":
        assert not connection.usable()
        return
    assert connection.usable()
    # The connection serves the next answer too. (A Content-Length one: a chunked one after
    # a Content-Length one fails; see test_a_chunked_answer_after_a_content_length_one...)
    again = connection.send(REQUEST, LIMIT, Timeouts(), None)
    connection.data_received(ok(b"again"))
    assert again.result().body == b"again"
    assert connection.usable()
    connection.abort()


# -- no secret in any error ------------------------------------------------------------------------

SECRETS = ("s3cr3t-TOKEN", "c1ient-SECRET")


def secret_request(origin: Origin) -> bytes:
    return post(
        origin, "/instances/i/token/s3cr3t-TOKEN/x", b'{"ddi":"55"}', "Client-Token: c1ient-SECRET"
    )


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception in its ``__cause__`` and ``__context__`` chains."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        todo += [current.__cause__, current.__context__]
    return found


@dataclass(frozen=True)
class Failure:
    script: tuple[Step, ...]
    error: type[WireError]
    limit: int = LIMIT
    timeouts: Timeouts = SAFE
    tls: bool = False
    server: bool = True


FAILURES = {
    "refused": Failure((), ConnectFailed, server=False),
    "untrusted-certificate": Failure((ok(b"x"),), ConnectFailed, tls=True),
    "malformed": Failure((b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",), MalformedAnswer),
    "corrupt-gzip": Failure((ok(b"not gzip", "Content-Encoding: gzip"),), MalformedAnswer),
    "disconnected": Failure((CLOSE,), Disconnected),
    "timeout": Failure((HOLD,), ReadTimeout, timeouts=Timeouts(total=5.0, sock_read=0.05)),
    "too-large": Failure((ok(b"x" * 100),), BodyTooLarge, limit=10),
}


@pytest.mark.parametrize("kind", list(FAILURES))
async def test_no_error_shows_the_requests_secrets(
    kind: str, tls: tuple[ssl.SSLContext, ssl.SSLContext], pool: Http1Pool
) -> None:
    failure = FAILURES[kind]

    async def provoke() -> None:
        if not failure.server:
            origin = Origin("http", "127.0.0.1", free_port())
            request = secret_request(origin)
            await pool.exchange(origin, request, limit=failure.limit, timeouts=failure.timeouts)
            return
        tls_context = tls[0] if failure.tls else None
        async with RawServer(*failure.script, tls=tls_context) as server:
            request = secret_request(server.origin)
            await fetch(pool, server, request, limit=failure.limit, timeouts=failure.timeouts)

    with pytest.raises(failure.error) as caught:
        await provoke()
    for exc in chain(caught.value):
        for text in (str(exc), repr(exc)):
            for secret in SECRETS:
                assert secret not in text, (type(exc).__name__, text)


# -- the SDK, end to end ---------------------------------------------------------------------------


async def test_the_client_checks_a_number_through_the_lean_pool() -> None:
    encoded = gzip.compress(b'{"available": true}')
    answer_bytes = chunked(
        *pieces_of(encoded, 10),
        headers=["Content-Type: application/json", "Content-Encoding: gzip"],
    )
    async with RawServer(answer_bytes) as server:
        client = pz.PlugzClient(
            "inst",
            "tok",
            "ctok",
            base_url=f"http://127.0.0.1:{server.port}",
            http="lean",
            retry=pz.RetryPolicy.none(),
        )
        async with client:
            availability = await client.check_availability("+55 44 99999-9999")
    assert availability.available is True
    [seen] = server.requests
    assert (
        seen.request_line == "POST /instances/inst/token/tok/mobile/registration-available HTTP/1.1"
    )
    body = pz.PhoneNumber.parse("+55 44 99999-9999").wire_json()
    assert body == b'{"ddi":"55","phone":"44999999999"}'
    assert seen.body == body
    headers = seen.headers
    assert headers.pop("User-Agent").startswith("plugz-async/")
    assert headers == {
        "Host": f"127.0.0.1:{server.port}",
        "Client-Token": "ctok",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Content-Length": str(len(body)),
    }


async def test_chunked_with_a_content_length_too_is_read_chunked_and_not_reused(
    pool: Http1Pool,
) -> None:
    both = chunked(b"hello", headers=["Content-Length: 99"])
    async with RawServer(both, ok(b"next")) as server:
        assert (await fetch(pool, server)).body == b"hello"
        assert (await fetch(pool, server)).body == b"next"
    assert server.accepted == 2  # a message framed two ways: the connection is not trusted


async def test_a_close_mid_body_says_so(pool: Http1Pool) -> None:
    cut = Reply((head("200 OK", "Content-Length: 10") + b"abc",), "close")
    async with RawServer(cut) as server:
        with pytest.raises(Disconnected, match="mid-answer"):
            await fetch(pool, server)


async def test_idle_connections_past_their_time_are_closed_as_others_come_back(
    pool: Http1Pool,
) -> None:
    """Expired idle connections are closed when another connection is put back, oldest
    first, not kept open until the pool closes (or the server closes them)."""
    async with RawServer(ok(b"a"), ok(b"b"), ok(b"c")) as server:
        await asyncio.gather(fetch(pool, server), fetch(pool, server))  # two connections
        assert server.accepted == 2
        oldest, newest = pool._idle[server.origin]
        oldest.idle_since -= pool.keepalive  # as if it had waited that long
        assert (await fetch(pool, server)).body == b"c"  # on the newest, then put back
        assert oldest.closed and not newest.closed
        assert pool._idle[server.origin] == [newest]


async def test_a_folded_header_line_is_unfolded(pool: Http1Pool) -> None:
    async with RawServer(ok(b"{}", "X-Note: one", " two", "\tthree")) as server:
        assert (await fetch(pool, server)).headers["x-note"] == "one two three"


async def test_a_failed_connection_gives_its_place_to_the_next_at_once() -> None:
    """With room for one connection, the exchange waiting behind a refused connect fails
    (or connects) at once, not at its timeout."""
    origin = Origin("http", "127.0.0.1", free_port())
    patient = Timeouts(total=30.0, connect=30.0)
    async with opened(limit=1) as pool:
        started = asyncio.get_running_loop().time()
        outcomes = await asyncio.gather(
            pool.exchange(origin, post(origin), limit=LIMIT, timeouts=patient),
            pool.exchange(origin, post(origin), limit=LIMIT, timeouts=patient),
            return_exceptions=True,
        )
        assert [type(outcome) for outcome in outcomes] == [ConnectFailed, ConnectFailed]
        assert asyncio.get_running_loop().time() - started < 5.0
        assert not pool._open and not pool._connecting


async def test_a_connection_the_server_closes_at_once_fails_and_frees_its_place() -> None:
    async with RawServer(CLOSE, ok(b"next")) as server, opened(limit=1) as pool:
        with pytest.raises(Disconnected):
            await fetch(pool, server)
        assert (await fetch(pool, server)).body == b"next"  # the place came back
        assert len(pool._open) == 1


async def test_closing_the_pool_mid_answer_fails_the_exchange_instead_of_cutting_the_body() -> None:
    """A body that ends when the connection closes must not end when the client closes it."""
    partial = Reply((head("200 OK") + b'{"avail',), then="hold")
    async with RawServer(partial) as server:
        pool = Http1Pool()
        exchange = asyncio.create_task(fetch(pool, server))
        await asyncio.sleep(0.05)  # the request read, the partial body sent and read
        await pool.close()
        with pytest.raises(Disconnected):
            await exchange


def test_an_international_host_goes_on_the_wire_in_its_ascii_form() -> None:
    client = pz.PlugzClient("i", "t", "c", base_url="https://b\u00fccher.example:8443")
    origin = client._transport.origin()
    assert origin.host == "xn--bcher-kva.example"
    assert origin.host_header == "xn--bcher-kva.example:8443"
    assert Origin("https", "xn--bcher-kva.example", 8443) == origin
    assert hash(Origin("https", "xn--bcher-kva.example", 8443)) == hash(origin)
    assert Origin("http", "xn--bcher-kva.example", 8443) != origin


async def test_a_pool_of_no_limit_opens_as_many_as_it_needs() -> None:
    async with RawServer(*[ok(b"x")] * 3) as server, opened(limit=0) as pool:
        await asyncio.gather(*(fetch(pool, server) for _ in range(3)))
        assert server.accepted == 3
    with pytest.raises(ValueError, match="0 \\(none\\) or more"):
        Http1Pool(limit=-1)


async def test_an_exchange_that_keeps_sending_never_starves_one_that_waits() -> None:
    """Room for one connection; one task sends in a loop. An exchange that comes after it
    is served in turn (the connection coming back goes to it), not at its timeout."""
    answers = [ok(b"x")] * 400
    async with RawServer(*answers) as server, opened(limit=1) as pool:
        stop = asyncio.Event()

        async def hog() -> int:
            sent = 0
            while not stop.is_set():
                await fetch(pool, server)
                sent += 1
            return sent

        hogging = asyncio.create_task(hog())
        await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await fetch(pool, server, timeouts=Timeouts(total=5.0, connect=1.0))
        assert answer.body == b"x" and loop.time() - started < 0.5
        stop.set()
        assert await hogging >= 1
        assert server.accepted == 1  # handed over, never a second connection


def test_connections_are_kept_idle_for_some_time() -> None:
    with pytest.raises(ValueError, match="more than 0 s"):
        Http1Pool(keepalive=0)


async def test_exchanges_cancelled_at_every_moment_leave_no_socket_open() -> None:
    """Cancelled while waiting for a place, resolving, connecting, writing or reading: the
    pool's counts come back to nothing held, and no socket is left for the collector."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with RawServer(*[ok(b"x")] * 200) as server:
            pool = Http1Pool(limit=2)
            for i in range(120):
                task = asyncio.create_task(fetch(pool, server))
                for _ in range(i % 24):
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                for idle in pool._idle.values():  # a new connection for each, to cut
                    for connection in list(idle):
                        connection.abort()
            await asyncio.sleep(0.05)
            assert pool._connecting == pool._reserved == 0 and not pool._waiters
            await pool.close()
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_closing_the_pool_ends_a_connect_under_way_at_once() -> None:
    """A TLS handshake with a server that never speaks: closing the pool ends it now, as
    the pool's error, not at the connect's timeout."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    origin = Origin("https", "127.0.0.1", port)
    pool = Http1Pool()
    try:
        exchange = asyncio.create_task(
            pool.exchange(origin, post(origin), limit=LIMIT, timeouts=Timeouts(sock_connect=30))
        )
        await asyncio.sleep(0.05)  # connected, the handshake waiting
        assert pool._attempts
        loop = asyncio.get_running_loop()
        started = loop.time()
        await pool.close()
        with pytest.raises(WireError, match="pool is closed"):
            await exchange
        assert loop.time() - started < 1.0 and not pool._attempts
    finally:
        server.close()
        await server.wait_closed()
