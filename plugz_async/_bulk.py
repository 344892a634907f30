"""Bulk runs: many numbers, bounded, rate-limited, streamed, and nothing lost.

``client.check_many(numbers)`` reads its input lazily (memory depends on the
concurrency, not on the length of the input), keeps at most ``concurrency``
requests in flight, paces every attempt (retries included) with an ``aiolimiter``
limiter, pauses the whole run when the server answers 429, and yields a
`BulkItem` per input row as each completes. A row that cannot be read, or
any error of its own, becomes an item with an ``error``: the run goes on.

Errors that are about the run, not the row, stop it: a refused credential or an
unknown instance (the same for every row of that instance), and an outage (row
after row failing to reach the API). See `BulkRun`.
"""

from __future__ import annotations

import asyncio
import contextvars
import csv
import functools
import io
import itertools
import json
import logging
import os
import random
import stat
from collections import Counter, OrderedDict, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import attrs

from ._errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InstanceNotFoundError,
    InvalidArgument,
    OutageError,
    PlugzError,
    RateLimitError,
    ServerError,
    TransportError,
)
from ._models import Availability, Channel
from ._phone import PhoneNumber
from ._planner import RegistrationPlan, RegistrationPlanner
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._client import PlugzClient

__all__ = [
    "BulkItem",
    "BulkRow",
    "BulkRun",
    "BulkSummary",
    "ResultsFile",
    "read_results",
    "to_dataframe",
]

logger = logging.getLogger("plugz_async")

T = TypeVar("T")

# Distinct instances a run keeps a client for at once (one instance per number is common).
INSTANCE_CACHE = 256
# Channel-opening times the summary keeps for its medians (a reservoir sample beyond it).
SPREAD_SAMPLE = 10_000
# Rows in a row that may fail to reach the API before a run stops as in an outage.
MAX_CONSECUTIVE_FAILURES = 30

# Errors that are the same for every row of an instance: they stop the run (or the instance).
RUN_ERRORS = (AuthenticationError, InstanceNotFoundError, ConfigurationError)
# Errors that say the API could not be reached or failed: counted towards an outage.
OUTAGE_ERRORS = (TransportError, ServerError)
# Errors that belong to the row for good: its record is final, a resume does not redo it.
FINAL_ERRORS = (InvalidArgument, BadRequestError)
FINAL_ERROR_NAMES = frozenset({"InvalidArgument", "InvalidPhoneNumber", "BadRequestError"})


def is_final(error: BaseException | None) -> bool:
    """Whether a row that ended with ``error`` is done for good (``None``: an answer).

    An answer, a number that cannot exist or a 400 for the row's own body are final.
    Anything else (a 5xx, a timeout, a refused connection, a 429 beyond the retry
    policy, a refused credential, a bug) passed, or may pass: a resume does the row again.
    """
    return error is None or isinstance(error, FINAL_ERRORS)


def record_is_final(record: Mapping[str, Any]) -> bool:
    """`is_final` for a results-file record (a JSON record, or a CSV row)."""
    final = record.get("final")
    if isinstance(final, bool):
        return final
    if final in ("True", "False"):
        return bool(final == "True")
    error = record.get("error")
    name = error.get("type") if isinstance(error, Mapping) else record.get("error_type")
    return not name or str(name) in FINAL_ERROR_NAMES


class Limiter(Protocol):
    """What paces requests: ``aiolimiter.AsyncLimiter`` or anything with ``acquire()``."""

    async def acquire(self, amount: float = 1) -> None: ...


@attrs.frozen(kw_only=True)
class BulkRow:
    """One row of a bulk run: a number, perhaps with its own instance's credentials.

    Attributes:
        number: the number, as text or a ``PhoneNumber``.
        instance_id: the instance to check it on (default: the client's).
        instance_token: that instance's token (a secret: never written out).
        key: the row's key for resuming (default: its position in the input).
        given: the row as it was read (a CSV row, say), kept as the item's ``input``
            (without any ``instance_token``).
        index: the row's place in the whole input, when the rows given to the run are
            only some of them (a resumed run); default: its place among those given.
    """

    number: str | PhoneNumber
    instance_id: str | None = None
    instance_token: str | None = attrs.field(default=None, repr=False)
    key: str | None = None
    given: object = attrs.field(default=None, repr=False, eq=False)
    index: int | None = None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> BulkRow:
        """A row from a dict such as a CSV row: ``number``, or ``ddi`` and ``phone``,
        and optionally ``instance_id``, ``instance_token`` and ``key``."""

        def text(name: str) -> str | None:
            value = row.get(name)
            return None if value is None or str(value).strip() == "" else str(value).strip()

        number = text("number")
        if number is None:
            ddi, phone = text("ddi"), text("phone")
            if ddi is None or phone is None:
                raise InvalidArgument("a row needs 'number', or 'ddi' and 'phone'")
            number = f"+{ddi.lstrip('+')} {phone}"
        instance_id, instance_token = text("instance_id"), text("instance_token")
        if (instance_id is None) != (instance_token is None):
            raise InvalidArgument("a row gives 'instance_id' and 'instance_token' together")
        return cls(
            number=number,
            instance_id=instance_id,
            instance_token=instance_token,
            key=text("key"),
            given=row,
        )


