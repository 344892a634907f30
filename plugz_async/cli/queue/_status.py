"""``plugz-async queue``: the producer's side of the durable queue, from the shell.

``queue register`` queues numbers (or a file of numbers, an instance a row), ``queue
status`` shows where they stand, and ``queue code``, ``queue captcha`` and ``queue pin``
give a registration what it waits for. Workers (``plugz-async worker``) run them.
What every queue command shares (the Redis options and errors) is in ``_redis``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from rich.table import Table
from rich.text import Text

from plugz_async._arguments import InputKind
from plugz_async._config import ENV_INSTANCE_ID
from plugz_async._errors import (
    ConfigurationError,
    InvalidArgument,
    InvalidPhoneNumber,
    RegistrationStateError,
    UnknownRegistrationError,
)
from plugz_async._input import count_rows, lines_of, name_of, read_rows

from ._app import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    App,
    CommandFailed,
    non_negative,
    region_option,
)
from ._redis import (
    open_queue,
    planning_options,
    redis_errors,
    redis_options,
    redis_target,
    require_queue_extra,
)
from ._render import error_note, humanize, local_time, span

if TYPE_CHECKING:
    from plugz_async.queue import RegistrationQueue, RegistrationStatus, WorkerStatus

# The queue's own default (plugz_async.queue._api.OVERDUE_AFTER; a test keeps them equal):
# the command's parser is built without the queue extra.
OVERDUE_AFTER = 30.0

__all__ = [
    "add_queue",
    "counts_table",
    "queue",
    "status_text",
    "statuses_table",
]

# A numbers file's columns that name the instance of a row (the first found is used).
INSTANCE_COLUMNS = ("instance", "instance_id")


# -- the command --------------------------------------------------------------------------------


def add_queue(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "queue",
        help="durable registrations: queue numbers, see where they stand, give codes",
        description="The producer's side of the durable queue (Redis; the 'queue' extra). "
        "Workers ('plugz-async worker') run the registrations; these commands queue them, "
        "show them, and give them the code, captcha text or PIN they wait for.",
        epilog="Exit codes: 0 done; 2 usage (a bad argument or file, an impossible number, a "
        "code of the wrong form, a number the queue has no registration of, missing "
        "Redis URL or extra); 4 Redis cannot be reached; 7 'register': some rows were not "
        "queued, 'code'/'captcha'/'pin': the registration does not wait for it now.",
    )
    subcommands = parser.add_subparsers(dest="queue_command", required=True, metavar="SUBCOMMAND")

    register = subcommands.add_parser(
        "register",
        help="queue numbers (or a file: a number and an instance a row)",
        description="Queue the registration of each NUMBER on --instance, or of each row of "
        "FILE: a CSV with a 'number' column (or 'ddi' and 'phone') and an 'instance' column "
        "(or 'instance_id'; empty cells take --instance), or one number a line; '-' reads "
        "standard input. One argument that is a file (or ends in .csv, .txt or .tsv) is "
        "read as FILE. An instance registers one number at a time. A row that cannot be "
        "queued (an impossible number, no instance, a busy instance) is reported with its "
        "line, and the others are queued. A number already queued and unfinished is left "
        "as it is.",
    )
    register.add_argument("inputs", nargs="+", metavar="NUMBER|FILE")
    register.add_argument(
        "--instance",
        metavar="ID",
        help=f"the instance to register on (default: {ENV_INSTANCE_ID}); in a file, for the "
        "rows that name none",
    )
    register.add_argument(
        "--restart",
        action="store_true",
        help="start again the registrations of these numbers that ended (failed, no_code...); "
        "without it an ended one is left as it is, and the row says so",
    )
    register.add_argument("--json", action="store_true", help="print JSON instead of a table")
    region_option(register)
    planning_options(register)
    redis_options(register)

    status = subcommands.add_parser(
        "status",
        help="every registration and the counts by status, or one registration's events",
        description="Without NUMBER: a table of every registration (oldest first) and the "
        "counts by status. With NUMBER: where its registration stands, and its events.",
    )
    status.add_argument("number", nargs="?", metavar="NUMBER")
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    overdue_option(status)
    region_option(status)
    redis_options(status)

    listing = subcommands.add_parser(
        "list",
        help="the registrations, with filters: --stuck, --status",
        description="A table of the registrations (oldest first). --stuck: only those whose "
        "next step is overdue (due longer than --overdue seconds ago, waiting for no input): "
        "no worker runs the queue, or all are busy.",
    )
    listing.add_argument("--stuck", action="store_true", help="only the overdue ones")
    listing.add_argument("--status", metavar="STATUS", help="only those of this status")
    overdue_option(listing)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    redis_options(listing)

    cancel = subcommands.add_parser(
        "cancel",
        help="cancel a registration: no further code request",
        description="Cancel the registration of NUMBER: no further code request is sent, and "
        "it ends 'cancelled'. With a code request in flight, that request ends first (its "
        "answer is kept), then a worker ends the registration. Exit 7 when it has ended "
        "already.",
    )
    cancel.add_argument("number", metavar="NUMBER")
    cancel.add_argument("--json", action="store_true", help="print the status as JSON")
    region_option(cancel)
    redis_options(cancel)

    workers = subcommands.add_parser(
        "workers",
        help="the queue's workers: host, pid, last heartbeat, steps running",
        description="Every worker seen on the queue in the last day, last seen first: alive "
        "(a recent heartbeat), stopped (it said so) or gone (its heartbeat stopped: it died, "
        "or lost Redis).",
    )
    workers.add_argument("--json", action="store_true", help="print JSON instead of a table")
    redis_options(workers)

    prune = subcommands.add_parser(
        "prune",
        help="forget the registrations that ended long ago",
        description="Forget the registrations that ended more than --older-than seconds ago "
        "(their state and events leave Redis; unfinished ones are never touched). Ended "
        "registrations stay in Redis until pruned: run it from a periodic job.",
    )
    prune.add_argument(
        "--older-than",
        type=non_negative,
        required=True,
        metavar="SECONDS",
        help="how long ago a registration must have ended (86400: a day)",
    )
    prune.add_argument("--json", action="store_true", help="print JSON")
    redis_options(prune)

    for name, metavar, summary, what in (
        (
            "code",
            "CODE",
            "give a registration its code",
            "the code that came by SMS, call or pop-up (4 to 8 digits)",
        ),
        (
            "captcha",
            "TEXT",
            "give a registration the captcha's text",
            "the text of the captcha it shows (queue status NUMBER says when it waits for one)",
        ),
        (
            "pin",
            "PIN",
            "give a registration the two-step PIN",
            "the two-step verification PIN (6 digits)",
        ),
    ):
        give = subcommands.add_parser(
            name,
            help=summary,
            description=f"Give the registration of NUMBER {what}. A code may come before a "
            "worker has written that it was sent. The input is checked before anything is "
            "written. Exit 7 when the registration does not wait for it (another step, or "
            "ended).",
        )
        give.add_argument("number", metavar="NUMBER")
        if name == "pin":
            give.add_argument(
                "value",
                nargs="?",
                metavar=metavar,
                help="leave it out to type it (hidden) or pipe it on standard input: an "
                "argument shows in ps",
            )
        else:
            give.add_argument("value", metavar=metavar)
        give.add_argument("--json", action="store_true", help="print the status as JSON")
        region_option(give)
        redis_options(give)
    return parser


def overdue_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overdue",
        type=non_negative,
        default=OVERDUE_AFTER,
        metavar="SECONDS",
        help=f"a step due longer ago than this is overdue (default {OVERDUE_AFTER:g})",
    )


async def queue(app: App) -> int:
    command = app.args.queue_command
    if command == "register":
        return await _register(app)
    if command == "status":
        return await _status(app)
    if command == "list":
        return await _list(app)
    if command == "workers":
        return await _workers(app)
    if command == "cancel":
        return await _cancel(app)
    if command == "prune":
        return await _prune(app)
    return await _give(app, command)


async def _prune(app: App) -> int:
    target = redis_target(app)
    with redis_errors(target):
        async with open_queue(app, target) as registrations:
            forgotten = await registrations.prune(app.args.older_than)
    if app.args.json:
        app.print_json({"queue": target.queue, "forgotten": forgotten})
    else:
        app.out.print(
            f"Forgot {forgotten} registration{'' if forgotten == 1 else 's'} of "
            f"{target.queue!r} that ended more than {app.args.older_than:g} s ago.",
            markup=False,
        )
    return EXIT_OK


# -- register -----------------------------------------------------------------------------------


@attrs.frozen
class Row:
    """One number to queue: where it was read, the number as given, its instance."""

    line: int | None
    text: str
    instance: str | None


@attrs.frozen
class Queued:
    """How queuing one row went: its registration (new or already there), or the error."""

    row: Row
    status: RegistrationStatus | None = None
    new: bool = False
    error: Exception | None = None

    def to_dict(self) -> dict[str, Any]:
        status = self.status
        return {
            "line": self.row.line,
            "input": self.row.text,
            "number": None if status is None else status.number,
            "instance": status.instance if status is not None else self.row.instance,
            "queued": status is not None and self.error is None,
            "new": self.new,
            "status": None if status is None else status.status,
            "error": None
            if self.error is None
            else {"type": type(self.error).__name__, "message": str(self.error)},
        }


class _Counted:
    """Lines, counting how many were read: the line of the row just read."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.line = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> str:
        text = next(self._lines)
        self.line += 1
        return text


