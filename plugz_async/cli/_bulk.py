"""``plugz-async bulk``: a file of numbers into a results file, resumable at any moment."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import attrs
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from plugz_async._bulk._input import Header, name_of
from plugz_async._bulk._items import FINAL_ERROR_NAMES, BulkItem, BulkRow, number_in
from plugz_async._bulk._results import ResultsFile, record_input
from plugz_async._bulk._summary import BulkSummary
from plugz_async._errors import (
    APIError,
    AuthenticationError,
    InstanceNotFoundError,
    InvalidArgument,
    PlugzError,
)
from plugz_async._models import Channel
from plugz_async._phone import PhoneNumber
from plugz_async._planner import RegistrationPlanner

from ._app import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    App,
    CommandFailed,
    OldForms,
    column_option,
    connection_options,
    exit_code_for,
    positive,
    proxy_secrets,
)
from ._explain import counts_line
from ._numbers import NumbersFile, open_numbers
from ._render import opens_table, plural, summary_line, summary_table

__all__ = ["add_bulk", "bulk", "resume_command"]


def add_bulk(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "bulk",
        description="Check every row of INPUT (a CSV with a 'number' column, or 'ddi' and "
        "'phone', or the column --column names, and optionally 'instance_id' and "
        "'instance_token'; or one number per line; "
        "'-' reads standard input). Each result is appended to --out and flushed at once; "
        "--resume skips the rows already there, so a run killed at any moment loses nothing.",
    )
    parser.add_argument("input", metavar="INPUT")
    column_option(parser)
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="the results file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on with --out: keep its final records, check every other row again",
    )
    parser.add_argument(
        "--format",
        choices=["jsonl", "csv"],
        help="of --out; default: the file's own when resuming, else csv for a .csv name, "
        "else jsonl",
    )
    parser.add_argument("--concurrency", type=int, default=32, metavar="N", help="default 32")
    parser.add_argument("--rate", type=positive, metavar="R", help="requests a second at most")
    parser.add_argument(
        "--json-summary", action="store_true", help="print the summary as JSON for programs"
    )
    connection_options(parser)
    return parser


# The options of a bulk run that a resume must repeat (secrets never: they stay in the
# environment, or must be given again).
_REPEATED = (
    ("concurrency", "--concurrency", 32),
    ("rate", "--rate", None),
    ("timeout", "--timeout", 10.0),
    ("attempts", "--attempts", 3),
    ("base_url", "--base-url", None),
    ("instance_id", "--instance-id", None),
    ("region", "--region", None),
    ("column", "--column", None),
)


def _same_file(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:  # one of them does not exist (yet)
        return False


def is_refusal(error: BaseException | None) -> bool:
    """A refused credential or an unknown instance."""
    return isinstance(error, (AuthenticationError, InstanceNotFoundError))


def resume_command(args: argparse.Namespace) -> str:
    """The command that resumes this bulk run: the same input, file and options."""
    words = [PROG, "bulk", args.input, "--out", str(args.out), "--resume"]
    for name, flag, default in _REPEATED:
        value = getattr(args, name)
        if value is not None and value != default:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if tuple(args.prefer) != (Channel.SMS, Channel.VOICE):
        words += ["--prefer", ",".join(c.value for c in args.prefer)]
    if args.allow_wa_old:
        words.append("--allow-wa-old")
    if args.canonical_numbers:
        words.append("--canonical-numbers")
    if args.sandbox:
        words.append("--sandbox")
    if args.json_summary:
        words.append("--json-summary")
    proxy = args.proxy
    if proxy and not proxy_secrets(proxy):
        words += ["--proxy", proxy]
    command = shlex.join(words)
    secret_flags = [
        f
        for f, v in (
            ("--instance-token", args.instance_token),
            ("--client-token", args.client_token),
            ("--proxy", args.proxy and proxy_secrets(args.proxy)),
        )
        if v
    ]
    if secret_flags:
        command += f"  (and {' '.join(secret_flags)} again)"
    return command


class _Bar:
    """The progress of a run on stderr (none in a log file, or with ``--json-summary``).

    By rows when their count is known (the file was read through first: no region); by
    the file's bytes otherwise, so that it is read only once: a row counts its bytes (its
    line, and the blank or comment lines before it) once it is checked, or at once when
    a resume skips it, which keeps the bar and its ETA honest even when the rows' lengths
    vary. Standard input or a pipe (read only once): by rows, with no total.
    """

    def __init__(self, app: App, numbers: NumbersFile, done: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[rows]}"),
            TextColumn("{task.fields[rate]}/s"),
            TimeRemainingColumn(),
            console=app.err,
            disable=app.args.json_summary or not app.err.is_terminal,
        )
        self._numbers = numbers
        self._by_bytes = numbers.total is None and numbers.size is not None
        self._total = numbers.size if self._by_bytes else numbers.total
        self._checked = done
        self._sizes: dict[int, int] = {}  # a row read and not checked yet: its bytes
        self._task = self.progress.add_task(
            "", total=self._total, completed=0 if self._by_bytes else done, rows="", rate="0"
        )
        self._show(advance=0)

    def rows(self, done: set[str]) -> Iterator[BulkRow]:
        """The file's rows to check (the ones not ``done``), each noting its bytes."""
        lines, read = self._numbers.lines, 0
        for row in self._numbers.rows:
            size, read = lines.bytes - read, lines.bytes
            if row.key in done:
                self._show(advance=size if self._by_bytes else 0)
                continue
            self._sizes[row.index or 0] = size
            yield row

    def checked(self, item: BulkItem, summary: BulkSummary) -> None:
        self._checked += 1
        size = self._sizes.pop(item.index, 0)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items()))
        self._show(advance=size if self._by_bytes else 1, description=counts, rate=summary.rate)

    def finish(self) -> None:
        """The whole file read and checked (what the bytes missed: the last blank lines)."""
        if self._by_bytes:
            self.progress.update(self._task, completed=self._total)

    def _show(self, *, advance: int, description: str | None = None, rate: float = 0.0) -> None:
        rows = f"{self._checked}" + (
            f"/{self._total}" if self._total is not None and not self._by_bytes else " rows"
        )
        fields: dict[str, Any] = {"rows": rows, "rate": f"{rate:.0f}"}
        if description is not None:
            fields["description"] = description
        self.progress.update(self._task, advance=advance, **fields)


