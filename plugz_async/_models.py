"""Typed, frozen results, decoded leniently from the API's camelCase JSON.

The API is loose: numbers come as ints, floats or numeric strings (``30``,
``30.0``, ``"30"``), booleans sometimes as ``"true"`` or ``1``, fields go
missing and new ones appear. Decoding accepts all of that, fills documented
defaults, keeps every field as received in ``raw``, and raises
`ResponseDecodeError` only for a value that cannot mean what the field
says (``"soon"`` for a number of seconds).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

import attrs

from ._errors import ResponseDecodeError
from ._phone import PhoneNumber
from ._stored import to_iso
from ._strenum import StrEnum

__all__ = [
    "Availability",
    "CaptchaAnswer",
    "Channel",
    "CodeConfirmation",
    "CodeRequest",
    "DeviceTransfer",
    "InstanceStatus",
    "PinConfirmation",
    "PinRecovery",
    "UnbanRequest",
    "UnbanStatus",
    "decode_availability",
    "decode_code_confirmation",
    "decode_code_request",
    "decode_instance_status",
    "decode_success",
    "decode_unban_request",
]


class Channel(StrEnum):
    """A way to receive the registration code; the value is the API's ``method``."""

    SMS = "sms"
    VOICE = "voice"
    WA_OLD = "wa_old"
    """The pop-up in the WhatsApp app on the phone that holds the number today."""


_WAIT_FIELDS = {
    Channel.SMS: "sms_wait_seconds",
    Channel.VOICE: "voice_wait_seconds",
    Channel.WA_OLD: "wa_old_wait_seconds",
}

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
    if value is True or value is False:  # the usual case, first
        return value
    if value is None:
        return default
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _bad(route, key, value, "a boolean")


def read_optional_bool(data: Mapping[str, Any], key: str, route: str) -> bool | None:
    """Like `read_bool`, but ``None`` when the field is missing or null."""
    return None if data.get(key) is None else read_bool(data, key, False, route)


def read_seconds(data: Mapping[str, Any], key: str, route: str) -> float:
    """A count of seconds: an int, a float or a numeric string; null or missing means 0."""
    value: Any = data.get(key)
    kind = type(value)
    if kind is int and -(2**53) <= value <= 2**53:  # the usual case, first
        return float(value)
    if kind is float and math.isfinite(value):
        return float(value)
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
    if isinstance(mapping, MappingProxyType):
        return mapping  # already read-only (decoders wrap the JSON they parsed)
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

    def _repr_html_(self) -> str:
        from ._display import availability_html

        return availability_html(self)

    def wait_seconds(self, channel: Channel) -> float:
        """The wait the server gave for ``channel``."""
        value: float = getattr(self, _WAIT_FIELDS[Channel(channel)])
        return value

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
            "observed_at": to_iso(self.observed_at),
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
    data = _object(data, route)
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
        raw=_owned(data),
    )


# -- the rest of the registration flow -------------------------------------------------------


class UnbanStatus(StrEnum):
    """Where an unban request stands."""

    IN_REVIEW = "IN_REVIEW"
    UNBANNED = "UNBANNED"


def read_optional_seconds(data: Mapping[str, Any], key: str, route: str) -> float | None:
    """Like `read_seconds`, but ``None`` when the field is missing or null."""
    return None if data.get(key) is None else read_seconds(data, key, route)


_DATA_URL_PREFIX = "base64,"


def read_captcha(data: Mapping[str, Any], route: str) -> bytes | None:
    """The captcha image: base64 (with or without a ``data:image/png;base64,`` prefix)."""
    value = data.get("captcha")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad(route, "captcha", value, "base64 text")
    text = value.split(_DATA_URL_PREFIX, 1)[1] if value.startswith("data:") else value
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(route, "captcha", value, "base64 text") from None


