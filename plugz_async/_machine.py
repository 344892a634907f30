"""The registration as a state machine: serialisable state, pure transitions.

A `RegistrationState` says where one number's registration stands: the step it
is at (`RegistrationStep`), the plan, the channel in use, the attempts so far, the outcome
and the events. `RegistrationMachine` turns it into the next state, given what a
step learnt (an API answer, a code that did not come); it sends nothing, sleeps
never and reads the time from the planner's clock. Two runners drive it: the
in-process ``Registration`` (``client.registration()``) and the queue's worker
(``plugz_async.queue``), so the registration's rules live here, once.

The runner's part, per step:

* ``CHECK``: check the number, then `RegistrationMachine.checked`.
* ``REQUEST_CODE``: wait until ``state.plan`` opens ``state.channel``, request the
  code, then `code_requested`.
* ``ANSWER_CAPTCHA``: get the text of ``state.captcha``, send it, then
  `captcha_answered` (or `captcha_invalid`, `input_missing`).
* ``CONFIRM_CODE``: get the code sent on ``state.channel``, send it, then
  `code_confirmed` (or `code_invalid`, `code_timed_out`, when none came).
* ``CONFIRM_PIN``: the same with the PIN (`pin_confirmed`, `pin_invalid`).
* ``CONFIRM_DEVICE``: `device_waiting`, let the user approve the transfer on the
  old phone, then `device_approved`.
* ``POLL_DEVICE``: ask whether the transfer is approved, then `device_polled`; if
  the step stays ``POLL_DEVICE``, ask again after ``device_poll_interval``.
* ``DONE``: ``state.result()`` says how it ended.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs

from ._clock import Clock
from ._errors import InvalidArgument, PlanDataError, RegistrationStateError
from ._events import EventKind, RegistrationEvent, RegistrationOutcome, RegistrationResult
from ._models import (
    Availability,
    CaptchaAnswer,
    Channel,
    CodeConfirmation,
    CodeRequest,
    DeviceTransfer,
    PinConfirmation,
    decode_availability,
)
from ._phone import PhoneNumber
from ._planner import RegistrationPlan, RegistrationPlanner
from ._strenum import StrEnum

__all__ = [
    "RegistrationMachine",
    "RegistrationState",
    "RegistrationStep",
    "describe_code_request",
    "event_from_dict",
    "event_to_dict",
]

#: The format of `RegistrationState.to_dict`; `from_dict` refuses others.
STATE_FORMAT_VERSION = 1


class RegistrationStep(StrEnum):
    """What a registration does next."""

    CHECK = "check"
    """Check the number (registration-available) and plan."""
    REQUEST_CODE = "request_code"
    """Request a code on ``channel`` once the plan opens it."""
    ANSWER_CAPTCHA = "answer_captcha"
    """Answer the captcha the server sent instead of the code."""
    CONFIRM_CODE = "confirm_code"
    """Confirm the code that was sent on ``channel``."""
    CONFIRM_PIN = "confirm_pin"
    """Confirm the two-step verification PIN."""
    CONFIRM_DEVICE = "confirm_device"
    """Have the transfer approved on the phone that holds the number."""
    POLL_DEVICE = "poll_device"
    """Ask whether the transfer was approved, until ``device_deadline``."""
    DONE = "done"
    """Finished: ``outcome`` says how."""

    @property
    def wants(self) -> str | None:
        """The input this step waits for from a person or a gateway: ``"code"``,
        ``"captcha"``, ``"pin"``, or ``None``."""
        return _WANTS.get(self)


_WANTS = {
    RegistrationStep.CONFIRM_CODE: "code",
    RegistrationStep.ANSWER_CAPTCHA: "captcha",
    RegistrationStep.CONFIRM_PIN: "pin",
}


@attrs.frozen(kw_only=True)
class RegistrationState:
    """Where one number's registration stands; `to_dict` and `from_dict` store it.

    Attributes:
        number: the number.
        step: what comes next.
        availability: the availability answer, once checked.
        plan: the plan, once checked (updated by each code request).
        channel: the channel in use (or last tried).
        tried: the channels whose code was requested, in order.
        early_requests: code requests on ``channel`` the server answered "too early".
        code_attempts, captcha_attempts, pin_attempts: answers sent for the current code,
            captcha, PIN.
        captcha: the captcha image (PNG) to answer.
        device_deadline: when ``POLL_DEVICE`` gives up.
        outcome: how it ended, at ``DONE``.
        events: what happened, in order.
    """

    number: PhoneNumber
    step: RegistrationStep = RegistrationStep.CHECK
    availability: Availability | None = attrs.field(default=None, repr=False)
    plan: RegistrationPlan | None = attrs.field(default=None, repr=False)
    channel: Channel | None = None
    tried: tuple[Channel, ...] = ()
    early_requests: int = 0
    code_attempts: int = 0
    captcha_attempts: int = 0
    pin_attempts: int = 0
    captcha: bytes | None = attrs.field(default=None, repr=False)
    device_deadline: datetime | None = None
    outcome: RegistrationOutcome | None = None
    events: tuple[RegistrationEvent, ...] = attrs.field(default=(), repr=False)

    @property
    def done(self) -> bool:
        """Whether the registration has ended."""
        return self.step is RegistrationStep.DONE

    @property
    def wants(self) -> str | None:
        """The input the registration waits for (`RegistrationStep.wants`)."""
        return self.step.wants

    def result(self) -> RegistrationResult:
        """How it ended.

        Raises:
            RegistrationStateError: it has not ended.
        """
        if self.outcome is None:
            raise RegistrationStateError(f"the registration is at {self.step.value}, not done")
        plan = self.plan
        return RegistrationResult(
            outcome=self.outcome,
            number=self.number,
            channel=self.channel,
            appeal_token=None if plan is None else plan.appeal_token,
            reason=None if plan is None else plan.reason,
            plan=plan,
            availability=self.availability,
        )

    # -- storing -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times in ISO-8601 UTC); `from_dict` reads it back.

        The events keep their kind, time, message, channel and wait, not their answers.
        """
        return {
            "version": STATE_FORMAT_VERSION,
            "number": self.number.e164,
            "ddi": self.number.ddi,
            "phone": self.number.phone,
            "step": self.step.value,
            "availability": None if self.availability is None else self.availability.to_dict(),
            "plan": None if self.plan is None else self.plan.to_dict(),
            "channel": None if self.channel is None else self.channel.value,
            "tried": [channel.value for channel in self.tried],
            "early_requests": self.early_requests,
            "code_attempts": self.code_attempts,
            "captcha_attempts": self.captcha_attempts,
            "pin_attempts": self.pin_attempts,
            "captcha": None if self.captcha is None else base64.b64encode(self.captcha).decode(),
            "device_deadline": _iso(self.device_deadline),
            "outcome": None if self.outcome is None else self.outcome.value,
            "events": [event_to_dict(event) for event in self.events],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, clock: Clock | None = None) -> RegistrationState:
        """Rebuild a state stored with `to_dict`, perhaps in another process.

        Raises:
            PlanDataError: ``data`` is not a stored registration state.
        """
        if not isinstance(data, Mapping) or data.get("version") != STATE_FORMAT_VERSION:
            raise PlanDataError(f"not a stored registration state of format {STATE_FORMAT_VERSION}")
        try:
            number = PhoneNumber(ddi=str(data["ddi"]), phone=str(data["phone"]))
            availability = data["availability"]
            plan = data["plan"]
            captcha = data["captcha"]
            return cls(
                number=number,
                step=RegistrationStep(data["step"]),
                availability=None
                if availability is None
                else decode_availability(
                    availability["raw"],
                    number=number,
                    observed_at=datetime.fromisoformat(availability["observed_at"]),
                ),
                plan=None if plan is None else RegistrationPlan.from_dict(plan, clock=clock),
                channel=_channel(data["channel"]),
                tried=tuple(Channel(value) for value in data["tried"]),
                early_requests=int(data["early_requests"]),
                code_attempts=int(data["code_attempts"]),
                captcha_attempts=int(data["captcha_attempts"]),
                pin_attempts=int(data["pin_attempts"]),
                captcha=None if captcha is None else base64.b64decode(captcha),
                device_deadline=_from_iso(data["device_deadline"]),
                outcome=None if data["outcome"] is None else RegistrationOutcome(data["outcome"]),
                events=tuple(event_from_dict(item) for item in data["events"]),
            )
        except PlanDataError:
            raise
        except (KeyError, TypeError, ValueError, InvalidArgument) as error:
            raise PlanDataError(f"not a stored registration state: {error!r}") from None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _from_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _channel(value: str | None) -> Channel | None:
    return None if value is None else Channel(value)


