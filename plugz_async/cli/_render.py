"""What the command line shows: rich tables for people, plain JSON for programs."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs
from rich.console import Console
from rich.table import Table
from rich.text import Text

from plugz_async._errors import APIError, InvalidPhoneNumber, PlugzError
from plugz_async._models import Availability, Channel
from plugz_async._phone import PhoneNumber
from plugz_async._planner import Outcome, RegistrationPlan

__all__ = ["Checked", "humanize", "results_table", "summary_table", "to_json"]

_STYLE = {
    Outcome.READY: "bold green",
    Outcome.WAIT: "yellow",
    Outcome.APPEAL: "magenta",
    Outcome.BLOCKED: "red",
    Outcome.UNAVAILABLE: "red",
    Outcome.NO_CHANNEL: "red",
}


_HEADERS = {Channel.SMS: "SMS", Channel.VOICE: "Voice", Channel.WA_OLD: "wa_old"}


def humanize(seconds: float) -> str:
    """``"now"``, ``"in 45s"``, ``"in 1m30s"``, ``"in 2h5m"``: how long until a moment."""
    if seconds <= 0:
        return "now"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"in {hours}h{minutes}m" if minutes else f"in {hours}h"
    if minutes:
        return f"in {minutes}m{secs}s" if secs else f"in {minutes}m"
    return f"in {secs}s"


def local_time(moment: datetime, now: datetime) -> str:
    """A moment in local time: ``14:03:12``, with the date when it is not today."""
    local, today = moment.astimezone(), now.astimezone()
    if local.date() == today.date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


@attrs.frozen
class Checked:
    """One number as the command line checked it: a plan, or the error it met."""

    input: str
    number: PhoneNumber | None = None
    availability: Availability | None = None
    plan: RegistrationPlan | None = None
    error: PlugzError | None = None
    label: str = ""

    @property
    def outcome(self) -> str:
        if self.plan is not None:
            return self.plan.outcome.value
        return "error"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the input as given, the decoded answer and plan, or the error."""
        error = None
        if self.error is not None:
            error = {
                "type": type(self.error).__name__,
                "message": str(self.error),
                "status": getattr(self.error, "status", None),
                "attempts": self.error.attempts,
            }
        return {
            "input": self.input,
            "number": None if self.number is None else self.number.e164,
            "outcome": self.outcome,
            "availability": None if self.availability is None else self.availability.to_dict(),
            "plan": None if self.plan is None else self.plan.to_dict(),
            "error": error,
        }


def to_json(results: Iterable[Checked]) -> list[dict[str, Any]]:
    return [result.to_dict() for result in results]


def _channel_cell(plan: RegistrationPlan, channel: Channel, now: datetime) -> Text:
    window = plan.window(channel)
    if not window.eligible:
        return Text("—", style="dim")
    wait = plan.ready_in(channel)
    if wait <= 0:
        return Text("now", style="green")
    return Text(f"{humanize(wait)} ({local_time(window.ready_at, now)})")


def error_note(error: PlugzError) -> str:
    """A short account of an error for a table cell (``--json`` has the whole message)."""
    name = type(error).__name__
    if isinstance(error, APIError):
        said = ": ".join(part for part in (error.error, error.message) if part)
        note = f"{name}: HTTP {error.status}" + (f" {said}" if said else "")
    elif isinstance(error, InvalidPhoneNumber):
        note = f"{name}: {str(error).split(': ', 1)[-1]}"
    else:
        note = f"{name}: {str(error).split(': ', 1)[-1] if ': ' in str(error) else error}"
    if error.attempts > 1:
        note += f" ({error.attempts} attempts)"
    return note if len(note) <= 90 else note[:89] + "…"


def results_table(results: Sequence[Checked], now: datetime, title: str | None = None) -> Table:
    """One row a number: its outcome, when each channel opens, and a note."""
    table = Table(title=title, title_justify="left")
    table.add_column("Number", no_wrap=True)
    labelled = any(result.label for result in results)
    if labelled:
        table.add_column("Scenario", no_wrap=True)
    table.add_column("Outcome", no_wrap=True)
    table.add_column("Next", no_wrap=True)
    for header in _HEADERS.values():
        table.add_column(header, no_wrap=True)
    table.add_column("Note")
    for result in results:
        shown = [result.input if result.number is None else result.number.e164]
        if labelled:
            shown.append(result.label)
        plan = result.plan
        if plan is None:
            note = "" if result.error is None else error_note(result.error)
            table.add_row(*shown, Text("error", style="bold red"), "", "", "", "", note)
            continue
        next_channel = plan.next_channel()
        note = plan.reason or ""
        if plan.appeal_token:
            note = f"appeal token {plan.appeal_token}"
        table.add_row(
            *shown,
            Text(plan.outcome.value, style=_STYLE[plan.outcome]),
            "" if next_channel is None else next_channel.value,
            *(_channel_cell(plan, channel, now) for channel in Channel),
            note,
        )
    return table


def summary_table(results: Sequence[Checked], elapsed: float) -> Table:
    """Counts by outcome, and errors by class."""
    outcomes = Counter(result.outcome for result in results)
    errors = Counter(type(r.error).__name__ for r in results if r.error is not None)
    table = Table(title=f"{len(results)} numbers in {elapsed:.1f} s", title_justify="left")
    table.add_column("Outcome")
    table.add_column("Count", justify="right")
    for outcome in Outcome:
        if outcomes[outcome.value]:
            table.add_row(Text(outcome.value, style=_STYLE[outcome]), str(outcomes[outcome.value]))
    for name, count in sorted(errors.items()):
        table.add_row(Text(f"error: {name}", style="red"), str(count))
    return table


def console(*, stderr: bool = False) -> Console:
    """A console that keeps tables readable when the output is a file or a pipe."""
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else 160
    return Console(stderr=stderr, width=width, highlight=False)
