"""The options of ``plugz-async queue`` and its subcommands, built without the ``queue``
extra (``--help`` works without it): a function a subcommand, and `subcommand` for the
shape they share (``NUMBER``, ``--json``, ``--region``, the Redis options)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from plugz_async._config import ENV_INSTANCE_ID
from plugz_async.cli._app import column_option, non_negative, region_option

from ._redis import planning_options, redis_options

__all__ = ["OVERDUE_AFTER", "add_queue", "overdue_option", "subcommand"]

# The queue's own default (plugz_async.queue._api.OVERDUE_AFTER; a test keeps them equal):
# the command's parser is built without the queue extra.
OVERDUE_AFTER = 30.0


def add_queue(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "queue",
        description="The producer's side of the durable queue (Redis; the 'queue' extra). "
        "Workers ('plugz-async worker') run the registrations; these commands queue them, "
        "show them, and give them the code, captcha text or PIN they wait for.",
        epilog="Exit codes: 0 done; 2 usage (a bad argument or file, an impossible number, a "
        "code of the wrong form, a number the queue has no registration of, missing "
        "Redis URL or extra); 4 Redis cannot be reached; 7 'register': some rows were not "
        "queued, 'code'/'captcha'/'pin': the registration does not wait for it now.",
    )
    subcommands = parser.add_subparsers(dest="queue_command", required=True, metavar="SUBCOMMAND")
    _add_register(subcommands)
    _add_status(subcommands)
    _add_list(subcommands)
    _add_cancel(subcommands)
    _add_workers(subcommands)
    _add_prune(subcommands)
    _add_give(subcommands)
    return parser


@contextlib.contextmanager
def subcommand(
    subcommands: Any,
    name: str,
    *,
    help: str,
    description: str,
    json_help: str,
    number: str | None = None,
    region: bool = True,
    overdue: bool = False,
    planning: bool = False,
) -> Iterator[argparse.ArgumentParser]:
    """A subcommand of ``queue``, for the block to add its own options to: ``NUMBER``
    first (``number``: ``"one"``, or ``"optional"``), then the block's, then ``--json``,
    ``--overdue``, ``--region`` (where numbers are read), the planning options (a
    producer's) and the Redis options."""
    parser: argparse.ArgumentParser = subcommands.add_parser(
        name, help=help, description=description
    )
    if number is not None:
        parser.add_argument("number", nargs="?" if number == "optional" else None, metavar="NUMBER")
    yield parser
    parser.add_argument("--json", action="store_true", help=json_help)
    if overdue:
        overdue_option(parser)
    if region:
        region_option(parser)
    if planning:
        planning_options(parser)
    redis_options(parser)


def overdue_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overdue",
        type=non_negative,
        default=OVERDUE_AFTER,
        metavar="SECONDS",
        help=f"a step due longer ago than this is overdue (default {OVERDUE_AFTER:g})",
    )


def _add_register(subcommands: Any) -> None:
    with subcommand(
        subcommands,
        "register",
        help="queue numbers (or a file: a number and an instance a row)",
        description="Queue the registration of each NUMBER on --instance, or of each row of "
        "FILE: a CSV with a 'number' column (or 'ddi' and 'phone', or the one --column names) "
        "and an 'instance' column "
        "(or 'instance_id'; empty cells take --instance), or one number a line; '-' reads "
        "standard input. One argument that is a file (or ends in .csv, .txt or .tsv) is "
        "read as FILE. An instance registers one number at a time. A row that cannot be "
        "queued (an impossible number, no instance, a busy instance) is reported with its "
        "line, and the others are queued. A number already queued and unfinished is left "
        "as it is.",
        json_help="print JSON instead of a table",
        planning=True,
    ) as register:
        register.add_argument("inputs", nargs="+", metavar="NUMBER|FILE")
        column_option(register)
        register.add_argument(
            "--instance",
            metavar="ID",
            help=f"the instance to register on (default: {ENV_INSTANCE_ID}); in a file, for "
            "the rows that name none",
        )
        register.add_argument(
            "--restart",
            action="store_true",
            help="start again the registrations of these numbers that ended (failed, "
            "no_code...); without it an ended one is left as it is, and the row says so",
        )


def _add_status(subcommands: Any) -> None:
    with subcommand(
        subcommands,
        "status",
        help="every registration and the counts by status, or one registration's events",
        description="Without NUMBER: a table of every registration (oldest first) and the "
        "counts by status. With NUMBER: where its registration stands, and its events.",
        json_help="print JSON instead of tables",
        number="optional",
        overdue=True,
    ):
        pass  # NUMBER, or none: all of them


def _add_list(subcommands: Any) -> None:
    with subcommand(
        subcommands,
        "list",
        help="the registrations, with filters: --stuck, --status",
        description="A table of the registrations (oldest first). --stuck: only those whose "
        "next step is overdue (due longer than --overdue seconds ago, waiting for no input): "
        "no worker runs the queue, or all are busy.",
        json_help="print JSON instead of a table",
        region=False,
    ) as listing:
        listing.add_argument("--stuck", action="store_true", help="only the overdue ones")
        listing.add_argument("--status", metavar="STATUS", help="only those of this status")
        overdue_option(listing)


def _add_cancel(subcommands: Any) -> None:
    with subcommand(
        subcommands,
        "cancel",
        help="cancel a registration: no further code request",
        description="Cancel the registration of NUMBER: no further code request is sent, and "
        "it ends 'cancelled'. With a code request in flight, that request ends first (its "
        "answer is kept), then a worker ends the registration. Exit 7 when it has ended "
        "already.",
        json_help="print the status as JSON",
        number="one",
    ):
        pass  # NUMBER is all it takes


def _add_workers(subcommands: Any) -> None:
    with subcommand(
        subcommands,
        "workers",
        help="the queue's workers: host, pid, last heartbeat, steps running",
        description="Every worker seen on the queue in the last day, last seen first: alive "
        "(a recent heartbeat), stopped (it said so) or gone (its heartbeat stopped: it died, "
        "or lost Redis).",
        json_help="print JSON instead of a table",
        region=False,
    ):
        pass  # the queue is all it takes


def _add_prune(subcommands: Any) -> None:
    with subcommand(
        subcommands,
        "prune",
        help="forget the registrations that ended long ago",
        description="Forget the registrations that ended more than --older-than seconds ago "
        "(their state and events leave Redis; unfinished ones are never touched). Ended "
        "registrations stay in Redis until pruned: run it from a periodic job.",
        json_help="print JSON",
        region=False,
    ) as prune:
        prune.add_argument(
            "--older-than",
            type=non_negative,
            required=True,
            metavar="SECONDS",
            help="how long ago a registration must have ended (86400: a day)",
        )


# The inputs a registration may wait for: the subcommand, its value's name, its summary,
# and what the value is.
GIVEN = (
    ("code", "CODE", "give a registration its code",
     "the code that came by SMS, call or pop-up (4 to 8 digits)"),
    ("captcha", "TEXT", "give a registration the captcha's text",
     "the text of the captcha it shows (queue status NUMBER says when it waits for one)"),
    ("pin", "PIN", "give a registration the two-step PIN",
     "the two-step verification PIN (6 digits)"),
)  # fmt: skip


def _add_give(subcommands: Any) -> None:
    for name, metavar, summary, what in GIVEN:
        with subcommand(
            subcommands,
            name,
            help=summary,
            description=f"Give the registration of NUMBER {what}. A code may come before a "
            "worker has written that it was sent. The input is checked before anything is "
            "written. Exit 7 when the registration does not wait for it (another step, or "
            "ended).",
            json_help="print the status as JSON",
            number="one",
        ) as give:
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
