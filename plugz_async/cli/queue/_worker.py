"""``plugz-async worker``: a worker of the durable queue, until SIGTERM or Ctrl-C.

It runs a `QueueWorker` with the instance tokens of its own credentials (a JSON file,
``PLUGZ_INSTANCE_ID`` and ``PLUGZ_INSTANCE_TOKEN``, or the flags), checks everything it
can before it starts (the Redis answers, the Client-Token and the tokens are there, the
rate limit reads), says in one line that it started and in one that it stopped, and
stops gracefully: no new step, the steps in flight finish. ``--web`` also serves saq's
web UI of its queue, on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import stat
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from plugz_async._config import (
    ENV_BASE_URL,
    ENV_CLIENT_TOKEN,
    ENV_INSTANCE_ID,
    ENV_INSTANCE_TOKEN,
    base_url_of,
)
from plugz_async._errors import ConfigurationError, InvalidArgument
from plugz_async._registration import CONNECTED_POLL_INTERVAL, CONNECTED_TIMEOUT
from plugz_async.cli._app import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    App,
    CommandFailed,
    at_least_one,
    log_handler,
    non_negative,
    positive,
)
from plugz_async.cli._render import plural

from ._redis import (
    RedisTarget,
    ping,
    planning_options,
    redis_errors,
    redis_options,
    redis_target,
    require_queue_extra,
)

if TYPE_CHECKING:
    from plugz_async._planner import RegistrationPlanner
    from plugz_async.queue import QueueWorker

__all__ = ["ENV_INSTANCES_FILE", "WEB_HOST", "add_worker", "rate_limit", "worker"]

ENV_INSTANCES_FILE = "PLUGZ_INSTANCES_FILE"

#: saq's web UI can abort and retry jobs, with no password by default: loopback only.
WEB_HOST = "127.0.0.1"


def rate_limit(text: str) -> str | None:
    """An argparse type: a ``limits`` rate (``5/second``, ``100 per minute``), or
    ``none``."""
    if text.strip().lower() == "none":
        return None
    try:
        from limits import parse_many
    except ImportError:  # no 'queue' extra: the command says so when it runs
        return text
    try:
        items = parse_many(text)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a rate: write one like '5/second' or '100 per minute' "
            "(at least 1), or 'none'"
        )
    return text


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return value


def add_worker(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "worker",
        description="Run the steps of queued registrations (plugz-async queue register) "
        "until SIGTERM or Ctrl-C, then stop gracefully: no new step is taken, the steps in "
        "flight finish (--shutdown-grace seconds at most; a step cut then runs again on "
        "another worker); a second SIGTERM or Ctrl-C stops it at once. Run as many workers "
        "as you like, on as many machines: they share the queue through Redis. Instance "
        "tokens stay with the workers: never in Redis.",
        epilog="Exit codes: 0 stopped gracefully; 2 usage (bad options, no Redis URL, no "
        "Client-Token, no instance tokens, an unreadable instances file, the 'queue' extra "
        "missing, the web UI's port taken); 4 Redis cannot be reached; 130 a second SIGTERM or "
        "Ctrl-C cut the graceful stop short.",
    )
    redis_options(parser)
    _work_options(parser)
    _credential_options(parser)
    planning_options(parser)
    _web_options(parser)
    return parser


def _work_options(parser: argparse.ArgumentParser) -> None:
    """How the worker runs: steps at once, the rate limit, the waits, the graceful stop."""
    work = parser.add_argument_group("the worker")
    work.add_argument(
        "--concurrency",
        type=at_least_one,
        default=10,
        metavar="N",
        help="steps at once, checks and timed steps together (10; 2 at least)",
    )
    work.add_argument(
        "--timed-concurrency",
        type=at_least_one,
        default=None,
        metavar="N",
        help="of those, kept for code requests, confirms and polls, which checks never take"
        " (three quarters by default)",
    )
    work.add_argument(
        "--rate-limit",
        type=rate_limit,
        default="5/second",
        metavar="RATE",
        help="API requests per instance, across all workers: '5/second' (the default), "
        "'100 per minute', or 'none'",
    )
    work.add_argument(
        "--input-timeout",
        type=positive,
        default=600.0,
        metavar="S",
        help="seconds a code, captcha text or PIN is waited for; then the next channel is "
        "tried (code) or the registration ends (default 600)",
    )
    work.add_argument(
        "--device-poll-interval",
        type=positive,
        default=5.0,
        metavar="S",
        help="seconds between asking whether a device transfer was approved (default 5)",
    )
    work.add_argument(
        "--canonical-numbers",
        action="store_true",
        help="send each number in its line's current form: a Brazilian mobile queued in its"
        " old 8-digit form goes with its ninth digit (default: as queued;"
        " PLUGZ_CANONICAL_NUMBERS=1 does the same)",
    )
    work.add_argument(
        "--connected-timeout",
        type=non_negative,
        default=CONNECTED_TIMEOUT,
        metavar="S",
        help="seconds the instance's status is asked, once the last step succeeded, until it"
        " says connected; then the registration ends not_connected (default 5; 0: ask once)",
    )
    work.add_argument(
        "--connected-poll-interval",
        type=positive,
        default=CONNECTED_POLL_INTERVAL,
        metavar="S",
        help="seconds between two of those questions (default 1)",
    )
    work.add_argument(
        "--timeout", type=positive, default=15.0, metavar="S", help="per API request (15)"
    )
    work.add_argument(
        "--shutdown-grace",
        type=positive,
        default=30.0,
        metavar="S",
        help="seconds a stopping worker lets its steps in flight finish (default 30)",
    )


def _credential_options(parser: argparse.ArgumentParser) -> None:
    """The instance tokens, the Client-Token and the API's address (the worker's own)."""
    credentials = parser.add_argument_group(
        "credentials",
        f"Instance tokens from --instances (else {ENV_INSTANCES_FILE}), a JSON object of "
        '"instance id": "token" pairs, plus --instance-id and --instance-token (else '
        f"{ENV_INSTANCE_ID} and {ENV_INSTANCE_TOKEN}); the account's Client-Token from "
        f"--client-token (else {ENV_CLIENT_TOKEN}); the API's address from --base-url (else "
        f"{ENV_BASE_URL}). Prefer the variables and a file only you can read: flags show in ps.",
    )
    credentials.add_argument("--instances", metavar="FILE", help="the instances file")
    credentials.add_argument("--instance-id", metavar="ID")
    credentials.add_argument("--instance-token", metavar="TOKEN")
    credentials.add_argument("--client-token", metavar="TOKEN")
    credentials.add_argument(
        "--base-url", metavar="URL", help="default: https://api.plugzapi.com.br"
    )


def _web_options(parser: argparse.ArgumentParser) -> None:
    """saq's web UI of the queue, on loopback only."""
    web = parser.add_argument_group("web UI")
    web.add_argument(
        "--web",
        action="store_true",
        help=f"also serve saq's web UI of this queue on {WEB_HOST} (jobs, retries, aborts)",
    )
    web.add_argument(
        "--web-port",
        type=_port,
        default=8080,
        metavar="N",
        help="the web UI's port (default 8080; 0: any free port)",
    )


