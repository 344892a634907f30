"""Bulk runs: many numbers, bounded, rate-limited, streamed, and nothing lost.

``client.check_many(numbers)`` reads its input lazily (memory depends on the
concurrency, not on the length of the input), keeps at most ``concurrency``
requests in flight, paces every attempt (retries included) on a fixed timetable
(`RateSchedule`, or a limiter of yours), pauses the whole run when the server answers 429,
and yields a
`BulkItem` per input row as each completes. A row that cannot be read, or
any error of its own, becomes an item with an ``error``: the run goes on. A row whose
line an earlier row holds (the same number, or a Brazilian mobile in its other form,
whatever the rows' instances) is not sent: its item names that row (``same_line_as``). Only
a row with an answer holds a line, or one in flight for it (the rows of its line wait).

Errors that are about the run, not the row, stop it: a refused credential or an
unknown instance (the same for every row of that instance), and an outage (row
after row failing to reach the API). See `BulkRun`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from plugz_async._errors import (
    AuthenticationError,
    ConfigurationError,
    InstanceNotFoundError,
    InvalidArgument,
    MissingCountryCode,
    OutageError,
    PlugzError,
    ServerError,
    TransportError,
)
from plugz_async._phone import PhoneNumber, check_region
from plugz_async._planner import RegistrationPlanner
from plugz_async._retry import RetryPolicy
from plugz_async._transport import AttemptMiddleware

from ._items import BulkItem, BulkRow, NumberInput, SameLine, SeenLines, as_input
from ._pacing import Limiter, Pacer, RateSchedule, count_attempts
from ._summary import BulkSummary

if TYPE_CHECKING:
    from plugz_async._client import PlugzClient

# Limiter, Pacer and RateSchedule live in ._pacing; the package and the client import them
# from here.
__all__ = ["MAX_CONSECUTIVE_FAILURES", "BulkRun", "Limiter", "Pacer", "RateSchedule"]

logger = logging.getLogger("plugz_async")

T = TypeVar("T")

# Distinct instances a run keeps a client for at once (one instance per number is common).
INSTANCE_CACHE = 256
# Rows in a row that may fail to reach the API before a run stops as in an outage.
MAX_CONSECUTIVE_FAILURES = 30

# Errors that are the same for every row of an instance: they stop the run (or the instance).
RUN_ERRORS = (AuthenticationError, InstanceNotFoundError, ConfigurationError)
# Errors that say the API could not be reached or failed: counted towards an outage.
OUTAGE_ERRORS = (TransportError, ServerError)


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


class _Read:
    """What a row says, as far as it was read: a row that fails half-way through (a bad
    number after its key and instance) keeps on its item what was read of it."""

    __slots__ = ("client", "index", "instance", "instance_id", "key", "number")

    def __init__(self, index: int, client: PlugzClient) -> None:
        self.index = index
        self.key = str(index)
        self.instance_id: str | None = None
        # The row's (instance id, token); None: the client's own instance.
        self.instance: tuple[str | None, str | None] | None = None
        self.number: PhoneNumber | None = None
        self.client = client


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
    - with no default region, a row written without ``+`` whose digits make no valid
      number with a country code first (`MissingCountryCode`): the input is most likely
      national numbers, and some of its rows would read as valid numbers of another
      country. The run stops there, naming the row; give ``default_region``.

    Rows cut short by a stop are not yielded: a resumed run (``plugz-async bulk --resume``,
    or your own bookkeeping of ``item.key``) does them again, as it does every item whose
    ``final`` is false.

    **One line, checked once.** A row whose number reaches the same line as an earlier
    row with an answer (the same digits, or a Brazilian mobile in its old 8-digit form and
    in its form with the ninth digit: `PhoneNumber.line`) is not sent, whatever the rows'
    instances: its item's ``same_line_as`` names the earlier row, its outcome is
    ``PlanOutcome.SAME_LINE``, and it is final. A row of a line whose row is in flight
    waits for it, in its worker, and comes after it; a row that ends without an answer
    (an error, its instance refused, cut short) holds no line, and the next row of the
    line is checked. The run keeps one small entry a line (`SeenLines`); ``seen_lines=``
    gives it the lines of earlier runs (a resume's).
    """

    def __init__(
        self,
        client: PlugzClient,
        numbers: Iterable[NumberInput] | AsyncIterable[NumberInput],
        *,
        concurrency: int,
        max_rate: float | None,
        limiter: Limiter | None,
        planner: RegistrationPlanner | None,
        retry: RetryPolicy | None,
        timeout: Any,
        on_run_error: Literal["raise", "record"] = "raise",
        max_consecutive_failures: int | None = MAX_CONSECUTIVE_FAILURES,
        default_region: str | None = None,
        seen_lines: SeenLines | None = None,
    ) -> None:
        self._region = check_region(default_region) or client.default_region
        if concurrency < 1:
            raise InvalidArgument("concurrency must be at least 1")
        if max_rate is not None and not max_rate > 0:
            raise InvalidArgument("max_rate must be more than 0 requests a second")
        if on_run_error not in ("raise", "record"):
            raise InvalidArgument("on_run_error must be 'raise' or 'record'")
        if max_consecutive_failures is not None and max_consecutive_failures < 1:
            raise InvalidArgument("max_consecutive_failures must be at least 1, or None")
        if limiter is None and max_rate is not None:
            limiter = RateSchedule(max_rate, client.clock)
        self._client = client
        self._numbers = numbers
        self._concurrency = concurrency
        self._planner = planner or RegistrationPlanner(clock=client.clock)
        self._retry = retry
        self._timeout = timeout
        # Every attempt of the run goes through the pacer (an attempt middleware).
        self._pace: tuple[AttemptMiddleware, ...] = (Pacer(limiter, client.clock),)
        self._clients: OrderedDict[tuple[str, str], PlugzClient] = OrderedDict()
        self._record_run_errors = on_run_error == "record"
        self._max_failures = max_consecutive_failures
        self._failures = 0  # rows in a row that failed to reach the API
        # Instances whose credentials were refused: their rows are recorded unsent. Keyed
        # by (instance id, token); None is the client's own instance; "*" the whole account.
        self._refused: dict[object, PlugzError] = {}
        if seen_lines is not None and not isinstance(seen_lines, SeenLines):
            raise InvalidArgument("seen_lines must be a SeenLines")
        # Each line's first row: a row of a line met before is not sent.
        self.seen_lines = SeenLines() if seen_lines is None else seen_lines
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
        queue: _Handoff[BulkItem | None] = _Handoff(self._concurrency)
        stop: list[BaseException] = []  # what ended the run early: a run error, or a bug
        workers, closer = self._start(queue, stop)
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

    def _start(
        self, queue: _Handoff[BulkItem | None], stop: list[BaseException]
    ) -> tuple[list[asyncio.Task[None]], asyncio.Task[None]]:
        """Start the workers, and the task that ends the queue once they are done; the first
        error that stops the run goes in ``stop``."""
        counter = itertools.count()
        # The first request goes alone: a refused credential or a wrong address then costs
        # one request, not one per worker. The others start once the API has answered.
        answered = asyncio.Event()

        seen = self.seen_lines

        async def hand_over(row: NumberInput) -> None:
            item, line = await self._one(next(counter), row)
            if item.attempts and not answered.is_set():
                answered.set()
            if line is None:
                await queue.put(item)
            else:  # an answer: the row holds its line for good once its item is handed over,
                # so the rows of the line that wait for it come after it
                try:
                    await queue.put(item)
                except BaseException:  # cut short (the run stops): not yielded, no line
                    seen.settle(line, answered=False)
                    raise
                seen.settle(line, answered=True)
            self._judge(item)  # after the hand-over: the row that shows an outage is kept

        pull = self._puller(hand_over)

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
        return workers, asyncio.ensure_future(finish())

    def _puller(
        self, hand_over: Callable[[NumberInput], Awaitable[None]]
    ) -> Callable[[], Awaitable[None]]:
        """A worker's loop: take the next row of the input and hand its item over, until
        the input ends. The workers share one iterator: each row goes once."""
        numbers = self._numbers
        if isinstance(numbers, AsyncIterable):
            rows = aiter(numbers)
            lock = asyncio.Lock()  # an async iterator must not be advanced twice at once

            async def pull_async() -> None:
                while True:
                    async with lock:
                        try:
                            row = await anext(rows)
                        except StopAsyncIteration:
                            return
                    await hand_over(row)

            return pull_async
        plain = iter(numbers)

        async def pull() -> None:
            for row in plain:
                await hand_over(row)

        return pull

    def _judge(self, item: BulkItem) -> None:
        """Count the item towards an outage; stop the run when there is one."""
        error = item.error
        if isinstance(error, MissingCountryCode) and self._region is None:
            raise _Halt(
                MissingCountryCode(
                    f"row {item.index + 1} of the input (index {item.index}): {error}",
                    input=error.input,
                    read_as=error.read_as,
                )
            )
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

    async def _one(self, index: int, row: NumberInput) -> tuple[BulkItem, int | None]:
        """Row ``row``'s item, and the line it holds (a `SeenLines.claim` key) when it has
        an answer, for the caller to settle once the item is handed over (a row that ends
        without one frees its line here)."""
        attempts = count_attempts()
        read = _Read(index, self._client)
        seen = self.seen_lines
        line: int | None = None
        try:
            number = self._read(row, read)
            while True:
                refused = self._refused_for(read.instance)
                if refused is not None:
                    # The instance's credentials were refused: not sent again, and the row
                    # takes no line (a row of it on another instance is checked).
                    raise refused
                claim = seen.claim(read.index, number)
                if isinstance(claim, int):  # the row holds the line now: it is sent
                    line = claim
                    break
                if isinstance(claim, SameLine):  # a row with an answer holds it: not sent again
                    item = BulkItem(
                        index=read.index,
                        key=read.key,
                        input=row if type(row) is str else as_input(row),
                        number=number,
                        instance_id=read.instance_id,
                        planner=self._planner,
                        same_line_as=claim,
                    )
                    return item, None
                # The row that holds the line is in flight: its answer names it (claimed
                # again then), or its failure frees the line for this row.
                await claim.wait()
            availability = await read.client.check_availability(
                number, retry=self._retry, timeout=self._timeout, middlewares=self._pace
            )
        except Exception as error:  # the row's failure is its item; the run goes on
            if line is not None:  # no answer: the line is free, its next row is checked
                seen.settle(line, answered=False)
            if isinstance(error, RUN_ERRORS) and attempts[0]:
                self._refuse(error, read.instance)
            if not isinstance(error, PlugzError):
                logger.exception("row %d failed unexpectedly", read.index)
            failed = BulkItem(
                index=read.index,
                key=read.key,
                input=as_input(row),
                number=read.number,
                error=error,
                attempts=attempts[0],
                instance_id=read.instance_id,
                planner=self._planner,
            )
            return failed, None
        except BaseException:  # cut short (the run stops): the row holds no line
            if line is not None:
                seen.settle(line, answered=False)
            raise
        answer = BulkItem(
            index=read.index,
            key=read.key,
            input=row if type(row) is str else as_input(row),
            number=number,
            availability=availability,
            attempts=attempts[0],
            instance_id=read.instance_id,
            planner=self._planner,
        )
        return answer, line

    def _read(self, row: NumberInput, read: _Read) -> PhoneNumber:
        """Read ``row`` into ``read``: its number, and a `BulkRow`'s own index, key and
        instance (and the client of that instance). Returns the number."""
        if type(row) is str:  # the usual case, first
            number = read.number = PhoneNumber.parse(row, default_region=self._region)
            return number
        given: object = BulkRow.from_mapping(row) if isinstance(row, Mapping) else row
        if isinstance(given, BulkRow):
            read.index = read.index if given.index is None else given.index
            read.key = given.key or str(read.index)
            read.instance_id = given.instance_id
            if given.instance_id is not None:
                read.instance = (given.instance_id, given.instance_token)
            number = read.number = PhoneNumber.parse(given.number, default_region=self._region)
            read.client = self._client_for(given)
        elif isinstance(given, (str, PhoneNumber)):
            number = read.number = PhoneNumber.parse(given, default_region=self._region)
        else:
            kind = type(row).__name__
            raise InvalidArgument(f"a row must be text, a PhoneNumber or a mapping, not {kind}")
        return number
