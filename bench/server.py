"""A minimal loopback server for the benchmarks: the availability route, a constant answer.

It does as little as it can per request, so the client is what is measured. Run as
``python bench/server.py PORT``; it prints ``ready`` once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from aiohttp import web

ANSWER = (
    b'{"available":true,"smsWaitSeconds":30,"voiceWaitSeconds":0,'
    b'"waOldWaitSeconds":60,"waOldEligible":true}'
)


async def available(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_post(
        "/instances/{instance}/token/{token}/mobile/registration-available", available
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1])))