def _is_file(inputs: Sequence[str]) -> bool:
    if len(inputs) != 1:
        return False
    text = inputs[0]
    return text == "-" or Path(text).is_file() or text.lower().endswith((".csv", ".txt", ".tsv"))


def _file_rows(app: App, path: str, default: str | None) -> Iterator[Row]:
    """The rows of a numbers file, each with its line; the header is judged at once.

    Raises:
        CommandFailed: the file cannot be read, has no column of numbers, or names no
            instance while no default is given (exit 2, before anything is written).
    """
    name = name_of(path)
    if app.region is None:  # a file of national numbers is refused before any is queued
        try:
            count_rows(path)
        except InvalidArgument as error:
            raise CommandFailed(str(error), EXIT_USAGE) from None
    lines = _Counted(lines_of(path))
    try:
        source = read_rows(lines, name)
        first = next(source, None)
    except InvalidArgument as error:
        raise CommandFailed(str(error), EXIT_USAGE) from None
    if first is None:
        raise CommandFailed(f"{name} has no numbers to queue", EXIT_USAGE)
    given = first.given
    columns = set(given) if isinstance(given, dict) else set()
    if default is None and not columns & set(INSTANCE_COLUMNS):
        raise CommandFailed(
            f"{name} names no instance: give it an 'instance' column, or give --instance "
            f"(or set {ENV_INSTANCE_ID}) for every row",
            EXIT_USAGE,
        )
    if "instance_token" in columns:
        app.err.print(
            f"{PROG}: {name} has an instance_token column: ignored (tokens stay with the "
            "workers: plugz-async worker --instances)",
            markup=False,
        )
    return _rows_with_lines(first, lines.line, source, lines, default)


