"""A queue worker process for the tests: ``python tests/queue_worker.py``.

It is the SDK's own `QueueWorker`, configured from the environment the test gives it
(``PLUGZ_REDIS_URL``, ``PLUGZ_BASE_URL``, ``PLUGZ_CLIENT_TOKEN``, ``PLUGZ_INSTANCES_FILE``),
with short heartbeats so a dead worker's step is taken over in seconds. One thing is the
test's own: ``PLUGZ_TEST_FAULT`` makes the process die (SIGKILL) or stall (SIGSTOP) at an
exact point of its first code request, through an attempt middleware:

* ``kill-before``: after the intent is written, before the request leaves;
* ``kill-during``: while the request is on the wire (the sandbox holds the answer);
* ``kill-after``: once the answer came back, before it is written to Redis;
* ``stop-after``: stalls there instead, until the test sends SIGCONT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from plugz_async.queue import QueueWorker

CODE_ROUTE = "mobile/request-registration-code"


def fault_middleware(
    fault: str,
) -> Callable[[str, Callable[[], Awaitable[dict[str, Any]]]], Awaitable[dict[str, Any]]]:
    fired = False

    async def middleware(
        route: str, send: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        nonlocal fired
        if route != CODE_ROUTE or fired:
            return await send()
        fired = True
        print(f"fault {fault}", file=sys.stderr, flush=True)
        if fault == "kill-before":
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "kill-during":
            sending = asyncio.ensure_future(send())
            await asyncio.sleep(0.5)  # the sandbox has the request and holds its answer
            os.kill(os.getpid(), signal.SIGKILL)
            return await sending
        answer = await send()
        if fault == "kill-after":
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "stop-after":
            os.kill(os.getpid(), signal.SIGSTOP)
            print("continued", file=sys.stderr, flush=True)
        return answer

    return middleware


def log_rate_limit_grants() -> None:
    """Say on stderr when the shared rate limit let each request through, on the limiter's
    own clock: ``rate-limit granted INSTANCE BEFORE AFTER``, the wall-clock moments around
    the limiter's ``hit`` that counted it (its moving window stamps the request with
    ``time.time()`` between the two). A test checks the limit's promise on these."""
    import time

    from limits.aio.strategies import MovingWindowRateLimiter

    hit = MovingWindowRateLimiter.hit

    async def counted(self: Any, item: Any, *identifiers: str, cost: int = 1) -> bool:
        before = time.time()
        allowed: bool = await hit(self, item, *identifiers, cost=cost)
        if allowed:
            after = time.time()
            print(f"rate-limit granted {identifiers[-1]} {before!r} {after!r}", file=sys.stderr)
        return allowed

    MovingWindowRateLimiter.hit = counted  # type: ignore[method-assign]


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("saq").setLevel(logging.WARNING)
    fault = os.environ.get("PLUGZ_TEST_FAULT", "")
    if os.environ.get("PLUGZ_TEST_RATE_LIMIT"):
        log_rate_limit_grants()
    worker = QueueWorker(
        concurrency=int(os.environ.get("PLUGZ_TEST_CONCURRENCY", "10")),
        timed_concurrency=int(os.environ.get("PLUGZ_TEST_TIMED_CONCURRENCY", "0")) or None,
        rate_limit=os.environ.get("PLUGZ_TEST_RATE_LIMIT") or None,
        heartbeat=1,
        sweep_interval=1,
        request_timeout=float(os.environ.get("PLUGZ_TEST_REQUEST_TIMEOUT", "2")),
        # The sandbox's waits, scaled for the tests: the shortest a code request starts.
        code_wait_floor=float(os.environ.get("PLUGZ_TEST_CODE_WAIT_FLOOR", "12")),
        input_timeout=float(os.environ.get("PLUGZ_TEST_INPUT_TIMEOUT", "60")),
        device_poll_interval=0.2,
        shutdown_grace=10.0,
        middlewares=[fault_middleware(fault)] if fault else [],
    )
    asyncio.run(worker.run())
    print("worker stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
