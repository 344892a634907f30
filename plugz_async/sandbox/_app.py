"""The sandbox server: the PlugzAPI mobile routes, on aiohttp.web, with no account.

It serves the real paths (``/instances/{id}/token/{token}/mobile/...``) with the
real checks, in this order: the route exists (404), the method (405), a JSON
``Content-Type`` on POST (415), the ``Client-Token`` (400 when missing, 403 echoing
a wrong one, as the real server does), the instance and its token (200
``{"error": "NOT_FOUND"}``), the body (400). Then it answers from the test
numbers of ``_scenarios``.

A control API under ``/_sandbox/`` (a path the real API cannot have) lets tests
script the next answers, read the request log, move the sandbox's clock and reset.
The request log never holds a token: credentials are recorded as ok / missing /
refused.

Like ``_scenarios``, this module imports nothing from the client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import random
import re
import struct
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import attrs
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ._scenarios import (
    APPEAL_TOKEN,
    CAPTCHA_TEXT,
    CONFIRMATION_CODE,
    PIN,
    SCENARIOS,
    Fault,
    mixed_answer,
    scenario_for,
)

__all__ = [
    "ACCESS_LOGGER",
    "CONTROL_PREFIX",
    "ROUTES",
    "STATE",
    "Reply",
    "SandboxConfig",
    "SandboxState",
    "create_app",
]

CONTROL_PREFIX = "/_sandbox"

# route -> HTTP method, as documented.
ROUTES: Mapping[str, str] = {
    "registration-available": "POST",
    "request-registration-code": "POST",
    "respond-captcha": "POST",
    "confirm-registration-code": "POST",
    "device-transfer-confirmed": "GET",
    "confirm-pin-code": "POST",
    "recovery-pin-code": "POST",
    "request-unbanning": "POST",
}
_NUMBERED = ("registration-available", "request-registration-code")
_METHODS = ("sms", "voice", "wa_old")
_TOKEN_IN_PATH = re.compile(r"(/token/)[^/?#]+")

HTML_503 = (
    "<html><head><title>503 Service Temporarily Unavailable</title></head>"
    "<body><center><h1>503 Service Temporarily Unavailable</h1></center></body></html>"
)


# A 5x7 pixel font, just for the letters of the captcha's answer.
_GLYPHS = {
    "S": (" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "),
    "A": (" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "N": ("#   #", "##  #", "# # #", "#  ##", "#   #", "#   #", "#   #"),
    "D": ("#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "),
    "B": ("#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "),
    "O": (" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "X": ("#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"),
}


def captcha_png(text: str, scale: int = 4) -> bytes:
    """A greyscale PNG that shows ``text`` (letters of the sandbox's font): the captcha."""
    cells: list[list[bool]] = [[False] * 2 for _ in range(7)]  # a left margin
    for letter in text:
        glyph = _GLYPHS[letter]
        for y in range(7):
            cells[y] += [c == "#" for c in glyph[y]] + [False]
    for line in cells:
        line += [False]
    margin = [[False] * len(cells[0])]
    cells = margin * 2 + cells + margin * 2
    raster = b"".join(
        b"\x00" + bytes(0x20 if on else 0xE8 for on in row for _ in range(scale))
        for row in cells
        for _ in range(scale)
    )
    width, height = len(cells[0]) * scale, len(cells) * scale

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raster))
        + chunk(b"IEND", b"")
    )


CAPTCHA_PNG = captcha_png(CAPTCHA_TEXT)


def mask_path(request: web.BaseRequest) -> str:
    """The request's path, still URL-encoded, with its instance token masked, for logs.

    The encoded form matters: a token with a ``/`` in it is one segment only there.
    """
    return _TOKEN_IN_PATH.sub(r"\g<1>***", request.rel_url.raw_path)


class _NoJSON:
    def __repr__(self) -> str:
        return "NO_JSON"