def _rows_with_lines(
    first: Any, first_line: int, rest: Iterator[Any], lines: _Counted, default: str | None
) -> Iterator[Row]:
    yield _row(first, first_line, default)
    for row in rest:
        yield _row(row, lines.line, default)


def _row(row: Any, line: int, default: str | None) -> Row:
    given = row.given
    if not isinstance(given, dict):
        return Row(line, str(row.number), default)

    def cell(name: str) -> str:
        return str(given.get(name) or "").strip()

    number = cell("number")
    if not number and cell("ddi") and cell("phone"):
        number = f"+{cell('ddi').lstrip('+')} {cell('phone')}"
    instance = next((cell(c) for c in INSTANCE_COLUMNS if cell(c)), "") or default
    return Row(line, number, instance)


def _number_rows(app: App, inputs: Sequence[str], default: str | None) -> list[Row]:
    """The numbers of the command line, all checked before anything is written."""
    if default is None:
        raise CommandFailed(
            f"name the instance to register on: --instance ID (or set {ENV_INSTANCE_ID})",
            EXIT_USAGE,
        )
    phones = []
    for text in inputs:
        try:
            phones.append(app.parse_number(text))
        except InvalidPhoneNumber as error:
            raise CommandFailed(str(error), EXIT_USAGE) from None
    if len({phone.e164 for phone in phones}) > 1:
        raise CommandFailed(
            f"instance {default} registers one number at a time: give a file with an "
            "instance a row to queue several numbers",
            EXIT_USAGE,
        )
    return [Row(None, text, default) for text in inputs]


