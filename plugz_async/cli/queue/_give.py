"""``plugz-async queue code``, ``captcha``, ``pin`` and ``cancel``: give a registration
what it waits for, or stop it; the input is checked before anything is written."""

from __future__ import annotations

import getpass
import sys

from plugz_async._arguments import InputKind
from plugz_async._errors import InvalidArgument
from plugz_async.cli._app import EXIT_OK, EXIT_USAGE, PROG, App, CommandFailed
from plugz_async.cli._render import span, workers_line

from ._redis import number_of, open_queue, redis_errors, redis_target, registration_errors

__all__ = ["cancel", "give"]


def _read_pin() -> str:
    """The PIN typed (hidden) on a terminal, or the first line of standard input."""
    try:
        if sys.stdin.isatty():
            return getpass.getpass("Two-step verification PIN: ")
        line = sys.stdin.readline(64)
    except (EOFError, OSError):
        line = ""
    if not line.strip():
        raise CommandFailed("no PIN: give it, or pipe it on standard input", EXIT_USAGE)
    return line.strip()


async def give(app: App) -> int:
    """Give the registration of NUMBER its code, captcha text or PIN (the subcommand)."""
    args = app.args
    kind = InputKind(args.queue_command)
    value = args.value if args.value is not None else _read_pin()
    if kind is InputKind.PIN:
        app.add_secrets(value.strip())
    phone = number_of(app, args.number)
    try:
        text = kind.check(value)
    except InvalidArgument as error:  # nothing written, Redis not even asked
        raise CommandFailed(str(error), EXIT_USAGE) from None
    target = redis_target(app)
    see = target.command("queue", "status", phone.e164)
    with redis_errors(target):
        from plugz_async.queue import RegistrationQueue

        submit = {
            InputKind.CODE: RegistrationQueue.submit_code,
            InputKind.CAPTCHA: RegistrationQueue.submit_captcha,
            InputKind.PIN: RegistrationQueue.submit_pin,
        }[kind]
        async with open_queue(app, target) as registrations:
            workers = await registrations.workers()
            with registration_errors(target, see=see):
                status = await submit(registrations, phone, text)
    line, alive = workers_line(workers, app.clock.now())
    if not alive:
        from plugz_async.queue._store import INPUT_KEPT

        app.err.print(
            f"{PROG}: accepted, but {line}; it is kept for {span(INPUT_KEPT)} and used "
            "when a worker runs the step",
            markup=False,
            highlight=False,
        )
    if args.json:
        app.print_json(status.to_dict())
    else:
        app.say(f"{kind.label} given to the registration of {status.number} (now {status.status})")
    return EXIT_OK


async def cancel(app: App) -> int:
    """Cancel the registration of NUMBER: no further code request."""
    args = app.args
    phone = number_of(app, args.number)
    target = redis_target(app)
    with redis_errors(target):
        async with open_queue(app, target) as registrations:
            with registration_errors(target):
                status = await registrations.cancel(phone)
            workers = await registrations.workers()
    if args.json:
        app.print_json(status.to_dict())
        return EXIT_OK
    if status.done:
        app.out.print(f"The registration of {status.number} is cancelled.", markup=False)
        return EXIT_OK
    line, alive = workers_line(workers, app.clock.now())
    app.out.print(
        f"Cancel asked for {status.number}: a code request is in flight; it ends first, then "
        "a worker ends the registration (no further code request). Follow it with: "
        + target.command("queue", "status", status.number),
        markup=False,
        highlight=False,
        soft_wrap=True,  # the command it names: never wrapped
    )
    if not alive:
        app.err.print(f"{PROG}: {line}", markup=False, highlight=False)
    return EXIT_OK
