"""plugz-async's benchmarks, as ratios against baselines measured in the same run.

Run with ``nox -s bench`` (it installs httpx and requests for the comparisons), or
``python bench/bench.py [--quick]`` in an environment that has them. The server is
``bench/server.py`` in its own process on loopback, so the client process is what is
measured. Each comparison alternates which side goes first, warms up, and reports the
median of several rounds.

Prints a Markdown table; ``--out FILE`` writes it there too.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

import plugz_async as pz

HERE = Path(__file__).parent
ID, TOKEN, CLIENT_TOKEN = "bench-instance", "bench-token", "bench-client-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), str(port)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process, f"http://127.0.0.1:{port}"


def numbers(n: int) -> Iterator[str]:
    """``n`` distinct numbers (a bulk run checks a line once: a repeated number would not
    be sent, and the run would measure less than it says)."""
    for i in range(n):
        yield f"+55 31 9{i // 10_000 % 10_000:04d}-{i % 10_000:04d}"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the sides compared -----------------------------------------------------------------------


async def sdk_run(base_url: str, n: int, concurrency: int) -> None:
    client = pz.PlugzClient(ID, TOKEN, CLIENT_TOKEN, base_url=base_url)
    async with client, client.check_many(numbers(n), concurrency=concurrency) as run:
        async for _ in run:
            pass


async def sdk_single(base_url: str, n: int, concurrency: int) -> None:
    """A user's own loop awaiting one ``check_availability`` after another."""
    async with pz.PlugzClient(ID, TOKEN, CLIENT_TOKEN, base_url=base_url) as client:
        for number in numbers(n):
            await client.check_availability(number)


async def raw_single(base_url: str, n: int, concurrency: int) -> None:
    """The same loop with ``session.post`` and ``json()``."""
    url = f"{base_url}/instances/{ID}/token/{TOKEN}/mobile/registration-available"
    headers = {"Client-Token": CLIENT_TOKEN}
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            body = {"ddi": "55", "phone": f"319{i % 10_000:04d}{i % 10_000:04d}"}
            async with session.post(url, json=body, headers=headers) as response:
                await response.json()


async def raw_run(base_url: str, n: int, concurrency: int) -> None:
    """What a careful user would write with aiohttp alone: a session, a semaphore."""
    url = f"{base_url}/instances/{ID}/token/{TOKEN}/mobile/registration-available"
    headers = {"Client-Token": CLIENT_TOKEN}
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> Any:
            async with limit:
                body = {"ddi": "55", "phone": f"319{i % 10_000:04d}{i % 10_000:04d}"}
                async with session.post(url, json=body, headers=headers) as response:
                    return await response.json()

        await asyncio.gather(*(one(i) for i in range(n)))