async def _queue_one(
    registrations: RegistrationQueue, row: Row, *, restart: bool = False
) -> Queued:
    try:
        phone = registrations.parse_number(row.text)
    except InvalidPhoneNumber as error:
        return Queued(row, error=error)
    if not row.instance:
        return Queued(
            row,
            error=ConfigurationError(
                f"no instance: fill the row's instance, or give --instance (or {ENV_INSTANCE_ID})"
            ),
        )
    try:
        before: RegistrationStatus | None = await registrations.status(phone)
    except UnknownRegistrationError:
        before = None
    try:
        status = await registrations.register(phone, instance=row.instance, restart=restart)
    except RegistrationStateError as error:  # InstanceBusyError
        return Queued(row, error=error)
    new = before is None or before.version != status.version
    if not new and status.done:
        # Registering again leaves an ended registration as it is: say so, and count it
        # as not queued (--restart starts it again).
        return Queued(
            row,
            status=status,
            error=RegistrationStateError(
                f"its registration ended ({status.status}) and was left as it is; "
                "--restart starts it again"
            ),
        )
    return Queued(row, status=status, new=new)


async def _register(app: App) -> int:
    args = app.args
    planner = app.planner()
    target = redis_target(app)
    default = (args.instance or os.environ.get(ENV_INSTANCE_ID, "")).strip() or None
    from_file = _is_file(args.inputs)
    rows: Iterator[Row] | list[Row] = (
        _file_rows(app, args.inputs[0], default)
        if from_file
        else _number_rows(app, args.inputs, default)
    )
    results: list[Queued] = []
    with redis_errors(target):
        async with open_queue(app, target, planner=planner) as registrations:
            for row in rows:
                results.append(await _queue_one(registrations, row, restart=args.restart))
    refused = [r for r in results if r.error is not None]
    if args.json:
        app.print_json(
            {
                "queue": target.queue,
                "queued": len(results) - len(refused),
                "refused": len(refused),
                "rows": [r.to_dict() for r in results],
            }
        )
    else:
        app.out.print(_register_table(results, lines=from_file))
        app.out.print(
            f"{len(results) - len(refused)} queued on {target.queue!r}"
            + (f", {len(refused)} refused" if refused else "")
            + ". Workers run them (plugz-async worker); follow them with: plugz-async queue "
            f"status{target.queue_flag}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if refused:
        where = f"{name_of(args.inputs[0])}: " if from_file else ""
        for result in refused:
            at = f"line {result.row.line}: " if result.row.line is not None else ""
            app.err.print(
                app.redact(f"{PROG}: {where}{at}{result.row.text!r} not queued: {result.error}"),
                markup=False,
            )
        return EXIT_INCOMPLETE
    return EXIT_OK


def _register_table(results: Sequence[Queued], *, lines: bool) -> Table:
    table = Table(title="Queued", title_justify="left")
    if lines:
        table.add_column("Line", justify="right")
    for header in ("Number", "Instance", "Status", "Note"):
        table.add_column(header, no_wrap=header != "Note")
    for result in results:
        shown = [str(result.row.line)] if lines else []
        status = result.status
        if status is None:
            error = result.error or Exception("not queued")
            table.add_row(
                *shown,
                result.row.text,
                result.row.instance or "",
                Text("refused", style="bold red"),
                _note(error),
            )
            continue
        if result.error is not None:
            note = f"not queued: {result.error}"
        elif result.new:
            note = "queued"
        else:
            note = "already queued"
        table.add_row(*shown, status.number, status.instance, status_text(status), note)
    return table


def _note(error: Exception) -> str:
    if isinstance(error, InvalidPhoneNumber):
        return error_note(error)
    return _flat(f"{type(error).__name__}: {error}")


# -- status -------------------------------------------------------------------------------------

_DONE_STYLE = {"connected": "bold green", "appeal": "magenta"}


def status_text(status: RegistrationStatus) -> Text:
    """A registration's status, coloured: green connected, red another ending, yellow
    while running."""
    if status.done:
        return Text(status.status, style=_DONE_STYLE.get(status.status, "red"))
    return Text(status.status, style="cyan" if status.wants else "yellow")


def _next(status: RegistrationStatus, now: datetime, overdue: float = OVERDUE_AFTER) -> Text:
    if status.next_at is None:
        return Text("")
    if status.wants:
        return Text(f"until {local_time(status.next_at, now)}")
    late = status.overdue(now, overdue)
    if late is not None:
        return Text(f"overdue {span(late)} ({local_time(status.next_at, now)})", "bold red")
    return Text(
        f"{humanize((status.next_at - now).total_seconds())} ({local_time(status.next_at, now)})"
    )


def statuses_table(
    statuses: Sequence[RegistrationStatus],
    now: datetime,
    *,
    title: str | None = None,
    scenarios: dict[str, str] | None = None,
    overdue: float = OVERDUE_AFTER,
) -> Table:
    """One row a registration: number, instance, status, channel, what it waits for, when
    its next step is due, its last error."""
    table = Table(title=title, title_justify="left")
    table.add_column("Number", no_wrap=True)
    if scenarios is not None:
        table.add_column("Scenario", no_wrap=True)
    for header in ("Instance", "Status", "Channel", "Wants", "Next step"):
        table.add_column(header, no_wrap=True)
    table.add_column("Error")
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
            _next(status, now, overdue),
            # Whole, wrapped at spaces by the table: never cut mid-word.
            Text(_flat(status.error), style="red") if status.error else "",
        )
    return table


