"""The registration planner: when each code-request channel becomes usable.

Pure: no network, and time only through an injected `Clock`. A plan is
made from an `Availability`; each channel's ``ready_at`` is the moment the
answer was received, plus the channel's wait seconds, plus the planner's margin.
Waiting is done on the monotonic clock, so a plan never fires early when the wall
clock jumps; wall-clock times (aware UTC) are kept for people and for storage.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import attrs

from ._clock import Clock, SystemClock, monotonic_of, received_monotonic
from ._errors import InvalidArgument, InvalidPhoneNumber, NoChannelError, PlanDataError
from ._models import Availability, Channel, CodeRequest
from ._phone import PhoneNumber
from ._stored import from_iso, to_iso
from ._strenum import StrEnum

__all__ = ["ChannelWindow", "PlanOutcome", "RegistrationPlan", "RegistrationPlanner"]

PLAN_FORMAT_VERSION = 1


class PlanOutcome(StrEnum):
    """What the availability check means for the registration, at planning time."""

    READY = "ready"
    """A channel can be asked for a code now."""
    WAIT = "wait"
    """The number can be registered; the first channel opens later."""
    APPEAL = "appeal"
    """The number is banned; an appeal token was given for an unban request."""
    BLOCKED = "blocked"
    """The number is blocked, with no appeal token."""
    UNAVAILABLE = "unavailable"
    """The number cannot be registered now (see ``reason``)."""
    NO_CHANNEL = "no_channel"
    """The number could be registered, but none of the planner's channels can be used."""
    BLOCKED_AT_CODE_REQUEST = "blocked_at_code_request"
    """Reported available, but blocked (with no appeal token) when a code was requested."""
    ERROR = "error"
    """Never a plan's: a bulk item (and the summary's count) whose check failed; the
    item's ``error`` says why."""
    SAME_LINE = "same_line"
    """Never a plan's: a bulk item (and the summary's count) whose number reaches the same
    line as an earlier row's (the same digits, or Brazil's old 8-digit form and its ninth
    digit form): not checked again; the item's ``same_line_as`` names that row."""


#: The outcomes of bulk items only, never of a plan.
_ITEM_ONLY = frozenset({PlanOutcome.ERROR, PlanOutcome.SAME_LINE})


def _plan_outcome(value: object) -> PlanOutcome:
    """A stored plan's outcome (``error`` and ``same_line`` are an item's, never a plan's)."""
    outcome = PlanOutcome(value)
    if outcome in _ITEM_ONLY:
        raise ValueError(f"a plan's outcome cannot be {outcome.value!r}")
    return outcome


@attrs.frozen(kw_only=True)
class ChannelWindow:
    """When one channel opens, and whether this plan may use it at all.

    Attributes:
        channel: the channel.
        eligible: whether the plan may use it.
        wait_seconds: the wait the server gave for it.
        ready_at: when it opens, as an aware UTC ``datetime``.
        ready_at_monotonic: when it opens, on the plan's monotonic clock.
        why_not: when not eligible, why.
    """

    channel: Channel
    eligible: bool
    wait_seconds: float
    ready_at: datetime
    ready_at_monotonic: float = attrs.field(eq=False, repr=False)
    why_not: str | None = None


def _preference(value: Iterable[Channel | str]) -> tuple[Channel, ...]:
    try:
        channels = tuple(Channel(item) for item in value)
    except ValueError as exc:
        raise InvalidArgument(f"preference: {exc}") from None
    return channels


