"""One line, checked once: a bulk run sends a line once, in whichever form its rows write
it (Brazil's ninth digit), and says which row it was; and a resume goes on from that."""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
from helpers import CONFIG, INSTANCE_ID, INSTANCE_TOKEN

import plugz_async as pz
from plugz_async import BulkItem, BulkRow, ResultsFile, SameLine, SeenLines
from plugz_async._bulk._items import NumberInput
from plugz_async._bulk._results import CSV_FIELDS
from plugz_async.sandbox import Reply, Sandbox, running

OLD = "+55 44 9999-9999"  # the old 8-digit form...
NEW = "+55 44 99999-9999"  # ...and the form with the ninth digit: one line
#: The sandbox with a second instance, for rows of one line on two instances.
TWO_INSTANCES = attrs.evolve(CONFIG, instances=2)
OTHER = "+55 11 90000-0001"  # the sandbox's ready number


async def collect(run: pz.BulkRun) -> dict[int, BulkItem]:
    async with run:
        return {item.index: item async for item in run}


def sent_phones(api: Sandbox) -> list[str]:
    return [r["body"]["phone"] for r in api.requests(route="registration-available")]


async def test_a_line_written_twice_is_checked_once_and_named(
    api: Sandbox, client: pz.PlugzClient
) -> None:
    rows = [OLD, OTHER, NEW, "not a number", "+55 (44) 9999-9999", "+5544999999999"]
    run = client.check_many(rows, concurrency=4)
    items = await collect(run)
    assert len(items) == 6
    # The line went out once, as its first row wrote it; no request for its other rows.
    assert sorted(sent_phones(api)) == ["11900000001", "4499999999"]
    first = items[0]
    assert first.ok and first.same_line_as is None and first.number is not None
    assert first.number.is_old_form and first.attempts == 1
    for index in (2, 4, 5):
        item = items[index]
        assert item.same_line_as == SameLine(0, pz.PhoneNumber.parse(OLD))
        assert item.outcome is pz.PlanOutcome.SAME_LINE and str(item.outcome) == "same_line"
        assert item.attempts == 0 and item.final and not item.ok
        assert item.error is None and item.availability is None and item.plan is None
    assert items[2].number == pz.PhoneNumber.parse(NEW)  # kept as written
    assert items[4].input == "+55 (44) 9999-9999"
    # A bad row records its own error, and is no line of anyone's.
    assert isinstance(items[3].error, pz.InvalidPhoneNumber)
    record = items[2].to_dict()
    assert record["outcome"] == "same_line" and record["final"] is True
    assert record["same_line_as"] == {"index": 0, "number": "+554499999999"}
    assert record["number"] == "+5544999999999" and record["error"] is None
    assert str(items[2].same_line_as) == "the same line as row 1 (index 0, +554499999999)"
    summary = run.summary
    assert summary.outcomes[pz.PlanOutcome.SAME_LINE] == 3 and summary.total == 6
    assert summary.old_forms == 2  # rows 0 and 4 wrote the old form
    assert summary.attempts == 2 and summary.retries == 0 and summary.pending == 0
    assert summary.to_dict()["outcomes"]["same_line"] == 3
    assert len(run.seen_lines) == 2


async def test_the_other_form_first_is_the_one_named(client: pz.PlugzClient) -> None:
    items = await collect(client.check_many([NEW, OLD], concurrency=1))
    assert items[1].same_line_as == SameLine(0, pz.PhoneNumber.parse(NEW))
    assert items[1].to_dict()["same_line_as"] == {"index": 0, "number": "+5544999999999"}


async def test_one_line_on_two_instances_is_still_one_check() -> None:
    async with running(TWO_INSTANCES, clock=pz.FakeClock()) as sb:
        (first, token), (second, other_token) = sb.instances().items()
        rows: list[NumberInput] = [
            {"number": OLD, "instance_id": first, "instance_token": token},
            BulkRow(number=NEW, instance_id=second, instance_token=other_token),
            {"ddi": "55", "phone": "4499999999", "instance_id": second, "instance_token": "x"},
        ]
        items = await collect(sb.client.check_many(rows, concurrency=2))
        assert len(sb.requests()) == 1 and sb.requests()[0]["instance"] == first
    assert items[1].same_line_as is not None and items[1].same_line_as.index == 0
    assert items[1].instance_id == second  # the row's own instance, though not sent there
    # Not sent: its token (wrong here) never met the server.
    assert items[2].same_line_as is not None and items[2].error is None