def _flat(text: str | None) -> str:
    """``text`` on one line (the table wraps it at spaces)."""
    return " ".join((text or "").split())


def counts_table(counts: dict[str, int]) -> Table:
    """Registrations by status, running ones first."""
    table = Table()
    table.add_column("Status")
    table.add_column("Count", justify="right")
    for status, count in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0])):
        style = _DONE_STYLE.get(status)
        table.add_row(Text(status, style=style or ""), str(count))
    return table


async def _status(app: App) -> int:
    args = app.args
    phone = None
    if args.number is not None:
        try:
            phone = app.parse_number(args.number)
        except InvalidPhoneNumber as error:
            raise CommandFailed(str(error), EXIT_USAGE) from None
    target = redis_target(app)
    with redis_errors(target):
        async with open_queue(app, target) as registrations:
            if phone is not None:
                try:
                    one = await registrations.status(phone)
                except UnknownRegistrationError as error:
                    raise CommandFailed(f"{error} (queue {target.queue!r})", EXIT_USAGE) from None
                _show_one(app, one)
                return EXIT_OK
            statuses = await registrations.statuses()
            counts = await registrations.counts()
            workers = await registrations.workers()
    now = app.clock.now()
    overdue = [s for s in statuses if s.overdue(now, args.overdue) is not None]
    if args.json:
        app.print_json(
            {
                "queue": target.queue,
                "counts": counts,
                "overdue": len(overdue),
                "workers_alive": sum(w.alive for w in workers),
                "registrations": [status.to_dict() for status in statuses],
            }
        )
        return EXIT_OK
    if not statuses:
        app.out.print(f"The queue {target.queue!r} has no registrations.", markup=False)
        return EXIT_OK
    table = statuses_table(
        statuses, now, title=f"Registrations of {target.queue!r}", overdue=args.overdue
    )
    app.out.print(table)
    app.out.print(counts_table(counts))
    _say_workers(app, workers, now, unfinished=any(not s.done for s in statuses))
    if overdue:
        app.out.print(
            f"{len(overdue)} overdue (due more than {args.overdue:g} s ago): see them with "
            f"plugz-async queue list --stuck{target.queue_flag}",
            style="bold red",
            markup=False,
            highlight=False,
        )
    return EXIT_OK


