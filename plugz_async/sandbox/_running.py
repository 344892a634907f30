"""Starting the sandbox: in this event loop (``running()``), or in a thread of its own.

`Sandbox` and `SandboxThread` are the in-process handles of a running sandbox; their
common base, `_SandboxHandle`, holds what both offer (the test credentials and
instances, scripting, held answers, the request log, the clock, a client).

This is the one part of the sandbox that knows the client: it hands out
``PlugzClient`` objects configured for the sandbox. The server itself
(``_state``, ``_routes``, ``_faults``, ``_control``, ``_scenarios``) never imports
the client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import attrs
from aiohttp import web

from plugz_async._client import PlugzClient
from plugz_async._errors import ConfigurationError

from ._control import ACCESS_LOGGER, STATE, create_app
from ._faults import Reply
from ._state import SandboxConfig, SandboxState

__all__ = ["Sandbox", "SandboxThread", "running", "serve"]

T = TypeVar("T")

access_logger = logging.getLogger("plugz_async.sandbox.access")


@contextlib.asynccontextmanager
async def serve(
    config: SandboxConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[tuple[str, SandboxState]]:
    """Serve the sandbox on ``host:port`` (0: any free port); yield its base URL and state."""
    app = create_app(config)
    state = app[STATE]
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=access_logger,
        access_log_class=ACCESS_LOGGER,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{shown}:{bound_port}", state
    finally:
        state.stopping.set()  # cut short every slow answer still waiting
        await runner.cleanup()


@attrs.define
class _SandboxHandle:
    """What a running sandbox offers, whichever way it was started.

    The in-process twin of the control API: each method calls the `SandboxState`
    method of the same name, in the sandbox's event loop (see `_call`).
    """

    base_url: str
    config: SandboxConfig

    @property
    def instance_id(self) -> str:
        return self.config.instance_id

    @property
    def instance_token(self) -> str:
        return self.config.instance_token

    @property
    def client_token(self) -> str:
        return self.config.client_token

    def env(self) -> dict[str, str]:
        """The ``PLUGZ_*`` variables that point ``PlugzClient.from_env()`` here."""
        return {
            "PLUGZ_INSTANCE_ID": self.instance_id,
            "PLUGZ_INSTANCE_TOKEN": self.instance_token,
            "PLUGZ_CLIENT_TOKEN": self.client_token,
            "PLUGZ_BASE_URL": self.base_url,
        }

    def _call(self, fn: Callable[[SandboxState], T]) -> T:
        """Call ``fn`` with the sandbox's state, in the loop that serves it."""
        raise NotImplementedError

    def instances(self) -> dict[str, str]:
        """The instances the sandbox serves: id -> token, the test instance first
        (``SandboxConfig.instances`` says how many)."""
        return self._call(lambda state: dict(state.instances))

    def then(self, *replies: Reply, number: str | None = None, route: str | None = None) -> None:
        """Script the next answers (for one number and/or route, or for any)."""
        self._call(lambda state: state.then(*replies, number=number, route=route))

    def requests(
        self, *, number: str | None = None, route: str | None = None
    ) -> list[dict[str, Any]]:
        """The request log (no tokens in it), oldest first."""
        return self._call(lambda state: state.requests(number=number, route=route))

    def codes(self, *, number: str | None = None) -> list[dict[str, Any]]:
        """The codes the sandbox "sent" (instance, number, channel, code, sent_at), oldest
        first; ``number``: only that number's (digits, as in the log)."""
        return self._call(lambda state: state.codes(number=number))

    def outage(self, *, after: int = 0, status: int = 503) -> None:
        """Fail every API request with ``status`` (an HTML page) once ``after`` more
        requests have been answered, until `end_outage`: a gateway in trouble."""
        self._call(lambda state: state.outage(after=after, status=status))

    def end_outage(self) -> None:
        """End the outage: answer normally again."""
        self._call(lambda state: state.end_outage())

    def hold(
        self, route: str, seconds: float, *, number: str | None = None, times: int = 1
    ) -> None:
        """Hold the answers of the next ``times`` requests of ``route`` (for ``number``,
        or any): each is handled as usual, and answered ``seconds`` later. While the
        answer waits, the request is in `requests` (its status None). See
        `SandboxState.hold`."""
        self._call(lambda state: state.hold(route, seconds, number=number, times=times))

    def end_holds(self) -> None:
        """Forget the holds not used yet, and send the answers held now at once."""
        self._call(lambda state: state.end_holds())

    def advance(self, seconds: float) -> None:
        """Move the sandbox's clock forward (waits and retryAfter run out sooner)."""
        self._call(lambda state: state.advance(seconds))

    def reset(self) -> None:
        """Forget scripts, holds, fault counters, registrations and the log."""
        self._call(lambda state: state.reset())

    def new_client(self, *, instance: str | None = None, **options: Any) -> PlugzClient:
        """A new ``PlugzClient`` for the sandbox's test instance, or for another of its
        ``instance`` ids (see `instances`); close it when done.

        Raises:
            ValueError: the sandbox serves no instance of that id.
        """
        instance_id, token = self.instance_id, self.instance_token
        if instance is not None and instance != instance_id:
            found = self._call(lambda state: state.instances.get(instance))
            if found is None:
                raise ValueError(f"the sandbox serves no instance {instance!r}")
            instance_id, token = instance, found
        return PlugzClient(instance_id, token, self.client_token, base_url=self.base_url, **options)


