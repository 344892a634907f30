"""``plugz-async dashboard``: the operator's page of a queue, served until Ctrl-C.

Read-only unless a token is given (``PLUGZ_DASHBOARD_TOKEN``, or ``--token-file``: never
on the command line, where ``ps`` shows it); bound to 127.0.0.1 unless ``--host`` says
otherwise. The page is ``plugz_async.dashboard``'s.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path
from typing import Any

from plugz_async._errors import InvalidArgument
from plugz_async.cli._app import EXIT_OK, EXIT_USAGE, App, CommandFailed, stop_signals

from ._redis import open_queue, redis_errors, redis_options, redis_target, require_queue_extra

__all__ = ["ENV_DASHBOARD_TOKEN", "add_dashboard", "dashboard"]

ENV_DASHBOARD_TOKEN = "PLUGZ_DASHBOARD_TOKEN"

#: The port unless told otherwise (plugz_async.dashboard.DEFAULT_PORT; a test keeps them
#: equal: the parser is built without the queue extra).
DEFAULT_PORT = 8090


def add_dashboard(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "dashboard",
        description="Serve the operator's page of a queue: counts by status, the "
        "registrations overdue, each worker's last heartbeat, the next hour's channel "
        "windows, any registration's events; live, read a page at a time. Read-only unless "
        f"{ENV_DASHBOARD_TOKEN} (or --token-file) gives the token that cancelling from the "
        "page asks for.",
        epilog="Exit codes: 0 stopped by Ctrl-C or SIGTERM; 2 usage (no Redis URL, a token "
        "too short, the port taken, the 'queue' extra missing); 4 Redis cannot be reached.",
    )
    redis_options(parser)
    page = parser.add_argument_group("the page")
    page.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to serve on (default 127.0.0.1: this machine only)",
    )
    page.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"default {DEFAULT_PORT}; 0: any free port",
    )
    page.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"read the token from FILE (else {ENV_DASHBOARD_TOKEN}); without one, the page "
        "is read-only",
    )
    page.add_argument(
        "--refresh",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between the page's updates (default 2)",
    )
    return parser


def _token(app: App) -> str | None:
    path: Path | None = app.args.token_file
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise CommandFailed(
                f"cannot read the token file {path} ({error.strerror or error})", EXIT_USAGE
            ) from None
    else:
        token = os.environ.get(ENV_DASHBOARD_TOKEN, "").strip()
    if token:
        app.add_secrets(token)
    return token or None


def _hosts(host: str, loopback: tuple[str, ...]) -> tuple[str, ...] | None:
    """The names the page answers to: loopback's and the one it is bound to; any, when
    bound to every interface (its users reach it by names it cannot know)."""
    if host in ("0.0.0.0", "::", ""):
        return None
    return (*loopback, host)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def dashboard(app: App) -> int:
    args = app.args
    target = redis_target(app)
    token = _token(app)
    require_queue_extra()
    from aiohttp import web

    from plugz_async.dashboard import LOOPBACK_NAMES, dashboard_app

    with redis_errors(target), stop_signals() as stopped:
        async with open_queue(app, target) as queue:
            try:
                served = dashboard_app(
                    queue,
                    token=token,
                    refresh=args.refresh,
                    hosts=_hosts(args.host, LOOPBACK_NAMES),
                )
            except InvalidArgument as error:
                raise CommandFailed(str(error), EXIT_USAGE) from None
            runner = web.AppRunner(served, handle_signals=False, access_log=None)
            await runner.setup()
            try:
                site = web.TCPSite(runner, args.host, args.port)
                try:
                    await site.start()
                except OSError as error:
                    raise CommandFailed(
                        f"cannot serve on {args.host}:{args.port} ({error.strerror or error});"
                        " choose another --port (0: any free port)",
                        EXIT_USAGE,
                    ) from None
                _say_started(app, target.queue, runner, token is not None)
                await stopped.wait()
            finally:
                await runner.cleanup()
    app.err.print("dashboard stopped")
    return EXIT_OK


def _say_started(app: App, queue: str, runner: Any, writable: bool) -> None:
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    mode = "cancel needs the token" if writable else "read-only"
    app.say(app.redact(f"dashboard of queue {queue!r} at http://{shown}:{port}/ ({mode})"))
    if not _loopback(app.args.host):
        app.err.print(
            f"warning: serving on {app.args.host}, beyond this machine: anyone who reaches it"
            " sees the queue's numbers (put it behind your own access control)",
            style="yellow",
            markup=False,
            highlight=False,
        )
