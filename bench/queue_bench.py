"""The durable queue (plugz_async.queue) end to end: registrations per second with 1, 2 and 4
worker processes, how late code requests go out, Redis memory and CPU per registration.

Run with ``nox -s bench_queue``: 3,000 registrations per configuration (``-- --quick``:
1,000; ``-- --full``: 10,000, about 8 minutes on 2 cores), or ``python
bench/queue_bench.py [options]`` in an environment with the ``queue`` extra and
``redis-server`` installed.

Per configuration (1, 2, 4 workers) everything starts afresh, each in its own process on
loopback:

* ``redis-server`` (append-only file, ``appendfsync everysec``: Redis's own default for it);
* the sandbox (``plugz_async.sandbox``) serving one instance per registration, its waits
  scaled by 0.01 (the documented 125 s become 2 s), sending random codes; a middleware
  notes, for each code request, when it arrived and when the sandbox's record opened that
  channel (``waits_from`` + the channel's wait), and whether it answered "too early";
  ``--sandbox thread`` serves it from a thread of this process instead;
* the workers: ``QueueWorker`` (32 steps at once each, no rate limit, the other settings
  the defaults), with the instances' tokens from an instances file.

This process registers the numbers (64 ``register`` calls in flight, all at once unless
``--rate``) and feeds the codes back: it follows the queue's events stream, and when a
registration's code was sent it takes the code from the sandbox's code log and calls
``submit_code``. The numbers are the sandbox's own mix, keeping the ones it reports
available: about 72% ready now and 28% with waits of 1 to 3 s.

Measured: registrations per second from the first ``register`` to the last final state;
lateness of every code request after its channel opened (the sandbox's clock), and of
every kind of step after its moment, as the workers count it (`Lateness`), with the
early ones (there must be none: the bench fails then) and the sandbox's "too early"
answers; Redis ``used_memory`` after the run minus before, per registration, and again
once the finished jobs' keys are gone (saq keeps them 600 s: the bench deletes the keys
that have a TTL, as expiry would), with ``MEMORY USAGE`` by kind of key; CPU per
registration of the workers, Redis, the sandbox and this process (``/proc``), and the
machine's other load meanwhile; round trips to Redis per registration, counted by kind in
the workers and in this process; before each configuration, the client CPU of a bare
redis-py round trip and a bare aiohttp request, in a fresh process. Throughput of 2 and 4
workers is reported as a ratio to 1 worker measured in the same run.

Prints a Markdown table; ``--out FILE`` writes it there too, ``--json FILE`` every figure;
``--keep DIR`` keeps the logs; ``--profile DIR`` runs the workers under cProfile with a
CPU clock (a diagnosis, not a measurement: it slows them down several times).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from plugz_async.testing._redis_server import AppendFsync, RedisServer, stop_process

HOST = "127.0.0.1"
QUEUE = "plugz"
CONCURRENCY = 32  # steps at once per worker
PRODUCERS = 64  # registers at once
SUBMITTERS = 32  # submit_code calls at once
WAIT_SCALE = 0.01
STOP_TIMEOUT = 20.0  # seconds between SIGTERM and SIGKILL
# The sandbox's mix, less the numbers that end at the check (banned, unavailable, blocked).
AVAILABLE = ("ready", "wa_old-not-eligible", "waits")
#: What the sandbox's lateness watch noted, per code request (see `sandbox_app`).
SEEN = web.AppKey("bench_seen", list)
# This process's round trips to Redis (count_round_trips), per configuration.
ROUND_TRIPS: Counter[str] = Counter()


# -- processes ---------------------------------------------------------------------------------


def proc_times(pid: int) -> tuple[float, float]:
    """(user, sys) seconds of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def proc_cpu(pid: int) -> float:
    """user+sys seconds of a live process."""
    return sum(proc_times(pid))


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def system_busy() -> float:
    """Busy CPU seconds of the whole machine (every process, ours or not), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# What each Lua script is, by a line of its text (the store's, then saq's).
SCRIPTS = (
    ("numbers, due, instance-key", "store.create"),
    ("KEYS: reg, counts, due, instance-key", "store.write"),
    ("== ARGV[1] then return redis.call('DEL'", "store.drop_input"),
    ("redis.call('ZSCORE', KEYS[1], KEYS[2])", "saq enqueue"),
    ("ZRANGEBYSCORE", "saq schedule"),
    ("LRANGE", "saq sweep"),
)


def count_round_trips(counts: Counter[str]) -> None:
    """Count, in ``counts``, every round trip this process makes to Redis with redis-py's
    asyncio client: a command, a script (by what it is) or a pipeline (by its commands);
    ``BLMOVE`` split into the ones that brought a job and the ones that timed out."""
    from redis.asyncio.client import Pipeline, Redis

    names: dict[str, str] = {}
    execute, register, pipeline = Redis.execute_command, Redis.register_script, Pipeline.execute

    def register_script(self: Any, script: Any) -> Any:
        found = register(self, script)
        text = script.decode() if isinstance(script, bytes) else str(script)
        names[found.sha] = next((name for key, name in SCRIPTS if key in text), "other script")
        return found

    async def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        result = await execute(self, *args, **options)
        name = str(args[0]).upper()
        if name == "EVALSHA":
            name = names.get(str(args[1]), "EVALSHA")
        elif name == "BLMOVE":
            name = "BLMOVE, a job" if result is not None else "BLMOVE, timed out"
        counts[name] += 1
        return result

    async def execute_pipeline(self: Any, raise_on_error: bool = True) -> Any:
        name = "+".join(str(args[0]).upper() for args, _ in self.command_stack)
        counts[f"pipeline {name}"] += 1
        return await pipeline(self, raise_on_error)

    Redis.register_script = register_script  # type: ignore[method-assign]
    Redis.execute_command = execute_command  # type: ignore[method-assign]
    Pipeline.execute = execute_pipeline  # type: ignore[method-assign]


# Every process this one started: whatever happens, none outlives it (see _kill_children).
CHILDREN: list[subprocess.Popen[Any]] = []


def spawn(command: list[str], **options: Any) -> subprocess.Popen[Any]:
    process = subprocess.Popen(command, **options)
    CHILDREN.append(process)
    return process


@atexit.register
def _kill_children() -> None:
    for process in CHILDREN:
        if process.poll() is None:
            process.kill()
            process.wait()


class Redis:
    """A redis-server of our own (plugz_async.testing._redis_server's, with ``--appendfsync``'s
    policy, or no append-only file at all for ``off``), and a redis-py client of it."""

    def __init__(self, directory: Path, appendfsync: str) -> None:
        import redis

        self.server = RedisServer(
            directory=directory,
            appendonly=appendfsync != "off",
            appendfsync="always" if appendfsync == "off" else cast(AppendFsync, appendfsync),
            startup_timeout=10.0,
        )
        self.server.start()
        self.url = self.server.url
        assert self.server.pid is not None
        self.pid = self.server.pid
        self.client = redis.Redis(host=HOST, port=self.server.port, decode_responses=True)

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def commands(self) -> Counter[str]:
        stats = self.client.info("commandstats")
        return Counter(
            {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        )

    def memory_of(self, pattern: str, sample: int = 200) -> tuple[int, float]:
        """How many keys match ``pattern``, and their mean MEMORY USAGE (of a sample)."""
        keys = list(self.client.scan_iter(match=pattern, count=1000))
        sizes = [self.client.memory_usage(key, samples=0) or 0 for key in keys[:sample]]
        return len(keys), (sum(sizes) / len(sizes) if sizes else 0.0)

    def breakdown(self, n: int) -> dict[str, float]:
        """Bytes per registration of what the queue keeps, by kind of key (MEMORY USAGE)."""
        out: dict[str, float] = {}
        for name, pattern in (
            ("registration hashes", f"plugz:{QUEUE}:reg:*"),
            ("saq jobs", "saq:job:*"),
            ("inputs not used", f"plugz:{QUEUE}:input:*"),
            ("instance keys", f"plugz:{QUEUE}:instance:*"),
        ):
            count, mean = self.memory_of(pattern)
            out[name] = count * mean / n
            out[f"{name}: keys per registration"] = count / n
        for name, key in (
            ("events stream", f"plugz:{QUEUE}:events"),
            ("numbers index", f"plugz:{QUEUE}:numbers"),
            ("due index", f"plugz:{QUEUE}:due"),
            ("saq incomplete index", f"saq:{QUEUE}:incomplete"),
        ):
            out[name] = (self.client.memory_usage(key, samples=0) or 0) / n
        return out

    def expire_finished_jobs(self) -> tuple[int, int]:
        """Delete saq's job keys that have a TTL (finished jobs: what expiry does after 600 s).
        Returns (deleted, job keys left without a TTL)."""
        keys = list(self.client.scan_iter(match="saq:job:*", count=1000))
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.ttl(key)
        ttls = pipe.execute()
        expiring = [key for key, ttl in zip(keys, ttls, strict=True) if ttl > 0]
        for start in range(0, len(expiring), 1000):
            self.client.delete(*expiring[start : start + 1000])
        return len(expiring), len(keys) - len(expiring)

    def stop(self) -> None:
        self.client.close()
        self.server.stop(STOP_TIMEOUT)


# -- the sandbox, with a lateness watch -------------------------------------------------------


def sandbox_app(n: int, wait_scale: float) -> Any:
    """The sandbox's app for ``n`` instances, with a middleware that notes every code
    request's lateness, and a few routes of the bench's own under ``/_bench/``."""
    from aiohttp import web

    from plugz_async.sandbox import SandboxConfig, create_app
    from plugz_async.sandbox._control import STATE  # create_app's documented key

    config = SandboxConfig(
        instances=n,
        wait_scale=wait_scale,
        registration_limit=n + 100,
        log_limit=1000,
        random_codes=True,
    )
    app = create_app(config)
    state = app[STATE]
    # Per code request: (seconds after its channel opened, the channel had a wait at the
    # check, the sandbox answered "too early").
    seen: list[tuple[float, bool, bool]] = []
    unmatched = [0]  # code requests for a number the instance's record is not of
    app[SEEN] = seen

    @web.middleware
    async def watch(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.match_info.get("route") != "request-registration-code":
            return await handler(request)  # type: ignore[no-any-return]
        arrived = state.now()
        try:
            body = await request.json()  # aiohttp keeps the body: the route reads it again
            digits = body["ddi"] + body["phone"]
        except (ValueError, TypeError, KeyError):
            body, digits = {}, None
        record = state.registration(request.match_info["instance"])
        opened, waited = None, False
        if record is not None and record.digits == digits and body["method"] in record.waits:
            opened = record.waits_from + record.waits[body["method"]]
            waited = record.requests > 0 or record.waits[body["method"]] > 0
        response = await handler(request)
        try:
            answer = json.loads(response.body)  # type: ignore[attr-defined]
        except (AttributeError, TypeError, ValueError):
            answer = {}
        too_early = answer.get("success") is False and "retryAfter" in answer
        if opened is None:
            unmatched[0] += 1
        else:
            seen.append((arrived - opened, waited, too_early))
        return response  # type: ignore[no-any-return]

    app.middlewares.append(watch)

    async def numbers(request: web.Request) -> web.Response:
        """``count`` numbers the sandbox reports available (its seeded mix)."""
        count, found, i = int(request.query["count"]), [], 0
        while len(found) < count:
            number = f"+55 31 9{1000 + i // 10_000:04d}-{i % 10_000:04d}"
            name, _, _ = state.answer_for("".join(c for c in number if c.isdigit()))
            if name in AVAILABLE:
                found.append([number, name])
            i += 1
        return web.json_response(found)

    async def instances(request: web.Request) -> web.Response:
        return web.json_response(dict(state.instances))

    async def codes(request: web.Request) -> web.Response:
        """The code log from entry ``after`` on."""
        return web.json_response(state.codes()[int(request.query.get("after", "0")) :])

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "code_requests": seen,
                "unmatched_code_requests": unmatched[0],
                "thread_cpu": time.thread_time(),  # the thread serving the sandbox
                "process_cpu": time.process_time(),
            }
        )

    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/_bench/ping", ping)
    app.router.add_get("/_bench/numbers", numbers)
    app.router.add_get("/_bench/instances", instances)
    app.router.add_get("/_bench/codes", codes)
    app.router.add_get("/_bench/stats", stats)
    return app


async def serve_sandbox(
    n: int, wait_scale: float, ready: Callable[[int], None], stop: asyncio.Event
) -> None:
    from aiohttp import web

    runner = web.AppRunner(
        sandbox_app(n, wait_scale), handle_signals=False, access_log=None, shutdown_timeout=1.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        ready(int(runner.addresses[0][1]))
        await stop.wait()
    finally:
        await runner.cleanup()


def sandbox_main(n: int, wait_scale: float) -> None:
    """``queue_bench.py _sandbox N SCALE``: serve until SIGTERM; prints ``ready PORT``."""

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await serve_sandbox(n, wait_scale, lambda port: print(f"ready {port}", flush=True), stop)

    asyncio.run(main())


class SandboxProcess:
    def __init__(self, n: int, wait_scale: float) -> None:
        self.process = spawn(
            [sys.executable, __file__, "_sandbox", str(n), str(wait_scale)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if line[:1] != ["ready"]:
            stop_process(self.process, STOP_TIMEOUT)
            raise RuntimeError(f"the sandbox did not start: {line}")
        self.url = f"http://{HOST}:{line[1]}"

    def cpu(self, stats: dict[str, Any]) -> float:
        return float(stats["process_cpu"])

    def stop(self) -> None:
        stop_process(self.process, STOP_TIMEOUT)


class SandboxInThread:
    """The same sandbox in a thread of this process (its own event loop)."""

    def __init__(self, n: int, wait_scale: float) -> None:
        started = threading.Event()
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None

        def ready(port: int) -> None:
            self.port = port
            started.set()

        async def main() -> None:
            self.loop, self.stopping = asyncio.get_running_loop(), asyncio.Event()
            await serve_sandbox(n, wait_scale, ready, self.stopping)

        self.thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
        self.thread.start()
        if not started.wait(30):
            raise RuntimeError("the sandbox thread did not start")
        self.url = f"http://{HOST}:{self.port}"

    def cpu(self, stats: dict[str, Any]) -> float:
        return float(stats["thread_cpu"])

    def stop(self) -> None:
        if self.loop is not None and self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.load(answer)


# -- baselines: a bare Redis round trip and a bare HTTP request -------------------------------


def baseline_main(redis_url: str, sandbox_url: str) -> None:
    """``queue_bench.py _baseline REDIS_URL SANDBOX_URL``: the client CPU of one bare
    redis-py round trip (GET, 32 at once) and one bare aiohttp request (32 at once), in a
    fresh process as a worker is; prints JSON."""
    import aiohttp
    import redis.asyncio as aioredis

    async def main() -> dict[str, float]:
        client = aioredis.from_url(redis_url)
        await client.set("bench:baseline", "x" * 100)
        count, at_once = 8000, 32

        async def gets() -> None:
            for _ in range(count // at_once):
                await client.get("bench:baseline")

        await asyncio.gather(*(gets() for _ in range(at_once)))  # warm up
        started = self_cpu()
        await asyncio.gather(*(gets() for _ in range(at_once)))
        redis_us = (self_cpu() - started) / count * 1e6
        await client.delete("bench:baseline")
        await client.aclose()
        async with aiohttp.ClientSession() as http:

            async def requests() -> None:
                for _ in range(count // 4 // at_once):
                    async with http.get(f"{sandbox_url}/_bench/ping") as answer:
                        await answer.json()

            await asyncio.gather(*(requests() for _ in range(at_once)))
            started = self_cpu()
            await asyncio.gather(*(requests() for _ in range(at_once)))
            http_us = (self_cpu() - started) / (count // 4) * 1e6
        return {"redis_round_trip_us": redis_us, "http_request_us": http_us}

    print(json.dumps(asyncio.run(main())))


def baseline(redis_url: str, sandbox_url: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "_baseline", redis_url, sandbox_url],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout))


# -- the workers ------------------------------------------------------------------------------


def worker_main() -> None:
    """``queue_bench.py _worker``: one QueueWorker, configured by the PLUGZ_* variables."""
    from plugz_async.queue import QueueWorker

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    counts: Counter[str] = Counter()
    count_round_trips(counts)
    worker = QueueWorker(
        queue=QUEUE,
        concurrency=int(os.environ["BENCH_CONCURRENCY"]),
        timed_concurrency=int(os.environ.get("BENCH_TIMED_CONCURRENCY") or 0) or None,
        rate_limit=None,
    )
    signal.signal(signal.SIGUSR1, lambda *_: counts.clear())  # the run starts now
    profile = os.environ.get("BENCH_PROFILE")
    if profile:  # CPU time, not wall time: a wall-clock profile counts waiting for a core
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.runcall(asyncio.run, worker.run())
        profiler.dump_stats(profile)
    else:
        asyncio.run(worker.run())
    Path(os.environ["BENCH_COUNTS"]).write_text(json.dumps(counts))


def start_workers(
    count: int, env: dict[str, str], directory: Path, profile: Path | None
) -> list[subprocess.Popen[bytes]]:
    workers = []
    for i in range(count):
        command = [sys.executable, __file__, "_worker"]
        counts = {"BENCH_COUNTS": str(directory / f"worker-{i + 1}.json")}
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            counts["BENCH_PROFILE"] = str(profile / f"worker-{count}w-{i + 1}.prof")
        with open(directory / f"worker-{count}w-{i + 1}.log", "ab") as log:
            workers.append(
                spawn(
                    command,
                    env={**env, **counts},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            )
    return workers


# -- one configuration ------------------------------------------------------------------------


async def drive(
    redis_url: str,
    sandbox_url: str,
    numbers: list[str],
    instances: list[str],
    deadline: float,
    rate: float | None = None,
) -> dict[str, Any]:
    """Register every number, feed the codes back, wait until every registration ended."""
    import aiohttp

    from plugz_async import EventKind, RegistrationStep
    from plugz_async.queue import RegistrationQueue

    steps = {step.value for step in RegistrationStep if step is not RegistrationStep.DONE}
    finished: dict[str, float] = {}
    wanting: set[str] = set()
    wanted = asyncio.Event()
    fed = Counter[str]()

    async with RegistrationQueue(redis_url, queue=QUEUE) as queue, aiohttp.ClientSession() as http:

        async def follow() -> None:
            async for item in queue.events(after="0"):
                if item.event.kind is EventKind.FINISHED:
                    finished[item.number] = item.event.at.timestamp()
                elif item.event.kind is EventKind.CODE_REQUESTED and item.status == "confirm_code":
                    wanting.add(item.number)
                    wanted.set()

        async def submit(number: str, code: str, limit: asyncio.Semaphore) -> None:
            async with limit:
                try:
                    await queue.submit_code(number, code)
                    fed["submitted"] += 1
                except Exception as error:  # the registration moved on: count it
                    fed[type(error).__name__] += 1

        async def feed() -> None:
            codes: dict[str, str] = {}
            read = 0
            limit = asyncio.Semaphore(SUBMITTERS)
            tasks: set[asyncio.Task[None]] = set()
            while True:
                await wanted.wait()
                wanted.clear()
                while wanting:
                    async with http.get(f"{sandbox_url}/_bench/codes?after={read}") as answer:
                        new = await answer.json()
                    read += len(new)
                    codes.update((entry["number"], entry["code"]) for entry in new)
                    for number in [n for n in wanting if n[1:] in codes]:
                        wanting.discard(number)
                        task = asyncio.create_task(submit(number, codes.pop(number[1:]), limit))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    if wanting:
                        await asyncio.sleep(0.02)  # the code log has not caught up yet

        async def produce() -> float:
            pairs = iter(enumerate(zip(numbers, instances, strict=True)))

            async def producer() -> None:
                for i, (number, instance) in pairs:
                    if rate:  # the i-th registration starts at i / rate seconds, not before
                        await asyncio.sleep(started + i / rate - time.time())
                    await queue.register(number, instance=instance)

            await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
            return time.time()

        helpers = [asyncio.create_task(follow()), asyncio.create_task(feed())]
        started = time.time()
        producing = asyncio.create_task(produce())
        outcomes: dict[str, int] = {}
        try:
            while True:
                await asyncio.sleep(0.1)
                counts = await queue.counts()
                outcomes = {k: v for k, v in counts.items() if k not in steps}
                if producing.done() and sum(outcomes.values()) >= len(numbers):
                    break
                if time.time() > deadline:
                    break
            observed = time.time()
            registered = await producing if producing.done() else observed
            await asyncio.sleep(0.3)  # the last FINISHED events reach the follower
        finally:
            for task in [*helpers, producing]:
                task.cancel()
            await asyncio.gather(*helpers, producing, return_exceptions=True)
    complete = sum(outcomes.values()) >= len(numbers)
    ended = max(finished.values()) if len(finished) == len(numbers) else observed
    return {
        "complete": complete,
        "seconds": ended - started,
        "register_seconds": registered - started,
        "outcomes": outcomes,
        "fed": dict(fed),
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def run_config(
    workers: int, n: int, args: argparse.Namespace, directory: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    redis = Redis(directory, args.appendfsync)
    sandbox: SandboxProcess | SandboxInThread | None = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sandbox = (SandboxInThread if args.sandbox == "thread" else SandboxProcess)(
            n, args.wait_scale
        )
        chosen = get_json(f"{sandbox.url}/_bench/numbers?count={n}")
        numbers = [number for number, _ in chosen]
        tokens: dict[str, str] = get_json(f"{sandbox.url}/_bench/instances")
        instances = list(tokens)[:n]
        (directory / "instances.json").write_text(json.dumps(tokens))
        env = {
            **os.environ,
            "PLUGZ_REDIS_URL": redis.url,
            "PLUGZ_BASE_URL": sandbox.url,
            "PLUGZ_CLIENT_TOKEN": "sandbox-client-token",
            "PLUGZ_INSTANCES_FILE": str(directory / "instances.json"),
            "BENCH_CONCURRENCY": str(args.concurrency),
            "BENCH_TIMED_CONCURRENCY": str(args.timed_concurrency or ""),
        }
        calibration = baseline(redis.url, sandbox.url)
        procs = start_workers(workers, env, directory, args.profile)
        deadline = time.monotonic() + 60
        while redis.client.zcard(f"saq:{QUEUE}:stats") < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the workers did not start: see {directory}/worker-*.log")
            time.sleep(0.05)
        time.sleep(1.0)  # idle: every connection open, nothing queued
        memory_before, commands_before = redis.used_memory(), redis.commands()
        for process in procs:
            process.send_signal(signal.SIGUSR1)  # count round trips from now on
        ROUND_TRIPS.clear()
        busy_before, wall_before = system_busy(), time.monotonic()
        sys_before = sum(proc_times(p.pid)[1] for p in procs)
        cpu_before = {
            "workers": sum(proc_cpu(p.pid) for p in procs),
            "redis": proc_cpu(redis.pid),
            "sandbox": sandbox.cpu(get_json(f"{sandbox.url}/_bench/stats")),
            "bench": self_cpu(),
        }
        result = asyncio.run(
            drive(redis.url, sandbox.url, numbers, instances, time.time() + args.timeout, args.rate)
        )
        stats = get_json(f"{sandbox.url}/_bench/stats")
        sys_after = sum(proc_times(p.pid)[1] for p in procs)
        cpu_after = {
            "workers": sum(proc_cpu(p.pid) for p in procs),
            "redis": proc_cpu(redis.pid),
            "sandbox": sandbox.cpu(stats),
            "bench": self_cpu(),
        }
        busy, wall = system_busy() - busy_before, time.monotonic() - wall_before
        bench_trips = Counter(ROUND_TRIPS)
        memory_after, commands_after = redis.used_memory(), redis.commands()
        kept = redis.breakdown(n)
        expired, left = redis.expire_finished_jobs()
        memory_expired = redis.used_memory()
        kept_expired = redis.breakdown(n)
        # Stopped gracefully, each worker writes its record once more: its final counts.
        for process in procs:
            process.send_signal(signal.SIGTERM)
        for process in procs:
            stop_process(process, STOP_TIMEOUT)
        steps_late = asyncio.run(step_lateness(redis.url))
    finally:
        for process in procs:
            process.send_signal(signal.SIGTERM)
        for process in procs:
            stop_process(process, STOP_TIMEOUT)
        if sandbox is not None:
            sandbox.stop()
        redis.stop()
    ours = sum(cpu_after.values()) - sum(cpu_before.values())
    cores = {"ours": ours / wall, "others": max(0.0, busy - ours) / wall}
    worker_trips: Counter[str] = Counter()
    for i in range(workers):
        counted = directory / f"worker-{i + 1}.json"
        if counted.exists():
            worker_trips.update(json.loads(counted.read_text()))
        else:
            log(f"worker {i + 1} of {workers} did not write its round trips (killed?)")
    cpu = {k: (cpu_after[k] - cpu_before[k]) / n * 1000 for k in cpu_before}
    if args.sandbox == "thread":
        cpu["bench"] -= cpu["sandbox"]  # the thread's CPU is the process's too
    commands = commands_after - commands_before
    code_requests = stats["code_requests"]
    lateness = [late for late, _, _ in code_requests]
    waited = [late for late, had_wait, _ in code_requests if had_wait]
    ready = [late for late, had_wait, _ in code_requests if not had_wait]
    mix = Counter(name for _, name in chosen)
    row = {
        "workers": workers,
        "n": n,
        "mix": dict(mix),
        **result,
        "rate": n / result["seconds"],
        "code_requests": len(code_requests),
        "unmatched_code_requests": stats["unmatched_code_requests"],
        "steps_late": steps_late,
        "late_p50_ms": percentile(lateness, 0.50) * 1000,
        "late_p99_ms": percentile(lateness, 0.99) * 1000,
        "late_max_ms": max(lateness) * 1000,
        "late_ready_p50_ms": percentile(ready, 0.5) * 1000 if ready else None,
        "late_waited_p50_ms": percentile(waited, 0.5) * 1000 if waited else None,
        "late_waited_p99_ms": percentile(waited, 0.99) * 1000 if waited else None,
        "early": sum(1 for late in lateness if late < 0),
        "too_early_answers": sum(1 for _, _, too_early in code_requests if too_early),
        "memory_per_reg": (memory_after - memory_before) / n,
        "memory_per_reg_expired": (memory_expired - memory_before) / n,
        "memory_by_kind": kept,
        "memory_by_kind_expired": kept_expired,
        "finished_jobs_expired": expired,
        "jobs_left": left,
        "cpu_ms": cpu,
        "cores": cores,
        "workers_sys_share": (sys_after - sys_before)
        / max(1e-9, cpu_after["workers"] - cpu_before["workers"]),
        "baseline": calibration,
        "worker_cpu_in_round_trips": cpu["workers"] * 1000 / calibration["redis_round_trip_us"],
        "round_trips_workers": sum(worker_trips.values()) / n,
        "round_trips_bench": sum(bench_trips.values()) / n,
        "round_trips_workers_by_kind": {k: v / n for k, v in worker_trips.most_common()},
        "round_trips_bench_by_kind": {k: v / n for k, v in bench_trips.most_common()},
        "commands_per_reg": sum(commands.values()) / n,
        "commands": {k: v / n for k, v in commands.most_common()},
    }
    log(
        f"{workers} worker(s): {row['rate']:.0f} registrations/s, {result['outcomes']}, "
        f"worker CPU {cpu['workers']:.1f} ms/registration, "
        f"{row['round_trips_workers']:.0f} + {row['round_trips_bench']:.0f} Redis round trips/registration"
    )
    return row


async def step_lateness(redis_url: str) -> dict[str, dict[str, float]]:
    """How late each kind of step started, in ms, as the workers counted (their records)."""
    from plugz_async.queue import Lateness, RegistrationQueue

    async with RegistrationQueue(redis_url, queue=QUEUE) as queue:
        workers = await queue.workers()
    merged = Lateness.merge(worker.lateness.to_dict() for worker in workers)
    return {
        kind: {
            "count": s.count,
            "p50_ms": s.p50 * 1000,
            "p99_ms": s.p99 * 1000,
            "max_ms": s.max * 1000,
            "early": s.early,
        }
        for kind, s in merged.summaries().items()
    }


# -- the report -------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workers | registrations/s | code request lateness p50 / p99 / max | early | "
        '"too early" answers | Redis memory per registration: after the run / once finished '
        "jobs expire | CPU per registration: workers / Redis / sandbox / producer+feeder | "
        "Redis round trips per registration: workers / producer+feeder | "
        "cores busy: these processes / others |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cpu = r["cpu_ms"]
        lines.append(
            f"| {r['workers']} | {r['rate']:.0f} | "
            f"{r['late_p50_ms']:.0f} / {r['late_p99_ms']:.0f} / {r['late_max_ms']:.0f} ms | "
            f"{r['early']} | {r['too_early_answers']} | "
            f"{r['memory_per_reg'] / 1024:.1f} / {r['memory_per_reg_expired'] / 1024:.1f} KiB | "
            f"{cpu['workers']:.1f} / {cpu['redis']:.1f} / {cpu['sandbox']:.1f} / "
            f"{cpu['bench']:.1f} ms | "
            f"{r['round_trips_workers']:.0f} / {r['round_trips_bench']:.0f} | "
            f"{r['cores']['ours']:.2f} / {r['cores']['others']:.2f} |"
        )
    return "\n".join(lines)


#: The order the steps of a registration come in.
STEP_ORDER = ("check", "request_code", "answer_captcha", "confirm_code", "confirm_pin")


def lateness_table(rows: list[dict[str, Any]]) -> str:
    """How late each kind of step started after its moment, as the workers counted."""
    lines = [
        "| workers | step | steps | started late p50 / p99 / max | early |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        kinds = r["steps_late"]
        ordered = sorted(kinds, key=lambda k: (*STEP_ORDER, k).index(k))
        for kind in ordered:
            s = kinds[kind]
            lines.append(
                f"| {r['workers']} | {kind} | {s['count']} | {s['p50_ms']:.0f} / "
                f"{s['p99_ms']:.0f} / {s['max_ms']:.0f} ms | {s['early']} |"
            )
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["_worker"]:
        return worker_main()
    if sys.argv[1:2] == ["_baseline"]:
        return baseline_main(sys.argv[2], sys.argv[3])
    if sys.argv[1:2] == ["_sandbox"]:
        return sandbox_main(int(sys.argv[2]), float(sys.argv[3]))
    count_round_trips(ROUND_TRIPS)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 registrations, not 10,000")
    parser.add_argument("--full", action="store_true", help="10,000 registrations, not 3,000")
    parser.add_argument("--registrations", type=int, help="registrations per configuration")
    parser.add_argument(
        "--rate", type=float, help="register this many a second (default: all at once)"
    )
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="per worker")
    parser.add_argument(
        "--timed-concurrency", type=int, help="of those, kept for timed steps (default: 3/4)"
    )
    parser.add_argument("--wait-scale", type=float, default=WAIT_SCALE)
    parser.add_argument(
        "--sandbox", choices=("process", "thread"), default="process", help="where it runs"
    )
    parser.add_argument(
        "--appendfsync", choices=("everysec", "always", "no", "off"), default="everysec"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per configuration")
    parser.add_argument("--profile", type=Path, help="run the workers under cProfile, into DIR")
    parser.add_argument("--keep", type=Path, help="keep the logs and files in this new folder")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args()
    n = args.registrations or (1_000 if args.quick else 10_000 if args.full else 3_000)
    counts = [int(c) for c in args.workers.split(",")]
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="plugz-queue-bench-") as tmp:
        for workers in counts:
            directory = (args.keep or Path(tmp)) / f"{workers}w"
            directory.mkdir(parents=True)
            rows.append(
                run_config(workers, n, args, directory, lambda text: print(text, file=sys.stderr))
            )
    text = (
        table(rows)
        + "\n\nHow late each kind of step started after its moment (its due time, or when its input came), as the workers counted:\n\n"
        + lateness_table(rows)
    )
    base = next((r for r in rows if r["workers"] == 1), None)
    if base is not None:
        ratios = ", ".join(
            f"{r['workers']} workers {r['rate'] / base['rate']:.2f}x"
            for r in rows
            if r["workers"] != 1
        )
        if ratios:
            text += f"\n\nThroughput relative to 1 worker (same run): {ratios}."
    text += "\n\nWorker CPU per registration, in bare round trips measured in the same run: " + (
        "; ".join(
            f"{r['workers']} workers {r['worker_cpu_in_round_trips']:.0f}"
            f" (a bare redis-py round trip {r['baseline']['redis_round_trip_us']:.0f} µs,"
            f" a bare aiohttp request {r['baseline']['http_request_us']:.0f} µs)"
            for r in rows
        )
        + "."
    )
    print(text)
    first = rows[0]
    print(
        f"\n{n:,} registrations per configuration ({', '.join(f'{v} {k}' for k, v in sorted(first['mix'].items()))}), "
        f"wait_scale {args.wait_scale}, {args.concurrency} steps at once per worker, "
        f"sandbox in a {args.sandbox}, appendfsync {args.appendfsync}; "
        f"{time.perf_counter() - started:.0f} s in all; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs"
    )
    busy = [f"{r['cores']['others']:.2f} ({r['workers']} workers)" for r in rows]
    if any(r["cores"]["others"] > 0.25 for r in rows):
        print(
            "\nOther processes kept the machine busy (cores, per configuration: "
            f"{', '.join(busy)}): the ratios are not to be trusted; run again when it is quiet."
        )
    if any(not r["complete"] for r in rows):
        print("INCOMPLETE: some registrations did not end within --timeout", file=sys.stderr)
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    if any(r["early"] for r in rows):
        sys.exit("a code request went out before its channel opened")
    return None


if __name__ == "__main__":
    main()
