"""A default region: numbers written without + are read where their users live, and a
number that only a region could make sense of is never read silently as another country's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import plugz_async as pz
from plugz_async.cli import EXIT_OK, EXIT_USAGE, main
from plugz_async.sandbox import Sandbox

NATIONAL = ["44 99999-9999", "11 90000-0001"]  # what a Brazilian user types


async def test_a_client_with_a_region_reads_national_numbers_in_it(api: Sandbox) -> None:
    async with api.new_client(default_region="BR") as client:
        assert client.default_region == "BR"
        availability = await client.check_availability("44 99999-9999")
        assert availability.number.e164 == "+5544999999999"
        sibling = client.for_instance("other-instance", "other-token")
        assert sibling.default_region == "BR"
    (sent,) = api.requests(route="registration-available")
    assert sent["body"] == {"ddi": "55", "phone": "44999999999"}


async def test_without_a_region_a_national_number_is_refused_before_any_request(
    api: Sandbox, client: pz.PlugzClient
) -> None:
    with pytest.raises(pz.MissingCountryCode, match="default_region") as caught:
        await client.check_availability("44 99999-9999")
    assert caught.value.read_as == "+44999999999"
    with pytest.raises(pz.MissingCountryCode):
        await client.request_code("11 90000-0001", "sms")
    assert api.requests() == []


def test_the_region_comes_from_the_environment_and_an_unknown_one_is_refused() -> None:
    env = {
        "PLUGZ_INSTANCE_ID": "i",
        "PLUGZ_INSTANCE_TOKEN": "t",
        "PLUGZ_CLIENT_TOKEN": "c",
        "PLUGZ_DEFAULT_REGION": "pt",
    }
    assert pz.PlugzClient.from_env(env).default_region == "PT"
    assert pz.PlugzClient.from_env(env, default_region="BR").default_region == "BR"
    with pytest.raises(pz.ConfigurationError, match="default_region: unknown region 'Brasil'"):
        pz.PlugzClient("i", "t", "c", default_region="Brasil")


async def test_a_bulk_run_without_a_region_stops_at_the_first_national_number(
    api: Sandbox, client: pz.PlugzClient
) -> None:
    rows = ["+55 11 90000-0001", "+55 11 90000-0002", *NATIONAL, "+55 11 90000-0003"]
    seen: list[pz.BulkItem] = []

    async def consume() -> None:
        async with client.check_many(rows, concurrency=1) as run:
            async for item in run:
                seen.append(item)

    with pytest.raises(pz.MissingCountryCode, match=r"row 3 of the input \(index 2\)"):
        await consume()
    # The rows before it are kept (and the refused row too): nothing else was sent.
    assert [item.index for item in seen] == [0, 1, 2]
    assert isinstance(seen[2].error, pz.MissingCountryCode)
    assert len(api.requests()) == 2


async def test_a_bulk_run_reads_in_its_region_or_the_clients(
    api: Sandbox, client: pz.PlugzClient
) -> None:
    async with client.check_many(NATIONAL, default_region="BR") as run:
        items = sorted([item async for item in run], key=lambda item: item.index)
    assert [str(item.number) for item in items] == ["+5544999999999", "+5511900000001"]
    assert all(item.error is None for item in items)
    regional = api.new_client(default_region="BR")
    async with regional, regional.check_many(NATIONAL) as run:
        assert len([item async for item in run if item.error is None]) == 2
    with pytest.raises(pz.InvalidArgument, match="unknown region"):
        client.check_many(NATIONAL, default_region="ZZ")


# -- the command line -------------------------------------------------------------------------


def test_check_without_a_region_says_to_give_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--sandbox", "44 99999-9999"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--region" in err and "+44999999999" in err
    assert main(["check", "--sandbox", "--region", "XX", "+55 11 90000-0001"]) == EXIT_USAGE
    assert "--region: unknown region 'XX'" in capsys.readouterr().err


def test_check_says_the_region_fix_once_for_every_number_that_needs_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    numbers = ["11 90000-0003", "11 90000-0004", "44 99999-9999", "+55 11 90000-0001"]
    assert main(["check", "--sandbox", *numbers]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert "+5511900000001" in out  # the number that could be read was checked
    hints = [line for line in err.splitlines() if "--region BR" in line]
    assert len(hints) == 1, err
    assert hints[0].startswith("plugz-async: '11 90000-0003' has no '+'")
    assert hints[0].endswith("(2 more numbers the same)")


def test_check_with_a_region_shows_the_numbers_as_read(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["check", "--sandbox", "--region", "br", "--json", *NATIONAL]) == EXIT_OK
    records = json.loads(capsys.readouterr().out)
    assert [r["number"] for r in records] == ["+5544999999999", "+5511900000001"]
    monkeypatch.setenv("PLUGZ_DEFAULT_REGION", "BR")
    assert main(["check", "--sandbox", "--json", "44 99999-9999"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)[0]["number"] == "+5544999999999"


def test_bulk_refuses_a_file_of_national_numbers_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("number\n+55 11 90000-0001\n11 90000-0002\n44 99999-9999\n")
    out = tmp_path / "results.jsonl"
    assert main(["bulk", str(numbers), "--out", str(out), "--sandbox"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "data row 2" in err and "'11 90000-0002'" in err and "--region" in err
    assert not out.exists()  # nothing sent, nothing written
    assert main(["bulk", str(numbers), "--out", str(out), "--sandbox", "--region", "BR"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["number"] for r in lines) == [
        "+5511900000001",
        "+5511900000002",
        "+5544999999999",
    ]
    # (Its resume command repeats --region: the next test.)


def test_the_resume_command_repeats_the_region(tmp_path: Path) -> None:
    from plugz_async.cli import build_parser
    from plugz_async.cli._bulk import resume_command

    args = build_parser("bulk").parse_args(
        ["bulk", "in.csv", "--out", "out.jsonl", "--region", "BR"]
    )
    assert "--region BR" in resume_command(args)


# -- the queue --------------------------------------------------------------------------------


async def test_the_queue_reads_numbers_in_its_region_and_says_when_another_instance_has_one(
    redis_url: str,
) -> None:
    pytest.importorskip("saq")
    from plugz_async.queue import RegistrationQueue

    async with RegistrationQueue(redis_url, environ={"PLUGZ_DEFAULT_REGION": "BR"}) as queue:
        assert queue.default_region == "BR"
        status = await queue.register("44 99999-9999", instance="instance-a")
        assert status.number == "+5544999999999"
        assert (await queue.status("44 99999-9999")).instance == "instance-a"
        again = await queue.register("+55 44 99999-9999", instance="instance-a")
        assert again.version == status.version  # the same registration, nothing new
        with pytest.raises(pz.RegistrationStateError, match="queued on instance 'instance-a'"):
            await queue.register("44 99999-9999", instance="instance-b")
    async with RegistrationQueue(redis_url, environ={}) as queue:
        with pytest.raises(pz.MissingCountryCode):
            await queue.register("11 90000-0001", instance="instance-c")


def test_queue_register_on_another_instance_fails_on_stderr(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("saq")
    from plugz_async.cli import EXIT_INCOMPLETE

    monkeypatch.setenv("PLUGZ_REDIS_URL", redis_url)
    monkeypatch.delenv("PLUGZ_DEFAULT_REGION", raising=False)
    base = ["queue", "register", "--region", "BR"]
    assert main([*base, "11 90000-0009", "--instance", "instance-a"]) == EXIT_OK
    assert "+5511900000009" in capsys.readouterr().out
    assert main([*base, "11 90000-0009", "--instance", "instance-b"]) == EXIT_INCOMPLETE
    err = capsys.readouterr().err
    assert "queued on instance 'instance-a', not 'instance-b'" in err
    assert main(["queue", "register", "11 90000-0009", "--instance", "x"]) == EXIT_USAGE
    assert "--region" in capsys.readouterr().err
