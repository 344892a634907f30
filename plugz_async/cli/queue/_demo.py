"""``plugz-async demo --queue``: the durable queue end to end, on one machine, no account.

It starts what a deployment runs: a redis-server of its own (on a free loopback port,
in a temporary folder, nothing saved), the sandbox (20 instances, its waits scaled down
to seconds), and two worker processes (``plugz-async worker``, as you would run them).
It queues twenty numbers with `RegistrationQueue`, each on an instance of its own: the
sandbox's test numbers that make sense for a registration, and numbers of its seeded
mix. As the registrations ask, it gives them the codes the sandbox "sent", the
captcha's text and the PIN, the way a person or an SMS gateway would; a live table shows
where each stands until every one has ended (or ``TIMEOUT``). Then it stops everything
it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from rich.console import Group
from rich.live import Live
from rich.text import Text

from plugz_async._errors import RegistrationStateError
from plugz_async._phone import PhoneNumber
from plugz_async.cli._app import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    PROG,
    App,
    CommandFailed,
)
from plugz_async.cli._render import counts_table, statuses_table
from plugz_async.sandbox import CAPTCHA_TEXT, PIN, SandboxConfig, SandboxThread
from plugz_async.testing._redis_server import (
    INSTALL_HINT,
    RedisError,
    RedisServer,
    find_redis_server,
    stop_process,
)

from ._parser import OVERDUE_AFTER
from ._redis import RedisTarget, open_queue, redis_errors, require_queue_extra

if TYPE_CHECKING:
    from plugz_async.queue import RegistrationQueue, RegistrationStatus

__all__ = ["NUMBERS", "TIMEOUT", "queue_demo"]

#: How long the registrations may take before the demo gives up on them (seconds).
TIMEOUT = 90.0
WORKERS = 2
QUEUE_NAME = "demo"

#: The numbers, with the scenario each plays: the sandbox's test numbers that make sense
#: for a registration, then numbers of its seeded mix (ready, waits, banned...).
NUMBERS: tuple[tuple[str, str], ...] = (
    ("+55 11 90000-0001", "ready"),
    ("+55 11 90000-0002", "waits"),
    ("+55 11 90000-0003", "wa_old-not-eligible"),
    ("+55 11 90000-0004", "banned"),
    ("+55 11 90000-0005", "unavailable"),
    ("+55 11 90000-0006", "voice-first"),
    ("+55 11 90000-0007", "blocked-at-code-request"),
    ("+55 11 90000-0008", "captcha"),
    ("+55 11 90000-0009", "pin"),
    ("+55 11 90000-0010", "device-transfer"),
    ("+55 11 90000-0012", "growing-waits"),
    *((f"+55 21 9{4000 + i:04d}-{(1234 + 1111 * i) % 10_000:04d}", "mix") for i in range(9)),
)


# -- workers ---------------------------------------------------------------------------------------


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(line for line in text.splitlines()[-lines:] if line.strip())


def _write_instances(directory: Path, tokens: dict[str, str]) -> Path:
    """The workers' instances file, readable by this user only (mode 0600)."""
    path = directory / "instances.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(tokens, f)
    return path


@contextlib.contextmanager
def _workers(env: dict[str, str], directory: Path) -> Iterator[list[_Worker]]:
    """``WORKERS`` worker processes, each logging to a file of ``directory``; stopped
    with SIGTERM (and waited for) at the end, whatever happened."""
    started: list[_Worker] = []
    try:
        for i in range(1, WORKERS + 1):
            started.append(_Worker.start(i, env, directory))
        yield started
    finally:
        for one in started:  # all at once: each stops gracefully in parallel
            if one.process.poll() is None:
                one.process.send_signal(signal.SIGTERM)
        for one in started:
            stop_process(one.process, timeout=15.0)
            one.log.close()


class _Worker:
    def __init__(self, number: int, process: subprocess.Popen[bytes], log: IO[bytes], path: Path):
        self.number = number
        self.process = process
        self.log = log
        self.path = path

    @classmethod
    def start(cls, number: int, env: dict[str, str], directory: Path) -> _Worker:
        path = directory / f"worker-{number}.log"
        log = open(path, "wb")  # noqa: SIM115 - closed by _workers
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plugz_async",
                "worker",
                "--queue",
                QUEUE_NAME,
                "--concurrency",
                "10",
                "--timeout",
                "5",
                "--input-timeout",
                "30",
                "--device-poll-interval",
                "0.5",
                "--shutdown-grace",
                "5",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return cls(number, process, log, path)

    def failure(self) -> str | None:
        """Why it stopped, when it stopped before its time."""
        code = self.process.poll()
        if code is None:
            return None
        return (
            f"worker {self.number} exited with status {code}: {_tail(self.path, 2) or 'no output'}"
        )


# -- the demo --------------------------------------------------------------------------------------


async def queue_demo(app: App) -> int:
    if app.args.numbers is not None:
        raise CommandFailed("--numbers does not go with --queue: it queues its own", EXIT_USAGE)
    require_queue_extra()
    executable = find_redis_server()
    if executable is None:
        raise CommandFailed(INSTALL_HINT, EXIT_USAGE)
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="plugz-demo-")))
        # Nothing saved: no append-only file, no snapshots (the folder goes at the end).
        redis = RedisServer(executable, directory=directory, appendonly=False, startup_timeout=10)
        stack.callback(redis.close)
        try:
            redis.start()
        except RedisError as error:
            raise CommandFailed(str(error), EXIT_UNEXPECTED) from None
        sandbox = stack.enter_context(
            SandboxThread(SandboxConfig(instances=len(NUMBERS), wait_scale=0.02, random_codes=True))
        )
        tokens = sandbox.instances()
        app.add_secrets(sandbox.client_token, *tokens.values())
        env = {name: value for name, value in os.environ.items() if not name.startswith("PLUGZ_")}
        env.update(
            PLUGZ_REDIS_URL=redis.url,
            PLUGZ_BASE_URL=sandbox.base_url,
            PLUGZ_CLIENT_TOKEN=sandbox.client_token,
            PLUGZ_INSTANCES_FILE=str(_write_instances(directory, tokens)),
        )
        workers = stack.enter_context(_workers(env, directory))
        if not app.args.json:
            app.say(
                f"redis-server on {redis.url}, the sandbox at {sandbox.base_url} "
                f"({len(tokens)} instances), {len(workers)} worker processes"
            )
        target = RedisTarget(redis.url, redis.url, "the demo's redis-server", QUEUE_NAME)
        with redis_errors(target):
            async with open_queue(app, target) as registrations:
                return await _run(app, registrations, sandbox, list(tokens), workers)


