"""``plugz-async check`` and ``plugz-async plan``: a few numbers, each parsed and planned once.

They ask the client directly (no bulk run, no summary): the first number alone, so a
refused credential costs one request and is said once; the others a few at a time. A
number whose line an earlier number of the command holds (the same digits, or Brazil's
other form of it) with an answer is not checked again: its row names that number. A number
that got no answer holds no line: the next number of its line is checked.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import attrs
from rich.live import Live

from plugz_async._bulk._items import SameLine, SeenLines, record
from plugz_async._client import PlugzClient
from plugz_async._errors import (
    AuthenticationError,
    ConfigurationError,
    InstanceNotFoundError,
    InvalidPhoneNumber,
    PlugzError,
)
from plugz_async._models import Availability
from plugz_async._phone import PhoneNumber
from plugz_async._planner import RegistrationPlan, RegistrationPlanner
from plugz_async._transport import Send

from ._app import (
    EXIT_NO_CHANNEL,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    App,
    CommandFailed,
    OldForms,
    connection_options,
    exit_code_for,
)
from ._explain import is_run_error
from ._render import ResultRow, fix_hint, humanize, local_time, plural, results_table

__all__ = ["add_check", "add_plan", "check", "plan"]

# Numbers checked at once after the first (a command line names a few, not thousands).
AT_ONCE = 8


def add_check(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "check",
        description="Check each number with POST /mobile/registration-available and show its "
        "plan: which code channel opens when (in local time and as 'in 1m30s').",
    )
    parser.add_argument("numbers", nargs="+", metavar="NUMBER")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    connection_options(parser)
    return parser


def add_plan(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "plan",
        description="Check one number and show its plan. With --wait, count down until the "
        "first channel opens, and exit 0 when it does.",
    )
    parser.add_argument("number", metavar="NUMBER")
    parser.add_argument("--wait", action="store_true", help="wait for the first channel to open")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    connection_options(parser)
    return parser


@attrs.define
class Checked:
    """One number of the command line: as given, as parsed, and how its check went."""

    index: int
    given: str
    number: PhoneNumber | None = None
    availability: Availability | None = None
    plan: RegistrationPlan | None = None
    error: Exception | None = None
    attempts: int = 0
    same_line_as: SameLine | None = None

    @classmethod
    def parse(cls, index: int, given: str, region: str | None = None) -> Checked:
        try:
            return cls(index, given, PhoneNumber.parse(given, default_region=region))
        except InvalidPhoneNumber as error:
            return cls(index, given, error=error)

    def row(self) -> ResultRow:
        shown = self.given if self.number is None else self.number.e164
        result = self.plan if self.plan is not None else self.error or self.same_line_as
        assert result is not None
        return ResultRow(shown, result)

    def to_dict(self) -> dict[str, Any]:
        return record(
            index=self.index,
            key=str(self.index),
            input=self.given,
            number=self.number,
            availability=self.availability,
            plan=self.plan,
            error=self.error,
            attempts=self.attempts,
            same_line_as=self.same_line_as,
        )

    async def check(self, client: PlugzClient, planner: RegistrationPlanner) -> None:
        """Check the number (counting the requests sent) and plan the answer, once."""
        assert self.number is not None

        async def count(route: str, send: Send) -> dict[str, Any]:
            self.attempts += 1
            return await send()

        try:
            availability = await client.check_availability(self.number, middlewares=(count,))
        except PlugzError as error:
            self.error = error
        else:
            self.availability, self.plan = availability, planner.plan(availability)


def _stops_the_rest(error: Exception | None) -> bool:
    """A refused credential or an unknown instance: every other number would meet it."""
    return isinstance(error, (AuthenticationError, InstanceNotFoundError, ConfigurationError))


async def check_all(app: App, planner: RegistrationPlanner, numbers: Sequence[Checked]) -> None:
    """Check every number that could be read, a line once: the first alone, then the rest
    a few at a time; a refused credential is every number's error, sent once.

    A number whose line an earlier number with an answer holds is not checked: it names
    that number. One whose line's number is being checked waits for it; if that number
    gets no answer, the line is free, and the next number of it is checked.
    """
    todo = [n for n in numbers if n.number is not None]
    if not todo:
        return
    async with AsyncExitStack() as stack:
        try:
            client = await app.open_client(stack)
        except ConfigurationError as error:  # missing credentials: nothing was sent
            if not app.args.json:
                raise  # one line on stderr, as for any run-level error
            for number in todo:
                number.error = error
            return
        seen = SeenLines()
        limit = asyncio.Semaphore(AT_ONCE)

        async def one(number: Checked) -> None:
            assert number.number is not None
            while True:
                claim = seen.claim(number.index, number.number)
                if isinstance(claim, int):  # the number holds its line: checked
                    break
                if isinstance(claim, SameLine):  # an earlier number has the line's answer
                    number.same_line_as = claim
                    return
                await claim.wait()  # the line's number is being checked
            try:
                async with limit:
                    await number.check(client, planner)
            finally:
                seen.settle(claim, answered=number.availability is not None)

        await one(todo[0])
        if _stops_the_rest(todo[0].error):
            for number in todo[1:]:
                number.error = todo[0].error
            return
        await asyncio.gather(*(one(number) for number in todo[1:]))


async def check(app: App) -> int:
    planner = app.planner()
    region = app.region
    numbers = [Checked.parse(index, given, region) for index, given in enumerate(app.args.numbers)]
    if all(n.error is not None for n in numbers) and not app.args.json:
        raise CommandFailed("; ".join(str(n.error) for n in numbers), EXIT_USAGE)
    await check_all(app, planner, numbers)
    old_forms = OldForms()
    for number in numbers:  # a line once: a number whose line an earlier one holds is no other
        old_forms.see(number.number, same_line=number.same_line_as)
    if app.args.json:
        app.print_json([n.to_dict() for n in numbers])  # valid JSON in every case
    else:
        app.out.print(results_table([n.row() for n in numbers], app.clock.now()))
        # How to fix a number (give --region), in a message of its own: never cut by a
        # cell; said once, however many numbers need it.
        hints = [fix_hint(n.error) for n in numbers if n.error is not None]
        said = [hint for hint in hints if hint is not None]
        if said:
            more = len(said) - 1
            also = f" ({plural(more, 'more number')} the same)" if more else ""
            app.err.print(f"{PROG}: {said[0]}{also}", markup=False, highlight=False)
    old_forms.say(app)
    # A run-level error (a refused token, an API out of reach) is said once, on stderr.
    for number in numbers:
        if isinstance(number.error, PlugzError) and is_run_error(number.error):
            app.fail_line(number.error)
            break
    # The most serious: unreachable (4), then an API error (3), then a bad number (2).
    return max((exit_code_for(n.error) for n in numbers if n.error is not None), default=EXIT_OK)


async def plan(app: App) -> int:
    planner = app.planner()
    try:
        number = Checked(0, app.args.number, app.parse_number(app.args.number))
    except InvalidPhoneNumber as error:  # said as check says it
        raise CommandFailed(str(error), EXIT_USAGE) from None
    old_forms = OldForms()
    old_forms.see(number.number)
    old_forms.say(app)
    async with AsyncExitStack() as stack:
        client = await app.open_client(stack)
        await number.check(client, planner)
    if number.error is not None:
        raise number.error
    assert number.plan is not None
    if app.args.json:
        app.print_json(number.to_dict())
    else:
        app.out.print(results_table([number.row()], app.clock.now()))
    if not app.args.wait:
        return EXIT_OK
    return await _wait(app, number.plan)


async def _wait(app: App, plan: RegistrationPlan) -> int:
    """Count down to the plan's first channel; exit 0 the moment it opens, never before."""
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
