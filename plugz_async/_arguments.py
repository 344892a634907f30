"""The rules a caller's arguments must keep, checked before any request is sent or any
input is stored: a channel, a confirmation code, a two-step PIN, a captcha's text, a
non-empty text. The client, the queue and the command line all check with these, so a
code is "4 to 8 digits" in one place only."""

from __future__ import annotations

from ._errors import InvalidArgument
from ._models import Channel
from ._strenum import StrEnum

__all__ = [
    "CODE_DIGITS",
    "PIN_DIGITS",
    "InputKind",
    "captcha_of",
    "channel_of",
    "code_of",
    "digits_of",
    "pin_of",
    "text_of",
]

#: The shortest and longest confirmation code (digits).
CODE_DIGITS = (4, 8)
#: The two-step verification PIN's length (digits).
PIN_DIGITS = 6


def channel_of(value: Channel | str) -> Channel:
    """``value`` as a `Channel` (``"sms"``, ``"voice"``, ``"wa_old"``)."""
    try:
        return Channel(value)
    except ValueError:
        names = ", ".join(repr(c.value) for c in Channel)
        raise InvalidArgument(f"channel must be one of {names}, not {value!r}") from None


def text_of(name: str, value: object) -> str:
    """``value`` as non-empty text, stripped."""
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


def code_of(value: object) -> str:
    """A confirmation code (4 to 8 digits) as the API wants it."""
    return digits_of("code", value, *CODE_DIGITS)


def pin_of(value: object) -> str:
    """A two-step verification PIN (6 digits) as the API wants it."""
    return digits_of("PIN", value, PIN_DIGITS, PIN_DIGITS)


def captcha_of(value: object) -> str:
    """A captcha's text as the API wants it."""
    return text_of("captcha text", value)


class InputKind(StrEnum):
    """What a registration can wait for from a person (or a gateway): it equals its
    word (``InputKind.CODE == "code"``), which the queue stores and the CLI names."""

    CODE = "code"
    CAPTCHA = "captcha"
    PIN = "pin"

    @property
    def label(self) -> str:
        """The input in words: ``code``, ``captcha text``, ``PIN``."""
        return _LABELS[self]

    def check(self, value: object) -> str:
        """``value`` as this input is sent.

        Raises:
            InvalidArgument: it is not one (not 4 to 8 digits for a code...).
        """
        return _CHECKS[self](value)


_LABELS = {InputKind.CODE: "code", InputKind.CAPTCHA: "captcha text", InputKind.PIN: "PIN"}
_CHECKS = {InputKind.CODE: code_of, InputKind.CAPTCHA: captcha_of, InputKind.PIN: pin_of}