def _open_input(app: App) -> tuple[ResultsFile, NumbersFile]:
    """The results file and the numbers file, both checked before anything is written:
    the input's header is judged at once (standard input's too), and, with no region,
    every row's country code, and its keys are never repeated.

    Raises:
        CommandFailed: either cannot be used (exit 2; a number without a country code
            too: nothing sent, nothing written).
    """
    args = app.args
    try:
        results = ResultsFile(args.out, format=args.format)
        results.check()
        if args.input != "-" and _same_file(Path(args.input), args.out):
            raise InvalidArgument("--out is INPUT itself: give another file for the results")
        numbers = open_numbers(args.input, region=app.region, keys=True, column=args.column)
        if numbers.empty:
            raise InvalidArgument(f"{numbers.name} has no numbers to check")
    except InvalidArgument as exc:  # MissingCountryCode too
        raise CommandFailed(str(exc), EXIT_USAGE) from None
    if numbers.note is not None:
        app.err.print(f"{PROG}: {numbers.note}", markup=False)
    return results, numbers


def _read_alike(
    header: Header | None, region: str | None, out: Path
) -> Callable[[Mapping[str, Any]], None] | None:
    """A check of each record a resume keeps: that its number is the one this run reads
    from the record's row (its ``input``, the row's cells). A results file written with
    ``--column mobile`` and resumed without it would otherwise get its other rows from
    another column. ``None`` for an input of one number a line (no column to mix up).

    The check raises:
        InvalidArgument: a record's number was read from another column (it names it).
    """
    if header is None:
        return None

    def read(cells: Mapping[str, Any]) -> str | None:
        text = number_in(cells)
        try:
            return None if text is None else PhoneNumber.parse(text, default_region=region).e164
        except InvalidArgument:
            return None

    def check(record: Mapping[str, Any]) -> None:
        given, number = record_input(record)
        if number is None or not isinstance(given, Mapping) or read(header.cells(given)) == number:
            return  # an impossible number (no number to compare), a line, or the same column
        now = "columns 'ddi' and 'phone'" if header.number is None else f"column {header.number!r}"
        found = next((c for c, v in given.items() if read({"number": v}) == number), None)
        if found is None:
            raise InvalidArgument(
                f"{out} holds numbers that this run does not read from their rows (row "
                f"{record.get('key')}: {number}, not in {now}): resume with the --column it "
                "was written with"
            )
        raise InvalidArgument(
            f"{out} was written from column {found!r} (--column {found}), and this run "
            f"reads {now}: resume with --column {found}"
        )

    return check


@attrs.define
class _Checked:
    """How a run went: its summary, the rows kept from the results file, and what
    stopped it early, if anything did."""

    summary: BulkSummary
    done: set[str]
    stopped: PlugzError | None = None
    refused: BulkItem | None = None  # the first row of an instance of its own refused
    old_forms: OldForms = attrs.field(factory=OldForms)