def event_to_dict(event: RegistrationEvent) -> dict[str, Any]:
    """An event as a JSON-ready dict (its answer stays behind); `event_from_dict` reads it."""
    return {
        "kind": event.kind.value,
        "at": event.at.isoformat(),
        "message": event.message,
        "channel": None if event.channel is None else event.channel.value,
        "wait_seconds": event.wait_seconds,
    }


def event_from_dict(data: Mapping[str, Any]) -> RegistrationEvent:
    """An event stored with `event_to_dict`."""
    return RegistrationEvent(
        kind=EventKind(data["kind"]),
        at=datetime.fromisoformat(data["at"]),
        message=str(data["message"]),
        channel=_channel(data["channel"]),
        wait_seconds=data["wait_seconds"],
    )


@attrs.frozen(kw_only=True)
class RegistrationMachine:
    """The registration's rules: each method returns the state after a step.

    Attributes:
        planner: plans from the availability answer; its clock dates the events.
        max_code_attempts: codes sent for one channel's code before giving up.
        max_captcha_attempts: captcha answers before giving up.
        max_pin_attempts: PINs sent before giving up.
        max_early_requests: code requests on one channel the server may answer
            "too early" before the next channel is tried.
        device_timeout: seconds to wait for a transfer's approval.
    """

    planner: RegistrationPlanner
    max_code_attempts: int = 3
    max_captcha_attempts: int = 3
    max_pin_attempts: int = 3
    max_early_requests: int = 3
    device_timeout: float = 300.0

    def __attrs_post_init__(self) -> None:
        for name in (
            "max_code_attempts",
            "max_captcha_attempts",
            "max_pin_attempts",
            "max_early_requests",
        ):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name} must be at least 1")

    @property
    def clock(self) -> Clock:
        return self.planner.clock

    def start(self, number: PhoneNumber) -> RegistrationState:
        """A registration that has done nothing yet."""
        return RegistrationState(number=number)

    # -- helpers -------------------------------------------------------------------------

    def _event(
        self,
        state: RegistrationState,
        kind: EventKind,
        message: str,
        *,
        channel: Channel | None = None,
        wait_seconds: float | None = None,
        answer: object = None,
        **changes: Any,
    ) -> RegistrationState:
        event = RegistrationEvent(
            kind=kind,
            at=self.clock.now(),
            message=message,
            channel=channel,
            wait_seconds=wait_seconds,
            answer=answer,
        )
        return attrs.evolve(state, events=(*state.events, event), **changes)

    def _end(self, state: RegistrationState, outcome: RegistrationOutcome) -> RegistrationState:
        ended = attrs.evolve(state, step=RegistrationStep.DONE, outcome=outcome, captcha=None)
        result = ended.result()
        return self._event(ended, EventKind.FINISHED, f"finished: {outcome.value}", answer=result)

    def _request(self, state: RegistrationState, channel: Channel) -> RegistrationState:
        """The next step requests a code on ``channel``: say how long until it opens."""
        assert state.plan is not None
        wait = state.plan.ready_in(channel)
        return self._event(
            state,
            EventKind.WAITING,
            f"waiting {wait:.0f} s for {channel.value}" if wait else f"{channel.value} is open",
            channel=channel,
            wait_seconds=wait,
            step=RegistrationStep.REQUEST_CODE,
        )

    def _next_channel(self, state: RegistrationState) -> RegistrationState:
        """Move on to the first channel of the plan not tried yet, or end ``NO_CODE``."""
        assert state.plan is not None
        left = [channel for channel in state.plan.channels if channel not in state.tried]
        if not left:
            return self._end(state, RegistrationOutcome.NO_CODE)
        channel = left[0]
        state = attrs.evolve(
            state, channel=channel, tried=(*state.tried, channel), early_requests=0
        )
        return self._request(state, channel)

    # -- transitions ---------------------------------------------------------------------

    def checked(self, state: RegistrationState, availability: Availability) -> RegistrationState:
        """After the availability check: plan, and end or go to the first channel."""
        _expect(state, RegistrationStep.CHECK)
        state = self._event(
            state,
            EventKind.CHECKED,
            "available" if availability.available else "not available",
            answer=availability,
            availability=availability,
        )
        plan = self.planner.plan(availability)
        first = plan.next_channel()
        state = self._event(
            state,
            EventKind.PLANNED,
            f"planned: {plan.outcome.value}" + (f", first channel {first.value}" if first else ""),
            answer=plan,
            plan=plan,
        )
        ending = RegistrationOutcome.of_plan(plan.outcome)
        if ending is not None:
            return self._end(state, ending)
        return self._next_channel(state)

    def code_requested(self, state: RegistrationState, request: CodeRequest) -> RegistrationState:
        """After a code request on ``state.channel``: confirm, answer a captcha, ask
        again when "too early", or go to the next channel."""
        _expect(state, RegistrationStep.REQUEST_CODE)
        assert state.plan is not None
        channel = state.channel
        assert channel is not None
        plan = state.plan.after_code_request(request)
        state = self._event(
            state,
            EventKind.CODE_REQUESTED,
            describe_code_request(request),
            channel=state.channel,
            answer=request,
            plan=plan,
        )
        if request.blocked:
            return self._end(state, RegistrationOutcome.BLOCKED_AT_CODE_REQUEST)
        if request.captcha is not None:
            return attrs.evolve(
                state,
                step=RegistrationStep.ANSWER_CAPTCHA,
                captcha=request.captcha,
                captcha_attempts=0,
            )
        if request.success:
            return attrs.evolve(state, step=RegistrationStep.CONFIRM_CODE, code_attempts=0)
        early = state.early_requests + 1
        if request.retry_after is not None and early < self.max_early_requests:
            return self._request(attrs.evolve(state, early_requests=early), channel)
        return self._next_channel(state)  # refused on this channel, or too early too often

    def code_request_recovered(
        self, state: RegistrationState, availability: Availability
    ) -> RegistrationState:
        """A code request whose answer was lost (its runner stopped) did reach the
        server: a new check shows the wait it started on ``state.channel``. Go on as if
        the code was sent."""
        _expect(state, RegistrationStep.REQUEST_CODE)
        assert state.channel is not None
        plan = self.planner.plan(availability)
        return self._event(
            state,
            EventKind.CODE_REQUESTED,
            f"code sent by {state.channel.value} (the answer was lost; the server's new"
            f" wait of {availability.wait_seconds(state.channel):g} s shows it)",
            channel=state.channel,
            answer=availability,
            plan=plan,
            step=RegistrationStep.CONFIRM_CODE,
            code_attempts=0,
        )

    def code_request_unknown(
        self, state: RegistrationState, availability: Availability, *, why: str
    ) -> RegistrationState:
        """Whether a code request reached the server cannot be told (``why``): say, its
        answer was lost, and the check that would tell came too late, when a wait it
        started could be over already. The safe answer is the one that sends no second
        code: go on as if the code was sent, and wait for it (a person who got none lets
        the wait for the code run out, and the next channel is tried)."""
        _expect(state, RegistrationStep.REQUEST_CODE)
        assert state.channel is not None
        return self._event(
            state,
            EventKind.CODE_REQUESTED,
            f"code treated as sent by {state.channel.value}: {why}; no second code is asked for",
            channel=state.channel,
            answer=availability,
            plan=self.planner.plan(availability),
            step=RegistrationStep.CONFIRM_CODE,
            code_attempts=0,
        )

    def input_missing(self, state: RegistrationState) -> RegistrationState:
        """The runner has no way to answer this step (no captcha solver, PIN source or
        device approval): end with the outcome that says what was needed."""
        outcome = _MISSING.get(state.step)
        if outcome is None:
            raise InvalidArgument(f"the step {state.step.value} needs no input")
        return self._end(state, outcome)

    def captcha_invalid(self, state: RegistrationState) -> RegistrationState:
        """The captcha text could not be sent (empty): it counts as an attempt."""
        _expect(state, RegistrationStep.ANSWER_CAPTCHA)
        return self._captcha_attempt(state)

    def captcha_answered(
        self, state: RegistrationState, answer: CaptchaAnswer
    ) -> RegistrationState:
        """After a captcha answer: confirm the code, or try again."""
        _expect(state, RegistrationStep.ANSWER_CAPTCHA)
        state = self._event(
            state,
            EventKind.CAPTCHA_ANSWERED,
            "captcha accepted" if answer.success else "captcha refused",
            answer=answer,
        )
        if answer.success:
            return attrs.evolve(
                state, step=RegistrationStep.CONFIRM_CODE, captcha=None, code_attempts=0
            )
        return self._captcha_attempt(state)

    def _captcha_attempt(self, state: RegistrationState) -> RegistrationState:
        attempts = state.captcha_attempts + 1
        if attempts >= self.max_captcha_attempts:
            return self._end(state, RegistrationOutcome.CAPTCHA_FAILED)
        return attrs.evolve(state, captcha_attempts=attempts)

    def code_timed_out(self, state: RegistrationState) -> RegistrationState:
        """No code came on ``state.channel``: try the next channel."""
        _expect(state, RegistrationStep.CONFIRM_CODE)
        assert state.channel is not None
        state = self._event(
            state,
            EventKind.CODE_TIMEOUT,
            f"no code came by {state.channel.value}",
            channel=state.channel,
        )
        return self._next_channel(state)

    def code_invalid(self, state: RegistrationState, error: Exception) -> RegistrationState:
        """The text given as the code is not a code (refused before sending)."""
        _expect(state, RegistrationStep.CONFIRM_CODE)
        state = self._event(
            state, EventKind.CODE_REJECTED, f"not a code: {error}", channel=state.channel
        )
        return self._code_attempt(state)

    def code_confirmed(
        self, state: RegistrationState, confirmation: CodeConfirmation
    ) -> RegistrationState:
        """After the code was sent: connected, a PIN or a transfer to approve, or wrong."""
        _expect(state, RegistrationStep.CONFIRM_CODE)
        for wanted, step, message in (
            (confirmation.success, RegistrationStep.DONE, "code confirmed: connected"),
            (
                confirmation.needs_pin,
                RegistrationStep.CONFIRM_PIN,
                "code confirmed: a PIN is needed",
            ),
            (
                confirmation.needs_device_confirmation,
                RegistrationStep.CONFIRM_DEVICE,
                "code confirmed: approve the transfer on the old phone",
            ),
        ):
            if wanted:
                state = self._event(
                    state,
                    EventKind.CODE_CONFIRMED,
                    message,
                    channel=state.channel,
                    answer=confirmation,
                )
                if step is RegistrationStep.DONE:
                    return self._end(state, RegistrationOutcome.CONNECTED)
                return attrs.evolve(state, step=step, pin_attempts=0)
        state = self._event(
            state, EventKind.CODE_REJECTED, "wrong code", channel=state.channel, answer=confirmation
        )
        return self._code_attempt(state)

    def _code_attempt(self, state: RegistrationState) -> RegistrationState:
        attempts = state.code_attempts + 1
        if attempts >= self.max_code_attempts:
            return self._end(state, RegistrationOutcome.CODE_REJECTED)
        return attrs.evolve(state, code_attempts=attempts)

    def pin_invalid(self, state: RegistrationState, error: Exception) -> RegistrationState:
        """The text given as the PIN is not a PIN (refused before sending)."""
        _expect(state, RegistrationStep.CONFIRM_PIN)
        return self._pin_attempt(self._event(state, EventKind.PIN_REJECTED, f"not a PIN: {error}"))

    def pin_confirmed(self, state: RegistrationState, answer: PinConfirmation) -> RegistrationState:
        """After the PIN was sent: connected, or wrong."""
        _expect(state, RegistrationStep.CONFIRM_PIN)
        if answer.success:
            state = self._event(
                state, EventKind.PIN_CONFIRMED, "PIN confirmed: connected", answer=answer
            )
            return self._end(state, RegistrationOutcome.CONNECTED)
        return self._pin_attempt(
            self._event(state, EventKind.PIN_REJECTED, "wrong PIN", answer=answer)
        )

    def _pin_attempt(self, state: RegistrationState) -> RegistrationState:
        attempts = state.pin_attempts + 1
        if attempts >= self.max_pin_attempts:
            return self._end(state, RegistrationOutcome.PIN_REJECTED)
        return attrs.evolve(state, pin_attempts=attempts)

    def device_waiting(self, state: RegistrationState) -> RegistrationState:
        """The transfer waits for the approval on the old phone."""
        _expect(state, RegistrationStep.CONFIRM_DEVICE)
        return self._event(
            state, EventKind.DEVICE_WAITING, "waiting for the approval on the old phone"
        )

    def device_approved(self, state: RegistrationState) -> RegistrationState:
        """The user says the transfer is approved: ask the server until
        ``device_timeout`` has passed."""
        _expect(state, RegistrationStep.CONFIRM_DEVICE)
        deadline = self.clock.now() + timedelta(seconds=self.device_timeout)
        return attrs.evolve(state, step=RegistrationStep.POLL_DEVICE, device_deadline=deadline)

    def device_polled(
        self, state: RegistrationState, transfer: DeviceTransfer
    ) -> RegistrationState:
        """After asking whether the transfer is approved: connected, keep asking, or
        give up past the deadline."""
        _expect(state, RegistrationStep.POLL_DEVICE)
        if transfer.confirmed:
            state = self._event(
                state, EventKind.DEVICE_CONFIRMED, "transfer approved: connected", answer=transfer
            )
            return self._end(state, RegistrationOutcome.CONNECTED)
        assert state.device_deadline is not None
        if self.clock.now() >= state.device_deadline:
            return self._end(state, RegistrationOutcome.DEVICE_NOT_CONFIRMED)
        return state


_MISSING = {
    RegistrationStep.ANSWER_CAPTCHA: RegistrationOutcome.CAPTCHA_REQUIRED,
    RegistrationStep.CONFIRM_PIN: RegistrationOutcome.PIN_REQUIRED,
    RegistrationStep.CONFIRM_DEVICE: RegistrationOutcome.DEVICE_CONFIRMATION_REQUIRED,
}


def _expect(state: RegistrationState, step: RegistrationStep) -> None:
    if state.step is not step:
        raise RegistrationStateError(
            f"the registration of {state.number.e164} is at {state.step.value}, not {step.value}"
        )


def describe_code_request(request: CodeRequest) -> str:
    """A code request's answer in words, for its event."""
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