# -- what the worker needs, checked before it starts -------------------------------------------


def _client_token(app: App) -> str:
    token = (app.args.client_token or os.environ.get(ENV_CLIENT_TOKEN, "")).strip()
    if not token:
        raise CommandFailed(
            f"the worker needs the account's Client-Token: set {ENV_CLIENT_TOKEN} (or give "
            "--client-token)",
            EXIT_USAGE,
        )
    app.add_secrets(token)
    return token


def _base_url(app: App) -> str | None:
    given = (app.args.base_url or os.environ.get(ENV_BASE_URL, "")).strip()
    if not given:
        return None
    try:
        return base_url_of(given)
    except ConfigurationError as error:
        source = "--base-url" if app.args.base_url else ENV_BASE_URL
        raise CommandFailed(f"{source}: {error}", EXIT_USAGE) from None


def _credentials(app: App) -> dict[str, str]:
    """The instance tokens: the file's, then the single instance of the flags or the
    variables (its secrets join the ones ``app`` masks)."""
    args = app.args
    found: dict[str, str] = {}
    path = (args.instances or os.environ.get(ENV_INSTANCES_FILE, "")).strip()
    if path:
        require_queue_extra()
        from plugz_async.queue import read_credentials_file

        try:
            found.update(read_credentials_file(path))
        except ConfigurationError as error:
            raise CommandFailed(str(error), EXIT_USAGE) from None
        app.add_secrets(*found.values())
        try:
            mode = os.stat(path).st_mode
        except OSError:  # pragma: no cover - it was just read
            mode = 0
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            app.err.print(
                f"{PROG}: warning: the instances file {path} can be read by other users: "
                f"chmod 600 {path}",
                markup=False,
            )
    instance = (args.instance_id or os.environ.get(ENV_INSTANCE_ID, "")).strip()
    token = (args.instance_token or os.environ.get(ENV_INSTANCE_TOKEN, "")).strip()
    app.add_secrets(token)
    if args.instance_id and not token:
        raise CommandFailed(
            f"--instance-id needs its token: --instance-token or {ENV_INSTANCE_TOKEN}", EXIT_USAGE
        )
    if args.instance_token and not instance:
        raise CommandFailed(
            f"--instance-token needs its instance: --instance-id or {ENV_INSTANCE_ID}", EXIT_USAGE
        )
    if instance and token:
        found[instance] = token
    if not found:
        raise CommandFailed(
            f"the worker has no instance tokens: give --instances FILE (or set "
            f"{ENV_INSTANCES_FILE}), or {ENV_INSTANCE_ID} and {ENV_INSTANCE_TOKEN}",
            EXIT_USAGE,
        )
    return found


