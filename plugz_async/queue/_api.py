"""The producer's side: `RegistrationQueue` registers numbers, takes codes, reports."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timezone
from typing import Any

from redis.exceptions import RedisError
from saq.queue.redis import RedisQueue

from plugz_async._arguments import InputKind
from plugz_async._clock import Clock, SystemClock
from plugz_async._config import ENV_DEFAULT_REGION, ENV_INSTANCE_ID, region_setting
from plugz_async._errors import (
    ConfigurationError,
    InvalidArgument,
    RegistrationStateError,
    StaleWriteError,
    UnknownRegistrationError,
)
from plugz_async._models import UnbanRequest
from plugz_async._phone import PhoneNumber
from plugz_async._planner import RegistrationPlanner
from plugz_async._registration import (
    RegistrationMachine,
    RegistrationOutcome,
    RegistrationState,
    RegistrationStep,
    event_from_dict,
)

from ._engine import SaqScheduler, checks_queue_name
from ._inputs import CANCEL, CANCEL_KEPT, CANCELLED_NOTE
from ._record import CANCELLED, Record, new_step_id
from ._settings import redis_url_of
from ._status import (
    OVERDUE_AFTER,
    QueueEvent,
    RegistrationStatus,
    StatusPage,
    WorkerStatus,
    plan_as_it_stands,
)
from ._store import Store
from ._writes import INPUT_KINDS

# The status values moved to ._status; importers of this module find them here still.
#: Registrations read in one round trip.
_READ_BATCH = 200

#: The longest page `RegistrationQueue.page` and the like return.
MAX_PAGE = 1000


def _as_queued(phone: PhoneNumber, status: RegistrationStatus) -> str:
    """``phone``, and the form its line was queued in when that is another."""
    if status.number == phone.e164:
        return phone.e164
    return f"{phone.e164} is the same line as {status.number}, which"


def _check_page(offset: int, limit: int) -> None:
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise InvalidArgument(f"a page starts at 0 or later and holds 1 to {MAX_PAGE}")


__all__ = ["OVERDUE_AFTER", "QueueEvent", "RegistrationQueue", "RegistrationStatus", "WorkerStatus"]


class RegistrationQueue:
    """Durable registrations: ``register`` numbers here, workers (`QueueWorker`,
    ``plugz-async worker``) run them.

    Use it as ``async with RegistrationQueue(url) as queue:``. It holds no instance
    token: workers find tokens in their own credentials.

    Args:
        redis_url: the Redis of the queue (``PLUGZ_REDIS_URL`` when None).
        queue: the queue's name.
        default_instance: the instance numbers go to when ``register`` names none
            (``PLUGZ_INSTANCE_ID`` when None).
        planner: plans the first channels of new registrations (the workers' planner
            plans the rest; give both the same preference).
        clock: the clock (tests).
        default_region: the ISO region (``"BR"``) numbers written without ``+`` are
            read in (``PLUGZ_DEFAULT_REGION`` when None); see `PhoneNumber.parse`.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        queue: str = "plugz",
        default_instance: str | None = None,
        planner: RegistrationPlanner | None = None,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
        default_region: str | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.redis_url = redis_url_of(redis_url, env)
        self.default_region = region_setting(
            default_region or env.get(ENV_DEFAULT_REGION, "").strip() or None
        )
        self.name = queue
        self.default_instance = default_instance or env.get(ENV_INSTANCE_ID, "").strip() or None
        self._clock = clock or SystemClock()
        self._machine = RegistrationMachine(
            planner=planner or RegistrationPlanner(clock=self._clock)
        )
        self._saq = RedisQueue.from_url(self.redis_url, name=queue)
        self._store = Store(self._saq.redis, queue=queue)
        checks = RedisQueue(self._saq.redis, name=checks_queue_name(queue))
        self._scheduler = SaqScheduler(self._saq, checks)
        self._connected = False

    def __repr__(self) -> str:
        return f"RegistrationQueue(queue={self.name!r})"

    async def __aenter__(self) -> RegistrationQueue:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        if not self._connected:
            await self._saq.connect()
            self._connected = True

    async def aclose(self) -> None:
        """Close the connection (safe twice)."""
        if self._connected:
            self._connected = False
            # A Redis never reached (or gone) has nothing to close: closing never fails.
            with contextlib.suppress(OSError, RedisError):
                await self._saq.disconnect()

    @property
    def clock(self) -> Clock:
        """The clock the queue reads the time from (what is overdue, what is due soon)."""
        return self._clock

    @property
    def saq_queue(self) -> Any:
        """The saq ``Queue`` underneath (to look at its jobs). saq's web UI closes the
        queues it is given when it stops: give it a queue of its own,
        ``saq.Queue.from_url(url, name=queue.name)``."""
        return self._saq

    # -- registering ---------------------------------------------------------------------

    def parse_number(self, number: str | PhoneNumber) -> PhoneNumber:
        """``number`` read as the queue reads it (in its `default_region`)."""
        return PhoneNumber.parse(number, default_region=self.default_region)

    async def register(
        self, number: str | PhoneNumber, *, instance: str | None = None, restart: bool = False
    ) -> RegistrationStatus:
        """Queue the registration of ``number`` on ``instance``; a worker runs it.

        Registering a number the queue knows returns its registration, running or
        finished: nothing new starts, so a producer may deliver the same request twice.
        ``restart=True`` starts a finished one afresh (after ``no_code``, say); a running
        one is returned all the same.

        Raises:
            InvalidPhoneNumber: not a possible number (nothing is written);
                `MissingCountryCode` when it has no ``+`` and the queue no region.
            ConfigurationError: no instance named and no default instance.
            InstanceBusyError: the instance registers another number.
            RegistrationStateError: the number is queued on another instance (running,
                or finished without ``restart``): nothing new starts.
        """
        phone = self.parse_number(number)
        instance = (instance or self.default_instance or "").strip()
        if not instance:
            raise ConfigurationError(f"name the instance to register on, or set {ENV_INSTANCE_ID}")
        await self.connect()
        step_id = new_step_id()
        now = time.time()
        state = self._machine.start(phone)
        created, _ = await self._store.create(
            state,
            instance=instance,
            step_id=step_id,
            due=now,
            restart=restart,
        )
        if created:
            await self._scheduler.schedule(phone.line.e164, step_id, now, step=state.step.value)
        status = await self.status(phone)
        if not created and status.instance != instance:
            raise RegistrationStateError(
                f"{_as_queued(phone, status)} is queued on instance {status.instance!r},"
                f" not {instance!r} (it is {status.status}): nothing new was started"
                + ("" if status.done else "; cancel it first to move it")
            )
        return status

    # -- input from people ---------------------------------------------------------------

    async def submit_code(self, number: str | PhoneNumber, code: str) -> RegistrationStatus:
        """Give the code that came by SMS, call or pop-up (an SMS gateway's webhook,
        say). It may come before the worker has written that the code was sent.

        Raises:
            InvalidArgument: not a code (4 to 8 digits); nothing is written.
            UnknownRegistrationError, RegistrationStateError: no registration of
                ``number`` waits for a code.
        """
        return await self._give(number, InputKind.CODE, InputKind.CODE.check(code))

    async def submit_captcha(self, number: str | PhoneNumber, text: str) -> RegistrationStatus:
        """Give the text of the captcha the registration shows (``status().wants``)."""
        return await self._give(number, InputKind.CAPTCHA, InputKind.CAPTCHA.check(text))

    async def submit_pin(self, number: str | PhoneNumber, pin: str) -> RegistrationStatus:
        """Give the two-step verification PIN (6 digits)."""
        return await self._give(number, InputKind.PIN, InputKind.PIN.check(pin))

    async def _give(
        self, number: str | PhoneNumber, kind: InputKind, text: str
    ) -> RegistrationStatus:
        phone = self.parse_number(number)
        record = await self._record(phone)
        step = RegistrationStep(record.state["step"])
        # A code may come before the worker wrote that it was sent (or that the captcha
        # before it was accepted): it is kept for the step that wants it.
        early_code = kind == "code" and step in (
            RegistrationStep.REQUEST_CODE,
            RegistrationStep.ANSWER_CAPTCHA,
        )
        accepts = INPUT_KINDS.get(step) == kind or early_code
        if record.done or not accepts:
            raise RegistrationStateError(
                f"the registration of {phone.e164} does not wait for a {kind}"
                f" (it is {record.status})"
            )
        await self._store.set_input(record.number, kind, text)
        # Read again: the step may have moved on since (it then sees the input itself).
        record = await self._reread(record)
        if not record.done and INPUT_KINDS.get(RegistrationStep(record.state["step"])) == kind:
            await self._wake(record)
        return self._status(record)

    async def cancel(self, number: str | PhoneNumber) -> RegistrationStatus:
        """Cancel the registration of ``number``: no further code request is sent, and it
        ends ``cancelled``. With no code request in flight, it ends at once; with one in
        flight, that request ends first (its answer is kept), then a worker ends it.

        Raises:
            UnknownRegistrationError: the queue has none.
            RegistrationStateError: it has ended already.
        """
        phone = self.parse_number(number)
        record = await self._record(phone)
        if record.done:
            raise RegistrationStateError(
                f"the registration of {phone.e164} has ended already ({record.status})"
            )
        await self._store.set_input(record.number, CANCEL, "1", keep=CANCEL_KEPT)
        if record.intent is None:
            try:  # fenced: a worker's write since (an intent, say) makes this one fail
                await self._store.give_up(record, CANCELLED_NOTE, status=CANCELLED)
                return await self._again(record)
            except StaleWriteError:
                pass  # a worker moved it on: it will see the cancel
        record = await self._reread(record)
        if not record.done:
            await self._wake(record)
        return self._status(record)

    async def request_unbanning(
        self, number: str | PhoneNumber, description: str, *, client: Any
    ) -> UnbanRequest:
        """Send the unban request of a registration that ended ``appeal``, with
        ``client`` (a ``PlugzClient`` of its instance).

        Raises:
            RegistrationStateError: it did not end banned with an appeal token.
        """
        status = await self.status(number)
        if status.outcome is not RegistrationOutcome.APPEAL or status.appeal_token is None:
            raise RegistrationStateError(
                f"the registration of {status.number} did not end banned with an appeal token"
            )
        answer: UnbanRequest = await client.request_unbanning(status.appeal_token, description)
        return answer

    # -- reporting -----------------------------------------------------------------------

    async def status(self, number: str | PhoneNumber) -> RegistrationStatus:
        """Where the registration of ``number`` stands.

        Raises:
            UnknownRegistrationError: the queue has none.
        """
        return self._status(await self._record(self.parse_number(number)))

    async def statuses(
        self, *, offset: int = 0, limit: int | None = None
    ) -> list[RegistrationStatus]:
        """Every registration, oldest first (``offset``, ``limit``: a page of them; read
        in one round trip a page)."""
        await self.connect()
        numbers = await self._store.numbers(offset=offset, limit=limit)
        found: list[RegistrationStatus] = []
        for start in range(0, len(numbers), _READ_BATCH):
            records = await self._store.load_many(numbers[start : start + _READ_BATCH])
            found.extend(self._status(record) for record in records)
        return found

    async def size(self) -> int:
        """How many registrations the queue holds (finished ones until pruned)."""
        await self.connect()
        return await self._store.size()

    async def page(self, *, offset: int = 0, limit: int = 50) -> StatusPage:
        """A page of the registrations, oldest first, and how many there are in all: what
        a page of a list shows, read without reading the others."""
        _check_page(offset, limit)
        await self.connect()
        total = await self._store.size()
        return StatusPage(total, offset, tuple(await self.statuses(offset=offset, limit=limit)))

    async def overdue(
        self, *, after: float = OVERDUE_AFTER, offset: int = 0, limit: int = 50
    ) -> StatusPage:
        """The unfinished registrations whose next step was due more than ``after``
        seconds ago (no worker took it: none alive, or each one busy), longest overdue
        first; a page of them, and how many there are."""
        _check_page(offset, limit)
        await self.connect()
        before = self._clock.now().timestamp() - after
        return await self._due_page(-math.inf, before, offset, limit)

    async def upcoming(
        self, within: float = 3600.0, *, offset: int = 0, limit: int = 500
    ) -> StatusPage:
        """The unfinished registrations whose next step falls due in the next ``within``
        seconds (a code request when its channel opens, an input's wait ending), soonest
        first; a page of them, and how many there are."""
        _check_page(offset, limit)
        await self.connect()
        now = self._clock.now().timestamp()
        return await self._due_page(now, now + within, offset, limit)

    async def _due_page(self, start: float, end: float, offset: int, limit: int) -> StatusPage:
        total, numbers = await self._store.due_between(start, end, offset=offset, limit=limit)
        records = await self._store.load_many(numbers)
        statuses = tuple(self._status(r) for r in records if not r.done)
        return StatusPage(total, offset, statuses)

    async def workers(self) -> list[WorkerStatus]:
        """The queue's workers seen in the last day, last seen first: alive ones, those
        that stopped, and those that died (their heartbeat stopped)."""
        await self.connect()
        now = self._clock.now().timestamp()
        return [WorkerStatus.of(said, now) for said in await self._store.workers()]

    async def prune(self, older_than: float) -> int:
        """Forget the registrations that finished more than ``older_than`` seconds ago
        (their state, events kept in the hash, and counts); unfinished ones are never
        touched. Returns how many were forgotten. Run it now and then: finished
        registrations stay in Redis (about 5 KiB each) until pruned.

        Raises:
            InvalidArgument: ``older_than`` is negative.
        """
        if not older_than >= 0:
            raise InvalidArgument("older_than must be 0 or more seconds")
        await self.connect()
        return await self._store.prune(time.time() - older_than)

    async def counts(self) -> dict[str, int]:
        """Registrations by status: steps while running, outcomes (or ``failed``) once
        done."""
        await self.connect()
        return await self._store.counts()

    async def events(
        self, *, after: str = "$", timeout: float | None = None
    ) -> AsyncIterator[QueueEvent]:
        """Follow the events of every registration as workers write them.

        Args:
            after: start after this event id (``"0"``: from the oldest kept; ``"$"``:
                from now on).
            timeout: stop after this many seconds without an event (None: never).
        """
        await self.connect()
        block = 1000 if timeout is None else max(1, int(timeout * 1000))
        while True:
            entries = await self._store.read_events(after, block_ms=block)
            if not entries and timeout is not None:
                return
            for entry_id, fields in entries:
                after = entry_id
                yield QueueEvent(
                    id=entry_id,
                    number=fields["number"],
                    status=fields["status"],
                    version=int(fields["version"]),
                    event=event_from_dict(json.loads(fields["event"])),
                )

    async def _wake(self, record: Record) -> None:
        """Have ``record``'s step run now (an input or a cancel came for it)."""
        await self._scheduler.schedule(
            record.number, record.step_id, 0.0, step=record.status, reason="input"
        )

    async def _reread(self, record: Record) -> Record:
        """``record`` as it stands now (read under its own key: of two records of one line
        that 0.1.0 left, the same one)."""
        again = await self._store.load(record.number)
        if again is None:
            raise UnknownRegistrationError(f"the queue has no registration of {record.number}")
        return again

    async def _again(self, record: Record) -> RegistrationStatus:
        return self._status(await self._reread(record))

    async def _record(self, phone: PhoneNumber) -> Record:
        await self.connect()
        record = await self._store.find(phone)
        if record is None:
            raise UnknownRegistrationError(f"the queue has no registration of {phone.e164}")
        return record

    def _status(self, record: Record) -> RegistrationStatus:
        state = RegistrationState.from_dict(record.state, clock=self._clock)
        plan = plan_as_it_stands(state.plan)
        return RegistrationStatus(
            number=state.number.e164,
            line=record.number,
            instance=record.instance,
            status=record.status,
            done=record.done,
            outcome=state.outcome,
            step=state.step,
            channel=None if state.channel is None else state.channel.value,
            wants=None if record.done else state.wants,
            next_at=None if record.done else datetime.fromtimestamp(record.due, tz=timezone.utc),
            plan=plan,
            appeal_token=None if plan is None else plan.appeal_token,
            captcha=None if record.done else state.captcha,
            error=record.error,
            events=state.events,
            version=record.version,
            instance_error=state.instance_error,
        )
