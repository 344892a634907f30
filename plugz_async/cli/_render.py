"""What the command line shows: tables for people, plain JSON for programs.

Every table lives here: the results of ``check`` and ``bulk``, and the durable queue's
(registrations, counts by status, workers, one registration's facts and events, what
``queue register`` queued). Each is a `Sheet` (``_layout.py``): it fits the terminal it
is drawn in, whatever its width, without cutting a cell.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
from rich.console import Console
from rich.text import Text

from plugz_async._bulk._items import BulkItem, SameLine
from plugz_async._bulk._summary import BulkSummary
from plugz_async._errors import APIError, InvalidPhoneNumber, MissingCountryCode
from plugz_async._models import Channel
from plugz_async._phone import PhoneNumber
from plugz_async._planner import PlanOutcome, RegistrationPlan
from plugz_async._registration import RegistrationOutcome, RegistrationStep

from ._layout import BLANK, Column, Sheet, Short

if TYPE_CHECKING:  # the queue extra is not needed to draw: only its types are named
    from plugz_async.queue import RegistrationStatus, WorkerStatus

    from .queue._register import Queued

__all__ = [
    "Messages",
    "ResultRow",
    "counts_table",
    "events_table",
    "fix_hint",
    "flat",
    "fold",
    "humanize",
    "next_step",
    "old_forms_note",
    "opens_table",
    "plural",
    "queued_table",
    "registration_facts",
    "results_table",
    "same_line_note",
    "span",
    "status_text",
    "statuses_table",
    "summary_table",
    "to_json",
    "workers_line",
    "workers_table",
]

_STYLE = {
    PlanOutcome.READY: "bold green",
    PlanOutcome.WAIT: "yellow",
    PlanOutcome.APPEAL: "magenta",
    PlanOutcome.BLOCKED: "red",
    PlanOutcome.UNAVAILABLE: "red",
    PlanOutcome.NO_CHANNEL: "red",
    PlanOutcome.SAME_LINE: "dim",  # checked in an earlier row
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


def plural(count: int, noun: str) -> str:
    """``"1 worker"``, ``"3 workers"``, ``"2 retries"``."""
    if count == 1:
        return f"{count} {noun}"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return f"{count} {noun[:-1]}ies"
    return f"{count} {noun}s"


def flat(text: str | None) -> str:
    """``text`` on one line (a table wraps it at spaces)."""
    return " ".join((text or "").split())


def local_time(moment: datetime, now: datetime) -> str:
    """A moment in local time: ``14:03:12``, with the date when it is not today."""
    local, today = moment.astimezone(), now.astimezone()
    if local.date() == today.date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


def to_json(items: Iterable[BulkItem]) -> list[dict[str, Any]]:
    return [item.to_dict() for item in items]


def _channel_cell(plan: RegistrationPlan, channel: Channel, now: datetime) -> Text | Short:
    window = plan.window(channel)
    if not window.eligible:
        return Text(BLANK, style="dim")
    wait = plan.ready_in(channel)
    if wait <= 0:
        return Text("now", style="green")
    return _in_and_at(wait, window.ready_at, now)


def _in_and_at(seconds: float, moment: datetime, now: datetime) -> Short:
    """``in 1m30s (14:03:12)``, or ``in 1m30s`` where that does not fit."""
    return Short(f"{humanize(seconds)} ({local_time(moment, now)})", humanize(seconds))


# An error's note is at most this long (two lines under its row at 80 columns): an API
# may answer with a whole page of text.
_NOTE_MOST = 160


def error_note(error: Exception) -> str:
    """A short account of an error for a table: its kind and its message, or the start of
    it (``--json`` has the whole message)."""
    name = type(error).__name__
    if isinstance(error, APIError):
        said = ": ".join(part for part in (error.error, error.message) if part)
        note = f"{name}: HTTP {error.status}" + (f" {said}" if said else "")
    elif isinstance(error, MissingCountryCode):
        # The problem, without the number (its row shows it) nor the fix (`fix_hint`).
        problem = str(error).rpartition("): ")[0] or str(error)
        note = f"{name}: {problem.removeprefix(repr(error.input)).strip()})"
    elif isinstance(error, InvalidPhoneNumber):
        note = f"{name}: {str(error).split(': ', 1)[-1]}"
    else:
        note = f"{name}: {str(error).split(': ', 1)[-1] if ': ' in str(error) else error}"
    attempts = getattr(error, "attempts", 0)
    if attempts > 1 and "attempts" not in note:  # unless its message says them
        note += f" ({attempts} attempts)"
    if len(note) <= _NOTE_MOST:
        return note
    return note[: _NOTE_MOST - 1].rsplit(" ", 1)[0] + " …"


def fix_hint(error: Exception) -> str | None:
    """The whole message of an error that says how to fix the command (a number with no
    country code: ``--region BR``), for a line of its own: never in a table's cell."""
    if isinstance(error, MissingCountryCode):
        return str(error)
    return None