# -- running -----------------------------------------------------------------------------------


async def _serve_web(stack: AsyncExitStack, target: RedisTarget, port: int) -> str:
    """saq's web UI of the queue on ``WEB_HOST:port``, until ``stack`` closes; its URL."""
    from aiohttp import web
    from saq import Queue
    from saq.queue.redis import RedisQueue
    from saq.web.aiohttp import create_app

    from plugz_async.queue import checks_queue_name

    # Both lanes (timed steps, checks), each with a Redis of its own: the app's shutdown
    # disconnects every queue it was given.
    saq_queues: list[Queue] = [
        RedisQueue.from_url(target.url, name=name)
        for name in (target.queue, checks_queue_name(target.queue))
    ]
    for saq_queue in saq_queues:
        await saq_queue.connect()
    app = create_app(saq_queues)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    try:
        await web.TCPSite(runner, WEB_HOST, port).start()
    except OSError as error:
        raise CommandFailed(
            f"cannot serve the web UI on {WEB_HOST}:{port} ({error.strerror or error}); "
            "choose another --web-port (0: any free port)",
            EXIT_USAGE,
        ) from None
    bound = runner.addresses[0][1]
    return f"http://{WEB_HOST}:{bound}/queues/{target.queue}"


class _Signals:
    """SIGTERM and SIGINT, from the moment the command starts until it ends.

    The first asks the worker to stop gracefully (one that comes while the command still
    checks Redis, say, is kept: the worker then stops as soon as it starts); the second
    cuts the stop short (`run` returns False: steps cut then run again on another
    worker). The worker is built with ``handle_signals=False``, so the handlers stay
    these.

    Use it as ``with _Signals(app, grace) as signals: await signals.run(worker)``.
    """

    NAMES = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, app: App, grace: float) -> None:
        self.app = app
        self.grace = grace
        self.asked = False
        self.cut = False
        self._worker: QueueWorker | None = None
        self._running: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None

    def __enter__(self) -> _Signals:
        loop = asyncio.get_running_loop()
        for signum in self.NAMES:
            loop.add_signal_handler(signum, self._received)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for signum in self.NAMES:
            loop.remove_signal_handler(signum)

    def _received(self) -> None:
        if not self.asked:
            self.asked = True
            self.app.err.print(
                f"{PROG}: worker stopping: no new step; the steps in flight finish (within "
                f"{self.grace:g} s). Ctrl-C (or SIGTERM) again to stop at once.",
                markup=False,
            )
            if self._worker is not None:
                self._stopping = asyncio.get_running_loop().create_task(self._worker.stop())
        elif self._running is not None and not self.cut:
            self.cut = True
            self._running.cancel()

    async def run(self, queue_worker: QueueWorker) -> bool:
        """Run the worker until a signal, then let it stop: True once it stopped
        gracefully, False when a second signal cut its stop short."""
        if self.asked:
            return True
        self._worker = queue_worker
        self._running = asyncio.create_task(queue_worker.run())
        try:
            await self._running
        except asyncio.CancelledError:
            if not self.cut:  # this command itself is cancelled
                raise
            return False
        return True


