"""The registration as a state machine: pure transitions.

A `RegistrationState` says where one number's registration stands: the step it
is at (`RegistrationStep`), the plan, the channel in use, the attempts so far, the outcome
and the events. `RegistrationMachine` turns it into the next state, given what a
step learnt (an API answer, a code that did not come); it sends nothing, sleeps
never and reads the time from the planner's clock. Two runners drive it: the
in-process ``Registration`` (``client.registration()``) and the queue's worker
(``plugz_async.queue``), so the registration's rules live here, once.

What each step does with the API, and which transition follows, is one table,
``_actions.ACTIONS``, that both runners call.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs

from plugz_async._clock import Clock
from plugz_async._errors import InvalidArgument, RegistrationStateError
from plugz_async._models import (
    Availability,
    CaptchaAnswer,
    Channel,
    CodeConfirmation,
    CodeRequest,
    DeviceTransfer,
    InstanceStatus,
    PinConfirmation,
)
from plugz_async._phone import PhoneNumber
from plugz_async._planner import RegistrationPlanner

from ._events import EventKind, RegistrationEvent, RegistrationOutcome
from ._state import RegistrationState, RegistrationStep

__all__ = [
    "CONNECTED_POLL_INTERVAL",
    "CONNECTED_TIMEOUT",
    "RegistrationMachine",
    "describe_code_request",
    "poll_interval",
]

#: Seconds the instance's status is asked for, after the last step, by default.
CONNECTED_TIMEOUT = 5.0
#: Seconds between two questions to the instance's status, by default.
CONNECTED_POLL_INTERVAL = 1.0


#: The longest wait a registration's setting may name: a day (longer is a mistake, and
#: past what a date can hold it would fail only after the code was confirmed).
MOST_SECONDS = 86_400.0


def poll_interval(name: str, value: float) -> float:
    """A runner's seconds between two questions, checked (more than 0: never a busy loop;
    a day at most).

    Raises:
        InvalidArgument: 0 or less, more than a day, or not a number.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgument(f"{name} must be more than 0 seconds, not {value!r}")
    return _at_most_a_day(name, value)


