"""HTTP/1.1 on pooled keep-alive connections: the client's own way to the API.

The API needs little of HTTP: a ``POST`` (or ``GET``) with a small JSON body, and an
answer's status, a header or two and a JSON body. aiohttp's ``ClientSession`` does much
more for every request (a request object, URL and header merging, a cookie jar, tracing,
compression, redirects, a response object and its stream), and that was two thirds of a
check's CPU (docs/performance.md). This module sends bytes the transport built once per
route, and reads the answer with a small parser on an ``asyncio.Protocol``.

What it takes in an answer is all of HTTP/1.1 a server may send: a ``Content-Length``
body, a chunked body (with trailers), a body that ends when the connection closes,
``gzip`` or ``deflate`` content, interim ``1xx`` answers, ``Connection: close`` and
HTTP/1.0. What it refuses (a malformed head, an unknown content coding, an answer larger
than the limit) is a `WireError` whose text holds no part of the request: the request's
path carries the instance token, so it never appears in an error.

Connections are kept per origin and reused last-in first-out; one idle for ``keepalive``
seconds is not reused (and is closed as others come back), well before servers close
theirs (60 s and more), so that a request is seldom written on a connection the server is
closing. A connection that failed, timed out or whose request was cancelled is never
reused: the state of its stream is unknown. When the pool is full, exchanges wait their
turn (see `Http1Pool`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import socket
import ssl as ssl_module
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, cast

import aiohappyeyeballs

__all__ = [
    "Answer",
    "BodyTooLarge",
    "ConnectFailed",
    "ConnectTimeout",
    "Disconnected",
    "Headers",
    "Http1Pool",
    "Limits",
    "MalformedAnswer",
    "Origin",
    "ReadTimeout",
    "Timeouts",
    "WireError",
]

#: The longest answer head (status line and headers) read; longer is malformed.
MAX_HEAD_BYTES = 64 * 1024
#: Seconds an idle connection is kept (aiohttp keeps them 15 s too).
KEEPALIVE = 15.0


class WireError(Exception):
    """A request failed on the way: the connection, or an answer that could not be read."""


class ConnectFailed(WireError):
    """No connection could be made (refused, unreachable, TLS refused, name unknown)."""


class ConnectTimeout(WireError):
    """No connection (or no free place in the pool) within the time to connect."""


class ReadTimeout(WireError):
    """The answer did not come (or stopped coming) in time."""

    def __init__(self, message: str, *, total: bool) -> None:
        super().__init__(message)
        #: Whether the request's total time ran out (else: the time between reads).
        self.total = total


class MalformedAnswer(WireError):
    """The server's answer is not HTTP/1.1 the client can read."""


class BodyTooLarge(WireError):
    """The answer's body is larger than the limit; it was not read."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the answer (HTTP {status}) is larger than the limit")
        self.status = status


class Disconnected(WireError):
    """The server closed the connection before its answer was complete."""


class Origin:
    """Where requests go: scheme, host and port, and the ``Host`` header they carry."""

    __slots__ = ("host", "host_header", "port", "tls")

    def __init__(self, scheme: str, host: str, port: int | None) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) origin: {scheme!r}")
        self.tls = scheme == "https"
        self.host = host
        default = 443 if self.tls else 80
        self.port = default if port is None else port
        shown = f"[{host}]" if ":" in host else host
        self.host_header = shown if self.port == default else f"{shown}:{self.port}"

    def __repr__(self) -> str:
        return f"Origin({'https' if self.tls else 'http'}://{self.host_header})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Origin) and (self.tls, self.host, self.port) == (
            other.tls,
            other.host,
            other.port,
        )

    def __hash__(self) -> int:
        return hash((self.tls, self.host, self.port))


class Limits(Protocol):
    """The limits of one request, read as aiohttp's ``ClientTimeout`` names them (which is
    one: the transport passes the client's own, with no copy per request)."""

    @property
    def total(self) -> float | None: ...
    @property
    def connect(self) -> float | None: ...
    @property
    def sock_connect(self) -> float | None: ...
    @property
    def sock_read(self) -> float | None: ...


