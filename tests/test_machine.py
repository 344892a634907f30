"""The registration's state machine: its state survives a trip through JSON at every step,
and a runner that stops and resumes between every step ends where the in-process driver does.

The in-process driver's own behaviour is tests/test_flow.py; the queue's is tests/test_queue*.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from helpers import CONFIG

import plugz_async as pz
from plugz_async.sandbox import CAPTCHA_TEXT, CONFIRMATION_CODE, PIN, Sandbox, running

Step = pz.RegistrationStep

# One number per scenario that reaches a different part of the machine.
NUMBERS = {
    "+55 11 90000-0001": "connected",
    "+55 11 90000-0002": "connected",
    "+55 11 90000-0004": "appeal",
    "+55 11 90000-0005": "unavailable",
    "+55 11 90000-0006": "connected",
    "+55 11 90000-0007": "blocked_at_code_request",
    "+55 11 90000-0008": "connected",
    "+55 11 90000-0009": "connected",
    "+55 11 90000-0010": "connected",
    "+55 11 90000-0012": "connected",
}


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with running(CONFIG) as sandbox:
        yield sandbox


@pytest.fixture
def clock(sb: Sandbox) -> pz.FakeClock:
    return pz.FakeClock(start=pz.SystemClock().now(), on_advance=sb.advance)


@pytest.fixture
async def client(sb: Sandbox, clock: pz.FakeClock) -> AsyncIterator[pz.PlugzClient]:
    async with sb.new_client(clock=clock, timeout=2.0) as c:
        yield c


def through_json(state: pz.RegistrationState, clock: pz.Clock) -> pz.RegistrationState:
    """The state as another process reads it back."""
    return pz.RegistrationState.from_dict(json.loads(json.dumps(state.to_dict())), clock=clock)


async def step_by_step(
    client: pz.PlugzClient, clock: pz.FakeClock, number: str
) -> pz.RegistrationState:
    """Drive the machine the way the queue does: one step at a time, the state stored and
    read back between steps, the input given by "someone else"."""
    machine = pz.RegistrationMachine(planner=pz.RegistrationPlanner(clock=clock))
    state = machine.start(pz.PhoneNumber.parse(number))
    while not state.done:
        state = through_json(state, clock)
        if state.step is Step.CHECK:
            state = machine.checked(state, await client.check_availability(state.number))
        elif state.step is Step.REQUEST_CODE:
            assert state.plan is not None
            assert state.channel is not None
            await state.plan.wait_until_ready(state.channel)
            state = machine.code_requested(
                state, await client.request_code(state.number, state.channel)
            )
        elif state.step is Step.ANSWER_CAPTCHA:
            assert state.captcha is not None and state.captcha.startswith(b"\x89PNG")
            answer = await client.respond_captcha(CAPTCHA_TEXT)
            state = machine.captcha_answered(state, answer)
        elif state.step is Step.CONFIRM_CODE:
            state = machine.code_confirmed(state, await client.confirm_code(CONFIRMATION_CODE))
        elif state.step is Step.CONFIRM_PIN:
            state = machine.pin_confirmed(state, await client.confirm_pin(PIN))
        elif state.step is Step.CONFIRM_DEVICE:
            state = machine.device_approved(machine.device_waiting(state))
        else:
            state = machine.device_polled(state, await client.confirm_device_transfer())
            if not state.done:
                await clock.sleep(2.0)
    return through_json(state, clock)


async def test_a_runner_that_stops_between_steps_ends_like_the_in_process_driver(
    client: pz.PlugzClient, clock: pz.FakeClock, sb: Sandbox
) -> None:
    for number, outcome in NUMBERS.items():
        sb.reset()
        stepped = await step_by_step(client, clock, number)
        sb.reset()
        registration = client.registration(number)

        async def code(channel: pz.Channel) -> str:
            return CONFIRMATION_CODE

        async def captcha(image: bytes) -> str:
            return CAPTCHA_TEXT

        async def pin() -> str:
            return PIN

        async def approved() -> None:
            return None

        result = await registration.run(code, captcha, pin, approved)
        assert result.outcome.value == outcome, number
        assert stepped.result().outcome is result.outcome, number
        assert stepped.result().channel is result.channel, number
        assert stepped.result().appeal_token == result.appeal_token, number
        in_process = registration.state
        assert in_process is not None
        # The same events, in the same words (times differ: the clock moved on).
        assert [(e.kind, e.message) for e in stepped.events] == [
            (e.kind, e.message) for e in in_process.events
        ], number
        assert [e.kind for e in in_process.events] == [e.kind for e in registration._history]


async def test_the_state_keeps_everything_through_json(
    client: pz.PlugzClient, clock: pz.FakeClock
) -> None:
    machine = pz.RegistrationMachine(planner=pz.RegistrationPlanner(clock=clock))
    state = machine.start(pz.PhoneNumber.parse("+55 11 90000-0008"))
    state = machine.checked(state, await client.check_availability(state.number))
    assert state.plan is not None
    assert state.channel is not None
    state = machine.code_requested(state, await client.request_code(state.number, state.channel))
    assert state.step is Step.ANSWER_CAPTCHA and state.wants == "captcha"
    again = through_json(state, clock)
    for name in ("number", "step", "channel", "tried", "early_requests", "captcha", "outcome"):
        assert getattr(again, name) == getattr(state, name), name
    assert again.availability == state.availability
    assert again.plan is not None
    assert state.plan is not None
    assert again.plan.to_dict() == state.plan.to_dict()
    assert [(e.kind, e.at, e.message, e.channel) for e in again.events] == [
        (e.kind, e.at, e.message, e.channel) for e in state.events
    ]
    # The answers objects stay with the process that received them.
    assert all(e.answer is None for e in again.events)
    assert state.events[0].answer is not None


async def test_transitions_refuse_the_wrong_step(
    client: pz.PlugzClient, clock: pz.FakeClock
) -> None:
    machine = pz.RegistrationMachine(planner=pz.RegistrationPlanner(clock=clock))
    state = machine.start(pz.PhoneNumber.parse("+55 11 90000-0001"))
    with pytest.raises(pz.RegistrationStateError, match="is at check, not confirm_code"):
        machine.code_timed_out(state)
    with pytest.raises(pz.RegistrationStateError, match="not done"):
        state.result()
    with pytest.raises(pz.InvalidArgument, match="needs no input"):
        machine.input_missing(state)
    with pytest.raises(pz.InvalidArgument, match="max_pin_attempts must be at least 1"):
        pz.RegistrationMachine(planner=pz.RegistrationPlanner(clock=clock), max_pin_attempts=0)


async def test_codes_that_never_come_move_to_the_next_channel_then_end_no_code(
    client: pz.PlugzClient, clock: pz.FakeClock
) -> None:
    machine = pz.RegistrationMachine(planner=pz.RegistrationPlanner(clock=clock))
    state = machine.start(pz.PhoneNumber.parse("+55 11 90000-0001"))
    state = machine.checked(state, await client.check_availability(state.number))
    assert state.plan is not None
    channels = list(state.plan.channels)
    for channel in channels:
        assert state.step is Step.REQUEST_CODE and state.channel is channel
        await state.plan.wait_until_ready(channel)
        state = machine.code_requested(state, await client.request_code(state.number, channel))
        state = machine.code_timed_out(through_json(state, clock))
    assert state.done
    assert state.result().outcome is pz.RegistrationOutcome.NO_CODE
    assert state.tried == tuple(channels)


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {"version": 99},
        {"version": 1, "number": "+5511900000001"},
    ],
)
def test_from_dict_refuses_what_is_not_a_stored_state(data: object) -> None:
    with pytest.raises(pz.PlanDataError, match="not a stored registration state"):
        pz.RegistrationState.from_dict(data)  # type: ignore[arg-type]
