"""``plugz-async queue status``, ``list``, ``workers`` and ``prune``: where the queue's
registrations stand, its workers, and forgetting the ones that ended long ago. The
tables are drawn by ``cli/_render.py``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from plugz_async.cli._app import EXIT_OK, App
from plugz_async.cli._render import (
    counts_table,
    events_table,
    plural,
    registration_facts,
    statuses_table,
    workers_line,
    workers_table,
)

from ._parser import OVERDUE_AFTER
from ._redis import (
    RedisTarget,
    number_of,
    open_queue,
    redis_errors,
    redis_target,
    registration_errors,
)

if TYPE_CHECKING:
    from plugz_async.queue import RegistrationStatus, WorkerStatus

__all__ = ["listing", "prune", "status", "workers"]


async def status(app: App) -> int:
    """Every registration and the counts by status; with NUMBER, that one's events."""
    args = app.args
    phone = None if args.number is None else number_of(app, args.number)
    target = redis_target(app)
    with redis_errors(target):
        async with open_queue(app, target) as registrations:
            if phone is not None:
                with registration_errors(target):
                    one = await registrations.status(phone)
                _show_one(app, one)
                return EXIT_OK
            statuses = await registrations.statuses()
            counts = await registrations.counts()
            workers = await registrations.workers()
    _show_all(app, target, statuses, counts, workers)
    return EXIT_OK


def _show_all(
    app: App,
    target: RedisTarget,
    statuses: Sequence[RegistrationStatus],
    counts: dict[str, int],
    workers: Sequence[WorkerStatus],
) -> None:
    args = app.args
    now = app.clock.now()
    overdue = [s for s in statuses if s.overdue(now, args.overdue) is not None]
    if args.json:
        app.print_json(
            {
                "queue": target.queue,
                "counts": counts,
                "overdue": len(overdue),
                "workers_alive": sum(w.alive for w in workers),
                "registrations": [status.to_dict() for status in statuses],
            }
        )
        return
    if not statuses:
        app.out.print(f"The queue {target.queue!r} has no registrations.", markup=False)
        return
    title = f"Registrations of {target.queue!r}"
    app.out.print(statuses_table(statuses, now, title=title, overdue=args.overdue))
    app.out.print()  # the tables have no borders: a blank line between them
    app.out.print(counts_table(counts))
    _say_workers(app, workers, now, unfinished=any(not s.done for s in statuses))
    if overdue:
        app.out.print(
            f"{len(overdue)} overdue (due more than {args.overdue:g} s ago): see them with "
            + target.command("queue", "list", "--stuck"),
            style="bold red",
            markup=False,
            highlight=False,
            soft_wrap=True,  # the command it names: never wrapped
        )


def _show_one(app: App, status: RegistrationStatus) -> None:
    if app.args.json:
        app.print_json(status.to_dict())
        return
    now = app.clock.now()
    app.out.print(registration_facts(status, now, OVERDUE_AFTER))
    events = events_table(status, now)
    if events is not None:
        app.out.print()
        app.out.print(events)


def _say_workers(
    app: App, workers: Sequence[WorkerStatus], now: datetime, *, unfinished: bool
) -> None:
    line, alive = workers_line(workers, now)
    style = "green" if alive else ("bold red" if unfinished else "dim")
    app.out.print(line, style=style, markup=False, highlight=False, soft_wrap=True)


async def listing(app: App) -> int:
    """The registrations, with filters: ``--stuck``, ``--status``."""
    args = app.args
    target = redis_target(app)
    with redis_errors(target):
        async with open_queue(app, target) as registrations:
            statuses = await registrations.statuses()
            workers = await registrations.workers()
    now = app.clock.now()
    if args.stuck:
        statuses = [s for s in statuses if s.overdue(now, args.overdue) is not None]
    if args.status:
        statuses = [s for s in statuses if s.status == args.status]
    if args.json:
        app.print_json([status.to_dict() for status in statuses])
        return EXIT_OK
    what = "overdue registrations" if args.stuck else "registrations"
    if args.status:
        what += f" of status {args.status!r}"
    if not statuses:
        app.out.print(f"The queue {target.queue!r} has no {what}.", markup=False)
    else:
        title = f"The {what} of {target.queue!r}"
        app.out.print(statuses_table(statuses, now, title=title, overdue=args.overdue))
    _say_workers(app, workers, now, unfinished=bool(statuses))
    return EXIT_OK


async def workers(app: App) -> int:
    """The queue's workers: host, pid, last heartbeat, steps running."""
    target = redis_target(app)
    with redis_errors(target):
        async with open_queue(app, target) as registrations:
            seen = await registrations.workers()
    if app.args.json:
        app.print_json([worker.to_dict() for worker in seen])
        return EXIT_OK
    now = app.clock.now()
    if seen:
        app.out.print(workers_table(seen, now, title=f"Workers of {target.queue!r}"))
    _say_workers(app, seen, now, unfinished=False)
    return EXIT_OK


async def prune(app: App) -> int:
    """Forget the registrations that ended more than ``--older-than`` seconds ago."""
    target = redis_target(app)
    with redis_errors(target):
        async with open_queue(app, target) as registrations:
            forgotten = await registrations.prune(app.args.older_than)
    if app.args.json:
        app.print_json({"queue": target.queue, "forgotten": forgotten})
    else:
        app.out.print(
            f"Forgot {plural(forgotten, 'registration')} of {target.queue!r} that ended more "
            f"than {app.args.older_than:g} s ago.",
            markup=False,
        )
    return EXIT_OK
