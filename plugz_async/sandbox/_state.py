"""What the sandbox knows and how it is configured: `SandboxConfig` and `SandboxState`.

The state holds the instances it serves and their tokens, the scripted replies, the
fault counters, the held answers, where each number stands in the registration flow
(a `RegistrationRecord` per instance and number), the codes it "sent", the request
log, the outage and its own clock. The route handlers (``_routes``), the control API
(``_control``) and the in-process handles (``_running``) all go through its methods;
nothing outside this module touches its private fields.

The request log never holds a token: credentials are recorded as ok / missing /
refused / unknown-instance, the path has its instance token masked and the
``Client-Token`` header reads ``***``.

Like the rest of the server, this module imports nothing from the client.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections import OrderedDict, deque
from datetime import datetime, timezone
from typing import Any

import attrs
from aiohttp import web

from ._faults import Reply, pause
from ._routes import NUMBERED_ROUTES, SANDBOX_ROUTES
from ._scenarios import (
    ALREADY_CONNECTED,
    CONFIRMATION_CODE,
    NOT_CONNECTED,
    RESTORE_SESSION,
    Fault,
    mixed_answer,
    scenario_for,
)

__all__ = ["RegistrationRecord", "SandboxConfig", "SandboxState", "instance_tokens", "mask_path"]

_TOKEN_IN_PATH = re.compile(r"(/token/)[^/?#]+")


def mask_path(request: web.BaseRequest) -> str:
    """The request's path, still URL-encoded, with its instance token masked, for logs.

    The encoded form matters: a token with a ``/`` in it is one segment only there.
    """
    return _TOKEN_IN_PATH.sub(r"\g<1>***", request.rel_url.raw_path)


def _digits_of(number: str | None) -> str | None:
    return None if number is None else "".join(c for c in number if c.isdigit())


@attrs.frozen(kw_only=True)
class SandboxConfig:
    """How a sandbox behaves.

    Attributes:
        instance_id: the test instance's id.
        instance_token: its token.
        instances: how many instances the sandbox serves (at least 1). The first is
            ``instance_id`` with ``instance_token``; instance ``i`` (2 to ``instances``)
            is ``f"{instance_id}-{i}"`` with the token ``f"{instance_token}-{i}"``. An
            instance registers one number at a time, so registering many numbers at
            once takes as many instances.
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
        wait_scale: every wait the sandbox gives (the answers' waits, the waits a code
            request starts, ``retryAfter``) is multiplied by this, and reported in whole
            seconds rounded up: ``0.01`` turns the documented 125 s into 2 s, for tests
            and benchmarks that run registrations on the real clock.
    """

    instance_id: str = "sandbox-instance"
    instance_token: str = "sandbox-instance-token"
    instances: int = attrs.field(
        default=1, validator=[attrs.validators.instance_of(int), attrs.validators.ge(1)]
    )
    client_token: str = "sandbox-client-token"
    seed: int = 0
    slow_seconds: float = 35.0
    fault_rate: float = 0.0
    log_limit: int = 10_000
    registration_limit: int = 10_000
    random_codes: bool = False
    code_lifetime: float = 600.0
    wait_scale: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))

    def scaled(self, seconds: float) -> float:
        """A wait of the sandbox's, scaled by ``wait_scale``."""
        return seconds * self.wait_scale


def instance_tokens(config: SandboxConfig) -> dict[str, str]:
    """The instances ``config`` serves: id -> token, the test instance first."""
    tokens = {config.instance_id: config.instance_token}
    for i in range(2, config.instances + 1):
        tokens[f"{config.instance_id}-{i}"] = f"{config.instance_token}-{i}"
    return tokens


@attrs.define
class _Hold:
    """Answers to hold: of ``route`` (for one number's ``digits``, or any), ``times`` more."""

    route: str
    digits: str | None
    seconds: float
    times: int


