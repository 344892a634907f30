"""What a newcomer's trial found, each small, each held here."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import plugz_async as pz
from plugz_async.cli import EXIT_USAGE, main
from plugz_async.sandbox import Sandbox


async def test_every_outcome_of_a_summary_is_an_outcome(client: pz.PlugzClient) -> None:
    rows = ["+55 11 90000-0001", "not a number", "+55 11 90000-0004"]
    async with client.check_many(rows) as run:
        items = [item async for item in run]
    assert all(type(key) is pz.PlanOutcome for key in run.summary.outcomes)
    assert run.summary.outcomes[pz.PlanOutcome.ERROR] == 1
    assert str(pz.PlanOutcome.ERROR) == "error"  # its text
    assert {type(item.outcome) for item in items} == {pz.PlanOutcome}
    plan = next(item.plan for item in items if item.plan is not None)
    with pytest.raises(pz.PlanDataError):  # never a plan's
        pz.RegistrationPlan.from_dict({**plan.to_dict(), "outcome": "error"})


async def test_a_dataframe_keeps_the_input_order(client: pz.PlugzClient) -> None:
    pytest.importorskip("pandas")
    rows = [f"+55 31 9{i:04d}-{i:04d}" for i in range(30)]
    async with client.check_many(rows, concurrency=8) as run:
        items = [item async for item in run]
    frame = pz.to_dataframe(reversed(items))
    assert list(frame["index"]) == list(range(30))
    assert list(frame["input"]) == rows


@pytest.mark.parametrize("empty", ["", "   "])
async def test_an_empty_number_is_the_same_error_everywhere(
    empty: str, client: pz.PlugzClient, api: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(pz.InvalidPhoneNumber) as direct:
        await client.check_availability(empty)
    async with client.check_many([empty]) as run:
        (item,) = [item async for item in run]
    assert type(item.error) is type(direct.value) and str(item.error) == str(direct.value)
    assert api.requests() == []
    capsys.readouterr()
    for command in ("check", "plan"):
        assert await _cli(command, empty) == EXIT_USAGE
        assert capsys.readouterr().err.strip() == f"plugz-async: error: {direct.value}"


async def _cli(*args: str) -> int:
    import asyncio

    # main() runs its own event loop: off this test's loop, in a thread.
    return await asyncio.to_thread(main, [args[0], "--sandbox", *args[1:]])


def test_a_client_used_with_plain_with_says_to_use_async_with() -> None:
    client = pz.PlugzClient("i", "t", "c")
    with (
        pytest.raises(TypeError, match=r"use 'async with PlugzClient\(\.\.\.\) as client:'"),
        client,
    ):
        pass


def test_old_names_of_the_planner_and_the_machine_still_answer() -> None:
    clock = pz.FakeClock()
    planner = pz.RegistrationPlanner(clock=clock)
    number = pz.PhoneNumber.parse("+55 44 99999-9999")
    from plugz_async._models import decode_availability

    answer = decode_availability({"available": True}, number=number, observed_at=clock.now())
    assessment = planner.assess(answer)
    with pytest.warns(DeprecationWarning, match="Assessment.channels"):
        assert assessment.steps == assessment.channels
    machine = pz.RegistrationMachine(planner=planner)
    state = attrs.evolve(machine.start(number), step=pz.RegistrationStep.CONFIRM_DEVICE)
    with pytest.warns(DeprecationWarning, match="no longer needed"):
        assert machine.device_waiting(state) is state


def test_a_route_made_without_a_decoder_answers_its_json() -> None:
    from datetime import datetime, timezone

    from plugz_async._routes import Received

    route: pz.Route[Any] = pz.Route("GET", "mobile/other", pz.RetrySafety.SAFE)
    received = Received("mobile/other", datetime.now(timezone.utc))
    assert route.decode({"a": 1}, received) == {"a": 1}