Row = str | PhoneNumber | BulkRow | Mapping[str, Any]


def _as_input(row: object) -> object:
    """The row as given, JSON-ready, without secrets."""
    if isinstance(row, str):
        return row
    if isinstance(row, PhoneNumber):
        return row.e164
    if isinstance(row, BulkRow) and row.given is not None:
        return _as_input(row.given)
    if isinstance(row, BulkRow):
        number = row.number if isinstance(row.number, str) else row.number.e164
        return (
            number
            if row.instance_id is None
            else {"number": number, "instance_id": row.instance_id}
        )
    if isinstance(row, Mapping):
        return {str(k): v for k, v in row.items() if k != "instance_token"}
    return repr(row)[:100]


@attrs.frozen(kw_only=True)
class BulkItem:
    """One input row's result: exactly one of ``availability`` and ``error`` is set.

    Attributes:
        index: the row's position in the input (0-based).
        key: the row's key (its ``key``, else its position) for resuming.
        input: the row as given (without any token), JSON-ready.
        number: the number as parsed (``None`` when it could not be).
        availability: the answer, when there is one.
        error: the error, when there is one (``InvalidPhoneNumber`` for a bad row).
        attempts: the requests sent for this row.
        instance_id: the instance it was checked on.
    """

    index: int
    key: str
    input: object
    number: PhoneNumber | None = None
    availability: Availability | None = None
    error: Exception | None = None
    attempts: int = 0
    instance_id: str | None = None
    planner: RegistrationPlanner | None = attrs.field(default=None, repr=False, eq=False)

    @functools.cached_property
    def plan(self) -> RegistrationPlan | None:
        """The plan for the answer (made when first read), or ``None`` for an error."""
        if self.availability is None:
            return None
        return (self.planner or RegistrationPlanner()).plan(self.availability)

    @property
    def ok(self) -> bool:
        """Whether the row has an answer (not an error)."""
        return self.error is None

    @property
    def final(self) -> bool:
        """Whether the row is done for good: an answer, or an error of the row's own (a
        number that cannot exist, a 400). ``False`` for an error that may pass (a 5xx, a
        timeout, a refused credential...): a resumed run checks the row again."""
        return is_final(self.error)

    @property
    def outcome(self) -> str:
        """The plan's outcome (``"ready"``, ``"wait"``...), or ``"error"``."""
        plan = self.plan
        return "error" if plan is None else plan.outcome.value

    def to_dict(self) -> dict[str, Any]:
        """One results-file record: the input, the number, the answer or the error, the plan."""
        plan = self.plan
        return {
            "key": self.key,
            "index": self.index,
            "input": self.input,
            "number": None if self.number is None else self.number.e164,
            "instance_id": self.instance_id,
            "outcome": self.outcome,
            "final": self.final,
            "attempts": self.attempts,
            "availability": None if self.availability is None else self.availability.to_dict(),
            "plan": None if plan is None else plan.to_dict(),
            "error": None if self.error is None else _error_dict(self.error),
        }


def _error_dict(error: Exception) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "message": str(error),
        "status": getattr(error, "status", None),
        "attempts": getattr(error, "attempts", None),
    }


