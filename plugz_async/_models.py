"""Typed, frozen results, decoded leniently from the API's camelCase JSON.

The API is loose: numbers come as ints, floats or numeric strings (``30``,
``30.0``, ``"30"``), booleans sometimes as ``"true"`` or ``1``, fields go
missing and new ones appear. Decoding accepts all of that, fills documented
defaults, keeps every field as received in ``raw``, and raises
:class:`ResponseDecodeError` only for a value that cannot mean what the field
says (``"soon"`` for a number of seconds).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import attrs

from ._errors import ResponseDecodeError
from ._phone import PhoneNumber

__all__ = ["Availability", "Channel", "decode_availability"]


class Channel(str, enum.Enum):
    """A way to receive the registration code; the value is the API's ``method``."""

    SMS = "sms"
    VOICE = "voice"
    WA_OLD = "wa_old"
    """The pop-up in the WhatsApp app on the phone that holds the number today."""

    def __str__(self) -> str:
        return self.value


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no", ""})


def _bad(route: str, key: str, value: object, wanted: str) -> ResponseDecodeError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:59] + "…"
    return ResponseDecodeError(
        f"field {key!r} of {route} should be {wanted}, got {shown}", route=route
    )


def read_bool(data: Mapping[str, Any], key: str, default: bool, route: str) -> bool:
    """A boolean field: ``true``/``false``, ``1``/``0`` or their strings; null means default."""
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _bad(route, key, value, "a boolean")


def read_seconds(data: Mapping[str, Any], key: str, route: str) -> float:
    """A count of seconds: an int, a float or a numeric string; null or missing means 0."""
    value = data.get(key)
    if value is None:
        return 0.0
    if isinstance(value, bool):
        raise _bad(route, key, value, "a number of seconds")
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise _bad(route, key, value, "a finite number of seconds") from None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _bad(route, key, value, "a number of seconds") from None
    else:
        raise _bad(route, key, value, "a number of seconds")
    if not math.isfinite(number):
        raise _bad(route, key, value, "a finite number of seconds")
    return number


def read_text(data: Mapping[str, Any], key: str, route: str) -> str | None:
    """A text field; numbers are taken as their text, null or missing as ``None``."""
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise _bad(route, key, value, "text")


def _read_only(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@attrs.frozen(kw_only=True)
class Availability:
    """The answer of ``POST /mobile/registration-available`` for one number.

    Attributes:
        number: the number that was checked.
        available: whether the number can go on to request a code (``False``: stop).
        blocked: whether the number is banned or blocked.
        appeal_token: when banned, the token for an unban request.
        sms_wait_seconds: seconds to wait before a code may be asked for by SMS (0: now).
        voice_wait_seconds: the same for a voice call.
        wa_old_wait_seconds: the same for the in-app pop-up (``wa_old``).
        wa_old_eligible: whether the ``wa_old`` channel can be used at all.
        reason: why, when the server says something went wrong.
        observed_at: when the answer was received (aware UTC).
        observed_monotonic: the same moment on the monotonic clock of the client that
            received it (``None`` when the value was not received in this process).
        raw: every field exactly as received, unknown ones included.

    Missing fields take these defaults: ``available`` and ``blocked`` false,
    wait seconds 0, ``wa_old_eligible`` false, ``appeal_token`` and ``reason`` None.
    A combination that makes no sense (``available`` and ``blocked`` both true) is
    kept as received; the planner treats ``blocked`` as the stronger word.
    """

    number: PhoneNumber
    available: bool
    blocked: bool = False
    appeal_token: str | None = None
    sms_wait_seconds: float = 0.0
    voice_wait_seconds: float = 0.0
    wa_old_wait_seconds: float = 0.0
    wa_old_eligible: bool = False
    reason: str | None = None
    observed_at: datetime
    observed_monotonic: float | None = attrs.field(default=None, eq=False, repr=False)
    raw: Mapping[str, Any] = attrs.field(factory=dict, converter=_read_only, repr=False, hash=False)

    def wait_seconds(self, channel: Channel) -> float:
        """The wait the server gave for ``channel``."""
        return {
            Channel.SMS: self.sms_wait_seconds,
            Channel.VOICE: self.voice_wait_seconds,
            Channel.WA_OLD: self.wa_old_wait_seconds,
        }[Channel(channel)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (snake_case keys, ISO-8601 time, ``raw`` as received)."""
        return {
            "number": self.number.e164,
            "ddi": self.number.ddi,
            "phone": self.number.phone,
            "available": self.available,
            "blocked": self.blocked,
            "appeal_token": self.appeal_token,
            "sms_wait_seconds": self.sms_wait_seconds,
            "voice_wait_seconds": self.voice_wait_seconds,
            "wa_old_wait_seconds": self.wa_old_wait_seconds,
            "wa_old_eligible": self.wa_old_eligible,
            "reason": self.reason,
            "observed_at": self.observed_at.isoformat(),
            "raw": dict(self.raw),
        }


def decode_availability(
    data: object,
    *,
    number: PhoneNumber,
    observed_at: datetime,
    observed_monotonic: float | None = None,
    route: str = "mobile/registration-available",
) -> Availability:
    """Decode the JSON of a registration-available answer.

    Raises:
        ResponseDecodeError: ``data`` is not an object, or a field cannot be read.
    """
    if not isinstance(data, Mapping):
        raise ResponseDecodeError(
            f"{route} should answer a JSON object, got {type(data).__name__}", route=route
        )
    return Availability(
        number=number,
        available=read_bool(data, "available", False, route),
        blocked=read_bool(data, "blocked", False, route),
        appeal_token=read_text(data, "appealToken", route),
        sms_wait_seconds=read_seconds(data, "smsWaitSeconds", route),
        voice_wait_seconds=read_seconds(data, "voiceWaitSeconds", route),
        wa_old_wait_seconds=read_seconds(data, "waOldWaitSeconds", route),
        wa_old_eligible=read_bool(data, "waOldEligible", False, route),
        reason=read_text(data, "reason", route),
        observed_at=observed_at,
        observed_monotonic=observed_monotonic,
        raw=data,
    )
