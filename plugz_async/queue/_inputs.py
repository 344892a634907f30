"""What the queue keeps beside the registrations' hashes, and writes without fencing.

* ``input:{number}:{kind}``: a code, captcha text or PIN given and not used yet, or a
  request to cancel (`Inputs`). Kept apart from the hash, so that giving it never makes
  a worker's write stale.
* ``workers`` (hash): what each worker says of itself at every heartbeat, with when it
  said it (`WorkerRecords`), for ``queue workers``.

Keys are under ``plugz:{queue}:`` (`KeySpace`), as the registrations' are.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from typing import Any, cast

import redis.asyncio as aioredis

from ._record import as_text

__all__ = [
    "CANCEL",
    "CANCELLED_NOTE",
    "CANCEL_KEPT",
    "INPUT_KEPT",
    "WORKERS_KEPT",
    "Inputs",
    "KeySpace",
    "WorkerRecords",
]

#: Seconds a code, captcha text or PIN given is kept when no step uses it.
INPUT_KEPT = 3600
#: The input kind of a request to cancel, and the error a cancelled registration keeps.
CANCEL = "cancel"
CANCELLED_NOTE = "cancelled by an operator (queue cancel); no further code request"
#: Seconds a request to cancel is kept for a worker to act on.
CANCEL_KEPT = 7 * 86_400
#: Seconds a worker's record is kept after it was last seen.
WORKERS_KEPT = 86_400.0

_DROP_INPUT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class KeySpace:
    """One queue's keys in one Redis database."""

    def __init__(self, redis: aioredis.Redis, *, queue: str) -> None:
        self.redis = redis
        self.queue = queue
        self.prefix = f"plugz:{queue}:"

    def key(self, name: str) -> str:
        return self.prefix + name


class Inputs(KeySpace):
    """Input from people: kept apart, so that giving it never races a worker's write."""

    def __init__(self, redis: aioredis.Redis, *, queue: str) -> None:
        super().__init__(redis, queue=queue)
        self._drop_input = redis.register_script(_DROP_INPUT)

    async def set_input(self, number: str, kind: str, text: str, *, keep: int = INPUT_KEPT) -> None:
        """Keep a code, captcha text or PIN (``kind``) for the step that wants it (or a
        request to cancel, ``kind="cancel"``), for ``keep`` seconds."""
        await self.redis.set(self.key(f"input:{number}:{kind}"), text, ex=keep)

    async def peek_input(self, number: str, kind: str) -> str | None:
        """The ``kind`` of input given and not used yet."""
        raw = await self.redis.get(self.key(f"input:{number}:{kind}"))
        return None if raw is None else as_text(raw)

    async def drop_input(self, number: str, kind: str, used: str) -> None:
        """Forget the input once used, unless newer input replaced it meanwhile."""
        await self._drop_input(keys=[self.key(f"input:{number}:{kind}")], args=[used])


class WorkerRecords(KeySpace):
    """Workers: who runs the queue, and when each was last seen."""

    async def note_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        """Keep what a worker says of itself (every heartbeat), with the time it said it."""
        entry = json.dumps({**info, "id": worker_id, "seen": time.time()})
        await cast("Awaitable[int]", self.redis.hset(self.key("workers"), worker_id, entry))

    async def forget_old_workers(self) -> None:
        """Drop the records of workers not seen for a day (each worker does it as it
        starts)."""
        now = time.time()
        for name, said in (await self._workers()).items():
            if now - float(said.get("seen", 0)) > WORKERS_KEPT:
                await cast("Awaitable[int]", self.redis.hdel(self.key("workers"), name))

    async def workers(self) -> list[dict[str, Any]]:
        """Every worker seen in the last day: what it said of itself, last seen first."""
        found = list((await self._workers()).values())
        return sorted(found, key=lambda w: -float(w.get("seen", 0)))

    async def _workers(self) -> dict[str, dict[str, Any]]:
        raw = await cast("Awaitable[dict[bytes, bytes]]", self.redis.hgetall(self.key("workers")))
        found = {}
        for name, value in raw.items():
            try:
                found[as_text(name)] = json.loads(value)
            except ValueError:
                continue
        return found
