"""Durable registrations: a queue on saq and Redis, run by many workers.

``client.registration()`` runs a registration in one process; a deploy or a crash
loses it. Here a registration is state in Redis, moved on one step at a time by
whichever worker takes the step, and survives restarts:

* `RegistrationQueue`: ``register`` numbers, ``submit_code`` (captcha, PIN) as they
  arrive, ``status``, ``counts``, follow ``events``.
* `QueueWorker` (``plugz-async worker``): runs the steps; instance tokens come from
  its own credentials, never through Redis.

The registration's rules are ``RegistrationMachine``'s, the same the in-process
driver follows. Exactly one code request per channel window, even when a worker dies
mid-request: see docs/scale.md. Needs the ``queue`` extra: ``pip install
'plugz-async[queue]'`` (from a clone of the repository: ``pip install '.[queue]'``).

Inside: ``_store`` (Redis, compare-and-set), ``_record`` (a registration as read),
``_inputs`` (input given and workers' records, beside the registrations), ``_engine``
(the job engine behind one small interface, its two lanes), ``_lateness`` (how late
steps start), ``_steps`` (a step, as a job), ``_limits``
(per-instance rate limits), ``_worker`` (the worker process), ``_settings`` (the Redis
URL and instance tokens it reads), ``_api`` (the producer's side), ``_status`` (what it
reports).
"""

from plugz_async._errors import require

for _module in ("saq", "redis", "limits"):
    require(_module, feature="plugz_async.queue", extra="queue")

from ._api import RegistrationQueue  # noqa: E402
from ._engine import StepScheduler, checks_queue_name  # noqa: E402
from ._lateness import Lateness, LatenessSummary  # noqa: E402
from ._settings import Credentials, credentials_from_env, read_credentials_file  # noqa: E402
from ._status import QueueEvent, RegistrationStatus, StatusPage, WorkerStatus  # noqa: E402
from ._worker import QueueWorker  # noqa: E402

__all__ = [
    "Credentials",
    "Lateness",
    "LatenessSummary",
    "QueueEvent",
    "QueueWorker",
    "RegistrationQueue",
    "RegistrationStatus",
    "StatusPage",
    "StepScheduler",
    "WorkerStatus",
    "checks_queue_name",
    "credentials_from_env",
    "read_credentials_file",
]
