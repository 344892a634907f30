"""The one door to the network: send one request, read and decode the answer, map errors.

Everything aiohttp raises is translated here into the SDK's error tree, and every
text that goes into an error or a log record is redacted first. Retries are not
done here (see ``_retry``): this module sends exactly one request per call.

**Attempt middlewares** are the one seam around that door (aiohttp's client
middlewares are the model): a middleware is called for every attempt of a request,
retries included, with the route and a ``send`` that sends the attempt; it may wait
before sending (pacing), count, time or log the attempt, or act on its error, and
returns what ``send`` returned. Bulk runs pace and count their attempts this way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import attrs
import yarl

from ._clock import Clock
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectError,
    InstanceNotFoundError,
    MethodNotAllowedError,
    PlugzError,
    RateLimitError,
    RequestTimeout,
    ResponseDecodeError,
    ServerError,
    TransportError,
    UnsupportedMediaTypeError,
)
from ._redact import Redactor
from ._retry import ATTEMPT

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TIMEOUT",
    "AttemptMiddleware",
    "Send",
    "Transport",
    "parse_retry_after",
    "through",
]

Send = Callable[[], Awaitable[dict[str, Any]]]
"""Sends one attempt; returns the answer's JSON object or raises a ``PlugzError``."""

AttemptMiddleware = Callable[[str, Send], Awaitable[dict[str, Any]]]
"""``await middleware(route, send)``: runs around each attempt, and must await ``send()``
once (or raise) and return what it returned."""


def through(
    middlewares: Sequence[AttemptMiddleware], route: str, send: Send
) -> Awaitable[dict[str, Any]]:
    """Send one attempt through ``middlewares``, the first outermost."""
    handler = send
    for middleware in reversed(middlewares[1:]):
        handler = _bind(middleware, route, handler)
    return middlewares[0](route, handler)


def _bind(middleware: AttemptMiddleware, route: str, handler: Send) -> Send:
    return lambda: middleware(route, handler)


logger = logging.getLogger("plugz_async")

# Per attempt. With the retry policy's 30-second deadline, a call against a silent server
# fails within about 30 s, not 3 x 30 s (docs/service.md says why these numbers).
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=10.0, sock_connect=5.0)
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

_STATUS_ERRORS: Mapping[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: InstanceNotFoundError,
    405: MethodNotAllowedError,
    415: UnsupportedMediaTypeError,
    429: RateLimitError,
}


def _seconds(value: float | None) -> str:
    """Seconds as people read them: ``10``, ``0.05``, ``8.07`` (a timeout cut to a deadline's
    time left has many digits)."""
    return "?" if value is None else f"{round(value, 2):g}"


def _is_html(body: bytes, headers: Mapping[str, str]) -> bool:
    """Whether an answer is an HTML page (by its type, or by how it starts)."""
    kind = (headers.get("Content-Type") or "").lower()
    if "html" in kind:
        return True
    start = body[:64].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<title"))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date.

    Returns ``None`` when the header is absent or unreadable, and 0 for a date
    in the past.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


def as_timeout(timeout: float | aiohttp.ClientTimeout | None) -> aiohttp.ClientTimeout:
    """A ``ClientTimeout`` from seconds (the total per attempt), or as given."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, aiohttp.ClientTimeout):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigurationError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return aiohttp.ClientTimeout(total=float(timeout), sock_connect=min(float(timeout), 10.0))


def _is_clean(exc: BaseException, redactor: Redactor) -> bool:
    """Whether nothing in ``exc`` or its chain would show a secret."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for text in (str(current), repr(current)):
            if redactor.redact(text) != text:
                return False
        current = current.__cause__ or current.__context__
    return True


@attrs.frozen
class _Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]


