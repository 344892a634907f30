"""A pool of connections to the API: one aiohttp session, made the way the SDK sends.

`Connections` is a value of its own: a client makes one for itself when given neither a
pool nor a session, and the clients of many instances of one account share one
(``PlugzClient(..., connections=pool)``, ``client.for_instance()``, a queue worker). The
pool's owner closes it; a client that shares it never does.

A pool belongs to the event loop it opened in, as every aiohttp session does: it sends,
and is closed, from that loop only. `open` and `aclose` refuse another loop with a
`WrongEventLoopError` that says what to do, before anything is touched (aiohttp would fail
later, and obscurely: "Event loop is closed", a future attached to a different loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections.abc import Iterator, Mapping

import aiohttp

from ._config import Proxy, proxy_from_env, proxy_of
from ._errors import ClientClosedError, ConfigurationError, WrongEventLoopError

__all__ = ["Connections"]

_ONE_LOOP = (
    "A client is used in one event loop only: make one in each loop and close it there"
    " ('async with PlugzClient(...)'; a sandbox's new_client(); in tests, the plugz_client"
    " fixture)."
)


class Connections:
    """A connection pool to the API, opened on first use; close it with `aclose`.

    Args:
        max_connections: the pool's size (0: no limit).
        ssl: the TLS context for https (the system's trusted certificates by default).
        proxy: the HTTP(S) proxy to send through (``http://user:password@host:port``).
        proxy_auth: the proxy's ``(login, password)``, when not in ``proxy``.
        trust_env: take the proxy from the environment when ``proxy`` is not given
            (read once, when the pool opens).
        trace_configs: aiohttp ``TraceConfig`` objects for your tracing.
        headers: headers every request carries; by default, those of the first client
            that opens the pool (the clients of one account have the same: none of them
            then merges headers per request; a client whose headers differ sends its own
            with each request).
        keep_alive: keep connections open between requests, to send the next one on
            (the default). ``False``: close each connection once its answer is read, so
            the pool holds none between requests: nothing is left open when its event
            loop ends before the pool is closed, and the pool may then be closed from any
            loop. (A new connection for each request: cheap on loopback, a TCP and TLS
            handshake for each request over a network.)

    Raises:
        ConfigurationError: a setting that is not one.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        ssl: ssl_module.SSLContext | None = None,
        proxy: str | None = None,
        proxy_auth: tuple[str, str] | None = None,
        trust_env: bool = True,
        trace_configs: list[aiohttp.TraceConfig] | None = None,
        headers: Mapping[str, str] | None = None,
        keep_alive: bool = True,
    ) -> None:
        if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
            raise ConfigurationError(f"ssl must be an ssl.SSLContext, not {type(ssl).__name__}")
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 0
        ):
            raise ConfigurationError(
                f"max_connections must be a whole number, 0 for no limit, not {max_connections!r}"
            )
        self._max_connections = max_connections
        self._ssl = ssl
        self._proxy = proxy_of(proxy, proxy_auth)
        self._trust_env = trust_env
        self._trace_configs = trace_configs
        self._keep_alive = bool(keep_alive)
        self.headers: Mapping[str, str] | None = headers
        #: The proxy requests go through, once open (given, or the environment's).
        self.proxy_in_use: Proxy | None = self._proxy
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._in_flight = 0  # kept by the clients that send through the pool

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._session else "unopened"
        return f"Connections(max_connections={self._max_connections}, state={state})"

    @property
    def closed(self) -> bool:
        """Whether `aclose` was called."""
        return self._closed

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the pool opened in (``None`` until it opens): like any aiohttp
        session, it is used, and closed, from that loop only."""
        return self._loop

    @property
    def keep_alive(self) -> bool:
        """Whether connections are kept open between requests (see the class's doc)."""
        return self._keep_alive

    @property
    def in_flight(self) -> int:
        """How many calls are being sent through the pool now (by all its clients)."""
        return self._in_flight

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """Count a call in flight for its duration (a pool is closed from another loop only
        when none is)."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    def _elsewhere(self) -> str:
        """Why a request from the running loop is refused: the pool is another loop's."""
        assert self._loop is not None
        if self._loop.is_closed():
            return (
                "this PlugzClient sent its first request in an event loop that has ended"
                " (asyncio.run returned, or a test's loop closed), and cannot send from"
                " another. " + _ONE_LOOP
            )
        return (
            "this PlugzClient belongs to another event loop (the one it sent its first"
            " request in), and cannot send from this one. " + _ONE_LOOP
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """What to keep out of every message: the password of the proxy in use."""
        return () if self.proxy_in_use is None else self.proxy_in_use.secrets

    def open(
        self, base_url: str, headers: Mapping[str, str] | None = None
    ) -> aiohttp.ClientSession:
        """The pool's session, made on the first call (the environment's proxy is the
        one for ``base_url``; ``headers`` its defaults, unless the pool was given some).

        Raises:
            ClientClosedError: the pool is closed.
            WrongEventLoopError: called from an event loop other than the pool's.
        """
        if self._closed:
            raise ClientClosedError("the connection pool of this PlugzClient is closed")
        if self._session is not None and self._loop is not None:
            try:
                here = asyncio.get_running_loop()
            except RuntimeError:  # outside any loop (for_instance): nothing is sent from here
                here = self._loop
            if here is not self._loop:
                raise WrongEventLoopError(self._elsewhere())
        if self._session is None:
            if self.headers is None:
                self.headers = headers
            proxy = self._proxy
            if proxy is None and self._trust_env:
                proxy = proxy_from_env(base_url)
            self.proxy_in_use = proxy
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:  # pragma: no cover - aiohttp itself needs a running loop
                self._loop = None
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    ssl=True if self._ssl is None else self._ssl,
                    force_close=not self._keep_alive,
                ),
                raise_for_status=False,
                trace_configs=self._trace_configs,
                # The API sets no cookies: nothing to keep, match or send per request.
                cookie_jar=aiohttp.DummyCookieJar(),
                headers=self.headers,
                # The environment's proxy is read once, above: aiohttp's trust_env would
                # look it up again in a thread for every request.
                trust_env=False,
                proxy=None if proxy is None else proxy.url,
            )
            # Every attempt is one request: aiohttp would send an idempotent one (the
            # device-transfer poll, a GET) again on a kept-alive connection that dropped,
            # behind the retry policy's back. (It has no public switch for this.)
            self._session._retry_connection = False
        return self._session

    async def aclose(self) -> None:
        """Close the pool (safe to call more than once), in the event loop it belongs to.

        From another loop only while that loop is not running: once it has ended (its
        connections ended with it, nothing is left to close but the session), or when the
        pool keeps no connections (``keep_alive=False``: it holds none between requests)
        and no call is in flight.

        Raises:
            WrongEventLoopError: the pool belongs to another event loop that runs (in
                another thread), or that is open and may hold connections (kept ones, or
                a call's left pending there); nothing was closed: close it in that loop.
        """
        session, loop = self._session, self._loop
        if session is not None and loop is not None and loop is not asyncio.get_running_loop():
            if loop.is_running():
                raise WrongEventLoopError(
                    "this PlugzClient's connections belong to an event loop running in"
                    " another thread: close it there"
                    " ('asyncio.run_coroutine_threadsafe(client.aclose(), loop)')"
                )
            if not loop.is_closed() and (self._keep_alive or self._in_flight):
                held = "a call still in flight in" if self._in_flight else "connections of"
                raise WrongEventLoopError(
                    f"this PlugzClient has {held} another event loop, still open (not"
                    " running now): close it there ('loop.run_until_complete(client.aclose())')"
                )
        self._closed = True
        self._session = None
        if session is not None:
            await session.close()
