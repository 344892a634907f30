"""A worker process: saq's worker running the registration's steps.

`QueueWorker` builds what the steps need (one connection pool, a client per instance
from the worker's credentials, the per-instance rate limit, the store) and runs two
saq ``Worker`` s with one job function: one serves the timed steps (code requests,
confirms, polls: each has a moment), the other the checks, each with its own share of
the worker's concurrency, so that a burst of checks never delays a step that is due.
It stops gracefully on SIGTERM or SIGINT: it takes no new step, lets the steps in
flight finish (``shutdown_grace`` seconds at most; a step cut then is run again
elsewhere, and a cut code request is settled by its intent), and closes what it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from redis.exceptions import RedisError
from saq import Worker as SaqWorker
from saq.types import Context, PartialTimersDict

from plugz_async._clock import Clock, SystemClock
from plugz_async._config import (
    ENV_BASE_URL,
    ENV_CANONICAL_NUMBERS,
    ENV_CLIENT_TOKEN,
    base_url_of,
    canonical_setting,
    credential,
)
from plugz_async._connections import Connections
from plugz_async._errors import ConfigurationError, InvalidArgument
from plugz_async._planner import RegistrationPlanner
from plugz_async._registration import (
    CONNECTED_POLL_INTERVAL,
    CONNECTED_TIMEOUT,
    RegistrationMachine,
    poll_interval,
)
from plugz_async._retry import RetryPolicy
from plugz_async._transport import AttemptMiddleware, as_timeout

from ._engine import STEP_FUNCTION, SaqScheduler, checks_queue_name
from ._lateness import Lateness
from ._limits import InstanceRateLimit, parse_rate
from ._settings import (
    ENV_INSTANCES_FILE,
    Credentials,
    credentials_from_env,
    read_credentials_file,
    redis_url_of,
)
from ._steps import CODE_WAIT_FLOOR, RECHECK_MARGIN, StepRunner
from ._store import Store
from ._takeover import WorkerQueue

if TYPE_CHECKING:
    from plugz_async._client import PlugzClient

# The credential names moved to ._settings; they are importable from here still.
__all__ = ["Credentials", "QueueWorker", "credentials_from_env", "read_credentials_file"]

logger = logging.getLogger("plugz_async.queue")

#: Seconds the engine may take to hand a step taken over to a worker.
ENGINE_SLACK = 1.0


class _GracefulWorker(SaqWorker[Context]):
    """saq's worker, stopping without cutting a step in flight (within a grace)."""

    grace: float = 30.0
    stop_requested: bool = False
    #: The lanes whose steps `worker_info` counts as running (this one's by default).
    lanes: Sequence[_GracefulWorker] = ()
    #: Where the worker's steps note how late they start (said with its heartbeat).
    lateness: Lateness | None = None

    async def upkeep(self) -> list[asyncio.Task[None]]:
        tasks: list[asyncio.Task[None]] = await super().upkeep()
        if self.stop_requested:  # asked before start() made its event
            self.event.set()
        return tasks

    async def worker_info(self, ttl: int = 60) -> Any:
        # What `queue workers` shows: the steps running now, with the host and pid given.
        if self._metadata is not None:
            lanes = self.lanes or (self,)
            self._metadata["running"] = sum(len(lane.job_task_contexts) for lane in lanes)
            if self.lateness is not None:
                self._metadata["late"] = self.lateness.to_dict()
        return await super().worker_info(ttl)

    async def _wait_for_room(
        self, room: Callable[[], Awaitable[bool]], woken: asyncio.Event
    ) -> bool:
        """Whether ``room()`` says yes within the dequeue timeout, asked again each time
        ``woken`` is set; False once the lane stops (saq's loop then takes nothing)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.dequeue_timeout
        while not self.event.is_set():
            woken.clear()
            if await room():
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(woken.wait(), left)
        return False

    async def say_stopped(self) -> None:
        """Write the worker's record once more, as stopped (its saq record then expires
        in a second): `queue workers` tells a worker stopped from one that died."""
        if self._metadata is not None:
            self._metadata["stopped"] = time.time()
        with contextlib.suppress(OSError, RedisError):
            await self.worker_info(ttl=1)

    async def stop(self) -> None:
        health = getattr(self.queue, "health", None)
        if health is not None:
            health.stopping = True
        self.event.set()  # no process task takes a job after the one it is waiting for
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        # A task idle in dequeue may still take one job during the grace: wait for that
        # one too, until none is in flight.
        while self.job_task_contexts and (left := deadline - loop.time()) > 0:
            in_flight = [context["task"] for context in self.job_task_contexts.values()]
            await asyncio.wait(in_flight, timeout=min(left, 1.0))
        await self.say_stopped()
        # What is left waits for work or upkeep: cancel it here, quietly (saq would warn).
        # A step cut now (past the grace) is handed back to the queue by saq.
        waiting = list(self.tasks)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await super().stop()


_Lane = TypeVar("_Lane", bound=_GracefulWorker)


class _Working(asyncio.Semaphore):
    """A lane's working slots, counting those in use (the checks' lane borrows the
    timed lane's idle ones)."""

    in_use = 0

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        self.in_use += 1
        return True

    def release(self) -> None:
        self.in_use -= 1
        super().release()


