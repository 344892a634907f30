"""The queue's exactly-once promise under real faults, with real processes.

Two runs, each on its own ``redis-server`` (append-only, ``appendfsync everysec``), a
sandbox in this process (its code requests watched: when each arrived, when its channel
had opened) and worker processes (``QueueWorker``):

* ``python bench/queue_chaos.py kill`` (``nox -s soak_queue -- kill``): one worker, 40 steps at
  once, registers 40 numbers that are ready at once; the sandbox holds every code
  request's answer 4-8 s, so all 40 are in flight when the worker gets SIGKILL. A second
  worker takes over. Default worker settings and the sandbox's real waits (125 s, 165 s
  for the channel used) unless ``--wait-scale``.
* ``python bench/queue_chaos.py soak`` (``nox -s soak_queue``): 200 registrations of the
  sandbox's mix over 10 minutes on 2-4 workers, with worker kills (SIGKILL), stalls
  (SIGSTOP for longer than the heartbeat and the lease) and Redis restarts (SIGKILL, then
  the append-only file) at random moments; code answers held 0-3 s at random.

Both feed every code back as a person would (from the sandbox's code log), wait until
every registration has ended (or ``--drain`` seconds more), and print: numbers, code
requests, codes sent, channel windows used, duplicates (codes sent beyond one per window
used: must be 0), registrations stuck (not ended), "unknown" outcomes (a code request
whose fate could not be told, treated as sent), and the lateness of code requests after
their channel opened. Exit status 1 on a duplicate (and, with ``--strict``, on a stuck
registration).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from queue_bench import AVAILABLE, HOST, QUEUE, SEEN, sandbox_app, spawn
from redis.exceptions import RedisError

from plugz_async.testing._redis_server import RedisServer, stop_process

CODE_ROUTE = "request-registration-code"


# -- a worker process ---------------------------------------------------------------------


def worker_main() -> None:
    """``queue_chaos.py _worker``: one QueueWorker, from CHAOS_* and PLUGZ_* variables."""
    from plugz_async.queue import QueueWorker

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("saq").setLevel(logging.WARNING)
    settings: dict[str, Any] = json.loads(os.environ["CHAOS_WORKER"])
    accepted = inspect.signature(QueueWorker).parameters
    # Settings this version of the worker does not know are left out (a run of an older
    # version, for a before/after comparison).
    worker = QueueWorker(
        queue=QUEUE, rate_limit=None, **{k: v for k, v in settings.items() if k in accepted}
    )
    asyncio.run(worker.run())


class Workers:
    def __init__(self, env: dict[str, str], directory: Path, settings: dict[str, Any]) -> None:
        self.env = {**env, "CHAOS_WORKER": json.dumps(settings)}
        self.directory = directory
        self.live: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        with open(self.directory / f"worker-{self.started}.log", "ab") as log:
            process = spawn(
                [sys.executable, __file__, "_worker"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.live.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.kill()
        process.wait()
        self.live.remove(process)

    def stop_all(self) -> None:
        for process in self.live:
            process.send_signal(signal.SIGCONT)
            stop_process(process, 20.0)
        self.live.clear()


# -- the run --------------------------------------------------------------------------------


class Run:
    """Redis, the sandbox (in this loop), the workers, and the producer's side."""

    def __init__(self, n: int, wait_scale: float, directory: Path, settings: dict[str, Any]):
        from aiohttp import web

        from plugz_async.sandbox._control import STATE

        self.n = n
        self.directory = directory
        (directory / "redis").mkdir(exist_ok=True)
        self.redis = RedisServer(
            directory=directory / "redis", appendonly=True, appendfsync="everysec"
        )
        self.app = sandbox_app(n, wait_scale)
        self.state = self.app[STATE]
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        self.settings = settings
        self.workers: Workers | None = None
        self.started = time.monotonic()

    async def __aenter__(self) -> Run:
        from aiohttp import web

        self.redis.start()
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0)
        await site.start()
        url = f"http://{HOST}:{self.runner.addresses[0][1]}"
        instances = self.directory / "instances.json"
        instances.write_text(json.dumps(dict(self.state.instances)))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PLUGZ_")},
            "PLUGZ_REDIS_URL": self.redis.url,
            "PLUGZ_BASE_URL": url,
            "PLUGZ_CLIENT_TOKEN": self.state.config.client_token,
            "PLUGZ_INSTANCES_FILE": str(instances),
            "PYTHONPATH": os.pathsep.join(sys.path),
        }
        self.workers = Workers(env, self.directory, self.settings)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.workers is not None:
            self.workers.stop_all()
        await self.runner.cleanup()
        self.redis.close()

    def numbers(self, count: int, *, kinds: tuple[str, ...] = AVAILABLE) -> list[str]:
        found, i = [], 0
        while len(found) < count:
            number = f"+55 31 9{1000 + i // 10_000:04d}-{i % 10_000:04d}"
            name, _, _ = self.state.answer_for("".join(c for c in number if c.isdigit()))
            if name in kinds:
                found.append(number)
            i += 1
        return found

    def in_flight(self) -> int:
        """Code requests the sandbox has and has not answered yet."""
        return sum(
            1 for entry in self.state.requests(route=CODE_ROUTE) if entry.get("status") is None
        )


