"""No secret in anything the SDK produces, across every error scenario."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from helpers import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN

import plugz_async as pz
from plugz_async.sandbox import Reply, Sandbox

WRONG_CLIENT_TOKEN = "wrong-SECRET/client+token"
SECRETS = [INSTANCE_TOKEN, CLIENT_TOKEN, WRONG_CLIENT_TOKEN]
NUMBER = "+55 44 99999-9999"
PATH = f"/instances/{INSTANCE_ID}/token/{INSTANCE_TOKEN}/mobile/registration-available"


def forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}


def chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


def everything_about(error: BaseException) -> list[str]:
    texts = ["".join(traceback.format_exception(error))]
    for link in chain(error):
        texts += [str(link), repr(link), *(repr(v) for v in vars(link).values())]
    return texts


def assert_clean(texts: list[str]) -> None:
    for text in texts:
        for secret in SECRETS:
            for form in forms(secret):
                assert form not in text, f"secret leaked in: {text[:300]}"


SCENARIOS = {
    "403 echoing the refused Client-Token": [],
    "200 with an error body naming the secrets": [
        Reply(
            json={
                "error": f"bad {CLIENT_TOKEN}",
                "message": f"see {quote(INSTANCE_TOKEN, safe='')}",
            }
        )
    ],
    "502 HTML echoing the URL": [Reply(502, body=f"<html><p>upstream {PATH} failed</p></html>")]
    * 3,
    "400 with a nested error object": [Reply(400, json={"error": {"token": CLIENT_TOKEN}})],
    "broken JSON with the token": [Reply(body=f'{{"available": "{INSTANCE_TOKEN}')],
    "429 with a huge Retry-After": [
        Reply(429, json={"message": INSTANCE_TOKEN}, headers={"Retry-After": "99999"})
    ],
    "dropped connection": [Reply(drop=True)] * 3,
    "timeout": [Reply(delay=5.0)] * 3,
    "not found (wrong instance token)": [],
}


#: A route that names a number (its request carries one), and one of the instance with no body.
CALLS: dict[str, Callable[[pz.PlugzClient], Awaitable[object]]] = {
    "check_availability": lambda client: client.check_availability(NUMBER),
    "instance_status": lambda client: client.instance_status(),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_no_secret_in_errors_logs_or_reprs(
    api: Sandbox, scenario: str, call: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.then(*SCENARIOS[scenario])
    client_token = WRONG_CLIENT_TOKEN if scenario.startswith("403") else CLIENT_TOKEN
    instance_token = "other-token" if scenario.startswith("not found") else INSTANCE_TOKEN
    events: list[pz.RetryEvent] = []
    produced: list[str] = []
    caplog.set_level(logging.DEBUG, logger="plugz_async")
    async with pz.PlugzClient(
        INSTANCE_ID,
        instance_token,
        client_token,
        base_url=api.base_url,
        clock=pz.FakeClock(),
        timeout=0.05,
        on_retry=events.append,
    ) as client:
        produced.append(repr(client))
        with pytest.raises(pz.PlugzError) as info:
            await CALLS[call](client)
        produced.append(repr(client))
    produced += everything_about(info.value)
    produced += [repr(event) for event in events]
    for record in caplog.records:
        produced += [record.getMessage(), repr(vars(record))]
    assert caplog.records  # the scan saw log output too
    assert_clean(produced)


async def test_no_secret_when_the_server_is_unreachable(
    refused_client: pz.PlugzClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="plugz_async")
    with pytest.raises(pz.ConnectError) as info:
        await refused_client.check_availability(NUMBER)
    produced = everything_about(info.value)
    produced += [r.getMessage() + repr(vars(r)) for r in caplog.records]
    assert_clean(produced)


async def test_no_secret_in_the_repr_of_results(client: pz.PlugzClient, api: Sandbox) -> None:
    availability = await client.check_availability(NUMBER)
    plan = pz.RegistrationPlanner().plan(availability)
    assert_clean([repr(availability), repr(plan), str(plan.to_dict()), repr(client.__dict__)])


def test_no_secret_in_bulk_output_results_files_or_reprs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's bulk path with the suite's tokens (and per-row tokens, one refused):
    stdout, stderr with --verbose, both results formats, and the reprs of what it made."""
    import asyncio as _asyncio

    from helpers import CONFIG

    from plugz_async.cli import main
    from plugz_async.sandbox import SandboxThread

    row_token = "row-SECRET/token+9"
    source = tmp_path / "rows.csv"
    source.write_text(
        "number,instance_id,instance_token\n"
        "+55 11 90000-0001,,\n"
        f"+55 11 90000-0002,{INSTANCE_ID},{INSTANCE_TOKEN}\n"
        f"+55 11 90000-0003,elsewhere,{row_token}\n"
        "+55 11 90000-9004,,\n"
        "bad,,\n"
    )
    produced: list[str] = []
    with SandboxThread(CONFIG) as sandbox:
        for name, value in sandbox.env().items():
            monkeypatch.setenv(name, value)
        for fmt in ("jsonl", "csv"):
            out = tmp_path / f"results.{fmt}"
            code = main(["--verbose", "bulk", str(source), "--out", str(out), "--format", fmt])
            assert code == 7  # the unknown instance's row and the 5xx row: to check again
            captured = capsys.readouterr()
            produced += [captured.out, captured.err, out.read_text()]
        monkeypatch.setenv("PLUGZ_CLIENT_TOKEN", WRONG_CLIENT_TOKEN)
        assert main(["--verbose", "check", "+55 11 90000-0001"]) != 0
        captured = capsys.readouterr()
        produced += [captured.out, captured.err]
        # The run-level stop: its line on stderr, the resume hint, the file it leaves.
        out = tmp_path / "refused.jsonl"
        assert (
            main(["bulk", str(source), "--out", str(out), "--client-token", "x" + row_token]) == 3
        )
        captured = capsys.readouterr()
        assert "--client-token refused: HTTP 403" in captured.err
        produced += [captured.out, captured.err, out.read_text()]

        async def objects() -> list[str]:
            async with sandbox.new_client() as client:
                availability = await client.check_availability("+55 11 90000-0001")
                run = client.check_many(["+55 11 90000-0001"])
                items = [item async for item in run]
                registration = client.registration("+55 11 90000-0004")
                result = await registration.run(code=lambda channel: _asyncio.sleep(0, "123456"))
                other = client.for_instance("elsewhere", row_token)
                return [
                    repr(x)
                    for x in (
                        client,
                        other,
                        availability,
                        pz.RegistrationPlanner().plan(availability),
                        run,
                        run.summary,
                        items,
                        registration,
                        result,
                        sandbox,
                    )
                ]

        produced += _asyncio.run(objects())
    assert len(produced) >= 16 and "Results in" in produced[0]
    for text in produced:
        for secret in [*SECRETS, row_token]:
            for form in forms(secret):
                assert form not in text, f"secret leaked in: {text[:300]}"
