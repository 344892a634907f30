"""How results look in a notebook, and plans handed to another process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta

import pytest

import plugz_async as pz
from plugz_async.sandbox import running


async def test_html_of_an_answer_a_plan_and_a_summary() -> None:
    async with running(clock=pz.FakeClock()) as sb:
        availability = await sb.client.check_availability("+55 11 90000-0002")
        banned = await sb.client.check_availability("+55 11 90000-0004")
        async with sb.client.check_many(["+55 11 90000-0001", "x<script>"]) as run:
            _ = [item async for item in run]
    planner = pz.RegistrationPlanner(clock=sb.client.clock)
    html = planner.plan(availability)._repr_html_()
    assert "+5511900000002 · wait · next: sms" in html and "opens in 30 s" in html
    assert "not used: allow_wa_old is off" in html
    assert "appeal token Ae0B_sandbox-appeal-token" in planner.plan(banned)._repr_html_()
    assert "<td style='padding:2px 8px'>smsWaitSeconds" not in availability._repr_html_()
    assert "sms_wait_seconds" in availability._repr_html_()
    summary = run.summary._repr_html_()
    assert "error: InvalidPhoneNumber" in summary and "<script>" not in summary


async def test_a_plan_draws_its_timeline() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    async with running(clock=pz.FakeClock()) as sb:
        availability = await sb.client.check_availability("+55 11 90000-0006")
    plan = pz.RegistrationPlanner(clock=sb.client.clock, allow_wa_old=True).plan(availability)
    ax = plan.plot()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["sms", "voice", "wa_old"]
    assert ax.get_title() == "+5511900000006: ready"
    plt.close("all")


RESUME = """
import json, sys
import plugz_async as pz
plan = pz.RegistrationPlan.from_dict(json.loads(sys.stdin.read()))
print(json.dumps({"next": str(plan.next_channel()), "ready_in": plan.ready_in(plan.next_channel())}))
"""


async def test_a_plan_stored_as_json_resumes_in_another_process() -> None:
    async with running() as sb:
        availability = await sb.client.check_availability("+55 11 90000-0002")
    plan = pz.RegistrationPlanner().plan(availability)
    stored = json.dumps(plan.to_dict())
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", RESUME],
        input=stored,
        capture_output=True,
        text=True,
        check=True,
    )
    resumed = json.loads(done.stdout)
    assert resumed["next"] == "sms"
    # The other process placed SMS by the stored wall-clock time: 30 s after the answer.
    assert 20 < resumed["ready_in"] <= plan.ready_in(pz.Channel.SMS) + 0.5
    assert plan.window(pz.Channel.SMS).ready_at == availability.observed_at + timedelta(seconds=30)