def old_forms_note(first: PhoneNumber, more: int, *, canonical: bool | None) -> str:
    """The note on a run's numbers written in Brazil's old 8-digit form: the first, how
    many ``more``, and how they were sent (``canonical`` None: queued, the workers' choice)."""
    note = first.old_form_note or ""
    if more:
        are = "is an old form" if more == 1 else "are old forms"
        note += f"; {plural(more, 'more number')} of this run {are} too"
    if canonical is None:
        return note + (
            "; queued as written, and the workers send it so (plugz-async worker"
            " --canonical-numbers sends the form with the ninth digit)"
        )
    if canonical:
        return note + "; sent with the ninth digit (--canonical-numbers)"
    return note + "; sent as written (--canonical-numbers sends the form with the ninth digit)"


def same_line_note(same: SameLine, row: str = "row") -> str:
    """A row whose line an earlier one holds: ``the same line as row 1 (+55...), checked
    there`` (``row``: what the command calls its rows, ``number`` for ``check``)."""
    return f"the same line as {row} {same.index + 1} ({same.number.e164}), checked there"


@attrs.frozen
class ResultRow:
    """One number's row in the results table: how it is shown, and its plan or error, or
    the earlier number of the same line.

    Attributes:
        number: the number as shown (E.164, or the text given when it could not be read).
        result: the number's plan, or the error it met, or the earlier number of its line.
        scenario: the sandbox scenario it plays (the demo's table shows them).
    """

    number: str
    result: RegistrationPlan | Exception | SameLine
    scenario: str = ""


def results_table(rows: Sequence[ResultRow], now: datetime, title: str | None = None) -> Sheet:
    """One row a number: its outcome, when each channel opens, and a note (an error's
    kind and message, a reason, an appeal token)."""
    scenarios = any(row.scenario for row in rows)
    columns = [
        Column("Number", key=True),
        *([Column("Scenario", drop=1)] if scenarios else []),
        Column("Outcome", key=True),
        Column("Next"),
        # The in-app pop-up is the least used (it needs the phone in hand): it goes first.
        *(
            Column(header, drop=2 if channel is Channel.WA_OLD else 0)
            for channel, header in _HEADERS.items()
        ),
        Column("Note", note=True),
    ]
    table = Sheet(*columns, title=title)
    for row in rows:
        shown = [row.number, row.scenario] if scenarios else [row.number]
        plan = row.result
        if isinstance(plan, SameLine):
            blank = [""] * (1 + len(_HEADERS))
            outcome = Text(PlanOutcome.SAME_LINE.value, style=_STYLE[PlanOutcome.SAME_LINE])
            table.add_row(*shown, outcome, *blank, same_line_note(plan, "number"))
            continue
        if not isinstance(plan, RegistrationPlan):
            blank = [""] * (1 + len(_HEADERS))
            table.add_row(*shown, Text("error", style="bold red"), *blank, error_note(plan))
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
        f"{plural(summary.total, 'number')} in {summary.wall_time:.1f} s "
        f"({summary.rate:.0f}/s), {plural(summary.attempts, 'request')}, "
        f"{plural(summary.retries, 'retry')}"
    )