@attrs.define
class RegistrationRecord:
    """Where one number stands in the flow on one instance.

    ``waits`` holds each channel's wait (sms, voice, wa_old) in seconds, counted from
    ``waits_from`` on the sandbox's clock.
    """

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
    #: The last step succeeded (the code, the PIN or the transfer).
    registered: bool = False

    def waits_left(self, now: float) -> dict[str, float]:
        """Seconds until each channel opens (0: open now)."""
        return {channel: max(0.0, self.waits_from + w - now) for channel, w in self.waits.items()}

    def availability(self, now: float) -> dict[str, Any]:
        """The registration-available answer at ``now``: the number's own, with the time
        left of the waits a code request started (they stay in force after a new check:
        a server that forgot them would let anyone skip them by checking again)."""
        if not self.requests and now <= self.waits_from:
            return self.answer
        if not any(self.waits.values()):
            return self.answer
        left = self.waits_left(now)
        return {
            **self.answer,
            "smsWaitSeconds": math.ceil(left["sms"]),
            "voiceWaitSeconds": math.ceil(left["voice"]),
            "waOldWaitSeconds": math.ceil(left["wa_old"]),
        }

    def restart_waits(self, now: float, wait: float, *, channel: str, channel_wait: float) -> None:
        """After a code request: every channel waits ``wait``, the one used ``channel_wait``."""
        self.waits_from = now
        self.waits = {"sms": wait, "voice": wait, "wa_old": wait}
        self.waits[channel] = channel_wait

    @property
    def connected(self) -> bool:
        """Whether the instance is connected to the number: once registered, unless it
        is the ``never-connects`` test number."""
        return self.registered and self.flow != "never_connects"

    def status(self) -> dict[str, Any]:
        """The instance's status answer (``GET /status``) while it works on this number."""
        if self.connected:
            return {"connected": True, "error": ALREADY_CONNECTED, "smartphoneConnected": True}
        error = RESTORE_SESSION if self.registered else NOT_CONNECTED
        return {"connected": False, "error": error, "smartphoneConnected": False}


