"""What the queue reports: where a registration stands, its events, its workers.

`RegistrationStatus` (`RegistrationQueue.status`), `QueueEvent` (`RegistrationQueue.events`)
and `WorkerStatus` (`RegistrationQueue.workers`): frozen values, each with the JSON the
CLI's ``--json`` prints.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import attrs

from plugz_async._planner import PlanOutcome, RegistrationPlan
from plugz_async._registration import (
    RegistrationEvent,
    RegistrationOutcome,
    RegistrationStep,
    event_to_dict,
)
from plugz_async._stored import to_iso

from ._lateness import Lateness
from ._record import CANCELLED, FAILED

__all__ = [
    "OVERDUE_AFTER",
    "QueueEvent",
    "RegistrationStatus",
    "WorkerStatus",
    "plan_as_it_stands",
]

#: A step due longer ago than this, unfinished, is overdue (`RegistrationStatus.overdue`).
OVERDUE_AFTER = 30.0


def plan_as_it_stands(plan: RegistrationPlan | None) -> RegistrationPlan | None:
    """The plan of a registration's latest planning (the check's, or a code request's: each
    plans again), its outcome as it stands now.

    A stored plan's outcome is the one it had when it was made: a plan made by a code
    request says ``wait`` (the channel just used waits its ``retryAfter``) long after its
    next channel opened. One that may still be used says ``ready`` once its next channel is
    open, ``wait`` before; any other outcome stands as it was.
    """
    if plan is None or plan.outcome not in (PlanOutcome.READY, PlanOutcome.WAIT):
        return plan
    channel = plan.next_channel()
    if channel is None:  # pragma: no cover - a ready or waiting plan has a channel
        return plan
    outcome = PlanOutcome.READY if plan.is_ready(channel) else PlanOutcome.WAIT
    return plan if outcome is plan.outcome else attrs.evolve(plan, outcome=outcome)


@attrs.frozen(kw_only=True)
class WorkerStatus:
    """A worker of the queue, as it last said of itself (`RegistrationQueue.workers`).

    Attributes:
        id: saq's id of the worker.
        host, pid: where it runs.
        started_at: when it started.
        last_seen: its last heartbeat.
        running: the steps it was running then.
        concurrency: the steps it runs at most.
        timed_concurrency: of those, the share kept for timed steps (None: not said).
        lateness: how late its steps started, by kind of step, since it started.
        alive: its heartbeat is recent (within its own interval and a second), and it
            did not say it stopped.
        stopped_at: when it stopped gracefully (None: running, or it died).
    """

    id: str
    host: str
    pid: int | None
    started_at: datetime | None
    last_seen: datetime
    running: int
    concurrency: int | None
    alive: bool
    stopped_at: datetime | None = None
    timed_concurrency: int | None = None
    lateness: Lateness = attrs.field(factory=Lateness, eq=False, repr=False)

    @classmethod
    def of(cls, said: Mapping[str, Any], now: float) -> WorkerStatus:
        seen = float(said.get("seen") or 0.0)
        stopped = said.get("stopped")
        ttl = float(said.get("ttl") or 5.0)

        def at(value: object) -> datetime | None:
            return (
                None
                if value is None
                else datetime.fromtimestamp(float(str(value)), tz=timezone.utc)
            )

        return cls(
            id=str(said.get("id") or ""),
            host=str(said.get("host") or "?"),
            pid=None if said.get("pid") is None else int(said["pid"]),
            started_at=at(said.get("started")),
            last_seen=datetime.fromtimestamp(seen, tz=timezone.utc),
            running=0 if stopped else int(said.get("running") or 0),
            concurrency=None if said.get("concurrency") is None else int(said["concurrency"]),
            alive=stopped is None and now - seen <= ttl + 1.0,
            stopped_at=at(stopped),
            timed_concurrency=(
                None if said.get("timed_concurrency") is None else int(said["timed_concurrency"])
            ),
            lateness=Lateness.from_dict(said.get("late") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``queue workers --json``)."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started_at": None if self.started_at is None else to_iso(self.started_at),
            "last_seen": to_iso(self.last_seen),
            "running": self.running,
            "concurrency": self.concurrency,
            "alive": self.alive,
            "stopped_at": None if self.stopped_at is None else to_iso(self.stopped_at),
            "timed_concurrency": self.timed_concurrency,
            "lateness": {
                kind: summary.to_dict() for kind, summary in self.lateness.summaries().items()
            },
        }


@attrs.frozen
class StatusPage:
    """A page of registrations (`RegistrationQueue.page`, ``overdue``, ``upcoming``).

    Attributes:
        total: how many there are in all (the page holds some of them).
        offset: where the page starts among them.
        statuses: the page.
    """

    total: int
    offset: int
    statuses: tuple[RegistrationStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "offset": self.offset,
            "registrations": [status.to_dict() for status in self.statuses],
        }


@attrs.frozen(kw_only=True)
class RegistrationStatus:
    """Where a queued registration stands (`RegistrationQueue.status`).

    Attributes:
        number: the number as it was first queued (E.164), which is what is sent.
        line: the key the queue keeps it under: the line `number` reaches
            (`PhoneNumber.line`), or the number as queued by version 0.1.0; either form
            of a Brazilian mobile finds it.
        instance: the instance it is registered on.
        status: the step it is at, or how it ended (an outcome, or ``failed``).
        done: whether it has ended.
        outcome: how it ended (None while running, and when ``failed``).
        step: the step it is at, or was at when it ended.
        channel: the channel in use (or last tried).
        wants: the input it waits for: ``"code"``, ``"captcha"``, ``"pin"`` or None.
        next_at: when its next step is due (None once done).
        plan: the plan (None before the check).
        appeal_token: when banned, the token for ``request_unbanning``.
        captcha: the captcha image (PNG) to answer with ``submit_captcha``, while
            ``wants`` is ``"captcha"``.
        error: the last error a step met (the reason when ``failed``).
        events: what happened, in order.
        version: bumped by every change.
        instance_error: what the instance's status said in its ``error`` while it was not
            connected after the last step (why it ended ``not_connected``).
    """

    number: str
    line: str
    instance: str
    status: str
    done: bool
    outcome: RegistrationOutcome | None
    step: RegistrationStep
    channel: str | None
    wants: str | None
    next_at: datetime | None
    plan: RegistrationPlan | None = attrs.field(repr=False)
    appeal_token: str | None = attrs.field(default=None, repr=False)
    captcha: bytes | None = attrs.field(default=None, repr=False)
    error: str | None = None
    events: tuple[RegistrationEvent, ...] = attrs.field(default=(), repr=False)
    version: int = 0
    instance_error: str | None = None

    @property
    def failed(self) -> bool:
        """Whether a step gave the registration up (see ``error``)."""
        return self.status == FAILED

    @property
    def cancelled(self) -> bool:
        """Whether it was cancelled (`RegistrationQueue.cancel`)."""
        return self.status == CANCELLED

    def overdue(self, now: datetime, after: float = OVERDUE_AFTER) -> float | None:
        """Seconds its next step is late, when due longer than ``after`` seconds ago and
        not waiting for input (a code, captcha or PIN waits on people); else None. An
        overdue step means no worker is running the queue, or all are busy."""
        if self.done or self.next_at is None or self.wants is not None:
            return None
        late = (now - self.next_at).total_seconds()
        return late if late > after else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--json``)."""
        return {
            "number": self.number,
            "line": self.line,
            "instance": self.instance,
            "status": self.status,
            "done": self.done,
            "outcome": None if self.outcome is None else self.outcome.value,
            "step": self.step.value,
            "channel": self.channel,
            "wants": self.wants,
            "next_at": None if self.next_at is None else to_iso(self.next_at),
            "plan": None if self.plan is None else self.plan.to_dict(),
            "captcha": None
            if self.captcha is None
            else "data:image/png;base64," + base64.b64encode(self.captcha).decode(),
            "error": self.error,
            "instance_error": self.instance_error,
            "version": self.version,
            "events": [event_to_dict(event) for event in self.events],
        }


@attrs.frozen(kw_only=True)
class QueueEvent:
    """One event of one queued registration, as `RegistrationQueue.events` follows them.

    Attributes:
        id: the event's id in the stream (resume after it with ``after=``).
        number: the registration's key, its `RegistrationStatus.line` (the line's
            current form, which every call of the queue accepts; the number as first
            queued is ``status(number).number``).
        status: the registration's status once the event was written.
        version: the registration's version then.
        event: the event.
    """

    id: str
    number: str
    status: str
    version: int
    event: RegistrationEvent