def summary_table(summary: BulkSummary) -> Sheet:
    """Counts by outcome and errors by class."""
    table = Sheet(Column("Outcome", key=True), Column("Count", justify="right", key=True))
    for outcome in PlanOutcome:
        if outcome is not PlanOutcome.ERROR and summary.outcomes[outcome.value]:
            table.add_row(
                Text(outcome.value, style=_STYLE[outcome]), str(summary.outcomes[outcome.value])
            )
    for name, count in sorted(summary.errors.items()):
        table.add_row(Text(f"error: {name}", style="red"), str(count))
    return table


def opens_table(summary: BulkSummary, now: datetime, *, this_run: bool = False) -> Sheet | None:
    """When each channel opens across the numbers: earliest, median, latest."""
    spreads = {channel: summary.opens[channel].to_dict() for channel in Channel}
    if not any(spreads.values()):
        return None
    title = "When the channels open" + (" (the numbers checked by this run)" if this_run else "")
    table = Sheet(
        Column("Channel", key=True),
        Column("Numbers", justify="right"),
        *(Column(header) for header in ("Earliest", "Median", "Latest")),
        title=title,
    )
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


def _when(moment: datetime, now: datetime) -> Short:
    return _in_and_at((moment - now).total_seconds(), moment, now)


#: The fewest columns a ``COLUMNS`` setting is taken for on a file or a pipe.
MIN_COLUMNS = 20


def console(*, stderr: bool = False) -> Console:
    """A console as wide as its terminal; on a file or a pipe, as wide as ``COLUMNS``
    says, else 160 columns (a log keeps the widest tables). On stderr, `Messages`."""
    probe = Console(stderr=stderr)
    given = os.environ.get("COLUMNS", "").strip()
    # COLUMNS=0 (``$(tput cols)`` with no terminal) or a handful would draw nothing: 160.
    width = None if probe.is_terminal or (given.isdigit() and int(given) >= MIN_COLUMNS) else 160
    kind = Messages if stderr else Console
    return kind(stderr=stderr, width=width, highlight=False, soft_wrap=stderr)


#: A command to run, at the end of a message: ``...; resume with: plugz-async bulk ...``.
_COMMAND = re.compile(r"(?<=: )plugz-async\b.*$")