def _quiet_logs(app: App) -> list[tuple[logging.Logger, logging.Handler, int]]:
    """The worker's warnings (and saq's) on stderr, masked; INFO and more with
    ``--verbose`` (which shows every request). Undone by `_restore_logs`."""
    verbose = bool(app.args.verbose)
    attached = []
    names = ["saq"] if verbose else ["saq", "plugz_async"]  # --verbose: main logs ours
    for name in names:
        logger = logging.getLogger(name)
        handler = log_handler(app, logging.INFO if verbose else logging.WARNING)
        attached.append((logger, handler, logger.level))
        logger.addHandler(handler)
        if verbose:
            logger.setLevel(logging.INFO)
    return attached


def _restore_logs(attached: list[tuple[logging.Logger, logging.Handler, int]]) -> None:
    for logger, handler, level in attached:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _queue_worker(
    app: App, target: RedisTarget, planner: RegistrationPlanner
) -> tuple[QueueWorker, int]:
    """The worker the options ask for, and how many instances it holds tokens for; all
    it needs checked before it starts.

    Raises:
        CommandFailed: an option, the Client-Token or the tokens are missing or wrong
            (exit 2).
    """
    args = app.args
    client_token = _client_token(app)
    base_url = _base_url(app)
    credentials = _credentials(app)
    require_queue_extra()
    from plugz_async.queue import QueueWorker

    try:
        queue_worker = QueueWorker(
            target.url,
            queue=target.queue,
            concurrency=args.concurrency,
            timed_concurrency=args.timed_concurrency,
            credentials=credentials,
            client_token=client_token,
            base_url=base_url,
            rate_limit=args.rate_limit,
            planner=planner,
            input_timeout=args.input_timeout,
            device_poll_interval=args.device_poll_interval,
            connected_timeout=args.connected_timeout,
            connected_poll_interval=args.connected_poll_interval,
            canonical_numbers=app.canonical_numbers,
            request_timeout=args.timeout,
            shutdown_grace=args.shutdown_grace,
            clock=app.clock,
            environ={},
            handle_signals=False,
        )
    except (InvalidArgument, ConfigurationError) as error:
        raise CommandFailed(str(error), EXIT_USAGE) from None
    return queue_worker, len(credentials)


def _started(app: App, target: RedisTarget, worker: QueueWorker, instances: int) -> str:
    """The line that says the worker started: its queue, Redis, and how it runs."""
    args = app.args
    limit = "no rate limit" if args.rate_limit is None else f"rate limit {args.rate_limit}"
    return (
        f"worker started: queue {target.queue!r} at {target.shown}, concurrency "
        f"{worker.concurrency} ({worker.timed_concurrency} kept for timed steps), {limit} per"
        f" instance, tokens for {plural(instances, 'instance')}"
    )


async def worker(app: App) -> int:
    args = app.args
    planner = app.planner()
    target = redis_target(app)
    queue_worker, instances = _queue_worker(app, target, planner)
    started = _started(app, target, queue_worker, instances)
    attached = _quiet_logs(app)
    try:
        with redis_errors(target), _Signals(app, args.shutdown_grace) as signals:
            await ping(target)
            async with AsyncExitStack() as stack:
                if args.web:
                    started += f", web UI at {await _serve_web(stack, target, args.web_port)}"
                app.say(app.redact(started))
                graceful = await signals.run(queue_worker)
    finally:
        _restore_logs(attached)
    if not graceful:
        app.say(
            f"worker interrupted: queue {target.queue!r} (the steps cut short run again on "
            "another worker)"
        )
        return EXIT_INTERRUPTED
    app.say(f"worker stopped: queue {target.queue!r}")
    return EXIT_OK