def workers_line(workers: Sequence[WorkerStatus], now: datetime) -> tuple[str, bool]:
    """One line on the queue's workers, and whether any is alive."""
    alive = [w for w in workers if w.alive]
    if alive:
        running = sum(w.running for w in alive)
        return (
            f"{len(alive)} worker{'' if len(alive) == 1 else 's'} alive, {running} step"
            f"{'' if running == 1 else 's'} running",
            True,
        )
    if not workers:
        return "no worker has run on this queue (in the last day): start plugz-async worker", False
    last = max(w.last_seen for w in workers)
    ago = span((now - last).total_seconds())
    return f"no worker alive: none seen for {ago} (start plugz-async worker)", False


def _say_workers(
    app: App, workers: Sequence[WorkerStatus], now: datetime, *, unfinished: bool
) -> None:
    line, alive = workers_line(workers, now)
    style = "green" if alive else ("bold red" if unfinished else "dim")
    app.out.print(line, style=style, markup=False, highlight=False)


async def _list(app: App) -> int:
    args = app.args
    target = redis_target(app)
    with redis_errors(target):
        async with open_queue(app, target) as registrations:
            statuses = await registrations.statuses()
            workers = await registrations.workers()
    now = app.clock.now()
    if args.stuck:
        statuses = [s for s in statuses if s.overdue(now, args.overdue) is not None]
    if args.status:
        statuses = [s for s in statuses if s.status == args.status]
    if args.json:
        app.print_json([status.to_dict() for status in statuses])
        return EXIT_OK
    what = "overdue registrations" if args.stuck else "registrations"
    if args.status:
        what += f" of status {args.status!r}"
    if not statuses:
        app.out.print(f"The queue {target.queue!r} has no {what}.", markup=False)
    else:
        title = f"The {what} of {target.queue!r}"
        app.out.print(statuses_table(statuses, now, title=title, overdue=args.overdue))
    _say_workers(app, workers, now, unfinished=bool(statuses))
    return EXIT_OK


async def _cancel(app: App) -> int:
    args = app.args
    try:
        phone = app.parse_number(args.number)
    except InvalidArgument as error:
        raise CommandFailed(str(error), EXIT_USAGE) from None
    target = redis_target(app)
    with redis_errors(target):
        async with open_queue(app, target) as registrations:
            try:
                status = await registrations.cancel(phone)
            except UnknownRegistrationError as error:
                raise CommandFailed(f"{error} (queue {target.queue!r})", EXIT_USAGE) from None
            except RegistrationStateError as error:
                raise CommandFailed(str(error), EXIT_INCOMPLETE) from None
            workers = await registrations.workers()
    if args.json:
        app.print_json(status.to_dict())
        return EXIT_OK
    if status.done:
        app.out.print(f"The registration of {status.number} is cancelled.", markup=False)
        return EXIT_OK
    line, alive = workers_line(workers, app.clock.now())
    app.out.print(
        f"Cancel asked for {status.number}: a code request is in flight; it ends first, then "
        "a worker ends the registration (no further code request). Follow it with: "
        f"plugz-async queue status {status.number}{target.queue_flag}",
        markup=False,
        highlight=False,
    )
    if not alive:
        app.err.print(f"{PROG}: {line}", markup=False, highlight=False)
    return EXIT_OK


async def _workers(app: App) -> int:
    target = redis_target(app)
    with redis_errors(target):
        async with open_queue(app, target) as registrations:
            workers = await registrations.workers()
    if app.args.json:
        app.print_json([worker.to_dict() for worker in workers])
        return EXIT_OK
    now = app.clock.now()
    if workers:
        table = Table(title=f"Workers of {target.queue!r}", title_justify="left")
        for header in ("Worker", "Host", "PID", "State", "Last seen", "Running", "Started"):
            table.add_column(header, no_wrap=True)
        for worker in workers:
            if worker.alive:
                state = Text("alive", style="green")
            elif worker.stopped_at is not None:
                state = Text("stopped", style="dim")
            else:
                state = Text("gone", style="bold red")
            seen = span((now - worker.last_seen).total_seconds())
            table.add_row(
                worker.id[:8],
                worker.host,
                "" if worker.pid is None else str(worker.pid),
                state,
                f"{seen} ago ({local_time(worker.last_seen, now)})",
                f"{worker.running}/{worker.concurrency or '?'}",
                "" if worker.started_at is None else local_time(worker.started_at, now),
            )
        app.out.print(table)
    _say_workers(app, workers, now, unfinished=False)
    return EXIT_OK