class _TimedLane(_GracefulWorker):
    """The lane of the steps that have a moment (code requests, confirms, polls). It
    takes a step from Redis only while one of its working slots is free: a due step left
    in Redis goes to whichever worker has room (and the checks' lanes see it waiting),
    instead of waiting here for a slot."""

    #: The lane's working slots (a step sleeping to its moment holds none).
    working: _Working | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Set each time one of its steps ends: a slot may be free.
        self.step_ended = asyncio.Event()

    async def process(self) -> bool:
        if not await self._room():
            return False  # saq's loop asks again (and sees a stop meanwhile)
        try:
            return await super().process()
        finally:
            self.step_ended.set()

    async def _room(self) -> bool:
        """Whether a working slot is free, waiting up to the dequeue timeout for one."""
        working = self.working
        if working is None or not working.locked():
            return True

        async def free() -> bool:
            return not working.locked()

        return await self._wait_for_room(free, self.step_ended)


class _ChecksLane(_GracefulWorker):
    """The lane of the checks, which have no moment: it takes a check only while few
    timed steps wait in Redis, so that a burst of checks never holds a due step back (on
    a worker short of CPU, every check taken is time a due step waits). Beyond its own
    share it borrows the timed lane's idle working slots, leaving ``headroom`` of them
    free for the timed steps that come (a check borrowed is never taken back: it ends
    within its request's timeout)."""

    timed: _TimedLane | None = None
    #: The timed steps that may wait in Redis before checks stop being taken: as many as
    #: the timed lane's working slots (they are taken within a round of its steps).
    timed_slots: int = 1
    #: The checks' own share (``concurrency - timed_concurrency``), the worker's whole
    #: concurrency, and the timed slots never borrowed.
    own: int = 1
    total: int = 1
    headroom: int = 1
    #: Seconds a reading of the timed steps waiting is used for (by every check slot).
    backlog_fresh: float = 0.05

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._backlog: asyncio.Future[int] | None = None
        self._backlog_at = -math.inf

    async def process(self) -> bool:
        if not await self._room():
            return False  # saq's loop asks again (and sees a stop meanwhile)
        return await super().process()

    async def _room(self) -> bool:
        """Whether a check may be taken now: a slot is free (its own or one borrowed) and
        fewer timed steps than ``timed_slots`` wait in Redis (for every worker of the
        queue). Waits up to the dequeue timeout for that."""
        if self.timed is None:
            return True

        async def room() -> bool:
            return self._slot_free() and await self._timed_waiting() < self.timed_slots

        # What frees a slot or takes a waiting timed step is a timed step ending.
        return await self._wait_for_room(room, self.timed.step_ended)

    def _slot_free(self) -> bool:
        """A check slot of its own is free, or a timed one it may borrow."""
        checks = len(self.job_task_contexts)
        if checks < self.own:
            return True
        working = (
            0 if self.timed is None or self.timed.working is None else self.timed.working.in_use
        )
        return checks + working < self.total - self.headroom

    async def _timed_waiting(self) -> int:
        """The timed steps waiting for a slot: one reading of Redis shared by every check
        slot for ``backlog_fresh`` seconds (0 when Redis is away: dequeue waits for it)."""
        assert self.timed is not None
        loop = asyncio.get_running_loop()
        reading = self._backlog
        stale = loop.time() - self._backlog_at > self.backlog_fresh
        if reading is None or (reading.done() and stale):
            self._backlog_at = loop.time()
            reading = self._backlog = asyncio.ensure_future(self.timed.queue.count("queued"))
            # Read by whichever check slot is waiting; none may be (the lane stopping).
            reading.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            return await asyncio.shield(reading)
        except (OSError, RedisError):
            return 0


