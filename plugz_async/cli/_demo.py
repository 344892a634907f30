"""``plugz-async demo`` and ``plugz-async sandbox``: the built-in stand-in of the API.

``demo`` is the main job end to end with no account: it starts the sandbox, checks
every test scenario through a bulk run, and shows the results and the summary.
``sandbox`` serves the stand-in until Ctrl-C, for your own code to talk to (with
``--instances N``, as many instances: to register that many numbers at once).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import io
import shlex
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plugz_async._bulk._input import lines_of, read_rows
from plugz_async._bulk._items import BulkItem, BulkRow
from plugz_async._bulk._summary import BulkSummary
from plugz_async._config import ENV_BASE_URL
from plugz_async._errors import PlugzError
from plugz_async._planner import RegistrationPlanner
from plugz_async._redact import Redactor
from plugz_async.sandbox import (
    CAPTCHA_TEXT,
    CONFIRMATION_CODE,
    PIN,
    SCENARIOS,
    SandboxConfig,
    running,
    serve,
)

from ._app import (
    EXIT_OK,
    EXIT_USAGE,
    App,
    CommandFailed,
    at_least_one,
    positive,
    region_option,
    stop_signals,
)
from ._layout import Column, Sheet
from ._render import ResultRow, console, results_table, summary_line, summary_table, to_json

__all__ = ["add_demo", "add_sandbox", "bundled_numbers", "demo", "serve_sandbox"]


def add_demo(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "demo",
        description="Start the sandbox, check a bundled list of numbers (every test scenario), "
        "show progress and a summary.",
    )
    parser.add_argument("--numbers", metavar="CSV", help="a CSV with a 'number' column instead")
    region_option(parser)
    parser.add_argument(
        "--queue",
        action="store_true",
        help="register 20 numbers through the durable queue instead: a redis-server of its "
        "own, the sandbox, two worker processes, and a live table (needs redis-server and "
        "the 'queue' extra)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--timeout", type=positive, default=1.0, metavar="S", help="per attempt (default 1)"
    )
    return parser


class _Wrapped(argparse.HelpFormatter):
    """Help whose prose is wrapped to the terminal and whose drawn tables (text of several
    lines) are kept as drawn."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def test_numbers() -> Sheet:
    """The sandbox's test numbers, as a table that fits the terminal (the docs keep the
    Markdown of `scenario_table`)."""
    sheet = Sheet(
        Column("Number", key=True),
        Column("Scenario"),
        Column("What the sandbox does", wrap=True),
    )
    for scenario in SCENARIOS:
        sheet.add_row(scenario.number, scenario.name, scenario.description)
    sheet.add_row("any other", "(mix)", "a seeded random mix: ready, waits, banned, ...")
    return sheet


def _as_text(table: Sheet) -> str:
    """``table`` drawn as plain text as wide as the terminal (for a command's help)."""
    width = console().width
    drawing = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    drawing.print(table)
    return drawing.export_text().rstrip("\n")


def add_sandbox(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "sandbox",
        description="Serve the PlugzAPI mobile routes locally, with test credentials and the "
        "test numbers below. Control API under /_sandbox/. Stop with Ctrl-C.",
        epilog="Test numbers:\n\n" + _as_text(test_numbers()),
        formatter_class=_Wrapped,
    )
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="default 8080; 0: any free port")
    parser.add_argument("--seed", type=int, default=0, help="seed of the answer mix")
    parser.add_argument(
        "--slow-seconds", type=positive, default=35.0, help="how slow the slow number is"
    )
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests failing with a 503"
    )
    parser.add_argument(
        "--instances",
        type=at_least_one,
        default=1,
        metavar="N",
        help="how many instances to serve (default 1): the test instance, then ID-2 ... ID-N "
        "with the token TOKEN-2 ... TOKEN-N (ID and TOKEN: the test instance's)",
    )
    return parser


def bundled_numbers() -> list[BulkRow]:
    """The demo's numbers: the package's copy of examples/numbers.csv (or the repo's)."""
    packaged = resources.files("plugz_async.sandbox").joinpath("numbers.csv")
    if packaged.is_file():
        text = packaged.read_text(encoding="utf-8")
    else:  # an editable install: read the repository's file
        text = (Path(__file__).parents[2] / "examples" / "numbers.csv").read_text(encoding="utf-8")
    return list(read_rows(iter(text.splitlines(keepends=True))))


def _scenario(row: BulkRow) -> str:
    given = row.given
    return str(given.get("scenario") or "") if isinstance(given, Mapping) else ""


# What the demo says at the end: how to do the same against the real API (each line
# within 80 columns: a terminal of the usual width never wraps a command).
_EPILOGUE = """
Every scenario above is a sandbox test number (plugz-async sandbox --help).
Against the real API, set your instance's credentials, then check numbers:

  export PLUGZ_INSTANCE_ID=... PLUGZ_INSTANCE_TOKEN=... PLUGZ_CLIENT_TOKEN=...
  plugz-async check "+55 44 99999-9999"

(Z-API: also export PLUGZ_BASE_URL=https://api.z-api.io)
""".rstrip()