def fold(message: str, width: int) -> str:
    """A message for a person at a terminal ``width`` columns wide: its words wrapped at
    spaces, never inside a word, and the command it ends with (``... with: plugz-async
    ...``) alone on the last line, indented and whole, so it is read and copied in one
    piece. A message that fits is left as it is."""
    if "\n" in message or len(message) <= width:
        return message
    found = _COMMAND.search(message)
    prose, command = (message[: found.start()], found.group()) if found else (message, "")
    lines = textwrap.wrap(
        prose.rstrip(),
        width=max(width, 20),
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join([*lines, f"    {command}"] if command else lines)


class Messages(Console):
    """The messages' console (stderr). On a file or a pipe, each message is one line, as
    written: a script reads it whole. On a terminal, a message longer than the terminal is
    wide is folded (`fold`): the terminal would otherwise break it mid-word, and the
    command that fixes things with it."""

    def print(self, *objects: Any, **options: Any) -> None:
        if self.is_terminal and len(objects) == 1 and isinstance(objects[0], str):
            objects = (fold(objects[0], self.width),)
        super().print(*objects, **options)


# -- the durable queue ----------------------------------------------------------------------

_DONE_STYLE = {"connected": "bold green", "appeal": "magenta"}


def status_text(status: RegistrationStatus) -> Text:
    """A registration's status, coloured: green connected, red another ending, yellow
    while running."""
    if status.done:
        return Text(status.status, style=_DONE_STYLE.get(status.status, "red"))
    return Text(status.status, style="cyan" if status.wants else "yellow")


def next_step(status: RegistrationStatus, now: datetime, overdue: float) -> Text | Short:
    """When a registration's next step is due: in how long, or how overdue (red)."""
    if status.next_at is None:
        return Text("")
    if status.wants:
        return Text(f"until {local_time(status.next_at, now)}")
    late = status.overdue(now, overdue)
    if late is not None:
        at = local_time(status.next_at, now)
        return Short(
            Text(f"overdue {span(late)} ({at})", "bold red"),
            Text(f"overdue {span(late)}", "bold red"),
        )
    return _in_and_at((status.next_at - now).total_seconds(), status.next_at, now)


def statuses_table(
    statuses: Sequence[RegistrationStatus],
    now: datetime,
    *,
    overdue: float,
    title: str | None = None,
    scenarios: dict[str, str] | None = None,
) -> Sheet:
    """One row a registration: number, instance, status, channel, what it waits for, when
    its next step is due (a step due longer than ``overdue`` seconds ago is overdue), its
    last error."""
    table = Sheet(
        Column("Number", key=True),
        *([Column("Scenario", drop=1)] if scenarios is not None else []),
        Column("Instance", drop=2),
        Column("Status", key=True),
        Column("Channel"),
        Column("Waits for"),
        Column("Next step"),
        Column("Error", note=True),
        title=title,
    )
    for status in statuses:
        shown = [status.number]
        if scenarios is not None:
            shown.append(scenarios.get(status.number, ""))
        table.add_row(
            *shown,
            status.instance,
            status_text(status),
            status.channel or "",
            status.wants or "",
            next_step(status, now, overdue),
            # Whole, wrapped at spaces: never cut mid-word.
            _error_text(status),
        )
    return table


def _error_text(status: RegistrationStatus) -> Text | str:
    """A registration's last error; else what its instance said while not connected."""
    if status.error:
        return Text(flat(status.error), style="red")
    if status.instance_error:
        said = f"the instance says: {status.instance_error}"
        return Text(flat(said), style="red" if status.done else "")
    return ""


def connected_text(status: RegistrationStatus) -> Text | None:
    """Whether the instance said it is connected, once the registration asked it (its last
    step done); ``None`` before."""
    error = status.instance_error
    if status.outcome is RegistrationOutcome.CONNECTED:
        return Text("yes", style="bold green")
    if status.outcome is RegistrationOutcome.NOT_CONNECTED:
        return Text(f"no: {error}" if error else "no (the instance gave no reason)", style="red")
    if status.step is RegistrationStep.CONFIRM_CONNECTED and not status.done:
        return Text(f"not yet: {error}" if error else "asking the instance", style="yellow")
    return None


def counts_table(counts: dict[str, int]) -> Sheet:
    """Registrations by status, running ones first."""
    table = Sheet(Column("Status", key=True), Column("Count", justify="right", key=True))
    for status, count in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0])):
        style = _DONE_STYLE.get(status)
        table.add_row(Text(status, style=style or ""), str(count))
    return table


def registration_facts(status: RegistrationStatus, now: datetime, overdue: float) -> Sheet:
    """Where one registration stands, a fact a line."""
    facts = Sheet(Column("", key=True, style="bold"), Column("", wrap=True), headers=False)
    rows: list[tuple[str, str | Text | Short]] = [("Number", status.number)]
    line = PhoneNumber.parse(status.number).line.e164
    if line != status.number:  # queued in the old form of a Brazilian mobile
        rows.append(("Line", f"{line} (the current form of this line)"))
    rows += [
        ("Instance", status.instance),
        ("Status", status_text(status)),
        ("Step", status.step.value),
        ("Channel", status.channel or "—"),
    ]
    if status.wants:
        rows.append(("Waits for", status.wants))
    if status.next_at is not None:
        rows.append(("Next step", next_step(status, now, overdue)))
    if status.plan is not None:
        rows.append(("Plan", status.plan.outcome.value))
    connected = connected_text(status)
    if connected is not None:
        rows.append(("Connected", connected))
    if status.appeal_token:
        rows.append(("Appeal token", status.appeal_token))
    if status.error:
        rows.append(("Error", Text(status.error, style="red")))
    rows.append(("Version", str(status.version)))
    for name, value in rows:
        facts.add_row(name, value)
    return facts


