"""Run-level errors in one line: what happened, where, and what to do about it.

A run-level error is the same for every number of a command: a refused credential, an
unknown instance, an API that cannot be reached or keeps failing. The command line says
it once, on stderr, naming the variable or flag to check and the API host it talked to
(never a secret: every line passes through the redactor).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import yarl

from plugz_async._errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    InstanceNotFoundError,
    OutageError,
    PlugzError,
    RateLimitError,
    RequestTimeout,
    ServerError,
    TransportError,
)

__all__ = ["CredentialSource", "explain", "is_run_error"]

# The variable, and the flag, each credential can come from.
_SOURCES = {
    "instance_id": ("PLUGZ_INSTANCE_ID", "--instance-id"),
    "instance_token": ("PLUGZ_INSTANCE_TOKEN", "--instance-token"),
    "client_token": ("PLUGZ_CLIENT_TOKEN", "--client-token"),
    "base_url": ("PLUGZ_BASE_URL", "--base-url"),
}


@attrs.frozen
class CredentialSource:
    """Where a command's credentials came from, to name them in a message.

    Attributes:
        base_url: the API's address the command talked to.
        flags: the credentials given as flags (the others came from the environment).
        sandbox: whether they are the built-in sandbox's own.
    """

    base_url: str
    flags: frozenset[str] = frozenset()
    sandbox: bool = False

    @property
    def host(self) -> str:
        url = yarl.URL(self.base_url)
        if url.host is None:
            return self.base_url
        return url.host if url.is_default_port() else f"{url.host}:{url.port}"

    def source(self, *names: str) -> str:
        """``PLUGZ_CLIENT_TOKEN`` (or ``--client-token`` when given as a flag), joined."""
        return " and ".join(_SOURCES[n][1] if n in self.flags else _SOURCES[n][0] for n in names)


_RUN_ERRORS = (
    AuthenticationError,
    InstanceNotFoundError,
    ConfigurationError,
    OutageError,
    TransportError,
    ServerError,
    RateLimitError,
)


def is_run_error(error: BaseException) -> bool:
    """Whether ``error`` is about the run rather than one number (see `explain`)."""
    return isinstance(error, _RUN_ERRORS)


def explain(error: PlugzError, where: CredentialSource, *, timeout: float | None = None) -> str:
    """One line for a run-level error: what happened, at which host, what to check."""
    host = where.host
    if isinstance(error, (AuthenticationError, InstanceNotFoundError)):
        if where.sandbox:
            return f"the sandbox at {host} refused the request: {error}"
        return _refused(error, where)
    if isinstance(error, (OutageError, TransportError)):
        return _unreachable(error, where, timeout)
    if isinstance(error, RateLimitError):
        return f"{host} asked to slow down (HTTP 429); lower --rate, or try again later"
    if isinstance(error, ServerError):
        return (
            f"{host} failed: HTTP {error.status} (the API, or a gateway in front of it); "
            "try again later"
        )
    if isinstance(error, ConfigurationError):
        return f"{error} (set the PLUGZ_* variables, give the flags, or use --sandbox)"
    return f"{type(error).__name__}: {error}"


def _refused(error: AuthenticationError | InstanceNotFoundError, where: CredentialSource) -> str:
    """A credential refused, or an instance (or the whole address) not found."""
    host = where.host
    if isinstance(error, AuthenticationError):
        if error.credential == "client_token":
            refused = "missing" if error.status == 400 else "refused"
            return (
                f"{where.source('client_token')} {refused}: HTTP {error.status} from {host}; "
                "check the account's Client-Token (the account's security settings)"
            )
        return (
            f"credentials refused: HTTP {error.status} from {host}; check "
            f"{where.source('instance_token', 'client_token')}"
        )
    if error.status == 404 and (error.error or "").upper() != "NOT_FOUND":
        # A 404 of the web server itself: the address is wrong, not only the instance.
        return (
            f"not found: HTTP 404 from {host} ({_said(error)}); check "
            f"{where.source('base_url')} (the API's address, with no path), then "
            f"{where.source('instance_id', 'instance_token')}"
        )
    return (
        f"instance not found: HTTP {error.status} from {host} ({_said(error)}); check "
        f"{where.source('instance_id', 'instance_token')}"
    )


def _unreachable(
    error: OutageError | TransportError, where: CredentialSource, timeout: float | None
) -> str:
    """The API could not be reached, or failed for many numbers in a row."""
    host = where.host
    if isinstance(error, OutageError):
        last = error.last_error
        if isinstance(last, TransportError):
            return (
                f"stopped after {error.failures} numbers in a row could not reach {host} "
                f"(the last: {_short(last)}); check {where.source('base_url')} and the "
                "network, or try again later"
            )
        return (
            f"stopped after {error.failures} numbers in a row failed at {host} "
            f"(the last: {_short(last)}); the API, or a gateway in front of it, is down: "
            "try again later"
        )
    if isinstance(error, ConnectError):
        return (
            f"cannot connect to {host} ({_detail(error)}); check {where.source('base_url')} "
            "and the network"
        )
    if isinstance(error, RequestTimeout):
        limit = "" if timeout is None else f" within {timeout:g} s"
        return f"{host} did not answer{limit}; try again later, or raise --timeout"
    return f"the connection to {host} failed ({_detail(error)}); try again later"


def _said(error: APIError) -> str:
    return ": ".join(part for part in (error.error, error.message) if part) or "no detail"


def _detail(error: PlugzError) -> str:
    text = str(error)
    return text.split(": ", 1)[-1] if ": " in text else text


def _short(error: PlugzError) -> str:
    if isinstance(error, APIError):
        return f"{type(error).__name__}: HTTP {error.status}"
    return f"{type(error).__name__}: {_detail(error)}"


def counts_line(counts: Mapping[str, int]) -> str:
    """``ServerError 3, RequestTimeout 2``: most first."""
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items(), key=_most))


def _most(pair: tuple[str, int]) -> tuple[int, str]:
    return (-pair[1], pair[0])