@attrs.define(repr=False)
class Sandbox(_SandboxHandle):
    """A sandbox running in this event loop, with a ready client.

    Attributes:
        base_url: where it listens, e.g. ``http://127.0.0.1:41234``.
        config: its `SandboxConfig` (test credentials included).
        state: its state: scripts, the request log, the clock.
        client: a ``PlugzClient`` for it, open until the ``async with`` block ends.
    """

    state: SandboxState = attrs.field(kw_only=True)
    client: PlugzClient = attrs.field(kw_only=True)

    def __repr__(self) -> str:
        return f"Sandbox(base_url={self.base_url!r})"

    def _call(self, fn: Callable[[SandboxState], T]) -> T:
        return fn(self.state)

    async def wait_for_requests(self, count: int = 1) -> None:
        """Return once the sandbox has received at least ``count`` requests."""
        await self.state.wait_for_requests(count)


@contextlib.asynccontextmanager
async def running(
    config: SandboxConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    **client_options: Any,
) -> AsyncIterator[Sandbox]:
    """Run the sandbox in this event loop, and hand out a ready client for it.

    Example::

        async with pz.sandbox.running() as sb:
            availability = await sb.client.check_availability("+55 11 90000-0001")

    Args:
        config: the sandbox's behaviour and test credentials.
        host: the address to listen on (loopback by default).
        port: the port (0: any free port).
        **client_options: passed to the ``PlugzClient`` of ``sb.client``.
    """
    config = config or SandboxConfig()
    async with serve(config, host=host, port=port) as (base_url, state):
        handle = _SandboxHandle(base_url, config)
        async with handle.new_client(**client_options) as client:
            yield Sandbox(base_url, config, state=state, client=client)


# Closes scheduled by `SandboxThread.stop` on the loop that called it: kept until done.
_CLOSING: set[asyncio.Task[None]] = set()

# How long `SandboxThread.stop` waits for a loop running in another thread to close the client.
_CLOSE_TIMEOUT = 10.0


