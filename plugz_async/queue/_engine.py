"""The job engine, behind the one thing the queue asks of it: run this registration's
step at this moment, under this key.

`StepScheduler` is that interface; `SaqScheduler` does it with saq. saq refuses a job
whose key is queued, scheduled or running, runs each job at least once (a job whose
worker died is swept and run again), and moves the jobs that fell due to the queue
once a second (its worker's ``schedule`` timer): a step due at ``T`` is enqueued for
``T - SCHEDULE_LEAD``, so it is taken up to a second and a quarter early, and sleeps
to ``T`` (it checks the time again before it sends anything), instead of up to a
second late. (saq's scores are Unix times with their fraction, as its own retries
write them: an early step sleeps half a second on average, not the second and a half
that whole seconds cost, and holds a worker's slot that much shorter.)

**Two lanes.** saq's Redis queue is first in, first out, and has no priorities (its
Postgres queue has). A step whose moment has come (a code request, a confirm, a device
poll) must not wait behind a burst of checks, which have no moment: checks go to a queue
of their own (``<name>-checks``, `checks_queue_name`), every other step to the queue
``<name>``, and a worker serves each lane with its own share of its capacity
(``QueueWorker(timed_concurrency=...)``), so checks can never take the share of the timed
steps. A step's lane follows from its kind alone: a step id is always on the same lane,
and saq's refusal of a second job of the same key holds as before.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from plugz_async._registration import RegistrationStep

__all__ = [
    "STEP_FUNCTION",
    "SaqScheduler",
    "StepScheduler",
    "checks_queue_name",
    "is_check",
    "job_key",
]

#: The name of the one job function the queue's workers run.
STEP_FUNCTION = "plugz_registration_step"

#: Seconds before its moment a step's job is due in saq: the period of saq's schedule
#: timer (1 s, `QueueWorker`'s timers), and a quarter for a busy event loop's lag.
SCHEDULE_LEAD = 1.25

#: Seconds a step may run before saq cancels it (a step waits for one request at a time).
STEP_TIMEOUT = 300

#: Runs of one step's job at most: a job whose worker died is run again, always (the step
#: itself gives a registration up after its errors; saq must never drop one silently).
STEP_RETRIES = 1_000_000


class StepScheduler(Protocol):
    """Runs a registration's step at a moment."""

    async def schedule(
        self, number: str, step_id: str, at: float, *, step: str, reason: str = ""
    ) -> None:
        """Have the step ``step_id`` of ``number``'s registration run at ``at`` (Unix
        time), not before; once, even if asked twice with the same ``reason``. ``step``
        is its kind (a `RegistrationStep` value): checks and timed steps run apart."""


def checks_queue_name(queue: str) -> str:
    """The saq queue of the checks of the queue ``queue`` (its other steps are on
    ``queue`` itself)."""
    return f"{queue}-checks"


def is_check(step: str) -> bool:
    """Whether a step of this kind (a `RegistrationStep` value) goes to the checks' lane."""
    return step == RegistrationStep.CHECK.value


def job_key(number: str, step_id: str, reason: str = "") -> str:
    """The engine's key for one step's job: one job per step and reason."""
    return f"{number}:{step_id}" + (f":{reason}" if reason else "")


class SaqScheduler:
    """`StepScheduler` on two saq queues: the timed steps' and the checks'.

    Args:
        queue: the saq ``Queue`` of the timed steps (named as the registration queue).
        checks: the saq ``Queue`` of the checks (named `checks_queue_name`).
        timeout: seconds a step may run before saq cancels it.
        heartbeat: seconds without a heartbeat after which a running step counts as
            abandoned (its worker died or stalled) and is run again.
        retries: runs of one step's job at most (saq counts the first).
    """

    def __init__(
        self,
        queue: Any,
        checks: Any,
        *,
        heartbeat: int = 5,
        timeout: int = STEP_TIMEOUT,
        retries: int = STEP_RETRIES,
    ) -> None:
        self.queue = queue
        self.checks = checks
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.retries = retries

    async def schedule(
        self, number: str, step_id: str, at: float, *, step: str, reason: str = ""
    ) -> None:
        # saq moves due jobs to the queue once a second: a job is taken up to
        # SCHEDULE_LEAD early, and the step sleeps to its moment (it never acts early).
        scheduled = at - SCHEDULE_LEAD if at > time.time() + SCHEDULE_LEAD else 0
        lane = self.checks if is_check(step) else self.queue
        await lane.enqueue(
            STEP_FUNCTION,
            key=job_key(number, step_id, reason),
            scheduled=scheduled,
            timeout=self.timeout,
            heartbeat=self.heartbeat,
            retries=self.retries,
            retry_delay=1.0,
            retry_backoff=60.0,  # saq's pauses between runs of a failed job: at most 60 s
            number=number,
            step_id=step_id,
        )
