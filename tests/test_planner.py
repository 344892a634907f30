"""The planner on a fake clock: every outcome, every channel combination, never early."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import timedelta
from typing import Any

import pytest

import plugz_async as pz
from plugz_async._models import decode_availability

SMS, VOICE, WA_OLD = pz.Channel.SMS, pz.Channel.VOICE, pz.Channel.WA_OLD
NUMBER = pz.PhoneNumber(ddi="55", phone="44999999999")


def answer(clock: pz.FakeClock, **wire: Any) -> pz.Availability:
    return decode_availability(
        wire, number=NUMBER, observed_at=clock.now(), observed_monotonic=clock.monotonic()
    )


def waits(
    clock: pz.FakeClock, sms: float, voice: float, wa_old: float, **more: Any
) -> pz.Availability:
    wire = {
        "available": True,
        "smsWaitSeconds": sms,
        "voiceWaitSeconds": voice,
        "waOldWaitSeconds": wa_old,
        "waOldEligible": True,
        **more,
    }
    return answer(clock, **wire)


def test_ready_now(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(clock=clock).plan(waits(clock, 0, 0, 0))
    assert plan.outcome is pz.PlanOutcome.READY
    assert plan.next_channel() is SMS  # a tie, broken by preference
    assert plan.channels == (SMS, VOICE)
    assert plan.ready_in(SMS) == 0.0 and plan.is_ready(VOICE) and not plan.is_ready(WA_OLD)


def test_wait_picks_the_earliest_channel(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(clock=clock).plan(waits(clock, 120, 30, 0))
    assert plan.outcome is pz.PlanOutcome.WAIT
    assert plan.next_channel() is VOICE and plan.channels == (VOICE, SMS)
    assert plan.ready_in(VOICE) == 30.0 and plan.ready_in(SMS) == 120.0
    assert plan.window(SMS).ready_at == clock.now() + timedelta(seconds=120)
    clock.advance(31)
    assert plan.ready_in(VOICE) == 0.0 and plan.ready_in(SMS) == 89.0


def test_preference_breaks_ties(clock: pz.FakeClock) -> None:
    planner = pz.RegistrationPlanner(preference=(VOICE, SMS), clock=clock)
    assert planner.plan(waits(clock, 10, 10, 0)).next_channel() is VOICE
    assert planner.plan(waits(clock, 9, 10, 0)).next_channel() is SMS  # earliest wins first


def test_wa_old_needs_eligibility_and_an_explicit_allow(clock: pz.FakeClock) -> None:
    off = pz.RegistrationPlanner(clock=clock).plan(waits(clock, 60, 60, 0))
    assert off.next_channel() is SMS
    assert off.window(WA_OLD).why_not == "allow_wa_old is off"
    with pytest.raises(pz.NoChannelError, match="wa_old cannot be used: allow_wa_old is off"):
        off.ready_in(WA_OLD)

    planner = pz.RegistrationPlanner(allow_wa_old=True, clock=clock)
    assert planner.preference == (SMS, VOICE, WA_OLD)
    assert planner.plan(waits(clock, 60, 60, 0)).next_channel() is WA_OLD
    not_eligible = planner.plan(waits(clock, 60, 60, 0, waOldEligible=False))
    assert not_eligible.next_channel() is SMS
    assert "not eligible" in (not_eligible.window(WA_OLD).why_not or "")


def test_voice_only_preference(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(preference=("voice",), clock=clock).plan(waits(clock, 0, 50, 0))
    assert plan.channels == (VOICE,) and plan.outcome is pz.PlanOutcome.WAIT
    assert plan.window(SMS).why_not == "not in the preference"


@pytest.mark.parametrize(
    ("wire", "outcome"),
    [
        ({"available": False, "blocked": True, "appealToken": "Ae0B_x"}, pz.PlanOutcome.APPEAL),
        ({"available": False, "blocked": True}, pz.PlanOutcome.BLOCKED),
        (
            {"available": True, "blocked": True},
            pz.PlanOutcome.BLOCKED,
        ),  # blocked is the stronger word
        ({"available": False, "reason": "in use elsewhere"}, pz.PlanOutcome.UNAVAILABLE),
        ({}, pz.PlanOutcome.UNAVAILABLE),
    ],
)
def test_outcomes_that_stop(
    clock: pz.FakeClock, wire: dict[str, Any], outcome: pz.PlanOutcome
) -> None:
    plan = pz.RegistrationPlanner(clock=clock).plan(answer(clock, **wire))
    assert plan.outcome is outcome
    assert plan.next_channel() is None and plan.channels == ()
    assert all(not w.eligible for w in plan.windows)
    assert plan.appeal_token == wire.get("appealToken") and plan.reason == wire.get("reason")


def test_no_channel_when_only_an_ineligible_wa_old_is_wanted(clock: pz.FakeClock) -> None:
    planner = pz.RegistrationPlanner(preference=(WA_OLD,), allow_wa_old=True, clock=clock)
    plan = planner.plan(waits(clock, 0, 0, 0, waOldEligible=False))
    assert plan.outcome is pz.PlanOutcome.NO_CHANNEL and plan.next_channel() is None


@pytest.mark.parametrize(
    ("sms", "voice", "wa_old", "eligible", "allow"),
    list(itertools.product([0, 5, 60], [0, 5, 60], [0, 5], [True, False], [True, False])),
)
def test_every_channel_combination(
    clock: pz.FakeClock, sms: float, voice: float, wa_old: float, eligible: bool, allow: bool
) -> None:
    planner = pz.RegistrationPlanner(allow_wa_old=allow, clock=clock)
    plan = planner.plan(waits(clock, sms, voice, wa_old, waOldEligible=eligible))
    usable = {SMS: sms, VOICE: voice}
    if allow and eligible:
        usable[WA_OLD] = wa_old
    order = sorted(usable, key=lambda c: (usable[c], planner.preference.index(c)))
    assert plan.channels == tuple(order)
    assert plan.next_channel() is order[0]
    assert plan.outcome is (pz.PlanOutcome.READY if usable[order[0]] == 0 else pz.PlanOutcome.WAIT)
    for channel, seconds in usable.items():
        assert plan.ready_in(channel) == seconds


def test_margin_is_added_to_every_wait(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(margin=2.5, clock=clock).plan(waits(clock, 0, 10, 0))
    assert plan.outcome is pz.PlanOutcome.WAIT
    assert plan.ready_in(SMS) == 2.5 and plan.ready_in(VOICE) == 12.5
    assert plan.window(SMS).wait_seconds == 0.0  # the server's figure is kept as given


def test_ready_at_counts_from_when_the_answer_was_received(clock: pz.FakeClock) -> None:
    availability = waits(clock, 30, 30, 0)
    clock.advance(10)  # the plan is made later than the answer arrived
    plan = pz.RegistrationPlanner(clock=clock).plan(availability)
    assert plan.ready_in(SMS) == 20.0


def test_negative_waits_count_as_zero(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(clock=clock).plan(waits(clock, -5, 3, 0))
    assert plan.ready_in(SMS) == 0.0 and plan.outcome is pz.PlanOutcome.READY


async def test_wait_until_ready_returns_at_never_before(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(clock=clock).plan(waits(clock, 90, 200, 0))
    await plan.wait_until_ready(plan.next_channel())
    assert clock.monotonic() == 90.0 and clock.sleeps == [90.0]
    assert await plan.wait_for_next() is SMS and clock.monotonic() == 90.0
    await plan.wait_until_ready(VOICE)
    assert clock.monotonic() == 200.0


class EarlyWaker(pz.FakeClock):
    """A clock whose sleeps wake early (as event loops may) and whose wall clock jumps."""

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds * 0.5)
        self.jump_wall(+3600)  # the wall clock leaps an hour forward each time
        await asyncio.sleep(0)


async def test_never_early_even_with_early_wakeups_and_wall_clock_jumps() -> None:
    clock = EarlyWaker()
    plan = pz.RegistrationPlanner(clock=clock).plan(waits(clock, 100, 100, 0))
    channel = await plan.wait_for_next()
    assert channel is SMS and clock.monotonic() >= 100.0
    assert len(clock.sleeps) > 5  # it kept checking the monotonic clock


async def test_wall_clock_jumping_back_does_not_delay_forever() -> None:
    clock = pz.FakeClock()
    plan = pz.RegistrationPlanner(clock=clock).plan(waits(clock, 10, 10, 0))
    clock.jump_wall(-86400)
    await plan.wait_until_ready(SMS)
    assert clock.monotonic() == 10.0


async def test_waits_on_the_real_clock_for_a_short_while() -> None:
    clock = pz.SystemClock()
    availability = decode_availability(
        {"available": True, "smsWaitSeconds": 0.05},
        number=NUMBER,
        observed_at=clock.now(),
        observed_monotonic=clock.monotonic(),
    )
    plan = pz.RegistrationPlanner().plan(availability)
    ready = plan.window(SMS).ready_at_monotonic
    await plan.wait_until_ready(SMS)
    assert clock.monotonic() >= ready


async def test_waiting_for_nothing_raises(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(clock=clock).plan(answer(clock, available=False))
    with pytest.raises(pz.NoChannelError, match="outcome: unavailable"):
        await plan.wait_until_ready(plan.next_channel())
    with pytest.raises(pz.NoChannelError):
        await plan.wait_for_next()
    with pytest.raises(LookupError):
        plan.ready_in(SMS)


@pytest.mark.parametrize(
    ("wire", "said"),
    [
        (
            {"available": True, "smsWaitSeconds": 0, "voiceWaitSeconds": 0},
            "no channel was given for +5544999999999 (outcome: ready): name one; the next is "
            "sms (open now), or call wait_for_next()",
        ),
        (
            {"available": True, "smsWaitSeconds": 120, "voiceWaitSeconds": 30},
            "no channel was given for +5544999999999 (outcome: wait): name one; the next is "
            "voice (opens in 30 s), or call wait_for_next()",
        ),
        (
            {"available": False, "blocked": True, "appealToken": "Ae0B_x"},
            "no channel can be used for +5544999999999 (outcome: appeal)",
        ),
        (
            {"available": False, "blocked": True},
            "no channel can be used for +5544999999999 (outcome: blocked)",
        ),
        (
            {"available": False, "reason": "in use elsewhere"},
            "no channel can be used for +5544999999999 (outcome: unavailable: in use elsewhere)",
        ),
    ],
)
async def test_waiting_for_no_channel_says_why_for_each_outcome(
    clock: pz.FakeClock, wire: dict[str, Any], said: str
) -> None:
    plan = pz.RegistrationPlanner(clock=clock).plan(answer(clock, **wire))
    with pytest.raises(pz.NoChannelError) as raised:
        await plan.wait_until_ready(None)
    assert str(raised.value) == said


async def test_a_wait_under_a_second_is_said_as_one_second_not_zero(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(clock=clock).plan(
        answer(clock, available=True, smsWaitSeconds=30, voiceWaitSeconds=90)
    )
    clock.advance(29.6)
    with pytest.raises(pz.NoChannelError, match=r"the next is sms \(opens in 1 s\)"):
        await plan.wait_until_ready(None)


async def test_waiting_for_no_channel_after_the_planning_ends_says_so(
    clock: pz.FakeClock,
) -> None:
    planner = pz.RegistrationPlanner(preference=(WA_OLD,), allow_wa_old=True, clock=clock)
    none = planner.plan(waits(clock, 0, 0, 0, waOldEligible=False))
    with pytest.raises(pz.NoChannelError, match=r"can be used .*\(outcome: no_channel\)$"):
        await none.wait_until_ready(None)
    plan = pz.RegistrationPlanner(clock=clock).plan(waits(clock, 0, 0, 0))
    blocked = plan.after_code_request(code_request(clock, SMS, success=False, blocked=True))
    with pytest.raises(pz.NoChannelError, match=r"\(outcome: blocked_at_code_request\)$"):
        await blocked.wait_until_ready(None)


def test_an_answer_from_another_clock_is_placed_by_the_wall_clock(clock: pz.FakeClock) -> None:
    availability = decode_availability(
        {"available": True, "smsWaitSeconds": 60},
        number=NUMBER,
        observed_at=clock.now(),
        observed_monotonic=None,
    )
    clock.advance(15)
    plan = pz.RegistrationPlanner(clock=clock).plan(availability)
    assert plan.ready_in(SMS) == 45.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preference": ()}, "at least one"),
        ({"preference": (SMS, SMS)}, "twice"),
        ({"preference": (WA_OLD,)}, "allow_wa_old=True"),
        ({"preference": ("fax",)}, "'fax' is not a valid Channel"),
        ({"margin": -1}, "margin"),
        ({"margin": float("inf")}, "margin"),
    ],
)
def test_planner_validates(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pz.RegistrationPlanner(**kwargs)


# -- storage -----------------------------------------------------------------------


def test_to_dict_from_dict_round_trip_in_another_process(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(allow_wa_old=True, clock=clock).plan(waits(clock, 60, 120, 30))
    stored = json.loads(json.dumps(plan.to_dict()))
    assert stored["version"] == 1 and stored["next_channel"] == "wa_old"
    assert stored["windows"][0] == {
        "channel": "sms",
        "eligible": True,
        "wait_seconds": 60.0,
        "ready_at": "2026-01-01T00:01:00+00:00",
        "why_not": None,
    }
    # "Another process": a fresh clock whose monotonic zero is elsewhere, 20 s later.
    later = pz.FakeClock(start=clock.now() + timedelta(seconds=20))
    later.advance(1000)
    later.jump_wall(-1000)
    resumed = pz.RegistrationPlan.from_dict(stored, clock=later)
    assert resumed == plan
    assert resumed.ready_in(WA_OLD) == 10.0 and resumed.ready_in(SMS) == 40.0
    assert resumed.to_dict() == plan.to_dict()


def test_from_dict_of_a_stopped_plan(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(clock=clock).plan(
        answer(clock, available=False, blocked=True, appealToken="Ae0B_x")
    )
    resumed = pz.RegistrationPlan.from_dict(plan.to_dict(), clock=clock)
    assert resumed.outcome is pz.PlanOutcome.APPEAL and resumed.appeal_token == "Ae0B_x"
    assert resumed.to_dict()["next_channel"] is None


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(version=99),
        lambda d: d.pop("windows"),
        lambda d: d.update(outcome="maybe"),
        lambda d: d.update(observed_at="yesterday"),
        lambda d: d.update(observed_at="2026-01-01T00:00:00"),
        lambda d: d.update(observed_at=5),
        lambda d: d["windows"].pop(),
        lambda d: d["windows"][0].update(eligible="yes"),
        lambda d: d["windows"][0].update(channel="fax"),
        lambda d: d.update(ddi="999"),
        lambda d: d.update(reason=["x"]),
        lambda d: d.update(preference=None),
    ],
)
def test_from_dict_refuses_what_is_not_a_plan(clock: pz.FakeClock, change: Any) -> None:
    data = pz.RegistrationPlanner(clock=clock).plan(waits(clock, 1, 2, 3)).to_dict()
    change(data)
    with pytest.raises(pz.PlanDataError, match=r"plan|time|expected|channel"):
        pz.RegistrationPlan.from_dict(data, clock=clock)


# -- following the code requests -------------------------------------------------------------


def code_request(clock: pz.FakeClock, channel: pz.Channel, **wire: Any) -> pz.CodeRequest:
    from plugz_async._models import decode_code_request

    return decode_code_request(
        wire,
        number=NUMBER,
        channel=channel,
        observed_at=clock.now(),
        observed_monotonic=clock.monotonic(),
    )


def test_after_a_code_request_the_new_waits_and_retry_after_apply(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(margin=1.0, clock=clock).plan(waits(clock, 0, 0, 0))
    clock.advance(5)
    sent = code_request(
        clock, SMS, success=True, retryAfter="165", smsWaitSeconds=125, voiceWaitSeconds=125
    )
    after = plan.after_code_request(sent)
    assert after.outcome is pz.PlanOutcome.WAIT
    assert after.ready_in(SMS) == 166.0  # retryAfter wins over the wait, for the channel used
    assert after.ready_in(VOICE) == 126.0
    assert after.next_channel() is VOICE  # SMS is not offered again before its retryAfter
    assert after.window(WA_OLD) == plan.window(WA_OLD)  # nothing said about it: unchanged
    assert after.window(SMS).ready_at == clock.now() + timedelta(seconds=166)


def test_a_refusal_with_retry_after_only_moves_that_channel(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(clock=clock).plan(waits(clock, 0, 10, 0))
    after = plan.after_code_request(code_request(clock, SMS, success=False, retryAfter=30))
    assert after.ready_in(SMS) == 30.0 and after.ready_in(VOICE) == 10.0
    clock.advance(10)
    assert after.after_code_request(code_request(clock, VOICE, success=True)).outcome is (
        pz.PlanOutcome.READY
    )


def test_blocked_at_code_request(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(clock=clock).plan(waits(clock, 0, 0, 0))
    after = plan.after_code_request(code_request(clock, SMS, success=False, blocked=True))
    assert after.outcome is pz.PlanOutcome.BLOCKED_AT_CODE_REQUEST
    assert after.next_channel() is None and after.appeal_token is None
    assert after.window(SMS).why_not == "blocked when a code was requested"
    stored = pz.RegistrationPlan.from_dict(after.to_dict(), clock=clock)
    assert stored.outcome is pz.PlanOutcome.BLOCKED_AT_CODE_REQUEST


def test_a_code_request_from_another_clock_is_placed_by_the_wall_clock(clock: pz.FakeClock) -> None:
    from plugz_async._models import decode_code_request

    plan = pz.RegistrationPlanner(clock=clock).plan(waits(clock, 0, 0, 0))
    request = decode_code_request(
        {"success": True, "retryAfter": 60}, number=NUMBER, channel=SMS, observed_at=clock.now()
    )
    clock.advance(20)
    assert plan.after_code_request(request).ready_in(SMS) == 40.0


def test_the_margin_survives_storage(clock: pz.FakeClock) -> None:
    plan = pz.RegistrationPlanner(margin=2.0, clock=clock).plan(waits(clock, 0, 0, 0))
    resumed = pz.RegistrationPlan.from_dict(plan.to_dict(), clock=clock)
    assert resumed.margin == 2.0
    after = resumed.after_code_request(code_request(clock, SMS, success=True, retryAfter=10))
    assert after.ready_in(SMS) == 12.0