@attrs.frozen(kw_only=True)
class RegistrationPlanner:
    """Turns availability answers into plans.

    Attributes:
        preference: the channels to use, in the order to prefer them when two open
            at the same moment.
        allow_wa_old: whether the in-app pop-up channel may be used. It needs the
            phone that holds the number, in hand with the app open, so it is off
            unless asked for; when on, it is added to the end of ``preference``.
        margin: seconds added to every wait, for a server whose clock runs ahead.
        clock: the clock to plan and wait on; give the planner the same clock as the
            client whose answers it plans.

    Example:
        >>> planner = RegistrationPlanner(allow_wa_old=True, margin=1.0)
        >>> planner.preference
        (<Channel.SMS: 'sms'>, <Channel.VOICE: 'voice'>, <Channel.WA_OLD: 'wa_old'>)
    """

    preference: tuple[Channel, ...] = attrs.field(
        default=(Channel.SMS, Channel.VOICE), converter=_preference
    )
    allow_wa_old: bool = False
    margin: float = 0.0
    clock: Clock = attrs.field(factory=SystemClock, eq=False)
    _why_not: dict[Channel, str | None] = attrs.field(
        init=False, factory=dict, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if not self.preference:
            raise InvalidArgument("preference must name at least one channel")
        if len(set(self.preference)) != len(self.preference):
            raise InvalidArgument(f"preference names a channel twice: {self.preference}")
        if Channel.WA_OLD in self.preference and not self.allow_wa_old:
            raise InvalidArgument(
                "Channel.WA_OLD needs allow_wa_old=True: it needs the phone that holds the "
                "number, in hand"
            )
        if self.allow_wa_old and Channel.WA_OLD not in self.preference:
            object.__setattr__(self, "preference", (*self.preference, Channel.WA_OLD))
        if not 0 <= self.margin < float("inf"):
            raise InvalidArgument(f"margin must be a finite number >= 0, not {self.margin!r}")
        # Why each channel is left out whatever the answer (None: it is in the plan).
        why_not = {
            channel: None
            if channel in self.preference
            else "allow_wa_old is off"
            if channel is Channel.WA_OLD
            else "not in the preference"
            for channel in Channel
        }
        object.__setattr__(self, "_why_not", why_not)

    def plan(self, availability: Availability) -> RegistrationPlan:
        """The plan for one availability answer."""
        assessment = self.assess(availability)
        observed_mono = assessment.observed_monotonic
        observed_at = availability.observed_at
        if observed_at.tzinfo is not timezone.utc:
            observed_at = observed_at.astimezone(timezone.utc)
        windows = tuple(
            ChannelWindow(
                channel=channel,
                eligible=why_not is None,
                wait_seconds=given,
                ready_at=observed_at + timedelta(seconds=delay),
                ready_at_monotonic=observed_mono + delay,
                why_not=why_not,
            )
            for channel, given, delay, why_not in assessment.channels
        )
        return RegistrationPlan(
            number=availability.number,
            outcome=assessment.outcome,
            windows=windows,
            preference=self.preference,
            reason=availability.reason,
            appeal_token=availability.appeal_token,
            observed_at=availability.observed_at,
            margin=self.margin,
            clock=self.clock,
        )

    def assess(self, availability: Availability) -> Assessment:
        """What `plan` decides, without building the plan (bulk summaries use it)."""
        now_mono = self.clock.monotonic()
        observed_mono = received_monotonic(
            self.clock, availability.observed_monotonic, availability.observed_at
        )
        outcome, first, channels = self._verdict(availability)
        if outcome is None:
            assert first is not None
            outcome = PlanOutcome.READY if observed_mono + first <= now_mono else PlanOutcome.WAIT
        return Assessment(outcome=outcome, observed_monotonic=observed_mono, channels=channels)

    def _verdict(
        self, availability: Availability
    ) -> tuple[PlanOutcome | None, float | None, tuple[ChannelReading, ...]]:
        """The outcome when the answer alone decides it (else None: READY or WAIT), the
        delay of the first channel to open, and each channel's step."""
        go = availability.available and not availability.blocked
        margin = self.margin
        channels: list[ChannelReading] = []
        first: float | None = None
        for channel, given, why_not in (
            (Channel.SMS, availability.sms_wait_seconds, self._why_not[Channel.SMS]),
            (Channel.VOICE, availability.voice_wait_seconds, self._why_not[Channel.VOICE]),
            (Channel.WA_OLD, availability.wa_old_wait_seconds, self._why_not[Channel.WA_OLD]),
        ):
            delay = (given if given > 0 else 0.0) + margin
            if not go:
                why_not = "the number cannot be registered now"
            elif why_not is None and channel is Channel.WA_OLD and not availability.wa_old_eligible:
                why_not = "the server says wa_old is not eligible for this number"
            if why_not is None and (first is None or delay < first):
                first = delay
            channels.append(ChannelReading(channel, given, delay, why_not))
        outcome: PlanOutcome | None = None
        if availability.blocked:
            outcome = PlanOutcome.APPEAL if availability.appeal_token else PlanOutcome.BLOCKED
        elif not availability.available:
            outcome = PlanOutcome.UNAVAILABLE
        elif first is None:
            outcome = PlanOutcome.NO_CHANNEL
        return outcome, first, tuple(channels)


class ChannelReading(NamedTuple):
    """One channel, as the planner sees it in an answer."""

    channel: Channel
    wait_seconds: float
    """The server's wait for it."""
    delay: float
    """Seconds from the answer until it opens (the wait, with the planner's margin)."""
    why_not: str | None
    """Why the plan may not use it, or ``None``."""


@attrs.frozen(kw_only=True)
class Assessment:
    """The planner's verdict on one answer, before a plan is built (`RegistrationPlanner.assess`).

    Attributes:
        outcome: what the answer means.
        observed_monotonic: when it was received, on the planner's monotonic clock.
        channels: how each channel reads in the answer, in the order SMS, voice, wa_old.
    """

    outcome: PlanOutcome
    observed_monotonic: float
    channels: tuple[ChannelReading, ...]

    @property
    def steps(self) -> tuple[ChannelReading, ...]:
        """The old name of `channels` (until the next minor version)."""
        import warnings

        warnings.warn(
            "Assessment.steps is now Assessment.channels", DeprecationWarning, stacklevel=2
        )
        return self.channels


@attrs.frozen(kw_only=True)
class RegistrationPlan:
    """When each channel opens for one number, and the means to wait for it.

    Attributes:
        number: the number planned for.
        outcome: what the availability answer means, at planning time.
        windows: one `ChannelWindow` per channel (SMS, voice, wa_old).
        preference: the planner's channel order, for breaking ties.
        reason: the server's reason, when it gave one.
        appeal_token: when banned, the token for an unban request.
        observed_at: when the availability answer was received.
        margin: the planner's margin, kept to plan the answers that follow.
    """

    number: PhoneNumber
    outcome: PlanOutcome
    windows: tuple[ChannelWindow, ...]
    preference: tuple[Channel, ...]
    reason: str | None = None
    appeal_token: str | None = None
    observed_at: datetime
    margin: float = 0.0
    clock: Clock = attrs.field(factory=SystemClock, eq=False, repr=False)

    def window(self, channel: Channel | str) -> ChannelWindow:
        """The window of ``channel``."""
        wanted = Channel(channel)
        for window in self.windows:
            if window.channel is wanted:
                return window
        raise NoChannelError(f"the plan has no window for {wanted.value}")  # pragma: no cover

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The eligible channels, the soonest first (ties in preference order)."""
        eligible = [w for w in self.windows if w.eligible]
        order = {channel: i for i, channel in enumerate(self.preference)}
        eligible.sort(key=lambda w: (w.ready_at_monotonic, order.get(w.channel, len(order))))
        return tuple(w.channel for w in eligible)

    def next_channel(self) -> Channel | None:
        """The eligible channel that opens first (ties broken by preference), or None."""
        channels = self.channels
        return channels[0] if channels else None

    def _eligible(self, channel: Channel | str | None) -> ChannelWindow:
        if channel is None:
            raise NoChannelError(self._none_given())
        window = self.window(channel)
        if not window.eligible:
            raise NoChannelError(f"{window.channel.value} cannot be used: {window.why_not}")
        return window

    def _none_given(self) -> str:
        """What ``channel=None`` means: no channel was given while one may be used (say
        which is next), or none may be used (say why)."""
        first = self.next_channel()
        if first is None:
            why = f": {self.reason}" if self.reason else ""
            return f"no channel can be used for {self.number} (outcome: {self.outcome}{why})"
        wait = max(0.0, self.window(first).ready_at_monotonic - self.clock.monotonic())
        # Whole seconds, up: a wait of 0.4 s is not "0 s" (the planner is never early).
        when = "open now" if wait == 0 else f"opens in {math.ceil(wait)} s"
        return (
            f"no channel was given for {self.number} (outcome: {self.outcome}): name one; "
            f"the next is {first.value} ({when}), or call wait_for_next()"
        )

    def ready_in(self, channel: Channel | str) -> float:
        """Seconds from now until ``channel`` opens; 0 when it is open.

        Raises:
            NoChannelError: the channel is not eligible in this plan.
        """
        window = self._eligible(channel)
        return max(0.0, window.ready_at_monotonic - self.clock.monotonic())

    def is_ready(self, channel: Channel | str) -> bool:
        """Whether ``channel`` is eligible and open now."""
        try:
            return self.ready_in(channel) == 0.0
        except NoChannelError:
            return False

    async def wait_until_ready(self, channel: Channel | str | None) -> None:
        """Return when ``channel`` opens: at its time, never before.

        Waits on the monotonic clock and checks it again after every sleep, so
        neither an early wake-up nor a jump of the wall clock makes it return early.

        Raises:
            NoChannelError: ``channel`` is None or not eligible in this plan.
        """
        window = self._eligible(channel)
        while (remaining := window.ready_at_monotonic - self.clock.monotonic()) > 0:
            await self.clock.sleep(remaining)

    async def wait_for_next(self) -> Channel:
        """Wait until the first eligible channel opens, and return it.

        Raises:
            NoChannelError: the plan has no eligible channel.
        """
        channel = self.next_channel()
        await self.wait_until_ready(channel)
        assert channel is not None
        return channel

    def _repr_html_(self) -> str:
        from ._display import plan_html

        return plan_html(self)

    def plot(self, ax: Any = None) -> Any:
        """Draw the plan's channel timeline with matplotlib; returns the ``Axes``.

        Args:
            ax: the ``Axes`` to draw on (a new figure when None).
        """
        from ._display import plot_plan

        return plot_plan(self, ax)

    def after_code_request(self, request: CodeRequest) -> RegistrationPlan:
        """The plan once a code was requested: the new waits, and ``retryAfter``.

        Each channel opens after the new wait the answer gave it (a channel it gave
        none for keeps its time); the channel just used also waits its
        ``retry_after``, so it is not offered again before then. A ``blocked``
        answer makes the outcome ``BLOCKED_AT_CODE_REQUEST``, with no channel left.
        """
        if request.blocked:
            why = "blocked when a code was requested"
            return attrs.evolve(
                self,
                outcome=PlanOutcome.BLOCKED_AT_CODE_REQUEST,
                windows=tuple(attrs.evolve(w, eligible=False, why_not=why) for w in self.windows),
                reason=request.reason or self.reason,
            )
        now_mono = self.clock.monotonic()
        base_mono = received_monotonic(self.clock, request.observed_monotonic, request.observed_at)
        base_wall = request.observed_at.astimezone(timezone.utc)
        windows = []
        for window in self.windows:
            waits = [request.wait_seconds(window.channel)]
            if window.channel is request.channel:
                waits.append(request.retry_after)
            given = [max(0.0, wait) for wait in waits if wait is not None]
            if not given:
                windows.append(window)
                continue
            delay = max(given) + self.margin
            windows.append(
                attrs.evolve(
                    window,
                    wait_seconds=max(given),
                    ready_at=base_wall + timedelta(seconds=delay),
                    ready_at_monotonic=base_mono + delay,
                )
            )
        plan = attrs.evolve(self, windows=tuple(windows))
        channel = plan.next_channel()
        if channel is not None:
            ready = plan.window(channel).ready_at_monotonic <= now_mono
            plan = attrs.evolve(plan, outcome=PlanOutcome.READY if ready else PlanOutcome.WAIT)
        return plan

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, times in ISO-8601 UTC; `from_dict` reads it back."""
        return {
            "version": PLAN_FORMAT_VERSION,
            "number": self.number.e164,
            "ddi": self.number.ddi,
            "phone": self.number.phone,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "appeal_token": self.appeal_token,
            "observed_at": to_iso(self.observed_at),
            "margin": self.margin,
            "preference": [channel.value for channel in self.preference],
            "next_channel": None if self.next_channel() is None else str(self.next_channel()),
            "windows": [
                {
                    "channel": w.channel.value,
                    "eligible": w.eligible,
                    "wait_seconds": w.wait_seconds,
                    "ready_at": to_iso(w.ready_at),
                    "why_not": w.why_not,
                }
                for w in self.windows
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, clock: Clock | None = None) -> RegistrationPlan:
        """Rebuild a plan stored with `to_dict`, perhaps in another process.

        The monotonic times are placed from the stored wall-clock times, as seen
        from ``clock`` now.

        Raises:
            PlanDataError: ``data`` is not a stored plan.
        """
        clock = clock or SystemClock()
        try:
            if data.get("version") != PLAN_FORMAT_VERSION:
                raise PlanDataError(f"unknown plan format version {data.get('version')!r}")
            windows = []
            for item in data["windows"]:
                ready_at = from_iso(item["ready_at"])
                windows.append(
                    ChannelWindow(
                        channel=Channel(item["channel"]),
                        eligible=_strict_bool(item["eligible"]),
                        wait_seconds=float(item["wait_seconds"]),
                        ready_at=ready_at,
                        ready_at_monotonic=monotonic_of(clock, ready_at),
                        why_not=_optional_text(item.get("why_not")),
                    )
                )
            if sorted(w.channel.value for w in windows) != sorted(c.value for c in Channel):
                raise PlanDataError("a plan needs exactly one window per channel")
            return cls(
                number=PhoneNumber(ddi=str(data["ddi"]), phone=str(data["phone"])),
                outcome=_plan_outcome(data["outcome"]),
                windows=tuple(windows),
                preference=tuple(Channel(c) for c in data["preference"]),
                reason=_optional_text(data.get("reason")),
                appeal_token=_optional_text(data.get("appeal_token")),
                observed_at=from_iso(data["observed_at"]),
                margin=float(data.get("margin", 0.0)),
                clock=clock,
            )
        except PlanDataError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, InvalidPhoneNumber) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise PlanDataError(f"not a stored plan: {detail}") from None


def _strict_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise PlanDataError(f"expected true or false, not {value!r}")
    return value


def _optional_text(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise PlanDataError(f"expected text or null, not {value!r}")
    return value