async def waiting(seen: SeenLines, number: str) -> bool:
    """Whether a row of ``number``'s line waits for the row in flight that holds it (the
    loop turned a few times first, never for real time)."""
    line = pz.PhoneNumber.parse(number).line
    for _ in range(50):
        if seen._open.get(int(line.ddi + line.phone)) is not None:
            return True
        await asyncio.sleep(0)
    return False


async def each(rows: list[str]) -> AsyncIterator[str]:
    for row in rows:
        yield row


@pytest.mark.parametrize("read", ["iterable", "async iterable"])
async def test_a_duplicate_waits_for_its_first_row_and_comes_after_it(
    api: Sandbox, read: str
) -> None:
    api.hold("registration-available", 60.0, number=NEW)  # the line's first row is held...
    rows = [OTHER, NEW, OLD]
    async with api.new_client(clock=pz.FakeClock()) as client:
        run = client.check_many(rows if read == "iterable" else each(rows), concurrency=3)
        async with run:
            order = []
            async for item in run:
                order.append(item.index)
                if item.index == 0:
                    await api.wait_for_requests(2)
                    assert await waiting(run.seen_lines, OLD)  # ...and its other form waits
                    api.end_holds()
    assert order == [0, 1, 2]  # the duplicate after the row that holds its line
    assert sent_phones(api) == ["11900000001", "44999999999"]
    assert run.summary.outcomes[pz.PlanOutcome.SAME_LINE] == 1
    assert not run.seen_lines._open  # nothing in flight is left behind


async def test_a_line_whose_first_row_got_no_answer_is_checked_on_its_next_row() -> None:
    """A row that ends without an answer (its instance refused) holds no line: the next
    row of the line, on an instance that works, is checked; the rows after that are its
    duplicates."""
    async with running(TWO_INSTANCES, clock=pz.FakeClock()) as sb:
        (good, token), (bad, _) = sb.instances().items()
        refused = {"instance_id": bad, "instance_token": "a-wrong-token"}
        works = {"instance_id": good, "instance_token": token}
        rows: list[NumberInput] = [
            {"number": OLD, **refused},  # sent, refused: no answer
            {"number": NEW, **works},  # so the line is checked here
            {"number": "+55 (44) 9999-9999", **refused},  # the instance refused: unsent
            {"number": OLD, **works},  # the line has its answer (row 1): not sent
        ]
        run = sb.client.check_many(rows, concurrency=1, on_run_error="record")
        items = await collect(run)
        assert sent_phones(sb) == ["4499999999", "44999999999"]
    assert isinstance(items[0].error, pz.InstanceNotFoundError) and items[0].attempts == 1
    assert items[1].ok and items[1].same_line_as is None and items[1].attempts == 1
    assert isinstance(items[2].error, pz.InstanceNotFoundError) and items[2].attempts == 0
    assert items[3].same_line_as == SameLine(1, pz.PhoneNumber.parse(NEW))
    assert len(run.seen_lines) == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(400, json={"error": "bad phone"}), pz.BadRequestError),  # final: not redone
        (Reply(503, body="busy"), pz.ServerError),  # after its retries
    ],
)
async def test_a_row_that_ends_in_an_error_holds_no_line(
    api: Sandbox, client: pz.PlugzClient, reply: Reply, error: type[Exception]
) -> None:
    api.then(reply, reply, reply, reply, number=OLD)
    items = await collect(
        client.check_many(
            [OLD, NEW, OLD], concurrency=1, retry=pz.RetryPolicy(attempts=2, jitter=False)
        )
    )
    assert isinstance(items[0].error, error)
    assert items[1].ok and items[1].same_line_as is None
    assert items[2].same_line_as == SameLine(1, pz.PhoneNumber.parse(NEW))
    assert sent_phones(api).count("44999999999") == 1


