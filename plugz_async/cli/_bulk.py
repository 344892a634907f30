"""``plugz-async bulk``: a file of numbers into a results file, resumable at any moment."""

from __future__ import annotations

import argparse
import os
import shlex
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from plugz_async._errors import (
    APIError,
    AuthenticationError,
    InstanceNotFoundError,
    InvalidArgument,
    PlugzError,
)
from plugz_async._input import count_rows, lines_of, name_of, read_rows
from plugz_async._items import FINAL_ERROR_NAMES, BulkItem
from plugz_async._models import Channel
from plugz_async._results import ResultsFile
from plugz_async._summary import BulkSummary

from ._app import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    App,
    CommandFailed,
    connection_options,
    exit_code_for,
    positive,
    proxy_secrets,
)
from ._explain import counts_line
from ._render import opens_table, summary_line, summary_table

__all__ = ["add_bulk", "bulk", "resume_command"]


def add_bulk(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "bulk",
        description="Check every row of INPUT (a CSV with a 'number' column, or 'ddi' and "
        "'phone', and optionally 'instance_id' and 'instance_token'; or one number per line; "
        "'-' reads standard input). Each result is appended to --out and flushed at once; "
        "--resume skips the rows already there, so a run killed at any moment loses nothing.",
    )
    parser.add_argument("input", metavar="INPUT")
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


async def bulk(app: App) -> int:
    args = app.args
    if args.concurrency < 1:
        raise CommandFailed("--concurrency must be at least 1", EXIT_USAGE)
    planner = app.planner()
    try:
        results = ResultsFile(args.out, format=args.format)
        results.check()
        if args.input != "-" and _same_file(Path(args.input), args.out):
            raise InvalidArgument("--out is INPUT itself: give another file for the results")
        # The input can be read (and its header makes sense) before anything is written.
        total = count_rows(args.input, region=app.region)
        if total == 0:
            raise InvalidArgument(f"{args.input} has no numbers to check")
        # The header is judged at once (standard input's too), before anything is sent.
        source = read_rows(lines_of(args.input), name_of(args.input))
    except InvalidArgument as exc:  # MissingCountryCode too: nothing sent, nothing written
        raise CommandFailed(str(exc), EXIT_USAGE) from None
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
                raise CommandFailed(str(exc), EXIT_USAGE) from None
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
        raise CommandFailed(f"{args.input} has no numbers to check", EXIT_USAGE)
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
