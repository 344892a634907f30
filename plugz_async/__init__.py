"""plugz-async: an asyncio SDK for the PlugzAPI (and Z-API) mobile-registration API.

Check whether a WhatsApp number can be registered, and plan when each
confirmation-code channel (SMS, voice call, the in-app pop-up) may be used::

    import plugz_async as pz

    async with pz.PlugzClient(instance_id=..., instance_token=..., client_token=...) as client:
        availability = await client.check_availability("+55 44 99999-9999")
        plan = pz.RegistrationPlanner().plan(availability)
        if (channel := plan.next_channel()) is not None:  # None: banned, unavailable...
            await plan.wait_until_ready(channel)
"""

import inspect as _inspect
import typing as _typing

from ._bulk import (
    BulkItem,
    BulkRow,
    BulkRun,
    BulkSummary,
    RateSchedule,
    ResultsFile,
    SameLine,
    SeenLines,
    read_results,
    to_dataframe,
)
from ._client import PlugzClient
from ._clock import Clock, FakeClock, SystemClock
from ._config import DEFAULT_BASE_URL, ZAPI_BASE_URL
from ._connections import Connections
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    ConnectError,
    InstanceBusyError,
    InstanceNotFoundError,
    InvalidArgument,
    InvalidPhoneNumber,
    MethodNotAllowedError,
    MissingCountryCode,
    MissingDependencyError,
    NoChannelError,
    OutageError,
    PlanDataError,
    PlugzError,
    RateLimitError,
    RegistrationStateError,
    RequestTimeout,
    ResponseDecodeError,
    ServerError,
    StaleWriteError,
    TransportError,
    UnknownRegistrationError,
    UnsupportedMediaTypeError,
    WrongEventLoopError,
)
from ._models import (
    Availability,
    CaptchaAnswer,
    Channel,
    CodeConfirmation,
    CodeRequest,
    DeviceTransfer,
    InstanceStatus,
    PinConfirmation,
    PinRecovery,
    UnbanRequest,
    UnbanStatus,
)
from ._phone import PhoneNumber
from ._planner import Assessment, ChannelWindow, PlanOutcome, RegistrationPlan, RegistrationPlanner
from ._redact import redact_url
from ._registration import (
    EventKind,
    Registration,
    RegistrationEvent,
    RegistrationMachine,
    RegistrationOutcome,
    RegistrationResult,
    RegistrationState,
    RegistrationStep,
)
from ._retry import RetryEvent, RetryPolicy, RetrySafety
from ._routes import ROUTES, Route
from ._transport import AttemptMiddleware, Send
from ._version import __version__

if _typing.TYPE_CHECKING:
    from . import queue as queue
    from . import sandbox as sandbox
    from . import testing as testing

# Loaded on first use: ``pz.sandbox.running()`` works after ``import plugz_async as pz``
# without every user paying for the server code at import (nor for saq and Redis, which
# ``queue`` needs from the ``queue`` extra).
_SUBMODULES = ("queue", "sandbox", "testing")


#: Old names, still answered (with a DeprecationWarning) until the next minor version.
_RENAMED = {"Outcome": "PlanOutcome"}


def __getattr__(name: str) -> _typing.Any:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name in _RENAMED:
        import warnings

        new = _RENAMED[name]
        warnings.warn(
            f"plugz_async.{name} is now plugz_async.{new} (RegistrationOutcome is how a"
            " registration ended; PlanOutcome what a plan says)",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_BASE_URL",
    "ROUTES",
    "ZAPI_BASE_URL",
    "APIError",
    "Assessment",
    "AttemptMiddleware",
    "AuthenticationError",
    "Availability",
    "BadRequestError",
    "BulkItem",
    "BulkRow",
    "BulkRun",
    "BulkSummary",
    "CaptchaAnswer",
    "Channel",
    "ChannelWindow",
    "ClientClosedError",
    "Clock",
    "CodeConfirmation",
    "CodeRequest",
    "ConfigurationError",
    "ConnectError",
    "Connections",
    "DeviceTransfer",
    "EventKind",
    "FakeClock",
    "InstanceBusyError",
    "InstanceNotFoundError",
    "InstanceStatus",
    "InvalidArgument",
    "InvalidPhoneNumber",
    "MethodNotAllowedError",
    "MissingCountryCode",
    "MissingDependencyError",
    "NoChannelError",
    "OutageError",
    "PhoneNumber",
    "PinConfirmation",
    "PinRecovery",
    "PlanDataError",
    "PlanOutcome",
    "PlugzClient",
    "PlugzError",
    "RateLimitError",
    "RateSchedule",
    "Registration",
    "RegistrationEvent",
    "RegistrationMachine",
    "RegistrationOutcome",
    "RegistrationPlan",
    "RegistrationPlanner",
    "RegistrationResult",
    "RegistrationState",
    "RegistrationStateError",
    "RegistrationStep",
    "RequestTimeout",
    "ResponseDecodeError",
    "ResultsFile",
    "RetryEvent",
    "RetryPolicy",
    "RetrySafety",
    "Route",
    "SameLine",
    "SeenLines",
    "Send",
    "ServerError",
    "StaleWriteError",
    "SystemClock",
    "TransportError",
    "UnbanRequest",
    "UnbanStatus",
    "UnknownRegistrationError",
    "UnsupportedMediaTypeError",
    "WrongEventLoopError",
    "__version__",
    "read_results",
    "redact_url",
    "to_dataframe",
]


# Public names report the package as their home, so tracebacks and reprs read
# ``plugz_async.RateLimitError`` rather than a private module's path (as httpx does).
# Annotations are resolved first, in the module that wrote them, so that
# ``typing.get_type_hints`` (attrs, cattrs, pydantic) still works once they moved.
def _resolve_annotations(cls: type) -> None:
    for klass in cls.__mro__:
        own = _inspect.get_annotations(klass)
        if not own or not klass.__module__.startswith("plugz_async."):
            continue
        try:
            hints = _typing.get_type_hints(klass)
        except NameError:  # pragma: no cover - a name only imported for type checking
            continue
        klass.__annotations__ = {name: hints.get(name, own[name]) for name in own}


for _name in __all__:
    _value = globals()[_name]
    home = getattr(_value, "__module__", None) if callable(_value) else None
    if isinstance(home, str) and home.startswith("plugz_async."):
        if isinstance(_value, type):
            _resolve_annotations(_value)
        _value.__module__ = __name__
del _name, _value, home
