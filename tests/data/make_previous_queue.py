"""Write tests/data/previous_queue.json: a queue's Redis as the SDK before lines (0.x,
commit ad70bf3) left it, for tests/test_queue_lines.py.

Run it with that version's code first on the path, so that what is in Redis is what the
previous version wrote, not what this one would::

    git archive ad70bf3 plugz_async | tar -x -C /tmp/previous
    PYTHONPATH=/tmp/previous python tests/data/make_previous_queue.py

It starts a redis-server and the sandbox, registers numbers in the old 8-digit form (and
one in the current form), runs a worker until each stands where the test wants it, and
dumps every key: hashes, sorted sets, strings, streams and lists, with their TTLs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

import plugz_async as pz
from plugz_async.queue import QueueWorker, RegistrationQueue
from plugz_async.sandbox import SandboxConfig, running
from plugz_async.testing._redis_server import RedisServer

OUT = Path(__file__).with_name("previous_queue.json")

#: Old 8-digit forms: one waits for its code, one ended (the sandbox bans it: an appeal),
#: one not yet run; and one registered in the current form.
WAITING = "+55 44 9999-9999"
ENDED = "+55 21 8765-4321"
QUEUED = "+55 31 7654-3210"
CURRENT = "+55 41 99876-5432"


def _text(value: bytes) -> str | dict[str, str]:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode()}


async def dump(redis: Any) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = []
    for key in sorted(await redis.keys("*")):
        kind = (await redis.type(key)).decode()
        entry: dict[str, Any] = {"key": _text(key), "type": kind, "pttl": await redis.pttl(key)}
        if kind == "hash":
            raw = await redis.hgetall(key)
            entry["value"] = {_text(k): _text(v) for k, v in sorted(raw.items())}
        elif kind == "zset":
            entry["value"] = [
                [_text(m), s] for m, s in await redis.zrange(key, 0, -1, withscores=True)
            ]
        elif kind == "string":
            entry["value"] = _text(await redis.get(key))
        elif kind == "list":
            entry["value"] = [_text(v) for v in await redis.lrange(key, 0, -1)]
        elif kind == "set":
            entry["value"] = sorted(_text(v) for v in await redis.smembers(key))
        elif kind == "stream":
            entry["value"] = [
                [_text(i), {_text(k): _text(v) for k, v in f.items()}]
                for i, f in await redis.xrange(key)
            ]
        else:  # pragma: no cover - the queue writes no other kind
            raise SystemExit(f"unexpected {kind} at {key!r}")
        keys.append(entry)
    return keys


async def main() -> None:
    config = SandboxConfig(
        instance_id="A",
        instance_token="t" * 32,
        client_token="c" * 32,
        instances=4,
        wait_scale=0.001,
    )
    with RedisServer(sys.argv[1] if len(sys.argv) > 1 else "redis-server") as server:
        async with running(config) as sandbox, RegistrationQueue(server.url, environ={}) as queue:
            names = list(sandbox.instances())
            worker = QueueWorker(
                server.url,
                credentials=sandbox.instances(),
                client_token=sandbox.client_token,
                base_url=sandbox.base_url,
                heartbeat=2,
                sweep_interval=1,
                rate_limit=None,
                environ={},
                input_timeout=3600.0,
            )
            task = asyncio.create_task(worker.run())
            await queue.register(WAITING, instance=names[0])
            await queue.register(ENDED, instance=names[1])
            await queue.register(CURRENT, instance=names[2])
            while True:
                statuses = [await queue.status(n) for n in (WAITING, ENDED, CURRENT)]
                if statuses[1].wants == "code" and sandbox.codes(
                    number=pz.PhoneNumber.parse(ENDED).e164[1:]
                ):
                    code = sandbox.codes(number=pz.PhoneNumber.parse(ENDED).e164[1:])[-1]
                    await queue.submit_code(ENDED, code["code"])
                if statuses[0].wants == "code" and statuses[1].done and statuses[2].wants == "code":
                    break
                await asyncio.sleep(0.05)
            await worker.stop()
            await task
            await queue.register(QUEUED, instance=names[3])  # no worker runs it
            redis = aioredis.from_url(server.url)
            try:
                keys = await dump(redis)
            finally:
                await redis.aclose()
    OUT.write_text(json.dumps({"version": pz.__version__, "keys": keys}, indent=1) + "\n")
    print(f"{OUT}: {len(keys)} keys")


if __name__ == "__main__":
    asyncio.run(main())