async def feed(queue: Any, run: Run, numbers: list[str], until: float) -> dict[str, Any]:
    """Give each registration its code, as a person would, until all ended or ``until``
    (monotonic); tolerates Redis being away. Returns the last status of each."""
    import plugz_async as pz

    last: dict[str, Any] = {}
    while time.monotonic() < until:
        try:
            for number in numbers:
                with contextlib.suppress(pz.UnknownRegistrationError):  # not registered yet
                    last[number] = await queue.status(number)
        except (RedisError, OSError, pz.PlugzError):  # Redis away for a moment
            await asyncio.sleep(0.5)
            continue
        if len(last) == len(numbers) and all(s.done for s in last.values()):
            break
        for number, status in last.items():
            if status.wants != "code":
                continue
            sent = run.state.codes(number=number)
            if sent:
                with contextlib.suppress(pz.RegistrationStateError, RedisError, OSError):
                    await queue.submit_code(number, sent[-1]["code"])
        await asyncio.sleep(0.25)
    return last


def report(run: Run, statuses: dict[str, Any], title: str, elapsed: float) -> dict[str, Any]:
    import plugz_async as pz

    numbers = list(statuses)
    duplicates, windows, codes, requests, unknown = 0, 0, 0, 0, 0
    duplicated: list[str] = []
    for number, status in statuses.items():
        used = sum(1 for e in status.events if e.kind is pz.EventKind.CODE_REQUESTED)
        unknown += sum(
            1
            for e in status.events
            if e.kind is pz.EventKind.CODE_REQUESTED and "treated as sent" in e.message
        )
        sent = len(run.state.codes(number=number))
        windows += used
        codes += sent
        requests += len(run.state.requests(number=number, route=CODE_ROUTE))
        if sent > used:
            duplicates += sent - used
            duplicated.append(number)
    stuck = [n for n, s in statuses.items() if not s.done]
    lateness = sorted(late for late, _waited, too_early in run.app[SEEN] if not too_early)
    early = sum(1 for late in lateness if late < 0)
    return {
        "run": title,
        "numbers": len(numbers),
        "code requests": requests,
        "codes sent": codes,
        "windows used": windows,
        "duplicates": duplicates,
        "numbers with a second code": len(duplicated),
        "stuck": len(stuck),
        "unknown (treated as sent)": unknown,
        "early": early,
        "lateness p50 (s)": round(lateness[len(lateness) // 2], 2) if lateness else 0.0,
        "lateness max (s)": round(lateness[-1], 2) if lateness else 0.0,
        "seconds": round(elapsed, 1),
        "outcomes": dict(sorted(_count(s.status for s in statuses.values()).items())),
    }


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


def table(row: dict[str, Any]) -> str:
    lines = ["| measure | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in row.items()]
    return "\n".join(lines)


# -- the kill with 40 code requests in flight -------------------------------------------------


async def kill_in_flight(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    from plugz_async.queue import RegistrationQueue

    settings = {"concurrency": args.in_flight}
    if args.floor is not None:
        settings["code_wait_floor"] = args.floor
    async with Run(args.in_flight, args.wait_scale, directory, settings) as run:
        assert run.workers is not None
        numbers = run.numbers(args.in_flight, kinds=("ready",))
        rng = random.Random(1)
        for number in numbers:
            run.state.hold(CODE_ROUTE, rng.uniform(4.0, 8.0), number=number)
        victim = run.workers.start()
        started = time.monotonic()
        async with RegistrationQueue(run.redis.url, environ={}) as queue:
            for number, instance in zip(numbers, run.state.instances, strict=False):
                await queue.register(number, instance=instance)
            deadline = time.monotonic() + 60
            while run.in_flight() < args.in_flight:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {run.in_flight()} code requests in flight")
                await asyncio.sleep(0.05)
            run.workers.kill(victim)
            killed = time.monotonic()
            print(f"killed the worker with {run.in_flight()} code requests in flight", flush=True)
            run.workers.start()
            statuses = await feed(queue, run, numbers, time.monotonic() + args.drain)
        row = report(run, statuses, f"kill, {args.in_flight} in flight", time.monotonic() - started)
        row["seconds from the kill to the last registration's end"] = round(
            time.monotonic() - killed, 1
        )
        return row


# -- the soak --------------------------------------------------------------------------------


async def soak(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    from plugz_async.queue import RegistrationQueue

    settings: dict[str, Any] = {
        "concurrency": 16,
        "heartbeat": 2,
        "sweep_interval": 2,
        "request_timeout": 5.0,
        "device_poll_interval": 1.0,
        "input_timeout": 60.0,
    }
    if args.floor is not None:
        settings["code_wait_floor"] = args.floor
    rng = random.Random(args.seed)
    count = args.registrations
    faults: dict[str, int] = {"worker killed": 0, "worker stopped": 0, "redis restarted": 0}
    async with Run(count, args.wait_scale, directory, settings) as run:
        workers = run.workers
        assert workers is not None
        numbers = run.numbers(count)
        for number in numbers:
            run.state.hold(CODE_ROUTE, rng.uniform(0.0, 3.0), number=number, times=5)
        for _ in range(3):
            workers.start()
        started = time.monotonic()
        end = started + args.minutes * 60
        registered = 0
        stalled: list[tuple[subprocess.Popen[bytes], float]] = []
        next_fault = started + rng.uniform(5, 15)
        pace = args.minutes * 60 * 0.7 / count  # registrations over the first 70%
        async with RegistrationQueue(run.redis.url, environ={}) as queue:
            feeding = asyncio.create_task(feed(queue, run, numbers, end + args.drain))
            instances = list(run.state.instances)
            while time.monotonic() < end:
                now = time.monotonic()
                while registered < count and registered * pace <= now - started:
                    try:
                        await queue.register(numbers[registered], instance=instances[registered])
                        registered += 1
                    except (RedisError, OSError):
                        break
                for process, until in list(stalled):
                    if now >= until:
                        process.send_signal(signal.SIGCONT)
                        stalled.remove((process, until))
                if now >= next_fault:
                    next_fault = now + rng.uniform(5, 15)
                    running = [p for p in workers.live if all(p is not s for s, _ in stalled)]
                    kind = rng.choice(["kill", "kill", "stop", "redis"])
                    if kind == "kill" and running:
                        workers.kill(rng.choice(running))
                        faults["worker killed"] += 1
                    elif kind == "stop" and running:
                        victim = rng.choice(running)
                        victim.send_signal(signal.SIGSTOP)
                        stalled.append((victim, now + rng.uniform(8, 25)))
                        faults["worker stopped"] += 1
                    elif kind == "redis":
                        run.redis.kill()
                        await asyncio.sleep(rng.uniform(0.5, 3.0))
                        run.redis.restart()
                        faults["redis restarted"] += 1
                    while len(workers.live) < rng.randint(2, 4):
                        workers.start()
                await asyncio.sleep(0.2)
            for process, _ in stalled:
                process.send_signal(signal.SIGCONT)
            statuses = await feeding
            # The registrations not reached in time are still counted (stuck).
            for number in numbers[registered:]:
                statuses.pop(number, None)
        row = report(run, statuses, f"soak, {args.minutes:g} min", time.monotonic() - started)
        row.update(faults)
        return row


def main() -> None:
    if sys.argv[1:2] == ["_worker"]:
        worker_main()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", choices=["kill", "soak"])
    parser.add_argument("--in-flight", type=int, default=40, help="kill: steps in flight")
    parser.add_argument("--wait-scale", type=float, default=None, help="the sandbox's waits")
    parser.add_argument("--floor", type=float, default=None, help="the workers' code_wait_floor")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak: how long")
    parser.add_argument("--registrations", type=int, default=200, help="soak: how many")
    parser.add_argument("--seed", type=int, default=0, help="soak: the faults' seed")
    parser.add_argument("--drain", type=float, default=None, help="seconds to let them end")
    parser.add_argument("--keep", type=Path, help="keep the logs in this folder")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--strict", action="store_true", help="a stuck registration fails too")
    args = parser.parse_args()
    if args.wait_scale is None:
        args.wait_scale = 1.0 if args.run == "kill" else 0.2
    if args.drain is None:
        args.drain = 400.0 if args.run == "kill" else 120.0
    if args.floor is None and args.run == "soak":
        args.floor = 24.0  # the shortest wait at scale 0.2 is 25 s
    with tempfile.TemporaryDirectory(prefix="plugz-chaos-") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        run = kill_in_flight if args.run == "kill" else soak
        row = asyncio.run(run(args, directory))
    print(table(row))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))
    if row["duplicates"] or (args.strict and row["stuck"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
