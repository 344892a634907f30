"""PlugzClient: the async session wrapper, one method per API route."""

from __future__ import annotations

import contextlib
import enum
import platform
import ssl as ssl_module
import sys
import warnings
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiohttp
import attrs

from ._arguments import captcha_of, channel_of, code_of, pin_of, text_of
from ._clock import Clock, SystemClock
from ._config import (
    DEFAULT_BASE_URL,
    base_url_of,
    credential,
    options_from_env,
    region_setting,
)
from ._connections import Connections
from ._errors import BadRequestError, ClientClosedError, ConfigurationError, InvalidArgument
from ._models import (
    Availability,
    CaptchaAnswer,
    Channel,
    CodeConfirmation,
    CodeRequest,
    DeviceTransfer,
    InstanceStatus,
    PinConfirmation,
    PinRecovery,
    UnbanRequest,
)
from ._phone import PhoneNumber
from ._planner import RegistrationPlanner
from ._redact import Redactor
from ._retry import RetryEvent, RetryPolicy, call_with_retry, default_policy
from ._routes import (
    CONFIRM_CODE,
    CONFIRM_DEVICE_TRANSFER,
    CONFIRM_PIN,
    INSTANCE_STATUS,
    RECOVER_PIN,
    REGISTRATION_AVAILABLE,
    REQUEST_CODE,
    REQUEST_UNBANNING,
    RESPOND_CAPTCHA,
    Received,
    Route,
)
from ._transport import (
    DEFAULT_MAX_BODY_BYTES,
    AttemptMiddleware,
    Transport,
    as_timeout,
    through,
)
from ._version import __version__

if TYPE_CHECKING:  # _registration and _bulk sit above the client: imported when first used
    from ._bulk import BulkRun, Limiter, NumberInput, SeenLines
    from ._registration import Registration, RegistrationEvent

__all__ = ["PlugzClient"]