def _owned(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The JSON the transport decoded belongs to this answer alone: wrap it, no copy."""
    return MappingProxyType(data) if type(data) is dict else data


def _object(data: object, route: str) -> Mapping[str, Any]:
    if type(data) is dict:
        return data
    if not isinstance(data, Mapping):
        raise ResponseDecodeError(
            f"{route} should answer a JSON object, got {type(data).__name__}", route=route
        )
    return data


@attrs.frozen(kw_only=True)
class _Answered:
    """What every answer keeps: when it arrived, and every field as received."""

    observed_at: datetime
    raw: Mapping[str, Any] = attrs.field(factory=dict, converter=_read_only, repr=False, hash=False)


@attrs.frozen(kw_only=True)
class CodeRequest(_Answered):
    """The answer of ``POST /mobile/request-registration-code``.

    Attributes:
        number: the number a code was asked for.
        channel: the channel asked for.
        success: whether the code is on its way.
        captcha: when the server wants a captcha answered first, the image (PNG bytes);
            answer it with ``respond_captcha`` and then wait for the code (do not ask again).
        blocked: the number is blocked (the case the availability check cannot see).
        retry_after: seconds before this channel may be asked again (``None``: not given).
        sms_wait_seconds: the new wait before SMS may be asked (``None``: not given).
        voice_wait_seconds: the same for a voice call.
        wa_old_wait_seconds: the same for the in-app pop-up.
        method: the channel as the server echoed it.
        reason: why, when the server says.
        observed_monotonic: when it arrived, on the client's monotonic clock.
    """

    number: PhoneNumber
    channel: Channel
    success: bool
    captcha: bytes | None = attrs.field(
        default=None, repr=lambda v: f"<{len(v)} bytes>" if v else "None"
    )
    blocked: bool = False
    retry_after: float | None = None
    sms_wait_seconds: float | None = None
    voice_wait_seconds: float | None = None
    wa_old_wait_seconds: float | None = None
    method: str | None = None
    reason: str | None = None
    observed_monotonic: float | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def needs_captcha(self) -> bool:
        """Whether a captcha must be answered before the code is sent."""
        return self.captcha is not None

    def wait_seconds(self, channel: Channel) -> float | None:
        """The new wait the server gave for ``channel``, if it gave one."""
        value: float | None = getattr(self, _WAIT_FIELDS[Channel(channel)])
        return value


@attrs.frozen(kw_only=True)
class CaptchaAnswer(_Answered):
    """The answer of ``POST /mobile/respond-captcha``: ``success`` means the code is on its way."""

    success: bool


@attrs.frozen(kw_only=True)
class CodeConfirmation(_Answered):
    """The answer of ``POST /mobile/confirm-registration-code``.

    Attributes:
        success: the instance is connected.
        needs_pin: a two-step PIN must be confirmed next (``confirm_pin``).
        needs_device_confirmation: the transfer must be approved on the phone that holds
            the number now; then ``confirm_device_transfer``.
    """

    success: bool
    needs_pin: bool = False
    needs_device_confirmation: bool = False


@attrs.frozen(kw_only=True)
class DeviceTransfer(_Answered):
    """The answer of ``GET /mobile/device-transfer-confirmed``.

    ``confirmed`` is false while the transfer was not approved on the phone yet
    (the API answers 400 until then).
    """

    confirmed: bool


@attrs.frozen(kw_only=True)
class InstanceStatus(_Answered):
    """The answer of ``GET /status``: whether the instance is connected to its number.

    Attributes:
        connected: the number is connected to the instance (missing: false).
        error: the details the server gives when something is not true ("You are not
            connected.", "You need to restore the session.", "You are already
            connected."); ``None`` when it gives none.
        smartphone_connected: the phone is online (``None``: not said; a mobile
            instance may have no separate phone).
    """

    connected: bool
    error: str | None = None
    smartphone_connected: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (snake_case keys, ISO-8601 time, ``raw`` as received)."""
        return {
            "connected": self.connected,
            "error": self.error,
            "smartphone_connected": self.smartphone_connected,
            "observed_at": to_iso(self.observed_at),
            "raw": dict(self.raw),
        }


@attrs.frozen(kw_only=True)
class PinConfirmation(_Answered):
    """The answer of ``POST /mobile/confirm-pin-code``: ``success`` means connected."""

    success: bool


@attrs.frozen(kw_only=True)
class PinRecovery(_Answered):
    """The answer of ``POST /mobile/recovery-pin-code``: a reset link was e-mailed."""

    success: bool


@attrs.frozen(kw_only=True)
class UnbanRequest(_Answered):
    """The answer of ``POST /mobile/request-unbanning``.

    Attributes:
        success: the request was accepted.
        status: ``IN_REVIEW`` or ``UNBANNED``; ``None`` when the server sent another
            value (kept in ``raw``).
    """

    success: bool
    status: UnbanStatus | None = None


def decode_code_request(
    data: object,
    *,
    number: PhoneNumber,
    channel: Channel,
    observed_at: datetime,
    observed_monotonic: float | None = None,
    route: str = "mobile/request-registration-code",
) -> CodeRequest:
    """Decode a code-request answer (``retryAfter`` as a number or a numeric string)."""
    data = _object(data, route)
    return CodeRequest(
        number=number,
        channel=channel,
        success=read_bool(data, "success", False, route),
        captcha=read_captcha(data, route),
        blocked=read_bool(data, "blocked", False, route),
        retry_after=read_optional_seconds(data, "retryAfter", route),
        sms_wait_seconds=read_optional_seconds(data, "smsWaitSeconds", route),
        voice_wait_seconds=read_optional_seconds(data, "voiceWaitSeconds", route),
        wa_old_wait_seconds=read_optional_seconds(data, "waOldWaitSeconds", route),
        method=read_text(data, "method", route),
        reason=read_text(data, "reason", route),
        observed_at=observed_at,
        observed_monotonic=observed_monotonic,
        raw=data,
    )


def decode_code_confirmation(
    data: object, *, observed_at: datetime, route: str
) -> CodeConfirmation:
    data = _object(data, route)
    return CodeConfirmation(
        success=read_bool(data, "success", False, route),
        needs_pin=read_bool(data, "confirmSecurityCode", False, route),
        needs_device_confirmation=read_bool(data, "deviceConfirm", False, route),
        observed_at=observed_at,
        raw=data,
    )


def decode_instance_status(data: object, *, observed_at: datetime, route: str) -> InstanceStatus:
    """Decode a status answer (an empty or false ``error`` is none)."""
    data = _object(data, route)
    error = None if data.get("error") is False else read_text(data, "error", route)
    return InstanceStatus(
        connected=read_bool(data, "connected", False, route),
        error=(error or "").strip() or None,
        smartphone_connected=read_optional_bool(data, "smartphoneConnected", route),
        observed_at=observed_at,
        raw=data,
    )


def decode_unban_request(data: object, *, observed_at: datetime, route: str) -> UnbanRequest:
    data = _object(data, route)
    status = read_text(data, "status", route)
    known = {s.value for s in UnbanStatus}
    return UnbanRequest(
        success=read_bool(data, "success", False, route),
        status=UnbanStatus(status.upper()) if status and status.upper() in known else None,
        observed_at=observed_at,
        raw=data,
    )


_Acknowledged = TypeVar("_Acknowledged", CaptchaAnswer, PinConfirmation, PinRecovery)


def decode_success(
    cls: type[_Acknowledged], data: object, *, observed_at: datetime, route: str
) -> _Acknowledged:
    """Decode an answer whose one field is ``success``."""
    data = _object(data, route)
    return cls(success=read_bool(data, "success", False, route), observed_at=observed_at, raw=data)
