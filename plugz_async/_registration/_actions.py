"""What each step of a registration does with the API: one table, two runners.

`ACTIONS` maps each `RegistrationStep` to ``async action(context, state, given) ->
state``: it sends the step's request with ``context.client`` and returns the state
`RegistrationMachine` says follows. ``given`` is what the step needed from a person,
gathered by the runner before the call (the code, the captcha's text, the PIN, or
`APPROVED` for a device transfer); ``None`` when there is none. The in-process
driver (`Registration`) gathers it from its callables; the queue's step runner from
Redis. Around the action each runner does what is its own: the driver waits for the
channel and sleeps between polls; the queue writes the code request's intent first,
claims the step, and stores the state after. A fix to what a step does lands here,
once, and both runners have it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from plugz_async._errors import InvalidArgument

from ._machine import RegistrationMachine
from ._state import RegistrationState, RegistrationStep

if TYPE_CHECKING:  # the client sits below: the actions only call it
    from plugz_async._client import PlugzClient

__all__ = ["ACTIONS", "APPROVED", "Action", "StepContext"]

#: What a runner gives a ``CONFIRM_DEVICE`` step once the transfer may be polled.
APPROVED = "approved"


@attrs.frozen
class StepContext:
    """What an action works with: the registration's rules and the instance's client.

    Attributes:
        machine: the registration's rules.
        client: the client of the registration's instance (``None`` for a step that sends
            nothing: no input came, or a transfer to poll).
        request_timeout: the code request's timeout (``None``: the client's); the queue
            bounds it by the intent's lease.
    """

    machine: RegistrationMachine
    _client: PlugzClient | None
    request_timeout: float | None = None

    @property
    def client(self) -> PlugzClient:
        """The instance's client (a context made for a step that sends nothing has none)."""
        if self._client is None:
            raise RuntimeError("this step was run as one that sends nothing")
        return self._client


Action = Callable[[StepContext, RegistrationState, "str | None"], Awaitable[RegistrationState]]


async def check(ctx: StepContext, state: RegistrationState, given: str | None) -> RegistrationState:
    """Check the number (registration-available) and plan. The form the number goes out
    in is decided here, by the client's ``canonical_numbers``, and kept for every later
    request: a code request in another form would reach a number never checked, and a
    check in another form could not see the wait a code request started."""
    line = state.sends_line(ctx.client.canonical_numbers)
    availability = await ctx.client.check_availability(state.number, canonical=line)
    return ctx.machine.checked(attrs.evolve(state, canonical=line), availability)


async def request_code(
    ctx: StepContext, state: RegistrationState, given: str | None
) -> RegistrationState:
    """Request the code on ``state.channel`` (the runner has waited until it opened)."""
    assert state.channel is not None
    request = await ctx.client.request_code(
        state.number,
        state.channel,
        timeout=ctx.request_timeout,
        canonical=state.sends_line(ctx.client.canonical_numbers),
    )
    return ctx.machine.code_requested(state, request)


@attrs.frozen
class _Input:
    """A step that sends what a person gave: how it is sent, and what follows when none
    was given, when it was refused before sending (not a code...), and when answered."""

    send: Callable[[PlugzClient, str], Awaitable[Any]]
    none: Callable[[RegistrationMachine, RegistrationState], RegistrationState]
    refused: Callable[[RegistrationMachine, RegistrationState, Exception], RegistrationState]
    answered: Callable[[RegistrationMachine, RegistrationState, Any], RegistrationState]

    async def __call__(
        self, ctx: StepContext, state: RegistrationState, given: str | None
    ) -> RegistrationState:
        machine = ctx.machine
        if given is None:
            return self.none(machine, state)
        try:
            answer = await self.send(ctx.client, given)
        except InvalidArgument as error:
            return self.refused(machine, state, error)
        return self.answered(machine, state, answer)


#: Send the captcha's text (none: no way to answer it).
answer_captcha = _Input(
    lambda client, text: client.respond_captcha(text),
    RegistrationMachine.input_missing,
    RegistrationMachine.captcha_invalid,
    RegistrationMachine.captcha_answered,
)
#: Send the code that came on ``state.channel`` (none came: the next channel).
confirm_code = _Input(
    lambda client, text: client.confirm_code(text),
    RegistrationMachine.code_timed_out,
    RegistrationMachine.code_invalid,
    RegistrationMachine.code_confirmed,
)
#: Send the two-step PIN (none: no way to get it).
confirm_pin = _Input(
    lambda client, text: client.confirm_pin(text),
    RegistrationMachine.input_missing,
    RegistrationMachine.pin_invalid,
    RegistrationMachine.pin_confirmed,
)


async def confirm_device(
    ctx: StepContext, state: RegistrationState, given: str | None
) -> RegistrationState:
    """The transfer may be polled once approved (`APPROVED`); none: no way to wait."""
    if given is None:
        return ctx.machine.input_missing(state)
    return ctx.machine.device_approved(state)


async def poll_device(
    ctx: StepContext, state: RegistrationState, given: str | None
) -> RegistrationState:
    """Ask whether the transfer was approved."""
    return ctx.machine.device_polled(state, await ctx.client.confirm_device_transfer())


async def confirm_connected(
    ctx: StepContext, state: RegistrationState, given: str | None
) -> RegistrationState:
    """Ask the instance whether it is connected (it sends no code: safe to ask again)."""
    return ctx.machine.status_checked(state, await ctx.client.instance_status())


#: The one table of what each step does (``DONE`` does nothing).
ACTIONS: Mapping[RegistrationStep, Action] = {
    RegistrationStep.CHECK: check,
    RegistrationStep.REQUEST_CODE: request_code,
    RegistrationStep.ANSWER_CAPTCHA: answer_captcha,
    RegistrationStep.CONFIRM_CODE: confirm_code,
    RegistrationStep.CONFIRM_PIN: confirm_pin,
    RegistrationStep.CONFIRM_DEVICE: confirm_device,
    RegistrationStep.POLL_DEVICE: poll_device,
    RegistrationStep.CONFIRM_CONNECTED: confirm_connected,
}
