"""The registration driver against the sandbox, for every test number, on a fake clock, and
the state machine it runs (stored and read back between any two steps).

The fake clock moves the sandbox's clock too, so waits the planner sits out are
waits the sandbox sees pass, and nothing sleeps for real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import CONFIG, a_person

import plugz_async as pz
from plugz_async.sandbox import CAPTCHA_TEXT, CONFIRMATION_CODE, PIN, Reply, Sandbox, running

Kind = pz.EventKind


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


def codes(*answers: str | None) -> Any:
    """A code source that gives these answers in turn (then the right code)."""
    queue = list(answers)
    asked: list[pz.Channel] = []

    async def code(channel: pz.Channel) -> str | None:
        asked.append(channel)
        return queue.pop(0) if queue else CONFIRMATION_CODE

    code.asked = asked  # type: ignore[attr-defined]
    return code


def kinds(registration: pz.Registration) -> list[str]:
    return [event.kind.value for event in registration._history]


async def test_ready_number_connects_by_sms(sb: Sandbox, client: pz.PlugzClient) -> None:
    registration = client.registration("+55 11 90000-0001")
    result = await registration.run(code=codes())
    assert result.outcome is pz.RegistrationOutcome.CONNECTED and result.connected
    assert result.channel is pz.Channel.SMS and registration.result == result
    assert kinds(registration) == [
        "checked",
        "planned",
        "waiting",
        "code_requested",
        "code_confirmed",
        "instance_connected",
        "finished",
    ]
    # The instance's status was asked once, after the code: it said connected at once.
    (status,) = sb.requests(route="status")
    assert status["method"] == "GET" and status["body"] is None
    assert registration.state is not None and registration.state.instance_error is None
    assert repr(registration) == "Registration(number='+5511900000001', state=finished)"


async def test_waits_are_sat_out_before_the_code_request(
    sb: Sandbox, client: pz.PlugzClient, clock: pz.FakeClock
) -> None:
    result = await client.registration("+55 11 90000-0002").run(code=codes())
    assert result.outcome is pz.RegistrationOutcome.CONNECTED and result.channel is pz.Channel.SMS
    assert clock.monotonic() >= 30.0
    # The first request came when SMS had opened: the sandbox never said "too early".
    (request,) = sb.requests(route="request-registration-code")
    assert request["status"] == 200


async def test_the_earliest_channel_goes_first(client: pz.PlugzClient) -> None:
    code = codes()
    result = await client.registration("+55 11 90000-0006").run(code=code)
    assert result.channel is pz.Channel.VOICE and code.asked == [pz.Channel.VOICE]


async def test_no_code_moves_to_the_next_channel_when_it_opens(
    sb: Sandbox, client: pz.PlugzClient, clock: pz.FakeClock
) -> None:
    code = codes(None)  # nothing came by SMS
    registration = client.registration("+55 11 90000-0012")  # waits double per request
    result = await registration.run(code=code)
    assert result.outcome is pz.RegistrationOutcome.CONNECTED and result.channel is pz.Channel.VOICE
    assert code.asked == [pz.Channel.SMS, pz.Channel.VOICE]
    assert "code_timeout" in kinds(registration)
    # After the SMS request the voice wait was 60 s: the driver waited for it.
    assert clock.monotonic() >= 60.0
    assert [r["body"]["method"] for r in sb.requests(route="request-registration-code")] == [
        "sms",
        "voice",
    ]


async def test_no_code_on_any_channel(client: pz.PlugzClient) -> None:
    result = await client.registration("+55 11 90000-0001").run(code=codes(None, None))
    assert result.outcome is pz.RegistrationOutcome.NO_CODE and result.channel is pz.Channel.VOICE


async def test_a_code_that_never_comes_times_out(client: pz.PlugzClient) -> None:
    async def never(channel: pz.Channel) -> str:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    registration = client.registration("+55 11 90000-0003", code_timeout=0.01)
    result = await registration.run(code=never)
    assert result.outcome is pz.RegistrationOutcome.NO_CODE
    assert kinds(registration).count("code_timeout") == 2


async def test_a_wrong_code_may_be_tried_again_bounded(client: pz.PlugzClient) -> None:
    registration = client.registration("+55 11 90000-0001", max_code_attempts=3)
    assert (
        await registration.run(code=codes("000000", "12ab"))
    ).outcome is pz.RegistrationOutcome.CONNECTED
    assert kinds(registration).count("code_rejected") == 2
    rejected = client.registration("+55 11 90000-0001", max_code_attempts=2)
    result = await rejected.run(code=codes("000000", "111111"))
    assert result.outcome is pz.RegistrationOutcome.CODE_REJECTED


async def test_an_expired_code_is_rejected(client: pz.PlugzClient, clock: pz.FakeClock) -> None:
    async def slow_code(channel: pz.Channel) -> str:
        clock.advance(61)  # the user took a minute: the code lived 60 s
        return CONFIRMATION_CODE

    result = await client.registration("+55 11 90000-0011").run(code=slow_code)
    assert result.outcome is pz.RegistrationOutcome.CODE_REJECTED


@pytest.mark.parametrize(
    ("number", "outcome"),
    [
        ("+55 11 90000-0004", pz.RegistrationOutcome.APPEAL),
        ("+55 11 90000-0005", pz.RegistrationOutcome.UNAVAILABLE),
        ("+55 11 90000-0007", pz.RegistrationOutcome.BLOCKED_AT_CODE_REQUEST),
    ],
)
async def test_endings_that_stop_early(
    sb: Sandbox, client: pz.PlugzClient, number: str, outcome: pz.RegistrationOutcome
) -> None:
    result = await client.registration(number).run(code=codes())
    assert result.outcome is outcome and not result.connected
    if outcome is pz.RegistrationOutcome.UNAVAILABLE:
        assert result.reason == "number is registered on another device"
        assert sb.requests(route="request-registration-code") == []


async def test_blocked_with_no_token_at_the_check(sb: Sandbox, client: pz.PlugzClient) -> None:
    sb.then(Reply(json={"available": False, "blocked": True}), route="registration-available")
    result = await client.registration("+55 11 90000-0001").run(code=codes())
    assert result.outcome is pz.RegistrationOutcome.BLOCKED and result.appeal_token is None


async def test_banned_then_appeal(client: pz.PlugzClient) -> None:
    registration = client.registration("+55 11 90000-0004")
    result = await registration.run(code=codes())
    assert (
        result.outcome is pz.RegistrationOutcome.APPEAL
        and result.appeal_token == "Ae0B_sandbox-appeal-token"
    )
    unban = await registration.appeal("This number belongs to our support line.")
    assert unban.success and unban.status is pz.UnbanStatus.UNBANNED


async def test_captcha_is_solved_from_the_png(client: pz.PlugzClient) -> None:
    images: list[bytes] = []

    async def solve(png: bytes) -> str:
        images.append(png)
        return CAPTCHA_TEXT if len(images) > 1 else "wrong"

    registration = client.registration("+55 11 90000-0008")
    result = await registration.run(code=codes(), captcha=solve)
    assert result.outcome is pz.RegistrationOutcome.CONNECTED
    assert all(png.startswith(b"\x89PNG") for png in images) and len(images) == 2
    assert kinds(registration).count("captcha_answered") == 2


@pytest.mark.parametrize(
    ("solver", "outcome"),
    [
        (None, pz.RegistrationOutcome.CAPTCHA_REQUIRED),
        ("wrong", pz.RegistrationOutcome.CAPTCHA_FAILED),
        ("", pz.RegistrationOutcome.CAPTCHA_FAILED),
    ],
)
async def test_captcha_endings(
    client: pz.PlugzClient, solver: str | None, outcome: pz.RegistrationOutcome
) -> None:
    async def solve(png: bytes) -> str:
        assert solver is not None
        return solver

    result = await client.registration("+55 11 90000-0008").run(
        code=codes(), captcha=None if solver is None else solve
    )
    assert result.outcome is outcome


async def test_pin_flow_and_its_endings(client: pz.PlugzClient) -> None:
    pins = iter(["12", "000000", PIN])

    async def pin() -> str:
        return next(pins)

    registration = client.registration("+55 11 90000-0009")
    assert (
        await registration.run(code=codes(), pin=pin)
    ).outcome is pz.RegistrationOutcome.CONNECTED
    assert kinds(registration).count("pin_rejected") == 2 and "pin_confirmed" in kinds(registration)
    assert (await client.registration("+55 11 90000-0009").run(code=codes())).outcome is (
        pz.RegistrationOutcome.PIN_REQUIRED
    )

    async def wrong() -> str:
        return "000000"

    result = await client.registration("+55 11 90000-0009", max_pin_attempts=2).run(
        code=codes(), pin=wrong
    )
    assert result.outcome is pz.RegistrationOutcome.PIN_REJECTED


async def test_device_transfer_flow_and_its_endings(
    sb: Sandbox, client: pz.PlugzClient, clock: pz.FakeClock
) -> None:
    approved: list[bool] = []

    async def approve() -> None:
        approved.append(True)

    registration = client.registration("+55 11 90000-0010", device_poll_interval=2.0)
    assert (await registration.run(code=codes(), device_confirmed=approve)).connected
    assert approved == [True] and clock.sleeps[-1] == 2.0  # polled twice, 2 s apart
    assert "device_confirmed" in kinds(registration)
    result = await client.registration("+55 11 90000-0010").run(code=codes())
    assert result.outcome is pz.RegistrationOutcome.DEVICE_CONFIRMATION_REQUIRED
    sb.then(*[Reply(400, json={"error": "not approved"})] * 20, route="device-transfer-confirmed")
    result = await client.registration(
        "+55 11 90000-0010", device_timeout=10.0, device_poll_interval=3.0
    ).run(code=codes(), device_confirmed=approve)
    assert result.outcome is pz.RegistrationOutcome.DEVICE_NOT_CONFIRMED


async def test_no_channel_when_the_planner_has_none(
    client: pz.PlugzClient, clock: pz.FakeClock
) -> None:
    planner = pz.RegistrationPlanner(preference=("wa_old",), allow_wa_old=True, clock=clock)
    result = await client.registration("+55 11 90000-0003", planner=planner).run(code=codes())
    assert result.outcome is pz.RegistrationOutcome.NO_CHANNEL


async def test_a_channel_refused_for_good_moves_on(sb: Sandbox, client: pz.PlugzClient) -> None:
    sb.then(
        Reply(json={"success": False, "reason": "carrier refused"}),
        route="request-registration-code",
    )
    result = await client.registration("+55 11 90000-0001").run(code=codes())
    assert result.outcome is pz.RegistrationOutcome.CONNECTED and result.channel is pz.Channel.VOICE


async def test_too_early_answers_are_waited_out(
    sb: Sandbox, client: pz.PlugzClient, clock: pz.FakeClock
) -> None:
    sb.then(Reply(json={"success": False, "retryAfter": "40"}), route="request-registration-code")
    result = await client.registration("+55 11 90000-0001").run(code=codes())
    assert result.connected and result.channel is pz.Channel.SMS
    assert clock.monotonic() >= 40.0  # SMS again, once its retryAfter had passed
    assert [r["status"] for r in sb.requests(route="request-registration-code")] == [200, 200]


async def test_events_stream_and_hook(client: pz.PlugzClient) -> None:
    heard: list[str] = []
    awaited: list[str] = []

    async def hook(event: pz.RegistrationEvent) -> None:
        awaited.append(event.kind.value)

    registration = client.registration(
        "+55 11 90000-0002", on_event=lambda e: heard.append(e.kind.value)
    )
    streamed: list[pz.RegistrationEvent] = []

    async def listen() -> None:
        async for event in registration.events():
            streamed.append(event)

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0)
    await registration.run(code=codes())
    await listener
    assert [e.kind.value for e in streamed] == heard == kinds(registration)
    waiting = next(e for e in streamed if e.kind is Kind.WAITING)
    assert waiting.channel is pz.Channel.SMS and waiting.wait_seconds == 30.0
    # A late listener still hears everything, then the stream ends.
    assert [e.kind async for e in registration.events()][-1] is Kind.FINISHED
    hooked = client.registration("+55 11 90000-0001", on_event=hook)
    await hooked.run(code=codes())
    assert awaited[-1] == "finished"


async def test_a_registration_runs_once_and_appeals_only_after_a_ban(
    client: pz.PlugzClient,
) -> None:
    registration = client.registration("+55 11 90000-0001")
    with pytest.raises(pz.RegistrationStateError, match="follows a run that ended banned"):
        await registration.appeal("please")
    await registration.run(code=codes())
    with pytest.raises(pz.RegistrationStateError, match="runs once"):
        await registration.run(code=codes())
    with pytest.raises(pz.InvalidArgument):
        client.registration("+55 11 90000-0001", max_code_attempts=0)
    with pytest.raises(pz.InvalidPhoneNumber):
        client.registration("12")


async def test_cancelling_while_waiting_leaves_nothing_open(sb: Sandbox) -> None:
    async with sb.new_client() as client:  # the real clock: SMS is 30 s away
        events: list[pz.RegistrationEvent] = []
        waiting = asyncio.Event()

        def hear(event: pz.RegistrationEvent) -> None:
            events.append(event)
            if event.kind is Kind.WAITING:
                waiting.set()

        registration = client.registration("+55 11 90000-0002", on_event=hear)
        task = asyncio.create_task(registration.run(code=codes()))
        await waiting.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [e async for e in registration.events()] == events  # the stream ended too
        assert sb.requests(route="request-registration-code") == []


# -- the state machine underneath: stored and read back between any two steps ---------------
#
# The queue (tests/test_queue*.py) runs the same machine one step per job; here a runner that
# stops and resumes between every step through JSON must end exactly where run() does.

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
    "+55 11 90000-0013": "not_connected",
}


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
            state = machine.device_approved(state)
        elif state.step is Step.POLL_DEVICE:
            state = machine.device_polled(state, await client.confirm_device_transfer())
            if not state.done:
                await clock.sleep(2.0)
        else:
            assert state.step is Step.CONFIRM_CONNECTED
            state = machine.status_checked(state, await client.instance_status())
            if not state.done:
                await clock.sleep(1.0)
    return through_json(state, clock)


async def test_a_runner_that_stops_between_steps_ends_like_the_in_process_driver(
    client: pz.PlugzClient, clock: pz.FakeClock, sb: Sandbox
) -> None:
    for number, outcome in NUMBERS.items():
        sb.reset()
        stepped = await step_by_step(client, clock, number)
        sb.reset()
        registration = client.registration(number)
        result = await registration.run(**a_person(CONFIRMATION_CODE))
        assert result.outcome.value == outcome, number
        assert stepped.result().outcome is result.outcome, number
        assert stepped.result().channel is result.channel, number
        assert stepped.result().appeal_token == result.appeal_token, number
        assert stepped.result().instance_error == result.instance_error, number
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


@pytest.mark.parametrize(
    ("number", "ending"),
    [("+55 11 90000-0008", "captcha_failed"), ("+55 11 90000-0009", "pin_rejected")],
)
async def test_a_callable_that_answers_none_gave_a_refused_answer(
    client: pz.PlugzClient, number: str, ending: str
) -> None:
    """None from ``captcha()`` or ``pin()`` is not sent and counts as a refused answer (as
    docs/flow.md says); only a missing callable means "no way to answer"."""

    async def nothing(*_: object) -> None:
        return None

    result = await client.registration(number).run(
        **{**a_person(CONFIRMATION_CODE), "captcha": nothing, "pin": nothing}
    )
    assert result.outcome.value == ending