@attrs.define
class _Spread:
    """Earliest, median and latest of a stream of moments (epoch seconds), in bounded
    memory: the median comes from a reservoir sample once past ``SPREAD_SAMPLE``."""

    earliest: float | None = None
    latest: float | None = None
    seen: int = 0
    sample: list[float] = attrs.field(factory=list)
    rng: random.Random = attrs.field(factory=lambda: random.Random(0), repr=False)

    def add(self, moment: float) -> None:
        self.seen += 1
        if self.earliest is None or moment < self.earliest:
            self.earliest = moment
        if self.latest is None or moment > self.latest:
            self.latest = moment
        sample = self.sample
        if len(sample) < SPREAD_SAMPLE:
            sample.append(moment)
        else:
            slot = self.rng.randrange(self.seen)
            if slot < SPREAD_SAMPLE:
                self.sample[slot] = moment

    def to_dict(self) -> dict[str, Any] | None:
        if self.earliest is None or self.latest is None:
            return None
        median = sorted(self.sample)[len(self.sample) // 2]
        return {
            "count": self.seen,
            "earliest": _iso(self.earliest),
            "median": _iso(median),
            "latest": _iso(self.latest),
        }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


@attrs.define
class BulkSummary:
    """What a run did: counts by outcome and error class, attempts, time, rate, and
    when each channel opens (earliest, median, latest) across the numbers."""

    total: int = 0
    outcomes: Counter[str] = attrs.field(factory=Counter)
    errors: Counter[str] = attrs.field(factory=Counter)
    attempts: int = 0
    started: float = 0.0
    wall_time: float = 0.0
    opens: dict[Channel, _Spread] = attrs.field(factory=lambda: {c: _Spread() for c in Channel})
    pending: int = 0
    """Rows that ended in an error that may pass (see `BulkItem.final`): to do again."""
    stopped: str | None = None
    """The class of the error that stopped the run early, if one did."""

    def _repr_html_(self) -> str:
        from ._display import summary_html

        return summary_html(self)

    @property
    def retries(self) -> int:
        """Requests beyond the first of each row."""
        return max(0, self.attempts - (self.total - self.errors.get("InvalidPhoneNumber", 0)))

    @property
    def rate(self) -> float:
        """Rows finished per second of wall time."""
        return self.total / self.wall_time if self.wall_time > 0 else 0.0

    def add(self, item: BulkItem, now: float, planner: RegistrationPlanner) -> None:
        self.total += 1
        self.attempts += item.attempts
        self.wall_time = now - self.started
        availability = item.availability
        if availability is None:
            self.outcomes["error"] += 1
            self.errors[type(item.error).__name__] += 1
            if not item.final:
                self.pending += 1
            return
        # The planner's verdict without building a plan: items plan lazily.
        outcome, _, steps = planner.assess(availability)
        self.outcomes[outcome] += 1  # a StrEnum: it counts as its text
        received = None
        for channel, _, delay, why_not in steps:
            if why_not is None:
                if received is None:
                    received = availability.observed_at.timestamp()
                self.opens[channel].add(received + delay)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "outcomes": {str(outcome): count for outcome, count in self.outcomes.items()},
            "errors": dict(self.errors),
            "attempts": self.attempts,
            "retries": self.retries,
            "wall_time": round(self.wall_time, 3),
            "rate": round(self.rate, 1),
            "pending": self.pending,
            "stopped": self.stopped,
            "opens": {channel.value: spread.to_dict() for channel, spread in self.opens.items()},
        }


class _Gate:
    """Paces every attempt of a run, counts them, and pauses the run on a 429."""

    def __init__(self, limiter: Limiter | None, clock: Any) -> None:
        self._limiter = limiter
        self._clock = clock
        self._paused_until = 0.0

    async def __call__(self, send: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        while (pause := self._paused_until - self._clock.monotonic()) > 0:
            await self._clock.sleep(pause)
        if self._limiter is not None:
            await self._limiter.acquire()
        attempts = _ATTEMPTS.get()
        if attempts is not None:
            attempts[0] += 1
        try:
            return await send()
        except RateLimitError as error:
            # The server is overloaded: the whole run waits, not only this row.
            pause = error.retry_after if error.retry_after is not None else 1.0
            self._paused_until = max(self._paused_until, self._clock.monotonic() + pause)
            logger.info("the server answered 429: pausing the run for %.1f s", pause)
            raise


# The attempt counter of the row being checked (each row runs in a task of its own).
_ATTEMPTS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "plugz_bulk_attempts", default=None
)


class _Handoff(Generic[T]):
    """A bounded first-in first-out hand-off from the workers to the one reader.

    What ``asyncio.Queue(maxsize)`` does, with none of its task accounting: a bulk run
    passes every item through it, so its cost counts.
    """

    def __init__(self, limit: int) -> None:
        self._items: deque[T] = deque()
        self._limit = limit
        self._reader: asyncio.Future[None] | None = None
        self._writers: deque[asyncio.Future[None]] = deque()

    async def put(self, item: T) -> None:
        while len(self._items) >= self._limit:  # the reader lags: wait for room
            waiter = asyncio.get_running_loop().create_future()
            self._writers.append(waiter)
            await waiter
        self._items.append(item)
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.set_result(None)

    async def get(self) -> T:
        while not self._items:
            self._reader = waiter = asyncio.get_running_loop().create_future()
            await waiter
        item = self._items.popleft()
        while self._writers:
            writer = self._writers.popleft()
            if not writer.done():
                writer.set_result(None)
                break
        return item