async def test_duplicates_waiting_for_a_row_that_fails_are_checked_once_in_order(
    api: Sandbox,
) -> None:
    """The line's first row fails while two rows of it wait: the first of them is checked,
    and the other is its duplicate."""
    api.then(Reply(400, json={"error": "bad phone"}, delay=60.0), number=NEW)
    async with api.new_client(clock=pz.FakeClock()) as client:
        run = client.check_many([OTHER, NEW, OLD, "5544999999999"], concurrency=4)
        async with run:
            items: list[BulkItem] = []
            async for item in run:
                items.append(item)
                if item.index == 0:
                    await api.wait_for_requests(2)
                    assert await waiting(run.seen_lines, OLD)
                    api.state.stopping.set()  # the held answer goes: a 400
    assert [item.index for item in items] == [0, 1, 2, 3]
    assert sent_phones(api) == ["11900000001", "44999999999", "4499999999"]
    assert isinstance(items[1].error, pz.BadRequestError)
    assert items[2].ok and items[2].same_line_as is None
    assert items[3].same_line_as == SameLine(2, pz.PhoneNumber.parse(OLD))
    assert len(run.seen_lines) == 2 and not run.seen_lines._open


async def test_seen_lines_carry_a_line_from_one_run_to_the_next(
    api: Sandbox, client: pz.PlugzClient
) -> None:
    seen = SeenLines()
    await collect(client.check_many([OTHER, OLD], seen_lines=seen))
    items = await collect(client.check_many([NEW, "+55 11 90000-0002"], seen_lines=seen))
    assert items[0].same_line_as == SameLine(1, pz.PhoneNumber.parse(OLD))
    assert len(api.requests()) == 3 and len(seen) == 3
    with pytest.raises(pz.InvalidArgument, match="seen_lines"):
        client.check_many([OLD], seen_lines={})  # type: ignore[arg-type]


def test_seen_lines_hold_each_line_once_in_the_form_first_written() -> None:
    seen = SeenLines()
    landline = pz.PhoneNumber.parse("+55 44 3222-2222")
    assert seen.add(0, landline) is None
    assert seen.add(1, pz.PhoneNumber.parse("+55 44 93222-2222")) is None  # another line
    assert seen.add(2, pz.PhoneNumber.parse("+39 06 1234 5678")) is None
    assert seen.add(3, pz.PhoneNumber.parse("+1 202 555 0123")) is None
    assert seen.add(7, pz.PhoneNumber.parse("+390612345678")) == SameLine(
        2, pz.PhoneNumber.parse("+39 06 1234 5678")
    )
    assert seen.add(8, landline) == SameLine(0, landline)
    for area in (11, 21, 44, 91):
        old = pz.PhoneNumber.parse(f"+55 {area} 8765-4321")
        new = pz.PhoneNumber.parse(f"+55 {area} 98765-4321")
        assert seen.add(100 + area, old) is None
        assert seen.add(200 + area, new) == SameLine(100 + area, old)
        assert seen.add(300 + area, old) == SameLine(100 + area, old)
    assert len(seen) == 8 and repr(seen) == "<SeenLines: 8 lines>"


