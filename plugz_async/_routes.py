"""The API's routes: each one's method, path, retry safety and the decoder of its answer.

A `Route` is all the client needs to call one: ``PlugzClient._call(route, body)`` sends
it (with retries as its safety allows) and returns ``route.decode(data, received)``, the
typed answer. Adding a route is one `Route` here and one short method on the client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

import attrs

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
    decode_availability,
    decode_code_confirmation,
    decode_code_request,
    decode_instance_status,
    decode_success,
    decode_unban_request,
    read_bool,
)
from ._phone import PhoneNumber
from ._retry import RetrySafety

__all__ = ["ROUTES", "Received", "Route"]

T = TypeVar("T")


@attrs.frozen
class Received:
    """What the client knows of an answer besides its JSON: the route, when it arrived,
    and what was asked (the number, the channel), which the typed answer keeps."""

    route: str
    observed_at: datetime
    observed_monotonic: float | None = None
    number: PhoneNumber | None = None
    channel: Channel | None = None

    def asked(self) -> tuple[PhoneNumber, Channel | None]:
        assert self.number is not None, f"{self.route} is sent with a number"
        return self.number, self.channel


@attrs.frozen
class Route(Generic[T]):
    """One API route: its HTTP method, its path under the instance, its retry safety,
    and ``decode(data, received)``, which makes its typed answer from the JSON object
    (by default, the object as a ``dict``).

    ``answer_field`` names a field only this route's answers carry (the status route's
    ``connected``): a 2xx object with it is the route's answer even when it holds an
    ``error``, which is then part of the answer (why the instance is not connected).
    Without it, an ``error`` in a 2xx answer is an API error, as on every route (an
    unknown instance is answered 200 ``{"error": "NOT_FOUND"}``).
    """

    method: str
    path: str
    safety: RetrySafety
    decode: Callable[[Mapping[str, Any], Received], T] = attrs.field(
        default=lambda data, received: dict(data), eq=False, repr=False
    )
    answer_field: str | None = None


def _availability(data: Mapping[str, Any], received: Received) -> Availability:
    number, _ = received.asked()
    return decode_availability(
        data,
        number=number,
        observed_at=received.observed_at,
        observed_monotonic=received.observed_monotonic,
        route=received.route,
    )


def _code_request(data: Mapping[str, Any], received: Received) -> CodeRequest:
    number, channel = received.asked()
    assert channel is not None
    return decode_code_request(
        data,
        number=number,
        channel=channel,
        observed_at=received.observed_at,
        observed_monotonic=received.observed_monotonic,
        route=received.route,
    )


def _code_confirmation(data: Mapping[str, Any], received: Received) -> CodeConfirmation:
    return decode_code_confirmation(data, observed_at=received.observed_at, route=received.route)


def _device_transfer(data: Mapping[str, Any], received: Received) -> DeviceTransfer:
    confirmed = read_bool(data, "success", False, received.route)
    return DeviceTransfer(confirmed=confirmed, observed_at=received.observed_at, raw=data)


def _instance_status(data: Mapping[str, Any], received: Received) -> InstanceStatus:
    return decode_instance_status(data, observed_at=received.observed_at, route=received.route)


def _unban_request(data: Mapping[str, Any], received: Received) -> UnbanRequest:
    return decode_unban_request(data, observed_at=received.observed_at, route=received.route)


A = TypeVar("A", CaptchaAnswer, PinConfirmation, PinRecovery)


def _success(cls: type[A]) -> Callable[[Mapping[str, Any], Received], A]:
    """The decoder of an answer whose one field is ``success``."""

    def decode(data: Mapping[str, Any], received: Received) -> A:
        return decode_success(cls, data, observed_at=received.observed_at, route=received.route)

    return decode


SAFE, UNSAFE = RetrySafety.SAFE, RetrySafety.UNSAFE

REGISTRATION_AVAILABLE: Route[Availability] = Route(
    "POST", "mobile/registration-available", SAFE, _availability
)
REQUEST_CODE: Route[CodeRequest] = Route(
    "POST", "mobile/request-registration-code", UNSAFE, _code_request
)
RESPOND_CAPTCHA: Route[CaptchaAnswer] = Route(
    "POST", "mobile/respond-captcha", UNSAFE, _success(CaptchaAnswer)
)
CONFIRM_CODE: Route[CodeConfirmation] = Route(
    "POST", "mobile/confirm-registration-code", UNSAFE, _code_confirmation
)
CONFIRM_DEVICE_TRANSFER: Route[DeviceTransfer] = Route(
    "GET", "mobile/device-transfer-confirmed", SAFE, _device_transfer
)
CONFIRM_PIN: Route[PinConfirmation] = Route(
    "POST", "mobile/confirm-pin-code", UNSAFE, _success(PinConfirmation)
)
RECOVER_PIN: Route[PinRecovery] = Route(
    "POST", "mobile/recovery-pin-code", UNSAFE, _success(PinRecovery)
)
REQUEST_UNBANNING: Route[UnbanRequest] = Route(
    "POST", "mobile/request-unbanning", UNSAFE, _unban_request
)
INSTANCE_STATUS: Route[InstanceStatus] = Route(
    "GET", "status", SAFE, _instance_status, answer_field="connected"
)

#: Every route the client sends, with its retry safety (the docs' retry table).
ROUTES: tuple[Route[Any], ...] = (
    REGISTRATION_AVAILABLE,
    REQUEST_CODE,
    RESPOND_CAPTCHA,
    CONFIRM_CODE,
    CONFIRM_DEVICE_TRANSFER,
    CONFIRM_PIN,
    RECOVER_PIN,
    REQUEST_UNBANNING,
    INSTANCE_STATUS,
)
