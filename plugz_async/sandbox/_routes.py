"""The fake API: the PlugzAPI mobile routes and the instance's status, their checks and
their answers.

Every route the sandbox serves is in `API_ROUTES`, one line each: its name, its
HTTP method and the function that answers it. `MobileAPI` serves
``/instances/{id}/token/{token}/mobile/{route}`` (`API_PATH`), and the routes of the
instance itself (`INSTANCE_ROUTES`: ``status``) at
``/instances/{id}/token/{token}/{route}`` (`INSTANCE_PATH`); `path_of` gives a route's
path under the instance. It makes the real checks, in
this order: the route exists at that path (404), the method (405), a JSON ``Content-Type`` on
POST (415), the ``Client-Token`` (400 when missing, 403 echoing a wrong one, as
the real server does), the instance and its token (200 ``{"error":
"NOT_FOUND"}``), the body (400). An outage or a scripted reply comes before all of
them; a test number's fault after them. Then the route's function answers, from
the test numbers of ``_scenarios`` and the registrations kept by the state, and
the answer is sent at once, or later when a hold of the state's matches the request
(`SandboxState.hold`: the server acted, the answer is late).

The handlers change the state only through `SandboxState`'s methods and the
fields of the `RegistrationRecord` it hands out. This module imports ``_state``
for its types only, so that the state can check a route name against `SANDBOX_ROUTES`.

Like the rest of the server, this module imports nothing from the client: it
writes the wire format (camelCase JSON) on its own.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from aiohttp import web

from ._faults import HTML_503, Reply, play, play_fault
from ._scenarios import APPEAL_TOKEN, CAPTCHA_PNG, CAPTCHA_TEXT, PIN

if TYPE_CHECKING:
    from ._state import SandboxState

# A route's answer, from the state, the instance, the JSON body and the number's digits
# (for the routes in NUMBERED_ROUTES, when the body holds a valid ddi and phone).
RouteHandler: TypeAlias = Callable[["SandboxState", str, Any, "str | None"], web.Response]

__all__ = [
    "API_PATH",
    "API_ROUTES",
    "INSTANCE_PATH",
    "INSTANCE_ROUTES",
    "NUMBERED_ROUTES",
    "SANDBOX_ROUTES",
    "MobileAPI",
    "path_of",
]

API_PATH = "/instances/{instance}/token/{token}/mobile/{route}"
INSTANCE_PATH = "/instances/{instance}/token/{token}/{route}"

# The routes of the instance itself, served at INSTANCE_PATH (the others under mobile/).
INSTANCE_ROUTES = ("status",)

# The routes whose body names a number (``ddi`` and ``phone``).
NUMBERED_ROUTES = ("registration-available", "request-registration-code")

# The code channels, as the API names them.
_CHANNELS = ("sms", "voice", "wa_old")


def _error(status: int, error: str, message: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": error}
    if message is not None:
        body["message"] = message
    return web.json_response(body, status=status)


def _is_digits(value: Any) -> bool:
    return isinstance(value, str) and value.isascii() and value.isdigit()


# -- the routes ------------------------------------------------------------------------------


def registration_available(
    state: SandboxState, instance: str, body: Any, digits: str | None
) -> web.Response:
    if digits is None:
        return _error(400, "Invalid body", "ddi and phone must be strings of digits")
    return web.json_response(state.start_registration(instance, digits).availability(state.now()))


def request_registration_code(
    state: SandboxState, instance: str, body: Any, digits: str | None
) -> web.Response:
    method = body.get("method")
    if digits is None or method not in _CHANNELS:
        return _error(
            400, "Invalid body", 'ddi, phone and method ("sms", "voice", "wa_old") are required'
        )
    registration = state.resume_registration(instance, digits)
    if registration is None:
        return _error(400, "Invalid request", "call registration-available for this number first")
    answer = registration.answer
    if answer.get("blocked") or registration.flow == "blocked":
        return web.json_response({"success": False, "blocked": True})
    if not answer.get("available"):
        return web.json_response({"success": False, "reason": "number not available"})
    if method == "wa_old" and not answer.get("waOldEligible"):
        return web.json_response(
            {"success": False, "method": method, "reason": "wa_old not eligible"}
        )
    now = state.now()
    left = registration.waits_left(now)
    if left[method] > 0:
        return web.json_response(
            {
                "success": False,
                "retryAfter": math.ceil(left[method]),
                "method": method,
                "smsWaitSeconds": math.ceil(left["sms"]),
                "voiceWaitSeconds": math.ceil(left["voice"]),
                "waOldWaitSeconds": math.ceil(left["wa_old"]),
            }
        )
    registration.requests += 1
    # The documented example: 125 s for every channel, 165 s for the one just used;
    # the growing-waits number doubles them with each request (60, 120, 240...).
    if registration.flow == "growing":
        wait = 60.0 * 2 ** (registration.requests - 1)
        retry_after = wait
    else:
        wait, retry_after = 125.0, 165.0
    wait, retry_after = state.config.scaled(wait), state.config.scaled(retry_after)
    registration.restart_waits(now, wait, channel=method, channel_wait=retry_after)
    if registration.flow == "captcha" and not registration.code_sent:
        registration.captcha_pending = True
        image = base64.b64encode(CAPTCHA_PNG).decode()
        return web.json_response(
            {"success": False, "captcha": "data:image/png;base64," + image, "method": method}
        )
    state.send_code(instance, registration, method)
    return web.json_response(
        {
            "success": True,
            # Documented both as a number and as a string: the voice answer uses the string.
            "retryAfter": str(math.ceil(retry_after))
            if method == "voice"
            else math.ceil(retry_after),
            "smsWaitSeconds": math.ceil(wait),
            "voiceWaitSeconds": math.ceil(wait),
            "waOldWaitSeconds": math.ceil(wait),
            "method": method,
        }
    )


def respond_captcha(
    state: SandboxState, instance: str, body: Any, digits: str | None
) -> web.Response:
    if not isinstance(body.get("captcha"), str):
        return _error(400, "Invalid body", "captcha must be a string")
    registration = state.registration(instance)
    if registration is None or not registration.captcha_pending:
        return web.json_response({"success": False})
    if body["captcha"].strip().upper() != CAPTCHA_TEXT:
        return web.json_response({"success": False})
    registration.captcha_pending = False
    state.send_code(instance, registration, "sms")
    return web.json_response({"success": True})


def confirm_registration_code(
    state: SandboxState, instance: str, body: Any, digits: str | None
) -> web.Response:
    if not isinstance(body.get("code"), str):
        return _error(400, "Invalid body", "code must be a string")
    registration = state.registration(instance)
    if registration is None or not registration.code_sent:
        return web.json_response({"success": False})
    if body["code"].replace("-", "").strip() != registration.code:
        return web.json_response({"success": False})
    if state.code_expired(registration):
        return web.json_response({"success": False, "reason": "code expired"})
    if registration.flow == "pin":
        registration.pin_pending = True
        return web.json_response({"success": False, "confirmSecurityCode": True})
    if registration.flow == "device":
        registration.device_pending = True
        return web.json_response({"success": False, "deviceConfirm": True})
    registration.registered = True
    return web.json_response({"success": True})


def device_transfer_confirmed(
    state: SandboxState, instance: str, body: Any, digits: str | None
) -> web.Response:
    registration = state.registration(instance)
    if registration is None or not registration.device_pending:
        return _error(400, "Bad Request", "no device transfer is waiting")
    registration.device_polls += 1
    if registration.device_polls < 2:  # approved on the old phone after the first poll
        return _error(400, "Bad Request", "the transfer was not approved yet")
    registration.device_pending = False
    registration.registered = True
    return web.json_response({"success": True})


def confirm_pin_code(
    state: SandboxState, instance: str, body: Any, digits: str | None
) -> web.Response:
    if not isinstance(body.get("code"), str):
        return _error(400, "Invalid body", "code must be a string")
    registration = state.registration(instance)
    ok = registration is not None and registration.pin_pending and body["code"] == PIN
    if ok and registration is not None:
        registration.pin_pending = False
        registration.registered = True
    return web.json_response({"success": ok})


def recovery_pin_code(
    state: SandboxState, instance: str, body: Any, digits: str | None
) -> web.Response:
    return web.json_response({"success": True})


def request_unbanning(
    state: SandboxState, instance: str, body: Any, digits: str | None
) -> web.Response:
    token, description = body.get("appealToken"), body.get("description")
    if not (isinstance(token, str) and token and isinstance(description, str) and description):
        return _error(400, "Invalid body", "appealToken and description are required")
    status = "UNBANNED" if token == APPEAL_TOKEN else "IN_REVIEW"
    return web.json_response({"success": True, "status": status})


def instance_status(
    state: SandboxState, instance: str, body: Any, digits: str | None
) -> web.Response:
    return web.json_response(state.instance_status(instance))


# Every route the sandbox serves: name -> (HTTP method, the function that answers it).
API_ROUTES: Mapping[str, tuple[str, RouteHandler]] = {
    "registration-available": ("POST", registration_available),
    "request-registration-code": ("POST", request_registration_code),
    "respond-captcha": ("POST", respond_captcha),
    "confirm-registration-code": ("POST", confirm_registration_code),
    "device-transfer-confirmed": ("GET", device_transfer_confirmed),
    "confirm-pin-code": ("POST", confirm_pin_code),
    "recovery-pin-code": ("POST", recovery_pin_code),
    "request-unbanning": ("POST", request_unbanning),
    "status": ("GET", instance_status),
}


def path_of(route: str) -> str:
    """The path of ``route`` under ``/instances/{id}/token/{token}/``: ``mobile/{route}``,
    or ``status`` (the instance's own routes)."""
    return route if route in INSTANCE_ROUTES else f"mobile/{route}"


# The same routes as name -> HTTP method, as documented: exported as
# ``plugz_async.sandbox.SANDBOX_ROUTES``. (Not the client's ``plugz_async.ROUTES``, a tuple of
# ``Route`` objects that say how the client calls each route.)
SANDBOX_ROUTES: Mapping[str, str] = {name: method for name, (method, _) in API_ROUTES.items()}


# -- serving them ----------------------------------------------------------------------------


class MobileAPI:
    """Serves `API_PATH` (`handle`) and `INSTANCE_PATH` (`handle_instance`): logs each
    request, makes the checks, answers from `API_ROUTES`."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def handle_instance(self, request: web.Request) -> web.StreamResponse:
        """A request for a route of the instance itself (``status``)."""
        return await self.handle(request, mobile=False)

    async def handle(self, request: web.Request, *, mobile: bool = True) -> web.StreamResponse:
        """A request for a route under ``mobile/`` (``mobile``), or of the instance itself."""
        state = self.state
        route = request.match_info["route"]
        asked = f"mobile/{route}" if mobile else route  # its path below the instance
        served = route in API_ROUTES and path_of(route) == asked
        if route in API_ROUTES and not served:
            route = asked  # logged as asked: mobile/status is no route of the sandbox's
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        digits = None
        if (
            served
            and route in NUMBERED_ROUTES
            and isinstance(body, dict)
            and _is_digits(body.get("ddi"))
            and _is_digits(body.get("phone"))
        ):
            digits = body["ddi"] + body["phone"]
        token = request.headers.get("Client-Token")
        known = state.knows_instance(request.match_info["instance"], request.match_info["token"])
        auth = "missing" if not token else "ok" if token == state.config.client_token else "refused"
        if auth == "ok" and not known:
            auth = "unknown-instance"
        entry = state.record(request, route, digits, auth)
        entry["body"] = body
        response = await self._respond(
            request, route if served else None, asked, body, digits, token, known, entry
        )
        entry["status"] = response.status
        return response

    async def _respond(
        self,
        request: web.Request,
        route: str | None,
        asked: str,
        body: Any,
        digits: str | None,
        token: str | None,
        known: bool,
        entry: dict[str, Any],
    ) -> web.StreamResponse:
        state = self.state
        outage = state.in_outage(entry["seq"])
        if outage is not None:
            entry["answer"] = "outage"
            return await play(request, Reply(outage, body=HTML_503), stopping=state.stopping)
        reply = None if route is None else state.scripted(digits, route)
        if reply is not None:
            entry["answer"] = "scripted"
            return await play(request, reply, stopping=state.stopping)
        if route is None:
            return _error(404, "Not Found", f"no route {asked}")
        method, handler = API_ROUTES[route]
        if request.method != method:
            return _error(405, "Method Not Allowed")
        if method == "POST" and request.content_type != "application/json":
            return _error(415, "Unsupported Media Type", "Content-Type must be application/json")
        if not token:
            return _error(400, "your client-token is not configured")
        if token != state.config.client_token:
            # The real server echoes the refused secret; so does the sandbox (it is a test one).
            return _error(403, f"Client-Token {token} not allowed")
        if not known:
            return web.json_response({"error": "NOT_FOUND", "message": "Instance not found"})
        if method == "POST" and not isinstance(body, dict):
            return _error(400, "Invalid body", "the body must be a JSON object")
        if digits is not None:
            fault = state.fault_for(digits, route)
            if fault is not None:
                entry["answer"] = f"fault:{fault.kind}"
                return await play_fault(
                    request,
                    fault,
                    stopping=state.stopping,
                    slow_seconds=state.config.slow_seconds,
                    answer=state.answer_for(digits)[2],
                )
        response = handler(state, request.match_info["instance"], body, digits)
        held = state.take_hold(digits, route)
        if held is not None:  # the route acted; its answer goes out late
            entry["held"] = held
            await state.hold_answer(held)
        return response