T = TypeVar("T")


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class PlugzClient:
    """An async client for one PlugzAPI (or Z-API) instance.

    Use it as an async context manager, or call `aclose` when done::

        async with PlugzClient(instance_id=..., instance_token=..., client_token=...) as client:
            availability = await client.check_availability("+55 44 99999-9999")

    Args:
        instance_id: the instance's id.
        instance_token: the instance's token (secret: it goes in the URL path).
        client_token: the account's security token (secret: sent as ``Client-Token``).
        base_url: the API's address; ``ZAPI_BASE_URL`` for Z-API, a loopback
            address for the sandbox.
        session: an ``aiohttp.ClientSession`` of your own to send through; the client
            then never closes it. Without one, the client opens (and closes) its own.
        timeout: the per-attempt timeout, in seconds (total) or as an
            ``aiohttp.ClientTimeout``; default 10 s in all, 5 s to connect.
        retry: the default `RetryPolicy` for every call; by default three attempts
            within 30 s (within three attempts' timeouts, when ``timeout`` is longer
            than 10 s), so that a silent server fails a call in about 30 s.
        on_retry: called with a `RetryEvent` before each retry's wait.
        clock: the source of time and sleep (``FakeClock`` in tests).
        max_connections: the connection pool's size, when the client opens its session.
        trace_configs: aiohttp ``TraceConfig`` objects for your tracing, given to the session
            the client opens. A session of your own carries its own: both at once are
            refused. Instrumentation that patches aiohttp (OpenTelemetry, Sentry) sees
            the client's session as any other.
        ssl: the TLS context for https (the system's trusted certificates by default).
        proxy: the HTTP(S) proxy to send through, as ``http://host:port`` (a user name
            and password in it are kept out of every message, like the tokens). Without
            one, and with ``trust_env``, the environment's (``HTTPS_PROXY``,
            ``HTTP_PROXY``, ``NO_PROXY``), read when the client opens.
        proxy_auth: the proxy's ``(login, password)``, when not in ``proxy``.
        trust_env: take the proxy from the environment when ``proxy`` is not given
            (the default, as httpx and requests do).
        keep_alive: keep connections open between requests (the default). ``False``:
            close each once its answer is read, so that none is left open if the event
            loop ends before the client is closed (see `Connections`).
        default_region: the ISO region (``"BR"``) that numbers written without ``+``
            are read in, by every call and bulk run of this client. Without one, such a
            number must start with a country code that makes a valid number, else
            `MissingCountryCode` (``44 99999-9999`` is no UK number: it is read in no
            country until you say which).
        canonical_numbers: send each number in its line's current form
            (`PhoneNumber.line`: a Brazilian mobile written in its old 8-digit form goes
            with its ninth digit) in ``check_availability`` and ``request_code``. Off by
            default: a number is sent as written, since the API documents the old form
            and WhatsApp keeps accounts made under either. What is returned (the
            answer's ``number``) keeps the number as written, either way.
        max_body_bytes: the largest answer the client will read.
        middlewares: attempt middlewares, called around every attempt of every call,
            retries included: ``async def middleware(route, send)`` awaits ``send()``
            once (or raises) and returns what it returned (see docs/client.md).

    Raises:
        ConfigurationError: a credential is empty or the base URL is not http(s).
    """

    def __init__(
        self,
        instance_id: str,
        instance_token: str,
        client_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], object] | None = None,
        clock: Clock | None = None,
        max_connections: int = 100,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        trace_configs: list[aiohttp.TraceConfig] | None = None,
        middlewares: Sequence[AttemptMiddleware] = (),
        ssl: ssl_module.SSLContext | None = None,
        proxy: str | None = None,
        proxy_auth: tuple[str, str] | None = None,
        trust_env: bool = True,
        default_region: str | None = None,
        connections: Connections | None = None,
        keep_alive: bool = True,
        canonical_numbers: bool = False,
    ) -> None:
        self._state = _State.UNOPENED
        self._default_region = region_setting(default_region)
        if not isinstance(canonical_numbers, bool):
            raise ConfigurationError(
                f"canonical_numbers must be True or False, not {canonical_numbers!r}"
            )
        self._canonical_numbers = canonical_numbers
        if session is not None and connections is not None:
            raise ConfigurationError("give a session or a connection pool, not both")
        pooled = session is not None or connections is not None
        if pooled and (
            trace_configs or proxy is not None or proxy_auth or ssl is not None or not keep_alive
        ):
            raise ConfigurationError(
                "a session or a connection pool of your own carries its own trace_configs,"
                " proxy, TLS and keep-alive: give them to it (aiohttp.ClientSession(...) or"
                " Connections(...)), not to PlugzClient"
            )
        #: Where requests go: the user's session, or a pool's (shared, or this client's).
        self._session: aiohttp.ClientSession | None = session
        self._owns_pool = not pooled
        instance_id = credential("instance_id", instance_id)
        instance_token = credential("instance_token", instance_token)
        client_token = credential("client_token", client_token)
        self._redactor = Redactor.of([instance_token, client_token])
        self._clock: Clock = clock or SystemClock()
        self._timeout = as_timeout(timeout)
        self._retry = retry or default_policy(self._timeout.total)
        self._on_retry = on_retry
        self._middlewares = tuple(middlewares)
        self._transport = Transport(
            base_url_of(base_url),
            instance_id,
            instance_token,
            client_token,
            self._redactor,
            self._clock,
            f"plugz-async/{__version__} aiohttp/{aiohttp.__version__} "
            f"{platform.python_implementation()}/{platform.python_version()}",
            max_body_bytes,
        )
        if connections is None and session is None:
            connections = Connections(
                max_connections=max_connections,
                ssl=ssl,
                proxy=proxy,
                proxy_auth=proxy_auth,
                trust_env=trust_env,
                trace_configs=trace_configs,
                headers=self._transport.headers(),
                keep_alive=keep_alive,
            )
        self._connections = connections
        self._mask(() if connections is None else connections.secrets)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> PlugzClient:
        """A client configured from ``PLUGZ_*`` environment variables.

        Reads ``PLUGZ_INSTANCE_ID``, ``PLUGZ_INSTANCE_TOKEN``, ``PLUGZ_CLIENT_TOKEN``
        and, if set, ``PLUGZ_BASE_URL``, ``PLUGZ_DEFAULT_REGION`` and
        ``PLUGZ_CANONICAL_NUMBERS`` (``1`` or ``0``, ``true`` or ``false``...). Keyword
        ``options`` go to the constructor and win over the environment
        (``from_env(client_token=...)`` works).

        Raises:
            ConfigurationError: naming every required variable that is missing or empty
                (or ``PLUGZ_CANONICAL_NUMBERS`` that is neither true nor false).
        """
        return cls(**options_from_env(environ, options))

    # -- lifecycle -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API's address this client talks to."""
        return self._transport.base_url

    @property
    def instance_id(self) -> str:
        """The instance this client talks to."""
        return self._transport.instance_id

    @property
    def default_region(self) -> str | None:
        """The region numbers written without ``+`` are read in (``None``: none)."""
        return self._default_region

    @property
    def canonical_numbers(self) -> bool:
        """Whether numbers are sent in their line's current form (`PhoneNumber.line`),
        not as written."""
        return self._canonical_numbers

    def parse_number(self, number: str | PhoneNumber) -> PhoneNumber:
        """``number`` read as this client's calls read it (in its `default_region`).

        Raises:
            MissingCountryCode: no ``+``, no region, and no valid number read without one.
            InvalidPhoneNumber: not a possible phone number.
        """
        return PhoneNumber.parse(number, default_region=self._default_region)

    @property
    def clock(self) -> Clock:
        """The clock this client stamps answers with and waits on."""
        return self._clock

    @property
    def closed(self) -> bool:
        """Whether `aclose` was called."""
        return self._state is _State.CLOSED

    @property
    def connections(self) -> Connections | None:
        """The connection pool this client sends through (``None``: a session of yours)."""
        return self._connections

    def for_instance(self, instance_id: str, instance_token: str) -> PlugzClient:
        """A client for another instance of the same account (same Client-Token).

        It shares this client's connection pool (or session), settings and middlewares,
        and never closes the pool: close this client when done with both.
        """
        self._open()
        return PlugzClient(
            instance_id,
            instance_token,
            self._transport.client_token,
            base_url=self.base_url,
            session=None if self._connections is not None else self._session,
            connections=self._connections,
            timeout=self._timeout,
            retry=self._retry,
            on_retry=self._on_retry,
            clock=self._clock,
            max_body_bytes=self._transport.max_body_bytes,
            middlewares=self._middlewares,
            default_region=self._default_region,
            canonical_numbers=self._canonical_numbers,
        )

    def check_many(
        self,
        numbers: Iterable[NumberInput] | AsyncIterable[NumberInput],
        *,
        concurrency: int = 32,
        max_rate: float | None = None,
        limiter: Limiter | None = None,
        planner: RegistrationPlanner | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        on_run_error: Literal["raise", "record"] = "raise",
        max_consecutive_failures: int | None = 30,
        default_region: str | None = None,
        seen_lines: SeenLines | None = None,
    ) -> BulkRun:
        r"""Check many numbers: a `BulkRun` to iterate for items as they complete.

        Args:
            numbers: an iterable or async iterable of text, ``PhoneNumber`` objects,
                ``BulkRow`` objects or mappings (CSV rows: ``number`` or ``ddi``+``phone``,
                optional ``instance_id``/``instance_token``); read lazily.
            concurrency: requests in flight at most.
            max_rate: requests a second at most across the run, retries included.
            limiter: pace with this limiter instead (an ``aiolimiter.AsyncLimiter``
                shared by several runs, say).
            planner: plans each answer (``item.plan``, made when first read).
            retry: the retry policy for these checks.
            timeout: the per-attempt timeout for these checks.
            on_run_error: what a refused credential or an unknown instance does:
                ``"raise"`` stops the run and raises it (after the items already
                completed), ``"record"`` records it as the item of every remaining row of
                that instance, unsent. See `BulkRun`.
            max_consecutive_failures: after this many rows in a row fail to reach the
                API (a `TransportError` or a `ServerError`, after their retries), the run
                stops with `OutageError`; ``None``: never.
            default_region: the region numbers written without ``+`` are read in, for
                this run (the client's `default_region` otherwise). With none, the run
                stops at the first row that has no ``+`` and no country code that makes
                a valid number (`MissingCountryCode`, naming the row): the rest is most
                likely written the same way.
            seen_lines: the lines already answered, each with the row that got the
                answer (a resumed run's: `ResultsFile.seen_lines`; or another run's
                ``run.seen_lines``). Each line is checked once: a row whose line an
                earlier row (or these) holds, in any form and on any instance, is not
                sent, and its item's ``same_line_as`` names that row. A row that ends
                without an answer holds no line: the line's next row is checked, and
                a row that comes while the first is in flight waits for it. The run
                adds its own lines to it.

        Raises:
            InvalidArgument: concurrency below 1, a rate of 0 or less, a bad
                ``on_run_error`` or ``max_consecutive_failures``, an unknown region.
        """
        from ._bulk import BulkRun

        return BulkRun(
            self,
            numbers,
            concurrency=concurrency,
            max_rate=max_rate,
            limiter=limiter,
            planner=planner,
            retry=retry,
            timeout=timeout,
            on_run_error=on_run_error,
            max_consecutive_failures=max_consecutive_failures,
            default_region=default_region,
            seen_lines=seen_lines,
        )

    def _sends_line(self, canonical: bool | None) -> bool:
        if canonical is None:
            return self._canonical_numbers
        if not isinstance(canonical, bool):
            raise InvalidArgument(f"canonical must be True, False or None, not {canonical!r}")
        return canonical

    def redact(self, text: str) -> str:
        """``text`` with this client's secrets masked as ``***`` (for your own logs)."""
        return self._redactor.redact(text)

    def __repr__(self) -> str:
        return (
            f"PlugzClient(base_url={self.base_url!r}, instance_id={self.instance_id!r}, "
            f"state={self._state.value})"
        )

    async def __aenter__(self) -> PlugzClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _mask(self, secrets: Sequence[str]) -> None:
        """Mask these too, from now on, in everything this client says."""
        if secrets:
            self._redactor = self._transport.redactor = self._redactor.with_secrets(secrets)

    def _open(self) -> aiohttp.ClientSession:
        if self._state is _State.CLOSED:
            raise ClientClosedError("this PlugzClient is closed; create a new one")
        if self._connections is not None:
            opening = self._state is _State.UNOPENED or self._session is None
            self._session = self._connections.open(self.base_url, self._transport.headers())
            if opening:
                self._mask(self._connections.secrets)  # the environment's proxy, once read
                # A pool with this client's headers as its defaults: none sent per request.
                same = self._connections.headers == self._transport.headers()
                self._transport.own_session = self._session if same else None
        elif self._session is None or self._session.closed:
            raise ClientClosedError("the aiohttp session given to this PlugzClient is closed")
        self._state = _State.OPEN
        return self._session

    async def aclose(self) -> None:
        """Close the client, and its connection pool when it made it (never a pool or a
        session it was given), in the event loop it belongs to (see `Connections.aclose`).

        Safe to call more than once.

        Raises:
            WrongEventLoopError: its pool belongs to another event loop, still running or
                open; the client stays open, to be closed there.
        """
        if self._state is _State.CLOSED:
            return
        pool = self._connections if self._owns_pool else None
        try:
            if pool is not None:
                await pool.aclose()  # refuses another loop before it closes anything
        finally:
            if pool is None or pool.closed:
                self._state = _State.CLOSED
                self._session = None
                self._transport.own_session = None

    def __enter__(self) -> None:
        raise TypeError(
            "PlugzClient is async: use 'async with PlugzClient(...) as client:' (in a"
            " notebook too), or call 'await client.aclose()' when done"
        )

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ always raises
        pass

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if self._state is _State.OPEN and self._owns_pool and sys is not None:
            _warn(
                f"{self!r} was never closed; use 'async with' or 'await client.aclose()'",
                ResourceWarning,
                source=self,
            )

    # -- routes ----------------------------------------------------------------

    async def check_availability(
        self,
        number: str | PhoneNumber,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        middlewares: Sequence[AttemptMiddleware] = (),
        canonical: bool | None = None,
    ) -> Availability:
        """Ask whether ``number`` can be registered, and when each code channel opens.

        Sends ``POST /mobile/registration-available`` with ``{"ddi", "phone"}``: the
        number as written, or its line's current form with ``canonical_numbers``. This
        must come before any code request: it also sets the number up for onboarding.
        Retry safety: ``SAFE``.

        Args:
            number: the phone number, as text (``"+55 44 99999-9999"``) or a
                `PhoneNumber`.
            retry: a `RetryPolicy` for this call only.
            timeout: a per-attempt timeout for this call only.
            middlewares: attempt middlewares for this call only, run inside the
                client's own (bulk runs pace and count their attempts this way). Every
                route method takes these three.
            canonical: send the line's current form (``True``) or the number as
                written (``False``), for this call only; ``None``: as
                ``canonical_numbers`` says. A registration decides it once, at its
                check, so that every request of it sends one form. `request_code`
                takes it too.

        Returns:
            The `Availability`, stamped with the moment it was received.

        Raises:
            InvalidPhoneNumber: before any request, for a number that cannot exist.
            APIError: the server answered with an error (see the error tree).
            TransportError: the request failed on the way, or timed out.
            ResponseDecodeError: the answer was not the JSON object expected.
        """
        phone = self.parse_number(number)
        sent = phone.line if self._sends_line(canonical) else phone
        return await self._call(
            REGISTRATION_AVAILABLE, sent.wire_json(), retry, timeout, middlewares, number=phone
        )

    async def request_code(
        self,
        number: str | PhoneNumber,
        channel: Channel | str,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        middlewares: Sequence[AttemptMiddleware] = (),
        canonical: bool | None = None,
    ) -> CodeRequest:
        """Ask for a registration code on ``channel`` (``"sms"``, ``"voice"``, ``"wa_old"``).

        Check availability first: the API requires it. This sends an SMS or places a
        call, so it is retried only when the request certainly was not processed
        (retry safety ``UNSAFE``). A ``CodeRequest`` with ``success`` false is an
        answer, not an error: it says why (``retry_after``, ``blocked``, a captcha).

        Raises:
            InvalidPhoneNumber: for a number that cannot exist (no request sent).
            InvalidArgument: for an unknown channel (no request sent).
        """
        phone = self.parse_number(number)
        wanted = channel_of(channel)
        sent = phone.line if self._sends_line(canonical) else phone
        body = {**sent.to_wire(), "method": wanted.value}
        return await self._call(
            REQUEST_CODE, body, retry, timeout, middlewares, number=phone, channel=wanted
        )

    async def respond_captcha(
        self,
        text: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        middlewares: Sequence[AttemptMiddleware] = (),
    ) -> CaptchaAnswer:
        """Answer the captcha a code request returned; then wait for the code.

        Retry safety ``UNSAFE``.

        Raises:
            InvalidArgument: the text is empty (no request sent).
        """
        body = {"captcha": captcha_of(text)}
        return await self._call(RESPOND_CAPTCHA, body, retry, timeout, middlewares)

    async def confirm_code(
        self,
        code: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        middlewares: Sequence[AttemptMiddleware] = (),
    ) -> CodeConfirmation:
        """Confirm the code received by SMS or call (``"123456"``, ``"123-456"``).

        ``success`` means connected; otherwise ``needs_pin`` or
        ``needs_device_confirmation`` says what comes next, or the code was wrong.
        Retry safety ``UNSAFE``.

        Raises:
            InvalidArgument: the code is not 4 to 8 digits (no request sent).
        """
        body = {"code": code_of(code)}
        return await self._call(CONFIRM_CODE, body, retry, timeout, middlewares)

    async def confirm_device_transfer(
        self,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        middlewares: Sequence[AttemptMiddleware] = (),
    ) -> DeviceTransfer:
        """Ask whether the transfer was approved on the phone that holds the number.

        ``confirmed`` is false while it was not (the API answers 400 until then).
        Retry safety ``SAFE``: it only asks.
        """
        try:
            return await self._call(CONFIRM_DEVICE_TRANSFER, None, retry, timeout, middlewares)
        except BadRequestError as error:
            raw = {"error": error.error, "message": error.message}
            return DeviceTransfer(confirmed=False, observed_at=self._clock.now(), raw=raw)

    async def confirm_pin(
        self,
        pin: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        middlewares: Sequence[AttemptMiddleware] = (),
    ) -> PinConfirmation:
        """Confirm the two-step verification PIN (6 digits). Retry safety ``UNSAFE``.

        Raises:
            InvalidArgument: the PIN is not 6 digits (no request sent).
        """
        body = {"code": pin_of(pin)}
        return await self._call(CONFIRM_PIN, body, retry, timeout, middlewares)

    async def recover_pin(
        self,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        middlewares: Sequence[AttemptMiddleware] = (),
    ) -> PinRecovery:
        """Ask for a PIN reset link by e-mail. Retry safety ``UNSAFE``."""
        return await self._call(RECOVER_PIN, {}, retry, timeout, middlewares)

    async def request_unbanning(
        self,
        appeal_token: str,
        description: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        middlewares: Sequence[AttemptMiddleware] = (),
    ) -> UnbanRequest:
        """Ask WhatsApp to review a ban. Retry safety ``UNSAFE``.

        Args:
            appeal_token: the ``appeal_token`` of the availability check.
            description: the text WhatsApp reviews.

        Raises:
            InvalidArgument: an empty token or description (no request sent).
        """
        body = {
            "appealToken": text_of("appeal_token", appeal_token),
            "description": text_of("description", description),
        }
        return await self._call(REQUEST_UNBANNING, body, retry, timeout, middlewares)

    async def instance_status(
        self,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | aiohttp.ClientTimeout | None = None,
        middlewares: Sequence[AttemptMiddleware] = (),
    ) -> InstanceStatus:
        """Ask whether the instance is connected to its number (``GET /status``).

        ``connected`` false is an answer, not an error: ``error`` says why ("You are not
        connected.", "You need to restore the session."), with this client's secrets
        masked. A registration asks this after its last step. Retry safety ``SAFE``: it
        only asks.
        """
        status = await self._call(INSTANCE_STATUS, None, retry, timeout, middlewares)
        redact = self._redactor.redact
        # The text of the answer may echo a secret (the server echoes a wrong Client-Token):
        # masked in the answer as kept (raw, to_dict) as in its fields.
        raw = {k: redact(v) if isinstance(v, str) else v for k, v in status.raw.items()}
        error = None if status.error is None else redact(status.error)
        return attrs.evolve(status, error=error, raw=raw)

    def registration(
        self,
        number: str | PhoneNumber,
        *,
        planner: RegistrationPlanner | None = None,
        code_timeout: float | None = 300.0,
        max_code_attempts: int = 3,
        max_captcha_attempts: int = 3,
        max_pin_attempts: int = 3,
        device_timeout: float = 300.0,
        device_poll_interval: float = 3.0,
        connected_timeout: float | None = 5.0,
        connected_poll_interval: float = 1.0,
        on_event: Callable[[RegistrationEvent], object] | None = None,
    ) -> Registration:
        """A driver for the whole registration of ``number``; see `Registration`.

        Once the last step succeeds (the code, the PIN or the transfer), the instance's
        status (`instance_status`) is asked every ``connected_poll_interval`` seconds
        until it says connected, for ``connected_timeout`` seconds at most: then the
        registration ends ``NOT_CONNECTED``, with what the instance said. ``None`` asks
        nothing (the last step's success is taken as connected).

        Raises:
            InvalidPhoneNumber: for a number that cannot exist (nothing is sent).
            InvalidArgument: a negative ``connected_timeout``, an attempt limit below 1.
        """
        from ._registration import Registration

        return Registration(
            self,
            self.parse_number(number),
            planner=planner or RegistrationPlanner(clock=self._clock),
            code_timeout=code_timeout,
            max_code_attempts=max_code_attempts,
            max_captcha_attempts=max_captcha_attempts,
            max_pin_attempts=max_pin_attempts,
            device_timeout=device_timeout,
            device_poll_interval=device_poll_interval,
            connected_timeout=connected_timeout,
            connected_poll_interval=connected_poll_interval,
            on_event=on_event,
        )

    async def _call(
        self,
        route: Route[T],
        body: Mapping[str, Any] | bytes | None,
        retry: RetryPolicy | None,
        timeout: float | aiohttp.ClientTimeout | None,
        middlewares: Sequence[AttemptMiddleware],
        *,
        number: PhoneNumber | None = None,
        channel: Channel | None = None,
    ) -> T:
        """Send ``route`` (retried as its safety allows) and decode its answer."""
        data = await self._send(route, body, retry, timeout, tuple(middlewares))
        clock = self._clock
        received = Received(route.path, clock.now(), clock.monotonic(), number, channel)
        return route.decode(data, received)

    async def _send(
        self,
        route: Route[Any],
        body: Mapping[str, Any] | bytes | None,
        retry: RetryPolicy | None,
        timeout: float | aiohttp.ClientTimeout | None,
        extra: tuple[AttemptMiddleware, ...],
    ) -> dict[str, Any]:
        session = self._open()
        middlewares = self._middlewares + extra if extra else self._middlewares
        base_timeout = self._timeout if timeout is None else as_timeout(timeout)
        clock = self._clock
        field = route.answer_field

        def cut(remaining: float | None) -> aiohttp.ClientTimeout:
            """The attempt's timeout: the deadline's time left, when it is the shorter."""
            if remaining is None or (
                base_timeout.total is not None and remaining >= base_timeout.total
            ):
                return base_timeout
            return aiohttp.ClientTimeout(
                total=remaining,
                connect=base_timeout.connect,
                sock_connect=base_timeout.sock_connect,
                sock_read=base_timeout.sock_read,
            )

        async def send(remaining: float | None) -> dict[str, Any]:
            if not middlewares:
                return await self._transport.send(
                    session, route.method, route.path, body, cut(remaining), answer_field=field
                )
            # The time left is read again when the attempt is sent, after the middlewares:
            # one that waits (pacing) must not carry an attempt past the deadline.
            until = None if remaining is None else clock.monotonic() + remaining
            sent = False

            async def attempt() -> dict[str, Any]:
                nonlocal sent
                if sent:  # an attempt is sent once: twice could mean a second SMS
                    raise InvalidArgument(f"an attempt middleware sent {route.path} twice")
                sent = True
                left = None if until is None else until - clock.monotonic()
                return await self._transport.send(
                    session, route.method, route.path, body, cut(left), answer_field=field
                )

            return await through(middlewares, route.path, attempt)

        pool = self._connections
        with contextlib.nullcontext() if pool is None else pool.sending():
            return await call_with_retry(
                send,
                policy=retry or self._retry,
                clock=self._clock,
                route=route.path,
                on_retry=self._on_retry,
                safety=route.safety,
            )