class _Halt(Exception):
    """Raised inside a worker: the run must stop with ``error``."""

    def __init__(self, error: PlugzError) -> None:
        super().__init__(str(error))
        self.error = error


class BulkRun:
    """A bulk run: iterate it for the items as they complete; ``summary`` grows with it.

    Use ``async with`` (or call `aclose`) so that breaking out of the loop
    stops every request still in flight at once::

        async with client.check_many(numbers, concurrency=32) as run:
            async for item in run:
                ...
        print(run.summary.to_dict())

    **When a run stops early.** A row's own error (a number that cannot exist, a 400, a
    5xx after its retries) is that row's item, and the run goes on. Two kinds of error
    stop it instead, since every further row would meet them too:

    - a refused credential (`AuthenticationError`), an unknown instance
      (`InstanceNotFoundError`) or a `ConfigurationError` on the client's own instance:
      the run stops sending, cancels what is in flight, yields the items already
      completed, then raises that error. With ``on_run_error="record"`` it records the
      error as the item of each remaining row instead (nothing more is sent for them).
      For rows with an instance of their own (``instance_id``/``instance_token``), the
      error belongs to that instance: its remaining rows are recorded as failed with it,
      unsent, and the other instances go on; a refused Client-Token is the account's,
      and stops the run whatever the instance.
    - ``max_consecutive_failures`` rows in a row ending in a `TransportError` (refused,
      reset, timed out) or a `ServerError` after their retries: the API is down or
      unreachable for everyone, and the run raises `OutageError` (``None`` turns this off).

    Rows cut short by a stop are not yielded: a resumed run (``plugz-async bulk --resume``,
    or your own bookkeeping of ``item.key``) does them again, as it does every item whose
    ``final`` is false.
    """

    def __init__(
        self,
        client: PlugzClient,
        numbers: Iterable[Row] | AsyncIterable[Row],
        *,
        concurrency: int,
        max_rate: float | None,
        limiter: Limiter | None,
        planner: RegistrationPlanner | None,
        retry: RetryPolicy | None,
        timeout: Any,
        on_run_error: Literal["raise", "record"] = "raise",
        max_consecutive_failures: int | None = MAX_CONSECUTIVE_FAILURES,
    ) -> None:
        if concurrency < 1:
            raise InvalidArgument("concurrency must be at least 1")
        if max_rate is not None and not max_rate > 0:
            raise InvalidArgument("max_rate must be more than 0 requests a second")
        if on_run_error not in ("raise", "record"):
            raise InvalidArgument("on_run_error must be 'raise' or 'record'")
        if max_consecutive_failures is not None and max_consecutive_failures < 1:
            raise InvalidArgument("max_consecutive_failures must be at least 1, or None")
        if limiter is None and max_rate is not None:
            from aiolimiter import AsyncLimiter

            # One request every 1/max_rate seconds: steady, with no burst at the start.
            limiter = AsyncLimiter(1, 1.0 / max_rate)
        self._client = client
        self._numbers = numbers
        self._concurrency = concurrency
        self._planner = planner or RegistrationPlanner(clock=client.clock)
        self._retry = retry
        self._timeout = timeout
        self._gate = _Gate(limiter, client.clock)
        self._clients: OrderedDict[tuple[str, str], PlugzClient] = OrderedDict()
        self._record_run_errors = on_run_error == "record"
        self._max_failures = max_consecutive_failures
        self._failures = 0  # rows in a row that failed to reach the API
        # Instances whose credentials were refused: their rows are recorded unsent. Keyed
        # by (instance id, token); None is the client's own instance; "*" the whole account.
        self._refused: dict[object, PlugzError] = {}
        self.summary = BulkSummary(started=client.clock.monotonic())
        self._iterator: AsyncGenerator[BulkItem, None] | None = None

    def __aiter__(self) -> BulkRun:
        return self

    async def __anext__(self) -> BulkItem:
        if self._iterator is None:
            self._iterator = self._run()
        return await self._iterator.__anext__()

    async def __aenter__(self) -> BulkRun:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the run: cancel what is in flight and wait for it. Safe to call twice."""
        if self._iterator is not None:
            await self._iterator.aclose()

    async def _run(self) -> AsyncGenerator[BulkItem, None]:
        # A fixed pool of workers pulls rows as it frees up (the input is read lazily) and
        # hands items over through a bounded queue (a slow reader holds the workers back).
        numbers = self._numbers
        counter = itertools.count()
        queue: _Handoff[BulkItem | None] = _Handoff(self._concurrency)
        stop: list[BaseException] = []  # what ended the run early: a run error, or a bug

        # The first request goes alone: a refused credential or a wrong address then costs
        # one request, not one per worker. The others start once the API has answered.
        answered = asyncio.Event()

        async def hand_over(row: Row) -> None:
            item = await self._one(next(counter), row)
            if item.attempts and not answered.is_set():
                answered.set()
            await queue.put(item)
            self._judge(item)  # after the hand-over: the row that shows an outage is kept

        if isinstance(numbers, AsyncIterable):
            rows = aiter(numbers)
            lock = asyncio.Lock()  # an async iterator must not be advanced twice at once

            async def pull() -> None:
                while True:
                    async with lock:
                        try:
                            row = await anext(rows)
                        except StopAsyncIteration:
                            return
                    await hand_over(row)

        else:
            plain = iter(numbers)

            async def pull() -> None:
                for row in plain:  # the workers share one iterator: each row goes once
                    await hand_over(row)

        async def work(first: bool) -> None:
            try:
                if not first:
                    await answered.wait()
                await pull()
            except _Halt as halt:
                halt_run(halt.error)
            except Exception as error:  # a worker broke (a bug): end the run with it
                halt_run(error)
            finally:
                answered.set()  # the first worker is done (the input too short, all unsent)

        def halt_run(error: BaseException) -> None:
            # Stop sending at once: the other workers' requests are cancelled mid-flight.
            if not stop:
                stop.append(error)
                me = asyncio.current_task()
                for worker in workers:
                    if worker is not me:
                        worker.cancel()

        async def finish() -> None:
            await asyncio.gather(*workers, return_exceptions=True)
            await queue.put(None)  # the workers are done: so is the run

        workers = [asyncio.ensure_future(work(n == 0)) for n in range(self._concurrency)]
        closer = asyncio.ensure_future(finish())
        clock = self._client.clock
        try:
            while (item := await queue.get()) is not None:
                self.summary.add(item, clock.monotonic(), self._planner)
                yield item
            if stop:
                self.summary.stopped = type(stop[0]).__name__
                raise stop[0]
        finally:
            for task in (*workers, closer):
                task.cancel()
            await asyncio.gather(*workers, closer, return_exceptions=True)

    def _judge(self, item: BulkItem) -> None:
        """Count the item towards an outage; stop the run when there is one."""
        error = item.error
        if isinstance(error, OUTAGE_ERRORS) and item.attempts:
            self._failures += 1
            if self._max_failures is not None and self._failures >= self._max_failures:
                raise _Halt(
                    OutageError(
                        f"the API failed for {self._failures} rows in a row; the last: "
                        f"{type(error).__name__}: {error}",
                        failures=self._failures,
                        last_error=error,
                    )
                )
        elif item.attempts:  # the API answered (an answer, or an error of the row's own)
            self._failures = 0

    def _refuse(self, error: PlugzError, instance: tuple[str | None, str | None] | None) -> None:
        """A run error: stop the run, or record the instance's rows as failed from now on.

        ``instance`` is a row's (instance id, token), or ``None`` for the client's own.
        """
        account_wide = isinstance(error, AuthenticationError) and error.credential == (
            "client_token"
        )
        if (instance is None or account_wide) and not self._record_run_errors:
            raise _Halt(error)
        self._refused["*" if account_wide else instance] = error

    def _refused_for(self, instance: tuple[str | None, str | None] | None) -> PlugzError | None:
        if not self._refused:
            return None
        return self._refused.get("*") or self._refused.get(instance)

    def _client_for(self, row: BulkRow) -> PlugzClient:
        if row.instance_id is None or row.instance_token is None:
            return self._client
        key = (row.instance_id, row.instance_token)
        client = self._clients.get(key)
        if client is None:
            try:
                client = self._client.for_instance(row.instance_id, row.instance_token)
            except ConfigurationError as exc:  # the row's own credentials cannot be sent
                raise InvalidArgument(f"the row's instance: {exc}") from None
            self._clients[key] = client
            if len(self._clients) > INSTANCE_CACHE:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(key)
        return client

    async def _one(self, index: int, row: Row) -> BulkItem:
        attempts = [0]
        _ATTEMPTS.set(attempts)
        key = str(index)
        instance_id = None
        instance: tuple[str | None, str | None] | None = None  # None: the client's own
        number = None
        try:
            client = self._client
            if type(row) is str:  # the usual case, first
                number = PhoneNumber.parse(row)
            else:
                given: object = BulkRow.from_mapping(row) if isinstance(row, Mapping) else row
                if isinstance(given, BulkRow):
                    index = index if given.index is None else given.index
                    key = given.key or str(index)
                    instance_id = given.instance_id
                    if given.instance_id is not None:
                        instance = (given.instance_id, given.instance_token)
                    number = PhoneNumber.parse(given.number)
                    client = self._client_for(given)
                elif isinstance(given, (str, PhoneNumber)):
                    number = PhoneNumber.parse(given)
                else:
                    kind = type(row).__name__
                    raise InvalidArgument(
                        f"a row must be text, a PhoneNumber or a mapping, not {kind}"
                    )
            refused = self._refused_for(instance)
            if refused is not None:
                raise refused  # the instance's credentials were refused: not sent again
            availability = await client._check(number, self._retry, self._timeout, self._gate)
        except Exception as error:  # the row's failure is its item; the run goes on
            if isinstance(error, RUN_ERRORS) and attempts[0]:
                self._refuse(error, instance)
            if not isinstance(error, PlugzError):
                logger.exception("row %d failed unexpectedly", index)
            return BulkItem(
                index=index,
                key=key,
                input=_as_input(row),
                number=number,
                error=error,
                attempts=attempts[0],
                instance_id=instance_id,
                planner=self._planner,
            )
        return BulkItem(
            index=index,
            key=key,
            input=row if type(row) is str else _as_input(row),
            number=number,
            availability=availability,
            attempts=attempts[0],
            instance_id=instance_id,
            planner=self._planner,
        )


# -- results files ------------------------------------------------------------------------

CSV_FIELDS = [
    "key",
    "index",
    "input",
    "number",
    "instance_id",
    "outcome",
    "final",
    "attempts",
    "available",
    "blocked",
    "appeal_token",
    "reason",
    "sms_wait_seconds",
    "voice_wait_seconds",
    "wa_old_wait_seconds",
    "wa_old_eligible",
    "next_channel",
    "sms_ready_at",
    "voice_ready_at",
    "wa_old_ready_at",
    "error_type",
    "error_message",
]


def flat_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A results-file record as one flat row (for CSV and DataFrames)."""
    availability = record.get("availability") or {}
    plan = record.get("plan") or {}
    error = record.get("error") or {}
    ready = {w["channel"]: w["ready_at"] for w in plan.get("windows", []) if w.get("eligible")}
    given = record.get("input")
    return {
        "key": record.get("key"),
        "index": record.get("index"),
        "input": given if isinstance(given, str) else json.dumps(given, ensure_ascii=False),
        "number": record.get("number"),
        "instance_id": record.get("instance_id"),
        "outcome": record.get("outcome"),
        "final": record_is_final(record),
        "attempts": record.get("attempts"),
        "available": availability.get("available"),
        "blocked": availability.get("blocked"),
        "appeal_token": availability.get("appeal_token"),
        "reason": availability.get("reason"),
        "sms_wait_seconds": availability.get("sms_wait_seconds"),
        "voice_wait_seconds": availability.get("voice_wait_seconds"),
        "wa_old_wait_seconds": availability.get("wa_old_wait_seconds"),
        "wa_old_eligible": availability.get("wa_old_eligible"),
        "next_channel": plan.get("next_channel"),
        "sms_ready_at": ready.get("sms"),
        "voice_ready_at": ready.get("voice"),
        "wa_old_ready_at": ready.get("wa_old"),
        "error_type": error.get("type"),
        "error_message": error.get("message"),
    }


