"""The control API under ``/_sandbox/``, and `create_app`, which puts the sandbox together.

The control API (`ControlAPI`, at `CONTROL_PREFIX`, a path the real API cannot
have) lets tests and other processes script the next answers, read the request
log and the codes "sent", move the sandbox's clock, start and end an outage, hold
answers, and reset. It is the HTTP twin of the in-process handles' methods
(``_running``); both call the same `SandboxState` methods. Its info page (``GET
/_sandbox/``) says what the sandbox serves: its routes and how many instances.

`create_app` builds the ``aiohttp.web.Application``: one `SandboxState` (at
``app[STATE]``), the control routes and the fake API (``_routes.MobileAPI``, at its two paths).
`ACCESS_LOGGER` is the access log class to serve it with: it masks the instance
token in every path.

Like the rest of the server, this module imports nothing from the client.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ._faults import Reply
from ._routes import API_PATH, INSTANCE_PATH, SANDBOX_ROUTES, MobileAPI
from ._scenarios import SCENARIOS
from ._state import SandboxConfig, SandboxState, mask_path

__all__ = ["ACCESS_LOGGER", "CONTROL_PREFIX", "STATE", "ControlAPI", "create_app"]

CONTROL_PREFIX = "/_sandbox"


def _error(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status)


class ControlAPI:
    """The control API: ``/_sandbox/...``, one method per request it answers."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        """Every control request, for ``app.add_routes``."""
        prefix = CONTROL_PREFIX
        return [
            web.get(prefix + "/", self.info),
            web.get(prefix + "/scenarios", self.scenarios),
            web.get(prefix + "/requests", self.requests),
            web.get(prefix + "/codes", self.codes),
            web.post(prefix + "/script", self.script),
            web.post(prefix + "/clock", self.clock),
            web.post(prefix + "/reset", self.reset),
            web.post(prefix + "/outage", self.outage),
            web.delete(prefix + "/outage", self.outage),
            web.post(prefix + "/hold", self.hold),
            web.delete(prefix + "/hold", self.hold),
        ]

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "sandbox": True,
                "routes": dict(SANDBOX_ROUTES),
                "instances": len(self.state.instances),
                "requests": len(self.state.requests()),
                "control": [
                    "GET scenarios",
                    "GET requests",
                    "GET codes",
                    "POST script",
                    "POST clock",
                    "POST outage",
                    "DELETE outage",
                    "POST hold",
                    "DELETE hold",
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

    async def codes(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.codes(number=request.query.get("number")))

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

    async def hold(self, request: web.Request) -> web.Response:
        if request.method == "DELETE":
            self.state.end_holds()
            return web.json_response({"hold": False})
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError('send a JSON object: {"route", "seconds", "number"?, "times"?}')
            unknown = set(data) - {"route", "seconds", "number", "times"}
            if unknown:
                raise ValueError(f"unknown hold fields: {sorted(unknown)}")
            if "route" not in data or "seconds" not in data:
                raise ValueError("route and seconds are required")
            route, seconds = data["route"], data["seconds"]
            number, times = data.get("number"), data.get("times", 1)
            if not isinstance(route, str):
                raise ValueError("route must be a string")
            if not (number is None or isinstance(number, str)):
                raise ValueError("number must be a string")
            self.state.hold(route, seconds, number=number, times=times)
        except ValueError as exc:
            return _error(400, "Invalid hold", str(exc))
        return web.json_response(
            {"hold": True, "route": route, "seconds": seconds, "number": number, "times": times}
        )

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return web.json_response({"reset": True})


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


STATE = web.AppKey("plugz_sandbox_state", SandboxState)
ACCESS_LOGGER = _AccessLogger


def create_app(config: SandboxConfig | None = None) -> web.Application:
    """The sandbox as an ``aiohttp.web.Application``; its state is ``app[STATE]``."""
    state = SandboxState(config or SandboxConfig())
    app = web.Application()
    app[STATE] = state
    app.add_routes(ControlAPI(state).routes())
    api = MobileAPI(state)
    app.router.add_route("*", API_PATH, api.handle)
    app.router.add_route("*", INSTANCE_PATH, api.handle_instance)

    async def stop(app: web.Application) -> None:
        state.stopping.set()

    app.on_shutdown.append(stop)
    return app
