"""The dashboard's aiohttp application: one page, its script, and a small JSON API.

``GET /api/summary`` (counts, overdue, workers, lateness, the next hour's windows),
``GET /api/registrations?view=all|overdue&offset=&limit=`` (a page),
``GET /api/registrations/{number}`` (one, with its events) and
``POST /api/registrations/{number}/cancel`` (with ``Authorization: Bearer <token>``).
Every answer is JSON, never cached, and refuses to be framed; Redis away is a 503 that
names the error's kind, not its text.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Collection
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

__all__ = ["DEFAULT_PORT", "LOOPBACK_NAMES", "dashboard_app"]

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
_HOSTS: web.AppKey[frozenset[str] | None] = web.AppKey("hosts")

#: The names of this machine that the page answers to by default.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dashboard_app(
    queue: RegistrationQueue,
    *,
    token: str | None = None,
    refresh: float = 2.0,
    hosts: Collection[str] | None = LOOPBACK_NAMES,
) -> web.Application:
    """The dashboard of ``queue`` as an aiohttp application (serve it, or add it to one's
    own with ``app.add_subapp``). The queue stays the caller's to open and close.

    Args:
        queue: the queue to show (opened or not: it connects on first use).
        token: what ``Authorization: Bearer`` must carry for anything that changes state
            (cancelling a registration); None: the page is read-only.
        refresh: seconds between the page's updates.
        hosts: the names the page answers to (the ``Host`` of a request, its port aside):
            loopback's by default, so that a web page elsewhere cannot reach it by making
            its own name point at 127.0.0.1 (DNS rebinding); None answers to any.

    Raises:
        InvalidArgument: a token shorter than 16 characters, or a refresh not from 0.2 to
            3600 seconds.
    """
    if token is not None and len(token.strip()) < 16:
        raise InvalidArgument("the dashboard's token must be 16 characters or more")
    if not 0.2 <= refresh <= 3600:
        raise InvalidArgument("refresh must be from 0.2 to 3600 seconds")
    app = web.Application(middlewares=[_guarded])
    app[_HOSTS] = None if hosts is None else frozenset(h.lower().strip("[]") for h in hosts)
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


def _host_of(request: web.Request) -> str:
    host = request.headers.get("Host", "")
    if host.startswith("["):  # [::1]:8090
        return host[1:].split("]", 1)[0].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


@web.middleware
async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The same headers on every answer; errors as JSON that names no secret; only the
    names the page answers to."""
    hosts = request.app[_HOSTS]
    try:
        if hosts is not None and _host_of(request) not in hosts:
            raise web.HTTPMisdirectedRequest(
                reason="this dashboard answers to 127.0.0.1 and localhost only"
            )
        response = await handler(request)
    except web.HTTPException as error:
        response = _refused(error.status, error.reason)
        for name in ("Allow", "WWW-Authenticate"):
            if name in error.headers:
                response.headers[name] = error.headers[name]
    except (OSError, RedisError) as error:
        logger.warning("dashboard: Redis failed (%s)", type(error).__name__)
        response = _refused(503, f"Redis is unreachable or failing ({type(error).__name__})")
    except Exception as error:  # a bug of ours: said without its text, logged in full
        logger.exception("dashboard: %s failed", request.path)
        response = _refused(500, f"the dashboard failed ({type(error).__name__})")
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


def _int_arg(request: web.Request, name: str, default: int, most: int, *, least: int = 0) -> int:
    text = request.query.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"{name} must be a whole number") from None
    if not least <= value <= most:
        raise web.HTTPBadRequest(reason=f"{name} must be from {least} to {most}")
    return value


def _shown(status: RegistrationStatus, *, listed: bool) -> dict[str, Any]:
    """What the page shows of a registration: no appeal token (it asks the API to unban
    the number: a credential of the registration's owner), no captcha image; in a list,
    no events and no plan either."""
    said = status.to_dict()
    said.pop("captcha", None)
    said["appeal"] = status.appeal_token is not None  # whether one is kept, not the token
    plan = said.get("plan")
    if listed:
        said.pop("events", None)
        said.pop("plan", None)
    elif isinstance(plan, dict):
        plan.pop("appeal_token", None)
    return said


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
    await queue.connect()
    # Five reads, each its own round trip: at once, not one after the other.
    counts, total, overdue, workers, upcoming = await asyncio.gather(
        queue.counts(),
        queue.size(),
        queue.overdue(limit=1),
        queue.workers(),
        queue.upcoming(TIMELINE, limit=TIMELINE_READ),
    )
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
    limit = _int_arg(request, "limit", 50, PAGE_MOST, least=1)
    if view == "all":
        page = await queue.page(offset=offset, limit=limit)
    elif view == "overdue":
        page = await queue.overdue(offset=offset, limit=limit)
    else:
        raise web.HTTPBadRequest(reason="view is 'all' or 'overdue'")
    return web.json_response(
        {
            "view": view,
            "limit": limit,
            "total": page.total,
            "offset": page.offset,
            "registrations": [_shown(status, listed=True) for status in page.statuses],
        }
    )


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
    return web.json_response(_shown(status, listed=False))


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
        raise web.HTTPUnauthorized(
            reason="the dashboard's token is missing or wrong",
            headers={"WWW-Authenticate": 'Bearer realm="plugz-async dashboard"'},
        )


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
    return web.json_response(_shown(status, listed=False))
