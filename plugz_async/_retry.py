"""When to try a request again, and how long to wait first.

`RetryPolicy` says it in the SDK's own words; `call_with_retry` turns
it into ``tenacity.AsyncRetrying`` arguments in this one place, so tenacity never
shows through the public API.

What is retried depends on the route's `RetrySafety`:

- ``SAFE`` routes (the availability check, polling a device transfer): connection
  failures and timeouts, and the statuses that may succeed on a second try (408,
  429, 500, 502, 503, 504).
- ``UNSAFE`` routes (a code request sends an SMS or places a call): only when the
  request certainly was not processed: the connection was never made, or the server
  answered 429 or 503 (by HTTP's definition, not handled). Never after a read
  timeout, a dropped connection, a 500, 502 or 504: the request may have reached it.

Never, on any route: other 4xx, a 200 with an error body, a body that is not JSON,
bad input. The wait is exponential (``wait_initial * 2**(n-1)``, capped at
``wait_max``), with full jitter when ``jitter`` is on, and never shorter than a
``Retry-After`` the server sent.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import attrs
import tenacity

from ._clock import Clock
from ._errors import APIError, ConnectError, InvalidArgument, PlugzError, TransportError
from ._strenum import StrEnum

__all__ = [
    "NOT_PROCESSED_STATUSES",
    "RETRYABLE_STATUSES",
    "RetryEvent",
    "RetryPolicy",
    "RetrySafety",
    "call_with_retry",
    "is_retryable",
]

T = TypeVar("T")

# The attempt number of the request being sent, for the transport's log records.
ATTEMPT: contextvars.ContextVar[int] = contextvars.ContextVar("plugz_attempt", default=1)

logger = logging.getLogger("plugz_async")

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Statuses that say the request was not handled (RFC 9110 15.5.30, 15.6.4).
NOT_PROCESSED_STATUSES = frozenset({429, 503})


class RetrySafety(StrEnum):
    """Whether a route may be sent again when the first try may have reached the server."""

    SAFE = "safe"
    """Sending it twice does no harm: retried on every failure that may pass."""
    UNSAFE = "unsafe"
    """It acts (sends an SMS, places a call, changes state): retried only when the
    request certainly was not processed."""


def _positive_or_none(
    instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not value > 0:
        raise InvalidArgument(f"RetryPolicy.{attribute.name} must be > 0 or None, not {value!r}")


def _at_least(least: float) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    """An attrs validator: the value is a number of at least ``least`` (`InvalidArgument`)."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not value >= least:
            raise InvalidArgument(
                f"RetryPolicy.{attribute.name} must be >= {least:g}, not {value!r}"
            )

    return check


#: The seconds a call's attempts and waits may take together, by default.
DEFAULT_DEADLINE: float | None = 30.0


def default_policy(per_attempt: float | None, attempts: int = 3) -> RetryPolicy:
    """The policy of a client (or a command) given none: ``attempts`` within 30 s, or
    within three attempts' timeouts when those are longer (a longer timeout asked for is
    never cut short by a deadline that was not); no deadline without a timeout."""
    deadline = max(DEFAULT_DEADLINE or 0.0, 3 * per_attempt) if per_attempt else None
    return RetryPolicy(attempts=attempts, deadline=deadline)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a request is retried.

    Attributes:
        attempts: how many times a request may be sent in all (1 = no retry).
        wait_initial: the wait before the first retry, in seconds; it doubles each time.
        wait_max: the longest wait between two attempts.
        jitter: draw each wait at random between 0 and its exponential value
            (spreads out many clients retrying at once).
        max_retry_after: the longest ``Retry-After`` the client will wait; a longer
            one raises ``RateLimitError`` at once, with ``retry_after`` set.
        deadline: the seconds that all attempts and waits together may take (30 by
            default; ``None``: no limit); each attempt's timeout is cut to what is left
            of it. With the client's 10-second attempts, a call fails within about 30 s
            of a silent server.

    Example:
        >>> RetryPolicy(attempts=5, deadline=20.0).backoff(3)
        2.0
    """

    attempts: int = attrs.field(default=3, validator=_at_least(1))
    wait_initial: float = attrs.field(default=0.5, validator=_at_least(0.0))
    wait_max: float = attrs.field(default=8.0, validator=_at_least(0.0))
    jitter: bool = True
    max_retry_after: float = attrs.field(default=60.0, validator=_at_least(0.0))
    deadline: float | None = attrs.field(default=DEFAULT_DEADLINE, validator=_positive_or_none)

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that sends each request once and never retries."""
        return cls(attempts=1)

    def backoff(self, retry_number: int) -> float:
        """The exponential wait before retry ``retry_number`` (1-based), before jitter."""
        return float(min(self.wait_max, self.wait_initial * 2 ** (retry_number - 1)))


@attrs.frozen(kw_only=True)
class RetryEvent:
    """What ``on_retry`` hears before each wait: which attempt failed, how, and the wait.

    Attributes:
        route: the API route being retried.
        attempt: the number of the attempt that just failed (1-based).
        wait: the seconds the client will now wait before the next attempt.
        error: the (redacted) error that attempt ended with.
    """

    route: str
    attempt: int
    wait: float
    error: PlugzError

    @property
    def error_kind(self) -> str:
        """The error's class name, e.g. ``"ServerError"``."""
        return type(self.error).__name__