NO_JSON: Any = _NoJSON()


@attrs.define
class Reply:
    """One scripted answer: a status and a JSON or raw body, or a fault.

    Attributes:
        status: the HTTP status.
        json: a JSON body (any JSON value), when given.
        body: a raw body (text or bytes), when ``json`` is not given.
        headers: extra headers.
        delay: seconds to wait before answering (cut short when the sandbox stops).
        drop: close the connection without answering.
        chunked: send the body with chunked transfer encoding, in 1 KiB pieces.
        cut: declare the whole body, send half of it, then close the connection.
        trickle: send the body one byte at a time, this many seconds apart.
        size: send a body of this many bytes (spaces), declared, made as it goes.
    """

    status: int = 200
    json: Any = attrs.field(default=NO_JSON, repr=False)
    body: str | bytes | None = None
    headers: dict[str, str] = attrs.field(factory=dict)
    delay: float = 0.0
    drop: bool = False
    chunked: bool = False
    cut: bool = False
    trickle: float = 0.0
    size: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reply:
        """A reply from the control API's JSON."""
        known = {f.name for f in attrs.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown reply fields: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})


@attrs.frozen(kw_only=True)
class SandboxConfig:
    """How a sandbox behaves.

    Attributes:
        instance_id: the test instance's id.
        instance_token: its token.
        client_token: the account's Client-Token the sandbox accepts.
        seed: seeds the mix that answers undocumented numbers.
        slow_seconds: how long the ``slow`` test number takes to answer.
        fault_rate: the share of requests (0 to 1) that fail with a 503 HTML page at
            random, as a flaky gateway would (0: none).
        log_limit: how many requests the log keeps (the oldest are dropped).
        registration_limit: how many numbers' registrations it remembers (the oldest
            are forgotten).
        random_codes: "send" a random code each time (read it with ``codes()`` or
            ``GET /_sandbox/codes``) instead of the documented ``123456``.
        code_lifetime: seconds a code stays valid (on the sandbox's clock).
    """

    instance_id: str = "sandbox-instance"
    instance_token: str = "sandbox-instance-token"
    client_token: str = "sandbox-client-token"
    seed: int = 0
    slow_seconds: float = 35.0
    fault_rate: float = 0.0
    log_limit: int = 10_000
    registration_limit: int = 10_000
    random_codes: bool = False
    code_lifetime: float = 600.0


@attrs.define
class _Registration:
    """Where one number stands in the flow on one instance."""

    digits: str
    flow: str
    answer: dict[str, Any]
    checked_at: float
    code_sent: bool = False
    captcha_pending: bool = False
    pin_pending: bool = False
    device_pending: bool = False
    device_polls: int = 0
    waits_from: float = 0.0
    waits: dict[str, float] = attrs.field(factory=dict)
    requests: int = 0
    code: str | None = None
    code_sent_at: float = 0.0