class QueueWorker:
    """Runs queued registrations' steps; ``await worker.run()`` until stopped.

    Args:
        redis_url: the Redis of the queue (``PLUGZ_REDIS_URL`` when None).
        queue: the queue's name (registrations and workers of one queue share it).
        concurrency: steps run at once by this worker, checks and timed steps together.
        timed_concurrency: the share of ``concurrency`` kept for the timed steps (code
            requests, confirms, polls), which checks never take; the rest serves checks.
            By default three quarters (timed steps are most of a registration's
            requests). At least 1, and short of ``concurrency`` by one at least.
        credentials: where instance tokens come from (`Credentials`); by default the
            ``PLUGZ_*`` variables (`credentials_from_env`).
        client_token: the account's Client-Token (``PLUGZ_CLIENT_TOKEN`` when None).
        base_url: the API's address (``PLUGZ_BASE_URL``, else the real API).
        rate_limit: API requests per instance, across all workers (a ``limits`` rate
            such as ``"5/second"``); None for none.
        planner: plans the channels (the default planner when None).
        input_timeout: seconds a code, captcha text or PIN is waited for; past it the
            next channel is tried (code) or the registration ends (captcha, PIN).
        device_poll_interval: seconds between asking whether a transfer was approved.
        device_timeout: seconds a transfer's approval is waited for.
        connected_timeout: seconds the instance's status is asked, once the last step
            succeeded, until it says connected; then the registration ends
            ``not_connected`` with what it said. None: not asked (the last step's success
            is taken as connected).
        connected_poll_interval: seconds between two of those questions.
        request_timeout: the timeout of each API request.
        heartbeat: seconds without a heartbeat before a step counts as abandoned and
            runs again on another worker.
        sweep_interval: how often abandoned steps are looked for.
        shutdown_grace: seconds a stopping worker lets its steps finish.
        repair_interval: how often steps overdue by that long are scheduled again (a
            process died between writing a step and scheduling it).
        max_errors: errors in a row (the API down, no token for the instance...) after
            which a registration is given up (``failed``); they are retried with a pause
            that doubles, up to a minute.
        max_code_attempts, max_captcha_attempts, max_pin_attempts: as for
            ``client.registration()``.
        code_wait_floor: the shortest wait (seconds) the API starts after a code
            request (it documents 125 s). A step whose worker died with a code request in
            flight is looked at again within ``recheck_within`` seconds (the lease, the
            heartbeat, a sweep, a second): that must end before this wait can, or
            "no wait in force" would not prove the request never went out. A worker whose
            settings cannot keep to it refuses to start.
        middlewares: attempt middlewares for every client (``PlugzClient``'s).
        canonical_numbers: send each number in its line's current form (a Brazilian
            mobile queued in its old 8-digit form goes with its ninth digit); by default
            as queued, or as ``PLUGZ_CANONICAL_NUMBERS`` says (see ``PlugzClient``).
        clock: the clock (tests).
        environ: the environment to read (``os.environ`` when None).
        handle_signals: stop gracefully on SIGTERM and SIGINT (saq's handlers, put back
            to the defaults when it stops); False in an application that handles them
            itself and calls `stop`.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        queue: str = "plugz",
        concurrency: int = 10,
        timed_concurrency: int | None = None,
        credentials: Credentials | None = None,
        client_token: str | None = None,
        base_url: str | None = None,
        rate_limit: str | None = "5/second",
        planner: RegistrationPlanner | None = None,
        input_timeout: float = 600.0,
        device_poll_interval: float = 5.0,
        device_timeout: float = 300.0,
        connected_timeout: float | None = CONNECTED_TIMEOUT,
        connected_poll_interval: float = CONNECTED_POLL_INTERVAL,
        request_timeout: float = 15.0,
        heartbeat: int = 5,
        sweep_interval: int = 10,
        shutdown_grace: float = 30.0,
        repair_interval: float = 30.0,
        max_errors: int = 8,
        max_code_attempts: int = 3,
        max_captcha_attempts: int = 3,
        max_pin_attempts: int = 3,
        code_wait_floor: float = CODE_WAIT_FLOOR,
        middlewares: Sequence[AttemptMiddleware] = (),
        canonical_numbers: bool | None = None,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
        handle_signals: bool = True,
    ) -> None:
        env = os.environ if environ is None else environ
        self.redis_url = redis_url_of(redis_url, env)
        if concurrency < 2:
            raise InvalidArgument(
                "concurrency must be at least 2 (one step for the checks, one for the rest)"
            )
        if timed_concurrency is None:
            timed_concurrency = max(1, min(concurrency - 1, round(concurrency * 0.75)))
        if not 1 <= timed_concurrency < concurrency:
            raise InvalidArgument(
                f"timed_concurrency must be from 1 to {concurrency - 1} (concurrency less"
                f" one, the checks' share), not {timed_concurrency}"
            )
        self.timed_concurrency = timed_concurrency
        if heartbeat < 1 or sweep_interval < 1:
            raise InvalidArgument("heartbeat and sweep_interval must be at least 1 second")
        self.queue_name = queue
        self.concurrency = concurrency
        self._credentials = credentials if credentials is not None else credentials_from_env(env)
        token = client_token if client_token is not None else env.get(ENV_CLIENT_TOKEN, "")
        if not token.strip():
            raise ConfigurationError(
                f"the worker needs the account's Client-Token: set {ENV_CLIENT_TOKEN}"
            )
        # Every setting of the clients is checked now, not at each instance's first step
        # (where a mistake would fail every registration of the queue in turn).
        self._client_token = credential("client_token", token.strip())
        self._base_url = base_url or env.get(ENV_BASE_URL, "").strip() or None
        self.canonical_numbers = canonical_setting(
            env.get(ENV_CANONICAL_NUMBERS, "") if canonical_numbers is None else canonical_numbers,
            source=ENV_CANONICAL_NUMBERS if canonical_numbers is None else "canonical_numbers",
        )
        if self._base_url is not None:
            base_url_of(self._base_url)
        as_timeout(request_timeout)
        if rate_limit is not None:
            parse_rate(rate_limit)  # a bad rate is refused now, not at the first step
        self.rate_limit = rate_limit
        clock = clock or SystemClock()
        self.machine = RegistrationMachine(
            planner=planner or RegistrationPlanner(clock=clock),
            max_code_attempts=max_code_attempts,
            max_captcha_attempts=max_captcha_attempts,
            max_pin_attempts=max_pin_attempts,
            device_timeout=device_timeout,
            connected_timeout=connected_timeout,
        )
        self.input_timeout = input_timeout
        self.device_poll_interval = device_poll_interval
        self.connected_poll_interval = poll_interval(
            "connected_poll_interval", connected_poll_interval
        )
        self.request_timeout = request_timeout
        self.heartbeat = heartbeat
        self.sweep_interval = sweep_interval
        self.shutdown_grace = shutdown_grace
        self.repair_interval = repair_interval
        self.max_errors = max_errors
        self.code_wait_floor = code_wait_floor
        if self.recheck_within > code_wait_floor - RECHECK_MARGIN:
            raise ConfigurationError(
                f"a dead worker's code request would be looked at again up to"
                f" {self.recheck_within:g} s after it (lease {self.lease:g} s, heartbeat"
                f" {heartbeat} s, sweep_interval {sweep_interval} s), too close to"
                f" code_wait_floor ({code_wait_floor:g} s, the shortest wait a code request"
                " starts): lower heartbeat, sweep_interval or request_timeout (or raise"
                " code_wait_floor, if the API's shortest wait is longer)"
            )
        self._middlewares = tuple(middlewares)
        self._clients: dict[str, Any] = {}
        self._lanes: list[_GracefulWorker] = []
        #: How late this worker's steps started, by kind (see `Lateness`).
        self.lateness = Lateness()
        self._stop_requested = False
        self.handle_signals = handle_signals

    @property
    def lease(self) -> float:
        """How long a code request's intent holds (`StepRunner.lease`)."""
        return StepRunner.lease_for(self.request_timeout)

    @property
    def recheck_within(self) -> float:
        """Seconds after a code request by which a step whose worker died sending it is
        looked at again, at most: the lease (the worker may die at its end), the
        heartbeat (the step counts as abandoned), a sweep (which takes it over), the
        wait for a stalled worker's acknowledgement, and a second for the engine."""
        return (
            self.lease
            + self.heartbeat
            + self.sweep_interval
            + WorkerQueue.stall_wait
            + ENGINE_SLACK
        )

    def __repr__(self) -> str:
        return (
            f"QueueWorker(queue={self.queue_name!r}, concurrency={self.concurrency},"
            f" timed_concurrency={self.timed_concurrency}, rate_limit={self.rate_limit!r})"
        )

    async def _token(self, instance: str) -> str:
        credentials = self._credentials
        token = (
            credentials.get(instance)
            if isinstance(credentials, Mapping)
            else await credentials(instance)
        )
        if not token:
            raise ConfigurationError(
                f"this worker has no token for instance {instance}: add it to the worker's "
                f"credentials (--instances FILE or {ENV_INSTANCES_FILE}, a JSON object of "
                "instance id to token)"
            )
        return token

    async def run(self) -> None:
        """Work until SIGTERM or SIGINT (or `stop`), then stop gracefully."""
        saq_queue = WorkerQueue.from_url(self.redis_url, name=self.queue_name)
        assert isinstance(saq_queue, WorkerQueue)
        checks_queue = WorkerQueue(saq_queue.redis, name=checks_queue_name(self.queue_name))
        checks_queue.health = saq_queue.health  # one Redis, said away once
        connections = self._pool()
        limit = self._rate_limit(saq_queue)
        try:
            await saq_queue.connect()
            await checks_queue.connect()
            store = Store(saq_queue.redis, queue=self.queue_name)
            scheduler = SaqScheduler(saq_queue, checks_queue, heartbeat=self.heartbeat)
            runner = self._runner(store, scheduler, connections, limit)
            saq_queue.on_worker_info = store.note_worker  # the timed lane speaks for both
            with contextlib.suppress(OSError, RedisError):
                await store.forget_old_workers()
            timed = self._saq_worker(
                _TimedLane,
                saq_queue,
                runner,
                self.timed_concurrency,
                sleepers=self.timed_concurrency,
            )
            # Its own share, and up to all but a quarter of the timed share when idle.
            headroom = max(1, self.timed_concurrency // 4)
            checks = self._saq_worker(
                _ChecksLane, checks_queue, runner, self.concurrency - headroom
            )
            checks.timed = timed
            checks.timed_slots = self.timed_concurrency
            checks.own = self.concurrency - self.timed_concurrency
            checks.total, checks.headroom = self.concurrency, headroom
            timed.lanes = (timed, checks)
            timed.lateness = self.lateness
            await self._serve([timed, checks], store, scheduler)
        finally:
            await self._close(connections, saq_queue, checks_queue)

    def _pool(self) -> Connections:
        """The worker's one connection pool, which every instance's client shares."""
        return Connections()

    def _client(self, connections: Connections, instance: str, token: str) -> PlugzClient:
        """The client of ``instance``, sending through the worker's pool."""
        from plugz_async._client import PlugzClient

        options: dict[str, Any] = {} if self._base_url is None else {"base_url": self._base_url}
        return PlugzClient(
            instance,
            token,
            self._client_token,
            connections=connections,
            timeout=self.request_timeout,
            # Every attempt of a request within its timeout: a code request retried (when
            # certainly not processed) ends inside its lease.
            retry=RetryPolicy(deadline=self.request_timeout),
            clock=self.machine.clock,
            middlewares=self._middlewares,
            canonical_numbers=self.canonical_numbers,
            **options,
        )

    def _rate_limit(self, saq_queue: WorkerQueue) -> InstanceRateLimit | None:
        """The per-instance rate limit every worker of the queue shares (None: none)."""
        if self.rate_limit is None:
            return None
        return InstanceRateLimit(
            self.redis_url,
            self.rate_limit,
            namespace=self.queue_name,
            connection_pool=saq_queue.redis.connection_pool,
        )

    def _runner(
        self,
        store: Store,
        scheduler: SaqScheduler,
        connections: Connections,
        limit: InstanceRateLimit | None,
    ) -> StepRunner:
        """What runs one step: the store, the engine, a client per instance (made on first
        use from the worker's credentials, forgotten when its token is refused)."""

        async def client_for(instance: str) -> PlugzClient:
            client = self._clients.get(instance)
            if client is None:
                client = self._client(connections, instance, await self._token(instance))
                self._clients[instance] = client
            return client

        async def forget(instance: str) -> None:
            client = self._clients.pop(instance, None)
            if client is not None:
                await client.aclose()

        return StepRunner(
            store=store,
            forget=forget,
            max_errors=self.max_errors,
            scheduler=scheduler,
            machine=self.machine,
            client_for=client_for,
            acquire=None if limit is None else limit.acquire,
            input_timeout=self.input_timeout,
            device_poll_interval=self.device_poll_interval,
            connected_poll_interval=self.connected_poll_interval,
            request_timeout=self.request_timeout,
            code_wait_floor=self.code_wait_floor,
            lateness=self.lateness,
        )

    def _saq_worker(
        self,
        lane: type[_Lane],
        saq_queue: WorkerQueue,
        runner: StepRunner,
        concurrency: int,
        *,
        sleepers: int = 0,
    ) -> _Lane:
        """saq's worker of one lane: the one job function, its timers, what `queue
        workers` shows of it. ``concurrency`` steps work at once; ``sleepers`` more may
        be taken meanwhile, to sleep to their moment (saq hands a step over up to
        `SCHEDULE_LEAD` early: it holds a slot of saq's, not one of the work's)."""
        working = _Working(concurrency) if sleepers else None
        timers: PartialTimersDict = {
            "sweep": self.sweep_interval,
            "schedule": 1,
            "abort": 1,
            # saq's record of a live worker lasts a second longer than this: a worker
            # gone for a heartbeat is known dead, and its steps are taken over at once.
            "worker_info": self.heartbeat,
        }
        worker = lane(
            saq_queue,
            functions=[(STEP_FUNCTION, _step_job(runner, self.heartbeat, working))],
            concurrency=concurrency + sleepers,
            dequeue_timeout=1,
            timers=timers,
            metadata={
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": time.time(),
                "concurrency": self.concurrency,
                "timed_concurrency": self.timed_concurrency,
                "running": 0,
            },
        )
        worker.grace = self.shutdown_grace
        worker.stop_requested = self._stop_requested
        if isinstance(worker, _TimedLane):
            worker.working = working
        worker.SIGNALS = []  # both lanes stop on one signal: `_serve` handles them
        return worker

    async def _serve(
        self, lanes: list[_GracefulWorker], store: Store, scheduler: SaqScheduler
    ) -> None:
        """Run saq's workers (the lanes) until they stop, scheduling lost steps again
        meanwhile; on SIGTERM or SIGINT (when it handles them) every lane stops."""
        self._lanes = lanes
        repairing = asyncio.create_task(_keep_repairing(store, scheduler, self.repair_interval))
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if self.handle_signals and os.name != "nt" else ()
        for signum in signals:
            loop.add_signal_handler(signum, self._signalled)
        logger.info("worker of queue %s started", self.queue_name)
        running = [asyncio.create_task(lane.start()) for lane in lanes]
        try:
            # One lane ending (stopped, or failed) stops the other: a worker is whole.
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Stopped, failed, or `run` cancelled: every lane stops gracefully before what
            # they use is closed (a second cancel cuts that short: it cancels the lanes).
            self._signalled()
            ended = await asyncio.gather(*running, return_exceptions=True)
            for signum in signals:
                loop.remove_signal_handler(signum)
            repairing.cancel()
            await asyncio.gather(repairing, return_exceptions=True)
        for outcome in ended:
            if isinstance(outcome, Exception):
                raise outcome

    def _signalled(self) -> None:
        """Have every lane stop taking steps (saq's own handler did so for its one)."""
        for lane in self._lanes:
            lane.stop_requested = True  # also when its start() has not made its event yet
            lane.event.set()

    async def _close(
        self, connections: Connections, saq_queue: WorkerQueue, checks_queue: WorkerQueue
    ) -> None:
        """Say the worker stopped (when it was asked to), and close what `run` opened."""
        for lane in self._lanes:
            if lane.stop_requested:
                # Stopped, even cut short by a second signal: say so (it is not gone).
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(lane.say_stopped(), 1.0)
        self._lanes = []
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        await connections.aclose()
        with contextlib.suppress(OSError, RedisError):
            await checks_queue._pubsub.close()  # its Redis is the timed lane's: closed next
        await saq_queue.disconnect()
        logger.info("worker of queue %s stopped", self.queue_name)

    async def stop(self) -> None:
        """Stop taking steps; `run` returns once the steps in flight have finished (also
        when asked before `run` has started working)."""
        self._stop_requested = True
        for worker in self._lanes:
            worker.stop_requested = True
            health = getattr(worker.queue, "health", None)
            if health is not None:
                health.stopping = True
            event = getattr(worker, "event", None)
            if event is not None:
                event.set()


def _step_job(
    runner: StepRunner, heartbeat: int, working: asyncio.Semaphore | None = None
) -> Callable[..., Coroutine[Any, Any, str]]:
    """saq's job function: one step, with the job's heartbeat kept up while it runs
    (``working``: held while it works, see `StepRunner.run`)."""

    async def step(ctx: Context, *, number: str, step_id: str) -> str:
        job = ctx["job"]

        # The job's own heartbeat (a producer may have enqueued it with another).
        every = (job.heartbeat or heartbeat) / 3

        async def beat() -> None:
            while True:
                await asyncio.sleep(every)
                # Redis away: the step may be taken over; its writes are fenced.
                with contextlib.suppress(OSError, RedisError):
                    await job.update()

        beating = asyncio.create_task(beat())
        try:
            # Its input's moment: when this job was queued, or fell due in saq (a job
            # queued long ago for a timeout, and woken by the input meanwhile).
            queued = max(job.queued / 1000, float(job.scheduled or 0))
            return await runner.run(number, step_id, queued=queued, working=working)
        finally:
            beating.cancel()

    return step


async def _keep_repairing(store: Store, scheduler: SaqScheduler, interval: float) -> None:
    """Now and every ``interval`` seconds, schedule the overdue steps of unfinished
    registrations: a producer or a worker that died between writing a step and
    scheduling it (or a Redis that lost the job) leaves one behind; saq ignores the
    ones it has."""
    while True:
        try:
            for number in await store.overdue(time.time() - interval):
                record = await store.load(number)
                if record is not None and not record.done:
                    await scheduler.schedule(number, record.step_id, record.due, step=record.status)
        except (OSError, RedisError) as error:  # Redis away for a moment: next round
            logger.warning("could not look for overdue steps: %s", type(error).__name__)
        await asyncio.sleep(interval)