async def demo(app: App) -> int:
    if app.args.queue:
        from .queue._demo import queue_demo  # redis-server, workers: only when asked for

        return await queue_demo(app)
    rows = (
        bundled_numbers()
        if app.args.numbers is None
        else list(read_rows(lines_of(app.args.numbers), app.args.numbers))
    )
    items, summary = await _check_on_sandbox(app, rows)
    if app.args.json:
        app.print_json({"results": to_json(items), "summary": summary.to_dict()})
        return EXIT_OK
    table = [
        ResultRow(
            str(item.input) if item.number is None else item.number.e164,
            item.plan or item.error or PlugzError("no result"),
            _scenario(rows[item.index]),
        )
        for item in items
    ]
    app.out.print(results_table(table, app.clock.now(), title="Availability and plan"))
    app.out.print()  # the tables have no borders: a blank line between them
    app.out.print(summary_line(summary), markup=False)
    app.out.print(summary_table(summary))
    app.out.print(_EPILOGUE, highlight=False, soft_wrap=True)  # commands: never wrapped
    return EXIT_OK


async def _check_on_sandbox(
    app: App, rows: Sequence[BulkRow]
) -> tuple[list[BulkItem], BulkSummary]:
    """Start the sandbox and check ``rows`` on it: the items in the rows' order, and the
    run's summary."""
    planner = RegistrationPlanner(clock=app.clock)
    options = {"clock": app.clock, "timeout": app.args.timeout, "default_region": app.region}
    async with running(**options) as stand_in:
        app.redactor = Redactor.of([stand_in.instance_token, stand_in.client_token])
        if not app.args.json:
            app.out.print(
                f"Sandbox running at [bold]{stand_in.base_url}[/bold] (no account, no network)"
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
        items: list[BulkItem] = []
        with progress:
            task = progress.add_task("Checking", total=len(rows))
            numbers = [str(row.number) for row in rows]  # each item's input: the number given
            async with stand_in.client.check_many(numbers, concurrency=8, planner=planner) as run:
                async for item in run:
                    items.append(item)
                    progress.advance(task)
    items.sort(key=lambda item: item.index)
    return items, run.summary


async def serve_sandbox(app: App) -> int:
    args = app.args
    config = SandboxConfig(
        seed=args.seed,
        slow_seconds=args.slow_seconds,
        fault_rate=args.fault_rate,
        instances=args.instances,
    )
    listening = False
    with stop_signals() as stopped:  # before the banner: a signal after it is handled
        try:
            async with serve(config, host=args.host, port=args.port) as (base_url, _state):
                listening = True
                await _serve_until(app, config, base_url, stopped)
        except OSError as error:
            if listening or error.errno != errno.EADDRINUSE:
                raise
            # Not a bug: another sandbox (or a worker's --web) holds the port.
            raise CommandFailed(
                f"port {args.port} on {args.host} is taken (another sandbox?): give another "
                "with --port N, or --port 0 for any free one",
                EXIT_USAGE,
            ) from None
    app.err.print("sandbox stopped")
    return EXIT_OK


async def _serve_until(
    app: App, config: SandboxConfig, base_url: str, stopped: asyncio.Event
) -> None:
    """The banner, then serve until a signal. The lines to paste come last, so that a
    terminal of 24 lines still shows them once the test numbers have scrolled by."""
    app.out.print(f"Sandbox listening on [bold]{base_url}[/bold]  (Ctrl-C to stop)")
    app.out.print("\nTest numbers:")
    app.out.print(test_numbers())
    app.out.print(f"\nControl API: {base_url}/_sandbox/\n", highlight=False)
    app.out.print("Paste these into a shell to point the SDK (from_env) and the CLI here:")
    for name, value in (
        ("PLUGZ_INSTANCE_ID", config.instance_id),
        ("PLUGZ_INSTANCE_TOKEN", config.instance_token),
        ("PLUGZ_CLIENT_TOKEN", config.client_token),
        (ENV_BASE_URL, base_url),
    ):
        app.say(f"  export {name}={shlex.quote(value)}")  # whole, never wrapped: pasted as is
    if config.instances == 1:
        app.out.print("Serving 1 instance: the one above.", highlight=False)
    else:  # the others' tokens follow from the test one's; not printed one by one
        app.out.print(
            f"Serving {config.instances} instances: the one above, and "
            f"{config.instance_id}-i for i from 2 to {config.instances}, "
            "with the token above followed by -i.",
            highlight=False,
        )
    codes = "random codes (see the control API's /_sandbox/codes)"
    app.say(
        "A registration here takes the confirmation code "
        + (codes if config.random_codes else CONFIRMATION_CODE)
        + f", the captcha text {CAPTCHA_TEXT} and the two-step PIN {PIN}."
    )
    await stopped.wait()