class SandboxThread(_SandboxHandle):
    """The sandbox served from a thread with its own event loop, with a ready client.

    For a notebook (the kernel's event loop stays free for your cells, and nothing spans
    cells), code that is not async, or an event loop that should not host the server
    (the pytest fixture uses it). Use it as a context manager, or call `start` and
    `stop`::

        sandbox = SandboxThread().start()
        availability = await sandbox.client.check_availability("+55 11 90000-0001")
        sandbox.stop()

    Attributes:
        base_url: where it listens, once started.
        config: its `SandboxConfig` (test credentials included).
        client: a ``PlugzClient`` for it, made by `start` and closed by `stop`. Like any
            client, it belongs to the event loop of its first request (a notebook's
            kernel, where every cell runs; one ``asyncio.run``; one test): from another
            loop, or once that loop has ended, it raises ``WrongEventLoopError`` (take
            `new_client` in each loop instead). It keeps no connection open between
            requests (``keep_alive=False``), so nothing leaks when its loop ends before
            `stop`, and `stop` closes it from anywhere.

    Args:
        config: the sandbox's behaviour and test credentials.
        host: the address to listen on (loopback by default).
        port: the port (0: any free port).
        **client_options: passed to the ``PlugzClient`` of ``client``.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **client_options: Any,
    ) -> None:
        super().__init__("", config or SandboxConfig())
        if "keep_alive" in client_options:
            raise ConfigurationError(
                "the client of a SandboxThread keeps no connection open between requests,"
                " so that none is left when its event loop ends first; for a client that"
                " does, take new_client(keep_alive=True) and close it in its loop"
            )
        self._host, self._port = host, port
        self._client_options = {**client_options, "keep_alive": False}
        self._client: PlugzClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state: SandboxState | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="plugz-sandbox", daemon=True)

    def __repr__(self) -> str:
        return f"SandboxThread(base_url={self.base_url!r})"

    @property
    def client(self) -> PlugzClient:
        """The sandbox's client, from `start` to `stop` (see the class's doc: one loop).

        Raises:
            RuntimeError: the sandbox is not running.
        """
        if self._client is None:
            raise RuntimeError("the sandbox thread is not running; call start() first")
        return self._client

    def start(self) -> SandboxThread:
        """Serve the sandbox, and make its `client`; returns the sandbox."""
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure
        try:
            self._client = self.new_client(**self._client_options)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close the `client`, and stop serving (even when closing the client fails: its
        error is raised once the server has stopped).

        Raises:
            TimeoutError: the client's event loop, running in another thread, did not
                close it within 10 s (the close still runs there once that loop is free).
            WrongEventLoopError: a call of the client is still in flight in its event
                loop, which is not running (a task left pending): close it there.
        """
        try:
            self._close_client()
        finally:
            if self._loop is not None and self._stop is not None and self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._stop.set)
                self._thread.join()
            self._loop = self._state = None

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _close_client(self) -> None:
        """Close the client where nothing it holds is touched from a thread it is not in.

        A client that sent requests is closed in its loop while that loop runs: from
        within it (a notebook's cell, a task of yours), as soon as the running code lets
        it (a task: the requests still in flight there finish or are cut); from another
        thread, at once (waited for). Otherwise its loop is at rest, or has ended, and
        nothing runs in it: the client keeps no connection between requests, so nothing
        of that loop's is left in it (unless a call was left pending there: its
        `Connections.aclose` then refuses), and it is closed in the sandbox's own loop (a
        client that never sent a request too). The caller's loop is never run.
        """
        client, self._client = self._client, None
        if client is None or client.closed:
            return
        pool = client.connections
        loop = None if pool is None else pool.loop
        if loop is not None and loop.is_running():
            try:
                here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                here = None
            if loop is here:
                task = loop.create_task(client.aclose())
                _CLOSING.add(task)
                task.add_done_callback(_CLOSING.discard)
                return
            closing = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
            try:
                closing.result(timeout=_CLOSE_TIMEOUT)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(
                    f"the sandbox's client was not closed within {_CLOSE_TIMEOUT:g} s: the"
                    " event loop it belongs to, running in another thread, is busy (the"
                    " close runs there once it is free)"
                ) from None
            return
        if self._loop is not None and self._thread.is_alive():
            closing = asyncio.run_coroutine_threadsafe(client.aclose(), self._loop)
            closing.result(timeout=_CLOSE_TIMEOUT)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with serve(self.config, host=self._host, port=self._port) as (url, state):
                self.base_url, self._state = url, state
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # reported to start()
            self._failure = exc
            self._ready.set()

    def _call(self, fn: Callable[[SandboxState], T]) -> T:
        if self._loop is None or self._state is None:
            raise RuntimeError("the sandbox thread is not running; call start() first")
        state = self._state

        async def call() -> T:
            return fn(state)

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(call(), self._loop)
        return future.result(timeout=10)
