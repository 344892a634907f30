"""``plugz-async queue register``: queue numbers, or the rows of a numbers file (an
instance a row), each reported with its line; the rows that cannot be queued are said
and the others queued."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from plugz_async._bulk._input import name_of
from plugz_async._bulk._items import BulkRow
from plugz_async._config import ENV_INSTANCE_ID
from plugz_async._errors import (
    ConfigurationError,
    InvalidArgument,
    InvalidPhoneNumber,
    RegistrationStateError,
    UnknownRegistrationError,
)
from plugz_async.cli._app import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    App,
    CommandFailed,
    OldForms,
)
from plugz_async.cli._numbers import NumbersFile, open_numbers
from plugz_async.cli._render import queued_table

from ._redis import RedisTarget, number_of, open_queue, redis_errors, redis_target

if TYPE_CHECKING:
    from plugz_async.queue import RegistrationQueue, RegistrationStatus

__all__ = ["INSTANCE_COLUMNS", "Queued", "RowToQueue", "register"]

# A numbers file's columns that name the instance of a row (the first found is used).
INSTANCE_COLUMNS = ("instance", "instance_id")


@attrs.frozen
class RowToQueue:
    """One number to queue: where it was read, the number as given, its instance."""

    line: int | None
    text: str
    instance: str | None


@attrs.frozen
class Queued:
    """How queuing one row went: its registration (new or already there), or the error."""

    row: RowToQueue
    status: RegistrationStatus | None = None
    new: bool = False
    error: Exception | None = None
    #: Queued before in another form of the same line (Brazil's ninth digit).
    other_form: bool = False

    def to_dict(self) -> dict[str, Any]:
        status = self.status
        return {
            "line": self.row.line,
            "input": self.row.text,
            "number": None if status is None else status.number,
            "same_line_as_queued": self.other_form,
            "instance": status.instance if status is not None else self.row.instance,
            "queued": status is not None and self.error is None,
            "new": self.new,
            "status": None if status is None else status.status,
            "error": None
            if self.error is None
            else {"type": type(self.error).__name__, "message": str(self.error)},
        }


# -- the rows --------------------------------------------------------------------------------


def _is_file(inputs: Sequence[str]) -> bool:
    """One argument that is a file: ``-``, a path that is there and is no folder (a pipe
    too, such as the shell's ``<(command)``), or a name ending as a numbers file does."""
    if len(inputs) != 1:
        return False
    text = inputs[0]
    path = Path(text)
    there = path.exists() and not path.is_dir()
    return text == "-" or there or text.lower().endswith((".csv", ".txt", ".tsv"))


def _file_rows(app: App, path: str, default: str | None) -> Iterator[RowToQueue]:
    """The rows of a numbers file, each with its line; the header is judged at once (and,
    with no region, every number: one without a country code is refused).

    Raises:
        CommandFailed: the file cannot be read, has no column of numbers, or names no
            instance while no default is given (exit 2, before anything is written).
    """
    try:
        numbers = open_numbers(path, region=app.region, column=app.args.column)
    except InvalidArgument as error:
        raise CommandFailed(str(error), EXIT_USAGE) from None
    if numbers.empty:
        raise CommandFailed(f"{numbers.name} has no numbers to queue", EXIT_USAGE)
    if default is None and not numbers.columns & set(INSTANCE_COLUMNS):
        raise CommandFailed(
            f"{numbers.name} names no instance: give it an 'instance' column, or give "
            f"--instance (or set {ENV_INSTANCE_ID}) for every row",
            EXIT_USAGE,
        )
    if numbers.note is not None:
        app.err.print(f"{PROG}: {numbers.note}", markup=False)
    if "instance_token" in numbers.columns:
        app.err.print(
            f"{PROG}: {numbers.name} has an instance_token column: ignored (tokens stay with "
            "the workers: plugz-async worker --instances)",
            markup=False,
        )
    return _rows_with_lines(numbers, default)


def _rows_with_lines(numbers: NumbersFile, default: str | None) -> Iterator[RowToQueue]:
    for row in numbers.rows:
        yield _row(row, numbers.lines.line, default)


def _row(row: BulkRow, line: int, default: str | None) -> RowToQueue:
    given = row.given
    number = row.number if isinstance(row.number, str) else row.number.e164
    if not isinstance(given, dict):
        return RowToQueue(line, number, default)
    # The number as the row gives it (a row that fails as a BulkRow, say for an
    # instance_id without its token, still names its number, from its column of numbers).
    cells = (str(given.get(column) or "").strip() for column in INSTANCE_COLUMNS)
    instance = next((cell for cell in cells if cell), "") or default
    return RowToQueue(line, number, instance)


def _number_rows(app: App, inputs: Sequence[str], default: str | None) -> list[RowToQueue]:
    """The numbers of the command line, all checked before anything is written."""
    if default is None:
        raise CommandFailed(
            f"name the instance to register on: --instance ID (or set {ENV_INSTANCE_ID})",
            EXIT_USAGE,
        )
    phones = [number_of(app, text) for text in inputs]
    if len({phone.line for phone in phones}) > 1:  # two forms of one line are one number
        raise CommandFailed(
            f"instance {default} registers one number at a time: give a file with an "
            "instance a row to queue several numbers",
            EXIT_USAGE,
        )
    return [RowToQueue(None, text, default) for text in inputs]


# -- queuing ---------------------------------------------------------------------------------


async def _queue_one(
    registrations: RegistrationQueue,
    row: RowToQueue,
    *,
    restart: bool = False,
    old_forms: OldForms | None = None,
) -> Queued:
    try:
        phone = registrations.parse_number(row.text)
    except InvalidPhoneNumber as error:
        return Queued(row, error=error)
    if old_forms is not None:
        old_forms.see(phone)
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
    other_form = status.number != phone.e164
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
            other_form=other_form,
        )
    return Queued(row, status=status, new=new, other_form=other_form)


