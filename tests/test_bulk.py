"""Bulk runs: bounded, paced, streamed, and nothing lost."""

from __future__ import annotations

import asyncio
import gc
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import plugz_async as pz
from plugz_async import BulkItem, BulkRow, ResultsFile, read_results, to_dataframe
from plugz_async.sandbox import Reply, Sandbox, SandboxConfig, running


def numbers(n: int, start: int = 0) -> Iterator[str]:
    for i in range(start, start + n):
        yield f"+55 31 9{i:04d}-{i % 10_000:04d}"


async def collect(run: pz.BulkRun) -> list[BulkItem]:
    async with run:
        return [item async for item in run]


async def test_every_row_gets_exactly_one_item(client: pz.PlugzClient) -> None:
    rows: list[str | pz.PhoneNumber] = [
        *numbers(40),
        "not a number",
        pz.PhoneNumber.parse("+55 11 90000-0004"),
    ]
    items = await collect(client.check_many(rows, concurrency=8))
    assert sorted(item.index for item in items) == list(range(42))
    for item in items:
        assert (item.availability is None) != (item.error is None)  # exactly one
    bad = next(item for item in items if item.index == 40)
    assert isinstance(bad.error, pz.InvalidPhoneNumber) and bad.attempts == 0
    assert bad.input == "not a number" and bad.plan is None and bad.outcome == "error"
    banned = next(item for item in items if item.index == 41)
    assert banned.outcome == "appeal" and banned.input == "+5511900000004"


async def test_concurrency_bounds_requests_in_flight(api: Sandbox, client: pz.PlugzClient) -> None:
    for number in list(numbers(50))[1:]:  # the first is answered (a run starts with one request)
        api.then(Reply(delay=30.0), number=number)  # the server holds every other answer...
    run = client.check_many(numbers(50), concurrency=5)
    consumer = asyncio.create_task(collect(run))
    await api.wait_for_requests(6)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(api.requests()) == 6  # ...and no seventh request is sent meanwhile
    api.state.stopping.set()  # ...until it lets them all go
    items = await consumer
    assert len(items) == 50 and len(api.requests()) == 50


async def test_input_is_read_lazily(client: pz.PlugzClient) -> None:
    pulled = 0

    def source() -> Iterator[str]:
        nonlocal pulled
        for number in numbers(10_000):
            pulled += 1
            yield number

    run = client.check_many(source(), concurrency=4)
    async with run:
        async for item in run:
            if item.index >= 0:
                break
    # Rows in flight (4), finished rows waiting to be read (at most 4), and the next one.
    assert pulled <= 2 * 4 + 1


async def test_async_iterables_and_rows_with_their_own_instance(api: Sandbox) -> None:
    config = SandboxConfig(instance_id="main", instance_token="main-token")

    async def rows() -> AsyncIterator[Any]:
        yield "+55 11 90000-0001"
        yield {
            "ddi": "55",
            "phone": "11900000002",
            "instance_id": "main",
            "instance_token": "main-token",
        }
        yield BulkRow(
            number="+55 11 90000-0003", instance_id="other", instance_token="other-SECRET"
        )
        yield {"phone": "123"}

    async with running(config, clock=pz.FakeClock()) as sb:
        items = await collect(sb.client.check_many(rows(), concurrency=2))
    by_index = {item.index: item for item in items}
    assert by_index[0].ok and by_index[1].ok and by_index[1].instance_id == "main"
    assert by_index[1].input == {"ddi": "55", "phone": "11900000002", "instance_id": "main"}
    assert isinstance(by_index[2].error, pz.InstanceNotFoundError)  # not the sandbox's instance
    assert "other-SECRET" not in json.dumps([item.to_dict() for item in items])
    assert isinstance(by_index[3].error, pz.InvalidArgument)


