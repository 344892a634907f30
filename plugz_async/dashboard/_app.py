"""The dashboard's aiohttp application: one page, its script, and a small JSON API.

``GET /api/summary`` (counts, overdue, workers, lateness, the next hour's windows),
``GET /api/registrations?view=all|overdue&offset=&limit=`` (a page),
``GET /api/registrations/{number}`` (one, with its events) and
``POST /api/registrations/{number}/cancel`` (with ``Authorization: Bearer <token>``).
Every answer is JSON, never cached, and refuses to be framed; Redis away is a 503 that
names the error's kind, not its text.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from plugz_async._errors import (
    InvalidArgument,
    InvalidPhoneNumber,
    PlugzError,
    RegistrationStateError,
    UnknownRegistrationError,
)
from plugz_async._registration import RegistrationStep
from plugz_async._stored import to_iso
from plugz_async.queue import Lateness, RegistrationQueue, RegistrationStatus, WorkerStatus
from plugz_async.queue._status import OVERDUE_AFTER

__all__ = ["DEFAULT_PORT", "dashboard_app"]

logger = logging.getLogger("plugz_async.dashboard")

#: The port ``plugz-async dashboard`` serves on unless told otherwise.
DEFAULT_PORT = 8090

#: The timeline's span (seconds): the channel windows of the next hour.
TIMELINE = 3600.0

#: Registrations read for the timeline at most (the count says how many there are).
TIMELINE_READ = 500

#: The longest page of the list.
PAGE_MOST = 200

#: The files of the page, served as they are.
_STATIC = {
    "app.js": "application/javascript",
    "app.css": "text/css",
}

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}

_QUEUE: web.AppKey[RegistrationQueue] = web.AppKey("queue", RegistrationQueue)
_TOKEN: web.AppKey[str] = web.AppKey("token", str)
_REFRESH: web.AppKey[float] = web.AppKey("refresh", float)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dashboard_app(
    queue: RegistrationQueue, *, token: str | None = None, refresh: float = 2.0
) -> web.Application:
    """The dashboard of ``queue`` as an aiohttp application (serve it, or add it to one's
    own with ``app.add_subapp``). The queue stays the caller's to open and close.

    Args:
        queue: the queue to show (opened or not: it connects on first use).
        token: what ``Authorization: Bearer`` must carry for anything that changes state
            (cancelling a registration); None: the page is read-only.
        refresh: seconds between the page's updates.

    Raises:
        InvalidArgument: a token shorter than 16 characters, or a refresh below 0.2 s.
    """
    if token is not None and len(token.strip()) < 16:
        raise InvalidArgument("the dashboard's token must be 16 characters or more")
    if not refresh >= 0.2:
        raise InvalidArgument("refresh must be 0.2 seconds or more")
    app = web.Application(middlewares=[_guarded])
    app[_QUEUE] = queue
    app[_TOKEN] = "" if token is None else token.strip()
    app[_REFRESH] = float(refresh)
    app.router.add_get("/", _page)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/summary", _summary)
    app.router.add_get("/api/registrations", _registrations)
    app.router.add_get("/api/registrations/{number}", _registration)
    app.router.add_post("/api/registrations/{number}/cancel", _cancel)
    return app


# -- the answers' shape -----------------------------------------------------------------------


def _refused(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The same headers on every answer; errors as JSON that names no secret."""
    try:
        response = await handler(request)
    except web.HTTPException as error:
        response = _refused(error.status, error.reason)
    except (OSError, RedisError) as error:
        logger.warning("dashboard: Redis failed (%s)", type(error).__name__)
        response = _refused(503, f"Redis is unreachable or failing ({type(error).__name__})")
    response.headers.update(_HEADERS)
    return response


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static").joinpath(name).read_bytes()


async def _page(request: web.Request) -> web.Response:
    html = _read("index.html").decode()
    queue = request.app[_QUEUE]
    html = html.replace("{{queue}}", _escape(queue.name))
    html = html.replace("{{refresh}}", f"{request.app[_REFRESH]:g}")
    html = html.replace("{{writable}}", "true" if request.app[_TOKEN] else "false")
    return web.Response(text=html, content_type="text/html")


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kind = _STATIC.get(name)
    if kind is None:
        raise web.HTTPNotFound(reason="no such file")
    return web.Response(body=_read(name), content_type=kind)


# -- reading ----------------------------------------------------------------------------------