class SandboxState:
    """All the sandbox knows: scripts, fault counters, registrations, the log, the clock.

    The control API and the in-process helpers both use these methods.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.instances = {config.instance_id: config.instance_token}
        self.stopping = asyncio.Event()
        self._arrived = asyncio.Event()
        self._log: deque[dict[str, Any]] = deque(maxlen=config.log_limit)
        self._seq = 0
        self.reset()

    # -- control -------------------------------------------------------------------

    def reset(self) -> None:
        """Forget scripts, counters, registrations and the log; set the clock back."""
        self._scripts: list[tuple[str | None, str | None, deque[Reply]]] = []
        self._fault_counts: dict[str, int] = {}
        # (instance, number) -> where that number stands; instance -> the number it works on.
        self._registrations: OrderedDict[tuple[str, str], _Registration] = OrderedDict()
        self._current: dict[str, str] = {}
        self._codes: list[dict[str, Any]] = []
        self._outage: tuple[int, int] | None = None  # (from which request, the status)
        self._offset = 0.0
        self._rng = random.Random(self.config.seed)
        self._log.clear()

    def then(self, *replies: Reply, number: str | None = None, route: str | None = None) -> None:
        """Script the next answers: for one number (any form) or any, one route or any."""
        digits = None if number is None else "".join(c for c in number if c.isdigit())
        if route is not None and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}")
        self._scripts.append((digits, route, deque(replies)))

    def outage(self, *, after: int = 0, status: int = 503) -> None:
        """Fail every API request with ``status`` (an HTML page, as a gateway sends) once
        ``after`` more requests have been answered, until `end_outage`."""
        if after < 0 or not 500 <= status < 600:
            raise ValueError("an outage starts after 0 or more requests, with a 5xx status")
        self._outage = (self._seq + after, status)

    def end_outage(self) -> None:
        """Answer normally again."""
        self._outage = None

    def in_outage(self, seq: int) -> int | None:
        """The status the request numbered ``seq`` fails with, in an outage."""
        if self._outage is None or seq <= self._outage[0]:
            return None
        return self._outage[1]

    def advance(self, seconds: float) -> None:
        """Move the sandbox's clock forward: waits and retryAfter run out sooner."""
        if not seconds >= 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset += seconds

    def now(self) -> float:
        return time.monotonic() + self._offset

    def requests(
        self, *, number: str | None = None, route: str | None = None
    ) -> list[dict[str, Any]]:
        """The request log, oldest first, optionally for one number and/or route."""
        digits = None if number is None else "".join(c for c in number if c.isdigit())
        return [
            dict(entry)
            for entry in self._log
            if (digits is None or entry["number"] == digits)
            and (route is None or entry["route"] == route)
        ]

    def codes(self, *, number: str | None = None) -> list[dict[str, Any]]:
        """The codes the sandbox "sent": number, channel, code, when; oldest first."""
        digits = None if number is None else "".join(c for c in number if c.isdigit())
        return [dict(c) for c in self._codes if digits is None or c["number"] == digits]

    def registration(self, instance: str) -> _Registration | None:
        """The registration the instance works on now (the number last checked)."""
        digits = self._current.get(instance)
        return None if digits is None else self._registrations.get((instance, digits))

    def _new_code(self) -> str:
        if self.config.random_codes:
            return f"{self._rng.randrange(1_000_000):06d}"
        return CONFIRMATION_CODE

    async def wait_for_requests(self, count: int = 1) -> None:
        """Return once the log holds at least ``count`` requests (in the server's loop)."""
        while len(self._log) < count:
            self._arrived.clear()
            await self._arrived.wait()

    # -- serving -------------------------------------------------------------------

    def record(
        self, request: web.Request, route: str, digits: str | None, auth: str
    ) -> dict[str, Any]:
        self._seq += 1
        headers = {
            k: ("***" if k.lower() == "client-token" else v) for k, v in request.headers.items()
        }
        entry: dict[str, Any] = {
            "seq": self._seq,
            "time": datetime.now(timezone.utc).isoformat(),
            "method": request.method,
            "route": route,
            "path": mask_path(request),
            "instance": request.match_info.get("instance"),
            "number": digits,
            "auth": auth,
            "headers": headers,
            "body": None,
            "status": None,
            "answer": None,
        }
        self._log.append(entry)
        self._arrived.set()
        return entry

    def scripted(self, digits: str | None, route: str) -> Reply | None:
        for wanted, wanted_route, replies in self._scripts:
            if wanted not in (None, digits) or wanted_route not in (None, route):
                continue
            if replies:
                reply = replies.popleft()
                self._scripts = [s for s in self._scripts if s[2]]
                return reply
        return None

    def fault_for(self, digits: str, route: str) -> Fault | None:
        if route != "registration-available":
            return None
        scenario = scenario_for(digits)
        if scenario is None or scenario.fault is None:
            if self.config.fault_rate and self._rng.random() < self.config.fault_rate:
                return Fault("status", 503, times=0)
            return None
        fault = scenario.fault
        if fault.kind == "status" and fault.times:
            seen = self._fault_counts.get(digits, 0)
            if seen >= fault.times:
                return None
            self._fault_counts[digits] = seen + 1
        return fault

    def answer_for(self, digits: str) -> tuple[str, str, dict[str, Any]]:
        """(scenario name, flow, registration-available answer) of a number."""
        scenario = scenario_for(digits)
        if scenario is not None:
            return scenario.name, scenario.flow, dict(scenario.answer)
        name, answer = mixed_answer(digits, self.config.seed)
        return name, "normal", answer


