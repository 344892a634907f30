""" "Connected" checked against the instance: after the last step, a bounded poll of its status.

The driver against the sandbox on a fake clock (the never-connects test number, an instance
that connects late, the settings), the machine's transition alone on an injected clock, and
states stored by the previous version, which must still load and go on.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from helpers import a_person
from test_flow import client as client  # the fixtures: the sandbox, its clock, a client
from test_flow import clock as clock
from test_flow import sb as sb

import plugz_async as pz
from plugz_async.sandbox import CONFIRMATION_CODE, Reply, Sandbox

NEVER = "+55 11 90000-0013"
READY = "+55 11 90000-0001"
RESTORE = "You need to restore the session."
NOT_YET = {"connected": False, "error": "You are not connected.", "smartphoneConnected": False}

Kind = pz.EventKind
Outcome = pz.RegistrationOutcome
Step = pz.RegistrationStep


def kinds(registration: pz.Registration) -> list[str]:
    return [event.kind.value for event in registration._history]


# -- the driver, against the sandbox -----------------------------------------------------------


async def test_an_instance_that_never_connects_ends_not_connected_with_what_it_said(
    sb: Sandbox, client: pz.PlugzClient, clock: pz.FakeClock
) -> None:
    registration = client.registration(NEVER)
    started = clock.monotonic()
    result = await registration.run(**a_person(CONFIRMATION_CODE))
    assert result.outcome is Outcome.NOT_CONNECTED and not result.connected
    assert result.instance_error == RESTORE and result.channel is pz.Channel.SMS
    assert kinds(registration)[-4:] == [
        "code_requested",
        "code_confirmed",
        "instance_not_connected",
        "finished",
    ]
    said = registration._history[-2]
    assert said.message == f"the instance is not connected after 5 s: {RESTORE}"
    assert isinstance(said.answer, pz.InstanceStatus) and said.answer.error == RESTORE
    # Asked at once, then every second for the 5 s the defaults give: six questions, and
    # no more sleeping than that.
    assert len(sb.requests(route="status")) == 6
    assert clock.sleeps[-5:] == [1.0] * 5 and clock.monotonic() - started == 5.0
    assert registration.state is not None and registration.state.instance_error == RESTORE
    assert result.to_dict() == {
        "number": "+5511900000013",
        "outcome": "not_connected",
        "connected": False,
        "channel": "sms",
        "appeal_token": None,
        "reason": None,
        "instance_error": RESTORE,
    }


async def test_an_instance_that_connects_late_is_waited_for(
    sb: Sandbox, client: pz.PlugzClient
) -> None:
    sb.then(Reply(json=NOT_YET), Reply(json={**NOT_YET, "error": RESTORE}), route="status")
    registration = client.registration(READY, connected_poll_interval=0.5)
    result = await registration.run(**a_person(CONFIRMATION_CODE))
    assert result.outcome is Outcome.CONNECTED and result.instance_error is None
    assert len(sb.requests(route="status")) == 3  # not yet, not yet, connected
    assert kinds(registration)[-2:] == ["instance_connected", "finished"]
    assert registration.state is not None and registration.state.instance_error is None


async def test_the_bound_and_the_interval_are_settings(
    sb: Sandbox, client: pz.PlugzClient, clock: pz.FakeClock
) -> None:
    registration = client.registration(NEVER, connected_timeout=2.0, connected_poll_interval=0.25)
    result = await registration.run(**a_person(CONFIRMATION_CODE))
    assert result.outcome is Outcome.NOT_CONNECTED
    assert len(sb.requests(route="status")) == 9  # at 0, 0.25, ... 2.0 s
    assert registration._history[-2].message.startswith("the instance is not connected after 2 s")
    sb.reset()
    once = client.registration(NEVER, connected_timeout=0)
    result = await once.run(**a_person(CONFIRMATION_CODE))
    assert result.outcome is Outcome.NOT_CONNECTED and result.instance_error == RESTORE
    assert len(sb.requests(route="status")) == 1
    assert once._history[-2].message == f"the instance is not connected when asked: {RESTORE}"


async def test_without_a_bound_the_last_step_is_taken_as_connected(
    sb: Sandbox, client: pz.PlugzClient
) -> None:
    registration = client.registration(NEVER, connected_timeout=None)
    result = await registration.run(**a_person(CONFIRMATION_CODE))
    assert result.outcome is Outcome.CONNECTED
    assert sb.requests(route="status") == [] and "instance_connected" not in kinds(registration)


@pytest.mark.parametrize("number", ["+55 11 90000-0009", "+55 11 90000-0010"])
async def test_the_pin_and_the_transfer_are_checked_too(
    sb: Sandbox, client: pz.PlugzClient, number: str
) -> None:
    registration = client.registration(number, device_poll_interval=1.0)
    result = await registration.run(**a_person(CONFIRMATION_CODE))
    assert result.outcome is Outcome.CONNECTED
    assert kinds(registration)[-3:][1:] == ["instance_connected", "finished"]
    assert len(sb.requests(route="status")) == 1


async def test_a_status_that_fails_for_good_is_raised_as_the_client_raises_it(
    sb: Sandbox, client: pz.PlugzClient
) -> None:
    sb.then(Reply(405, json={"error": "Method Not Allowed"}), route="status")
    with pytest.raises(pz.MethodNotAllowedError, match="status: HTTP 405"):
        await client.registration(READY).run(**a_person(CONFIRMATION_CODE))


async def test_a_status_that_fails_for_a_moment_is_asked_again(
    sb: Sandbox, client: pz.PlugzClient
) -> None:
    sb.then(Reply(502, body="<html>bad gateway</html>"), Reply(drop=True), route="status")
    result = await client.registration(READY).run(**a_person(CONFIRMATION_CODE))
    assert result.connected and len(sb.requests(route="status")) == 3  # retried: it only asks


async def test_a_poll_interval_of_nothing_is_refused(client: pz.PlugzClient) -> None:
    for wrong in (0, -1.0, float("nan")):
        with pytest.raises(pz.InvalidArgument, match="connected_poll_interval must be more"):
            client.registration(READY, connected_poll_interval=wrong)


def test_a_negative_bound_is_refused(clock: pz.FakeClock) -> None:
    planner = pz.RegistrationPlanner(clock=clock)
    for wrong in (-1.0, float("nan"), "5", True):
        with pytest.raises(pz.InvalidArgument, match="connected_timeout must be 0 or more"):
            pz.RegistrationMachine(planner=planner, connected_timeout=wrong)  # type: ignore[arg-type]


def test_a_bound_past_a_day_is_refused_before_any_request(clock: pz.FakeClock) -> None:
    # inf would fail only once the code was confirmed (no date that far): refused now.
    planner = pz.RegistrationPlanner(clock=clock)
    for name in ("connected_timeout", "device_timeout"):
        for wrong in (float("inf"), 86_401.0, 1e300):
            options: dict[str, Any] = {name: wrong}
            with pytest.raises(pz.InvalidArgument, match=f"{name} must be 86400 seconds"):
                pz.RegistrationMachine(planner=planner, **options)
    pz.RegistrationMachine(planner=planner, connected_timeout=86_400, device_timeout=86_400)


async def test_a_poll_interval_past_a_day_is_refused(client: pz.PlugzClient) -> None:
    with pytest.raises(pz.InvalidArgument, match="connected_poll_interval must be 86400"):
        client.registration(READY, connected_poll_interval=float("inf"))


@pytest.mark.parametrize("option", ["--connected-timeout", "--connected-poll-interval"])
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_the_worker_command_refuses_a_bound_that_is_no_finite_number(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("saq")
    from plugz_async.cli import EXIT_USAGE, main

    with pytest.raises(SystemExit) as exited:
        main(["worker", f"{option}={value}"])
    assert exited.value.code == EXIT_USAGE
    assert f"'{value}' is not a finite number" in capsys.readouterr().err


# -- the machine alone, on an injected clock ----------------------------------------------------


def status(connected: bool, error: str | None = None) -> pz.InstanceStatus:
    return pz.InstanceStatus(
        connected=connected, error=error, observed_at=pz.FakeClock().now(), raw={}
    )


def at_the_check(machine: pz.RegistrationMachine) -> pz.RegistrationState:
    """A registration whose code was just confirmed: it asks the instance now."""
    number = pz.PhoneNumber.parse(READY)
    state = pz.RegistrationState(number=number, step=Step.CONFIRM_CODE, channel=pz.Channel.SMS)
    confirmation = pz.CodeConfirmation(success=True, observed_at=machine.clock.now())
    return machine.code_confirmed(state, confirmation)


def test_the_machine_asks_until_its_deadline_then_ends_not_connected() -> None:
    clock = pz.FakeClock()
    machine = pz.RegistrationMachine(
        planner=pz.RegistrationPlanner(clock=clock), connected_timeout=3.0
    )
    state = at_the_check(machine)
    assert state.step is Step.CONFIRM_CONNECTED and not state.done
    assert state.connected_deadline == clock.now() + timedelta(seconds=3)
    assert state.events[-1].message == "code confirmed"
    for _ in range(3):
        state = machine.status_checked(state, status(False, "You are not connected."))
        assert (
            state.step is Step.CONFIRM_CONNECTED
            and state.instance_error == "You are not connected."
        )
        clock.advance(1.0)
    assert len(state.events) == 1  # code_confirmed: no event while it keeps asking
    state = machine.status_checked(state, status(False, RESTORE))
    assert state.done and state.outcome is Outcome.NOT_CONNECTED
    assert state.instance_error == RESTORE and state.result().instance_error == RESTORE
    assert [e.kind for e in state.events[-2:]] == [Kind.INSTANCE_NOT_CONNECTED, Kind.FINISHED]
    with pytest.raises(pz.RegistrationStateError, match="is at done, not confirm_connected"):
        machine.status_checked(state, status(True))


def test_the_machine_ends_connected_as_soon_as_the_instance_says_so() -> None:
    clock = pz.FakeClock()
    machine = pz.RegistrationMachine(planner=pz.RegistrationPlanner(clock=clock))
    state = machine.status_checked(at_the_check(machine), status(False, RESTORE))
    assert state.instance_error == RESTORE
    clock.advance(1.0)
    state = machine.status_checked(state, status(True, "You are already connected."))
    assert state.outcome is Outcome.CONNECTED and state.instance_error is None
    assert state.result().connected and state.result().instance_error is None
    assert state.events[-2].kind is Kind.INSTANCE_CONNECTED
    assert state.events[-2].message == "the instance is connected"


def test_a_status_with_no_error_text_says_so() -> None:
    clock = pz.FakeClock()
    machine = pz.RegistrationMachine(
        planner=pz.RegistrationPlanner(clock=clock), connected_timeout=0.0
    )
    state = machine.status_checked(at_the_check(machine), status(False))
    assert state.outcome is Outcome.NOT_CONNECTED and state.instance_error is None
    assert state.events[-2].message == (
        "the instance is not connected when asked (its status gave no reason)"
    )


def test_the_pin_and_the_transfer_lead_to_the_check_too() -> None:
    clock = pz.FakeClock()
    machine = pz.RegistrationMachine(planner=pz.RegistrationPlanner(clock=clock))
    number = pz.PhoneNumber.parse(READY)
    pin = pz.RegistrationState(number=number, step=Step.CONFIRM_PIN)
    pin = machine.pin_confirmed(pin, pz.PinConfirmation(success=True, observed_at=clock.now()))
    assert pin.step is Step.CONFIRM_CONNECTED and pin.events[-1].message == "PIN confirmed"
    device = pz.RegistrationState(number=number, step=Step.CONFIRM_DEVICE)
    device = machine.device_approved(device)
    device = machine.device_polled(
        device, pz.DeviceTransfer(confirmed=True, observed_at=clock.now())
    )
    assert device.step is Step.CONFIRM_CONNECTED
    unasked = pz.RegistrationMachine(
        planner=pz.RegistrationPlanner(clock=clock), connected_timeout=None
    )
    assert at_the_check(unasked).outcome is Outcome.CONNECTED


# -- states stored by the previous version -------------------------------------------------------


def older(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as the version before this one stored it: no field of the status check."""
    return {k: v for k, v in data.items() if k not in ("connected_deadline", "instance_error")}