class Timeouts:
    """The limits of one request, in seconds (``None``: no limit), as aiohttp's
    ``ClientTimeout`` names them: ``total`` for all of it, ``connect`` for a place in the
    pool and a connection, ``sock_connect`` for the connection alone, and ``sock_read``
    between two reads of the answer."""

    __slots__ = ("connect", "sock_connect", "sock_read", "total")

    def __init__(
        self,
        total: float | None = None,
        connect: float | None = None,
        sock_connect: float | None = None,
        sock_read: float | None = None,
    ) -> None:
        self.total = total
        self.connect = connect
        self.sock_connect = sock_connect
        self.sock_read = sock_read


class Headers(Mapping[str, str]):
    """An answer's headers, looked up by name whatever its case (repeated ones joined
    with ``", "``)."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items  # keys lower-case

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._items.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Answer:
    """A whole answer: status, headers and the body (decoded from its content coding)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def _digits(text: str) -> bool:
    """Whether ``text`` is ASCII digits (``str.isdigit`` takes "²" too, which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def _tokens(value: str | None) -> set[str]:
    return {part.strip().lower() for part in value.split(",")} if value else set()


def _decode_content(coding: str | None, body: bytes, limit: int, status: int) -> bytes:
    if not coding or coding.strip().lower() == "identity":
        return body
    coding = coding.strip().lower()
    if coding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif coding == "deflate":
        # "deflate" is zlib-wrapped by the standard; some servers send it raw.
        wbits = zlib.MAX_WBITS if body[:1] and body[0] & 0x0F == 8 else -zlib.MAX_WBITS
        decoder = zlib.decompressobj(wbits)
    else:
        raise MalformedAnswer(f"the answer is encoded as {coding!r}, which was not asked for")
    try:
        decoded = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise MalformedAnswer(f"the answer's {coding} content is corrupt") from exc
    if len(decoded) > limit:
        raise BodyTooLarge(status)
    if body and not decoder.eof:
        raise MalformedAnswer(f"the answer's {coding} content is cut short")
    return decoded


class _Connection(asyncio.Protocol):
    """One connection, and the parser of the answer it is waiting for."""

    def __init__(self, pool: Http1Pool, origin: Origin) -> None:
        self._pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._limit = 0
        self._sock_read: float | None = None
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        # The answer being read.
        self._status = 0
        self._headers: Headers | None = None
        self._keep_alive = True
        self._framing = ""  # "length", "chunked" or "close" once the head is read
        self._remaining = 0
        self._chunks: list[bytes] = []
        self._size = 0

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not a subclass of asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing asked: a server that talks out of turn
            self.abort()
            return
        self._buffer += data
        try:
            if self._framing:
                self._read_body()
            else:
                self._read_head()
        except WireError as exc:
            self._fail(exc)
            return
        if self._sock_read is not None and self._waiter is not None:
            self._arm()

    def eof_received(self) -> bool:
        if self._waiter is not None:
            if self._framing == "close":
                self._keep_alive = False
                self._finish(b"".join(self._chunks))
            elif self._status:
                self._fail(Disconnected("the server closed the connection mid-answer"))
            else:
                self._fail(Disconnected("the server closed the connection before answering"))
        self.abort()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None:
            if self._framing == "close" and exc is None:
                self._keep_alive = False
                self._finish(b"".join(self._chunks))
            else:
                self._fail(Disconnected("the connection was lost before the answer was complete"))
        self._closed()

    # -- one exchange ---------------------------------------------------------------------

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def send(
        self, request: bytes, limit: int, timeouts: Limits, deadline: float | None
    ) -> asyncio.Future[Answer]:
        """Write ``request``; the future gets its answer, or the `WireError` it met."""
        assert self.transport is not None
        loop = self._pool.loop
        waiter: asyncio.Future[Answer] = loop.create_future()
        self._waiter = waiter
        self._limit = limit
        self._sock_read = timeouts.sock_read
        self._deadline = deadline
        self._status = 0
        self._headers = None
        self._framing = ""
        self._remaining = 0
        self._chunks = []
        self._size = 0
        if deadline is not None or self._sock_read is not None:
            self._arm()
        self.transport.write(request)
        return waiter

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = self._pool.loop
        when, total = self._deadline, True
        if self._sock_read is not None:
            gap = loop.time() + self._sock_read
            if when is None or gap < when:
                when, total = gap, False
        assert when is not None
        self._timer = loop.call_at(when, self._time_out, total)

    def _time_out(self, total: bool) -> None:
        self._timer = None
        if total:
            self._fail(ReadTimeout("no answer in the time given", total=True))
        else:
            self._fail(ReadTimeout(f"nothing read for {self._sock_read} s", total=False))

    def _fail(self, exc: WireError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def _finish(self, body: bytes) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter, self._waiter = self._waiter, None
        assert self._headers is not None
        try:
            body = _decode_content(
                self._headers.get("content-encoding"), body, self._limit, self._status
            )
        except WireError as exc:
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
            self.abort()
            return
        self._chunks = []  # not kept while the connection waits
        if self._buffer or not self._keep_alive:
            self.abort()  # bytes past the answer, or the server said it closes: not reused
        if waiter is not None and not waiter.done():
            waiter.set_result(Answer(self._status, self._headers, body))

    # -- the parser -------------------------------------------------------------------------

    def _read_head(self) -> None:
        while True:
            buffer = self._buffer
            end = buffer.find(b"\r\n\r\n")
            if end > MAX_HEAD_BYTES or (end < 0 and len(buffer) > MAX_HEAD_BYTES):
                raise MalformedAnswer("the answer's head is too long")
            if end < 0:
                return
            lines = buffer[:end].decode("latin-1").split("\r\n")
            del buffer[: end + 4]
            version, _, rest = lines[0].partition(" ")
            code = rest[:3]
            if (
                version not in ("HTTP/1.1", "HTTP/1.0")
                or not _digits(code)
                or len(code) != 3
                or rest[3:4] not in ("", " ")
            ):
                raise MalformedAnswer("the answer does not start with an HTTP/1.x status line")
            status = int(code)
            items: dict[str, str] = {}
            name = ""
            for line in lines[1:]:
                if line[:1] in (" ", "\t") and name:  # an obsolete folded line: unfolded
                    items[name] += " " + line.strip(" \t")
                    continue
                name, colon, value = line.partition(":")
                if not colon or not name or name[-1] in " \t" or name[0] in " \t":
                    raise MalformedAnswer("the answer has a malformed header line")
                name = name.lower()
                value = value.strip(" \t")
                items[name] = f"{items[name]}, {value}" if name in items else value
            if 100 <= status < 200:
                if status == 101:
                    raise MalformedAnswer("the server switched protocols unasked")
                continue  # an interim answer: the real one follows
            break
        self._status = status
        headers = self._headers = Headers(items)
        connection = _tokens(items.get("connection"))
        self._keep_alive = (
            "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
        )
        coding = items.get("transfer-encoding")
        if status in (204, 304):
            self._framing = "length"
            self._remaining = 0
        elif coding is not None:
            # The client asks for no transfer coding: chunked is read, "identity" (from
            # RFC 2616) means none, and any other is refused (RFC 9112 6.1).
            codings = [part.strip().lower() for part in coding.split(",")]
            codings = [part for part in codings if part not in ("", "identity")]
            if codings not in ([], ["chunked"]):
                raise MalformedAnswer(f"the answer's transfer coding {coding!r} is not read")
            self._framing = "chunked" if codings else "close"
            if "content-length" in items or version == "HTTP/1.0":
                self._keep_alive = False  # framed two ways, or chunked in 1.0: not trusted
        elif "content-length" in headers:
            lengths = {part.strip() for part in items["content-length"].split(",")}
            length = lengths.pop()
            if lengths or not _digits(length) or len(length) > 18:
                raise MalformedAnswer("the answer's Content-Length is malformed")
            self._remaining = int(length)
            if self._remaining > self._limit:
                raise BodyTooLarge(status)
            self._framing = "length"
        else:
            self._framing = "close"
        self._read_body()

    def _read_body(self) -> None:
        buffer = self._buffer
        if self._framing == "length":
            if len(buffer) < self._remaining:
                return
            body = bytes(buffer[: self._remaining])
            del buffer[: self._remaining]
            self._finish(body)
        elif self._framing == "chunked":
            self._read_chunks()
        else:  # until the connection closes
            self._take(bytes(buffer))
            buffer.clear()

    def _take(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise BodyTooLarge(self._status)
        self._chunks.append(chunk)

    def _read_chunks(self) -> None:
        buffer = self._buffer
        while True:
            if self._remaining:  # inside a chunk: its data, then CRLF
                if len(buffer) < self._remaining + 2:
                    return
                if buffer[self._remaining : self._remaining + 2] != b"\r\n":
                    raise MalformedAnswer("a chunk of the answer does not end with CRLF")
                self._take(bytes(buffer[: self._remaining]))
                del buffer[: self._remaining + 2]
                self._remaining = 0
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise MalformedAnswer("a chunk size line of the answer is too long")
                return
            size_text = bytes(buffer[:end]).split(b";", 1)[0].strip(b" \t")
            if not size_text or size_text.strip(b"0123456789abcdefABCDEF") or len(size_text) > 16:
                raise MalformedAnswer("a chunk size of the answer is not hexadecimal")
            size = int(size_text, 16)
            if size:
                if self._size + size > self._limit:
                    raise BodyTooLarge(self._status)
                del buffer[: end + 2]
                self._remaining = size
                continue
            # The last chunk: trailers (ignored) up to an empty line.
            after = buffer[end + 2 : end + 4]
            if after == b"\r\n":
                del buffer[: end + 4]
            else:
                trailers_end = buffer.find(b"\r\n\r\n", end) if len(after) == 2 else -1
                if trailers_end > MAX_HEAD_BYTES or len(buffer) > MAX_HEAD_BYTES + end:
                    raise MalformedAnswer("the answer's trailers are too long")
                if trailers_end < 0:
                    return
                del buffer[: trailers_end + 4]
            self._finish(b"".join(self._chunks))
            return

    # -- closing --------------------------------------------------------------------------

    def abort(self) -> None:
        """Close now, without a goodbye (the connection is not reused). An answer still
        awaited fails: cut short here, it must not pass for a whole one."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(Disconnected("the connection was closed before the answer"))
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self._closed()

    def _closed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.closed:
            self.closed = True
            self._pool._forget(self)