FORMATS = ("jsonl", "csv")


def format_of(path: Path) -> str:
    """The format of a results file: from its content when it has some, else from its
    name (``.csv`` is CSV, anything else JSON Lines)."""
    try:
        with open(path, "rb") as f:
            start = f.read(64).lstrip()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        start = b""
    if start.startswith(b"{"):
        return "jsonl"
    if start.startswith(b"key,"):
        return "csv"
    return "csv" if Path(path).suffix.lower() == ".csv" else "jsonl"


class ResultsFile:
    """A results file (JSON Lines, or CSV) that a crash cannot corrupt, and that holds
    one record per row at every moment a reader can see it.

    Each record is written with one ``write`` and flushed at once, so a process killed
    at any moment leaves at most a half-written last line. `open` with ``resume=True``
    keeps the final records (an answer, or an error of the row's own: see
    `BulkItem.final`) and returns their keys: the rows to skip. Records of rows that
    failed for a passing reason (a 5xx, a timeout, a refused credential) are dropped, so
    the resumed run checks those rows again; the kept records are written to a new file
    that then replaces the old one in one step (``os.replace``), so a crash at any point
    leaves either the old file or the new one, never a mix.

    Args:
        path: the file.
        format: ``"jsonl"`` or ``"csv"``; by default, the format of the file's content
            when it has some, else ``csv`` for a ``.csv`` name and ``jsonl`` otherwise.

    Attributes:
        kept: after ``open(resume=True)``, the outcomes of the records kept, counted
            (``"ready"``, ``"error"``...).
        kept_errors: the error classes among them, counted.
        dropped: how many records were dropped, to be done again.
    """

    def __init__(self, path: str | Path, *, format: str | None = None) -> None:
        if format is not None and format not in FORMATS:
            raise InvalidArgument("format must be 'jsonl' or 'csv'")
        self.path = Path(path)
        found = format_of(self.path)
        if format is not None and self._has_records() and found != format:
            raise InvalidArgument(
                f"{self.path} holds {_FORMAT_NAMES[found]}, not {_FORMAT_NAMES[format]}"
            )
        self.format = format or found
        self.kept: Counter[str] = Counter()
        self.kept_errors: Counter[str] = Counter()
        self.dropped = 0
        self._file: io.TextIOWrapper | None = None
        self._lock_file: tuple[int, Path] | None = None

    def _has_records(self) -> bool:
        try:
            return self.path.stat().st_size > 0 and self.path.is_file()
        except OSError:
            return False

    def open(self, *, resume: bool = False) -> set[str]:
        """Open for appending; with ``resume``, the keys of the final records already there.

        Raises:
            InvalidArgument: the file has records and ``resume`` is false; or the file
                cannot be written (its folder is missing, it is a folder, no permission).
        """
        path = self.path
        self.check()
        self._lock()
        try:
            done: set[str] = set()
            if self._has_records():
                if not resume:
                    raise InvalidArgument(f"{path} is not empty: resume it, or choose another file")
                done = self._recover()
            try:
                self._file = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115
            except OSError as exc:
                raise InvalidArgument(f"cannot write {path}: {exc.strerror}") from None
        except BaseException:
            self.close()
            raise
        if self.format == "csv" and self._file.tell() == 0:
            self._write(self._csv_line(dict(zip(CSV_FIELDS, CSV_FIELDS, strict=True))))
        return done

    def check(self) -> None:
        """Say now, before any work, if the path cannot be a results file.

        Raises:
            InvalidArgument: the path is a folder, or its folder does not exist.
        """
        path = self.path
        if path.is_dir():
            raise InvalidArgument(f"{path} is a folder: give the path of a results file")
        if not path.parent.is_dir():
            raise InvalidArgument(f"cannot write {path}: the folder {path.parent} does not exist")

    def _lock(self) -> None:
        """Hold the file for this run: a second run on it would write every row twice.

        The lock (``flock`` on a ``.lock`` file beside it) goes with the process, even
        when it is killed; where the system has no ``flock``, nothing is locked.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX
            return
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise InvalidArgument(f"cannot write {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            raise InvalidArgument(
                f"{self.path} is being written by another run: wait for it to end"
            ) from None
        self._lock_file = (descriptor, lock_path)

    def _recover(self) -> set[str]:
        """Keep the final records (the first for a key) and return their keys; drop the
        rest and any half-written last line, replacing the file in one step."""
        # A new file that a crash kept from replacing this one: this one still holds.
        self.path.with_name(f".{self.path.name}.resume").unlink(missing_ok=True)
        data = self.path.read_bytes()
        whole = data.rfind(b"\n") + 1  # everything after the last newline is half-written
        text = data[:whole].decode("utf-8", errors="replace")
        done: set[str] = set()
        kept: list[str] = []
        dropped = 0
        for line, record in self._records(text):
            key = str(record.get("key"))
            if record.get("key") is None or key in done or not record_is_final(record):
                dropped += 1
                continue
            done.add(key)
            kept.append(line)
            self.kept[str(record.get("outcome"))] += 1
            error = record.get("error")
            name = error.get("type") if isinstance(error, Mapping) else record.get("error_type")
            if name:
                self.kept_errors[str(name)] += 1
        self.dropped = dropped
        if dropped:
            header = [self._csv_line(dict(zip(CSV_FIELDS, CSV_FIELDS, strict=True)))]
            self._replace((header if self.format == "csv" else []) + kept)
        elif whole < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(whole)
        return done

    def _records(self, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(the record's text, the record) for each complete record of ``text``; a damaged
        line stands as an empty record (dropped: its row is done again).

        Raises:
            InvalidArgument: the file does not start as a results file does.
        """
        lines = text.splitlines(keepends=True)
        first = lines[0].strip() if lines else ""
        if self.format == "csv":
            if first != ",".join(CSV_FIELDS):
                raise self._foreign("its first line is not the header of a results file")
            for line in lines[1:]:
                for row in csv.DictReader([line], fieldnames=CSV_FIELDS):
                    yield line, row
            return
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict) or "key" not in record:
                if number == 0:
                    raise self._foreign("its first line is not a record")
                record = {}
            yield line, record

    def _foreign(self, why: str) -> InvalidArgument:
        return InvalidArgument(
            f"{self.path} is not a results file of plugz-async ({why}): choose another file"
        )

    def _replace(self, lines: list[str]) -> None:
        """Write ``lines`` to a new file beside the old one, then swap it in atomically."""
        temporary = self.path.with_name(f".{self.path.name}.resume")
        with open(temporary, "w", encoding="utf-8", newline="") as f:
            os.chmod(temporary, stat.S_IMODE(self.path.stat().st_mode))  # phone numbers
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)
        _sync_folder(self.path.parent)

    def _csv_line(self, row: Mapping[str, Any]) -> str:
        # One record, one line: a line break inside a value would split it on recovery.
        flat = {k: " ".join(v.splitlines()) if isinstance(v, str) else v for k, v in row.items()}
        buffer = io.StringIO()
        csv.DictWriter(buffer, CSV_FIELDS, lineterminator="\n").writerow(flat)
        return buffer.getvalue()

    def _write(self, text: str) -> None:
        assert self._file is not None, "open() the results file first"
        self._file.write(text)
        self._file.flush()

    def write(self, item: BulkItem) -> None:
        """Append one item's record, and flush it."""
        record = item.to_dict()
        if self.format == "jsonl":
            self._write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        else:
            self._write(self._csv_line(flat_record(record)))

    def close(self) -> None:
        """Close the file and let another run have it. Safe to call twice."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock_file is not None:
            descriptor, lock_path = self._lock_file
            self._lock_file = None
            lock_path.unlink(missing_ok=True)
            os.close(descriptor)  # closing releases the lock

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_FORMAT_NAMES = {"jsonl": "JSON Lines", "csv": "CSV"}


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the system allows opening a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - not on every system
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover - not on every file system
        pass
    finally:
        os.close(descriptor)


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The records of a results file, one per key (the last written), in file order.

    A JSON Lines file gives the records as written; a CSV file gives its rows, flat (as
    `flat_record` makes them, values as text). A half-written last line is skipped.
    """
    path = Path(path)
    fmt = format_of(path)
    by_key: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        if fmt == "csv":
            for row in csv.DictReader(f):
                by_key.pop(str(row.get("key")), None)
                by_key[str(row.get("key"))] = dict(row)
        else:
            for line in f:
                if line.endswith("\n") and line.strip():
                    record = json.loads(line)
                    by_key.pop(str(record.get("key")), None)
                    by_key[str(record.get("key"))] = record
    return list(by_key.values())


def to_dataframe(results: Iterable[BulkItem] | Iterable[Mapping[str, Any]] | str | Path) -> Any:
    """A ``pandas.DataFrame`` of bulk results (items, records, or a results file): one
    row per key, the ready times as timestamps. Needs pandas (``plugz-async[pandas]``)."""
    try:
        import pandas
    except ImportError:  # pragma: no cover - depends on the environment
        message = "to_dataframe needs pandas: pip install 'plugz-async[pandas]'"
        raise InvalidArgument(message) from None
    if isinstance(results, (str, Path)):
        records: Iterable[Mapping[str, Any]] = read_results(results)
    else:
        records = (r.to_dict() if isinstance(r, BulkItem) else r for r in results)
    rows = [r if "error_type" in r else flat_record(r) for r in records]
    frame = pandas.DataFrame(rows, columns=CSV_FIELDS)
    for column in ("sms_ready_at", "voice_ready_at", "wa_old_ready_at"):
        frame[column] = pandas.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame
