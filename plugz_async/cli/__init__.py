"""``plugz-async``: check numbers, plan and wait for code channels, run the sandbox.

Exit codes:

==== =================================================================
0    done (for ``check``: every number was checked)
1    an unexpected error (a bug: please report it)
2    usage: bad arguments, an invalid number, missing credentials
3    the API answered with an error (or an answer that could not be read)
4    the API could not be reached (refused, dropped, timed out)
5    ``plan --wait``: the plan has no channel to wait for
6    ``register``: the registration ended without connecting (banned, no code...)
7    ``bulk``: rows ended in an error that may pass; ``--resume`` checks them again
130  interrupted (Ctrl-C)
==== =================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import io
import itertools
import logging
import os
import select
import shlex
import sys
import tempfile
import textwrap
import traceback
from collections.abc import Collection, Iterator, Sequence
from contextlib import AsyncExitStack
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from plugz_async._client import ENV_BASE_URL, PlugzClient
from plugz_async._clock import Clock, SystemClock
from plugz_async._errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    InstanceNotFoundError,
    InvalidArgument,
    InvalidPhoneNumber,
    OutageError,
    PlugzError,
    ResponseDecodeError,
    TransportError,
)
from plugz_async._flow import EventKind, RegistrationEvent, RegistrationOutcome
from plugz_async._items import FINAL_ERROR_NAMES, BulkItem, BulkRow
from plugz_async._models import Channel
from plugz_async._phone import PhoneNumber
from plugz_async._planner import RegistrationPlanner
from plugz_async._redact import Redactor
from plugz_async._results import ResultsFile
from plugz_async._retry import RetryPolicy
from plugz_async._summary import BulkSummary
from plugz_async._version import __version__
from plugz_async.sandbox import (
    CAPTCHA_TEXT,
    CONFIRMATION_CODE,
    PIN,
    SandboxConfig,
    running,
    scenario_table,
    serve,
)

from ._explain import Credentials, counts_line, explain, is_run_error
from ._render import (
    console,
    humanize,
    local_time,
    opens_table,
    results_table,
    summary_line,
    summary_table,
    to_json,
)

__all__ = [
    "EXIT_API",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_CONNECTED",
    "EXIT_NO_CHANNEL",
    "EXIT_OK",
    "EXIT_UNEXPECTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "main",
    "run",
]

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_UNREACHABLE = 4
EXIT_NO_CHANNEL = 5
EXIT_NOT_CONNECTED = 6
EXIT_INCOMPLETE = 7
EXIT_INTERRUPTED = 130

PROG = "plugz-async"
logger = logging.getLogger("plugz_async.cli")


def exit_code_for(error: BaseException) -> int:
    """The exit code an error means."""
    if isinstance(error, (InvalidArgument, ConfigurationError)):
        return EXIT_USAGE
    if isinstance(error, (TransportError, OutageError)):
        return EXIT_UNREACHABLE
    if isinstance(error, (APIError, ResponseDecodeError)):
        return EXIT_API
    return EXIT_UNEXPECTED


class _Fail(Exception):
    """A one-line failure of the command itself, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# -- the parser -------------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _channels(text: str) -> tuple[Channel, ...]:
    try:
        return tuple(Channel(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: channels are sms, voice and wa_old, comma-separated"
        ) from None


def _connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "credentials",
        "Taken from these flags, else from PLUGZ_INSTANCE_ID, PLUGZ_INSTANCE_TOKEN, "
        "PLUGZ_CLIENT_TOKEN and PLUGZ_BASE_URL (prefer the variables: flags show in ps).",
    )
    group.add_argument("--instance-id", metavar="ID")
    group.add_argument("--instance-token", metavar="TOKEN")
    group.add_argument("--client-token", metavar="TOKEN")
    group.add_argument("--base-url", metavar="URL", help="default: https://api.plugzapi.com.br")
    group.add_argument(
        "--sandbox",
        action="store_true",
        help="start the built-in sandbox and talk to it instead (no account needed)",
    )
    tuning = parser.add_argument_group("requests and planning")
    tuning.add_argument(
        "--timeout", type=_positive, default=30.0, metavar="S", help="per attempt (default 30)"
    )
    tuning.add_argument(
        "--attempts", type=int, default=3, metavar="N", help="requests per number (default 3)"
    )
    tuning.add_argument(
        "--prefer",
        type=_channels,
        default=(Channel.SMS, Channel.VOICE),
        metavar="LIST",
        help="channels in order of preference (default: sms,voice)",
    )
    tuning.add_argument(
        "--allow-wa-old",
        action="store_true",
        help="also plan the in-app pop-up (needs the phone that holds the number, in hand)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check WhatsApp numbers for registration on PlugzAPI / Z-API and plan "
        "when each confirmation-code channel opens.",
        epilog="Exit codes: 0 ok, 1 unexpected, 2 usage, 3 API error, 4 API unreachable, "
        "5 no channel to wait for, 6 registration not connected, 7 rows to check again "
        "(bulk --resume), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check",
        help="check numbers and show when each code channel opens",
        description="Check each number with POST /mobile/registration-available and show its "
        "plan: which code channel opens when (in local time and as 'in 1m30s').",
    )
    check.add_argument("numbers", nargs="+", metavar="NUMBER")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _connection_options(check)

    plan = commands.add_parser(
        "plan",
        help="plan one number; --wait waits for its first channel",
        description="Check one number and show its plan. With --wait, count down until the "
        "first channel opens, and exit 0 when it does.",
    )
    plan.add_argument("number", metavar="NUMBER")
    plan.add_argument("--wait", action="store_true", help="wait for the first channel to open")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    _connection_options(plan)

    demo = commands.add_parser(
        "demo",
        help="the whole job on the built-in sandbox, no account needed",
        description="Start the sandbox, check a bundled list of numbers (every test scenario), "
        "show progress and a summary.",
    )
    demo.add_argument(
        "--numbers", type=Path, metavar="CSV", help="a CSV with a 'number' column instead"
    )
    demo.add_argument("--json", action="store_true", help="print JSON instead of tables")
    demo.add_argument(
        "--timeout", type=_positive, default=1.0, metavar="S", help="per attempt (default 1)"
    )

    bulk = commands.add_parser(
        "bulk",
        help="check a file of numbers into a results file, resumable",
        description="Check every row of INPUT (a CSV with a 'number' column, or 'ddi' and "
        "'phone', and optionally 'instance_id' and 'instance_token'; or one number per line; "
        "'-' reads standard input). Each result is appended to --out and flushed at once; "
        "--resume skips the rows already there, so a run killed at any moment loses nothing.",
    )
    bulk.add_argument("input", metavar="INPUT")
    bulk.add_argument("--out", required=True, type=Path, metavar="FILE", help="the results file")
    bulk.add_argument(
        "--resume",
        action="store_true",
        help="go on with --out: keep its final records, check every other row again",
    )
    bulk.add_argument(
        "--format",
        choices=["jsonl", "csv"],
        help="of --out; default: the file's own when resuming, else csv for a .csv name, "
        "else jsonl",
    )
    bulk.add_argument("--concurrency", type=int, default=32, metavar="N", help="default 32")
    bulk.add_argument("--rate", type=_positive, metavar="R", help="requests a second at most")
    bulk.add_argument(
        "--json-summary", action="store_true", help="print the summary as JSON for programs"
    )
    _connection_options(bulk)

    register = commands.add_parser(
        "register",
        help="register a number interactively: code, captcha, PIN, device transfer",
        description="Run the whole registration: check, wait for the first channel, request "
        "the code, then ask you for the code (and a captcha, a PIN, an approval on the old "
        "phone when the server asks). An empty code means none came: the next channel is "
        "tried when it opens.",
    )
    register.add_argument("number", metavar="NUMBER")
    _connection_options(register)

    sandbox = commands.add_parser(
        "sandbox",
        help="run the sandbox server (a local stand-in of the API)",
        description="Serve the PlugzAPI mobile routes locally, with test credentials and the "
        "test numbers below. Control API under /_sandbox/. Stop with Ctrl-C.",
        epilog="Test numbers:\n\n" + scenario_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8080, help="default 8080; 0: any free port")
    sandbox.add_argument("--seed", type=int, default=0, help="seed of the answer mix")
    sandbox.add_argument(
        "--slow-seconds", type=_positive, default=35.0, help="how slow the slow number is"
    )
    sandbox.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests failing with a 503"
    )
    return parser


# -- commands ---------------------------------------------------------------------------


class _App:
    """What every command shares: the clock, the consoles, and the secrets to mask."""

    def __init__(self, args: argparse.Namespace, clock: Clock) -> None:
        self.args = args
        self.clock = clock
        self.out = console()
        self.err = console(stderr=True)
        self.redactor = Redactor.of([])
        self.resume_hint: str | None = None
        # Where the credentials came from, once a client is open (for run-level errors).
        self.where: Credentials | None = None

    def redact(self, text: str) -> str:
        return self.redactor.redact(text)

    def explain(self, error: PlugzError) -> str:
        """One line for a run-level error (what, where, what to check)."""
        where = self.where or Credentials(getattr(self.args, "base_url", None) or "")
        return explain(error, where, timeout=getattr(self.args, "timeout", None))

    def client_options(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "timeout": self.args.timeout,
            "retry": RetryPolicy(attempts=max(1, self.args.attempts)),
        }

    async def open_client(self, stack: AsyncExitStack) -> PlugzClient:
        args = self.args
        if args.sandbox:
            sandbox = await stack.enter_async_context(running(**self.client_options()))
            self.err.print(f"Using the sandbox at {sandbox.base_url}", style="dim", markup=False)
            self.redactor = Redactor.of([sandbox.instance_token, sandbox.client_token])
            self.where = Credentials(sandbox.base_url, sandbox=True)
            return sandbox.client
        flags = {
            "instance_id": args.instance_id,
            "instance_token": args.instance_token,
            "client_token": args.client_token,
        }
        options = {k: v for k, v in flags.items() if v}
        if args.base_url:
            options["base_url"] = args.base_url
        secrets = [
            options.get("instance_token") or os.environ.get("PLUGZ_INSTANCE_TOKEN", ""),
            options.get("client_token") or os.environ.get("PLUGZ_CLIENT_TOKEN", ""),
        ]
        self.redactor = Redactor.of(secrets)
        client = PlugzClient.from_env(**options, **self.client_options())
        given = {name for name, value in options.items() if value}
        self.where = Credentials(client.base_url, flags=frozenset(given))
        return await stack.enter_async_context(client)

    def planner(self) -> RegistrationPlanner:
        prefer = self.args.prefer
        if self.args.allow_wa_old is False and Channel.WA_OLD in prefer:
            raise _Fail("--prefer names wa_old: add --allow-wa-old", EXIT_USAGE)
        return RegistrationPlanner(
            preference=prefer, allow_wa_old=self.args.allow_wa_old, clock=self.clock
        )

    async def check_all(
        self,
        client: PlugzClient,
        planner: RegistrationPlanner,
        rows: Sequence[Any],
        progress: Progress | None = None,
    ) -> tuple[list[BulkItem], BulkSummary]:
        """Check ``rows`` through the bulk path; an item per row in input order, and the
        summary. A run-level error is every row's item: checked rows carry it as their
        answer, and the rows it stopped before carry it unsent."""
        task = None if progress is None else progress.add_task("Checking", total=len(rows))
        items = []
        run = client.check_many(rows, concurrency=8, planner=planner, on_run_error="record")
        try:
            async with run:
                async for item in run:
                    items.append(item)
                    if progress is not None and task is not None:
                        progress.advance(task)
        except PlugzError as error:  # an outage: the rest are not checked
            items += unchecked(rows, error, skip={item.index for item in items})
        return sorted(items, key=lambda item: item.index), run.summary

    def print_json(self, data: Any) -> None:
        import json

        self.out.out(json.dumps(data, indent=2, ensure_ascii=False), highlight=False)


def unchecked(rows: Sequence[Any], error: PlugzError, skip: Collection[int] = ()) -> list[BulkItem]:
    """An item for each row not checked, carrying the error that stopped the run."""
    return [
        BulkItem(index=index, key=str(index), input=str(row), error=error)
        for index, row in enumerate(rows)
        if index not in skip
    ]


async def _check(app: _App) -> int:
    planner = app.planner()
    numbers = app.args.numbers
    # Refuse bad numbers before any request (and before starting anything).
    bad = []
    for text in numbers:
        try:
            PhoneNumber.parse(text)
        except InvalidPhoneNumber as exc:
            bad.append(str(exc))
    if bad and len(bad) == len(numbers) and not app.args.json:
        raise _Fail("; ".join(bad), EXIT_USAGE)
    try:
        async with AsyncExitStack() as stack:
            client = await app.open_client(stack)
            items, _ = await app.check_all(client, planner, numbers)
    except PlugzError as error:  # before any number was checked (missing credentials)
        if not app.args.json:
            raise
        items = unchecked(numbers, error)
    if app.args.json:
        app.print_json(to_json(items))  # valid JSON in every case: errors are items
    else:
        app.out.print(results_table(items, app.clock.now()))
    # A run-level error (a refused token, an API out of reach) is said once, on stderr.
    for item in items:
        if item.error is not None and is_run_error(item.error):
            assert isinstance(item.error, PlugzError)
            app.err.print(f"{PROG}: error: {app.redact(app.explain(item.error))}", markup=False)
            break
    # The most serious: unreachable (4), then an API error (3), then a bad number (2).
    return max((exit_code_for(i.error) for i in items if i.error is not None), default=EXIT_OK)


async def _plan(app: _App) -> int:
    planner = app.planner()
    number = PhoneNumber.parse(app.args.number)
    async with AsyncExitStack() as stack:
        client = await app.open_client(stack)
        availability = await client.check_availability(number)
    result = BulkItem(
        index=0,
        key="0",
        input=app.args.number,
        number=number,
        availability=availability,
        planner=planner,
    )
    plan = result.plan
    assert plan is not None
    if app.args.json:
        app.print_json(result.to_dict())
    else:
        app.out.print(results_table([result], app.clock.now()))
    if not app.args.wait:
        return EXIT_OK
    channel = plan.next_channel()
    if channel is None:
        app.err.print(f"No channel to wait for: the outcome is {plan.outcome.value}.", markup=False)
        return EXIT_NO_CHANNEL
    waiting = asyncio.ensure_future(plan.wait_until_ready(channel))
    opens_at = local_time(plan.window(channel).ready_at, app.clock.now())
    with Live(console=app.err, transient=True, refresh_per_second=4) as live:
        while not waiting.done():
            left = humanize(plan.ready_in(channel))
            live.update(f"Waiting for {channel.value}: {left} (at {opens_at})")
            await asyncio.wait({waiting}, timeout=0.25)
    await waiting
    app.err.print(f"[green]{channel.value} is open now[/green]: request the code.")
    return EXIT_OK


def bundled_numbers() -> list[tuple[str, str]]:
    """The demo's numbers: the package's copy of examples/numbers.csv (or the repo's)."""
    packaged = resources.files("plugz_async.sandbox").joinpath("numbers.csv")
    if packaged.is_file():
        text = packaged.read_text(encoding="utf-8")
    else:  # an editable install: read the repository's file
        text = (Path(__file__).parents[2] / "examples" / "numbers.csv").read_text(encoding="utf-8")
    return _numbers_from_csv(text.splitlines())


def _numbers_from_csv(lines: list[str]) -> list[tuple[str, str]]:
    """(number, scenario label) for each row with a number."""
    reader = csv.DictReader(lines)
    if reader.fieldnames is None or "number" not in reader.fieldnames:
        raise _Fail("the numbers CSV needs a 'number' column", EXIT_USAGE)
    return [(row["number"], row.get("scenario") or "") for row in reader if row.get("number")]


async def _demo(app: _App) -> int:
    if app.args.numbers is not None:
        try:
            numbers = _numbers_from_csv(
                app.args.numbers.read_text(encoding="utf-8-sig").splitlines()
            )
        except OSError as exc:
            raise _Fail(f"cannot read {app.args.numbers}: {exc.strerror}", EXIT_USAGE) from None
    else:
        numbers = bundled_numbers()
    planner = RegistrationPlanner(clock=app.clock)
    options = {"clock": app.clock, "timeout": app.args.timeout}
    async with running(**options) as sandbox:
        app.redactor = Redactor.of([sandbox.instance_token, sandbox.client_token])
        if not app.args.json:
            app.out.print(
                f"Sandbox running at [bold]{sandbox.base_url}[/bold] (no account, no network)"
            )
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=app.err,
            transient=True,
            disable=app.args.json,
        )
        with progress:
            texts = [number for number, _ in numbers]
            items, summary = await app.check_all(sandbox.client, planner, texts, progress)
    if app.args.json:
        app.print_json({"results": to_json(items), "summary": summary.to_dict()})
        return EXIT_OK
    labels = {index: label for index, (_, label) in enumerate(numbers)}
    now = app.clock.now()
    app.out.print(results_table(items, now, title="Availability and plan", labels=labels))
    app.out.print(summary_line(summary), markup=False)
    app.out.print(summary_table(summary))
    app.out.print(
        textwrap.dedent(
            """
            Every scenario above came from the sandbox's test numbers (plugz-async sandbox --help).
            To do the same against the real API, set your instance's credentials and check numbers:

              export PLUGZ_INSTANCE_ID=... PLUGZ_INSTANCE_TOKEN=... PLUGZ_CLIENT_TOKEN=...
              plugz-async check "+55 44 99999-9999"

            (Z-API: also export PLUGZ_BASE_URL=https://api.z-api.io)
            """
        ).rstrip(),
        highlight=False,
    )
    return EXIT_OK


async def _sandbox(app: _App) -> int:
    args = app.args
    config = SandboxConfig(
        seed=args.seed, slow_seconds=args.slow_seconds, fault_rate=args.fault_rate
    )
    async with serve(config, host=args.host, port=args.port) as (base_url, _state):
        app.out.print(f"Sandbox listening on [bold]{base_url}[/bold]  (Ctrl-C to stop)\n")
        app.out.print("Test credentials (point the SDK or the CLI here with these):")
        for name, value in (
            ("PLUGZ_INSTANCE_ID", config.instance_id),
            ("PLUGZ_INSTANCE_TOKEN", config.instance_token),
            ("PLUGZ_CLIENT_TOKEN", config.client_token),
            (ENV_BASE_URL, base_url),
        ):
            app.out.print(f"  export {name}={value}", highlight=False)
        app.out.print("\nTest numbers:\n" + scenario_table(), highlight=False)
        app.out.print(f"\nControl API: {base_url}/_sandbox/", highlight=False)
        await asyncio.Event().wait()  # until Ctrl-C
    return EXIT_OK  # pragma: no cover


# No row of a numbers file needs more; a longer line is read in pieces and becomes a bad row.
MAX_LINE = 4096
TOO_LONG = "<a line longer than 4096 characters>"


def _bounded_lines(stream: io.TextIOBase) -> Iterator[str]:
    """Lines of at most ``MAX_LINE`` characters: a longer one (a 1 GB line, say) is skipped
    in pieces, never held in memory, and stands as one bad row."""
    while line := stream.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE and not line.endswith("\n"):
            while (rest := stream.readline(MAX_LINE)) and not rest.endswith("\n"):
                pass
            line = TOO_LONG + "\n"
        yield line


def _input_lines(path: str) -> Iterator[str]:
    """The input's lines, read lazily; undecodable bytes become U+FFFD (a bad row)."""
    if path == "-":
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="replace")
        yield from _bounded_lines(stream)
        return
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
            yield from _bounded_lines(f)
    except OSError as exc:
        raise _Fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from None


# Column separators a numbers file may use: a spreadsheet in a Portuguese locale exports ";".
DELIMITERS = (",", ";", "\t", "|")
NUMBER_COLUMNS = "a 'number' column, or 'ddi' and 'phone'"


def _usable(columns: Sequence[str]) -> bool:
    return "number" in columns or {"ddi", "phone"} <= set(columns)


def _fields(line: str, delimiter: str) -> list[str]:
    """The fields of one line. Each line is read alone, so a stray quote cannot swallow
    the lines after it (numbers files have no values that span lines)."""
    text = line.rstrip("\r\n")
    try:
        return next(csv.reader([text], delimiter=delimiter), [])
    except csv.Error:  # a stray line break, say: the fields as they stand
        return text.split(delimiter)


def _header(first: str) -> tuple[list[str], str] | None:
    """The first line's column names and separator, when it is a header; ``None`` when it
    is a number (a file of one number a line).

    Raises:
        InvalidArgument: it is a header, but with no column that holds numbers.
    """
    text = first.strip()
    if text.startswith("PK\x03\x04") or "\x00" in text:
        raise InvalidArgument(
            "INPUT is a spreadsheet or another binary file: save it as CSV (UTF-8) first"
        )
    if not text or text.startswith("#"):
        return None
    ranked = sorted(DELIMITERS, key=lambda d: -text.count(d))  # the most used first
    for delimiter in ranked:
        columns = [name.strip().lower() for name in _fields(text, delimiter)]
        if _usable(columns):
            return columns, delimiter
    if any(c.isdigit() for c in text):
        return None  # a number (or a line that will fail as one): no header
    found = ", ".join(repr(n.strip()) for n in _fields(text, ranked[0]) if n.strip())
    raise InvalidArgument(
        f"INPUT's header has no column of numbers (it needs {NUMBER_COLUMNS}); "
        f"the columns found: {found}"
    )


def read_rows(lines: Iterator[str]) -> Iterator[BulkRow]:
    """Rows of a CSV with a header (``number``, or ``ddi`` and ``phone``; separated by
    ``,``, ``;``, tabs or ``|``) or of one number a line; each keyed by its place among the
    data rows (or its ``key`` column).

    The header is read at once, so a file that cannot be read as numbers is refused before
    any row is checked; the rows are read lazily.

    Raises:
        InvalidArgument: a header without a column of numbers, or a spreadsheet file.
    """
    first = next(lines, None)
    if first is None:
        return iter(())
    header = _header(first)
    if header is None:
        return _plain_rows(itertools.chain([first], lines))
    return _csv_rows(lines, *header)


def _csv_rows(lines: Iterator[str], columns: list[str], delimiter: str) -> Iterator[BulkRow]:
    index = 0
    keys: dict[str, int] = {}  # a key column's values, each to its row: resume goes by key
    for line in lines:
        fields = _fields(line, delimiter)
        if not any(field.strip() for field in fields):
            continue  # a blank line
        row = dict(zip(columns, fields, strict=False))  # short rows: the rest are missing
        key = (row.get("key") or "").strip() or str(index)
        if "key" in columns:
            if key in keys:
                raise InvalidArgument(
                    f"INPUT repeats the key {key!r} (data rows {keys[key] + 1} and "
                    f"{index + 1}): each row needs a key of its own"
                )
            keys[key] = index
        try:
            yield attrs.evolve(BulkRow.from_mapping(row), key=key, index=index)
        except InvalidArgument:  # the row is kept, and fails as a row
            yield BulkRow(number=str(row.get("number") or ""), key=key, given=row, index=index)
        index += 1


def _plain_rows(lines: Iterator[str]) -> Iterator[BulkRow]:
    index = 0
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            yield BulkRow(number=text, key=str(index), given=text, index=index)
            index += 1


def _count_rows(path: str) -> int | None:
    if path == "-":
        return None
    return sum(1 for _ in read_rows(_input_lines(path)))


# The options of a bulk run that a resume must repeat (secrets never: they stay in the
# environment, or must be given again).
_REPEATED = (
    ("concurrency", "--concurrency", 32),
    ("rate", "--rate", None),
    ("timeout", "--timeout", 30.0),
    ("attempts", "--attempts", 3),
    ("base_url", "--base-url", None),
    ("instance_id", "--instance-id", None),
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
    if args.sandbox:
        words.append("--sandbox")
    if args.json_summary:
        words.append("--json-summary")
    command = shlex.join(words)
    secret_flags = [
        f
        for f, v in (
            ("--instance-token", args.instance_token),
            ("--client-token", args.client_token),
        )
        if v
    ]
    if secret_flags:
        command += f"  (and {' '.join(secret_flags)} again)"
    return command


async def _bulk(app: _App) -> int:
    args = app.args
    if args.concurrency < 1:
        raise _Fail("--concurrency must be at least 1", EXIT_USAGE)
    planner = app.planner()
    try:
        results = ResultsFile(args.out, format=args.format)
        results.check()
        if args.input != "-" and _same_file(Path(args.input), args.out):
            raise InvalidArgument("--out is INPUT itself: give another file for the results")
        # The input can be read (and its header makes sense) before anything is written.
        total = _count_rows(args.input)
        if total == 0:
            raise InvalidArgument(f"{args.input} has no numbers to check")
        source = read_rows(_input_lines(args.input))  # standard input's header, at once
    except InvalidArgument as exc:
        raise _Fail(str(exc), EXIT_USAGE) from None
    resume = resume_command(args)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}/s"),
        TimeRemainingColumn(),
        console=app.err,
        disable=args.json_summary or not app.err.is_terminal,  # no bar in a log file
    )
    stopped: PlugzError | None = None
    refused: BulkItem | None = None  # the first row of an instance of its own that was refused
    try:
        async with AsyncExitStack() as stack:
            client = await app.open_client(stack)  # missing credentials: no file made
            try:
                done = results.open(resume=args.resume)
            except InvalidArgument as exc:
                raise _Fail(str(exc), EXIT_USAGE) from None
            app.resume_hint = f"results so far are in {args.out}; resume with: {resume}"
            rows = (row for row in source if row.key not in done)
            run = client.check_many(
                rows, concurrency=args.concurrency, max_rate=args.rate, planner=planner
            )
            await stack.enter_async_context(run)
            with progress:
                task = progress.add_task("", total=total, completed=len(done), rate="0")
                try:
                    async for item in run:
                        results.write(item)
                        if refused is None and item.instance_id and is_refusal(item.error):
                            refused = item
                        counts = ", ".join(
                            f"{k} {v}" for k, v in sorted(run.summary.outcomes.items())
                        )
                        progress.update(
                            task, advance=1, description=counts, rate=f"{run.summary.rate:.0f}"
                        )
                except PlugzError as error:  # a run-level error: the run stopped early
                    stopped = error
    finally:
        results.close()
    app.resume_hint = None
    summary = run.summary
    whole = BulkSummary(
        total=len(done) + summary.total,
        outcomes=results.kept + summary.outcomes,
        errors=results.kept_errors + summary.errors,
        pending=summary.pending,
        stopped=summary.stopped,
    )
    if args.json_summary:
        app.print_json(
            {
                **summary.to_dict(),
                "skipped": len(done),
                "redone": results.dropped,
                "out": str(args.out),
                "file": {
                    "records": whole.total,
                    "outcomes": dict(whole.outcomes),
                    "errors": dict(whole.errors),
                },
            }
        )
    elif whole.total:  # a run stopped before its first row has nothing to show
        app.out.print(summary_line(summary), markup=False)
        if done:
            app.out.print(
                f"{args.out} now holds {whole.total} records: {summary.total} added by this "
                f"run, {len(done)} already there.",
                markup=False,
            )
        app.out.print(summary_table(whole))
        opens = opens_table(summary, app.clock.now(), this_run=bool(done))
        if opens is not None:
            app.out.print(opens)
        app.out.print(f"Results in {args.out}.", markup=False)
    if stopped is not None:
        app.err.print(f"{PROG}: error: {app.redact(app.explain(stopped))}", markup=False)
        app.err.print(f"{summary.total} rows written; resume with: {resume}", markup=False)
        return exit_code_for(stopped)
    if whole.total == 0:
        raise _Fail(f"{args.input} has no numbers to check", EXIT_USAGE)
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
            f"{PROG}: {summary.pending} rows ended in an error that may pass "
            f"({counts_line(pending)}); check them again with: {resume}",
            markup=False,
        )
        return EXIT_INCOMPLETE
    return EXIT_OK


class InputEnded(Exception):
    """Standard input ended while ``register`` was asking a person something."""


def stdin_at_end() -> bool:
    """Whether standard input is closed or already at its end (``</dev/null``, cron, CI),
    so nobody can type a code. A terminal, or a pipe with nothing to read yet, is not."""
    stream = sys.stdin
    if stream is None or stream.closed:
        return True
    if stream.isatty():
        return False
    try:
        ready, _, _ = select.select([stream], [], [], 0)
    except (OSError, ValueError):  # not a file the system can wait on: let it be read
        return False
    if not ready:
        return False  # a pipe that has nothing yet: answers may still come
    buffer = getattr(stream, "buffer", None)
    peek = getattr(buffer, "peek", None)
    return peek is not None and not peek(1)  # ready and empty: the end


class _Prompts:
    """What ``register`` asks a person, on the terminal (or piped standard input)."""

    def __init__(self, app: _App) -> None:
        self.app = app
        self.countdown: asyncio.Task[None] | None = None
        self._images: tempfile.TemporaryDirectory[str] | None = None
        self._shown = 0

    async def ask(self, prompt: str, *, secret: bool = False) -> str:
        """The answer, stripped.

        Raises:
            InputEnded: standard input ended: nobody is there to answer.
        """
        self.stop_countdown()
        reader = getpass.getpass if secret and sys.stdin.isatty() else input
        try:
            answer = await asyncio.to_thread(reader, prompt)
        except EOFError:
            raise InputEnded(prompt) from None
        if not sys.stdin.isatty():
            print(flush=True)  # a piped answer is not echoed: end the prompt's line
        return answer.strip()

    async def code(self, channel: Channel) -> str | None:
        answer = await self.ask(f"Code received by {channel.value} (empty if none came): ")
        return answer or None

    async def captcha(self, png: bytes) -> str:
        if self._images is None:
            self._images = tempfile.TemporaryDirectory(prefix="plugz-captcha-")
        self._shown += 1
        path = Path(self._images.name) / f"captcha-{self._shown}.png"
        path.write_bytes(png)
        self.app.err.print(f"The server asks for a captcha: open {path}", markup=False)
        return await self.ask("Captcha text: ")

    async def pin(self) -> str:
        return await self.ask("Two-step verification PIN: ", secret=True)

    async def device_confirmed(self) -> None:
        await self.ask("Approve the transfer on the phone that holds the number, then press Enter")

    async def hear(self, event: RegistrationEvent) -> None:
        self.stop_countdown()
        self.app.err.print(f"· {event.message}", markup=False, highlight=False)
        if event.kind is EventKind.WAITING and event.wait_seconds and event.channel:
            self.countdown = asyncio.ensure_future(
                self._count_down(event.channel, event.wait_seconds)
            )

    async def _count_down(self, channel: Channel, seconds: float) -> None:
        until = self.app.clock.monotonic() + seconds
        with Live(console=self.app.err, transient=True, refresh_per_second=4) as live:
            while (left := until - self.app.clock.monotonic()) > 0:
                live.update(f"Waiting for {channel.value}: {humanize(left)}")
                await self.app.clock.sleep(min(0.25, left))

    def stop_countdown(self) -> None:
        if self.countdown is not None:
            self.countdown.cancel()
            self.countdown = None

    def close(self) -> None:
        """Stop the countdown; remove the captcha images."""
        self.stop_countdown()
        if self._images is not None:
            self._images.cleanup()
            self._images = None