async def tuned_run(base_url: str, n: int, concurrency: int) -> None:
    """aiohttp alone, called the way the SDK calls it: headers on the session, no cookie
    jar, the body as bytes, a URL built once, a fixed pool of workers pulling the input, the
    answer read once and parsed. What is left between it and ``check_many`` is the SDK's own
    work (validation, typed answers, retries, pacing, the summary)."""
    import yarl

    url = yarl.URL(f"{base_url}/instances/{ID}/token/{TOKEN}/mobile/registration-available")
    headers = {"Client-Token": CLIENT_TOKEN, "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30.0, sock_connect=10.0)
    async with aiohttp.ClientSession(headers=headers, cookie_jar=aiohttp.DummyCookieJar()) as s:
        todo = iter(range(n))

        async def work() -> None:
            for i in todo:
                body = b'{"ddi":"55","phone":"319%04d%04d"}' % (i % 10_000, i % 10_000)
                async with s.request("POST", url, data=body, timeout=timeout) as response:
                    json.loads(await response.read())

        await asyncio.gather(*(work() for _ in range(concurrency)))


async def httpx_run(base_url: str, n: int, concurrency: int) -> None:
    import httpx

    url = f"{base_url}/instances/{ID}/token/{TOKEN}/mobile/registration-available"
    limit = asyncio.Semaphore(concurrency)
    # Keep-alive for every connection in flight, as for aiohttp (httpx keeps 20 by default).
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(headers={"Client-Token": CLIENT_TOKEN}, limits=limits) as client:

        async def one(i: int) -> Any:
            async with limit:
                body = {"ddi": "55", "phone": f"319{i % 10_000:04d}{i % 10_000:04d}"}
                return (await client.post(url, json=body)).json()

        await asyncio.gather(*(one(i) for i in range(n)))


def requests_run(base_url: str, n: int) -> None:
    import requests

    url = f"{base_url}/instances/{ID}/token/{TOKEN}/mobile/registration-available"
    with requests.Session() as session:
        for i in range(n):
            body = {"ddi": "55", "phone": f"319{i % 10_000:04d}{i % 10_000:04d}"}
            session.post(url, json=body, headers={"Client-Token": CLIENT_TOKEN}).json()


Side = Callable[[str, int, int], Awaitable[None]]


# The event loops a side runs on: asyncio's own, and uvloop (uvicorn's, when installed).
LOOPS: dict[str, Callable[[Any], Any]] = {"asyncio": asyncio.run}
try:
    import uvloop

    LOOPS["uvloop"] = uvloop.run
except ImportError:  # pragma: no cover - nox -s bench installs it
    pass


def timed(side: Callable[[], Awaitable[None] | None], loop: str = "asyncio") -> tuple[float, float]:
    """Wall seconds and CPU seconds of one run (async sides in a fresh event loop)."""
    started, cpu_started = time.perf_counter(), cpu()
    result = side()
    if result is not None:
        LOOPS[loop](result)
    return time.perf_counter() - started, cpu() - cpu_started


def compare(
    base_url: str,
    sdk: Side,
    other: Side,
    n: int,
    concurrency: int,
    rounds: int,
    loop: str = "asyncio",
) -> dict[str, float]:
    """Median throughput ratio sdk/other and CPU-per-check ratio, alternating the order."""
    timed(lambda: sdk(base_url, 300, concurrency), loop)  # warm up both
    timed(lambda: other(base_url, 300, concurrency), loop)
    speed, cost, sdk_rates = [], [], []
    for round_ in range(rounds):
        order = [(sdk, "sdk"), (other, "other")]
        if round_ % 2:
            order.reverse()
        results = {
            name: timed(functools.partial(side, base_url, n, concurrency), loop)
            for side, name in order
        }
        (sdk_wall, sdk_cpu), (other_wall, other_cpu) = results["sdk"], results["other"]
        speed.append(other_wall / sdk_wall)
        cost.append(sdk_cpu / other_cpu)
        sdk_rates.append(n / sdk_wall)
    return {
        "throughput_ratio": statistics.median(speed),
        "cpu_ratio": statistics.median(cost),
        "sdk_rate": statistics.median(sdk_rates),
    }


# -- pacing -------------------------------------------------------------------------------


#: When each attempt went to the wire, by the transport that sent it.
SENT: dict[int, list[float]] = {}


def record_sends() -> None:
    """Make ``Transport.send`` note the moment each attempt is sent: after every middleware
    (the pacer's wait included), whichever way the client sends."""
    from plugz_async._transport import Transport

    real = Transport.send
    if getattr(real, "recording", False):
        return

    async def send(self: Transport, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if id(self) in SENT:
            SENT[id(self)].append(time.monotonic())
        return await real(self, *args, **kwargs)

    send.recording = True  # type: ignore[attr-defined]
    Transport.send = send  # type: ignore[method-assign,assignment]


async def paced(base_url: str, rate: float, seconds: float) -> dict[str, float]:
    """A bulk run at ``max_rate=rate`` for about ``seconds``: the rate it achieved (requests
    sent, first to last) and the most requests that started in any one-second window."""
    record_sends()
    n = int(rate * seconds) + 1
    client = pz.PlugzClient(ID, TOKEN, CLIENT_TOKEN, base_url=base_url)
    started = SENT.setdefault(id(client._transport), [])
    async with client, client.check_many(numbers(n), concurrency=64, max_rate=rate) as run:
        async for _ in run:
            pass
    del SENT[id(client._transport)]
    started.sort()
    achieved = (len(started) - 1) / (started[-1] - started[0])
    most, j = 0, 0
    for i, t in enumerate(started):  # a window opening at each request
        while j < len(started) and started[j] < t + 1.0:
            j += 1
        most = max(most, j - i)
    return {"achieved": achieved, "max_window": most}


# -- where a check's CPU goes ------------------------------------------------------------------


LAYER_ANSWER = (
    b'{"available":true,"smsWaitSeconds":30,"voiceWaitSeconds":0,'
    b'"waOldWaitSeconds":60,"waOldEligible":true}'
)


def _per_call(fn: Callable[[], object], n: int = 20_000, repeat: int = 5) -> float:
    """Best CPU microseconds of one call of ``fn`` (a tight loop, best of ``repeat``)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - started) / n * 1e6)
    return best


def _per_await(make: Callable[[], Awaitable[object]], n: int = 20_000, repeat: int = 5) -> float:
    async def loop() -> float:
        best = float("inf")
        for _ in range(repeat):
            started = time.process_time()
            for _ in range(n):
                await make()
            best = min(best, (time.process_time() - started) / n * 1e6)
        return best

    return asyncio.run(loop())


def layers(base_url: str, n: int) -> list[tuple[str, float]]:
    """The CPU of one check of a bulk run, by layer, in microseconds: each of the SDK's own
    layers measured alone, the bulk run with the network taken away, and the rest (aiohttp
    and the event loop) as the difference with the whole, against the bench server; and
    the raw aiohttp loop's whole, beside it."""
    from plugz_async import _client, _models, _retry, _transport
    from plugz_async._bulk import _pacing, _summary
    from plugz_async._bulk._items import BulkItem

    clock = pz.SystemClock()
    planner = pz.RegistrationPlanner(clock=clock)
    transport = pz.PlugzClient(ID, TOKEN, CLIENT_TOKEN, base_url=base_url)._transport
    texts = [f"+55 31 9{i % 10_000:04d}-{i % 10_000:04d}" for i in range(1000)]
    number = pz.PhoneNumber.parse(texts[0])
    data = transport.decode(200, LAYER_ANSWER, {}, "mobile/registration-available")
    availability = _models.decode_availability(
        data, number=number, observed_at=clock.now(), observed_monotonic=clock.monotonic()
    )
    item = BulkItem(index=0, key="0", input=texts[0], number=number, availability=availability)
    summary = _summary.BulkSummary(started=clock.monotonic())
    counter = iter(range(10**9))
    pacer = _pacing.Pacer(None, clock)

    async def answer() -> dict[str, Any]:
        return data

    rows: list[tuple[str, float]] = [
        (
            "the number read (PhoneNumber.parse)",
            _per_call(lambda: pz.PhoneNumber.parse(texts[next(counter) % 1000])),
        ),
        (
            "the answer's JSON checked (Transport.decode)",
            _per_call(lambda: transport.decode(200, LAYER_ANSWER, {}, "r")),
        ),
        (
            "the Availability built (decode_availability)",
            _per_call(
                lambda: _models.decode_availability(
                    data,
                    number=number,
                    observed_at=clock.now(),
                    observed_monotonic=clock.monotonic(),
                )
            ),
        ),
        (
            "the summary counted (planner verdict, spreads)",
            _per_call(lambda: summary.add(item, clock.monotonic(), planner)),
        ),
        (
            "the retry wrapper, first attempt (call_with_retry)",
            _per_await(
                lambda: _retry.call_with_retry(
                    lambda _: answer(), policy=pz.RetryPolicy(), clock=clock, route="r"
                )
            ),
        ),
        (
            "the attempt middlewares (the bulk pacer, through)",
            _per_await(lambda: _transport.through((pacer,), "r", answer)),
        ),
    ]
    # The bulk run with the network taken away: the SDK's own cost per check, all layers.
    real_send = _transport.Transport.send

    async def no_network(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return dict(data)

    _transport.Transport.send = no_network  # type: ignore[method-assign,assignment]
    try:
        asyncio.run(sdk_run(base_url, 2000, 64))
        own = min(timed(lambda: sdk_run(base_url, n, 64))[1] for _ in range(3)) / n * 1e6
    finally:
        _transport.Transport.send = real_send  # type: ignore[method-assign]
    whole = min(timed(lambda: sdk_run(base_url, n, 64))[1] for _ in range(3)) / n * 1e6
    raw = min(timed(lambda: raw_run(base_url, n, 64))[1] for _ in range(3)) / n * 1e6
    measured = sum(value for _, value in rows)
    rows.append(("the bulk run's hand-off, workers and the rest of the SDK's own", own - measured))
    rows.append(("the SDK's own layers, all (the run with no network)", own))
    rows.append(("aiohttp and the event loop (the whole less the SDK's own)", whole - own))
    rows.append(("a check of check_many, whole (concurrency 64)", whole))
    rows.append(("a check of the raw aiohttp loop, whole (concurrency 64)", raw))
    del _client
    return rows


# -- memory -------------------------------------------------------------------------------


RSS_CHILD = """
import asyncio, json, resource, sys
import plugz_async as pz
base_url, n = sys.argv[1], int(sys.argv[2])
def numbers():
    for i in range(n):
        yield f"+55 31 9{i // 10_000 % 10_000:04d}-{i % 10_000:04d}"
async def main():
    async with pz.PlugzClient("bench-instance", "bench-token", "bench-client-token", base_url=base_url) as client:
        async with client.check_many(numbers(), concurrency=64) as run:
            async for item in run:
                pass
    return run.summary.total
total = asyncio.run(main())
print(json.dumps({"total": total, "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def peak_rss(base_url: str, n: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, base_url, str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["total"] == n
    return {"rss_mib": result["max_rss_kib"] / 1024}


# -- the planner ------------------------------------------------------------------------------


async def planner_lateness(plans: int, spread: float) -> dict[str, float]:
    """Plans with staggered ready times, all waiting on one loop: how late each wakes."""
    clock = pz.SystemClock()
    planner = pz.RegistrationPlanner(clock=clock)
    number = pz.PhoneNumber.parse("+55 31 90000-0000")
    observed_at, observed = clock.now(), clock.monotonic()
    lateness: list[float] = []
    # All plans are made first, then every one starts waiting; the first opens 1.5 s after
    # the start, the last 1.5 s + spread after. (Making 10,000 plans and their tasks takes
    # about 0.6 s: a first window at 0.5 s measured the set-up, not the waking.)
    made = [
        planner.plan(
            pz.Availability(
                number=number,
                available=True,
                sms_wait_seconds=1.5 + spread * i / plans,
                voice_wait_seconds=2.0 + spread * 2,
                observed_at=observed_at,
                observed_monotonic=observed,
            )
        )
        for i in range(plans)
    ]

    async def wait(plan: pz.RegistrationPlan) -> None:
        channel = await plan.wait_for_next()
        lateness.append(clock.monotonic() - plan.window(channel).ready_at_monotonic)

    await asyncio.gather(*(wait(plan) for plan in made))
    ordered = sorted(lateness)
    return {
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        "max_ms": ordered[-1] * 1000,
        "early": sum(1 for late in lateness if late < 0),
    }


# -- the report -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and numbers")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    scale = 0.25 if args.quick else 1.0
    server, base_url = start_server()
    rows: list[tuple[str, str, str, str]] = []
    started = time.perf_counter()
    try:
        for loop in LOOPS:
            for concurrency, n in ((1, 400), (16, 3000), (64, 4000)):
                n = max(200, int(n * scale))
                result = compare(base_url, sdk_run, raw_run, n, concurrency, rounds, loop)
                target = "" if concurrency == 1 else ">= 1.0x"
                rows.append(
                    (
                        f"{loop}: throughput, check_many vs raw aiohttp, concurrency {concurrency}",
                        f"{result['throughput_ratio']:.2f}x",
                        target,
                        f"SDK {result['sdk_rate']:.0f} checks/s",
                    )
                )
                if concurrency > 1:
                    rows.append(
                        (
                            f"{loop}: client CPU per check, SDK / raw aiohttp "
                            f"(concurrency {concurrency})",
                            f"{result['cpu_ratio']:.2f}x",
                            "<= 1.0x",
                            "user+sys of the client process",
                        )
                    )
            # The same comparison against aiohttp tuned as the SDK tunes it: the SDK's own
            # work, measured as a whole.
            n = max(200, int(4000 * scale))
            tuned = compare(base_url, tuned_run, raw_run, n, 64, rounds, loop)
            own = compare(base_url, sdk_run, tuned_run, n, 64, rounds, loop)
            rows.append(
                (
                    f"{loop}: client CPU per check, aiohttp tuned as the SDK calls it / raw "
                    "aiohttp (concurrency 64)",
                    f"{tuned['cpu_ratio']:.2f}x",
                    "",
                    f"throughput {tuned['throughput_ratio']:.2f}x",
                )
            )
            rows.append(
                (
                    f"{loop}: client CPU per check, SDK / aiohttp tuned (concurrency 64)",
                    f"{own['cpu_ratio']:.2f}x",
                    "",
                    f"throughput {own['throughput_ratio']:.2f}x: the SDK's own work",
                )
            )
        # One call at a time in a user's own loop, against session.post in the same loop.
        n = max(200, int(1000 * scale))
        result = compare(base_url, sdk_single, raw_single, n, 1, rounds)
        rows.append(
            (
                "asyncio: a single check_availability vs session.post, one after another",
                f"{result['throughput_ratio']:.2f}x",
                ">= 0.90x",
                f"CPU ratio {result['cpu_ratio']:.2f}x; SDK {result['sdk_rate']:.0f} checks/s",
            )
        )
        pace_seconds = 5.0 if args.quick else 20.0

        async def both() -> list[dict[str, float]]:  # side by side: 20 s, not 40
            return list(
                await asyncio.gather(
                    *(paced(base_url, rate, pace_seconds) for rate in (20.0, 500.0))
                )
            )

        for rate, pace in zip((20.0, 500.0), asyncio.run(both()), strict=True):
            off = abs(pace["achieved"] - rate) / rate
            rows.append(
                (
                    f"pacing, max_rate={rate:g} over {pace_seconds:g} s: achieved rate",
                    f"{pace['achieved']:.2f}/s ({off:.2%} off)",
                    "within 2%",
                    f"busiest 1-s window: {pace['max_window']:.0f} requests "
                    f"(target <= {rate + 1:g})",
                )
            )
        # httpx is some thirty times slower here: fewer numbers and rounds keep this row to
        # seconds, not minutes.
        n = max(200, int(600 * scale))
        result = compare(base_url, sdk_run, httpx_run, n, 64, max(3, rounds // 2))
        rows.append(
            (
                "throughput, check_many vs httpx.AsyncClient, concurrency 64",
                f"{result['throughput_ratio']:.2f}x",
                "",
                f"CPU ratio {result['cpu_ratio']:.2f}x",
            )
        )

        def sequential(base: str, count: int, concurrency: int) -> Any:
            return requests_run(base, count)

        n = max(200, int(1000 * scale))
        result = compare(base_url, sdk_run, sequential, n, 64, max(3, rounds // 2))
        rows.append(
            (
                "throughput, check_many (concurrency 64) vs a sequential requests loop",
                f"{result['throughput_ratio']:.2f}x",
                "",
                "how users would otherwise write it",
            )
        )
        by_layer = layers(base_url, max(2000, int(8000 * scale)))
        small, large = int(10_000 * scale), int(100_000 * scale)
        rss_small, rss_large = (
            peak_rss(base_url, small)["rss_mib"],
            peak_rss(base_url, large)["rss_mib"],
        )
        # The input is streamed; what grows is the one entry a distinct line the run keeps
        # to check each line once (SeenLines): measured per line, the rest is flat.
        per_line = (rss_large - rss_small) * 1024 * 1024 / (large - small)
        rows.append(
            (
                f"peak RSS, bulk of {large:,} vs {small:,} distinct numbers, per line kept",
                f"{per_line:.0f} B a line",
                "<= 160 B",
                f"{rss_small:.1f} MiB vs {rss_large:.1f} MiB ({rss_large / rss_small:.2f}x): "
                "streamed, one entry a line",
            )
        )
        lateness = asyncio.run(planner_lateness(int(10_000 * max(scale, 0.5)), 2.0))
        rows.append(
            (
                f"planner: {int(10_000 * max(scale, 0.5)):,} plans waking on one loop, p99 lateness",
                f"{lateness['p99_ms']:.1f} ms",
                "<= 20 ms",
                f"p50 {lateness['p50_ms']:.1f} ms, max {lateness['max_ms']:.1f} ms, "
                f"{lateness['early']} early",
            )
        )
    finally:
        server.terminate()
        server.wait()
    table = [
        "| measure | result | target | note |",
        "| --- | --- | --- | --- |",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    layer_table = [
        "| where a check's CPU goes (asyncio loop) | microseconds |",
        "| --- | --- |",
        *(f"| {name} | {value:.1f} |" for name, value in by_layer),
    ]
    text = "\n".join(table) + "\n\n" + "\n".join(layer_table)
    print(text)
    print(
        f"\n{rounds} rounds each, median; {time.perf_counter() - started:.0f} s in all; "
        f"Python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, {os.cpu_count()} CPUs"
    )
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
