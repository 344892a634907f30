"""The fault player: how the sandbox sends an answer that is not a plain one.

It owns `Reply` (one scripted answer, from ``then()`` or ``POST /_sandbox/script``)
and plays it on the wire: after a delay, as a dropped connection, in chunks, cut
halfway, trickled a byte at a time, or as a large body made as it is sent. The
faults of the test numbers (`~plugz_async.sandbox.Fault`: an error status with a
``Retry-After``, a slow answer, broken JSON...) are played the same way, by
`play_fault`.

Every wait here is cut short when the sandbox stops (the ``stopping`` event), so a
test never waits for a slow answer it no longer wants; `pause` is that wait (the
state's held answers wait with it too).

Like the rest of the server, this module imports nothing from the client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import attrs
from aiohttp import web

from ._scenarios import Fault

__all__ = ["HTML_503", "NO_JSON", "Reply", "pause", "play", "play_fault"]

# What a gateway in trouble sends: the outage and the 5xx test numbers answer with it.
HTML_503 = (
    "<html><head><title>503 Service Temporarily Unavailable</title></head>"
    "<body><center><h1>503 Service Temporarily Unavailable</h1></center></body></html>"
)


class _NoJSON:
    def __repr__(self) -> str:
        return "NO_JSON"


# A reply's ``json`` when it has none (``None`` is a JSON value: ``null``).
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


async def pause(seconds: float, *until: asyncio.Event) -> None:
    """Wait ``seconds``, or less if one of the events ``until`` is set meanwhile (the
    sandbox's ``stopping``, say)."""
    waits = [asyncio.ensure_future(event.wait()) for event in until]
    if not waits:
        await asyncio.sleep(seconds)
        return
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


async def play(
    request: web.Request, reply: Reply, *, stopping: asyncio.Event
) -> web.StreamResponse:
    """Answer ``request`` with ``reply``, faults and all."""
    if reply.delay:
        await pause(reply.delay, stopping)
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
                await pause(reply.trickle, stopping)
        else:
            for start in range(0, len(data), 1024):
                await response.write(data[start : start + 1024])
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client went away (as a client refusing a huge body does)
    return response


async def play_fault(
    request: web.Request,
    fault: Fault,
    *,
    stopping: asyncio.Event,
    slow_seconds: float,
    answer: Mapping[str, Any],
) -> web.StreamResponse:
    """Answer ``request`` with a test number's ``fault``.

    Args:
        request: the request to answer.
        fault: the misbehaviour to play.
        stopping: set when the sandbox stops (cuts the ``slow`` wait short).
        slow_seconds: how long a ``slow`` fault waits before answering.
        answer: the number's normal answer, which a ``slow`` fault sends in the end.
    """
    if fault.kind == "status":
        headers = {}
        if fault.retry_after == "seconds":
            headers["Retry-After"] = "1"
        elif fault.retry_after == "date":
            when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=2)
            headers["Retry-After"] = format_datetime(when, usegmt=True)
        if fault.status == 429:
            reply = Reply(429, json={"error": "Too Many Requests"}, headers=headers)
            return await play(request, reply, stopping=stopping)
        reply = Reply(fault.status, body=HTML_503, headers=headers)
        return await play(request, reply, stopping=stopping)
    if fault.kind == "slow":
        await pause(slow_seconds, stopping)
        return web.json_response(answer)
    if fault.kind == "drop":
        return await play(request, Reply(drop=True), stopping=stopping)
    if fault.kind == "broken_json":
        reply = Reply(
            body='{"available": true, "smsWaitSec', headers={"Content-Type": "application/json"}
        )
        return await play(request, reply, stopping=stopping)
    return web.json_response({"error": "INTERNAL", "message": "registration check failed"})