class _AccessLogger(AbstractAccessLogger):
    """aiohttp's access log, with the instance token masked in every path."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.1f ms",
            request.remote,
            request.method,
            mask_path(request),
            response.status,
            time * 1000,
        )


def _error(status: int, error: str, message: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": error}
    if message is not None:
        body["message"] = message
    return web.json_response(body, status=status)


def _digits(value: Any) -> bool:
    return isinstance(value, str) and value.isascii() and value.isdigit()


class _Handler:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def handle(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        route = request.match_info["route"]
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        digits = None
        if (
            route in _NUMBERED
            and isinstance(body, dict)
            and _digits(body.get("ddi"))
            and _digits(body.get("phone"))
        ):
            digits = body["ddi"] + body["phone"]
        token = request.headers.get("Client-Token")
        known = state.instances.get(request.match_info["instance"]) == request.match_info["token"]
        auth = "missing" if not token else "ok" if token == state.config.client_token else "refused"
        if auth == "ok" and not known:
            auth = "unknown-instance"
        entry = state.record(request, route, digits, auth)
        entry["body"] = body
        response = await self._respond(request, route, raw, body, digits, token, known, entry)
        entry["status"] = response.status
        return response

    async def _respond(
        self,
        request: web.Request,
        route: str,
        raw: bytes,
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
            return await self._play(request, Reply(outage, body=HTML_503))
        reply = state.scripted(digits, route)
        if reply is not None:
            entry["answer"] = "scripted"
            return await self._play(request, reply)
        if route not in ROUTES:
            return _error(404, "Not Found", f"no route mobile/{route}")
        if request.method != ROUTES[route]:
            return _error(405, "Method Not Allowed")
        if ROUTES[route] == "POST" and request.content_type != "application/json":
            return _error(415, "Unsupported Media Type", "Content-Type must be application/json")
        if not token:
            return _error(400, "your client-token is not configured")
        if token != state.config.client_token:
            # The real server echoes the refused secret; so does the sandbox (it is a test one).
            return _error(403, f"Client-Token {token} not allowed")
        if not known:
            return web.json_response({"error": "NOT_FOUND", "message": "Instance not found"})
        if ROUTES[route] == "POST" and not isinstance(body, dict):
            return _error(400, "Invalid body", "the body must be a JSON object")
        if digits is not None:
            fault = state.fault_for(digits, route)
            if fault is not None:
                entry["answer"] = f"fault:{fault.kind}"
                return await self._fault(request, fault, digits)
        handler: Callable[[str, Any, str | None], web.Response] = getattr(
            self, "_" + route.replace("-", "_")
        )
        return handler(request.match_info["instance"], body, digits)

    # -- faults and scripts ------------------------------------------------------------

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.state.stopping.wait(), seconds)

    async def _play(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        if reply.delay:
            await self._wait(reply.delay)
        if reply.drop:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=499)
        if reply.json is not NO_JSON:
            data = json.dumps(reply.json).encode()
            content_type = "application/json"
        else:
            data = reply.body.encode() if isinstance(reply.body, str) else reply.body or b""
            content_type = "text/html"
        headers = {"Content-Type": content_type, **reply.headers}
        if not (reply.chunked or reply.cut or reply.trickle or reply.size):
            return web.Response(status=reply.status, body=data, headers=headers)
        response = web.StreamResponse(status=reply.status, headers=headers)
        if reply.size:  # a large body, made as it is sent
            response.content_length = reply.size
        elif reply.cut:  # promise the whole body, send half of it, and hang up
            response.content_length = len(data)
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            if reply.size:
                block = b" " * 65536
                for _ in range(0, reply.size, len(block)):
                    await response.write(block)
            elif reply.cut:
                await response.write(data[: len(data) // 2])
                await response.drain()
                if request.transport is not None:
                    request.transport.close()
                return response
            elif reply.trickle:
                for index in range(len(data)):
                    await response.write(data[index : index + 1])
                    await self._wait(reply.trickle)
            else:
                for start in range(0, len(data), 1024):
                    await response.write(data[start : start + 1024])
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away (as a client refusing a huge body does)
        return response

    async def _fault(self, request: web.Request, fault: Fault, digits: str) -> web.StreamResponse:
        if fault.kind == "status":
            headers = {}
            if fault.retry_after == "seconds":
                headers["Retry-After"] = "1"
            elif fault.retry_after == "date":
                when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=2)
                headers["Retry-After"] = format_datetime(when, usegmt=True)
            if fault.status == 429:
                return await self._play(
                    request,
                    Reply(429, json={"error": "Too Many Requests"}, headers=headers),
                )
            return await self._play(request, Reply(fault.status, body=HTML_503, headers=headers))
        if fault.kind == "slow":
            await self._wait(self.state.config.slow_seconds)
            return web.json_response(self.state.answer_for(digits)[2])
        if fault.kind == "drop":
            return await self._play(request, Reply(drop=True))
        if fault.kind == "broken_json":
            return await self._play(
                request,
                Reply(
                    body='{"available": true, "smsWaitSec',
                    headers={"Content-Type": "application/json"},
                ),
            )
        return web.json_response({"error": "INTERNAL", "message": "registration check failed"})

    # -- the routes ------------------------------------------------------------------

    def _registration_available(self, instance: str, body: Any, digits: str | None) -> web.Response:
        if digits is None:
            return _error(400, "Invalid body", "ddi and phone must be strings of digits")
        _, flow, answer = self.state.answer_for(digits)
        now = self.state.now()
        waits = {
            "sms": float(answer.get("smsWaitSeconds", 0)),
            "voice": float(answer.get("voiceWaitSeconds", 0)),
            "wa_old": float(answer.get("waOldWaitSeconds", 0)),
        }
        registrations = self.state._registrations
        registrations[(instance, digits)] = _Registration(
            digits, flow, answer, now, waits_from=now, waits=waits
        )
        registrations.move_to_end((instance, digits))
        if len(registrations) > self.state.config.registration_limit:
            registrations.popitem(last=False)  # a long-running sandbox stays small
        self.state._current[instance] = digits
        return web.json_response(answer)

    def _request_registration_code(
        self, instance: str, body: Any, digits: str | None
    ) -> web.Response:
        method = body.get("method")
        if digits is None or method not in _METHODS:
            return _error(
                400, "Invalid body", 'ddi, phone and method ("sms", "voice", "wa_old") are required'
            )
        registration = self.state._registrations.get((instance, digits))
        if registration is None:
            return _error(
                400, "Invalid request", "call registration-available for this number first"
            )
        self.state._current[instance] = digits
        answer = registration.answer
        if answer.get("blocked") or registration.flow == "blocked":
            return web.json_response({"success": False, "blocked": True})
        if not answer.get("available"):
            return web.json_response({"success": False, "reason": "number not available"})
        if method == "wa_old" and not answer.get("waOldEligible"):
            return web.json_response(
                {"success": False, "method": method, "reason": "wa_old not eligible"}
            )
        now = self.state.now()
        left = {
            m: max(0.0, registration.waits_from + w - now) for m, w in registration.waits.items()
        }
        wire_waits = {
            "smsWaitSeconds": math.ceil(left["sms"]),
            "voiceWaitSeconds": math.ceil(left["voice"]),
            "waOldWaitSeconds": math.ceil(left["wa_old"]),
        }
        if left[method] > 0:
            return web.json_response(
                {
                    "success": False,
                    "retryAfter": math.ceil(left[method]),
                    "method": method,
                    **wire_waits,
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
        registration.waits_from = now
        registration.waits = {"sms": wait, "voice": wait, "wa_old": wait}
        registration.waits[method] = retry_after
        if registration.flow == "captcha" and not registration.code_sent:
            registration.captcha_pending = True
            image = base64.b64encode(CAPTCHA_PNG).decode()
            return web.json_response(
                {"success": False, "captcha": "data:image/png;base64," + image, "method": method}
            )
        self._send_code(instance, registration, method)
        return web.json_response(
            {
                "success": True,
                # Documented both as a number and as a string: the voice answer uses the string.
                "retryAfter": str(int(retry_after)) if method == "voice" else int(retry_after),
                "smsWaitSeconds": int(wait),
                "voiceWaitSeconds": int(wait),
                "waOldWaitSeconds": int(wait),
                "method": method,
            }
        )

    def _send_code(self, instance: str, registration: _Registration, method: str) -> None:
        registration.code_sent = True
        registration.code = self.state._new_code()
        registration.code_sent_at = self.state.now()
        self.state._codes.append(
            {
                "instance": instance,
                "number": registration.digits,
                "channel": method,
                "code": registration.code,
                "sent_at": datetime.now(timezone.utc).isoformat(),
            }
        )

    def _respond_captcha(self, instance: str, body: Any, digits: str | None) -> web.Response:
        if not isinstance(body.get("captcha"), str):
            return _error(400, "Invalid body", "captcha must be a string")
        registration = self.state.registration(instance)
        if registration is None or not registration.captcha_pending:
            return web.json_response({"success": False})
        if body["captcha"].strip().upper() != CAPTCHA_TEXT:
            return web.json_response({"success": False})
        registration.captcha_pending = False
        self._send_code(instance, registration, "sms")
        return web.json_response({"success": True})

    def _confirm_registration_code(
        self, instance: str, body: Any, digits: str | None
    ) -> web.Response:
        if not isinstance(body.get("code"), str):
            return _error(400, "Invalid body", "code must be a string")
        registration = self.state.registration(instance)
        if registration is None or not registration.code_sent:
            return web.json_response({"success": False})
        if body["code"].replace("-", "").strip() != registration.code:
            return web.json_response({"success": False})
        lifetime = 60.0 if registration.flow == "expires" else self.state.config.code_lifetime
        if self.state.now() - registration.code_sent_at > lifetime:
            return web.json_response({"success": False, "reason": "code expired"})
        if registration.flow == "pin":
            registration.pin_pending = True
            return web.json_response({"success": False, "confirmSecurityCode": True})
        if registration.flow == "device":
            registration.device_pending = True
            return web.json_response({"success": False, "deviceConfirm": True})
        return web.json_response({"success": True})

    def _device_transfer_confirmed(
        self, instance: str, body: Any, digits: str | None
    ) -> web.Response:
        registration = self.state.registration(instance)
        if registration is None or not registration.device_pending:
            return _error(400, "Bad Request", "no device transfer is waiting")
        registration.device_polls += 1
        if registration.device_polls < 2:  # approved on the old phone after the first poll
            return _error(400, "Bad Request", "the transfer was not approved yet")
        registration.device_pending = False
        return web.json_response({"success": True})

    def _confirm_pin_code(self, instance: str, body: Any, digits: str | None) -> web.Response:
        if not isinstance(body.get("code"), str):
            return _error(400, "Invalid body", "code must be a string")
        registration = self.state.registration(instance)
        ok = registration is not None and registration.pin_pending and body["code"] == PIN
        if ok and registration is not None:
            registration.pin_pending = False
        return web.json_response({"success": ok})

    def _recovery_pin_code(self, instance: str, body: Any, digits: str | None) -> web.Response:
        return web.json_response({"success": True})

    def _request_unbanning(self, instance: str, body: Any, digits: str | None) -> web.Response:
        token, description = body.get("appealToken"), body.get("description")
        if not (isinstance(token, str) and token and isinstance(description, str) and description):
            return _error(400, "Invalid body", "appealToken and description are required")
        status = "UNBANNED" if token == APPEAL_TOKEN else "IN_REVIEW"
        return web.json_response({"success": True, "status": status})


class _Control:
    """The control API: ``/_sandbox/...``."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "sandbox": True,
                "routes": dict(ROUTES),
                "requests": len(self.state.requests()),
                "control": [
                    "GET scenarios",
                    "GET requests",
                    "POST script",
                    "POST clock",
                    "POST outage",
                    "DELETE outage",
                    "POST reset",
                ],
            }
        )

    async def scenarios(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "number": s.number,
                    "digits": s.digits,
                    "name": s.name,
                    "description": s.description,
                }
                for s in SCENARIOS
            ]
        )

    async def requests(self, request: web.Request) -> web.Response:
        return web.json_response(
            self.state.requests(
                number=request.query.get("number"), route=request.query.get("route")
            )
        )

    async def script(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            replies = [Reply.from_dict(item) for item in data["replies"]]
            self.state.then(*replies, number=data.get("number"), route=data.get("route"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _error(400, "Invalid script", str(exc))
        return web.json_response({"scripted": len(replies)})

    async def clock(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            self.state.advance(float(data["advance"]))
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, "Invalid clock change", str(exc))
        return web.json_response({"advanced": data["advance"]})

    async def outage(self, request: web.Request) -> web.Response:
        if request.method == "DELETE":
            self.state.end_outage()
            return web.json_response({"outage": False})
        try:
            data = await request.json() if request.can_read_body else {}
            self.state.outage(after=int(data.get("after", 0)), status=int(data.get("status", 503)))
        except (ValueError, TypeError, AttributeError) as exc:
            return _error(400, "Invalid outage", str(exc))
        return web.json_response({"outage": True})

    async def codes(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.codes(number=request.query.get("number")))

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return web.json_response({"reset": True})


STATE = web.AppKey("plugz_sandbox_state", SandboxState)
ACCESS_LOGGER = _AccessLogger


def create_app(config: SandboxConfig | None = None) -> web.Application:
    """The sandbox as an ``aiohttp.web.Application``; its state is ``app[STATE]``."""
    state = SandboxState(config or SandboxConfig())
    app = web.Application()
    app[STATE] = state
    control = _Control(state)
    app.router.add_get(CONTROL_PREFIX + "/", control.info)
    app.router.add_get(CONTROL_PREFIX + "/scenarios", control.scenarios)
    app.router.add_get(CONTROL_PREFIX + "/requests", control.requests)
    app.router.add_get(CONTROL_PREFIX + "/codes", control.codes)
    app.router.add_post(CONTROL_PREFIX + "/script", control.script)
    app.router.add_post(CONTROL_PREFIX + "/clock", control.clock)
    app.router.add_post(CONTROL_PREFIX + "/reset", control.reset)
    app.router.add_post(CONTROL_PREFIX + "/outage", control.outage)
    app.router.add_delete(CONTROL_PREFIX + "/outage", control.outage)
    app.router.add_route(
        "*", "/instances/{instance}/token/{token}/mobile/{route}", _Handler(state).handle
    )

    async def stop(app: web.Application) -> None:
        state.stopping.set()

    app.on_shutdown.append(stop)
    return app