def _show_one(app: App, status: RegistrationStatus) -> None:
    if app.args.json:
        app.print_json(status.to_dict())
        return
    now = app.clock.now()
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("Number", status.number),
        ("Instance", status.instance),
        ("Status", status_text(status)),
        ("Step", status.step.value),
        ("Channel", status.channel or "—"),
    ]
    if status.wants:
        rows.append(("Waits for", status.wants))
    if status.next_at is not None:
        rows.append(("Next step", _next(status, now)))
    if status.plan is not None:
        rows.append(("Plan", status.plan.outcome.value))
    if status.appeal_token:
        rows.append(("Appeal token", status.appeal_token))
    if status.error:
        rows.append(("Error", Text(status.error, style="red")))
    rows.append(("Version", str(status.version)))
    for name, value in rows:
        facts.add_row(name, value)
    app.out.print(facts)
    if status.events:
        events = Table(title="Events", title_justify="left")
        for header in ("At", "Event", "Channel", "What"):
            events.add_column(header, no_wrap=header != "What")
        for event in status.events:
            events.add_row(
                local_time(event.at, now),
                event.kind.value,
                "" if event.channel is None else event.channel.value,
                event.message,
            )
        app.out.print(events)


# -- code, captcha, PIN -------------------------------------------------------------------------


def _read_pin(app: App) -> str:
    """The PIN typed (hidden) on a terminal, or the first line of standard input."""
    try:
        if sys.stdin.isatty():
            return getpass.getpass("Two-step verification PIN: ")
        line = sys.stdin.readline(64)
    except (EOFError, OSError):
        line = ""
    if not line.strip():
        raise CommandFailed("no PIN: give it, or pipe it on standard input", EXIT_USAGE)
    return line.strip()


async def _give(app: App, kind: str) -> int:
    args = app.args
    value = args.value if args.value is not None else _read_pin(app)
    if kind == "pin":
        app.add_secrets(value.strip())
    try:
        phone = app.parse_number(args.number)
        text = InputKind(kind).check(value)
    except InvalidArgument as error:  # nothing written, Redis not even asked
        raise CommandFailed(str(error), EXIT_USAGE) from None
    target = redis_target(app)
    require_queue_extra()
    from plugz_async.queue import RegistrationQueue

    submit = {
        "code": RegistrationQueue.submit_code,
        "captcha": RegistrationQueue.submit_captcha,
        "pin": RegistrationQueue.submit_pin,
    }[kind]
    with redis_errors(target):
        async with open_queue(app, target) as registrations:
            workers = await registrations.workers()
            try:
                status = await submit(registrations, phone, text)
            except UnknownRegistrationError as error:
                raise CommandFailed(f"{error} (queue {target.queue!r})", EXIT_USAGE) from None
            except RegistrationStateError as error:
                raise CommandFailed(
                    f"{error}; see: plugz-async queue status {phone.e164}{target.queue_flag}",
                    EXIT_INCOMPLETE,
                ) from None
    line, alive = workers_line(workers, app.clock.now())
    if not alive:
        from plugz_async.queue._store import INPUT_KEPT

        app.err.print(
            f"{PROG}: accepted, but {line}; it is kept for {span(INPUT_KEPT)} and used "
            "when a worker runs the step",
            markup=False,
            highlight=False,
        )
    if args.json:
        app.print_json(status.to_dict())
    else:
        what = InputKind(kind).label
        app.out.print(
            f"{what} given to the registration of {status.number} (now {status.status})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    return EXIT_OK
