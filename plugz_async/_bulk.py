"""Bulk runs: many numbers, bounded, rate-limited, streamed, and nothing lost.

``client.check_many(numbers)`` reads its input lazily (memory depends on the
concurrency, not on the length of the input), keeps at most ``concurrency``
requests in flight, paces every attempt (retries included) with an ``aiolimiter``
limiter, pauses the whole run when the server answers 429, and yields a
`BulkItem` per input row as each completes. A row that cannot be read, or
any error, becomes an item with an ``error``: the run goes on.
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
import random
from collections import Counter, OrderedDict, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import attrs

from ._errors import InvalidArgument, PlugzError, RateLimitError
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
    """

    number: str | PhoneNumber
    instance_id: str | None = None
    instance_token: str | None = attrs.field(default=None, repr=False)
    key: str | None = None
    given: object = attrs.field(default=None, repr=False, eq=False)

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


class BulkRun:
    """A bulk run: iterate it for the items as they complete; ``summary`` grows with it.

    Use ``async with`` (or call `aclose`) so that breaking out of the loop
    stops every request still in flight at once::

        async with client.check_many(numbers, concurrency=32) as run:
            async for item in run:
                ...
        print(run.summary.to_dict())
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
    ) -> None:
        if concurrency < 1:
            raise InvalidArgument("concurrency must be at least 1")
        if max_rate is not None and not max_rate > 0:
            raise InvalidArgument("max_rate must be more than 0 requests a second")
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

        async def hand_over(row: Row) -> None:
            await queue.put(await self._one(next(counter), row))

        if isinstance(numbers, AsyncIterable):
            rows = aiter(numbers)
            lock = asyncio.Lock()  # an async iterator must not be advanced twice at once

            async def work() -> None:
                while True:
                    async with lock:
                        try:
                            row = await anext(rows)
                        except StopAsyncIteration:
                            return
                    await hand_over(row)

        else:
            plain = iter(numbers)

            async def work() -> None:
                for row in plain:  # the workers share one iterator: each row goes once
                    await hand_over(row)

        failure: list[BaseException] = []

        async def finish() -> None:
            try:
                await asyncio.gather(*workers)
            except Exception as error:  # a worker broke (a bug): end the run with it
                failure.append(error)
            await queue.put(None)  # the workers are done: so is the run

        workers = [asyncio.ensure_future(work()) for _ in range(self._concurrency)]
        closer = asyncio.ensure_future(finish())
        clock = self._client.clock
        try:
            while (item := await queue.get()) is not None:
                self.summary.add(item, clock.monotonic(), self._planner)
                yield item
            if failure:
                raise failure[0]
        finally:
            for task in (*workers, closer):
                task.cancel()
            await asyncio.gather(*workers, closer, return_exceptions=True)

    def _client_for(self, row: BulkRow) -> PlugzClient:
        if row.instance_id is None or row.instance_token is None:
            return self._client
        key = (row.instance_id, row.instance_token)
        client = self._clients.get(key)
        if client is None:
            client = self._client.for_instance(row.instance_id, row.instance_token)
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
        number = None
        try:
            client = self._client
            if type(row) is str:  # the usual case, first
                number = PhoneNumber.parse(row)
            else:
                given: object = BulkRow.from_mapping(row) if isinstance(row, Mapping) else row
                if isinstance(given, BulkRow):
                    key = given.key or key
                    instance_id = given.instance_id
                    number = PhoneNumber.parse(given.number)
                    client = self._client_for(given)
                elif isinstance(given, (str, PhoneNumber)):
                    number = PhoneNumber.parse(given)
                else:
                    kind = type(row).__name__
                    raise InvalidArgument(
                        f"a row must be text, a PhoneNumber or a mapping, not {kind}"
                    )
            availability = await client._check(number, self._retry, self._timeout, self._gate)
        except Exception as error:  # the row's failure is its item; the run goes on
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


class ResultsFile:
    """An append-only results file (JSON Lines, or CSV) that a crash cannot corrupt.

    Each record is written with one ``write`` and flushed at once, so a process killed
    at any moment leaves at most a half-written last line; `open` with
    ``resume=True`` cuts it off and returns the keys already done.
    """

    def __init__(self, path: Path, *, format: str = "jsonl") -> None:
        if format not in ("jsonl", "csv"):
            raise InvalidArgument("format must be 'jsonl' or 'csv'")
        self.path = Path(path)
        self.format = format
        self._file: io.TextIOWrapper | None = None

    def open(self, *, resume: bool = False) -> set[str]:
        """Open for appending; with ``resume``, the keys of the records already there."""
        done: set[str] = set()
        if resume and self.path.exists():
            done = self._recover()
        elif self.path.exists() and self.path.stat().st_size:
            raise InvalidArgument(f"{self.path} is not empty: resume it, or choose another file")
        self._file = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        if self.format == "csv" and self._file.tell() == 0:
            self._write(self._csv_line(dict(zip(CSV_FIELDS, CSV_FIELDS, strict=True))))
        return done

    def _recover(self) -> set[str]:
        """The keys of the complete records; a half-written last record is cut off."""
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1  # everything after the last newline is half-written
        done: set[str] = set()
        lines = data[:keep].decode("utf-8", errors="replace").splitlines()
        if self.format == "jsonl":
            for line in lines:
                if line.strip():
                    done.add(str(json.loads(line)["key"]))
        else:
            for row in csv.DictReader(lines):
                done.add(str(row["key"]))
        if keep < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(keep)
        return done

    def _csv_line(self, row: Mapping[str, Any]) -> str:
        buffer = io.StringIO()
        csv.DictWriter(buffer, CSV_FIELDS, lineterminator="\n").writerow(row)
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
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON Lines results file (a half-written last line is skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n") and line.strip():
                records.append(json.loads(line))
    return records


def to_dataframe(results: Iterable[BulkItem] | Iterable[Mapping[str, Any]] | str | Path) -> Any:
    """A ``pandas.DataFrame`` of bulk results (items, records, or a JSON Lines file): one
    row per number, the ready times as timestamps. Needs pandas (``plugz-async[pandas]``)."""
    try:
        import pandas
    except ImportError:  # pragma: no cover - depends on the environment
        message = "to_dataframe needs pandas: pip install 'plugz-async[pandas]'"
        raise InvalidArgument(message) from None
    if isinstance(results, (str, Path)):
        records: Iterable[Mapping[str, Any]] = read_results(results)
    else:
        records = (r.to_dict() if isinstance(r, BulkItem) else r for r in results)
    frame = pandas.DataFrame([flat_record(r) for r in records], columns=CSV_FIELDS)
    for column in ("sms_ready_at", "voice_ready_at", "wa_old_ready_at"):
        frame[column] = pandas.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame
