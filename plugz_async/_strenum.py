"""An enum whose members are their wire strings, and print as them (3.10 has no StrEnum)."""

from __future__ import annotations

import enum

__all__ = ["StrEnum"]


class StrEnum(str, enum.Enum):
    """Members equal their values, and print as them: ``str(Channel.SMS) == "sms"``."""

    def __str__(self) -> str:
        return str(self.value)