@attrs.define(repr=False)
class Transport:
    """Sends one request to one instance, and returns its decoded JSON object."""

    base_url: str
    instance_id: str
    _instance_token: str
    client_token: str = attrs.field(repr=False)
    redactor: Redactor
    clock: Clock
    user_agent: str
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r}, instance_id={self.instance_id!r})"

    _urls: dict[str, yarl.URL] = attrs.field(factory=dict, init=False)
    _headers: dict[str, str] = attrs.field(factory=dict, init=False)
    #: The session made for this transport's client, with `headers` as its defaults.
    own_session: aiohttp.ClientSession | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self._headers = {
            "Client-Token": self.client_token,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }

    def url(self, route: str) -> yarl.URL:
        """The full URL of ``route`` (it holds the instance token: never log it)."""
        url = self._urls.get(route)
        if url is None:
            instance = quote(self.instance_id, safe="")
            token = quote(self._instance_token, safe="")
            url = yarl.URL(
                f"{self.base_url}/instances/{instance}/token/{token}/{route}", encoded=True
            )
            self._urls[route] = url
        return url

    def instance_token(self) -> str:
        """The instance token (a secret: for a sibling client only, never to show)."""
        return self._instance_token

    def headers(self) -> dict[str, str]:
        """The request headers (the same dict every time: aiohttp copies it)."""
        return self._headers

    async def send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        route: str,
        body: Mapping[str, Any] | bytes | None,
        timeout: aiohttp.ClientTimeout,
        *,
        answer_field: str | None = None,
    ) -> dict[str, Any]:
        """Send one request; return the answer's JSON object or raise a ``PlugzError``.

        ``answer_field``: a 2xx object with this field is the answer even with an
        ``error`` in it (see `Route`).
        """
        if timeout.total is not None and timeout.total <= 0:
            raise RequestTimeout(f"no time was left to send {route}", route=route)
        started = self.clock.monotonic() if logger.isEnabledFor(logging.DEBUG) else 0.0
        error: PlugzError
        try:
            answer = await self._exchange(session, method, route, body, timeout)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = self._translate(exc, route, timeout)
            cause: BaseException | None = exc if _is_clean(exc, self.redactor) else None
        else:
            if logger.isEnabledFor(logging.DEBUG):
                elapsed = self.clock.monotonic() - started
                logger.debug(
                    "%s %s -> %d in %.0f ms",
                    method,
                    route,
                    answer.status,
                    elapsed * 1000,
                    extra={
                        "route": route,
                        "attempt": ATTEMPT.get(),
                        "status": answer.status,
                        "elapsed": elapsed,
                    },
                )
            return self.decode(
                answer.status, answer.body, answer.headers, route, answer_field=answer_field
            )
        logger.debug(
            "%s %s failed: %s",
            method,
            route,
            type(error).__name__,
            extra={"route": route, "attempt": ATTEMPT.get(), "error_kind": type(error).__name__},
        )
        # Raised outside the except block so that the aiohttp exception is kept as
        # the cause only when it is known to hold no secret.
        error.__cause__ = cause
        error.__suppress_context__ = True
        raise error

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        route: str,
        body: Mapping[str, Any] | bytes | None,
        timeout: aiohttp.ClientTimeout,
    ) -> _Answer:
        if body is None or isinstance(body, bytes):
            data = body  # already JSON (the phone routes build theirs: digits need no escaping)
        else:
            data = json.dumps(body, separators=(",", ":")).encode()
        async with session.request(
            method,
            self.url(route),
            data=data,
            # A session this transport's client made carries these headers already:
            # aiohttp then merges none per request.
            headers=None if session is self.own_session else self._headers,
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            declared = response.content_length
            if declared is not None:
                if declared > self.max_body_bytes:
                    raise self._too_large(response.status, route)
                # A declared length within the limit: aiohttp reads no more than it.
                return _Answer(response.status, await response.read(), response.headers)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise self._too_large(response.status, route)
                chunks.append(chunk)
            return _Answer(response.status, b"".join(chunks), response.headers)

    def _too_large(self, status: int, route: str) -> ResponseDecodeError:
        return ResponseDecodeError(
            f"the answer of {route} is larger than {self.max_body_bytes} bytes; not read",
            status=status,
            route=route,
        )

    def _translate(
        self, exc: BaseException, route: str, timeout: aiohttp.ClientTimeout
    ) -> TransportError:
        detail = self.redactor.redact(str(exc)) or type(exc).__name__
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return ConnectError(
                f"could not connect for {route} within"
                f" {_seconds(timeout.sock_connect or timeout.connect)} s",
                route=route,
            )
        if isinstance(exc, asyncio.TimeoutError):
            return RequestTimeout(
                f"no answer from {route} within {_seconds(timeout.total)} s", route=route
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            return ConnectError(f"could not connect for {route}: {detail}", route=route)
        return TransportError(
            f"{route} failed on the way: {type(exc).__name__}: {detail}", route=route
        )

    def decode(
        self,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        route: str,
        *,
        answer_field: str | None = None,
    ) -> dict[str, Any]:
        """Map a status and body to the JSON object, or to the error they mean.

        An ``error`` in a 2xx object is an API error, unless the object has
        ``answer_field``: then the error is part of the route's answer (see `Route`).
        """
        data: Any = None
        parsed = False
        try:
            data = json.loads(body)
            parsed = True
        except (ValueError, RecursionError):
            pass
        if not 200 <= status < 300:
            raise self._api_error(
                status, data if isinstance(data, dict) else None, body, headers, route
            )
        if not parsed:
            raise ResponseDecodeError(
                f"the answer of {route} is not JSON (HTTP {status})",
                status=status,
                body_excerpt=self._excerpt(body),
                route=route,
            )
        if not isinstance(data, dict):
            raise ResponseDecodeError(
                f"the answer of {route} should be a JSON object, got {type(data).__name__}",
                status=status,
                body_excerpt=self._excerpt(body),
                route=route,
            )
        if data.get("error") not in (None, False, "") and (
            answer_field is None or answer_field not in data
        ):
            raise self._api_error(status, data, body, headers, route)
        return data

    def _excerpt(self, body: bytes) -> str:
        # The whole body (it is bounded by max_body_bytes) is redacted before it is cut: a
        # cut first could split a secret, and the excerpt's flattened spaces would bring
        # the part that survives into view.
        return self.redactor.excerpt(body.decode("utf-8", errors="replace"))

    def _text(self, data: Mapping[str, Any] | None, key: str) -> str | None:
        if data is None or data.get(key) is None:
            return None
        value = data[key]
        text = value if isinstance(value, str) else json.dumps(value)
        return self.redactor.excerpt(text)

    def _api_error(
        self,
        status: int,
        data: Mapping[str, Any] | None,
        body: bytes,
        headers: Mapping[str, str],
        route: str,
    ) -> APIError:
        error = self._text(data, "error")
        message = self._text(data, "message")
        # Judged on the server's own words, before redaction masks parts of them.
        said = " ".join(str(data.get(k) or "") for k in ("error", "message")) if data else ""
        said = " ".join(said.lower().replace("-", " ").split())
        cls: type[APIError]
        if "client token" in said:
            cls = AuthenticationError
        elif (error or "").upper() == "NOT_FOUND":
            cls = InstanceNotFoundError
        elif status >= 500:
            cls = ServerError
        else:
            cls = _STATUS_ERRORS.get(status, APIError)
        retry_after = parse_retry_after(headers.get("Retry-After"), self.clock.now())
        summary = f"{route}: HTTP {status}"
        if error or message:
            summary += ": " + ": ".join(part for part in (error, message) if part)
        elif 300 <= status < 400:
            summary += ": unexpected redirect (not followed)"
        elif _is_html(body, headers):
            # A proxy's or a gateway's page, not the API's answer: its markup says nothing
            # a reader can use (the excerpt stays in body_excerpt).
            summary += ": an HTML error page, from a proxy or gateway in front of the API"
        elif body:
            summary += f": {self._excerpt(body)[:80]}"
        if retry_after is not None:
            summary += f" (retry after {retry_after:g} s)"
        extra: dict[str, Any] = {}
        if cls is AuthenticationError:
            extra["credential"] = "client_token" if "client token" in said else "token"
        return cls(
            summary,
            **extra,
            status=status,
            error=error,
            message=message,
            body_excerpt=self._excerpt(body),
            retry_after=retry_after,
            route=route,
        )