def _int_arg(request: web.Request, name: str, default: int, most: int) -> int:
    text = request.query.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"{name} must be a whole number") from None
    if not 0 <= value <= most:
        raise web.HTTPBadRequest(reason=f"{name} must be from 0 to {most}")
    return value


def _worker_dict(worker: WorkerStatus, now: datetime) -> dict[str, Any]:
    said = worker.to_dict()
    said["seen_ago"] = round((now - worker.last_seen).total_seconds(), 1)
    said["state"] = (
        "alive" if worker.alive else "stopped" if worker.stopped_at is not None else "gone"
    )
    return said


def _window(status: RegistrationStatus) -> dict[str, Any] | None:
    """A code request's moment: its channel window opening."""
    if status.step is not RegistrationStep.REQUEST_CODE or status.next_at is None:
        return None
    return {"number": status.number, "channel": status.channel, "at": to_iso(status.next_at)}


async def _summary(request: web.Request) -> web.Response:
    queue = request.app[_QUEUE]
    now = queue.clock.now()
    counts = await queue.counts()
    total = await queue.size()
    overdue = await queue.overdue(limit=1)
    workers = await queue.workers()
    upcoming = await queue.upcoming(TIMELINE, limit=TIMELINE_READ)
    lateness = Lateness.merge(w.lateness.to_dict() for w in workers if w.alive)
    windows = [w for w in map(_window, upcoming.statuses) if w is not None]
    return web.json_response(
        {
            "queue": queue.name,
            "now": to_iso(now),
            "total": total,
            "counts": counts,
            "running": sum(n for status, n in counts.items() if status in _STEPS),
            "overdue": {"total": overdue.total, "after": OVERDUE_AFTER},
            "workers": [_worker_dict(w, now) for w in workers],
            "lateness": {kind: s.to_dict() for kind, s in lateness.summaries().items()},
            "timeline": {
                "start": to_iso(now),
                "end": to_iso(now + timedelta(seconds=TIMELINE)),
                "due": upcoming.total,
                "read": len(upcoming.statuses),
                "windows": windows,
            },
        }
    )


_STEPS = {step.value for step in RegistrationStep if step is not RegistrationStep.DONE}


async def _registrations(request: web.Request) -> web.Response:
    queue = request.app[_QUEUE]
    view = request.query.get("view", "all")
    offset = _int_arg(request, "offset", 0, 10**9)
    limit = max(1, _int_arg(request, "limit", 50, PAGE_MOST))
    if view == "all":
        page = await queue.page(offset=offset, limit=limit)
    elif view == "overdue":
        page = await queue.overdue(offset=offset, limit=limit)
    else:
        raise web.HTTPBadRequest(reason="view is 'all' or 'overdue'")
    answer = page.to_dict()
    for shown in answer["registrations"]:
        shown.pop("events", None)  # a page lists; one registration's events are asked for
        shown.pop("captcha", None)
    return web.json_response({"view": view, "limit": limit, **answer})


def _number(request: web.Request) -> str:
    number = request.match_info["number"]
    try:
        return request.app[_QUEUE].parse_number(number).e164
    except (InvalidPhoneNumber, InvalidArgument):
        raise web.HTTPBadRequest(reason="not a phone number") from None


async def _registration(request: web.Request) -> web.Response:
    queue = request.app[_QUEUE]
    try:
        status = await queue.status(_number(request))
    except UnknownRegistrationError:
        raise web.HTTPNotFound(reason="the queue has no registration of this number") from None
    return web.json_response(status.to_dict())


# -- changing ---------------------------------------------------------------------------------


def _authorised(request: web.Request) -> None:
    token = request.app[_TOKEN]
    if not token:
        raise web.HTTPForbidden(
            reason="this dashboard is read-only: start it with PLUGZ_DASHBOARD_TOKEN set"
            " (or --token-file) to cancel from the page"
        )
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        value.strip().encode(), token.encode()
    ):
        raise web.HTTPUnauthorized(reason="the dashboard's token is missing or wrong")


async def _cancel(request: web.Request) -> web.Response:
    _authorised(request)
    queue = request.app[_QUEUE]
    number = _number(request)
    try:
        status = await queue.cancel(number)
    except UnknownRegistrationError:
        raise web.HTTPNotFound(reason="the queue has no registration of this number") from None
    except RegistrationStateError as error:
        raise web.HTTPConflict(reason=str(error)) from None
    except PlugzError as error:  # pragma: no cover - cancel raises only the two above
        raise web.HTTPBadRequest(reason=type(error).__name__) from None
    logger.info("dashboard: cancel asked for %s", number)
    return web.json_response(status.to_dict())
