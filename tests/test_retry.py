"""RetryPolicy and the retry loop, alone: what is retried, how long it waits, when it stops."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import plugz_async as pz
from plugz_async._retry import RetrySafety, call_with_retry, is_retryable

ROUTE = "mobile/registration-available"


def server_error(status: int = 503, retry_after: float | None = None) -> pz.APIError:
    cls = pz.RateLimitError if status == 429 else pz.ServerError if status >= 500 else pz.APIError
    return cls(f"HTTP {status}", status=status, retry_after=retry_after, route=ROUTE)


def failing(
    *errors: Exception, result: str = "ok"
) -> tuple[Callable[[float | None], Awaitable[str]], list[float | None]]:
    """A send() that raises ``errors`` in turn, then returns ``result``."""
    calls: list[float | None] = []
    queue = list(errors)

    async def send(remaining: float | None) -> str:
        calls.append(remaining)
        if queue:
            raise queue.pop(0)
        return result

    return send, calls


def test_policy_defaults_and_none() -> None:
    policy = pz.RetryPolicy()
    assert (policy.attempts, policy.wait_initial, policy.wait_max) == (3, 0.5, 8.0)
    assert policy.jitter is True and policy.max_retry_after == 60.0 and policy.deadline == 30.0
    assert pz.RetryPolicy.none().attempts == 1
    assert [policy.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"wait_initial": -1},
        {"wait_max": -0.1},
        {"max_retry_after": -1},
        {"deadline": 0},
        {"deadline": -5},
    ],
)
def test_policy_validates(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be"):
        pz.RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (pz.TransportError("reset"), True),
        (pz.ConnectError("refused"), True),
        (pz.RequestTimeout("slow"), True),
        *[(server_error(s), True) for s in (408, 429, 500, 502, 503, 504)],
        *[(server_error(s), False) for s in (400, 401, 403, 404, 405, 415, 422, 501)],
        (pz.APIError("200 with error", status=200), False),
        (pz.ResponseDecodeError("not json", status=200), False),
        (pz.InvalidPhoneNumber("bad"), False),
        (ValueError("not ours"), False),
        (server_error(429, retry_after=60.0), True),
        (server_error(429, retry_after=60.1), False),
    ],
)
def test_what_is_retried(error: Exception, retried: bool) -> None:
    assert is_retryable(error, pz.RetryPolicy()) is retried


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (pz.ConnectError("refused"), True),  # never sent
        *[(server_error(s), True) for s in (429, 503)],  # the server says it did not process it
        (pz.TransportError("reset"), False),  # it may have arrived
        (pz.RequestTimeout("slow"), False),
        *[(server_error(s), False) for s in (408, 500, 502, 504)],
        (server_error(429, retry_after=60.0), True),
        (server_error(429, retry_after=60.1), False),
        (server_error(400), False),
    ],
)
def test_what_is_retried_on_an_unsafe_route(error: Exception, retried: bool) -> None:
    assert is_retryable(error, pz.RetryPolicy(), RetrySafety.UNSAFE) is retried


async def test_retries_then_succeeds_with_exponential_waits(clock: pz.FakeClock) -> None:
    send, calls = failing(server_error(), server_error(502))
    result = await call_with_retry(
        send, policy=pz.RetryPolicy(jitter=False), clock=clock, route=ROUTE
    )
    assert result == "ok" and len(calls) == 3
    assert clock.sleeps == [0.5, 1.0]


async def test_gives_up_after_attempts_with_the_last_error(clock: pz.FakeClock) -> None:
    send, calls = failing(server_error(500), server_error(502), server_error(504), server_error())
    with pytest.raises(pz.ServerError) as info:
        await call_with_retry(send, policy=pz.RetryPolicy(attempts=3), clock=clock, route=ROUTE)
    assert info.value.status == 504 and info.value.attempts == 3 and len(calls) == 3
    assert len(clock.sleeps) == 2


async def test_never_retries_what_cannot_succeed(clock: pz.FakeClock) -> None:
    send, calls = failing(server_error(400))
    with pytest.raises(pz.APIError) as info:
        await call_with_retry(send, policy=pz.RetryPolicy(), clock=clock, route=ROUTE)
    assert len(calls) == 1 and info.value.attempts == 1 and clock.sleeps == []


async def test_jitter_stays_within_the_exponential_bound(clock: pz.FakeClock) -> None:
    errors = [server_error() for _ in range(7)]
    send, _ = failing(*errors)
    policy = pz.RetryPolicy(attempts=8, wait_initial=0.5, wait_max=4.0, jitter=True)
    await call_with_retry(send, policy=policy, clock=clock, route=ROUTE)
    assert len(clock.sleeps) == 7
    for n, wait in enumerate(clock.sleeps, start=1):
        assert 0.0 <= wait <= policy.backoff(n)


async def test_retry_after_is_never_waited_less(clock: pz.FakeClock) -> None:
    send, _ = failing(server_error(429, retry_after=7.0), server_error(503, retry_after=0.1))
    await call_with_retry(send, policy=pz.RetryPolicy(jitter=False), clock=clock, route=ROUTE)
    assert clock.sleeps == [7.0, 1.0]  # 7 s asked > 0.5 backoff; 1.0 backoff > 0.1 asked


async def test_retry_after_above_the_cap_raises_at_once(clock: pz.FakeClock) -> None:
    send, calls = failing(server_error(429, retry_after=3600.0))
    with pytest.raises(pz.RateLimitError) as info:
        await call_with_retry(send, policy=pz.RetryPolicy(), clock=clock, route=ROUTE)
    assert info.value.retry_after == 3600.0 and len(calls) == 1 and clock.sleeps == []


async def test_retry_after_is_waited_in_full_even_past_wait_max(clock: pz.FakeClock) -> None:
    send, calls = failing(server_error(429, retry_after=45.0))
    policy = pz.RetryPolicy(wait_max=8.0, jitter=True, deadline=None)
    assert await call_with_retry(send, policy=policy, clock=clock, route=ROUTE) == "ok"
    assert clock.sleeps == [45.0] and len(calls) == 2


async def test_the_last_error_says_how_many_attempts_and_how_long_in_all(
    clock: pz.FakeClock,
) -> None:
    async def silent(remaining: float | None) -> str:
        # An attempt that times out, as against a silent server: its timeout cut, as the
        # client cuts it, to what is left of the deadline.
        timeout = 10.0 if remaining is None else min(10.0, remaining)
        await clock.sleep(timeout)
        raise pz.RequestTimeout(f"no answer from {ROUTE} within {timeout:g} s", route=ROUTE)

    policy = pz.RetryPolicy(jitter=False)  # the defaults: 3 attempts within 30 s
    with pytest.raises(pz.RequestTimeout) as info:
        await call_with_retry(silent, policy=policy, clock=clock, route=ROUTE)
    error = info.value
    assert error.attempts == 3  # 10 s, a wait of 0.5 s, 10 s, a wait of 1 s, the 8.5 s left
    assert str(error) == f"no answer from {ROUTE} within 8.5 s (after 3 attempts, 30.0 s in all)"
    once = pz.RetryPolicy.none()
    with pytest.raises(pz.RequestTimeout) as info:
        await call_with_retry(silent, policy=once, clock=clock, route=ROUTE)
    assert str(info.value) == f"no answer from {ROUTE} within 10 s"  # one attempt: as it was


async def test_max_retry_after_is_the_longest_wait_the_policy_accepts(
    clock: pz.FakeClock,
) -> None:
    policy = pz.RetryPolicy(max_retry_after=5.0)
    send, _ = failing(server_error(429, retry_after=5.0))
    await call_with_retry(send, policy=policy, clock=clock, route=ROUTE)
    assert clock.sleeps == [5.0]
    send, calls = failing(server_error(429, retry_after=5.1))
    with pytest.raises(pz.RateLimitError) as info:
        await call_with_retry(send, policy=policy, clock=clock, route=ROUTE)
    assert info.value.attempts == 1 and len(calls) == 1 and clock.sleeps == [5.0]


async def test_a_retry_after_past_the_deadline_is_not_waited(clock: pz.FakeClock) -> None:
    send, calls = failing(server_error(429, retry_after=30.0))
    policy = pz.RetryPolicy(deadline=10.0)
    with pytest.raises(pz.RateLimitError) as info:
        await call_with_retry(send, policy=policy, clock=clock, route=ROUTE)
    assert info.value.attempts == 1 and clock.sleeps == [] and len(calls) == 1


async def test_deadline_bounds_attempts_and_waits_together(clock: pz.FakeClock) -> None:
    class SlowFail:
        def __init__(self) -> None:
            self.calls: list[float | None] = []

        async def __call__(self, remaining: float | None) -> str:
            self.calls.append(remaining)
            clock.advance(2.0)  # each attempt takes 2 s
            raise server_error()

    send = SlowFail()
    policy = pz.RetryPolicy(attempts=10, wait_initial=1.0, wait_max=1.0, jitter=False, deadline=7.0)
    with pytest.raises(pz.ServerError) as info:
        await call_with_retry(send, policy=policy, clock=clock, route=ROUTE)
    # t=0 attempt (2 s), wait 1; t=3 attempt (2 s), wait 1; t=6 the last attempt is
    # given the 1 s left (its timeout); after it no wait fits in the deadline.
    assert send.calls == [7.0, 4.0, 1.0]
    assert info.value.attempts == 3
    assert clock.sleeps == [1.0, 1.0]


async def test_on_retry_hears_each_retry_and_logs_at_info(
    clock: pz.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[pz.RetryEvent] = []
    send, _ = failing(pz.ConnectError("refused", route=ROUTE), server_error(503))
    with caplog.at_level(logging.INFO, logger="plugz_async"):
        await call_with_retry(
            send,
            policy=pz.RetryPolicy(jitter=False),
            clock=clock,
            route=ROUTE,
            on_retry=events.append,
        )
    assert [(e.attempt, e.wait, e.error_kind) for e in events] == [
        (1, 0.5, "ConnectError"),
        (2, 1.0, "ServerError"),
    ]
    records = [r for r in caplog.records if r.name == "plugz_async"]
    assert len(records) == 2 and all(r.levelno == logging.INFO for r in records)
    assert records[0].route == ROUTE and records[0].attempt == 1  # type: ignore[attr-defined]
    assert records[1].error_kind == "ServerError" and records[1].wait == 1.0  # type: ignore[attr-defined]


async def test_foreign_exceptions_pass_through_unretried(clock: pz.FakeClock) -> None:
    send, calls = failing(KeyError("bug"))
    with pytest.raises(KeyError):
        await call_with_retry(send, policy=pz.RetryPolicy(), clock=clock, route=ROUTE)
    assert len(calls) == 1


async def test_log_records_carry_the_attempt_number(
    clock: pz.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    from plugz_async.sandbox import Reply, running

    caplog.set_level(logging.DEBUG, logger="plugz_async")
    async with running(clock=clock) as sb:
        sb.then(Reply(503, body="busy"))
        await sb.client.check_availability("+55 11 90000-0001")
        await sb.client.check_availability("+55 11 90000-0001")  # a new call starts at 1
    sent = [r for r in caplog.records if r.getMessage().startswith("POST ")]
    assert [(r.attempt, r.status) for r in sent] == [(1, 503), (2, 200), (1, 200)]  # type: ignore[attr-defined]
    assert all(r.route == "mobile/registration-available" and r.elapsed >= 0 for r in sent)  # type: ignore[attr-defined]


async def test_trace_configs_reach_the_session(api: Any) -> None:
    import aiohttp

    started: list[str] = []

    async def on_start(session: Any, context: Any, params: aiohttp.TraceRequestStartParams) -> None:
        started.append(params.method)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with api.new_client(trace_configs=[trace]) as client:
        await client.check_availability("+55 11 90000-0001")
    assert started == ["POST"]


def test_a_client_given_no_policy_fails_fast_and_never_cuts_a_longer_timeout_short() -> None:
    import aiohttp

    from plugz_async._retry import default_policy

    client = pz.PlugzClient("i", "t", "c")
    assert client._timeout.total == 10.0 and client._timeout.sock_connect == 5.0
    assert client._retry == pz.RetryPolicy(deadline=30.0)
    assert default_policy(aiohttp.ClientTimeout(total=60.0).total).deadline == 180.0
    assert default_policy(None).deadline is None
    assert default_policy(10.0, attempts=5) == pz.RetryPolicy(attempts=5, deadline=30.0)
    assert pz.PlugzClient("i", "t", "c", timeout=60)._retry.deadline == 180.0
