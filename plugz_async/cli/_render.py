"""What the command line shows: rich tables for people, plain JSON for programs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs
from rich.console import Console
from rich.table import Table
from rich.text import Text

from plugz_async._bulk._items import BulkItem
from plugz_async._bulk._summary import BulkSummary
from plugz_async._errors import APIError, InvalidPhoneNumber
from plugz_async._models import Channel
from plugz_async._planner import PlanOutcome, RegistrationPlan

__all__ = [
    "ResultRow",
    "humanize",
    "opens_table",
    "results_table",
    "span",
    "summary_table",
    "to_json",
]

_STYLE = {
    PlanOutcome.READY: "bold green",
    PlanOutcome.WAIT: "yellow",
    PlanOutcome.APPEAL: "magenta",
    PlanOutcome.BLOCKED: "red",
    PlanOutcome.UNAVAILABLE: "red",
    PlanOutcome.NO_CHANNEL: "red",
}


_HEADERS = {Channel.SMS: "SMS", Channel.VOICE: "Voice", Channel.WA_OLD: "wa_old"}


def humanize(seconds: float) -> str:
    """``"now"``, ``"in 45s"``, ``"in 1m30s"``, ``"in 2h5m"``: how long until a moment."""
    if seconds <= 0:
        return "now"
    return f"in {span(seconds)}"


def span(seconds: float) -> str:
    """``"0s"``, ``"45s"``, ``"1m30s"``, ``"2h5m"``: a length of time."""
    total = max(0, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def local_time(moment: datetime, now: datetime) -> str:
    """A moment in local time: ``14:03:12``, with the date when it is not today."""
    local, today = moment.astimezone(), now.astimezone()
    if local.date() == today.date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


def to_json(items: Iterable[BulkItem]) -> list[dict[str, Any]]:
    return [item.to_dict() for item in items]


def _channel_cell(plan: RegistrationPlan, channel: Channel, now: datetime) -> Text:
    window = plan.window(channel)
    if not window.eligible:
        return Text("—", style="dim")
    wait = plan.ready_in(channel)
    if wait <= 0:
        return Text("now", style="green")
    return Text(f"{humanize(wait)} ({local_time(window.ready_at, now)})")


def error_note(error: Exception) -> str:
    """A short account of an error for a table cell (``--json`` has the whole message)."""
    name = type(error).__name__
    if isinstance(error, APIError):
        said = ": ".join(part for part in (error.error, error.message) if part)
        note = f"{name}: HTTP {error.status}" + (f" {said}" if said else "")
    elif isinstance(error, InvalidPhoneNumber):
        note = f"{name}: {str(error).split(': ', 1)[-1]}"
    else:
        note = f"{name}: {str(error).split(': ', 1)[-1] if ': ' in str(error) else error}"
    attempts = getattr(error, "attempts", 0)
    if attempts > 1:
        note += f" ({attempts} attempts)"
    return note if len(note) <= 90 else note[:89] + "…"


@attrs.frozen
class ResultRow:
    """One number's row in the results table: how it is shown, and its plan or error.

    Attributes:
        number: the number as shown (E.164, or the text given when it could not be read).
        result: the number's plan, or the error it met.
        scenario: the sandbox scenario it plays (the demo's table shows them).
    """

    number: str
    result: RegistrationPlan | Exception
    scenario: str = ""


def results_table(rows: Sequence[ResultRow], now: datetime, title: str | None = None) -> Table:
    """One row a number: its outcome, when each channel opens, and a note."""
    table = Table(title=title, title_justify="left")
    table.add_column("Number", no_wrap=True)
    scenarios = any(row.scenario for row in rows)
    if scenarios:
        table.add_column("Scenario", no_wrap=True)
    table.add_column("PlanOutcome", no_wrap=True)
    table.add_column("Next", no_wrap=True)
    for header in _HEADERS.values():
        table.add_column(header, no_wrap=True)
    table.add_column("Note")
    for row in rows:
        shown = [row.number, row.scenario] if scenarios else [row.number]
        plan = row.result
        if not isinstance(plan, RegistrationPlan):
            table.add_row(*shown, Text("error", style="bold red"), "", "", "", "", error_note(plan))
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


def summary_line(summary: BulkSummary) -> str:
    """The run in one line: how many, how long, how fast, how many requests."""
    return (
        f"{summary.total} numbers in {summary.wall_time:.1f} s ({summary.rate:.0f}/s), "
        f"{summary.attempts} requests, {summary.retries} retries"
    )


def summary_table(summary: BulkSummary) -> Table:
    """Counts by outcome and errors by class."""
    table = Table()
    table.add_column("PlanOutcome")
    table.add_column("Count", justify="right")
    for outcome in PlanOutcome:
        if outcome is not PlanOutcome.ERROR and summary.outcomes[outcome.value]:
            table.add_row(
                Text(outcome.value, style=_STYLE[outcome]), str(summary.outcomes[outcome.value])
            )
    for name, count in sorted(summary.errors.items()):
        table.add_row(Text(f"error: {name}", style="red"), str(count))
    return table


def opens_table(summary: BulkSummary, now: datetime, *, this_run: bool = False) -> Table | None:
    """When each channel opens across the numbers: earliest, median, latest."""
    spreads = {channel: summary.opens[channel].to_dict() for channel in Channel}
    if not any(spreads.values()):
        return None
    title = "When the channels open" + (" (the numbers checked by this run)" if this_run else "")
    table = Table(title=title, title_justify="left")
    for header in ("Channel", "Numbers", "Earliest", "Median", "Latest"):
        table.add_column(header)
    for channel, spread in spreads.items():
        if spread is None:
            continue
        moments = [datetime.fromisoformat(spread[k]) for k in ("earliest", "median", "latest")]
        table.add_row(
            _HEADERS[channel],
            str(spread["count"]),
            *(_when(moment, now) for moment in moments),
        )
    return table


def _when(moment: datetime, now: datetime) -> str:
    return f"{humanize((moment - now).total_seconds())} ({local_time(moment, now)})"


def console(*, stderr: bool = False) -> Console:
    """A console that keeps tables readable when the output is a file or a pipe."""
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else 160
    # Messages on stderr are never wrapped: a script reads each as one line.
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=stderr)
