"""Soak: 200,000 checks against the sandbox with 5% random faults at concurrency 256.

Run with ``nox -s soak`` (``-- --checks N`` for another size). The sandbox runs in its own
process (``plugz-async sandbox --fault-rate 0.05``); this process runs one bulk run and
samples its open file descriptors, asyncio tasks and resident memory every 2 seconds.
Passes when every number is answered exactly once, the only errors are the ones the fault
mix explains (a 503 on all three attempts), and nothing grows after the warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import Counter

import plugz_async as pz

FAULT_RATE = 0.05
ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def trend(values: list[int] | list[float]) -> float:
    """The mean of the last third over the mean of the first third."""
    third = max(1, len(values) // 3)
    first, last = values[:third], values[-third:]
    return (sum(last) / len(last)) / max(1e-9, sum(first) / len(first))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def soak(checks: int, concurrency: int, base_url: str) -> int:
    samples: list[tuple[float, int, int, float]] = []  # (progress, fds, tasks, rss)
    done = 0

    async def sample() -> None:
        while True:
            samples.append((done / checks, open_fds(), len(asyncio.all_tasks()), rss_mib()))
            await asyncio.sleep(2.0)

    client = pz.PlugzClient(
        "sandbox-instance",
        "sandbox-instance-token",
        "sandbox-client-token",
        base_url=base_url,
        retry=pz.RetryPolicy(attempts=ATTEMPTS, wait_initial=0.05, wait_max=0.5),
        max_connections=concurrency,
    )
    numbers = (f"+55 31 9{i // 10_000 % 10_000:04d}-{i % 10_000:04d}" for i in range(checks))
    seen = bytearray(checks)  # one byte a row: the soak's own memory must stay flat too
    answered = 0
    errors: Counter[str] = Counter()
    started = time.perf_counter()
    sampler = asyncio.create_task(sample())
    async with client, client.check_many(numbers, concurrency=concurrency) as run:
        async for item in run:
            done += 1
            assert not seen[item.index], f"row {item.index} answered twice"
            seen[item.index] = 1
            answered += 1
            if item.error is not None:
                errors[type(item.error).__name__] += 1
    sampler.cancel()
    elapsed = time.perf_counter() - started
    after = (open_fds(), len(asyncio.all_tasks()) - 1, rss_mib())  # the client is closed

    warm = [s for s in samples if 0.2 <= s[0] < 1.0]  # steady state: after warm-up, while running
    fds = [s[1] for s in warm]
    tasks = [s[2] for s in warm]
    rss = [s[3] for s in warm]
    expected_503s = checks * FAULT_RATE**ATTEMPTS
    failures = []
    if answered != checks or sum(seen) != checks:
        failures.append(f"{checks - sum(seen)} numbers never answered")
    unexplained = {name: n for name, n in errors.items() if name != "ServerError"}
    if unexplained:
        failures.append(f"errors the fault mix does not explain: {unexplained}")
    if errors["ServerError"] > max(10, 5 * expected_503s):
        failures.append(f"{errors['ServerError']} ServerErrors, ~{expected_503s:.0f} expected")
    # In flight, sockets and tasks come and go with the requests (aiohttp writes each body in
    # a task of its own): they must stay within what the concurrency explains, and not trend.
    if max(fds) > concurrency + 32 or trend(fds) > 1.1:
        failures.append(f"open file descriptors grew: {min(fds)} -> {max(fds)}")
    if max(tasks) > 2 * concurrency + 16 or trend(tasks) > 1.1:
        failures.append(f"asyncio tasks grew: {min(tasks)} -> {max(tasks)}")
    if rss[-1] > rss[0] * 1.10:
        failures.append(f"memory grew: {rss[0]:.1f} MiB -> {rss[-1]:.1f} MiB")
    if after[0] > samples[0][1] + 4:
        failures.append(f"file descriptors left open after the run: {after[0]}")
    if after[1] > 1:
        failures.append(f"tasks left after the run: {after[1]}")

    print("| measure | result |")
    print("| --- | --- |")
    print(f"| checks, concurrency | {checks:,}, {concurrency} |")
    print(f"| wall time, rate | {elapsed:.0f} s, {checks / elapsed:.0f} checks/s |")
    print(f"| answered once each | {sum(seen):,} of {checks:,} |")
    print(f"| requests, retries | {run.summary.attempts:,}, {run.summary.retries:,} |")
    print(
        f"| errors | {dict(errors) or 'none'} (503 on all {ATTEMPTS} attempts: ~{expected_503s:.0f} expected) |"
    )
    print(
        f"| open fds after warm-up (min / max; trend) | {min(fds)} / {max(fds)}; {trend(fds):.2f} |"
    )
    print(
        f"| asyncio tasks after warm-up (min / max; trend) | {min(tasks)} / {max(tasks)}; "
        f"{trend(tasks):.2f} |"
    )
    print(
        f"| RSS after warm-up (first / last / max) | {rss[0]:.1f} / {rss[-1]:.1f} / {max(rss):.1f} MiB |"
    )
    print(
        f"| after the run: open fds, tasks | {after[0]}, {after[1]} (before it: {samples[0][1]} fds) |"
    )
    print(f"| samples | {len(warm)} after warm-up, every 2 s |")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plugz_async",
            "sandbox",
            "--port",
            str(port),
            "--fault-rate",
            str(FAULT_RATE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("Sandbox listening on"), first
        base_url = first.split()[3]
        sys.exit(asyncio.run(soak(args.checks, args.concurrency, base_url)))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
