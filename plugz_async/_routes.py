"""The API's routes: each one's method, path and retry safety, and the checks of the
arguments a caller gives for them (made before any request is sent)."""

from __future__ import annotations

import attrs

from ._errors import InvalidArgument
from ._models import Channel
from ._retry import RetrySafety

__all__ = ["ROUTES", "Route", "channel_of", "digits_of", "text_of"]


@attrs.frozen
class Route:
    """One API route: its HTTP method, its path under the instance, its retry safety."""

    method: str
    path: str
    safety: RetrySafety


REGISTRATION_AVAILABLE = Route("POST", "mobile/registration-available", RetrySafety.SAFE)
REQUEST_CODE = Route("POST", "mobile/request-registration-code", RetrySafety.UNSAFE)
RESPOND_CAPTCHA = Route("POST", "mobile/respond-captcha", RetrySafety.UNSAFE)
CONFIRM_CODE = Route("POST", "mobile/confirm-registration-code", RetrySafety.UNSAFE)
CONFIRM_DEVICE_TRANSFER = Route("GET", "mobile/device-transfer-confirmed", RetrySafety.SAFE)
CONFIRM_PIN = Route("POST", "mobile/confirm-pin-code", RetrySafety.UNSAFE)
RECOVER_PIN = Route("POST", "mobile/recovery-pin-code", RetrySafety.UNSAFE)
REQUEST_UNBANNING = Route("POST", "mobile/request-unbanning", RetrySafety.UNSAFE)

#: Every route the client sends, with its retry safety (the docs' retry table).
ROUTES: tuple[Route, ...] = (
    REGISTRATION_AVAILABLE,
    REQUEST_CODE,
    RESPOND_CAPTCHA,
    CONFIRM_CODE,
    CONFIRM_DEVICE_TRANSFER,
    CONFIRM_PIN,
    RECOVER_PIN,
    REQUEST_UNBANNING,
)


def channel_of(value: Channel | str) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        names = ", ".join(repr(c.value) for c in Channel)
        raise InvalidArgument(f"channel must be one of {names}, not {value!r}") from None


def text_of(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{name} must be non-empty text")
    return value.strip()


def digits_of(name: str, value: object, shortest: int, longest: int) -> str:
    """A code as digits: spaces and hyphens are dropped (``"123-456"``)."""
    if not isinstance(value, str):
        raise InvalidArgument(f"the {name} must be text, not {type(value).__name__}")
    digits = "".join(value.replace("-", "").split())
    if not (digits.isascii() and digits.isdigit() and shortest <= len(digits) <= longest):
        size = str(shortest) if shortest == longest else f"{shortest} to {longest}"
        raise InvalidArgument(f"the {name} must be {size} digits")
    return digits
