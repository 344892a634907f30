"""Where one registration stands, and its stored form.

`RegistrationStep` says what it does next; `RegistrationState` is everything a runner
needs to go on (in this process or another one, after a restart): `to_dict` and
`from_dict` are its stored form, the events' (`event_to_dict`) included, with times in
the one stored format (``_stored``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from plugz_async._arguments import InputKind
from plugz_async._clock import Clock
from plugz_async._errors import InvalidArgument, PlanDataError, RegistrationStateError
from plugz_async._models import Availability, Channel, decode_availability
from plugz_async._phone import PhoneNumber
from plugz_async._planner import RegistrationPlan
from plugz_async._stored import from_iso, to_iso
from plugz_async._strenum import StrEnum

from ._events import EventKind, RegistrationEvent, RegistrationOutcome, RegistrationResult

__all__ = ["RegistrationState", "RegistrationStep", "event_from_dict", "event_to_dict"]

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
    CONFIRM_CONNECTED = "confirm_connected"
    """The last step succeeded: ask the instance whether it is connected, until
    ``connected_deadline``."""
    DONE = "done"
    """Finished: ``outcome`` says how."""

    @property
    def wants(self) -> InputKind | None:
        """The input this step waits for from a person or a gateway (an `InputKind`,
        equal to ``"code"``, ``"captcha"`` or ``"pin"``), or ``None``."""
        return _WANTS.get(self)


_WANTS = {
    RegistrationStep.CONFIRM_CODE: InputKind.CODE,
    RegistrationStep.ANSWER_CAPTCHA: InputKind.CAPTCHA,
    RegistrationStep.CONFIRM_PIN: InputKind.PIN,
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
        connected_deadline: when ``CONFIRM_CONNECTED`` gives up.
        instance_error: what the instance's status last said in its ``error`` while it was
            not connected (kept when the registration ends ``NOT_CONNECTED``).
        canonical: whether the number goes out in its line's current form (Brazil's ninth
            digit) rather than as written: the client's ``canonical_numbers`` when it was
            first checked, then kept, so that every request of the registration sends one
            form, whichever worker sends it. ``None`` until then.
        outcome: how it ended, at ``DONE``.
        events: what happened, in order.

    A state stored by an older version of the SDK (without ``connected_deadline`` and
    ``instance_error``) reads back with them ``None``, and with ``canonical`` false once
    checked: that version sent the number as written.
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
    connected_deadline: datetime | None = None
    instance_error: str | None = None
    canonical: bool | None = None
    outcome: RegistrationOutcome | None = None
    events: tuple[RegistrationEvent, ...] = attrs.field(default=(), repr=False)

    @property
    def done(self) -> bool:
        """Whether the registration has ended."""
        return self.step is RegistrationStep.DONE

    def sends_line(self, setting: bool) -> bool:
        """Whether the number goes out in its line's current form: as decided at the
        check, or ``setting`` (the client's) before it."""
        return setting if self.canonical is None else self.canonical

    @property
    def wants(self) -> InputKind | None:
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
            instance_error=self.instance_error,
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
            "connected_deadline": _iso(self.connected_deadline),
            "instance_error": self.instance_error,
            "canonical": self.canonical,
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
                    observed_at=from_iso(availability["observed_at"]),
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
                # Not in a state stored before the instance's status was asked.
                connected_deadline=_from_iso(data.get("connected_deadline")),
                instance_error=_text(data.get("instance_error")),
                # Not in a state stored before lines: it sent the number as written.
                canonical=_canonical(data),
                outcome=None if data["outcome"] is None else RegistrationOutcome(data["outcome"]),
                events=tuple(event_from_dict(item) for item in data["events"]),
            )
        except PlanDataError:
            raise
        except (KeyError, TypeError, ValueError, InvalidArgument) as error:
            raise PlanDataError(f"not a stored registration state: {error!r}") from None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else to_iso(moment)


def _from_iso(text: str | None) -> datetime | None:
    return None if text is None else from_iso(text)


def _canonical(data: Mapping[str, Any]) -> bool | None:
    """A state's ``canonical``; one stored before it was kept sent the number as written
    (``False``), once its number was checked."""
    value = data.get("canonical")
    if value is None:
        return None if data["availability"] is None else False
    if not isinstance(value, bool):
        raise ValueError(f"not true or false: {value!r}")
    return value


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"not text: {value!r}")


def _channel(value: str | None) -> Channel | None:
    return None if value is None else Channel(value)


def event_to_dict(event: RegistrationEvent) -> dict[str, Any]:
    """An event as a JSON-ready dict (its answer stays behind); `event_from_dict` reads it."""
    return {
        "kind": event.kind.value,
        "at": to_iso(event.at),
        "message": event.message,
        "channel": None if event.channel is None else event.channel.value,
        "wait_seconds": event.wait_seconds,
    }


def event_from_dict(data: Mapping[str, Any]) -> RegistrationEvent:
    """An event stored with `event_to_dict`."""
    return RegistrationEvent(
        kind=EventKind(data["kind"]),
        at=from_iso(data["at"]),
        message=str(data["message"]),
        channel=_channel(data["channel"]),
        wait_seconds=data["wait_seconds"],
    )