class Http1Pool:
    """Keep-alive connections to the API's origin(s), at most ``limit`` open at once.

    ``exchange`` sends one request (bytes the caller built) and returns its `Answer`, or
    raises a `WireError`. Every connection belongs to the event loop it was made on: a
    pool serves one loop.

    When the pool is full, exchanges wait their turn, first come first served: a connection
    coming back goes to the first one waiting for its origin (or is closed to make room
    for the first one waiting for another), a place freed is kept for the first one
    waiting, and a new exchange queues behind them. An exchange that keeps sending never
    starves one that waits.
    """

    def __init__(
        self,
        *,
        limit: int = 100,
        ssl: ssl_module.SSLContext | None = None,
        keepalive: float = KEEPALIVE,
    ) -> None:
        if limit < 0:
            raise ValueError("a pool's limit is 0 (none) or more")
        if not keepalive > 0:
            raise ValueError("connections are kept idle for more than 0 s")
        self.limit: float = limit or math.inf
        self.keepalive = keepalive
        self._ssl = ssl
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._connecting = 0
        #: Places freed and kept for the exchange woken to take them.
        self._reserved = 0
        #: The exchanges waiting, first first: each gets a connection of its origin, or
        #: None (a place kept for it), or the pool's WireError.
        self._waiters: collections.deque[tuple[Origin, asyncio.Future[_Connection | None]]] = (
            collections.deque()
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Counts the loops served: a connect of an earlier loop does not touch the counts.
        self._generation = 0
        #: Connects under way (cancelled when the pool closes).
        self._attempts: set[asyncio.Task[_Connection]] = set()
        self.closed = False

    def __repr__(self) -> str:
        return f"Http1Pool(limit={self.limit}, open={len(self._open)}, closed={self.closed})"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    async def exchange(
        self, origin: Origin, request: bytes, *, limit: int, timeouts: Limits
    ) -> Answer:
        """Send ``request`` to ``origin`` and read its answer (a body of ``limit`` bytes at
        most)."""
        if self.closed:
            raise WireError("the connection pool is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._rebind(loop)
        deadline = None if timeouts.total is None else loop.time() + timeouts.total
        connection = None if self._queue() else self._reuse(origin, loop.time())
        if connection is None:
            connection = await self._connect(origin, timeouts, deadline)
        try:
            answer = await connection.send(request, limit, timeouts, deadline)
        except BaseException:
            connection.abort()  # failed, timed out or cancelled: its stream is unknown
            raise
        self._release(connection)
        return answer

    def _release(self, connection: _Connection) -> None:
        """A connection whose exchange is over: to the first exchange waiting, or idle."""
        if not connection.usable():
            return
        while self._waiters:
            origin, waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            if origin == connection.origin:
                self._waiters.popleft()
                waiter.set_result(connection)  # handed over, still busy
            else:
                connection.abort()  # room for another origin: its place goes to the waiter
            return
        now = connection.idle_since = self.loop.time()
        idle = self._idle.setdefault(connection.origin, [])
        idle.append(connection)
        while idle and now - idle[0].idle_since >= self.keepalive:  # the oldest first
            idle.pop(0).abort()

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve ``loop`` from now on: the connections of the loop before cannot be used on
        this one (``asyncio.run`` called twice with one client, say), and are dropped,
        with what waited or connected there."""
        self._generation += 1
        self._waiters.clear()  # futures of the loop before: never to be set
        self._attempts.clear()
        self._connecting = self._reserved = 0
        for connection in list(self._open):
            _drop(connection)
        self._idle.clear()
        self._loop = loop

    def _reuse(self, origin: Origin, now: float) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.usable() and now - connection.idle_since < self.keepalive:
                return connection
            connection.abort()
        return None

    def _full(self) -> bool:
        return len(self._open) + self._connecting + self._reserved >= self.limit

    def _queue(self) -> bool:
        """Whether exchanges are waiting (those that left are dropped from the front)."""
        waiters = self._waiters
        while waiters and waiters[0][1].done():
            waiters.popleft()
        return bool(waiters)

    async def _connect(
        self, origin: Origin, timeouts: Limits, deadline: float | None
    ) -> _Connection:
        loop = self.loop
        limits = [t for t in (timeouts.connect,) if t is not None]
        if deadline is not None:
            limits.append(deadline - loop.time())
        until = loop.time() + min(limits) if limits else None
        while self._queue() or self._full():  # a place in the pool, in turn
            if not self._waiters and self._close_idle_elsewhere(origin):
                continue
            given = await self._wait_for_a_place(origin, until, deadline, timeouts)
            if given is None:
                break  # a place kept for this exchange: connect
            if given.usable():
                return given
            given.abort()  # closed while handed over: its place goes to the next
        generation = self._generation
        self._connecting += 1
        try:
            limits = [t for t in (timeouts.sock_connect,) if t is not None]
            if until is not None:
                limits.append(until - loop.time())
            wait = max(0.0, min(limits)) if limits else None
            connection = await self._open_connection(origin, wait, deadline, timeouts)
        except BaseException:
            if generation == self._generation:
                self._connecting -= 1
                self._wake()  # its place is free again
            raise
        if generation != self._generation:  # made on a loop the pool has left
            connection.abort()
            raise WireError("the connection pool moved to another event loop")
        self._connecting -= 1
        if self.closed:
            connection.abort()
            self._wake()
            raise WireError("the connection pool is closed")
        if not connection.usable():  # the server closed it as it was made
            self._wake()
            raise Disconnected("the server closed the connection as soon as it was made")
        self._open.add(connection)
        return connection

    async def _wait_for_a_place(
        self, origin: Origin, until: float | None, deadline: float | None, timeouts: Limits
    ) -> _Connection | None:
        """Wait in turn for a connection of ``origin`` (returned) or a place (None: kept for
        this exchange, which is to connect now). A timer, not ``wait_for``, bounds the wait,
        so that what was given is never lost to a timeout or a cancellation in the same
        moment: it is passed on."""
        loop = self.loop
        waiter: asyncio.Future[_Connection | None] = loop.create_future()
        entry = (origin, waiter)
        self._waiters.append(entry)
        timer = None if until is None else loop.call_at(until, _expire, waiter)
        try:
            given = await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._pass_on(waiter.result())  # given, but cancelled before taking it
            elif not self._full():
                self._wake()  # leaving empty-handed: the next may have a free place
            if isinstance(exc, asyncio.TimeoutError):  # set by the timer alone
                raise self._timed_out(deadline, timeouts) from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if entry in self._waiters:
                self._waiters.remove(entry)
        if given is None:
            self._reserved -= 1  # the place is this exchange's now
            if self.closed:
                raise WireError("the connection pool is closed")
        return given

    def _pass_on(self, given: _Connection | None) -> None:
        if given is None:
            self._reserved -= 1
            self._wake()
        else:
            self._release(given)

    async def _open_connection(
        self, origin: Origin, wait: float | None, deadline: float | None, timeouts: Limits
    ) -> _Connection:
        """A new connection to ``origin`` within ``wait`` seconds. The attempt runs as a
        task watched with ``asyncio.wait``, so that a cancellation is never swallowed, and a
        connection made after its caller left is closed."""
        attempt = self.loop.create_task(self._dial(origin))
        self._attempts.add(attempt)
        attempt.add_done_callback(self._attempts.discard)
        try:
            done, _ = await asyncio.wait((attempt,), timeout=wait)
        except BaseException:
            _abandon(attempt)
            raise
        if not done:
            _abandon(attempt)
            raise self._timed_out(deadline, timeouts, connecting=wait)
        if attempt.cancelled():  # the pool closed under it
            raise WireError("the connection pool is closed")
        try:
            return attempt.result()
        except (OSError, UnicodeError) as exc:  # ssl.SSLError, socket.gaierror; a bad name
            raise ConnectFailed(f"{origin.host}:{origin.port}: {exc}") from exc

    async def _dial(self, origin: Origin) -> _Connection:
        """Resolve, connect (IPv6 and IPv4 raced: happy eyeballs, as aiohttp does it, on
        any loop), then TLS. The socket is closed if anything after the connect fails or
        is cancelled."""
        loop = self.loop
        infos = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
        sock = await aiohappyeyeballs.start_connection(
            infos, happy_eyeballs_delay=0.25, interleave=1, loop=loop
        )
        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(self, origin),
                sock=sock,
                ssl=(self._ssl or _default_ssl()) if origin.tls else None,
                server_hostname=origin.host if origin.tls else None,
            )
        except BaseException:
            sock.close()
            raise
        return connection

    def _timed_out(
        self, deadline: float | None, timeouts: Limits, *, connecting: float | None = None
    ) -> WireError:
        if deadline is not None and self.loop.time() >= deadline - 1e-3:
            return ReadTimeout("no answer in the time given", total=True)
        if connecting is not None:
            return ConnectTimeout(f"no connection within {connecting:.3g} s")
        return ConnectTimeout(f"no free connection within {timeouts.connect} s")

    def _close_idle_elsewhere(self, origin: Origin) -> bool:
        """Close the idle connection to another origin that waited longest, to make room."""
        oldest: _Connection | None = None
        for other, idle in self._idle.items():
            if (
                other != origin
                and idle
                and (oldest is None or idle[0].idle_since < oldest.idle_since)
            ):
                oldest = idle[0]
        if oldest is None:
            return False
        self._idle[oldest.origin].remove(oldest)
        oldest.abort()
        return True

    def _forget(self, connection: _Connection) -> None:
        if connection in self._open:
            self._open.discard(connection)
            idle = self._idle.get(connection.origin)
            if idle and connection in idle:
                idle.remove(connection)
            self._wake()

    def _wake(self) -> None:
        """A place was freed: keep it for the first exchange waiting, if one is."""
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                self._reserved += 1
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every connection; the pool sends no more. Safe to call more than once."""
        self.closed = True
        waiters, self._waiters = self._waiters, collections.deque()
        for _, waiter in waiters:  # first: a place freed below must not start a connection
            if not waiter.done():
                waiter.set_exception(WireError("the connection pool is closed"))
        for attempt in list(self._attempts):  # connects under way end now, not at their timeout
            with contextlib.suppress(RuntimeError):  # of a loop that has ended: nothing to end
                _abandon(attempt)
        connections = list(self._open)
        self._idle.clear()
        for connection in connections:
            _drop(connection)
        if connections:
            await asyncio.sleep(0)  # let the transports finish closing


def _expire(waiter: asyncio.Future[_Connection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


def _abandon(attempt: asyncio.Task[_Connection]) -> None:
    """Cancel a connection attempt its caller left; close the connection if it was made."""

    def close(task: asyncio.Task[_Connection]) -> None:
        if not task.cancelled() and task.exception() is None:
            task.result().abort()

    attempt.cancel()
    attempt.add_done_callback(close)


def _drop(connection: _Connection) -> None:
    """Close ``connection``, on its loop if it still runs; if that loop has ended, the
    server is told (the socket shut down) and the socket is left to be collected (with
    asyncio's "unclosed transport" warning: close a client on the loop it sent on)."""
    try:
        connection.abort()
    except RuntimeError:  # "Event loop is closed"
        transport = connection.transport
        sock = None if transport is None else transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        connection._closed()


_SSL: ssl_module.SSLContext | None = None


def _default_ssl() -> ssl_module.SSLContext:
    """The system's trusted certificates, with host names checked (as aiohttp's default)."""
    global _SSL
    if _SSL is None:
        _SSL = ssl_module.create_default_context()
    return _SSL