async def _run(
    app: App,
    registrations: RegistrationQueue,
    sandbox: SandboxThread,
    instances: Sequence[str],
    workers: Sequence[_Worker],
) -> int:
    began = time.monotonic()
    scenarios: dict[str, str] = {}
    for (number, scenario), instance in zip(NUMBERS, instances, strict=False):
        status = await registrations.register(number, instance=instance)
        scenarios[status.number] = scenario
    showing = app.out.is_terminal and not app.args.json
    statuses = await _follow(app, registrations, sandbox, workers, scenarios, began, showing)
    elapsed = time.monotonic() - began
    counts = await registrations.counts()
    if app.args.json:
        app.print_json(
            {
                "seconds": round(elapsed, 1),
                "counts": counts,
                "registrations": [
                    {**status.to_dict(), "scenario": scenarios.get(status.number, "")}
                    for status in statuses
                ],
            }
        )
    else:
        if not showing:  # no live table on a file or a pipe: the final one only
            app.out.print(_view(statuses, scenarios, elapsed, app))
        app.out.print()  # the tables have no borders: a blank line between them
        app.out.print(counts_table(counts))
        app.out.print(_epilogue(), highlight=False, markup=False, soft_wrap=True)
    unfinished = [status for status in statuses if not status.done]
    if unfinished:
        app.err.print(
            f"{PROG}: {len(unfinished)} registrations did not end within {TIMEOUT:g} s: "
            + ", ".join(f"{s.number} ({s.status})" for s in unfinished),
            markup=False,
        )
        return EXIT_INCOMPLETE
    return EXIT_OK


async def _follow(
    app: App,
    registrations: RegistrationQueue,
    sandbox: SandboxThread,
    workers: Sequence[_Worker],
    scenarios: dict[str, str],
    began: float,
    showing: bool,
) -> list[RegistrationStatus]:
    """Give the registrations what they wait for until every one has ended (or
    ``TIMEOUT``), with a live table when ``showing``; their last statuses.

    Raises:
        CommandFailed: a worker stopped before its time (exit 1).
    """
    given: dict[str, int] = {}  # number -> the version its input was given at
    live = Live(console=app.out, refresh_per_second=4, auto_refresh=True, transient=False)
    with live if showing else contextlib.nullcontext():
        while True:
            statuses = await registrations.statuses()
            for status in statuses:
                await _give(registrations, sandbox, status, given)
            elapsed = time.monotonic() - began
            if showing:
                live.update(_view(statuses, scenarios, elapsed, app))
            if all(status.done for status in statuses) or elapsed > TIMEOUT:
                return statuses
            for one in workers:
                failure = one.failure()
                if failure is not None:
                    raise CommandFailed(app.redact(failure), EXIT_UNEXPECTED)
            await asyncio.sleep(0.25)


async def _give(
    registrations: RegistrationQueue,
    sandbox: SandboxThread,
    status: RegistrationStatus,
    given: dict[str, int],
) -> None:
    """Give what the registration waits for, once per version of it: the last code the
    sandbox sent to its number, the captcha's text, the PIN."""
    if status.wants is None or given.get(status.number) == status.version:
        return
    try:
        if status.wants == "code":
            sent = sandbox.codes(number=PhoneNumber.parse(status.number).e164[1:])
            if not sent:
                return
            await registrations.submit_code(status.number, str(sent[-1]["code"]))
        elif status.wants == "captcha":
            await registrations.submit_captcha(status.number, CAPTCHA_TEXT)
        elif status.wants == "pin":
            await registrations.submit_pin(status.number, PIN)
    except RegistrationStateError:  # it moved on meanwhile: the next look says where
        return
    given[status.number] = status.version


def _view(
    statuses: Sequence[RegistrationStatus], scenarios: dict[str, str], elapsed: float, app: App
) -> Group:
    done = sum(status.done for status in statuses)
    table = statuses_table(
        statuses,
        app.clock.now(),
        title=f"The durable queue: {WORKERS} workers, {len(statuses)} registrations",
        scenarios=scenarios,
        overdue=OVERDUE_AFTER,
    )
    line = Text(f"{done} of {len(statuses)} ended in {elapsed:.1f} s", style="bold")
    return Group(table, line)


def _epilogue() -> str:
    return textwrap.dedent(
        """
        Each registration lived in Redis, moved on one step at a time by whichever
        worker took it; the codes, the captcha's text and the PIN came from outside,
        as an SMS gateway's webhook would give them. For real (see docs/cli.md):

          export PLUGZ_REDIS_URL=redis://... PLUGZ_CLIENT_TOKEN=...
          export PLUGZ_INSTANCES_FILE=instances.json   # on each worker host
          plugz-async worker
          plugz-async queue register numbers.csv       # number,instance rows
          plugz-async queue code "+55 44 99999-9999" 123456
          plugz-async queue status
        """
    ).rstrip()
