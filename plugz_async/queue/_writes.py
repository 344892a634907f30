"""What a step of a queued registration writes: the next state (compare-and-set), its
step's schedule, a step run again later, and what an error means for the registration.

`StepWriter` is the half of `StepRunner` that never talks to the API: the runner
(``_steps``) does the step, and writes what it learnt through these.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import attrs
from redis.exceptions import RedisError

from plugz_async._clock import Clock
from plugz_async._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnectError,
    InstanceNotFoundError,
    InvalidArgument,
    PlugzError,
    RateLimitError,
    ResponseDecodeError,
    StaleWriteError,
)
from plugz_async._registration import (
    CONNECTED_POLL_INTERVAL,
    RegistrationMachine,
    RegistrationState,
    RegistrationStep,
)

from ._engine import StepScheduler
from ._store import CANCEL, CANCELLED, CANCELLED_NOTE, Record, Store, new_step_id

__all__ = ["INPUT_KINDS", "PERMANENT", "SEND_WINDOW", "StepWriter", "describe", "not_processed"]

logger = logging.getLogger("plugz_async.queue")

#: What a step that waits for a person (code, captcha text, PIN) takes as input.
INPUT_KINDS = {step: step.wants for step in RegistrationStep if step.wants is not None}

#: Errors that end a queued registration at once (``failed``): trying again cannot help.
#: (A worker with no token for the instance is not one: another worker may have it.)
PERMANENT = (
    AuthenticationError,
    InstanceNotFoundError,
    BadRequestError,
    ResponseDecodeError,
    InvalidArgument,
)

#: Seconds after writing a code request's intent within which it may still be sent.
SEND_WINDOW = 2.0


@attrs.define(kw_only=True)
class StepWriter:
    """Writes what a step did (see `StepRunner` for the attributes)."""

    store: Store
    scheduler: StepScheduler
    machine: RegistrationMachine
    forget: Callable[[str], Awaitable[None]] | None = None
    input_timeout: float = 600.0
    device_poll_interval: float = 5.0
    connected_poll_interval: float = CONNECTED_POLL_INTERVAL
    request_timeout: float = 15.0
    send_window: float = SEND_WINDOW
    max_errors: int = 8

    @property
    def clock(self) -> Clock:
        return self.machine.clock

    @property
    def lease(self) -> float:
        """How long an intent holds: the send window, the request's timeout, a margin."""
        return self.lease_for(self.request_timeout, self.send_window)

    @staticmethod
    def lease_for(request_timeout: float, send_window: float = SEND_WINDOW) -> float:
        return send_window + request_timeout + 2.0

    def now(self) -> float:
        return self.clock.now().timestamp()

    # -- writing ----------------------------------------------------------------------------

    async def _input_given(self, record: Record, state: RegistrationState) -> bool:
        """Whether the input ``state``'s step waits for has been given."""
        kind = INPUT_KINDS.get(state.step)
        return kind is not None and await self.store.peek_input(record.number, kind) is not None

    async def _due(self, record: Record, state: RegistrationState) -> float:
        """When the step ``state`` is at should run."""
        now = self.now()
        if state.step is RegistrationStep.REQUEST_CODE:
            assert state.plan is not None
            assert state.channel is not None
            return now + state.plan.ready_in(state.channel)
        if state.step in INPUT_KINDS:
            return now if await self._input_given(record, state) else now + self.input_timeout
        # A step that asks until the answer changes: at once the first time, then again
        # every interval.
        if state.step is RegistrationStep.POLL_DEVICE and record.status == state.step.value:
            return now + self.device_poll_interval
        if state.step is RegistrationStep.CONFIRM_CONNECTED and record.status == state.step.value:
            return now + self.connected_poll_interval
        return now

    async def _commit(
        self,
        record: Record,
        before: RegistrationState,
        after: RegistrationState,
        note: str = "",
        *,
        persist: bool = False,
    ) -> str:
        """Write ``after`` (refused if anything was written since ``record``), then have
        its step run when due. ``persist``: the write holds an answer that cannot be asked
        for again (a code request's): every read and write of it, and the scheduling of
        its next step, keep trying through a Redis that is away for a moment, for as long
        as the intent's lease."""
        step_id = new_step_id()
        give_up_at = self.clock.monotonic() + (self.lease if persist else 0.0)
        pause = 0.1
        written, tried, due = False, False, 0.0
        while True:
            try:
                if not written:
                    due = await self._due(record, after)
                    try:
                        await self.store.write(
                            record, after, before=before, step_id=step_id, due=due
                        )
                    except StaleWriteError:
                        # A write tried before may have been done, its reply lost.
                        current = await self.store.load(record.number) if tried else None
                        if current is None or current.step_id != step_id:
                            raise
                    written = True
                if not after.done:
                    await self._schedule_next(record, after, step_id, due)
                break
            except (OSError, RedisError):
                # Not written yet: the answer must not be lost. Written but not
                # scheduled: the repair loop would find it, but a minute late.
                if self.clock.monotonic() + pause > give_up_at:
                    raise
                tried = True
                await self.clock.sleep(pause)
                pause = min(pause * 2, 1.0)
        return note or after.step.value

    async def _schedule_next(
        self, record: Record, after: RegistrationState, step_id: str, due: float
    ) -> None:
        step = after.step.value
        await self.scheduler.schedule(record.number, step_id, due, step=step)
        if due > self.now() and (
            await self._input_given(record, after) or await self._cancel_asked(record)
        ):
            # Input given (or a cancel asked) while this step was being written: now.
            await self.scheduler.schedule(record.number, step_id, 0.0, step=step, reason="input")

    async def _cancel_asked(self, record: Record) -> bool:
        return await self.store.peek_input(record.number, CANCEL) is not None

    async def _cancel(self, record: Record) -> str:
        """End the registration ``cancelled``: asked for, and no code request in flight."""
        await self.store.give_up(record, CANCELLED_NOTE, status=CANCELLED)
        logger.info("registration of %s: cancelled", record.number)
        return "cancelled"

    async def _again(
        self,
        record: Record,
        state: RegistrationState,
        *,
        at: float,
        keep_intent: bool = False,
        error: str | None = None,
        errors: int | None = None,
    ) -> None:
        """Run the same step again at ``at`` (under a new step id). The record keeps the
        Redis run id it had: a record from before a restart is checked when the step runs."""
        step_id = new_step_id()
        await self.store.write(
            record,
            state,
            step_id=step_id,
            due=at,
            keep_intent=keep_intent,
            error=error,
            errors=errors,
            keep_run=True,
        )
        await self.scheduler.schedule(record.number, step_id, at, step=state.step.value)

    async def _failed(
        self,
        record: Record,
        state: RegistrationState,
        error: PlugzError,
        *,
        drop_intent: bool = False,
    ) -> str:
        """A step met an error: try again later (with a growing pause), or give up.

        ``drop_intent``: the error says this run's code request was certainly not acted
        on, so its intent goes.
        """
        text = describe(error)
        logger.warning("registration of %s: %s", record.number, text)
        if isinstance(error, AuthenticationError) and self.forget is not None:
            await self.forget(record.instance)  # a token rotated since: read it again
        if isinstance(error, AuthenticationError) and error.credential == "client_token":
            # The account's Client-Token, refused: the worker's configuration, not this
            # registration's fault. It waits (a minute at a time) for a worker with the
            # right one, instead of every registration of the queue ending failed.
            logger.error("the API refused this worker's Client-Token: check PLUGZ_CLIENT_TOKEN")
            current = await self.store.load(record.number)
            if not _still_ours(current, record, drop_intent):
                return "refused"
            assert current is not None
            keep = current.intent is not None and not drop_intent
            await self._again(
                current,
                state,
                at=self.now() + 60.0,
                keep_intent=keep,
                error=text,
                errors=current.errors,
            )
            return "waiting"
        permanent = isinstance(error, PERMANENT) or (
            isinstance(error, APIError)
            and not isinstance(error, RateLimitError)
            and error.status is not None
            and error.status < 500
        )
        # Reload: the step may have written (an intent) before the error.
        current = await self.store.load(record.number)
        if not _still_ours(current, record, drop_intent):
            return "refused"
        assert current is not None
        record = current
        if permanent or record.errors + 1 >= self.max_errors:
            await self.store.give_up(record, text)
            return "failed"
        retry_after = getattr(error, "retry_after", None)
        pause = max(float(retry_after or 0.0), min(2.0**record.errors, 60.0))
        keep = record.intent is not None and not drop_intent
        await self._again(record, state, at=self.now() + pause, keep_intent=keep, error=text)
        return "retry"


def _still_ours(current: Record | None, record: Record, drop_intent: bool) -> bool:
    """Whether the step ``record`` names is still the registration's, to try again. One
    that drops its intent must find the very version it wrote: writing an intent keeps
    the step id, so another run (one that took a stalled run's step over) may have
    written an intent of its own since, and must keep it."""
    if current is None or current.done or current.step_id != record.step_id:
        return False
    return not drop_intent or current.version == record.version


def not_processed(error: PlugzError) -> bool:
    """Whether a failed request certainly was not acted on by the server: it was never
    sent (no connection), or the server refused it (a 4xx, 503) before acting."""
    if isinstance(error, ConnectError):
        return True
    if isinstance(error, APIError) and error.status is not None:
        return error.status < 500 or error.status == 503
    return False


def describe(error: BaseException) -> str:
    """An error in one line (the client's errors are already free of secrets)."""
    return f"{type(error).__name__}: {error}"