async def register(app: App) -> int:
    args = app.args
    planner = app.planner()
    target = redis_target(app)
    default = (args.instance or os.environ.get(ENV_INSTANCE_ID, "")).strip() or None
    from_file = _is_file(args.inputs)
    if args.column is not None and not from_file:
        raise CommandFailed("--column names a column of a FILE: give one file", EXIT_USAGE)
    rows: Iterable[RowToQueue] = (
        _file_rows(app, args.inputs[0], default)
        if from_file
        else _number_rows(app, args.inputs, default)
    )
    results: list[Queued] = []
    old_forms = OldForms(queued=True)
    with redis_errors(target):
        async with open_queue(app, target, planner=planner) as registrations:
            for row in rows:
                queued = await _queue_one(
                    registrations, row, restart=args.restart, old_forms=old_forms
                )
                results.append(queued)
    _report(app, target, results, from_file=from_file)
    old_forms.say(app)
    refused = [r for r in results if r.error is not None]
    if refused:
        where = f"{name_of(args.inputs[0])}: " if from_file else ""
        for result in refused:
            at = f"line {result.row.line}: " if result.row.line is not None else ""
            said = f"{where}{at}{result.row.text!r} not queued"
            app.err.print(app.redact(f"{PROG}: {said}: {result.error}"), markup=False)
        return EXIT_INCOMPLETE
    return EXIT_OK


def _report(app: App, target: RedisTarget, results: Sequence[Queued], *, from_file: bool) -> None:
    """The rows queued (a table, or JSON), and the one line that counts them."""
    refused = sum(r.error is not None for r in results)
    queued = len(results) - refused
    if app.args.json:
        rows = [r.to_dict() for r in results]
        app.print_json({"queue": target.queue, "queued": queued, "refused": refused, "rows": rows})
        return
    app.out.print(queued_table(results, lines=from_file))
    app.say(
        f"{queued} queued on {target.queue!r}"
        + (f", {refused} refused" if refused else "")
        + ". Workers run them (plugz-async worker); follow them with: "
        + target.command("queue", "status")
    )
