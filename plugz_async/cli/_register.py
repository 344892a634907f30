"""``plugz-async register``: the whole registration of one number, with a person at hand.

It asks for what the server wants (the code, a captcha's text, the two-step PIN, an
approval on the old phone). Nobody to answer means no code request: a closed standard
input is refused before any, and its end at a question stops the registration.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import select
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from rich.live import Live

from plugz_async._models import Channel
from plugz_async._phone import PhoneNumber
from plugz_async._planner import RegistrationPlanner
from plugz_async._registration import (
    CONNECTED_TIMEOUT,
    EventKind,
    RegistrationEvent,
    RegistrationOutcome,
)

from ._app import (
    EXIT_NOT_CONNECTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    App,
    CommandFailed,
    OldForms,
    connection_options,
    non_negative,
)
from ._render import humanize

__all__ = ["InputEnded", "add_register", "register", "stdin_at_end"]


def add_register(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "register",
        description="Run the whole registration: check, wait for the first channel, request "
        "the code, then ask you for the code (and a captcha, a PIN, an approval on the old "
        "phone when the server asks). An empty code means none came: the next channel is "
        "tried when it opens.",
    )
    parser.add_argument("number", metavar="NUMBER")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print how it ended as JSON (the questions and progress stay on stderr)",
    )
    parser.add_argument(
        "--connected-timeout",
        type=non_negative,
        default=CONNECTED_TIMEOUT,
        metavar="S",
        help="seconds the instance's status is asked, once the last step succeeded, until it"
        f" says connected (default {CONNECTED_TIMEOUT:g}; 0: ask once)",
    )
    connection_options(parser)
    return parser


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


class Prompts:
    """What ``register`` asks a person, on the terminal (or piped standard input)."""

    def __init__(self, app: App) -> None:
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


async def register(app: App) -> int:
    planner = app.planner()
    number = app.parse_number(app.args.number)
    if stdin_at_end():
        # Against the real API a code request is a real SMS or call: refuse before any.
        raise CommandFailed(
            "standard input is at its end, so nobody could type the code that register "
            "would request; run it in a terminal, or pipe the answers in",
            EXIT_USAGE,
        )
    old_form = OldForms()
    old_form.see(number)
    old_form.say(app)
    prompts = Prompts(app)
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
    app: App, planner: RegistrationPlanner, number: PhoneNumber, prompts: Prompts
) -> int:
    async with AsyncExitStack() as stack:
        client = await app.open_client(stack)
        if app.args.sandbox:
            from plugz_async.sandbox import CAPTCHA_TEXT, CONFIRMATION_CODE, PIN

            app.err.print(
                f"Sandbox: the code is {CONFIRMATION_CODE}, the captcha says {CAPTCHA_TEXT}, "
                f"the PIN is {PIN}.",
                markup=False,
            )
        registration = client.registration(
            number,
            planner=planner,
            code_timeout=None,
            on_event=prompts.hear,
            connected_timeout=app.args.connected_timeout,
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
    if app.args.json:
        app.print_json(result.to_dict())
    elif result.connected:
        app.out.print(
            f"[green]{number.e164} is connected[/green] (code by {result.channel}; the"
            " instance's status says so)."
        )
    elif result.outcome is RegistrationOutcome.NOT_CONNECTED:
        said = result.instance_error or "nothing (no error given)"
        app.out.print(
            f"{number.e164}: {result.outcome.value}: the registration went through, but the"
            f" instance is not connected; its status says: {said}",
            markup=False,
        )
    else:
        note = f": {result.reason}" if result.reason else ""
        app.out.print(f"{number.e164}: {result.outcome.value}{note}", markup=False)
    return EXIT_OK if result.connected else EXIT_NOT_CONNECTED
