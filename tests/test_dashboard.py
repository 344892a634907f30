"""The operator's page (plugz_async.dashboard) over a real redis-server and the sandbox: its
JSON API, its paging of 100,000 registrations, the token that cancelling needs, no secret
anywhere, and the page itself in headless Chromium (Debian's ``chromium``).

The browser test writes a screenshot: to ``PLUGZ_DASHBOARD_SCREENSHOT`` when set (the docs
build sets it to build/img/dashboard.png, which the site shows), else into the test's folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("saq")
import aiohttp
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer
from test_queue import (
    BANNED,
    CAPTCHA,
    PIN_NUMBER,
    READY,
    WAITS,
    answer_until_done,
    e164,
    worker_running,
)
from test_queue import sandbox as sandbox  # the fixture

import plugz_async as pz
from plugz_async.dashboard import DEFAULT_PORT, dashboard_app
from plugz_async.queue import RegistrationQueue
from plugz_async.queue._store import Store
from plugz_async.sandbox import Sandbox

TOKEN = "dashboard-token-for-the-tests-0123"
NUMBERS = [READY, WAITS, BANNED, CAPTCHA, PIN_NUMBER]


@contextlib.asynccontextmanager
async def served(queue: RegistrationQueue, **options: Any) -> AsyncIterator[str]:
    """The dashboard of ``queue`` on a loopback port for the block: its address."""
    server = TestServer(dashboard_app(queue, **options), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/"))
    finally:
        await server.close()


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as answer:
        return answer.status, await answer.json()


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[RegistrationQueue]:
    async with RegistrationQueue(redis_url, environ={}) as q:
        yield q


async def register(queue: RegistrationQueue, sandbox: Sandbox, numbers: list[str]) -> None:
    for number, instance in zip(numbers, sandbox.instances(), strict=False):
        await queue.register(number, instance=instance)


# -- the JSON API -----------------------------------------------------------------------------


async def test_the_summary_says_what_queue_status_says(
    queue: RegistrationQueue, sandbox: Sandbox, redis_url: str
) -> None:
    await register(queue, sandbox, NUMBERS)
    async with served(queue) as base, aiohttp.ClientSession() as http:
        status, summary = await get(http, base + "api/summary")
        assert status == 200
        assert summary["counts"] == await queue.counts() == {"check": 5}
        assert (summary["total"], summary["running"], summary["workers"]) == (5, 5, [])
        assert summary["queue"] == "plugz"
        async with worker_running(sandbox, redis_url):
            statuses = await answer_until_done(queue, sandbox, NUMBERS)
            for _ in range(40):  # the worker says how late its steps were with its heartbeat
                status, summary = await get(http, base + "api/summary")
                if "request_code" in summary["lateness"]:
                    break
                await asyncio.sleep(0.1)
        assert summary["counts"] == await queue.counts()
        assert summary["counts"] == {"connected": 4, "appeal": 1}
        (worker,) = summary["workers"]
        assert worker["state"] == "alive" and worker["seen_ago"] < 10
        assert worker["timed_concurrency"] == 8
        assert summary["lateness"]["request_code"]["count"] >= 4
        # One registration: the same events, in the same words, as `queue status NUMBER`.
        status, one = await get(http, base + "api/registrations/" + e164(PIN_NUMBER))
        assert status == 200
        words = [(e.kind.value, e.message) for e in statuses[PIN_NUMBER].events]
        assert [(e["kind"], e["message"]) for e in one["events"]] == words


async def test_the_list_is_paged_and_says_how_many_there_are(
    queue: RegistrationQueue, sandbox: Sandbox
) -> None:
    await register(queue, sandbox, NUMBERS)
    async with served(queue) as base, aiohttp.ClientSession() as http:
        status, page = await get(http, base + "api/registrations?offset=1&limit=2")
        assert status == 200
        assert (page["total"], page["offset"], page["limit"]) == (5, 1, 2)
        assert [r["number"] for r in page["registrations"]] == [e164(n) for n in NUMBERS[1:3]]
        assert "events" not in page["registrations"][0]
        status, page = await get(http, base + "api/registrations?view=overdue")
        assert (status, page["total"]) == (200, 0)
        for query, said in [
            ("view=nothing", "view is 'all' or 'overdue'"),
            ("limit=x", "limit must be a whole number"),
            ("limit=100000", "limit must be from 1 to 200"),
            ("limit=0", "limit must be from 1 to 200"),
            ("offset=-1", "offset must be from 0 to 1000000000"),
        ]:
            assert await get(http, base + "api/registrations?" + query) == (400, {"error": said})
        assert await get(http, base + "api/registrations/not-a-number") == (
            400,
            {"error": "not a phone number"},
        )
        status, said = await get(http, base + "api/registrations/+5511955550000")
        assert status == 404
        async with http.get(base + "static/secrets.txt") as answer:
            assert answer.status == 404


async def test_an_overdue_registration_is_listed_and_counted(
    queue: RegistrationQueue, sandbox: Sandbox, redis_url: str
) -> None:
    # Registered, and no worker for longer than the overdue threshold: the clock says so.
    await register(queue, sandbox, [READY])
    late = pz.FakeClock(start=datetime.now(timezone.utc) + timedelta(seconds=120))
    async with (
        RegistrationQueue(redis_url, environ={}, clock=late) as later,
        served(later) as base,
        aiohttp.ClientSession() as http,
    ):
        _, summary = await get(http, base + "api/summary")
        assert summary["overdue"] == {"total": 1, "after": 30.0}
        _, page = await get(http, base + "api/registrations?view=overdue")
        assert [r["number"] for r in page["registrations"]] == [e164(READY)]


async def test_cancelling_needs_the_token_in_a_header(
    queue: RegistrationQueue, sandbox: Sandbox
) -> None:
    await register(queue, sandbox, [WAITS, READY])
    cancel = "api/registrations/" + e164(WAITS) + "/cancel"
    async with aiohttp.ClientSession() as http:
        async with served(queue) as base, http.post(base + cancel) as answer:
            assert answer.status == 403
            assert "read-only" in (await answer.json())["error"]
        async with served(queue, token=TOKEN) as base:
            wrong = "Bearer not-the-dashboard-token"
            for headers in ({}, {"Authorization": wrong}, {"Authorization": TOKEN}):
                async with http.post(base + cancel, headers=headers) as answer:
                    assert answer.status == 401
                    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
                    said = await answer.text()
                    assert TOKEN not in said and "not-the-dashboard-token" not in said
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            async with http.post(base + cancel, headers=bearer) as answer:
                assert answer.status == 200
                assert (await answer.json())["status"] == "cancelled"
            async with http.post(base + cancel, headers=bearer) as answer:
                assert answer.status == 409
            async with http.get(base + cancel) as answer:
                assert answer.status == 405 and answer.headers["Allow"] == "POST"
    assert (await queue.status(READY)).status == "check"  # only the one asked for


def test_a_token_too_short_and_a_refresh_too_quick_are_refused() -> None:
    queue = RegistrationQueue("redis://127.0.0.1:1/0", environ={})
    with pytest.raises(pz.InvalidArgument, match="16 characters"):
        dashboard_app(queue, token="short")
    for refresh in (0.0, float("inf"), float("nan"), 7200.0):
        with pytest.raises(pz.InvalidArgument, match="refresh"):
            dashboard_app(queue, refresh=refresh)
    assert DEFAULT_PORT == 8090


async def test_redis_away_is_a_503_that_names_no_secret() -> None:
    url = "redis://operator:redis-password-123@127.0.0.1:1/0"
    queue = RegistrationQueue(url, environ={})  # it connects on first use: it cannot
    try:
        async with (
            served(queue) as base,
            aiohttp.ClientSession() as http,
            http.get(base + "api/summary") as answer,
        ):
            assert answer.status == 503
            said = await answer.text()
    finally:
        await queue.aclose()
    assert "ConnectionError" in said and "redis-password-123" not in said


async def test_the_page_and_every_answer_hold_no_secret(
    queue: RegistrationQueue, sandbox: Sandbox, redis_url: str
) -> None:
    await register(queue, sandbox, NUMBERS)
    secrets = [sandbox.client_token, TOKEN, *sandbox.instances().values()]
    async with worker_running(sandbox, redis_url):
        await answer_until_done(queue, sandbox, NUMBERS)
        async with served(queue, token=TOKEN) as base, aiohttp.ClientSession() as http:
            seen = []
            for path in ("", "static/app.js", "api/summary", "api/registrations"):
                async with http.get(base + path) as answer:
                    assert answer.status == 200
                    assert answer.headers["Cache-Control"] == "no-store"
                    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
                    seen.append(await answer.text())
            for number in NUMBERS:
                async with http.get(base + "api/registrations/" + e164(number)) as answer:
                    seen.append(await answer.text())
    for text in seen:
        for secret in secrets:
            assert secret not in text


# -- 100,000 registrations, a page at a time ----------------------------------------------------


async def hgetalls(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


async def test_a_hundred_thousand_registrations_cost_a_page_not_the_lot(
    queue: RegistrationQueue, redis_url: str
) -> None:
    machine = pz.RegistrationMachine(planner=pz.RegistrationPlanner())
    redis = aioredis.from_url(redis_url)
    store = Store(redis, queue="plugz")
    start = time.time() + 300  # every step due within the hour, however long this takes
    try:
        numbers = [pz.PhoneNumber.parse(f"+5511{9_0000_0000 + i}") for i in range(100_000)]
        # 64 at a time: as many connections, each busy (2,000 at once took three times as
        # long, in sockets rather than in the store's script).
        for first in range(0, len(numbers), 64):
            await asyncio.gather(
                *(
                    store.create(
                        machine.start(phone),
                        instance=f"instance-{first + i}",
                        step_id="s",
                        due=start + (first + i) * 0.03,  # 50 minutes of steps due, from 5
                    )
                    for i, phone in enumerate(numbers[first : first + 64])
                )
            )
        async with served(queue) as base, aiohttp.ClientSession() as http:
            before = await hgetalls(redis)
            status, summary = await get(http, base + "api/summary")
            status_page, page = await get(http, base + "api/registrations?offset=99990&limit=50")
            read = await hgetalls(redis) - before
    finally:
        await redis.aclose()
    assert (status, status_page) == (200, 200)
    assert summary["total"] == 100_000 and summary["counts"] == {"check": 100_000}
    assert summary["timeline"]["due"] == 100_000 and summary["timeline"]["read"] == 500
    assert (page["total"], len(page["registrations"])) == (100_000, 10)
    # What the two answers read: the timeline's first 500, the page's 10, the workers.
    assert read <= 500 + 10 + 5, read


# -- the page in a real browser ---------------------------------------------------------------


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "no chromium: apt-get install -y chromium (Debian's package)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


#: Chromium's flags for a closed network: no calls home, no sandbox (root in CI).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def page_counts(page: Any) -> dict[str, int]:
    rows = await page.eval_on_selector_all(
        "#counts tbody tr",
        "rows => rows.map(r => [r.dataset.status, r.children[1].textContent])",
    )
    return {status: int(count) for status, count in rows}


async def until_page(
    page: Any, wanted: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0
) -> Any:
    """Until the page shows the counts ``wanted()`` reads now (read again each time: a
    registration may still move while the page catches up)."""
    deadline = time.monotonic() + timeout
    while True:
        seen, now = await page_counts(page), await wanted()
        if seen == now:
            return seen
        assert time.monotonic() < deadline, (what, seen, now)
        await asyncio.sleep(0.2)


async def test_the_page_in_chromium_follows_the_queue_as_a_worker_moves_it(
    queue: RegistrationQueue, sandbox: Sandbox, redis_url: str, tmp_path: Path
) -> None:
    executable = chromium()
    playwright = pytest.importorskip("playwright.async_api")
    await register(queue, sandbox, [*NUMBERS, WAITS.replace("0002", "0003")])
    shot = Path(os.environ.get("PLUGZ_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    async with (
        served(queue, token=TOKEN, refresh=0.5) as base,
        playwright.async_playwright() as driver,
    ):
        browser = await driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(base)
            # It loads, and shows the counts `queue status` shows: no worker yet.
            assert await until_page(page, queue.counts, "the first counts") == {"check": 6}
            assert await page.text_content("#workers-line") == (
                "no worker has run on this queue (in the last day): start plugz-async worker"
            )
            assert await page.text_content("#page-line") == "1-6 of 6"
            async with worker_running(sandbox, redis_url, input_timeout=60.0):
                # The worker moves them on; the page follows, as `queue status` does.
                done = asyncio.create_task(answer_until_done(queue, sandbox, NUMBERS))
                await done
                await until_page(page, queue.counts, "the counts once the worker moved them")
                assert "1 worker alive" in (await page.text_content("#workers-line") or "")
                # One registration's events, in the words of `queue status NUMBER`.
                await page.click(f"tr[data-number='{e164(PIN_NUMBER)}'] a")
                await page.wait_for_selector("#one:not([hidden])")
                kinds = await page.eval_on_selector_all(
                    "#events tbody tr", "rows => rows.map(r => r.children[1].textContent)"
                )
                status = await queue.status(PIN_NUMBER)
                assert kinds == [event.kind.value for event in status.events]
                # The one still running is cancelled from the page, with the token.
                running = next(s for s in await queue.statuses() if not s.done)
                await page.click(f"tr[data-number='{running.number}'] a")
                await page.wait_for_selector("#cancel-form:not([hidden])")
                await page.fill("#token", TOKEN)
                await page.click("#cancel")
                for _ in range(50):  # (the page's CSP forbids playwright's wait_for_function)
                    if (await page.text_content("#cancel-said") or "").startswith("cancel"):
                        break
                    await asyncio.sleep(0.1)
                assert await page.text_content("#cancel-said") == "cancel asked: cancelled"
                for _ in range(50):
                    if (await queue.status(running.number)).status == "cancelled":
                        break
                    await asyncio.sleep(0.1)
                assert (await queue.status(running.number)).status == "cancelled"
                await until_page(page, queue.counts, "the counts after the cancel")
                await page.click("#one-number")  # nothing to do: the shot shows the events
                shot.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(shot), full_page=True)
            assert errors == []
        finally:
            await browser.close()
    assert (await asyncio.to_thread(shot.read_bytes))[:8] == b"\x89PNG\r\n\x1a\n"


async def test_a_page_elsewhere_cannot_read_it_by_rebinding_its_name(
    queue: RegistrationQueue,
) -> None:
    # A web page of evil.example whose name points at 127.0.0.1 sends Host: evil.example.
    async with served(queue) as base, aiohttp.ClientSession() as http:
        for host, status in (("evil.example", 421), ("evil.example:8090", 421)):
            async with http.get(base + "api/summary", headers={"Host": host}) as answer:
                assert answer.status == status
        for host in ("localhost:8090", "127.0.0.1", "[::1]:8090"):
            async with http.get(base + "api/summary", headers={"Host": host}) as answer:
                assert answer.status == 200, host
    async with (
        served(queue, hosts=None) as base,
        aiohttp.ClientSession() as http,
        http.get(base + "api/summary", headers={"Host": "ops.internal"}) as answer,
    ):
        assert answer.status == 200


async def test_an_appeal_token_stays_off_the_page(
    queue: RegistrationQueue, sandbox: Sandbox, redis_url: str
) -> None:
    await register(queue, sandbox, [BANNED])
    async with worker_running(sandbox, redis_url):
        statuses = await answer_until_done(queue, sandbox, [BANNED])
    token = statuses[BANNED].appeal_token
    assert token
    async with served(queue) as base, aiohttp.ClientSession() as http:
        for path in ("api/registrations", "api/registrations/" + e164(BANNED)):
            async with http.get(base + path) as answer:
                said = await answer.text()
            assert token not in said
        _, one = await get(http, base + "api/registrations/" + e164(BANNED))
    assert one["appeal"] is True and one["status"] == "appeal"
