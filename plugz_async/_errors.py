"""The errors plugz-async raises: one tree, one root.

Every exception the SDK raises derives from `PlugzError`. Each branch also
derives from the builtin a caller would naturally catch, so ``except ValueError``
or ``except TimeoutError`` keeps working in code that does not know the SDK::

    PlugzError
    ├── InvalidArgument               (ValueError)   bad input, raised before any request
    │   └── InvalidPhoneNumber                       not a possible phone number
    │       └── MissingCountryCode                   no +, no region, no valid number without
    ├── ConfigurationError            (ValueError)   missing credentials, bad base URL
    ├── MissingDependencyError        (ImportError)  an optional extra is not installed
    ├── PlanDataError                 (ValueError)   RegistrationPlan.from_dict got bad data
    ├── NoChannelError                (LookupError)  the plan offers no such channel
    ├── ClientClosedError             (RuntimeError) the client was closed
    ├── WrongEventLoopError           (RuntimeError) the client used from another event loop
    ├── RegistrationStateError        (RuntimeError) a Registration used out of order
    │   ├── InstanceBusyError                        the instance registers another number
    │   └── StaleWriteError                          a queue write from a run that lost its step
    ├── UnknownRegistrationError      (LookupError)  the queue has no registration of that number
    ├── ResponseDecodeError                          not the JSON object expected
    ├── TransportError                (ConnectionError)
    │   ├── ConnectError                             the connection was never made
    │   └── RequestTimeout            (TimeoutError) no answer in time
    ├── OutageError                   (ConnectionError) a bulk run met failure after failure
    └── APIError                                     the server answered with an error
        ├── BadRequestError                          400
        ├── AuthenticationError                      401, 403; 400 "client-token is not configured"
        ├── InstanceNotFoundError                    404; 200 {"error": "NOT_FOUND"}
        ├── MethodNotAllowedError                    405
        ├── UnsupportedMediaTypeError                415
        ├── RateLimitError                           429 (carries retry_after)
        └── ServerError                              5xx

Errors carry data (``status``, the server's ``error`` and ``message``, a short
``body_excerpt``, ``retry_after``, the ``route``) but never a secret: every text in
them has passed through the redactor before the exception is built.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "ConnectError",
    "InstanceBusyError",
    "InstanceNotFoundError",
    "InvalidArgument",
    "InvalidPhoneNumber",
    "MethodNotAllowedError",
    "MissingCountryCode",
    "MissingDependencyError",
    "NoChannelError",
    "OutageError",
    "PlanDataError",
    "PlugzError",
    "RateLimitError",
    "RegistrationStateError",
    "RequestTimeout",
    "ResponseDecodeError",
    "ServerError",
    "StaleWriteError",
    "TransportError",
    "UnknownRegistrationError",
    "UnsupportedMediaTypeError",
    "WrongEventLoopError",
]


class PlugzError(Exception):
    """The root of every error plugz-async raises.

    Attributes:
        attempts: how many requests were sent before this error was raised
            (0 when it was raised before any request, e.g. for bad input).
    """

    attempts: int = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class InvalidArgument(PlugzError, ValueError):
    """An argument cannot be sent as it is (a code that is not digits, an unknown
    channel, an empty description); no request was sent."""


class InvalidPhoneNumber(InvalidArgument):
    """The text is not a possible phone number; no request was sent.

    Attributes:
        input: the text that was given (shortened when very long).
    """

    def __init__(self, message: str, *, input: str = "") -> None:
        super().__init__(message)
        self.input = input


class MissingCountryCode(InvalidPhoneNumber):
    """The number was written without ``+`` and, read as international, is no valid
    number: it is most likely a national number (``44 99999-9999`` in Brazil). Give a
    default region (``default_region="BR"``, ``PLUGZ_DEFAULT_REGION``, ``--region BR``)
    to read such numbers in it, or write them with ``+`` and the country code.

    A bulk run with no default region stops at the first such row: the rest of its
    input is most likely written the same way, and some of it would read as valid
    numbers of another country.

    Attributes:
        input: the text that was given (shortened when very long).
        read_as: the international number it would have been read as (``"+44999999999"``).
    """

    def __init__(self, message: str, *, input: str = "", read_as: str = "") -> None:
        super().__init__(message, input=input)
        self.read_as = read_as


class ConfigurationError(PlugzError, ValueError):
    """The client was configured wrongly (a missing credential, a bad base URL)."""


class MissingDependencyError(PlugzError, ImportError):
    """A feature needs an optional extra that is not installed (pandas, matplotlib).

    Attributes:
        extra: the extra to install, as in ``pip install 'plugz-async[extra]'``.
    """

    def __init__(self, feature: str, *, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs {module}, which is not installed: pip install "
            f"'plugz-async[{extra}]' (from a clone of the repository: pip install '.[{extra}]')",
            name=module,
        )
        self.extra = extra


def require(module: str, *, feature: str, extra: str) -> Any:
    """Import an optional dependency, or raise `MissingDependencyError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(feature, extra=extra, module=module) from None


class PlanDataError(PlugzError, ValueError):
    """``RegistrationPlan.from_dict`` was given data that is not a stored plan."""


class NoChannelError(PlugzError, LookupError):
    """The plan has no eligible channel of that kind (or none at all) to wait for."""


class ClientClosedError(PlugzError, RuntimeError):
    """The client was closed and cannot be used (or reopened) any more."""


class WrongEventLoopError(PlugzError, RuntimeError):
    """The client was used from an event loop other than the one it belongs to.

    A client's connections belong to the event loop of its first request (aiohttp's
    do): it sends, and closes, from that loop only. Raised before anything is sent, when
    the client is used from another loop, or after its loop has ended (``asyncio.run``
    returned, a test's loop closed). Make a client in each loop and close it there.
    """


class RegistrationStateError(PlugzError, RuntimeError):
    """A registration was used out of order (run twice, appeal with no ban, a code
    given when none is wanted)."""


class InstanceBusyError(RegistrationStateError):
    """The queue already registers another number on this instance (an instance holds
    one number; its registration must end first).

    Attributes:
        instance: the instance's id.
        number: the number it registers now (E.164).
    """

    def __init__(self, instance: str, number: str) -> None:
        super().__init__(
            f"instance {instance} is registering {number}: one number per instance at a time"
        )
        self.instance = instance
        self.number = number


class StaleWriteError(RegistrationStateError):
    """A queue worker's write was refused: another run took the registration's step
    over (this one stalled past its heartbeat) and wrote first."""


class UnknownRegistrationError(PlugzError, LookupError):
    """The queue has no registration of this number."""


class ResponseDecodeError(PlugzError):
    """The server's answer was not the JSON object the route documents.

    Typical causes: an HTML page from a proxy, truncated or broken JSON, a JSON
    array where an object was expected, a field of the wrong type, a body larger
    than the client is willing to read.

    Attributes:
        status: the HTTP status of the answer.
        body_excerpt: the start of the body, redacted.
        route: the API route, e.g. ``"mobile/registration-available"``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body_excerpt: str = "",
        route: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body_excerpt = body_excerpt
        self.route = route


class TransportError(PlugzError, ConnectionError):
    """The request failed on the way: the connection was refused, reset or dropped.

    Attributes:
        route: the API route of the request.
    """

    def __init__(self, message: str, *, route: str = "") -> None:
        super().__init__(message)
        self.route = route


class ConnectError(TransportError):
    """No connection could be made (refused, DNS, TLS): the request was certainly not sent."""


class RequestTimeout(TransportError, TimeoutError):
    """No complete answer arrived within the timeout (or the retry policy's deadline)."""


class OutageError(PlugzError, ConnectionError):
    """A bulk run stopped: row after row failed to reach the API, as in an outage.

    Raised by a bulk run after ``failures`` rows in a row ended in a `TransportError`
    or a `ServerError` (after their retries), instead of burning through the input.

    Attributes:
        failures: the rows in a row that failed.
        last_error: the last of those rows' errors.
    """

    def __init__(self, message: str, *, failures: int, last_error: PlugzError) -> None:
        super().__init__(message)
        self.failures = failures
        self.last_error = last_error


class APIError(PlugzError):
    """The server answered, and the answer is an error.

    Attributes:
        status: the HTTP status (200 for an error body sent with status 200).
        error: the server's ``error`` field, redacted, or ``None``.
        message: the server's ``message`` field, redacted, or ``None``.
        body_excerpt: the start of the body, redacted (useful for HTML from a proxy).
        retry_after: seconds the server asked to wait (``Retry-After``), if it did.
        route: the API route, e.g. ``"mobile/registration-available"``.
    """

    def __init__(
        self,
        summary: str,
        *,
        status: int,
        error: str | None = None,
        message: str | None = None,
        body_excerpt: str = "",
        retry_after: float | None = None,
        route: str = "",
    ) -> None:
        super().__init__(summary)
        self.status = status
        self.error = error
        self.message = message
        self.body_excerpt = body_excerpt
        self.retry_after = retry_after
        self.route = route


class BadRequestError(APIError):
    """400: the request body was not as the route documents it."""


class AuthenticationError(APIError):
    """The Client-Token is missing (400), invalid (401) or refused (403).

    Attributes:
        credential: which secret the server refused: ``"client_token"`` when its words
            name the Client-Token (missing or not allowed: the whole account is refused),
            else ``"token"`` (the server did not say which one).
    """

    def __init__(self, summary: str, *, credential: str = "token", **fields: Any) -> None:
        super().__init__(summary, **fields)
        self.credential = credential


class InstanceNotFoundError(APIError):
    """The instance id or instance token is unknown (404, or 200 with ``NOT_FOUND``)."""


class MethodNotAllowedError(APIError):
    """405: the route does not take that HTTP method."""


class UnsupportedMediaTypeError(APIError):
    """415: the ``Content-Type`` was missing or not JSON."""


class RateLimitError(APIError):
    """429: too many requests. ``retry_after`` says how long the server asked to wait."""


class ServerError(APIError):
    """5xx: the server or a gateway in front of it failed (often with an HTML body)."""