class SandboxState:
    """All the sandbox knows: scripts, fault counters, registrations, the log, the clock.

    The route handlers, the control API and the in-process helpers all use these methods.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        # Instance id -> its token: nothing else is kept per instance until it is used.
        self.instances = instance_tokens(config)
        self.stopping = asyncio.Event()
        self._arrived = asyncio.Event()
        self._released = asyncio.Event()  # set when the answers held now are let go
        self._log: deque[dict[str, Any]] = deque(maxlen=config.log_limit)
        self._seq = 0
        self.reset()

    # -- control -------------------------------------------------------------------

    def reset(self) -> None:
        """Forget scripts, holds, counters, registrations and the log; set the clock back.

        Answers held at the time are sent at once.
        """
        self._scripts: list[tuple[str | None, str | None, deque[Reply]]] = []
        self.end_holds()
        self._fault_counts: dict[str, int] = {}
        # (instance, number) -> where that number stands; instance -> the number it works on.
        self._registrations: OrderedDict[tuple[str, str], RegistrationRecord] = OrderedDict()
        self._current: dict[str, str] = {}
        self._codes: list[dict[str, Any]] = []
        self._outage: tuple[int, int] | None = None  # (from which request, the status)
        self._offset = 0.0
        self._rng = random.Random(self.config.seed)
        self._log.clear()

    def then(self, *replies: Reply, number: str | None = None, route: str | None = None) -> None:
        """Script the next answers: for one number (any form) or any, one route or any."""
        if route is not None and route not in SANDBOX_ROUTES:
            raise ValueError(f"unknown route {route!r}")
        self._scripts.append((_digits_of(number), route, deque(replies)))

    def hold(
        self, route: str, seconds: float, *, number: str | None = None, times: int = 1
    ) -> None:
        """Hold the answers of the next ``times`` requests of ``route``: each is handled
        as usual (a code request sends its code), and its answer is sent ``seconds``
        later: the server acted, the answer is late.

        With ``number`` (any form), only the requests for that number are held: it is
        for the routes whose body names one (``registration-available`` and
        ``request-registration-code``). A held request is in the log (`requests`, its
        status None) while its answer waits. A hold applies to the answers the route
        gives, not to an outage, a scripted reply, a test number's fault or a refused
        request. The wait is cut short when the sandbox stops, and by `end_holds` and
        `reset`.

        Raises:
            ValueError: an unknown route; ``seconds`` not a finite number of 0 or more;
                ``times`` less than 1; a ``number`` with no digits, or for a route whose
                body names none.
        """
        if route not in SANDBOX_ROUTES:
            raise ValueError(f"unknown route {route!r}")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError("seconds must be a number")
        if not 0 <= seconds < math.inf:
            raise ValueError("a hold lasts 0 or more seconds (a finite number)")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a whole number, 1 or more")
        digits = _digits_of(number)
        if digits is not None:
            if not digits:
                raise ValueError(f"the number {number!r} has no digits")
            if route not in NUMBERED_ROUTES:
                raise ValueError(f"{route} names no number in its body: hold it without a number")
        self._holds.append(_Hold(route, digits, float(seconds), times))

    def end_holds(self) -> None:
        """Forget the holds not used yet, and send the answers held now at once."""
        self._holds: list[_Hold] = []
        self._released.set()  # the answers waiting now go
        self._released = asyncio.Event()  # the ones held from now on wait again

    def take_hold(self, digits: str | None, route: str) -> float | None:
        """How long to hold the answer of this request (its number's digits, its route):
        the seconds of the first hold that matches it, which it uses one of its times;
        None when no hold matches."""
        for hold in self._holds:
            if hold.route == route and hold.digits in (None, digits):
                hold.times -= 1
                if not hold.times:
                    self._holds.remove(hold)
                return hold.seconds
        return None

    async def hold_answer(self, seconds: float) -> None:
        """Wait ``seconds`` before sending a held answer; less if the sandbox stops or the
        holds end (`end_holds`, `reset`) meanwhile."""
        await pause(seconds, self.stopping, self._released)

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
        """The sandbox's clock: monotonic seconds, moved forward by `advance`."""
        return time.monotonic() + self._offset

    def requests(
        self, *, number: str | None = None, route: str | None = None
    ) -> list[dict[str, Any]]:
        """The request log, oldest first, optionally for one number and/or route."""
        digits = _digits_of(number)
        return [
            dict(entry)
            for entry in self._log
            if (digits is None or entry["number"] == digits)
            and (route is None or entry["route"] == route)
        ]

    def codes(self, *, number: str | None = None) -> list[dict[str, Any]]:
        """The codes the sandbox "sent": number, channel, code, when; oldest first."""
        digits = _digits_of(number)
        return [dict(c) for c in self._codes if digits is None or c["number"] == digits]

    async def wait_for_requests(self, count: int = 1) -> None:
        """Return once the log holds at least ``count`` requests (in the server's loop)."""
        while len(self._log) < count:
            self._arrived.clear()
            await self._arrived.wait()

    # -- the registrations ---------------------------------------------------------

    def registration(self, instance: str) -> RegistrationRecord | None:
        """The registration the instance works on now (the number last checked)."""
        digits = self._current.get(instance)
        return None if digits is None else self._registrations.get((instance, digits))

    def instance_status(self, instance: str) -> dict[str, Any]:
        """The status answer of ``instance`` (``GET /status``): that of the number it works
        on (connected once its registration succeeded), not connected before any."""
        record = self.registration(instance)
        if record is None:
            return {"connected": False, "error": NOT_CONNECTED, "smartphoneConnected": False}
        return record.status()

    def registration_count(self) -> int:
        """How many numbers' registrations the sandbox remembers (all instances)."""
        return len(self._registrations)

    def start_registration(self, instance: str, digits: str) -> RegistrationRecord:
        """A number was checked (registration-available).

        The instance works on this number from now on. Its waits start at its first
        check; a number checked again (on the same instance) keeps them, and those a code
        request started, and the answer reports the time left, as a real server would:
        checking again never shortens nor restarts a wait. The oldest registration is
        forgotten past ``registration_limit``.
        """
        now = self.now()
        key = (instance, digits)
        known = self._registrations.get(key)
        if known is not None:
            # The number's waits run from its first check, and those a code request
            # started stay in force: a new check reports the time left of them.
            known.checked_at = now
            self._registrations.move_to_end(key)
            self._current[instance] = digits
            return known
        _, flow, answer = self.answer_for(digits)
        waits = {
            "sms": float(answer.get("smsWaitSeconds", 0)),
            "voice": float(answer.get("voiceWaitSeconds", 0)),
            "wa_old": float(answer.get("waOldWaitSeconds", 0)),
        }
        record = RegistrationRecord(digits, flow, answer, now, waits_from=now, waits=waits)
        key = (instance, digits)
        self._registrations[key] = record
        self._registrations.move_to_end(key)
        if len(self._registrations) > self.config.registration_limit:
            self._registrations.popitem(last=False)  # a long-running sandbox stays small
        self._current[instance] = digits
        return record

    def resume_registration(self, instance: str, digits: str) -> RegistrationRecord | None:
        """The registration of a number checked before, now the one the instance works on.

        None (and nothing changes) when the number was never checked on this instance.
        """
        record = self._registrations.get((instance, digits))
        if record is not None:
            self._current[instance] = digits
        return record

    def send_code(self, instance: str, record: RegistrationRecord, channel: str) -> None:
        """Send a confirmation code for ``record`` on ``channel`` (in name: see `codes`)."""
        record.code_sent = True
        record.code = self._new_code()
        record.code_sent_at = self.now()
        self._codes.append(
            {
                "instance": instance,
                "number": record.digits,
                "channel": channel,
                "code": record.code,
                "sent_at": datetime.now(timezone.utc).isoformat(),
            }
        )

    def code_expired(self, record: RegistrationRecord) -> bool:
        """Whether the code last sent for ``record`` is past its lifetime.

        ``code_lifetime`` seconds, or 60 for the ``code-expires`` test number.
        """
        lifetime = 60.0 if record.flow == "expires" else self.config.code_lifetime
        return self.now() - record.code_sent_at > lifetime

    def _new_code(self) -> str:
        if self.config.random_codes:
            return f"{self._rng.randrange(1_000_000):06d}"
        return CONFIRMATION_CODE

    # -- serving -------------------------------------------------------------------

    def knows_instance(self, instance: str, token: str) -> bool:
        """Whether ``instance`` exists and ``token`` is its token."""
        return self.instances.get(instance) == token

    def record(
        self, request: web.Request, route: str, digits: str | None, auth: str
    ) -> dict[str, Any]:
        """Log a request (tokens masked); the caller fills in its body, status and answer."""
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
            "held": None,
        }
        self._log.append(entry)
        self._arrived.set()
        return entry

    def scripted(self, digits: str | None, route: str) -> Reply | None:
        """The next scripted reply for this number and route, if any (it is used up)."""
        for wanted, wanted_route, replies in self._scripts:
            if wanted not in (None, digits) or wanted_route not in (None, route):
                continue
            if replies:
                reply = replies.popleft()
                self._scripts = [s for s in self._scripts if s[2]]
                return reply
        return None

    def fault_for(self, digits: str, route: str) -> Fault | None:
        """The fault this request meets: its test number's, or one of ``fault_rate``."""
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
            return scenario.name, scenario.flow, self._scaled(dict(scenario.answer))
        name, answer = mixed_answer(digits, self.config.seed)
        return name, "normal", self._scaled(answer)

    def _scaled(self, answer: dict[str, Any]) -> dict[str, Any]:
        if self.config.wait_scale != 1.0:
            for key in ("smsWaitSeconds", "voiceWaitSeconds", "waOldWaitSeconds"):
                if isinstance(answer.get(key), (int, float)) and answer[key] > 0:
                    answer[key] = math.ceil(self.config.scaled(answer[key]))
        return answer
