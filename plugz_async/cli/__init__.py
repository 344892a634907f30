"""``plugz-async``: check numbers, plan and wait for code channels, run the sandbox, run
and feed the durable registration queue.

A small ``main`` and a registry of commands (pip's ``commands/`` is the model): each
command lives in a module of its own, imported only when that command runs, so
``plugz-async check`` never loads the sandbox server. `COMMANDS` maps a command's name
to its module, and each module offers ``add_<name>(subparsers)`` and an async function
that runs it.

Exit codes:

==== =================================================================
0    done (for ``check``: every number was checked; ``worker``: stopped gracefully)
1    an unexpected error (a bug: please report it)
2    usage: bad arguments, an invalid number, missing credentials (or Redis URL, or
     the ``queue`` extra), a number the queue has no registration of
3    the API answered with an error (or an answer that could not be read)
4    the API (or the queue's Redis) could not be reached (refused, dropped, timed out)
5    ``plan --wait``: the plan has no channel to wait for
6    ``register``: the registration ended without connecting (banned, no code...)
7    not complete: ``bulk``: rows ended in an error that may pass (``--resume`` checks
     them again); ``queue register``: rows not queued; ``queue code`` (``captcha``,
     ``pin``): the registration does not wait for it; ``demo --queue``: registrations
     that did not end in time
130  interrupted (Ctrl-C)
==== =================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import attrs

from plugz_async._clock import Clock, SystemClock
from plugz_async._errors import PlugzError
from plugz_async._version import __version__

from ._app import (
    EXIT_API,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_NO_CHANNEL,
    EXIT_NOT_CONNECTED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    PROG,
    App,
    CommandFailed,
    exit_code_for,
    log_handler,
)
from ._explain import is_run_error

__all__ = [
    "COMMANDS",
    "EXIT_API",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_CONNECTED",
    "EXIT_NO_CHANNEL",
    "EXIT_OK",
    "EXIT_UNEXPECTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Command",
    "build_parser",
    "main",
    "run",
]


AddParser = Callable[[Any], argparse.ArgumentParser]
RunCommand = Callable[[App], Coroutine[Any, Any, int]]


@attrs.frozen
class Command:
    """A command of the registry: where it lives, and the names of its two parts.

    Attributes:
        module: the module, imported only when the command runs (or its help is shown).
        add: the module's function that adds the command's parser to the subparsers.
        run: the module's async function that runs it, ``(App) -> exit code``.
        summary: one line for ``plugz-async --help`` (the command's help: written only
            here, its parser takes it from here).
    """

    module: str
    add: str
    run: str
    summary: str

    def load(self) -> tuple[AddParser, RunCommand]:
        module = importlib.import_module(self.module, __name__)
        return getattr(module, self.add), getattr(module, self.run)


COMMANDS: dict[str, Command] = {
    "check": Command(
        "._check", "add_check", "check", "check numbers and show when each code channel opens"
    ),
    "plan": Command(
        "._check", "add_plan", "plan", "plan one number; --wait waits for its first channel"
    ),
    "demo": Command(
        "._demo", "add_demo", "demo", "the whole job on the built-in sandbox, no account needed"
    ),
    "bulk": Command(
        "._bulk", "add_bulk", "bulk", "check a file of numbers into a results file, resumable"
    ),
    "register": Command(
        "._register",
        "add_register",
        "register",
        "register a number interactively: code, captcha, PIN, device transfer",
    ),
    "sandbox": Command(
        "._demo",
        "add_sandbox",
        "serve_sandbox",
        "run the sandbox server (a local stand-in of the API)",
    ),
    "worker": Command(
        ".queue._worker",
        "add_worker",
        "worker",
        "run a worker of the durable queue until SIGTERM or Ctrl-C",
    ),
    "dashboard": Command(
        ".queue._dashboard",
        "add_dashboard",
        "dashboard",
        "serve the operator's page of a queue: counts, overdue, workers, windows, events",
    ),
    "queue": Command(
        ".queue",
        "add_queue",
        "queue",
        "durable registrations: queue numbers, see where they stand, give codes",
    ),
}


class _Summarized:
    """The subparsers as a command's ``add_<name>`` sees them: its one-line help is its
    `Command.summary`, written once, in `COMMANDS`."""

    def __init__(self, commands: Any) -> None:
        self._commands = commands

    def add_parser(self, name: str, **options: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._commands.add_parser(
            name, help=COMMANDS[name].summary, **options
        )
        return parser


def _global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """The options of the whole command line (``--verbose``, ``--version``), which may come
    before the command or after it."""
    parser.add_argument(
        "--version",
        action="version",
        version=f"{PROG} {__version__}",
        # Said once, in the main parser's help; a command's help lists only --verbose.
        help=argparse.SUPPRESS if default is argparse.SUPPRESS else None,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log requests to stderr"
    )


class _CommandParser(argparse.ArgumentParser):
    """The parser of a command (and of a ``queue`` subcommand: argparse makes those of this
    class too): it takes the global options as well, so ``check ... --verbose`` works as
    ``--verbose check ...`` does. Given here, an option is set; not given, it is left to
    the main parser's default (``SUPPRESS``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _global_options(self, default=argparse.SUPPRESS)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser: every command listed, and the full options of ``command`` (of every
    command when ``None``: that imports them all)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check WhatsApp numbers for registration on PlugzAPI / Z-API and plan "
        "when each confirmation-code channel opens.",
        epilog="Exit codes: 0 ok, 1 unexpected, 2 usage, 3 API error, 4 API unreachable, "
        "5 no channel to wait for, 6 registration not connected, 7 incomplete (bulk rows to "
        "check again, queue rows not queued...), 130 interrupted.",
    )
    _global_options(parser, default=False)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
    )
    for name, entry in COMMANDS.items():
        if command is None or name == command:
            entry.load()[0](_Summarized(commands))
        else:  # listed, not loaded
            commands.add_parser(name, help=entry.summary, add_help=False)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: its first word that is not an option."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None, *, clock: Clock | None = None) -> int:
    """Run the command line; return the exit code (``run()`` exits with it)."""
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_in(words)).parse_args(words)
    command = COMMANDS[args.command].load()[1]
    app = App(args, clock or SystemClock())
    package_logger = logging.getLogger("plugz_async")
    handler, level = log_handler(app), package_logger.level
    if args.verbose:
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.DEBUG)
    try:
        return asyncio.run(command(app))
    except KeyboardInterrupt:
        if args.command == "sandbox":
            app.err.print("sandbox stopped")
            return EXIT_OK
        app.err.print(f"{PROG}: interrupted", markup=False)
        if app.resume_hint:
            app.err.print(app.resume_hint, markup=False)
        return EXIT_INTERRUPTED
    except CommandFailed as fail:
        app.err.print(f"{PROG}: error: {app.redact(str(fail))}", markup=False)
        return fail.code
    except PlugzError as error:
        said = app.explain(error) if is_run_error(error) else f"{type(error).__name__}: {error}"
        app.err.print(f"{PROG}: error: {app.redact(said)}", markup=False)
        return exit_code_for(error)
    except Exception as error:  # a bug: one line, the traceback only with --verbose
        message = app.redact(f"{type(error).__name__}: {error}")
        app.err.print(f"{PROG}: unexpected error: {message}", markup=False)
        if args.verbose:
            trace = "".join(traceback.format_exception(error))
            app.err.print(app.redact(trace), highlight=False, markup=False)
        else:
            app.err.print("run again with --verbose for the traceback", highlight=False)
        return EXIT_UNEXPECTED
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(level)


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())