async def _register(app: _App) -> int:
    planner = app.planner()
    number = PhoneNumber.parse(app.args.number)
    if stdin_at_end():
        # Against the real API a code request is a real SMS or call: refuse before any.
        raise _Fail(
            "standard input is at its end, so nobody could type the code that register "
            "would request; run it in a terminal, or pipe the answers in",
            EXIT_USAGE,
        )
    prompts = _Prompts(app)
    try:
        return await _register_with(app, planner, number, prompts)
    except InputEnded as ended:
        asked = str(ended).split(" (", 1)[0].rstrip(": ")
        app.err.print(
            f"{PROG}: standard input ended at '{asked}': the registration stopped, "
            "and no further code was requested",
            markup=False,
        )
        return EXIT_NOT_CONNECTED
    finally:
        prompts.close()


async def _register_with(
    app: _App, planner: RegistrationPlanner, number: PhoneNumber, prompts: _Prompts
) -> int:
    async with AsyncExitStack() as stack:
        client = await app.open_client(stack)
        if app.args.sandbox:
            app.err.print(
                f"Sandbox: the code is {CONFIRMATION_CODE}, the captcha says {CAPTCHA_TEXT}, "
                f"the PIN is {PIN}.",
                markup=False,
            )
        registration = client.registration(
            number, planner=planner, code_timeout=None, on_event=prompts.hear
        )
        try:
            result = await registration.run(
                code=prompts.code,
                captcha=prompts.captcha,
                pin=prompts.pin,
                device_confirmed=prompts.device_confirmed,
            )
        finally:
            prompts.stop_countdown()
        if result.outcome is RegistrationOutcome.APPEAL:
            app.err.print(f"Banned; appeal token {result.appeal_token}.", markup=False)
            try:  # asked outright: an answer piped in for a code must not become an appeal
                send = await prompts.ask("Send an unban request to WhatsApp now? [y/N] ")
                description = ""
                if send.lower() in ("y", "yes", "s", "sim"):
                    description = await prompts.ask("Describe why it should be unbanned: ")
            except InputEnded:
                description = ""
            if description:
                unban = await registration.appeal(description)
                app.err.print(f"Unban request: {unban.status or 'sent'}", markup=False)
    if result.connected:
        app.out.print(f"[green]{number.e164} is connected[/green] (code by {result.channel}).")
        return EXIT_OK
    note = f": {result.reason}" if result.reason else ""
    app.out.print(f"{number.e164}: {result.outcome.value}{note}", markup=False)
    return EXIT_NOT_CONNECTED


COMMANDS = {
    "check": _check,
    "plan": _plan,
    "register": _register,
    "bulk": _bulk,
    "demo": _demo,
    "sandbox": _sandbox,
}


def _log_handler(app: _App) -> logging.Handler:
    """A stderr handler for the SDK's logs, masking the CLI's secrets once more."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    class _Mask(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.msg = app.redactor.redact(record.getMessage())
            record.args = None
            return True

    handler.addFilter(_Mask())
    return handler


def main(argv: Sequence[str] | None = None, *, clock: Clock | None = None) -> int:
    """Run the command line; return the exit code (``run()`` exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    app = _App(args, clock or SystemClock())
    package_logger = logging.getLogger("plugz_async")
    handler, level = _log_handler(app), package_logger.level
    if args.verbose:
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.DEBUG)
    try:
        return asyncio.run(COMMANDS[args.command](app))
    except KeyboardInterrupt:
        if args.command == "sandbox":
            app.err.print("sandbox stopped")
            return EXIT_OK
        app.err.print(f"{PROG}: interrupted", markup=False)
        if app.resume_hint:
            app.err.print(app.resume_hint, markup=False)
        return EXIT_INTERRUPTED
    except _Fail as fail:
        app.err.print(f"{PROG}: error: {app.redactor.redact(str(fail))}", markup=False)
        return fail.code
    except PlugzError as error:
        said = app.explain(error) if is_run_error(error) else f"{type(error).__name__}: {error}"
        app.err.print(f"{PROG}: error: {app.redact(said)}", markup=False)
        return exit_code_for(error)
    except Exception as error:  # a bug: one line, the traceback only with --verbose
        message = app.redactor.redact(f"{type(error).__name__}: {error}")
        app.err.print(f"{PROG}: unexpected error: {message}", markup=False)
        if args.verbose:
            trace = "".join(traceback.format_exception(error))
            app.err.print(app.redactor.redact(trace), highlight=False, markup=False)
        else:
            app.err.print("run again with --verbose for the traceback", highlight=False)
        return EXIT_UNEXPECTED
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(level)


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())
