"""The whole registration, driven by the plan.

check → plan → wait for the first channel → request the code → captcha if asked →
confirm the code → PIN if asked → device transfer if asked → connected.

Every ending is a `RegistrationResult`; errors that are not an ending (the
API failing, the network failing) are raised as the client raises them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._errors import InvalidArgument, RegistrationStateError
from ._events import EventKind, RegistrationEvent, RegistrationOutcome, RegistrationResult
from ._models import Availability, Channel, CodeRequest, UnbanRequest
from ._phone import PhoneNumber
from ._planner import Outcome, RegistrationPlan, RegistrationPlanner

if TYPE_CHECKING:
    from ._client import PlugzClient

__all__ = [
    "EventKind",
    "Registration",
    "RegistrationEvent",
    "RegistrationOutcome",
    "RegistrationResult",
]

logger = logging.getLogger("plugz_async")

# The most code requests one channel gets when the server answers "too early".
MAX_EARLY_REQUESTS = 3


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
    ) -> None:
        for name, value in (
            ("max_code_attempts", max_code_attempts),
            ("max_captcha_attempts", max_captcha_attempts),
            ("max_pin_attempts", max_pin_attempts),
        ):
            if value < 1:
                raise InvalidArgument(f"{name} must be at least 1")
        self._client = client
        self.number = number
        self._planner = planner
        self._clock = planner.clock
        self._code_timeout = code_timeout
        self._max_code_attempts = max_code_attempts
        self._max_captcha_attempts = max_captcha_attempts
        self._max_pin_attempts = max_pin_attempts
        self._device_timeout = device_timeout
        self._device_poll_interval = device_poll_interval
        self._on_event = on_event
        self._history: list[RegistrationEvent] = []
        self._queues: list[asyncio.Queue[Any]] = []
        self._started = False
        self._finished = False
        self.result: RegistrationResult | None = None

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

    async def _emit(
        self,
        kind: EventKind,
        message: str,
        *,
        channel: Channel | None = None,
        wait_seconds: float | None = None,
        answer: object = None,
    ) -> None:
        event = RegistrationEvent(
            kind=kind,
            at=self._clock.now(),
            message=message,
            channel=channel,
            wait_seconds=wait_seconds,
            answer=answer,
        )
        self._history.append(event)
        logger.info(
            "registration of %s: %s",
            self.number.e164,
            message,
            extra={"event": kind.value, "channel": None if channel is None else channel.value},
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
            result = await self._run(code, captcha, pin, device_confirmed)
            self.result = result
            await self._emit(EventKind.FINISHED, f"finished: {result.outcome.value}", answer=result)
            return result
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

    def _result(
        self,
        outcome: RegistrationOutcome,
        plan: RegistrationPlan,
        availability: Availability,
        channel: Channel | None = None,
    ) -> RegistrationResult:
        return RegistrationResult(
            outcome=outcome,
            number=self.number,
            channel=channel,
            appeal_token=plan.appeal_token,
            reason=plan.reason,
            plan=plan,
            availability=availability,
        )

    async def _run(
        self,
        code: CodeSource,
        captcha: CaptchaSolver | None,
        pin: PinSource | None,
        device_confirmed: DeviceConfirmed | None,
    ) -> RegistrationResult:
        availability = await self._client.check_availability(self.number)
        await self._emit(
            EventKind.CHECKED,
            "available" if availability.available else "not available",
            answer=availability,
        )
        plan = self._planner.plan(availability)
        first = plan.next_channel()
        await self._emit(
            EventKind.PLANNED,
            f"planned: {plan.outcome.value}" + (f", first channel {first.value}" if first else ""),
            answer=plan,
        )
        ending = RegistrationOutcome.of_plan(plan.outcome)
        if ending is not None:
            return self._result(ending, plan, availability)

        tried: set[Channel] = set()
        last: Channel | None = None
        while True:
            left = [channel for channel in plan.channels if channel not in tried]
            if not left:
                return self._result(RegistrationOutcome.NO_CODE, plan, availability, last)
            channel = last = left[0]
            tried.add(channel)
            plan, sent, stop = await self._get_code_sent(plan, channel, captcha)
            if plan.outcome is Outcome.BLOCKED_AT_CODE_REQUEST:
                stop = RegistrationOutcome.BLOCKED_AT_CODE_REQUEST
            if stop is not None:
                return self._result(stop, plan, availability, channel)
            if not sent:
                continue  # the server would not send on this channel: try the next
            ending = await self._confirm(channel, code, pin, device_confirmed)
            if ending is not None:
                return self._result(ending, plan, availability, channel)

    async def _get_code_sent(
        self, plan: RegistrationPlan, channel: Channel, captcha: CaptchaSolver | None
    ) -> tuple[RegistrationPlan, bool, RegistrationOutcome | None]:
        """Request the code on ``channel`` when it opens; answer a captcha if asked.

        Returns the updated plan, whether the code was sent, and an ending if one came.
        """
        for _ in range(MAX_EARLY_REQUESTS):
            wait = plan.ready_in(channel)
            await self._emit(
                EventKind.WAITING,
                f"waiting {wait:.0f} s for {channel.value}" if wait else f"{channel.value} is open",
                channel=channel,
                wait_seconds=wait,
            )
            await plan.wait_until_ready(channel)
            request = await self._client.request_code(self.number, channel)
            plan = plan.after_code_request(request)
            await self._emit(
                EventKind.CODE_REQUESTED, _described(request), channel=channel, answer=request
            )
            if request.blocked:
                return plan, False, None
            if request.captcha is not None:
                stop = await self._solve(request.captcha, captcha)
                return plan, stop is None, stop
            if request.success:
                return plan, True, None
            if request.retry_after is None:
                return plan, False, None  # refused for good on this channel
        return plan, False, None

    async def _solve(
        self, image: bytes, captcha: CaptchaSolver | None
    ) -> RegistrationOutcome | None:
        if captcha is None:
            return RegistrationOutcome.CAPTCHA_REQUIRED
        for _ in range(self._max_captcha_attempts):
            text = await captcha(image)
            try:
                answer = await self._client.respond_captcha(text)
            except InvalidArgument:
                continue
            await self._emit(
                EventKind.CAPTCHA_ANSWERED,
                "captcha accepted" if answer.success else "captcha refused",
                answer=answer,
            )
            if answer.success:
                return None
        return RegistrationOutcome.CAPTCHA_FAILED

    async def _ask(self, code: CodeSource, channel: Channel) -> str | None:
        try:
            return await asyncio.wait_for(code(channel), self._code_timeout)
        except asyncio.TimeoutError:
            return None

    async def _confirm(
        self,
        channel: Channel,
        code: CodeSource,
        pin: PinSource | None,
        device_confirmed: DeviceConfirmed | None,
    ) -> RegistrationOutcome | None:
        """Confirm the code (again while it is wrong); ``None``: no code, try the next channel."""
        for _ in range(self._max_code_attempts):
            text = await self._ask(code, channel)
            if text is None:
                await self._emit(
                    EventKind.CODE_TIMEOUT, f"no code came by {channel.value}", channel=channel
                )
                return None
            try:
                confirmation = await self._client.confirm_code(text)
            except InvalidArgument as error:
                await self._emit(EventKind.CODE_REJECTED, f"not a code: {error}", channel=channel)
                continue
            if confirmation.success:
                await self._emit(
                    EventKind.CODE_CONFIRMED,
                    "code confirmed: connected",
                    channel=channel,
                    answer=confirmation,
                )
                return RegistrationOutcome.CONNECTED
            if confirmation.needs_pin:
                await self._emit(
                    EventKind.CODE_CONFIRMED,
                    "code confirmed: a PIN is needed",
                    channel=channel,
                    answer=confirmation,
                )
                return await self._pin(pin)
            if confirmation.needs_device_confirmation:
                await self._emit(
                    EventKind.CODE_CONFIRMED,
                    "code confirmed: approve the transfer on the old phone",
                    channel=channel,
                    answer=confirmation,
                )
                return await self._device(device_confirmed)
            await self._emit(
                EventKind.CODE_REJECTED, "wrong code", channel=channel, answer=confirmation
            )
        return RegistrationOutcome.CODE_REJECTED

    async def _pin(self, pin: PinSource | None) -> RegistrationOutcome:
        if pin is None:
            return RegistrationOutcome.PIN_REQUIRED
        for _ in range(self._max_pin_attempts):
            text = await pin()
            try:
                answer = await self._client.confirm_pin(text)
            except InvalidArgument as error:
                await self._emit(EventKind.PIN_REJECTED, f"not a PIN: {error}")
                continue
            if answer.success:
                await self._emit(EventKind.PIN_CONFIRMED, "PIN confirmed: connected", answer=answer)
                return RegistrationOutcome.CONNECTED
            await self._emit(EventKind.PIN_REJECTED, "wrong PIN", answer=answer)
        return RegistrationOutcome.PIN_REJECTED

    async def _device(self, device_confirmed: DeviceConfirmed | None) -> RegistrationOutcome:
        if device_confirmed is None:
            return RegistrationOutcome.DEVICE_CONFIRMATION_REQUIRED
        await self._emit(EventKind.DEVICE_WAITING, "waiting for the approval on the old phone")
        await device_confirmed()
        deadline = self._clock.monotonic() + self._device_timeout
        while True:
            transfer = await self._client.confirm_device_transfer()
            if transfer.confirmed:
                await self._emit(
                    EventKind.DEVICE_CONFIRMED, "transfer approved: connected", answer=transfer
                )
                return RegistrationOutcome.CONNECTED
            if self._clock.monotonic() >= deadline:
                return RegistrationOutcome.DEVICE_NOT_CONFIRMED
            await self._clock.sleep(self._device_poll_interval)


def _described(request: CodeRequest) -> str:
    channel = request.channel.value
    if request.blocked:
        return f"code request on {channel}: blocked"
    if request.captcha is not None:
        return f"code request on {channel}: a captcha must be answered"
    if request.success:
        return f"code sent by {channel}"
    if request.retry_after is not None:
        return f"code request on {channel}: too early, retry in {request.retry_after:g} s"
    return f"code request on {channel} refused" + (f": {request.reason}" if request.reason else "")