def _write(path: Path, records: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _record(index: int, number: str, **fields: object) -> dict[str, object]:
    item = BulkItem(index=index, key=str(index), input=number, number=pz.PhoneNumber.parse(number))
    return {**item.to_dict(), **fields}


async def test_a_resume_does_not_check_a_line_again_whose_first_row_is_done(
    api: Sandbox, client: pz.PlugzClient, tmp_path: Path
) -> None:
    rows = [OLD, OTHER, NEW, "+55 11 90000-0002", "+55 44 9999 9999"]
    path = tmp_path / "results.jsonl"
    # A run killed after rows 0 and 1: row 0 (the old form) was checked.
    _write(path, [_record(0, OLD, outcome="ready"), _record(1, OTHER, outcome="ready")])
    with ResultsFile(path) as results:
        done = results.open(resume=True)
        left = [
            BulkRow(number=n, key=str(i), index=i) for i, n in enumerate(rows) if str(i) not in done
        ]
        run = client.check_many(left, seen_lines=results.seen_lines)
        async with run:
            async for item in run:
                results.write(item)
    assert sent_phones(api) == ["11900000002"]  # only the row whose line was never checked
    records = {r["key"]: r for r in pz.read_results(path)}
    assert len(records) == 5
    for key in ("2", "4"):
        assert records[key]["same_line_as"] == {"index": 0, "number": "+554499999999"}


async def test_a_duplicate_kept_by_a_resume_stays_and_its_first_row_is_checked_again(
    api: Sandbox, client: pz.PlugzClient, tmp_path: Path
) -> None:
    rows = [OLD, NEW]
    path = tmp_path / "results.jsonl"
    failed = {"type": "ServerError", "message": "HTTP 503", "status": 503, "attempts": 3}
    duplicate = _record(1, NEW, outcome="same_line")
    duplicate["same_line_as"] = {"index": 0, "number": "+554499999999"}
    # Row 0 failed for a passing reason (redone); row 1 was recorded as its duplicate.
    _write(path, [_record(0, OLD, outcome="error", final=False, error=failed), duplicate])
    before = path.read_text().splitlines()[1]
    with ResultsFile(path) as results:
        done = results.open(resume=True)
        assert done == {"1"} and len(results.seen_lines) == 0  # a duplicate is no first row
        left = [
            BulkRow(number=n, key=str(i), index=i) for i, n in enumerate(rows) if str(i) not in done
        ]
        async with client.check_many(left, seen_lines=results.seen_lines) as run:
            async for item in run:
                results.write(item)
    assert sent_phones(api) == ["4499999999"]  # the first row, checked again
    lines = path.read_text().splitlines()
    assert lines[0] == before  # the duplicate, as it was recorded
    assert json.loads(lines[1])["outcome"] != "error"


async def test_a_resume_checks_a_line_whose_first_row_kept_an_error(
    api: Sandbox, client: pz.PlugzClient, tmp_path: Path
) -> None:
    """A kept record of an error of the row's own (a 400: final, not redone) holds no line:
    the resume checks the line on its next row, and names that row in the rows after."""
    rows = [OLD, OTHER, NEW, OLD]
    path = tmp_path / "results.jsonl"
    rejected = {"type": "BadRequestError", "message": "HTTP 400", "status": 400, "attempts": 1}
    _write(
        path, [_record(0, OLD, outcome="error", error=rejected), _record(1, OTHER, outcome="ready")]
    )
    with ResultsFile(path) as results:
        done = results.open(resume=True)
        assert done == {"0", "1"} and len(results.seen_lines) == 1  # OTHER's line only
        left = [
            BulkRow(number=n, key=str(i), index=i) for i, n in enumerate(rows) if str(i) not in done
        ]
        async with client.check_many(left, seen_lines=results.seen_lines) as run:
            async for item in run:
                results.write(item)
    assert sent_phones(api) == ["44999999999"]
    records = {r["key"]: r for r in pz.read_results(path)}
    assert records["2"]["outcome"] not in ("error", "same_line")
    assert records["3"]["same_line_as"] == {"index": 2, "number": "+5544999999999"}


async def test_csv_results_name_the_row_and_old_csv_files_still_resume(
    api: Sandbox, client: pz.PlugzClient, tmp_path: Path
) -> None:
    path = tmp_path / "results.csv"
    with ResultsFile(path) as results:
        results.open()
        async with client.check_many([OLD, NEW]) as run:
            async for item in run:
                results.write(item)
    by_key = {row["key"]: row for row in csv.DictReader(path.read_text().splitlines())}
    assert list(by_key["0"])[-2:] == ["same_line_as", "same_line_as_number"]
    assert by_key["1"]["outcome"] == "same_line" and by_key["1"]["final"] == "True"
    assert by_key["1"]["same_line_as"] == "0"
    assert by_key["1"]["same_line_as_number"] == "+554499999999"
    assert by_key["0"]["same_line_as"] == ""
    if importlib.util.find_spec("pandas") is not None:  # not in the minimal install
        assert pz.to_dataframe(path)["same_line_as"].tolist() == ["", "0"]  # CSV: text
    # A results file written before these columns: resumed, its records kept, rewritten.
    old = tmp_path / "before.csv"
    header = CSV_FIELDS[:-2]
    written = io.StringIO()
    writer = csv.DictWriter(written, header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerow(by_key["0"])
    old.write_text(written.getvalue())
    with ResultsFile(old) as results:
        assert results.open(resume=True) == {"0"}
        assert len(results.seen_lines) == 1
    text = old.read_text().splitlines()
    assert text[0] == ",".join(CSV_FIELDS)
    rewritten = next(csv.DictReader(text))
    assert {k: v for k, v in rewritten.items() if k in header} == {
        k: v for k, v in by_key["0"].items() if k in header
    }


async def test_a_run_stopped_while_a_line_is_in_flight_leaves_it_to_the_resume(
    api: Sandbox, tmp_path: Path
) -> None:
    """A duplicate waits for its line's first row: when the run stops before that row's
    answer, neither is recorded, the line is free in the run's lines, and a resume checks
    the first row and names it in the duplicate."""
    api.hold("registration-available", 60.0, number=NEW)
    path = tmp_path / "results.jsonl"
    rows = [OTHER, NEW, OLD]
    async with api.new_client(clock=pz.FakeClock()) as client:
        with ResultsFile(path) as results:
            results.open()
            run = client.check_many(rows, concurrency=3)
            async with run:
                async for item in run:
                    results.write(item)
                    await api.wait_for_requests(2)
                    assert await waiting(run.seen_lines, OLD)
                    break  # the run stops: row 1 never answered, row 2 waited for it
    assert len(run.seen_lines) == 1 and not run.seen_lines._open  # OTHER's line only
    with ResultsFile(path) as results:
        done = results.open(resume=True)
        assert done == {"0"}
        left = [
            BulkRow(number=n, key=str(i), index=i) for i, n in enumerate(rows) if str(i) not in done
        ]
        api.end_holds()
        async with (
            api.new_client(clock=pz.FakeClock()) as client,
            client.check_many(left, seen_lines=results.seen_lines) as run,
        ):
            async for item in run:
                results.write(item)
    records = {r["key"]: r for r in pz.read_results(path)}
    assert records["1"]["outcome"] not in ("error", "same_line")
    assert records["2"]["same_line_as"] == {"index": 1, "number": "+5544999999999"}
    assert sent_phones(api) == ["11900000001", "44999999999", "44999999999"]


async def test_a_row_of_a_refused_instance_holds_no_line(
    api: Sandbox, client: pz.PlugzClient
) -> None:
    gone = {"instance_id": "gone", "instance_token": "t-gone"}
    rows: list[NumberInput] = [
        {"number": OTHER, **gone},  # sent: the instance is unknown (InstanceNotFoundError)
        {"number": OLD, **gone},  # recorded unsent with that error...
        {"number": NEW},  # ...so the line is checked here, on the client's own instance
    ]
    items = await collect(client.check_many(rows, concurrency=1))
    assert isinstance(items[1].error, pz.InstanceNotFoundError) and items[1].attempts == 0
    assert items[2].ok and items[2].same_line_as is None
    assert sent_phones(api) == ["11900000001", "44999999999"]


async def test_a_run_stopped_by_a_refused_credential_leaves_no_line_held(api: Sandbox) -> None:
    seen = SeenLines()
    async with pz.PlugzClient(
        INSTANCE_ID, INSTANCE_TOKEN, "not-the-token", base_url=api.base_url, clock=pz.FakeClock()
    ) as refused:
        with pytest.raises(pz.AuthenticationError):
            await collect(refused.check_many([OLD, NEW], seen_lines=seen))
    assert len(seen) == 0 and not seen._open  # the line was never checked: free
    items = await collect(api.client.check_many([NEW], seen_lines=seen))
    assert items[0].ok and sent_phones(api) == ["4499999999", "44999999999"]
