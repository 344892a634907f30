"""plugz-async: an asyncio SDK for the PlugzAPI (and Z-API) mobile-registration API.

Check whether a WhatsApp number can be registered, and plan when each
confirmation-code channel (SMS, voice call, the in-app pop-up) may be used::

    import plugz_async as pz

    async with pz.PlugzClient(instance_id=..., instance_token=..., client_token=...) as client:
        availability = await client.check_availability("+55 44 99999-9999")
        plan = pz.RegistrationPlanner().plan(availability)
        await plan.wait_until_ready(plan.next_channel())
"""

import typing as _typing

from ._client import DEFAULT_BASE_URL, ZAPI_BASE_URL, PlugzClient
from ._clock import Clock, FakeClock, SystemClock
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    ConnectError,
    InstanceNotFoundError,
    InvalidPhoneNumber,
    MethodNotAllowedError,
    NoChannelError,
    PlanDataError,
    PlugzError,
    RateLimitError,
    RequestTimeout,
    ResponseDecodeError,
    ServerError,
    TransportError,
    UnsupportedMediaTypeError,
)
from ._models import Availability, Channel
from ._phone import PhoneNumber
from ._planner import ChannelWindow, Outcome, RegistrationPlan, RegistrationPlanner
from ._retry import RetryEvent, RetryPolicy
from ._version import __version__

if _typing.TYPE_CHECKING:
    from . import sandbox as sandbox
    from . import testing as testing

# Loaded on first use: ``pz.sandbox.running()`` works after ``import plugz_async as pz``
# without every user paying for the server code at import.
_SUBMODULES = ("sandbox", "testing")


def __getattr__(name: str) -> _typing.Any:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_BASE_URL",
    "ZAPI_BASE_URL",
    "APIError",
    "AuthenticationError",
    "Availability",
    "BadRequestError",
    "Channel",
    "ChannelWindow",
    "ClientClosedError",
    "Clock",
    "ConfigurationError",
    "ConnectError",
    "FakeClock",
    "InstanceNotFoundError",
    "InvalidPhoneNumber",
    "MethodNotAllowedError",
    "NoChannelError",
    "Outcome",
    "PhoneNumber",
    "PlanDataError",
    "PlugzClient",
    "PlugzError",
    "RateLimitError",
    "RegistrationPlan",
    "RegistrationPlanner",
    "RequestTimeout",
    "ResponseDecodeError",
    "RetryEvent",
    "RetryPolicy",
    "ServerError",
    "SystemClock",
    "TransportError",
    "UnsupportedMediaTypeError",
    "__version__",
]