def is_retryable(
    error: BaseException, policy: RetryPolicy, safety: RetrySafety = RetrySafety.SAFE
) -> bool:
    """Whether ``error`` may go away on a second try of a route of this ``safety``."""
    statuses = RETRYABLE_STATUSES
    if safety is RetrySafety.UNSAFE:
        if isinstance(error, ConnectError):
            return True
        statuses = NOT_PROCESSED_STATUSES
    elif isinstance(error, TransportError):
        return True
    if isinstance(error, APIError) and error.status in statuses:
        return error.retry_after is None or error.retry_after <= policy.max_retry_after
    return False


class _Wait(tenacity.wait.wait_base):
    """Exponential backoff (jittered or not), never shorter than ``Retry-After``."""

    def __init__(self, policy: RetryPolicy) -> None:
        base: tenacity.wait.wait_base
        if policy.jitter:
            base = tenacity.wait_random_exponential(
                multiplier=policy.wait_initial, max=policy.wait_max
            )
        else:
            base = tenacity.wait_exponential(multiplier=policy.wait_initial, max=policy.wait_max)
        self._base = base

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = float(self._base(retry_state))
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, APIError) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return wait


class _Stop(tenacity.stop.stop_base):
    """Stop after ``attempts``, or when the next attempt would start past the deadline."""

    def __init__(self, policy: RetryPolicy, clock: Clock, started: float) -> None:
        self._policy = policy
        self._clock = clock
        self._started = started

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if retry_state.attempt_number >= self._policy.attempts:
            return True
        deadline = self._policy.deadline
        if deadline is None:
            return False
        elapsed = self._clock.monotonic() - self._started
        return elapsed + retry_state.upcoming_sleep >= deadline


async def call_with_retry(
    send: Callable[[float | None], Awaitable[T]],
    *,
    policy: RetryPolicy,
    clock: Clock,
    route: str,
    on_retry: Callable[[RetryEvent], object] | None = None,
    safety: RetrySafety = RetrySafety.SAFE,
) -> T:
    """Call ``send`` until it succeeds or ``policy`` says stop; raise the last error.

    ``send`` is given the seconds left before the policy's deadline (``None`` when
    there is none), to cut its own timeout to. The error raised carries
    ``attempts``, the number of times ``send`` was called.

    The first attempt runs outside tenacity: most calls succeed at once, and
    building the retry machinery costs more than a fast answer. A first failure
    that may be retried is handed to tenacity as its attempt 1.
    """
    started = clock.monotonic()
    if ATTEMPT.get() != 1:  # a previous call in this task left its count behind
        ATTEMPT.set(1)
    try:
        return await send(policy.deadline)
    except PlugzError as error:
        first = error
    if policy.attempts == 1 or not is_retryable(first, policy, safety):
        first.attempts = 1
        raise first
    retries = _Retries(
        send,
        policy=policy,
        clock=clock,
        route=route,
        on_retry=on_retry,
        safety=safety,
        started=started,
    )
    return await retries.run(first)


class _Retries(Generic[T]):
    """The retries of one call whose first attempt failed in a way that may pass."""

    def __init__(
        self,
        send: Callable[[float | None], Awaitable[T]],
        *,
        policy: RetryPolicy,
        clock: Clock,
        route: str,
        on_retry: Callable[[RetryEvent], object] | None,
        safety: RetrySafety,
        started: float,
    ) -> None:
        self._send = send
        self._policy = policy
        self._clock = clock
        self._route = route
        self._on_retry = on_retry
        self._safety = safety
        self._started = started
        self.attempts = 1  # the first, already sent

    async def run(self, first: PlugzError) -> T:
        """Hand ``first`` to tenacity as attempt 1, then send again until one succeeds or
        the policy says stop; the error raised says how many tries it took."""
        policy = self._policy
        retrying = tenacity.AsyncRetrying(
            stop=_Stop(policy, self._clock, self._started),
            wait=_Wait(policy),
            retry=tenacity.retry_if_exception(
                lambda error: is_retryable(error, policy, self._safety)
            ),
            sleep=self._clock.sleep,
            before_sleep=self._report,
            reraise=True,
        )
        replayed = False
        try:
            async for attempt in retrying:
                with attempt:
                    if not replayed:  # attempt 1 was sent above: let tenacity see how it ended
                        replayed = True
                        raise first
                    result = await self._send_again()
        except PlugzError as error:
            self._tell(error)
            raise
        return result

    async def _send_again(self) -> T:
        """One more attempt, its timeout cut to what is left of the deadline."""
        self.attempts += 1
        ATTEMPT.set(self.attempts)
        deadline = self._policy.deadline
        remaining = None
        if deadline is not None:
            remaining = max(0.0, deadline - (self._clock.monotonic() - self._started))
        return await self._send(remaining)

    def _report(self, retry_state: tenacity.RetryCallState) -> None:
        """Before each wait: log the retry, and tell ``on_retry``."""
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        assert isinstance(error, PlugzError)
        route = self._route
        event = RetryEvent(
            route=route, attempt=self.attempts, wait=retry_state.upcoming_sleep, error=error
        )
        logger.info(
            "retrying %s in %.2f s after attempt %d of %d failed: %s",
            route,
            event.wait,
            event.attempt,
            self._policy.attempts,
            event.error_kind,
            extra={
                "route": route,
                "attempt": event.attempt,
                "wait": event.wait,
                "error_kind": event.error_kind,
            },
        )
        if self._on_retry is not None:
            self._on_retry(event)

    def _tell(self, error: PlugzError) -> None:
        """Write on the error the caller sees how many tries it took, and how long."""
        attempts = self.attempts
        error.attempts = attempts
        if attempts > 1 and error.args and isinstance(error.args[0], str):
            # Said once, on the error the caller sees: how many tries, how long in all.
            spent = self._clock.monotonic() - self._started
            error.args = (f"{error.args[0]} (after {attempts} attempts, {spent:.1f} s in all)",)