async def _check(
    app: App,
    results: ResultsFile,
    numbers: NumbersFile,
    planner: RegistrationPlanner,
    resume: str,
) -> _Checked:
    """Check the rows not done yet, each result written at once (``resume``: the command
    that goes on, said if the run is interrupted)."""
    args = app.args
    try:
        async with AsyncExitStack() as stack:
            client = await app.open_client(stack)  # missing credentials: no file made
            try:
                check = _read_alike(numbers.header, app.region, args.out)
                done = results.open(resume=args.resume, check=check)
            except InvalidArgument as exc:
                raise CommandFailed(str(exc), EXIT_USAGE) from None
            app.resume_hint = f"results so far are in {args.out}; resume with: {resume}"
            bar = _Bar(app, numbers, len(done))
            run = client.check_many(
                bar.rows(done),
                concurrency=args.concurrency,
                max_rate=args.rate,
                planner=planner,
                # The lines the kept records checked: a row left of one is not sent again.
                seen_lines=results.seen_lines,
            )
            await stack.enter_async_context(run)
            checked = _Checked(run.summary, done)
            with bar.progress:
                try:
                    async for item in run:
                        results.write(item)
                        checked.old_forms.see(item.number, same_line=item.same_line_as)
                        if checked.refused is None and item.instance_id and is_refusal(item.error):
                            checked.refused = item
                        bar.checked(item, run.summary)
                    bar.finish()
                except PlugzError as error:  # a run-level error: the run stopped early
                    checked.stopped = error
    finally:
        results.close()
    app.resume_hint = None
    return checked


async def bulk(app: App) -> int:
    args = app.args
    if args.concurrency < 1:
        raise CommandFailed("--concurrency must be at least 1", EXIT_USAGE)
    planner = app.planner()
    results, numbers = _open_input(app)
    resume = resume_command(args)
    checked = await _check(app, results, numbers, planner, resume)
    summary, done = checked.summary, checked.done
    whole = BulkSummary(
        total=len(done) + summary.total,
        outcomes=results.kept + summary.outcomes,
        errors=results.kept_errors + summary.errors,
        pending=summary.pending,
        stopped=summary.stopped,
    )
    if args.json_summary:
        _report_json(app, summary, whole, results, skipped=len(done))
    elif whole.total:  # a run stopped before its first row has nothing to show
        _report(app, summary, whole, skipped=len(done))
    checked.old_forms.say(app)
    return _ending(app, checked, whole, resume)


def _report_json(
    app: App, summary: BulkSummary, whole: BulkSummary, results: ResultsFile, *, skipped: int
) -> None:
    """The run's summary for programs: this run's, and the whole file's."""
    app.print_json(
        {
            **summary.to_dict(),
            "skipped": skipped,
            "redone": results.dropped,
            "out": str(app.args.out),
            "file": {
                "records": whole.total,
                "outcomes": dict(whole.outcomes),
                "errors": dict(whole.errors),
            },
        }
    )


def _report(app: App, summary: BulkSummary, whole: BulkSummary, *, skipped: int) -> None:
    """The run's summary for people: its line, the file's counts, when channels open."""
    out = app.args.out
    app.out.print(summary_line(summary), markup=False)
    if skipped:
        app.out.print(
            f"{out} now holds {whole.total} records: {summary.total} added by this "
            f"run, {skipped} already there.",
            markup=False,
        )
    app.out.print(summary_table(whole))
    opens = opens_table(summary, app.clock.now(), this_run=bool(skipped))
    if opens is not None:
        app.out.print()  # the tables have no borders: a blank line between them
        app.out.print(opens)
    app.out.print()
    app.say(f"Results in {out}.")


def _ending(app: App, checked: _Checked, whole: BulkSummary, resume: str) -> int:
    """What is left to say on stderr, and the exit code: a run stopped early, the rows of
    an instance refused, the rows to check again."""
    summary, stopped, refused = checked.summary, checked.stopped, checked.refused
    if stopped is not None:
        app.fail_line(stopped)
        written = plural(summary.total, "row")
        app.err.print(f"{written} written; resume with: {resume}", markup=False)
        return exit_code_for(stopped)
    if whole.total == 0:
        raise CommandFailed(f"{name_of(app.args.input)} has no numbers to check", EXIT_USAGE)
    if refused is not None and isinstance(refused.error, APIError):
        refusal = refused.error
        app.err.print(
            f"{PROG}: the rows of instance {refused.instance_id} were refused "
            f"({type(refusal).__name__}: HTTP {refusal.status}): check their instance_id and "
            "instance_token columns",
            markup=False,
        )
    if summary.pending:
        pending = {
            name: count for name, count in summary.errors.items() if name not in FINAL_ERROR_NAMES
        }
        app.err.print(
            f"{PROG}: {plural(summary.pending, 'row')} ended in an error that may pass "
            f"({counts_line(pending)}); check them again with: {resume}",
            markup=False,
        )
        return EXIT_INCOMPLETE
    return EXIT_OK
