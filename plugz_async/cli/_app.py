"""What every command shares: exit codes, the options of a connection, and `App`.

`App` holds a command's parsed arguments, its clock, its two consoles (stdout for
results, stderr for everything else) and the secrets to mask; it opens the client the
options ask for (the sandbox only with ``--sandbox``: no other command loads it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import yarl

from plugz_async._bulk._items import SameLine
from plugz_async._client import PlugzClient
from plugz_async._clock import Clock
from plugz_async._config import ENV_CANONICAL_NUMBERS, ENV_DEFAULT_REGION, canonical_setting
from plugz_async._errors import (
    APIError,
    ConfigurationError,
    InvalidArgument,
    OutageError,
    PlugzError,
    ResponseDecodeError,
    TransportError,
)
from plugz_async._models import Channel
from plugz_async._phone import PhoneNumber, check_region
from plugz_async._planner import RegistrationPlanner
from plugz_async._redact import Redactor
from plugz_async._retry import default_policy

from ._explain import CredentialSource, explain
from ._render import console, old_forms_note

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
    "PROG",
    "App",
    "CommandFailed",
    "OldForms",
    "channel_list",
    "column_option",
    "connection_options",
    "exit_code_for",
    "log_handler",
    "positive",
    "proxy_secrets",
    "region_option",
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


def exit_code_for(error: BaseException) -> int:
    """The exit code an error means."""
    if isinstance(error, (InvalidArgument, ConfigurationError)):
        return EXIT_USAGE
    if isinstance(error, (TransportError, OutageError)):
        return EXIT_UNREACHABLE
    if isinstance(error, (APIError, ResponseDecodeError)):
        return EXIT_API
    return EXIT_UNEXPECTED


class CommandFailed(Exception):
    """A one-line failure of the command itself, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# -- options ------------------------------------------------------------------------------


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive(text: str) -> float:
    """An argparse type: a finite number more than 0."""
    value = _finite(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def non_negative(text: str) -> float:
    """An argparse type: a finite number, 0 or more."""
    value = _finite(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def at_least_one(text: str) -> int:
    """An argparse type: a whole number, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def channel_list(text: str) -> tuple[Channel, ...]:
    """An argparse type: channels, comma-separated (``sms,voice``)."""
    try:
        return tuple(Channel(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: channels are sms, voice and wa_old, comma-separated"
        ) from None


def region_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--region``: where numbers written without ``+`` are read (`App.region`)."""
    parser.add_argument(
        "--region",
        metavar="CC",
        help="read numbers written without + in this region, an ISO code such as BR "
        "(default: PLUGZ_DEFAULT_REGION; with neither, such a number must start with a "
        "country code that makes a valid number)",
    )


def column_option(parser: argparse.ArgumentParser) -> None:
    """``--column``: the header's column that holds the numbers, in a numbers file."""
    parser.add_argument(
        "--column",
        metavar="NAME",
        help="the header's column that holds the numbers (default: 'number', or 'ddi' and "
        "'phone', or the one of phone_number, phone, telefone, celular, whatsapp, mobile, "
        "msisdn the header has; with two of them, --column must say which)",
    )


def connection_options(parser: argparse.ArgumentParser) -> None:
    """The credentials, the sandbox switch, and the request and planning options."""
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
    group.add_argument(
        "--proxy",
        metavar="URL",
        help="send through this HTTP(S) proxy, http://[user:password@]host:port (default: "
        "HTTPS_PROXY / HTTP_PROXY, unless NO_PROXY names the host)",
    )
    tuning = parser.add_argument_group("requests and planning")
    region_option(tuning)
    tuning.add_argument(
        "--timeout",
        type=positive,
        default=10.0,
        metavar="S",
        help="per attempt (default 10; the attempts of a number take 30 s at most, or three "
        "timeouts when longer)",
    )
    tuning.add_argument(
        "--attempts", type=int, default=3, metavar="N", help="requests per number (default 3)"
    )
    tuning.add_argument(
        "--prefer",
        type=channel_list,
        default=(Channel.SMS, Channel.VOICE),
        metavar="LIST",
        help="channels in order of preference (default: sms,voice)",
    )
    tuning.add_argument(
        "--allow-wa-old",
        action="store_true",
        help="also plan the in-app pop-up (needs the phone that holds the number, in hand)",
    )
    tuning.add_argument(
        "--canonical-numbers",
        action="store_true",
        help="send each number in its line's current form: a Brazilian mobile written in "
        "its old 8-digit form goes with its ninth digit (default: as written; "
        f"{ENV_CANONICAL_NUMBERS}=1 does the same); results keep the number as written",
    )


# -- the application ------------------------------------------------------------------------


class App:
    """What every command shares: the clock, the consoles, and the secrets to mask."""

    def __init__(self, args: argparse.Namespace, clock: Clock) -> None:
        self.args = args
        self.clock = clock
        self.out = console()
        self.err = console(stderr=True)
        self.redactor = Redactor.of([])
        self._secrets: list[str] = []
        self.resume_hint: str | None = None
        # Where the credentials came from, once a client is open (for run-level errors).
        self.where: CredentialSource | None = None

    def redact(self, text: str) -> str:
        return self.redactor.redact(text)

    def add_secrets(self, *secrets: str) -> None:
        """Mask these too, from now on, in everything the command prints."""
        self._secrets += [secret for secret in secrets if secret]
        self.redactor = Redactor.of(self._secrets)

    def explain(self, error: PlugzError) -> str:
        """One line for a run-level error (what, where, what to check)."""
        where = self.where or CredentialSource(getattr(self.args, "base_url", None) or "")
        return explain(error, where, timeout=getattr(self.args, "timeout", None))

    def fail_line(self, error: PlugzError) -> None:
        """Say a run-level error in its one line on stderr."""
        self.err.print(f"{PROG}: error: {self.redact(self.explain(error))}", markup=False)

    @property
    def region(self) -> str | None:
        """The region numbers written without ``+`` are read in: ``--region``, else
        ``PLUGZ_DEFAULT_REGION``, else none.

        Raises:
            CommandFailed: a region phonenumbers does not know.
        """
        given = getattr(self.args, "region", None) or os.environ.get(ENV_DEFAULT_REGION, "")
        try:
            return check_region(given.strip() or None)
        except InvalidArgument as exc:
            flag = "--region" if getattr(self.args, "region", None) else ENV_DEFAULT_REGION
            raise CommandFailed(f"{flag}: {exc}", EXIT_USAGE) from None

    def parse_number(self, text: str) -> PhoneNumber:
        """``text`` read as the command reads numbers (in `region`)."""
        return PhoneNumber.parse(text, default_region=self.region)

    @property
    def canonical_numbers(self) -> bool:
        """Whether numbers are sent in their line's current form: ``--canonical-numbers``,
        else ``PLUGZ_CANONICAL_NUMBERS``.

        Raises:
            CommandFailed: ``PLUGZ_CANONICAL_NUMBERS`` is neither true nor false.
        """
        if getattr(self.args, "canonical_numbers", False):
            return True
        try:
            return canonical_setting(
                os.environ.get(ENV_CANONICAL_NUMBERS, ""), source=ENV_CANONICAL_NUMBERS
            )
        except ConfigurationError as exc:
            raise CommandFailed(str(exc), EXIT_USAGE) from None

    def note(self, text: str) -> None:
        """A note on stderr: something to know, not an error (``plugz-async: note: ...``)."""
        self.err.print(f"{PROG}: note: {text}", markup=False, highlight=False)

    def client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "clock": self.clock,
            "timeout": self.args.timeout,
            "retry": default_policy(self.args.timeout, attempts=max(1, self.args.attempts)),
            "default_region": self.region,
            "canonical_numbers": self.canonical_numbers,
        }
        proxy = getattr(self.args, "proxy", None)
        if proxy:
            options["proxy"] = proxy
            self.add_secrets(*proxy_secrets(proxy))
        return options

    async def open_client(self, stack: AsyncExitStack) -> PlugzClient:
        """The client the options ask for, closed with ``stack``."""
        args = self.args
        if args.sandbox:
            from plugz_async.sandbox import running  # the server, only when asked for

            sandbox = await stack.enter_async_context(running(**self.client_options()))
            self.err.print(f"Using the sandbox at {sandbox.base_url}", style="dim", markup=False)
            self.add_secrets(sandbox.instance_token, sandbox.client_token)
            self.where = CredentialSource(sandbox.base_url, sandbox=True)
            return sandbox.client
        flags = {
            "instance_id": args.instance_id,
            "instance_token": args.instance_token,
            "client_token": args.client_token,
        }
        options = {k: v for k, v in flags.items() if v}
        if args.base_url:
            options["base_url"] = args.base_url
        self.add_secrets(
            options.get("instance_token") or os.environ.get("PLUGZ_INSTANCE_TOKEN", ""),
            options.get("client_token") or os.environ.get("PLUGZ_CLIENT_TOKEN", ""),
        )
        client = PlugzClient.from_env(**options, **self.client_options())
        self.where = CredentialSource(client.base_url, flags=frozenset(options))
        return await stack.enter_async_context(client)

    def planner(self) -> RegistrationPlanner:
        prefer = self.args.prefer
        if self.args.allow_wa_old is False and Channel.WA_OLD in prefer:
            raise CommandFailed("--prefer names wa_old: add --allow-wa-old", EXIT_USAGE)
        return RegistrationPlanner(
            preference=prefer, allow_wa_old=self.args.allow_wa_old, clock=self.clock
        )

    def say(self, text: str) -> None:
        """One line of the command's outcome on stdout, as written: no markup, no
        highlighting, never wrapped (a script reads it whole)."""
        self.out.print(text, markup=False, highlight=False, soft_wrap=True)

    def print_json(self, data: Any) -> None:
        self.out.out(json.dumps(data, indent=2, ensure_ascii=False), highlight=False)


class OldForms:
    """The numbers of a run written in Brazil's old 8-digit form: said once, at the end of
    the run, as a note naming the first and counting the others (`say`). A row whose line
    an earlier row holds (``same_line``) is no other number: the run knows it as such, so
    nothing is kept here but the first number and the count."""

    def __init__(self, *, queued: bool = False) -> None:
        self.first: PhoneNumber | None = None
        self.count = 0
        #: Queued, not sent: how they are sent is the workers' choice.
        self.queued = queued
        #: The lines counted, when queued (a row of a line queued before is no new number).
        self._lines: set[PhoneNumber] | None = set() if queued else None

    def see(self, number: PhoneNumber | None, *, same_line: SameLine | None = None) -> None:
        """Count ``number`` if it is an old form, unless ``same_line`` (the row's
        ``same_line_as``) says an earlier row holds its line: that row was counted, or
        wrote the line's other form, and the line was sent as that row wrote it."""
        if number is not None and same_line is None and number.is_old_form:
            if self._lines is not None:  # queued: the queue keeps every row's line anyway
                if number.line in self._lines:
                    return
                self._lines.add(number.line)
            self.count += 1
            if self.first is None:
                self.first = number

    def say(self, app: App) -> None:
        """The one note of the run, when it met an old form."""
        if self.first is not None:
            canonical = None if self.queued else app.canonical_numbers
            app.note(old_forms_note(self.first, self.count - 1, canonical=canonical))


def proxy_secrets(proxy: str) -> list[str]:
    """The password in a ``--proxy`` URL, to mask (none when it is not a URL: the client
    refuses it then, without showing it)."""
    try:
        password = yarl.URL(proxy).password
    except ValueError:
        return [proxy]
    return [password] if password else []


def log_handler(app: App, level: int = logging.NOTSET) -> logging.Handler:
    """A stderr handler for the SDK's logs, masking the command's secrets once more (the
    ones ``app.redactor`` holds when a record is written, not when the handler is made)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    class _Mask(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.msg = app.redact(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:  # a traceback, masked too
                record.msg += "\n" + app.redact(
                    logging.Formatter().formatException(record.exc_info)
                )
                record.exc_info = None
                record.exc_text = None
            return True

    handler.addFilter(_Mask())
    return handler


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT (Ctrl-C) or SIGTERM (a supervisor's stop, ``docker stop``),
    from the moment the block starts: either ends the command cleanly, with its one line. A
    SIGINT ignored when the process started (a background job of a shell without job
    control) stays ignored, as every program does."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    wanted = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        wanted.append(signal.SIGINT)
    for signum in wanted:
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
        handled.append(signum)
    try:
        yield stop
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
