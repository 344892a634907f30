"""The queue's runner: one step of one registration, as a job.

A job names a registration and the step it may run (``step_id``). The step reads the
registration from Redis, does what `RegistrationMachine` says the step does, and
writes the next state by compare-and-set, naming the next step and when it is due;
then it has the engine run that step. A job whose step is no longer the
registration's (it ran already, or another run took over) only makes sure the
current step is scheduled, and stops.

**Exactly one code request per channel window.** Before a code request goes out, its
intent is written (compare-and-set) with a lease; the request is sent only while the
lease is young, with a timeout that ends before the lease does. A run that finds an
intent waits for its lease to end (it sleeps to the end when near, else has itself woken
then, under a key of its own), then asks the safe availability check: a wait now in force
on that channel means the code went out (the answer was lost with the run that sent it),
and the registration goes on to the code; no wait, early enough that a wait the request
started would still run (``code_wait_floor``), means the request never reached the server,
and it is sent now. No wait found later than that cannot tell the two apart: the code is
treated as sent, never asked for again. A record written before Redis restarted is
checked the same way before its code request. A run that stalled past its heartbeat
finds, when it wakes, that its lease is over (it sends nothing) or that its write is
refused (another run moved the registration on). docs/scale.md gives the premises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs
from redis.exceptions import RedisError

from plugz_async._errors import (
    PlanDataError,
    PlugzError,
    StaleWriteError,
)
from plugz_async._models import Availability, CodeRequest
from plugz_async._registration import (
    ACTIONS,
    APPROVED,
    EventKind,
    RegistrationState,
    RegistrationStep,
    StepContext,
)

from ._lateness import Lateness
from ._store import CodeIntent, Record, new_step_id
from ._writes import INPUT_KINDS, StepWriter, describe, not_processed

if TYPE_CHECKING:
    from plugz_async._client import PlugzClient

__all__ = ["StepRunner"]

logger = logging.getLogger("plugz_async.queue")


#: Seconds short of the shortest wait a code request starts by which a dead run's code
#: request must be looked at again, for "no wait in force" to mean "never sent".
RECHECK_MARGIN = 2.0


#: The shortest wait a code request starts, unless a worker is told otherwise: the API
#: documents 125 s (165 s for the channel used).
CODE_WAIT_FLOOR = 60.0

ClientFor = Callable[[str], Awaitable["PlugzClient"]]
Acquire = Callable[[str], Awaitable[float]]


@attrs.define(kw_only=True)
class StepRunner(StepWriter):
    """Runs one step of a queued registration (see the module's docstring).

    Attributes:
        store: the registrations in Redis.
        scheduler: the engine that runs steps.
        machine: the registration's rules.
        client_for: the client of an instance (its token comes from the worker's
            credentials, never from Redis).
        acquire: waits for the instance's rate limit (None: no limit).
        forget: drops an instance's client after its token was refused (it may have
            been rotated: the next step reads it again).
        input_timeout: seconds a code, captcha text or PIN is waited for.
        device_poll_interval: seconds between asking whether a transfer was approved.
        connected_poll_interval: seconds between asking the instance's status whether it
            is connected, after the last step (it sends no code: a run that dies asking
            is simply asked again).
        request_timeout: the code request's timeout.
        send_window: seconds after writing the intent within which the request may
            still be sent (a run slower than that sends nothing).
        max_sleep: a step due this close runs now and sleeps to its moment; a later
            one is scheduled.
        lateness: where how late each step started is noted (None: nowhere).
        max_errors: transient errors in a row before the registration is given up.
        code_wait_floor: the shortest wait a code request starts (seconds): a dead run's
            code request looked at again later than that after it, with no wait in force,
            cannot be told apart from one that never went out, and is treated as sent.
    """

    client_for: ClientFor
    acquire: Acquire | None = None
    lateness: Lateness | None = None
    max_sleep: float = 3.0
    code_wait_floor: float = CODE_WAIT_FLOOR

    # -- the job ---------------------------------------------------------------------------

    async def run(
        self,
        number: str,
        step_id: str,
        *,
        queued: float | None = None,
        working: asyncio.Semaphore | None = None,
    ) -> str:
        """Run the step ``step_id`` of ``number``'s registration; returns what it did.
        ``queued``: when its job was queued (Unix time), the moment of a step whose
        input came before its wait ran out. ``working``: held while the step works, not
        while it sleeps to its moment (a worker's steps at work at once)."""
        record = await self.store.load(number)
        if record is None or record.done:
            return "finished"
        if record.step_id != step_id:
            await self.scheduler.schedule(number, record.step_id, record.due, step=record.status)
            return "stale"
        try:
            state = RegistrationState.from_dict(record.state, clock=self.clock)
        except PlanDataError as error:
            await self.store.give_up(record, describe(error))
            return "failed"
        if record.intent is None and await self._cancel_asked(record):
            return await self._cancel(record)
        early = record.due - self.now()
        given = early > 0 and await self._input_given(record, state)
        if early > 0 and not given:
            if early > self.max_sleep:
                # A job of ours that ran early (another host's clock ahead): run again at
                # the due time, under a key of its own (this job's key is still active).
                reason = f"early-{new_step_id()[:8]}"
                await self.scheduler.schedule(
                    number, record.step_id, record.due, step=record.status, reason=reason
                )
                return "early"
            await self.clock.sleep(early)
        async with working or contextlib.nullcontext():
            if self.lateness is not None:
                # Its moment: when it fell due, or when its input came (its job was queued).
                moment = (self.now() if queued is None else queued) if given else record.due
                self.lateness.note(state.step.value, self.now() - moment)
            return await self._work(record, state)

    async def _work(self, record: Record, state: RegistrationState) -> str:
        """The step itself, at its moment; what it did."""
        number = record.number
        try:
            done = await self._step(record, state)
            logger.info("registration of %s: step %s -> %s", number, state.step.value, done)
            return done
        except StaleWriteError as error:
            logger.warning("registration of %s: %s", number, error)
            return "refused"
        except PlugzError as error:
            try:
                return await self._failed(record, state, error)
            except StaleWriteError as stale:
                logger.warning("registration of %s: %s", number, stale)
                return "refused"

    async def _step(self, record: Record, state: RegistrationState) -> str:
        step = state.step
        if step is RegistrationStep.REQUEST_CODE:
            return await self._request_code(record, state)
        if step in INPUT_KINDS:
            return await self._answer(record, state)
        # The approval of a transfer happens on the old phone, and polling sees it: the
        # queue never waits for a person to say so.
        given = APPROVED if step is RegistrationStep.CONFIRM_DEVICE else None
        context = await self._context(record, sending=given is None)
        following = await ACTIONS[step](context, state, given)
        if step is RegistrationStep.CHECK:
            assert following.availability is not None
            following = await self._checked(record, following, following.availability)
        return await self._commit(record, state, following)

    async def _context(self, record: Record, *, sending: bool = True) -> StepContext:
        """What a step's action works with: the rules, and the instance's client (once
        its rate limit lets a request go), or no client for an action that sends nothing
        (it needs no token for the instance, nor a place in its rate limit)."""
        client = await self._client(record) if sending else None
        return StepContext(self.machine, client, self.request_timeout)

    async def _checked(
        self, record: Record, after: RegistrationState, availability: Availability
    ) -> RegistrationState:
        """The state after the check (``after``), looked at again. A record written before
        Redis restarted from a snapshot (not append-only) may have lost later writes, a
        code request's among them: a wait in force on the first channel then cannot be
        told from one that request started, and the code is treated as sent rather than
        asked for again."""
        channel = after.channel
        if after.step is not RegistrationStep.REQUEST_CODE or channel is None:
            return after
        assert after.plan is not None
        if after.plan.ready_in(channel) <= 0:
            return after
        server = await self.store.server_now()
        if record.run in (None, server.run) or server.append_only:
            return after
        logger.warning(
            "registration of %s: written before Redis restarted without its append-only"
            " file, and a wait is in force on %s: a code may have gone out before the"
            " restart; treated as sent, no second code",
            record.number,
            channel.value,
        )
        return self.machine.code_request_unknown(
            after,
            availability,
            why="Redis restarted from a snapshot since this registration was written, and"
            f" a wait of {availability.wait_seconds(channel):g} s is in force",
        )

    async def _client(self, record: Record) -> PlugzClient:
        client = await self.client_for(record.instance)
        if self.acquire is not None:
            await self.acquire(record.instance)
        return client

    # -- the code request, exactly once per window -------------------------------------------

    async def _request_code(self, record: Record, state: RegistrationState) -> str:
        channel = state.channel
        plan = state.plan
        assert channel is not None
        assert plan is not None
        intent = record.intent
        if intent is not None:
            waited = await self._lease_over(record, intent)
            if waited is not None:
                return waited
            recovered = await self._recheck(record, state, intent)
            if recovered is not None:
                return recovered
            # No wait in force, early enough that one would be: the request never reached
            # the server. Send it now.
        wait = plan.ready_in(channel)
        if wait > self.max_sleep:
            await self._again(record, state, at=self.now() + wait)
            return "early"
        if wait > 0:
            await self.clock.sleep(wait)
        context = await self._context(record)
        if await self._cancel_asked(record):  # asked while this run waited: no code now
            return await self._cancel(record)
        # The send window runs from before the intent is written: a run delayed anywhere
        # from here to the wire (a slow write, a stall, a blocked loop) sends nothing.
        started = self.clock.monotonic()
        server = await self.store.server_now()
        if intent is None and record.run != server.run:
            # Redis restarted (or failed over, or was rolled back to a snapshot) since this
            # step was written: a later write, a code request's, may be lost with it.
            recovered, _ = await self._wait_in_force(
                record, state, "a Redis restart (the record was written under another run)"
            )
            if recovered is not None:
                return recovered
            started = self.clock.monotonic()
            server = await self.store.server_now()
        written_at = server.time
        mark = CodeIntent(
            id=new_step_id(),
            channel=channel.value,
            lease_until=written_at + self.lease,
            written_at=written_at,
        )
        version = await self.store.write(record, state, intent=mark, errors=record.errors)
        record = attrs.evolve(record, version=version, intent=mark, run=server.run)
        if self.clock.monotonic() - started > self.send_window:
            await self._look_again(record, self.lease)
            return "lease"
        return await self._send_code_request(record, state, context, started)

    async def _send_code_request(
        self, record: Record, state: RegistrationState, context: StepContext, started: float
    ) -> str:
        """Send the code request whose intent ``record`` holds, and keep its answer."""
        intent = record.intent
        assert intent is not None
        try:
            following = await ACTIONS[RegistrationStep.REQUEST_CODE](context, state, None)
        except PlugzError as error:
            if not_processed(error):
                # Certainly not acted on: no code went out. Drop the intent, try later.
                return await self._failed(record, state, error, drop_intent=True)
            # It may or may not have reached the server: after the lease, the
            # availability check will say.
            await self._again(
                record,
                state,
                at=self.now() + max(0.0, intent.lease_until - await self.store.server_time()),
                keep_intent=True,
                error=describe(error),
                errors=record.errors,
            )
            return "unknown"
        took = self.clock.monotonic() - started
        try:
            committed = await self._commit(record, state, following, persist=True)
        except StaleWriteError:
            if took > self.lease:
                # A premise broken: this run's request ended after its lease (it stalled
                # on the way to the wire, or the server took that long), and another run
                # took the step over meanwhile: it may have sent a code too.
                logger.error(
                    "registration of %s: a code request ended %.0f s after its intent, past"
                    " its lease of %g s, and another run had taken the step over: the number"
                    " may have been sent two codes",
                    record.number,
                    took,
                    self.lease,
                )
            raise
        await self._note_wait(following)
        return committed

    async def _lease_over(self, record: Record, intent: CodeIntent) -> str | None:
        """None once ``intent``'s lease is over (sleeping to its end when it is near);
        else the step is run again at its end, and what this run did."""
        left = intent.lease_until - await self.store.server_time()
        if left > self.max_sleep:
            # Another run may still be waiting for the answer: look again once its
            # lease is over, without writing (its answer must still be written).
            await self._look_again(record, left)
            return "lease"
        while left > 0:  # the lease is read on Redis's clock, slept on this host's
            await self.clock.sleep(left + 0.05)
            left = intent.lease_until - await self.store.server_time()
        return None

    async def _look_again(self, record: Record, after: float) -> None:
        """Run the registration's step again ``after`` seconds from now. The key is a new
        one each time: a job of the same key still running (this one, woken early by the
        engine) would have the engine refuse it, and the wake-up would be lost."""
        reason = f"lease-{new_step_id()[:8]}"
        await self.scheduler.schedule(
            record.number, record.step_id, self.now() + after, step=record.status, reason=reason
        )

    async def _recheck(
        self, record: Record, state: RegistrationState, intent: CodeIntent
    ) -> str | None:
        """After a run that wrote ``intent`` and left no answer: did its code request
        reach the server? A wait in force says it did (go on to the code); no wait, while
        a wait it started would still be in force, says it did not (None: send it). No
        wait found later than that cannot tell: the code is treated as sent."""
        assert state.channel is not None
        recovered, availability = await self._wait_in_force(record, state, "")
        if recovered is not None:
            return recovered
        written = (
            intent.written_at if intent.written_at is not None else intent.lease_until - self.lease
        )
        elapsed = await self.store.server_time() - written
        floor = await self.store.code_wait_floor(self.code_wait_floor)
        if elapsed < floor - RECHECK_MARGIN:
            return None
        logger.warning(
            "registration of %s: a code request of a run that died left no answer, and the"
            " check came %.0f s after its intent, too late to tell whether it went out (the"
            " shortest wait a code request starts is %g s, less a %g s margin): treated as"
            " sent, no second code",
            record.number,
            elapsed,
            floor,
            RECHECK_MARGIN,
        )
        unknown = self.machine.code_request_unknown(
            state,
            availability,
            why=f"a run that died left no answer, and the check {elapsed:.0f} s later could"
            " no longer tell (no wait was in force)",
        )
        return await self._commit(record, state, unknown, note="unknown")

    async def _wait_in_force(
        self, record: Record, state: RegistrationState, why: str
    ) -> tuple[str | None, Availability]:
        """Ask the safe availability check; a wait in force on the step's channel means
        a code went out that this record does not know of: go on to the code (the step's
        result, with the check). None with the check when there is none."""
        assert state.channel is not None
        client = await self._client(record)
        line = state.sends_line(client.canonical_numbers)  # the form its request went in
        availability = await client.check_availability(state.number, canonical=line)
        if availability.wait_seconds(state.channel) <= 0:
            return None, availability
        if why:
            logger.warning(
                "registration of %s: a wait is in force on %s after %s: a code went out"
                " that the record lost; no second code",
                record.number,
                state.channel.value,
                why,
            )
        recovered = self.machine.code_request_recovered(state, availability)
        return await self._commit(record, state, recovered, note="recovered"), availability

    async def _note_wait(self, after: RegistrationState) -> None:
        """Check the premise the recovery of a lost answer rests on: the wait a code
        request starts outlasts the time a dead run's step takes to be looked at again."""
        request = next(
            (e.answer for e in reversed(after.events) if e.kind is EventKind.CODE_REQUESTED),
            None,
        )
        if not isinstance(request, CodeRequest) or not request.success:
            return
        channel = request.channel
        waits = [w for w in (request.retry_after, request.wait_seconds(channel)) if w]
        if not waits or min(waits) >= self.code_wait_floor:
            return
        shortest = min(waits)
        with contextlib.suppress(OSError, RedisError):
            if await self.store.lower_code_wait_floor(shortest):
                logger.warning(
                    "a code request started a wait of only %g s on %s, shorter than the"
                    " code_wait_floor of %g s: from now on, a lost answer looked at later"
                    " than %g s after its request is treated as sent (set code_wait_floor"
                    " to the API's shortest wait, and keep recheck_within well inside it)",
                    shortest,
                    channel.value,
                    self.code_wait_floor,
                    shortest,
                )

    # -- a person's input -------------------------------------------------------------------

    async def _answer(self, record: Record, state: RegistrationState) -> str:
        kind = INPUT_KINDS[state.step]
        text = await self.store.peek_input(record.number, kind)
        if text is None:  # waited for in vain: the action says what follows, sending nothing
            context = await self._context(record, sending=False)
            following = await ACTIONS[state.step](context, state, None)
            return await self._commit(record, state, following)
        context = await self._context(record)
        # Claim the step before sending (an unsafe route): a second run of it, by a
        # worker that took a stalled one's step over, is refused here, not at the end.
        version = await self.store.write(record, state, keep_intent=True, errors=record.errors)
        record = attrs.evolve(record, version=version)
        following = await ACTIONS[state.step](context, state, text)
        await self.store.drop_input(record.number, kind, text)
        return await self._commit(record, state, following)
