"""What a registration says: its events as it goes, and how it ended.

`EventKind` and `RegistrationEvent` are what ``on_event=`` and ``events()`` hear;
`RegistrationOutcome` and `RegistrationResult` how a run ended. Kept apart from the
driver (``_flow``) so that whatever runs a registration reports it in the same words.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from plugz_async._models import Availability, Channel
from plugz_async._phone import PhoneNumber
from plugz_async._planner import PlanOutcome, RegistrationPlan
from plugz_async._strenum import StrEnum

__all__ = ["EventKind", "RegistrationEvent", "RegistrationOutcome", "RegistrationResult"]


class RegistrationOutcome(StrEnum):
    """How a registration ended.

    Five of its members are the plan's outcomes (`PlanOutcome`) that end a registration,
    under the same names and values: ``appeal``, ``blocked``, ``unavailable`` and
    ``no_channel`` before any code request, ``blocked_at_code_request`` when one is
    refused; a plan that says ``appeal`` ends the registration ``appeal`` (`of_plan`).
    The others say how a registration that went on to request a code ended.
    """

    CONNECTED = "connected"
    """The instance is connected to the number."""
    APPEAL = "appeal"
    """Banned; the result carries the appeal token (``Registration.appeal``)."""
    BLOCKED = "blocked"
    """Blocked, with no appeal token."""
    BLOCKED_AT_CODE_REQUEST = "blocked_at_code_request"
    """Reported available, but blocked when the code was requested."""
    UNAVAILABLE = "unavailable"
    """The number cannot be registered now; the result carries the reason."""
    NO_CHANNEL = "no_channel"
    """No channel of the planner's can be used for this number."""
    NO_CODE = "no_code"
    """No code arrived in time on any channel."""
    CODE_REJECTED = "code_rejected"
    """The code was wrong too many times."""
    CAPTCHA_REQUIRED = "captcha_required"
    """The server asked for a captcha and no ``captcha`` callable was given."""
    CAPTCHA_FAILED = "captcha_failed"
    """The captcha answers were refused too many times."""
    PIN_REQUIRED = "pin_required"
    """A two-step PIN is needed and no ``pin`` callable was given."""
    PIN_REJECTED = "pin_rejected"
    """The PIN was refused too many times."""
    DEVICE_CONFIRMATION_REQUIRED = "device_confirmation_required"
    """The transfer must be approved on the old phone and no ``device_confirmed`` was given."""
    DEVICE_NOT_CONFIRMED = "device_not_confirmed"
    """The transfer was not approved within ``device_timeout``."""
    NOT_CONNECTED = "not_connected"
    """The last step succeeded (the code, the PIN or the transfer), but the instance did
    not say it was connected within ``connected_timeout``; ``instance_error`` holds what
    it said instead ("You need to restore the session.")."""

    @classmethod
    def of_plan(cls, outcome: PlanOutcome) -> RegistrationOutcome | None:
        """How a plan with ``outcome`` ends the registration, or ``None`` when it lets the
        registration go on (``ready``, ``wait``)."""
        if outcome in (PlanOutcome.READY, PlanOutcome.WAIT):
            return None
        return cls(outcome.value)


class EventKind(StrEnum):
    """The steps a registration reports."""

    CHECKED = "checked"
    PLANNED = "planned"
    WAITING = "waiting"
    CODE_REQUESTED = "code_requested"
    CAPTCHA_ANSWERED = "captcha_answered"
    CODE_TIMEOUT = "code_timeout"
    CODE_CONFIRMED = "code_confirmed"
    CODE_REJECTED = "code_rejected"
    PIN_REJECTED = "pin_rejected"
    PIN_CONFIRMED = "pin_confirmed"
    DEVICE_WAITING = "device_waiting"
    DEVICE_CONFIRMED = "device_confirmed"
    INSTANCE_CONNECTED = "instance_connected"
    """The instance's status says it is connected to the number."""
    INSTANCE_NOT_CONNECTED = "instance_not_connected"
    """The instance's status never said it was connected within ``connected_timeout``."""
    FINISHED = "finished"


@attrs.frozen(kw_only=True)
class RegistrationEvent:
    """One step of a registration, for progress displays and logs.

    Attributes:
        kind: what happened.
        at: when (aware UTC, on the registration's clock).
        message: the step in words.
        channel: the channel concerned, if any.
        wait_seconds: for ``WAITING``, the seconds until the channel opens.
        answer: the answer the step received (an ``Availability``, a ``CodeRequest``...).
    """

    kind: EventKind
    at: datetime
    message: str
    channel: Channel | None = None
    wait_seconds: float | None = None
    answer: object = attrs.field(default=None, repr=False, eq=False)


@attrs.frozen(kw_only=True)
class RegistrationResult:
    """How a registration ended, with what it learnt on the way.

    Attributes:
        outcome: the ending.
        number: the number.
        channel: the channel whose code was confirmed (or last tried).
        appeal_token: when banned, the token for ``Registration.appeal``.
        reason: the server's reason, when it gave one.
        plan: the plan as it stood at the end.
        availability: the availability answer.
        instance_error: for ``NOT_CONNECTED``, what the instance's status said in its
            ``error`` ("You need to restore the session."); ``None`` otherwise, or when
            it said nothing.
    """

    outcome: RegistrationOutcome
    number: PhoneNumber
    channel: Channel | None = None
    appeal_token: str | None = None
    reason: str | None = None
    plan: RegistrationPlan | None = attrs.field(default=None, repr=False)
    availability: Availability | None = attrs.field(default=None, repr=False)
    instance_error: str | None = None

    @property
    def connected(self) -> bool:
        """Whether the instance is connected to the number (its status said so)."""
        return self.outcome is RegistrationOutcome.CONNECTED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the ending (``register --json``)."""
        return {
            "number": self.number.e164,
            "outcome": self.outcome.value,
            "connected": self.connected,
            "channel": None if self.channel is None else self.channel.value,
            "appeal_token": self.appeal_token,
            "reason": self.reason,
            "instance_error": self.instance_error,
        }
