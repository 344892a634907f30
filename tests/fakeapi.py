"""A small stand-in of the mobile-registration API, served on loopback for the tests.

It writes the wire format (camelCase JSON) itself and imports nothing from the
SDK, so tests against it check the client instead of mirroring its mistakes. It
answers like the real API by default (the documented checks and the observed
credential answers), and plays scripted replies (faults, odd bodies) when told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from typing import Any

import attrs
from aiohttp import web

INSTANCE_ID = "3C0FFEE-instance"
# Secrets with characters that change under URL encoding, to test both forms.
INSTANCE_TOKEN = "tok/SECRET+instance=42"
CLIENT_TOKEN = "ct-SECRET-account+token/7"

NOT_SET: Any = object()


@attrs.define
class Reply:
    """One scripted answer."""

    status: int = 200
    json: Any = NOT_SET
    body: bytes | str | None = None
    headers: dict[str, str] = attrs.Factory(dict)
    delay: float = 0.0
    drop: bool = False
    chunked: bool = False


@attrs.frozen
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    raw_path: str
    headers: dict[str, str]
    body: bytes


class FakeAPI:
    def __init__(self) -> None:
        self.base_url = ""  # set once the server listens
        self.script: deque[Reply] = deque()
        self.requests: list[Seen] = []
        self.answers: dict[str, dict[str, Any]] = {}
        self.release = asyncio.Event()
        self.received = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_route(
            "*", "/instances/{instance}/token/{token}/mobile/{route}", self.handle
        )

    def then(self, *replies: Reply) -> FakeAPI:
        self.script.extend(replies)
        return self

    @property
    def count(self) -> int:
        return len(self.requests)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Seen(request.method, request.path, request.raw_path, dict(request.headers), body)
        )
        self.received.set()
        if self.script:
            return await self.play(request, self.script.popleft())
        return self.answer(request, body)

    async def play(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        if reply.delay:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.release.wait(), reply.delay)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if reply.chunked:
            response = web.StreamResponse(status=reply.status, headers=reply.headers)
            response.enable_chunked_encoding()
            await response.prepare(request)
            data = reply.body.encode() if isinstance(reply.body, str) else reply.body or b""
            for start in range(0, len(data), 1024):
                await response.write(data[start : start + 1024])
            await response.write_eof()
            return response
        if reply.json is not NOT_SET:
            return web.json_response(reply.json, status=reply.status, headers=reply.headers)
        return web.Response(
            status=reply.status,
            body=reply.body.encode() if isinstance(reply.body, str) else reply.body,
            headers=reply.headers,
            content_type=None if "Content-Type" in reply.headers else "text/html",
        )

    def answer(self, request: web.Request, body: bytes) -> web.Response:
        """What the real API answers, as documented and observed."""
        if request.method != "POST":
            return web.json_response({"error": "Method Not Allowed"}, status=405)
        if request.content_type != "application/json":
            return web.json_response({"error": "Unsupported Media Type"}, status=415)
        token = request.headers.get("Client-Token")
        if not token:
            return web.json_response({"error": "your client-token is not configured"}, status=400)
        if token != CLIENT_TOKEN:
            # The real server echoes the refused secret.
            return web.json_response({"error": f"Client-Token {token} not allowed"}, status=403)
        if (
            request.match_info["instance"] != INSTANCE_ID
            or request.match_info["token"] != INSTANCE_TOKEN
        ):
            return web.json_response(
                {"error": "NOT_FOUND", "message": "Instance not found"}, status=200
            )
        try:
            data = json.loads(body)
        except ValueError:
            return web.json_response({"error": "Invalid body"}, status=400)
        if not (
            isinstance(data, dict)
            and isinstance(data.get("ddi"), str)
            and isinstance(data.get("phone"), str)
            and data["ddi"].isdigit()
            and data["phone"].isdigit()
        ):
            return web.json_response({"error": "ddi and phone are required"}, status=400)
        number = "+" + data["ddi"] + data["phone"]
        return web.json_response(
            self.answers.get(
                number,
                {
                    "available": True,
                    "smsWaitSeconds": 0,
                    "voiceWaitSeconds": 0,
                    "waOldWaitSeconds": 0,
                    "waOldEligible": True,
                },
            )
        )
