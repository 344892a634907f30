"""A registration, from the availability check to connected: one package.

- ``_events``: what a registration reports (`EventKind`, `RegistrationEvent`) and how it
  ended (`RegistrationOutcome`, `RegistrationResult`).
- ``_state``: where one stands (`RegistrationStep`, `RegistrationState`) and its stored
  form (`RegistrationState.to_dict`, the events' codec).
- ``_machine``: its rules, `RegistrationMachine`'s pure transitions.
- ``_actions``: the one table of what each step does with the API (`ACTIONS`), which
  both runners call: the in-process driver here and the queue's step runner.
- ``_driver``: `Registration`, the in-process driver (``client.registration()``).
"""

from ._actions import ACTIONS, APPROVED, Action, StepContext
from ._driver import Registration
from ._events import EventKind, RegistrationEvent, RegistrationOutcome, RegistrationResult
from ._machine import (
    CONNECTED_POLL_INTERVAL,
    CONNECTED_TIMEOUT,
    RegistrationMachine,
    describe_code_request,
    poll_interval,
)
from ._state import RegistrationState, RegistrationStep, event_from_dict, event_to_dict

__all__ = [
    "ACTIONS",
    "APPROVED",
    "CONNECTED_POLL_INTERVAL",
    "CONNECTED_TIMEOUT",
    "Action",
    "EventKind",
    "Registration",
    "RegistrationEvent",
    "RegistrationMachine",
    "RegistrationOutcome",
    "RegistrationResult",
    "RegistrationState",
    "RegistrationStep",
    "StepContext",
    "describe_code_request",
    "event_from_dict",
    "event_to_dict",
    "poll_interval",
]