def _at_most_a_day(name: str, value: float) -> float:
    if not value <= MOST_SECONDS:  # inf and nan too
        raise InvalidArgument(
            f"{name} must be {MOST_SECONDS:g} seconds (a day) or less, not {value!r}"
        )
    return float(value)


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
        connected_timeout: seconds the instance's status is asked, after the last step
            succeeded, until it says the instance is connected (else ``NOT_CONNECTED``);
            0 asks once. ``None`` asks nothing: the last step's success ends the
            registration ``CONNECTED``, as the SDK did before it asked.
    """

    planner: RegistrationPlanner
    max_code_attempts: int = 3
    max_captcha_attempts: int = 3
    max_pin_attempts: int = 3
    max_early_requests: int = 3
    device_timeout: float = 300.0
    connected_timeout: float | None = CONNECTED_TIMEOUT

    def __attrs_post_init__(self) -> None:
        for name in (
            "max_code_attempts",
            "max_captcha_attempts",
            "max_pin_attempts",
            "max_early_requests",
        ):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name} must be at least 1")
        timeout = self.connected_timeout
        if timeout is not None and not (
            isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout >= 0
        ):
            raise InvalidArgument(
                f"connected_timeout must be 0 or more seconds, or None, not {timeout!r}"
            )
        if timeout is not None:
            _at_most_a_day("connected_timeout", timeout)
        device = self.device_timeout
        if isinstance(device, bool) or not isinstance(device, (int, float)) or not device >= 0:
            raise InvalidArgument(f"device_timeout must be 0 or more seconds, not {device!r}")
        _at_most_a_day("device_timeout", device)

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

    def _registered(self, state: RegistrationState) -> RegistrationState:
        """The last step succeeded: ask the instance whether it is connected, until
        ``connected_timeout`` has passed (none: end ``CONNECTED`` now)."""
        if self.connected_timeout is None:
            return self._end(state, RegistrationOutcome.CONNECTED)
        deadline = self.clock.now() + timedelta(seconds=self.connected_timeout)
        return attrs.evolve(
            state,
            step=RegistrationStep.CONFIRM_CONNECTED,
            connected_deadline=deadline,
            instance_error=None,
        )

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

    def captcha_invalid(
        self, state: RegistrationState, error: Exception | None = None
    ) -> RegistrationState:
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
            (confirmation.success, RegistrationStep.DONE, "code confirmed"),
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
                    return self._registered(state)
                if step is RegistrationStep.CONFIRM_DEVICE:
                    state = self._event(
                        state,
                        EventKind.DEVICE_WAITING,
                        "waiting for the approval on the old phone",
                    )
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
            state = self._event(state, EventKind.PIN_CONFIRMED, "PIN confirmed", answer=answer)
            return self._registered(state)
        return self._pin_attempt(
            self._event(state, EventKind.PIN_REJECTED, "wrong PIN", answer=answer)
        )

    def _pin_attempt(self, state: RegistrationState) -> RegistrationState:
        attempts = state.pin_attempts + 1
        if attempts >= self.max_pin_attempts:
            return self._end(state, RegistrationOutcome.PIN_REJECTED)
        return attrs.evolve(state, pin_attempts=attempts)

    def device_waiting(self, state: RegistrationState) -> RegistrationState:
        """Deprecated: `code_confirmed` says the transfer waits for its approval (the
        ``device_waiting`` event) as it moves to ``CONFIRM_DEVICE``. Returns ``state``."""
        import warnings

        warnings.warn(
            "RegistrationMachine.device_waiting() is no longer needed: code_confirmed adds"
            " the device_waiting event",
            DeprecationWarning,
            stacklevel=2,
        )
        _expect(state, RegistrationStep.CONFIRM_DEVICE)
        return state

    def device_approved(self, state: RegistrationState) -> RegistrationState:
        """The user says the transfer is approved (or a runner that cannot wait for them
        lets polling see it): ask the server until ``device_timeout`` has passed."""
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
                state, EventKind.DEVICE_CONFIRMED, "transfer approved", answer=transfer
            )
            return self._registered(state)
        assert state.device_deadline is not None
        if self.clock.now() >= state.device_deadline:
            return self._end(state, RegistrationOutcome.DEVICE_NOT_CONFIRMED)
        return state

    def status_checked(self, state: RegistrationState, status: InstanceStatus) -> RegistrationState:
        """After asking the instance's status: connected, keep asking (its ``error`` kept
        in ``instance_error``), or end ``NOT_CONNECTED`` past the deadline."""
        _expect(state, RegistrationStep.CONFIRM_CONNECTED)
        if status.connected:
            state = self._event(
                state,
                EventKind.INSTANCE_CONNECTED,
                "the instance is connected",
                answer=status,
                instance_error=None,
            )
            return self._end(state, RegistrationOutcome.CONNECTED)
        state = attrs.evolve(state, instance_error=status.error)
        deadline = state.connected_deadline
        if deadline is not None and self.clock.now() < deadline:
            return state
        said = f": {status.error}" if status.error else " (its status gave no reason)"
        within = self.connected_timeout or 0.0
        state = self._event(
            state,
            EventKind.INSTANCE_NOT_CONNECTED,
            f"the instance is not connected {_within(within)}{said}",
            answer=status,
        )
        return self._end(state, RegistrationOutcome.NOT_CONNECTED)


_MISSING = {
    RegistrationStep.ANSWER_CAPTCHA: RegistrationOutcome.CAPTCHA_REQUIRED,
    RegistrationStep.CONFIRM_PIN: RegistrationOutcome.PIN_REQUIRED,
    RegistrationStep.CONFIRM_DEVICE: RegistrationOutcome.DEVICE_CONFIRMATION_REQUIRED,
}


def _within(seconds: float) -> str:
    return f"after {seconds:g} s" if seconds else "when asked"


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