def test_a_state_stored_by_the_previous_version_still_loads_and_goes_on() -> None:
    clock = pz.FakeClock()
    machine = pz.RegistrationMachine(planner=pz.RegistrationPlanner(clock=clock))
    number = pz.PhoneNumber.parse("+55 11 90000-0010")
    polling = machine.device_approved(pz.RegistrationState(number=number, step=Step.CONFIRM_DEVICE))
    stored = json.loads(json.dumps(older(polling.to_dict())))
    assert "instance_error" not in stored and stored["version"] == 1
    loaded = pz.RegistrationState.from_dict(stored, clock=clock)
    assert loaded.step is Step.POLL_DEVICE and loaded.connected_deadline is None
    assert loaded.instance_error is None
    following = machine.device_polled(
        loaded, pz.DeviceTransfer(confirmed=True, observed_at=clock.now())
    )
    assert following.step is Step.CONFIRM_CONNECTED
    # An older registration that ended connected reads back as it was.
    ended = machine.status_checked(following, status(True))
    done = pz.RegistrationState.from_dict(older(ended.to_dict()), clock=clock)
    assert done.outcome is Outcome.CONNECTED and done.result().connected


def test_the_status_check_goes_through_json() -> None:
    clock = pz.FakeClock()
    machine = pz.RegistrationMachine(planner=pz.RegistrationPlanner(clock=clock))
    state = machine.status_checked(at_the_check(machine), status(False, RESTORE))
    data = json.loads(json.dumps(state.to_dict()))
    assert data["instance_error"] == RESTORE and data["step"] == "confirm_connected"
    again = pz.RegistrationState.from_dict(data, clock=clock)
    assert again.connected_deadline == state.connected_deadline
    assert again.instance_error == RESTORE
    with pytest.raises(pz.PlanDataError, match="not a stored registration state"):
        pz.RegistrationState.from_dict({**data, "instance_error": 5}, clock=clock)