def events_table(status: RegistrationStatus, now: datetime) -> Sheet | None:
    """A registration's events, oldest first (``None`` when it has none)."""
    if not status.events:
        return None
    events = Sheet(
        Column("At", key=True),
        Column("Event", key=True),
        Column("Channel"),
        Column("What", note=True),
        title="Events",
    )
    for event in status.events:
        events.add_row(
            local_time(event.at, now),
            event.kind.value,
            "" if event.channel is None else event.channel.value,
            event.message,
        )
    return events


def _worker_state(worker: WorkerStatus) -> Text:
    if worker.alive:
        return Text("alive", style="green")
    if worker.stopped_at is not None:
        return Text("stopped", style="dim")
    return Text("gone", style="bold red")


def workers_table(workers: Sequence[WorkerStatus], now: datetime, *, title: str) -> Sheet:
    """One row a worker: its id, host, pid, state, last heartbeat, steps running."""
    table = Sheet(
        Column("Worker", key=True),
        Column("Host", drop=1),
        Column("PID", justify="right"),
        Column("State", key=True),
        Column("Last seen"),
        Column("Running", justify="right"),
        Column("Started", drop=2),
        title=title,
    )
    for worker in workers:
        seen = span((now - worker.last_seen).total_seconds())
        table.add_row(
            worker.id[:8],
            worker.host,
            "" if worker.pid is None else str(worker.pid),
            _worker_state(worker),
            Short(f"{seen} ago ({local_time(worker.last_seen, now)})", f"{seen} ago"),
            f"{worker.running}/{worker.concurrency or '?'}",
            "" if worker.started_at is None else local_time(worker.started_at, now),
        )
    return table


def workers_line(workers: Sequence[WorkerStatus], now: datetime) -> tuple[str, bool]:
    """One line on the queue's workers, and whether any is alive."""
    alive = [w for w in workers if w.alive]
    if alive:
        running = sum(w.running for w in alive)
        return f"{plural(len(alive), 'worker')} alive, {plural(running, 'step')} running", True
    if not workers:
        return "no worker has run on this queue (in the last day): start plugz-async worker", False
    last = max(w.last_seen for w in workers)
    ago = span((now - last).total_seconds())
    return f"no worker alive: none seen for {ago} (start plugz-async worker)", False


def queued_table(results: Sequence[Queued], *, lines: bool) -> Sheet:
    """What ``queue register`` did with each row: queued, already queued, or refused
    (and why); with the row's line in its file when ``lines``."""
    table = Sheet(
        *([Column("Line", key=True)] if lines else []),
        Column("Number", key=True),
        Column("Instance", drop=1),
        Column("Status", key=True),
        Column("Note", note=True),
        title="Queued",
    )
    for result in results:
        shown = [str(result.row.line)] if lines else []
        status = result.status
        if status is None:
            error = result.error or Exception("not queued")
            refused = Text("refused", style="bold red")
            table.add_row(*shown, result.row.text, result.row.instance or "", refused, _note(error))
            continue
        if result.error is not None:
            note = f"not queued: {result.error}"
        elif result.new:
            note = "queued"
        else:
            note = "already queued"
        if result.other_form:
            note += f" as {status.number}, the same line"
        table.add_row(*shown, status.number, status.instance, status_text(status), note)
    return table


def _note(error: Exception) -> str:
    if isinstance(error, InvalidPhoneNumber):
        return error_note(error)
    return flat(f"{type(error).__name__}: {error}")
