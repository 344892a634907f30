"""The one format of stored times: every time the SDK writes (plans, registration states
and their events, results files and summaries, the queue's statuses) is ISO-8601 in UTC
with its offset, ``2026-12-02T20:37:03.123456+00:00``, the form ``datetime.isoformat()``
writes and ``datetime.fromisoformat()`` reads on every supported Python. Reading also
takes a ``Z`` for UTC (plans written before 0.9 used it) and any other offset.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["epoch_to_iso", "from_iso", "to_iso"]


def to_iso(moment: datetime) -> str:
    """``moment`` as stored: ISO-8601, in UTC.

    Raises:
        ValueError: ``moment`` has no time zone (stored times are never naive).
    """
    if moment.tzinfo is None:
        raise ValueError(f"a stored time needs a time zone: {moment!r}")
    return moment.astimezone(timezone.utc).isoformat()


def epoch_to_iso(seconds: float) -> str:
    """Seconds since the epoch, as stored."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


def from_iso(text: object) -> datetime:
    """A stored time, as an aware UTC ``datetime``.

    Raises:
        ValueError: ``text`` is not ISO-8601 text with a time zone.
    """
    if not isinstance(text, str):
        raise ValueError(f"a time must be ISO-8601 text, not {type(text).__name__}")
    moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return moment.astimezone(timezone.utc)
