"""plugz-async: an asyncio SDK for the PlugzAPI (and Z-API) mobile-registration API.

Check whether a WhatsApp number can be registered, and plan when each
confirmation-code channel (SMS, voice call, the in-app pop-up) may be used::

    import plugz_async as pz

    async with pz.PlugzClient(instance_id=..., instance_token=..., client_token=...) as client:
        availability = await client.check_availability("+55 44 99999-9999")
        plan = pz.RegistrationPlanner().plan(availability)
        await plan.wait_until_ready(plan.next_channel())
"""

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
