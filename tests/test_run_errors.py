"""Errors about the run, not the row: a refused credential, an unknown instance, an outage.

The bulk engine, in this event loop against the sandbox (on a fake clock: retries do not
wait), and the results file that a resume rewrites.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN

import plugz_async as pz
from plugz_async._bulk._results import record_is_final
from plugz_async.sandbox import Sandbox


def numbers(n: int, start: int = 0) -> Iterator[str]:
    for i in range(start, start + n):
        yield f"+55 31 9{i:04d}-{i % 10_000:04d}"


async def drain(run: pz.BulkRun, seen: list[pz.BulkItem]) -> None:
    """Read the run to its end (or its error), keeping the items it yields."""
    async with run:
        async for item in run:
            seen.append(item)


def new_client(api: Sandbox, **options: object) -> pz.PlugzClient:
    settings: dict[str, object] = {
        "clock": pz.FakeClock(),
        "timeout": 5.0,
        "retry": pz.RetryPolicy(jitter=False),
        **options,
    }
    return pz.PlugzClient(
        str(settings.pop("instance_id", INSTANCE_ID)),
        str(settings.pop("instance_token", INSTANCE_TOKEN)),
        str(settings.pop("client_token", CLIENT_TOKEN)),
        base_url=api.base_url,
        **settings,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("credentials", "error"),
    [
        ({"client_token": "wrong-client-token"}, pz.AuthenticationError),
        ({"instance_token": "wrong-instance-token"}, pz.InstanceNotFoundError),
        ({"instance_id": "no-such-instance"}, pz.InstanceNotFoundError),
    ],
)
async def test_a_refused_credential_stops_the_run_after_one_request(
    api: Sandbox, credentials: dict[str, str], error: type[pz.PlugzError]
) -> None:
    async with new_client(api, **credentials) as client:
        seen: list[pz.BulkItem] = []
        run = client.check_many(numbers(2000), concurrency=32)
        with pytest.raises(error):
            await drain(run, seen)
    assert seen == []  # the one row sent is the error raised
    assert len(api.requests()) == 1  # the first request goes alone
    assert run.summary.stopped == error.__name__


async def test_items_completed_before_the_stop_are_yielded_first(api: Sandbox) -> None:
    from plugz_async.sandbox import Reply

    answer = {"error": "NOT_FOUND", "message": "Instance not found"}
    api.then(*[Reply(json={"available": True})] * 20, Reply(json=answer))
    async with new_client(api) as client:
        seen: list[pz.BulkItem] = []
        with pytest.raises(pz.InstanceNotFoundError):
            await drain(client.check_many(numbers(2000), concurrency=4), seen)
    assert len(seen) >= 20 - 4 and all(item.ok for item in seen)
    assert len(api.requests()) <= 21 + 4  # what was in flight when it came, no more


async def test_recorded_instead_of_raised_on_request(api: Sandbox) -> None:
    async with new_client(api, client_token="wrong") as client:
        run = client.check_many(numbers(500), concurrency=16, on_run_error="record")
        items = [item async for item in run]
    assert len(items) == 500
    assert all(isinstance(item.error, pz.AuthenticationError) for item in items)
    assert sum(item.attempts for item in items) == len(api.requests()) == 1
    assert not any(item.final for item in items)  # a resume checks them again
    assert run.summary.pending == 500 and run.summary.stopped is None


async def test_a_refused_instance_of_a_row_fails_its_own_rows_only(api: Sandbox) -> None:
    rows = []
    for i, number in enumerate(numbers(300)):
        if i % 3 == 1:
            rows.append({"number": number, "instance_id": "gone", "instance_token": "t-gone"})
        else:
            rows.append({"number": number})
    async with new_client(api) as client, client.check_many(rows, concurrency=8) as run:
        items = [item async for item in run]
    assert len(items) == 300
    gone = [item for item in items if item.instance_id == "gone"]
    assert len(gone) == 100 and all(
        isinstance(item.error, pz.InstanceNotFoundError) for item in gone
    )
    assert all(item.ok for item in items if item.instance_id is None)
    # Once refused, its rows are recorded unsent: only those in flight at that moment went.
    assert len(api.requests(route="registration-available")) <= 200 + 8


async def test_a_refused_client_token_is_the_accounts_whatever_the_instance(
    api: Sandbox,
) -> None:
    rows = [
        {"number": n, "instance_id": f"i{n[-4:]}", "instance_token": "t-row-token"}
        for n in numbers(50)
    ]
    async with new_client(api, client_token="wrong") as client:
        with pytest.raises(pz.AuthenticationError) as info:
            await drain(client.check_many(rows, concurrency=8), [])
    assert info.value.credential == "client_token"
    assert len(api.requests()) == 1


@pytest.mark.parametrize("status", [503, 502])
async def test_an_outage_stops_the_run(api: Sandbox, status: int) -> None:
    api.outage(after=300, status=status)
    async with new_client(api) as client:
        seen: list[pz.BulkItem] = []
        with pytest.raises(pz.OutageError) as info:
            await drain(client.check_many(numbers(2000), concurrency=16), seen)
    error = info.value
    assert error.failures == 30 and isinstance(error.last_error, pz.ServerError)
    assert f"HTTP {status}" in str(error.last_error)
    ok = [item for item in seen if item.ok]
    assert len(ok) == 300 and all(not item.final for item in seen if not item.ok)
    # 300 answers, then three attempts for each row that met the outage, and no more.
    assert len(api.requests()) <= 300 + 3 * (30 + 16)


async def test_an_unreachable_api_stops_the_run(refused_client: pz.PlugzClient) -> None:
    run = refused_client.check_many(numbers(10_000), concurrency=8)
    with pytest.raises(pz.OutageError) as info:
        await drain(run, [])
    assert isinstance(info.value.last_error, pz.ConnectError)
    assert run.summary.total < 30 + 8 and run.summary.stopped == "OutageError"


async def test_failures_must_come_in_a_row_and_the_limit_is_settable(api: Sandbox) -> None:
    from plugz_async.sandbox import Reply

    # Every other row fails: never 5 in a row, so the run goes to its end.
    for i, number in enumerate(numbers(60)):
        if i % 2:
            api.then(*[Reply(503, body="<html>busy</html>")] * 3, number=number)
    async with new_client(api) as client:
        run = client.check_many(numbers(60), concurrency=1, max_consecutive_failures=5)
        items = [item async for item in run]
        assert len(items) == 60 and run.summary.pending == 30
        api.outage()
        run = client.check_many(numbers(60), concurrency=1, max_consecutive_failures=None)
        items = [item async for item in run]
        assert len(items) == 60  # never stopped
    with pytest.raises(pz.InvalidArgument):
        client.check_many([], max_consecutive_failures=0)
    with pytest.raises(pz.InvalidArgument):
        client.check_many([], on_run_error="ignore")  # type: ignore[arg-type]


def test_what_is_final() -> None:
    assert record_is_final({"error": None})
    assert record_is_final({"error": {"type": "InvalidPhoneNumber"}})
    assert record_is_final({"error": {"type": "BadRequestError"}})
    assert not record_is_final({"error": {"type": "ServerError"}})
    assert not record_is_final({"error_type": "RequestTimeout"})  # a CSV row
    assert record_is_final({"error_type": ""})
    assert not record_is_final({"final": "False", "error_type": "InvalidPhoneNumber"})
    assert record_is_final({"final": True, "error": {"type": "ServerError"}})


# -- the results file ---------------------------------------------------------------------


def record(key: str, *, error: str | None = None, outcome: str = "ready") -> str:
    data = {
        "key": key,
        "outcome": "error" if error else outcome,
        "error": None if error is None else {"type": error, "message": "m"},
    }
    return json.dumps(data) + "\n"


def test_resume_keeps_final_records_and_drops_the_rest_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(
        record("0")
        + record("1", error="ServerError")
        + record("2", error="InvalidPhoneNumber")
        + record("3", error="AuthenticationError")
        + record("0")  # a second record of a key: the first is kept
        + '{"key": "4", "outc'  # half-written
    )
    before = path.stat().st_ino
    results = pz.ResultsFile(path)
    done = results.open(resume=True)
    results.close()
    assert done == {"0", "2"}
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["0", "2"]
    assert results.dropped == 3 and dict(results.kept) == {"ready": 1, "error": 1}
    assert dict(results.kept_errors) == {"InvalidPhoneNumber": 1}
    assert path.stat().st_ino != before  # a new file, swapped in by a rename
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]  # nothing left behind


def test_resume_with_nothing_to_drop_only_cuts_a_half_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(record("0") + record("1") + '{"key": "2"')
    before = path.stat().st_ino
    results = pz.ResultsFile(path)
    assert results.open(resume=True) == {"0", "1"}
    results.close()
    assert path.stat().st_ino == before and path.read_text() == record("0") + record("1")


def test_a_crash_while_rewriting_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    path = tmp_path / "results.jsonl"
    original = record("0") + record("1", error="RequestTimeout")
    path.write_text(original)

    def crash(*args: object) -> None:
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        pz.ResultsFile(path).open(resume=True)
    assert path.read_text() == original
    monkeypatch.undo()
    results = pz.ResultsFile(path)  # the next resume cleans up and finishes the job
    assert results.open(resume=True) == {"0"}
    results.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]


def test_the_format_comes_from_the_file_or_its_name(tmp_path: Path) -> None:
    assert pz.ResultsFile(tmp_path / "a.csv").format == "csv"
    assert pz.ResultsFile(tmp_path / "a.jsonl").format == "jsonl"
    assert pz.ResultsFile(tmp_path / "a.out").format == "jsonl"
    holds_csv = tmp_path / "b.txt"
    holds_csv.write_text("key,index\n")
    assert pz.ResultsFile(holds_csv).format == "csv"
    with pytest.raises(pz.InvalidArgument, match="holds CSV, not JSON Lines"):
        pz.ResultsFile(holds_csv, format="jsonl")


def test_a_results_path_that_cannot_be_written_is_a_plain_error(tmp_path: Path) -> None:
    with pytest.raises(pz.InvalidArgument, match=r"the folder .* does not exist"):
        pz.ResultsFile(tmp_path / "missing" / "r.jsonl").open()
    with pytest.raises(pz.InvalidArgument, match="is a folder"):
        pz.ResultsFile(tmp_path).open()


def test_read_results_gives_one_row_per_key(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(record("0", error="ServerError") + record("1") + record("0"))
    records = pz.read_results(path)
    assert [(r["key"], r["outcome"]) for r in records] == [("1", "ready"), ("0", "ready")]


def test_to_dataframe_gives_one_row_per_key(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    path = tmp_path / "results.jsonl"
    path.write_text(record("0", error="ServerError") + record("1") + record("0"))
    assert list(pz.to_dataframe(path)["key"]) == ["1", "0"]


async def test_a_refused_token_of_an_instance_spares_its_rows_with_the_right_token(
    api: Sandbox,
) -> None:
    rows = [
        {
            "number": number,
            "instance_id": INSTANCE_ID,
            "instance_token": INSTANCE_TOKEN if i % 2 else "a-wrong-instance-token",
        }
        for i, number in enumerate(numbers(40))
    ]
    async with new_client(api) as client, client.check_many(rows, concurrency=1) as run:
        items = [item async for item in run]
    assert sum(item.ok for item in items) == 20
    assert sum(isinstance(item.error, pz.InstanceNotFoundError) for item in items) == 20
    assert len(api.requests()) == 21  # the wrong token was sent once