async def test_an_unexpected_exception_in_one_row_loses_nothing(
    api: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def buggy(route: str, send: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyError("a bug")
        return await send()

    async with api.new_client(clock=pz.FakeClock(), middlewares=[buggy]) as client:
        items = await collect(client.check_many(numbers(10), concurrency=3))
    assert len(items) == 10
    assert [type(item.error).__name__ for item in items if item.error] == ["KeyError"]
    assert "failed unexpectedly" in caplog.text


def bulk_tasks() -> list[asyncio.Task[Any]]:
    # The run's workers and closer: coroutines of functions local to a BulkRun method.
    return [
        t for t in asyncio.all_tasks() if re.search(r"BulkRun\.\w+\.<locals>", repr(t.get_coro()))
    ]


async def test_breaking_out_stops_everything_in_flight(
    api: Sandbox, client: pz.PlugzClient
) -> None:
    api.then(Reply(json={"available": True}), *[Reply(delay=30.0)] * 20)
    async with client.check_many(numbers(100), concurrency=10) as run:
        async for item in run:
            assert item.ok
            assert bulk_tasks()  # nine more are in flight
            break
    assert bulk_tasks() == []


async def test_break_then_aclose_leaves_no_task(client: pz.PlugzClient) -> None:
    run = client.check_many(numbers(200), concurrency=16)
    async for item in run:
        assert item.ok
        break
    await run.aclose()
    await run.aclose()  # twice is fine
    gc.collect()
    assert bulk_tasks() == []


async def test_cancelling_the_consumer_stops_the_run(api: Sandbox, client: pz.PlugzClient) -> None:
    # The first row answers at once (a run checks it alone before the rest); the next ones
    # are held long past the test, until the sandbox stops.
    for number in list(numbers(100))[1:]:
        api.hold("registration-available", 60.0, number=number)
    seen: list[BulkItem] = []

    async def consume() -> None:
        async with client.check_many(numbers(100), concurrency=10) as run:
            async for item in run:
                seen.append(item)

    task = asyncio.create_task(consume())
    await api.wait_for_requests(11)  # the first row, and ten in flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bulk_tasks() == []


class CountingLimiter:
    def __init__(self) -> None:
        self.acquired = 0

    async def acquire(self, amount: float = 1) -> None:
        self.acquired += 1


async def test_the_limiter_paces_every_attempt_retries_included(
    api: Sandbox, client: pz.PlugzClient
) -> None:
    api.then(Reply(503, body="busy"), Reply(503, body="busy"), number="+55 31 90000-0000")
    limiter = CountingLimiter()
    run = client.check_many(numbers(10), concurrency=4, limiter=limiter)
    items = await collect(run)
    assert limiter.acquired == 12 == len(api.requests()) == run.summary.attempts
    assert run.summary.retries == 2
    assert next(item for item in items if item.index == 0).attempts == 3


async def test_max_rate_uses_a_real_limiter(api: Sandbox) -> None:
    async with api.new_client() as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await collect(client.check_many(numbers(11), concurrency=11, max_rate=100.0))
        # 11 requests at 100 a second: the last one no sooner than 0.1 s after the first.
        assert loop.time() - started >= 0.09


async def test_a_429_pauses_every_row_of_the_run(clock: pz.FakeClock) -> None:
    from plugz_async._bulk._pacing import Pacer

    pace = Pacer(None, clock)

    async def gate(send: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        return await pace("mobile/registration-available", send)

    async def overloaded() -> dict[str, Any]:
        raise pz.RateLimitError("429", status=429, retry_after=7.0)

    async def fine() -> dict[str, Any]:
        return {}

    with pytest.raises(pz.RateLimitError):
        await gate(overloaded)
    clock.advance(2)
    assert await gate(fine) == {}  # another row: it waited out the rest of the pause
    assert clock.sleeps == [5.0]
    assert await gate(fine) == {} and clock.sleeps == [5.0]  # the pause is over


async def test_a_429_holds_back_the_rows_sent_after_it(api: Sandbox) -> None:
    api.then(Reply(429, json={"error": "slow down"}, headers={"Retry-After": "0.15"}))
    async with api.new_client(retry=pz.RetryPolicy(wait_initial=0.01, jitter=False)) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        items = await collect(client.check_many(numbers(6), concurrency=1))
    assert all(item.ok for item in items) and len(api.requests()) == 7
    assert loop.time() - started >= 0.15


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"concurrency": 0}, "concurrency"), ({"max_rate": 0}, "max_rate")]
)
def test_bad_settings(client: pz.PlugzClient, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(pz.InvalidArgument, match=message):
        client.check_many([], **kwargs)


async def test_summary(api: Sandbox, client: pz.PlugzClient) -> None:
    rows = [
        "+55 11 90000-0001",
        "+55 11 90000-0002",
        "+55 11 90000-0004",
        "bad",
        "+55 11 90000-5032",
    ]
    run = client.check_many(rows, concurrency=2)
    await collect(run)
    summary = run.summary.to_dict()
    assert summary["total"] == 5 and summary["outcomes"] == {
        "ready": 2,
        "wait": 1,
        "appeal": 1,
        "error": 1,
    }
    assert summary["errors"] == {"InvalidPhoneNumber": 1}
    assert summary["attempts"] == 6 and summary["retries"] == 2
    opens = summary["opens"]
    assert opens["sms"]["count"] == 3 and opens["wa_old"] is None
    assert opens["sms"]["earliest"] <= opens["sms"]["median"] <= opens["sms"]["latest"]


# -- results files -----------------------------------------------------------------------------


async def written(client: pz.PlugzClient, path: Path) -> list[BulkItem]:
    """The items of a run of five numbers and one mistake, written to ``path`` (JSON Lines)."""
    items = await collect(client.check_many([*numbers(5), "x"], concurrency=3))
    with ResultsFile(path) as results:
        results.open()
        for item in items:
            results.write(item)
    return items


async def test_jsonl_results(client: pz.PlugzClient, tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    await written(client, path)
    records = read_results(path)
    assert len(records) == 6 and {r["key"] for r in records} == {str(i) for i in range(6)}
    assert all(r["plan"]["observed_at"].endswith("+00:00") for r in records if r["plan"])


async def test_a_dataframe_of_a_results_file_or_of_items(
    client: pz.PlugzClient, tmp_path: Path
) -> None:
    pytest.importorskip("pandas")
    path = tmp_path / "results.jsonl"
    items = await written(client, path)
    frame = to_dataframe(path)
    # In the input's order, whatever order the file holds them in.
    assert list(frame["key"]) == sorted((r["key"] for r in read_results(path)), key=int)
    assert str(frame["sms_ready_at"].dtype).startswith("datetime64")
    assert to_dataframe(items).shape == frame.shape


async def test_csv_results_resume_after_a_half_written_line(
    client: pz.PlugzClient, tmp_path: Path
) -> None:
    path = tmp_path / "results.csv"
    items = await collect(client.check_many(numbers(4), concurrency=2))
    results = ResultsFile(path, format="csv")
    results.open()
    for item in items[:3]:
        results.write(item)
    results.close()
    append(path, "3,3,+55 31 90003")  # killed mid-line
    again = ResultsFile(path, format="csv")
    assert again.open(resume=True) == {item.key for item in items[:3]}
    again.write(items[3])
    again.close()
    lines = path.read_text().splitlines()
    assert lines[0].startswith("key,index,input,number") and len(lines) == 5


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_a_resume_shows_the_records_it_keeps_to_its_check(
    client: pz.PlugzClient, tmp_path: Path, fmt: str
) -> None:
    from plugz_async._bulk._results import record_input

    path = tmp_path / f"results.{fmt}"
    given = [{"cel": n, "nome": f"P{i}"} for i, n in enumerate(numbers(3))]
    rows = [BulkRow(number=cells["cel"], given=cells) for cells in given]
    with ResultsFile(path) as results:
        results.open()
        for item in await collect(client.check_many(rows)):
            results.write(item)
    before = path.read_bytes()
    seen: list[tuple[object, str | None]] = []

    def refuse(record: Mapping[str, Any]) -> None:
        seen.append(record_input(record))
        raise pz.InvalidArgument("read from another column")

    with pytest.raises(pz.InvalidArgument, match="another column"):
        ResultsFile(path).open(resume=True, check=refuse)
    assert path.read_bytes() == before  # a refused resume leaves the file as it was
    assert seen == [(given[0], "+5531900000000")]  # the cells as given, JSON or CSV
    kept: list[Mapping[str, Any]] = []
    with ResultsFile(path) as again:
        assert again.open(resume=True, check=kept.append) == {"0", "1", "2"}
    read = sorted((record_input(r) for r in kept), key=lambda pair: str(pair[1]))
    assert read == [(cells, pz.PhoneNumber.parse(cells["cel"]).e164) for cells in given]


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_a_results_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"key": "0"}\n')
    with pytest.raises(pz.InvalidArgument, match="resume it"):
        ResultsFile(path).open()
    with pytest.raises(pz.InvalidArgument):
        ResultsFile(path, format="xml")


def test_bulk_row_from_mapping() -> None:
    row = BulkRow.from_mapping({"ddi": "+55", "phone": "11900000001", "key": "a"})
    assert row.number == "+55 11900000001" and row.key == "a"
    with pytest.raises(pz.InvalidArgument, match="together"):
        BulkRow.from_mapping({"number": "1", "instance_id": "x"})


# -- pacing: a timetable, exact --------------------------------------------------------------


async def test_a_schedule_keeps_a_timetable_never_early_and_never_bursting() -> None:
    from plugz_async._bulk._pacing import WINDOW, RateSchedule

    clock = pz.FakeClock()
    schedule = RateSchedule(500.0, clock)
    sent = []
    for _ in range(2000):
        await schedule.acquire()
        sent.append(clock.monotonic())
    # 500 a second, each at or after its slot (k / 500 s from the first); the window's
    # margin holds it to 501 in WINDOW seconds (496 a second, 0.8% under).
    assert all(t >= k / 500 - 1e-9 for k, t in enumerate(sent))
    assert (len(sent) - 1) / (sent[-1] - sent[0]) == pytest.approx(501 / WINDOW, rel=0.002)
    assert 501 / WINDOW >= 500 * 0.99
    # A caller who comes late takes a slot from now: no catching up in a burst.
    clock.advance(10.0)
    late = []
    for _ in range(600):
        await schedule.acquire()
        late.append(clock.monotonic())
    assert late[0] == pytest.approx(sent[-1] + 10.0, abs=0.003)
    for times in (sent, late):
        j = 0
        for i, t in enumerate(times):  # no one-second window holds more than 501
            while j < len(times) and times[j] < t + 1.0:
                j += 1
            assert j - i <= 501


async def test_a_schedule_holds_its_window_when_sleepers_woke_late() -> None:
    from plugz_async._bulk._pacing import WINDOW, RateSchedule

    clock = pz.FakeClock()
    clock.advance(100.0)
    schedule = RateSchedule(20.0, clock)
    # Twenty-one releases bunched in half a second, as when sleepers woke late together:
    for k in range(21):
        schedule._recent.append(99.5 + k * 0.02)
    await schedule.acquire()  # its slot has come, but a 22nd in that second must wait
    assert clock.monotonic() == pytest.approx(99.5 + WINDOW)
    with pytest.raises(pz.InvalidArgument, match="more than 0"):
        RateSchedule(0.0, clock)


async def test_a_summary_reads_well_in_a_repl(client: pz.PlugzClient) -> None:
    rows = ["+55 11 90000-0001", "+55 11 90000-0002", "+55 11 90000-0004", "not a number"]
    items = await collect(run := client.check_many(rows))
    assert len(items) == 4
    text = repr(run.summary)
    assert text.startswith("<BulkSummary total=4, wall_time=")
    assert re.search(r"wall_time=\d+\.\d\ds, rate=\d+\.\d/s, ", text), text
    assert "outcomes={'ready': 1, 'wait': 1, 'appeal': 1, 'error': 1}" in text
    assert "errors={'InvalidPhoneNumber': 1}, attempts=3, retries=0, pending=0, " in text
    when = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"
    assert re.search(
        rf"opens=\{{'sms': '2 from {when}, median {when}, latest {when}', 'voice': '2 from "
        rf"{when}, median {when}, latest {when}', 'wa_old': 'none'\}}>$",
        text,
    ), text
    # No monotonic clock readings, no private class.
    assert "_Spread" not in text and "started" not in text
    assert not re.search(r"\d\.\d{3,}", text), text
    assert repr(run.summary.opens[pz.Channel.WA_OLD]) == "<none>"
