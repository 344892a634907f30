"""The whole registration, driven by the plan.

check → plan → wait for the first channel → request the code → captcha if asked →
confirm the code → PIN if asked → device transfer if asked → the instance's status says
connected.

Every ending is a `RegistrationResult`; errors that are not an ending (the
API failing, the network failing) are raised as the client raises them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from plugz_async._errors import RegistrationStateError
from plugz_async._models import Channel, UnbanRequest
from plugz_async._phone import PhoneNumber
from plugz_async._planner import RegistrationPlanner

from ._actions import ACTIONS, APPROVED, StepContext
from ._events import EventKind, RegistrationEvent, RegistrationOutcome, RegistrationResult
from ._machine import (
    CONNECTED_POLL_INTERVAL,
    CONNECTED_TIMEOUT,
    RegistrationMachine,
    poll_interval,
)
from ._state import RegistrationState, RegistrationStep

if TYPE_CHECKING:
    from plugz_async._client import PlugzClient

__all__ = [
    "EventKind",
    "Registration",
    "RegistrationEvent",
    "RegistrationOutcome",
    "RegistrationResult",
]

logger = logging.getLogger("plugz_async")


CodeSource = Callable[[Channel], Awaitable[str | None]]
CaptchaSolver = Callable[[bytes], Awaitable[str]]
PinSource = Callable[[], Awaitable[str]]
DeviceConfirmed = Callable[[], Awaitable[object]]

_END = object()


class Registration:
    """Drives one number's registration; make it with ``client.registration(number)``.

    ``await registration.run(code=...)`` goes through every step and returns a
    `RegistrationResult`. Progress comes as `RegistrationEvent` objects,
    through ``on_event`` or ``async for event in registration.events()``.
    """

    def __init__(
        self,
        client: PlugzClient,
        number: PhoneNumber,
        *,
        planner: RegistrationPlanner,
        code_timeout: float | None,
        max_code_attempts: int,
        max_captcha_attempts: int,
        max_pin_attempts: int,
        device_timeout: float,
        device_poll_interval: float,
        on_event: Callable[[RegistrationEvent], object] | None,
        connected_timeout: float | None = CONNECTED_TIMEOUT,
        connected_poll_interval: float = CONNECTED_POLL_INTERVAL,
    ) -> None:
        self._client = client
        self.number = number
        self._machine = RegistrationMachine(
            planner=planner,
            max_code_attempts=max_code_attempts,
            max_captcha_attempts=max_captcha_attempts,
            max_pin_attempts=max_pin_attempts,
            device_timeout=device_timeout,
            connected_timeout=connected_timeout,
        )
        self._clock = planner.clock
        self._code_timeout = code_timeout
        #: Seconds between two questions, at the steps that ask until an answer changes.
        self._poll_intervals = {
            RegistrationStep.POLL_DEVICE: device_poll_interval,
            RegistrationStep.CONFIRM_CONNECTED: poll_interval(
                "connected_poll_interval", connected_poll_interval
            ),
        }
        self._on_event = on_event
        self._history: list[RegistrationEvent] = []
        self._queues: list[asyncio.Queue[Any]] = []
        self._started = False
        self._finished = False
        self.result: RegistrationResult | None = None
        #: Where the registration stands, once ``run`` has finished (`RegistrationState`).
        self.state: RegistrationState | None = None

    def __repr__(self) -> str:
        state = "finished" if self._finished else "running" if self._started else "new"
        return f"Registration(number={self.number.e164!r}, state={state})"

    # -- events --------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[RegistrationEvent]:
        """Every event of this registration, from the first (even if already past) to
        ``FINISHED``; the iteration ends when the run does."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for event in self._history:
            queue.put_nowait(event)
        if self._finished:
            queue.put_nowait(_END)
        self._queues.append(queue)
        try:
            while (item := await queue.get()) is not _END:
                yield item
        finally:
            self._queues.remove(queue)

    async def _emit_since(self, before: RegistrationState, after: RegistrationState) -> None:
        """Publish the events ``after`` has that ``before`` had not."""
        for event in after.events[len(before.events) :]:
            await self._publish(event)

    async def _publish(self, event: RegistrationEvent) -> None:
        self._history.append(event)
        logger.info(
            "registration of %s: %s",
            self.number.e164,
            event.message,
            extra={
                "event": event.kind.value,
                "channel": None if event.channel is None else event.channel.value,
            },
        )
        for queue in self._queues:
            queue.put_nowait(event)
        if self._on_event is not None:
            returned = self._on_event(event)
            if inspect.isawaitable(returned):
                await returned

    # -- the run -------------------------------------------------------------------------

    async def run(
        self,
        code: CodeSource,
        captcha: CaptchaSolver | None = None,
        pin: PinSource | None = None,
        device_confirmed: DeviceConfirmed | None = None,
    ) -> RegistrationResult:
        """Go through the registration, and return how it ended.

        Args:
            code: ``await code(channel)`` returns the code the user received on that
                channel, or ``None`` if none came (then the next channel is tried
                when it opens). Waited for ``code_timeout`` seconds at most.
            captcha: ``await captcha(png_bytes)`` returns the captcha's text.
            pin: ``await pin()`` returns the two-step verification PIN.
            device_confirmed: awaited before confirming a device transfer (return once
                the user approved it on the phone that holds the number).

        Raises:
            RegistrationStateError: ``run`` was already called.
            APIError, TransportError, ResponseDecodeError: as the client raises them.
        """
        if self._started:
            raise RegistrationStateError("a Registration runs once; make a new one")
        self._started = True
        try:
            self.result = await self._run(code, captcha, pin, device_confirmed)
            return self.result
        finally:
            self._finished = True
            for queue in self._queues:
                queue.put_nowait(_END)

    async def appeal(self, description: str) -> UnbanRequest:
        """Send the unban request of a run that ended ``APPEAL``.

        Raises:
            RegistrationStateError: the run has not ended banned with an appeal token.
        """
        token = None if self.result is None else self.result.appeal_token
        if token is None:
            raise RegistrationStateError(
                "appeal() follows a run that ended banned (outcome appeal)"
            )
        return await self._client.request_unbanning(token, description)

    async def _run(
        self,
        code: CodeSource,
        captcha: CaptchaSolver | None,
        pin: PinSource | None,
        device_confirmed: DeviceConfirmed | None,
    ) -> RegistrationResult:
        context = StepContext(self._machine, self._client)
        state = self._machine.start(self.number)
        while not state.done:
            step = state.step
            if step is RegistrationStep.REQUEST_CODE:
                assert state.plan is not None
                assert state.channel is not None
                await state.plan.wait_until_ready(state.channel)
            given = await self._given(state, code, captcha, pin, device_confirmed)
            following = await ACTIONS[step](context, state, given)
            await self._emit_since(state, following)
            state = following
            if state.step is step and step in self._poll_intervals:  # asked; ask again
                await self._clock.sleep(self._poll_intervals[step])
        self.state = state
        return state.result()

    async def _given(
        self,
        state: RegistrationState,
        code: CodeSource,
        captcha: CaptchaSolver | None,
        pin: PinSource | None,
        device_confirmed: DeviceConfirmed | None,
    ) -> str | None:
        """What the step needs from the user, from the callables (``None``: none)."""
        step = state.step
        if step is RegistrationStep.CONFIRM_CODE:
            assert state.channel is not None
            try:
                return await asyncio.wait_for(code(state.channel), self._code_timeout)
            except asyncio.TimeoutError:
                return None
        # A callable that answers None gave no answer: "" is not sent, and counts as a
        # refused answer (None from the step means there is no callable at all).
        if step is RegistrationStep.ANSWER_CAPTCHA and captcha is not None:
            assert state.captcha is not None
            return await captcha(state.captcha) or ""
        if step is RegistrationStep.CONFIRM_PIN and pin is not None:
            return await pin() or ""
        if step is RegistrationStep.CONFIRM_DEVICE and device_confirmed is not None:
            await device_confirmed()
            return APPROVED
        return None
