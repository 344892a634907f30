"""Where queued registrations live: one Redis hash per line, written by compare-and-set.

A registration is kept under its line (`PhoneNumber.line`, in E.164): the two ways a
Brazilian mobile is written (``+55 44 9999-9999``, ``+55 44 99999-9999``) are one line, and
one registration. Its state keeps the number as it was first written, which is what is sent.
Records written before this (by version 0.1.0) are kept under the number as then written,
which for an old-form number is not its line: they are found under either form (`find`),
never moved, and the one that ends is started afresh under its line. Wherever a number
names a record below (``{number}``), it is the key it is kept under.

Keys, under ``plugz:{queue}:``:

* ``reg:{number}`` (hash): ``state`` (the `RegistrationState` as JSON), ``version``
  (bumped by every write), ``status`` (the step, or the outcome once done), ``done``,
  ``instance``, ``step_id`` and ``due`` (the one step allowed to run next, and when),
  ``intent`` (a code request about to be or being sent), ``error`` (the last error a step met),
  ``errors`` (errors in a row), ``created`` and ``updated``, ``run`` (the Redis server's
  ``run_id`` when it was written: a record written under another run has been through a
  restart, a failover or a rollback to a snapshot, and may have lost a later write).
* ``counts`` (hash): registrations per status.
* ``numbers`` (sorted set): every number, by when it was registered.
* ``due`` (sorted set): the unfinished numbers, by when their next step is due.
* ``finished`` (sorted set): the finished numbers, by when they finished (``prune``).
* ``instance:{id}``: the number the instance registers now.
* ``input:{number}:{kind}`` (a code, captcha text or PIN given and not used yet) and
  ``workers`` (the workers' records): kept beside the hashes, unfenced (`._inputs`).
* ``events`` (stream): every event of every registration, as they are written.
* ``code_wait_floor``: the shortest wait a code request was seen to start, when shorter
  than the workers' ``code_wait_floor`` (the premise the recovery of a lost answer rests on).

Every write is one Lua script that first compares ``version`` with the version the
writer read, and does nothing when another write came in between: a worker that
stalled past its heartbeat, while another took its step over, cannot overwrite what
the other wrote (`StaleWriteError`). Nothing here holds a secret: instance tokens
never reach Redis.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis

from plugz_async._errors import InstanceBusyError, StaleWriteError
from plugz_async._phone import PhoneNumber
from plugz_async._registration import RegistrationState

# Re-exported: the step runner and the CLI import these names from here.
from ._inputs import (
    CANCEL,
    CANCEL_KEPT,
    CANCELLED_NOTE,
    INPUT_KEPT,
    WORKERS_KEPT,
    Inputs,
    WorkerRecords,
)
from ._record import (
    CANCELLED,
    FAILED,
    CodeIntent,
    Record,
    ServerNow,
    as_text,
    event_json,
    new_step_id,
    record_of,
    status_of,
)

__all__ = [
    "CANCEL",
    "CANCELLED",
    "CANCELLED_NOTE",
    "CANCEL_KEPT",
    "FAILED",
    "INPUT_KEPT",
    "WORKERS_KEPT",
    "CodeIntent",
    "Record",
    "ServerNow",
    "Store",
    "new_step_id",
]

#: How many events the ``events`` stream keeps (about; Redis trims in whole nodes).
EVENTS_KEPT = 100_000

#: The Redis server's run id, in a script (it changes with every start of the server).
_RUN_ID = """
local function RUN_ID()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end
"""

_NOW = (
    _RUN_ID
    + """
local t = redis.call('TIME')
local aof = string.match(redis.call('INFO', 'persistence'), 'aof_enabled:(%d)')
return {t[1], t[2], RUN_ID(), aof}
"""
)

_LOWER = """
local v = redis.call('GET', KEYS[1])
if not v or tonumber(ARGV[1]) < tonumber(v) then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

_CREATE = (
    _RUN_ID
    + """
-- KEYS: reg, counts, numbers, due, instance-key, events, finished, the old form's reg
-- ARGV: number, instance, state, status, step_id, due, now, events-json, kept, prefix,
--       restart (a finished registration starts afresh), the old form ('' if none)
local reg = KEYS[1]
local restart = ARGV[11] == '1'
local existing = redis.call('HMGET', reg, 'done', 'version', 'status', 'instance')
if existing[2] and (existing[1] == '0' or not restart) then
  return {0, existing[2]}
end
-- A record the SDK kept under the line's old form, before it keyed records by line.
local old = {false, false, false, false}
if ARGV[12] ~= '' then
  old = redis.call('HMGET', KEYS[8], 'done', 'version', 'status', 'instance')
  if old[2] and (old[1] == '0' or not restart) then
    return {0, old[2]}
  end
end
local holder = redis.call('GET', KEYS[5])
if holder and holder ~= ARGV[1] and holder ~= ARGV[12] then
  local other = redis.call('HGET', ARGV[10] .. 'reg:' .. holder, 'done')
  if other == '0' then
    return {-1, holder}
  end
end
local function forget(number, fields)
  redis.call('HINCRBY', KEYS[2], fields[3], -1)
  if fields[4] and fields[4] ~= ARGV[2] then
    local key = ARGV[10] .. 'instance:' .. fields[4]
    if redis.call('GET', key) == number then redis.call('DEL', key) end
  end
  redis.call('DEL', ARGV[10] .. 'input:' .. number .. ':code',
    ARGV[10] .. 'input:' .. number .. ':captcha', ARGV[10] .. 'input:' .. number .. ':pin')
end
local version = 1
if existing[2] then
  version = tonumber(existing[2]) + 1
  forget(ARGV[1], existing)
end
if old[2] then
  -- Started afresh under the line: the old form's finished record goes.
  version = math.max(version, tonumber(old[2]) + 1)
  forget(ARGV[12], old)
  redis.call('DEL', KEYS[8])
  redis.call('ZREM', KEYS[3], ARGV[12])
  redis.call('ZREM', KEYS[7], ARGV[12])
end
redis.call('DEL', reg)
redis.call('HSET', reg, 'state', ARGV[3], 'version', version, 'status', ARGV[4], 'done', '0',
  'instance', ARGV[2], 'step_id', ARGV[5], 'due', ARGV[6], 'created', ARGV[7],
  'updated', ARGV[7], 'errors', 0, 'run', RUN_ID())
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('SET', KEYS[5], ARGV[1])
for _, event in ipairs(cjson.decode(ARGV[8])) do
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[9], '*', 'number', ARGV[1],
    'version', version, 'status', ARGV[4], 'event', event)
end
return {1, tostring(version)}
"""
)

_PRUNE = """
-- KEYS: finished, numbers, counts; ARGV: prefix, finished before (Unix time), at most
local gone = 0
local finished = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
for _, number in ipairs(finished) do
  local reg = ARGV[1] .. 'reg:' .. number
  local fields = redis.call('HMGET', reg, 'done', 'status')
  if fields[1] == '1' then
    local input = ARGV[1] .. 'input:' .. number .. ':'
    redis.call('DEL', reg, input .. 'code', input .. 'captcha', input .. 'pin')
    redis.call('HINCRBY', KEYS[3], fields[2], -1)
    redis.call('ZREM', KEYS[2], number)
    gone = gone + 1
  end
  redis.call('ZREM', KEYS[1], number)
end
return {gone, #finished}
"""

_WRITE = (
    _RUN_ID
    + """
-- KEYS: reg, counts, due, instance-key, events, finished
-- ARGV: expected version, number, status, done, now, events-json, kept, fields-json,
--       deleted-json, stamp the run id ('1') or keep the stored one
local reg = KEYS[1]
local current = redis.call('HMGET', reg, 'version', 'status')
if current[1] ~= ARGV[1] then
  return -1
end
local version = tonumber(current[1]) + 1
local fields = cjson.decode(ARGV[8])
local args = {'version', version, 'status', ARGV[3], 'done', ARGV[4], 'updated', ARGV[5]}
if ARGV[10] == '1' then
  table.insert(args, 'run')
  table.insert(args, RUN_ID())
end
for name, value in pairs(fields) do
  table.insert(args, name)
  table.insert(args, value)
end
redis.call('HSET', reg, unpack(args))
for _, name in ipairs(cjson.decode(ARGV[9])) do
  redis.call('HDEL', reg, name)
end
if current[2] ~= ARGV[3] then
  redis.call('HINCRBY', KEYS[2], current[2], -1)
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
if ARGV[4] == '1' then
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('ZADD', KEYS[6], ARGV[5], ARGV[2])
  if redis.call('GET', KEYS[4]) == ARGV[2] then redis.call('DEL', KEYS[4]) end
elseif fields['due'] then
  redis.call('ZADD', KEYS[3], fields['due'], ARGV[2])
end
for _, event in ipairs(cjson.decode(ARGV[6])) do
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', 'number', ARGV[2],
    'version', version, 'status', ARGV[3], 'event', event)
end
return version
"""
)


class Store(Inputs, WorkerRecords):
    """Reads and writes queued registrations in one Redis database (and, through its
    bases, the input given and the workers' records)."""

    def __init__(self, redis: aioredis.Redis, *, queue: str) -> None:
        super().__init__(redis, queue=queue)
        self._create = redis.register_script(_CREATE)
        self._write = redis.register_script(_WRITE)
        self._prune = redis.register_script(_PRUNE)
        self._now = redis.register_script(_NOW)
        self._lower = redis.register_script(_LOWER)

    async def create(
        self,
        state: RegistrationState,
        *,
        instance: str,
        step_id: str,
        due: float,
        restart: bool = False,
    ) -> tuple[bool, int]:
        """Store a new registration, unless one of this number exists (unfinished, or
        finished and ``restart`` is false).

        Returns whether it was created, and the version now stored.

        Raises:
            InstanceBusyError: the instance registers another number.
        """
        forms = [form.e164 for form in state.number.forms]
        number, old = forms[0], forms[1] if len(forms) > 1 else ""
        created, value = await self._create(
            keys=[
                self.key(f"reg:{number}"),
                self.key("counts"),
                self.key("numbers"),
                self.key("due"),
                self.key(f"instance:{instance}"),
                self.key("events"),
                self.key("finished"),
                self.key(f"reg:{old or number}"),
            ],
            args=[
                number,
                instance,
                json.dumps(state.to_dict()),
                status_of(state),
                step_id,
                repr(due),
                repr(time.time()),
                json.dumps([event_json(e) for e in state.events]),
                EVENTS_KEPT,
                self.prefix,
                "1" if restart else "0",
                old,
            ],
        )
        text = value.decode() if isinstance(value, bytes) else str(value)
        if created == -1:
            holder = await self.load(text)  # named as it was first queued
            raise InstanceBusyError(instance, text if holder is None else holder.state["number"])
        return created == 1, int(text)

    async def find(self, phone: PhoneNumber) -> Record | None:
        """The registration of ``phone``'s line, kept under its line or (written before
        records were keyed by line) under another form of it; or None.

        Version 0.1.0 could queue both forms of a line, as two records: then the
        unfinished one is found (the one still to look at, cancel or give a code), and
        of two alike the one kept under ``phone`` as written, so each stays reachable.
        """
        forms = [form.e164 for form in phone.forms]
        if len(forms) == 1:
            return await self.load(forms[0])
        forms.sort(key=lambda form: form != phone.e164)  # as written first
        records = await self.load_many(forms)
        return next((r for r in records if not r.done), records[0] if records else None)

    async def load(self, number: str) -> Record | None:
        """The registration kept under ``number`` (its key: E.164), or None."""
        raw = await cast(
            "Awaitable[dict[bytes, bytes]]", self.redis.hgetall(self.key(f"reg:{number}"))
        )
        return None if not raw else record_of(number, raw)

    async def write(
        self,
        record: Record,
        state: RegistrationState,
        *,
        before: RegistrationState | None = None,
        step_id: str | None = None,
        due: float | None = None,
        intent: CodeIntent | None = None,
        keep_intent: bool = False,
        error: str | None = None,
        errors: int | None = None,
        keep_run: bool = False,
    ) -> int:
        """Write ``state`` over ``record``, if nothing was written since it was read.

        The events ``state`` has that ``before`` (or the stored state) had not go to the
        events stream. ``step_id`` and ``due`` name the next step; ``intent`` records a
        code request about to go out (``keep_intent``: leave the stored one). ``error``
        records a step's error (one more in a row, or ``errors``); with neither, the
        errors are cleared. The record is stamped with the Redis server's run id, unless
        ``keep_run`` (a step tried again without having looked at the server: a record
        from before a restart must still be checked). Returns the new version.

        Raises:
            StaleWriteError: another write came first.
        """
        fields: dict[str, str] = {"state": json.dumps(state.to_dict())}
        deleted: list[str] = []
        if step_id is not None:
            fields["step_id"] = step_id
        if due is not None:
            fields["due"] = repr(due)
        if intent is not None:
            fields["intent"] = intent.to_json()
        elif not keep_intent:
            deleted.append("intent")
        if error is not None:
            fields["error"] = error
            fields["errors"] = str(record.errors + 1 if errors is None else errors)
        elif errors is not None:
            fields["errors"] = str(errors)  # the last error stays on record
        else:
            fields["errors"] = "0"
            deleted.append("error")
        known = len(before.events) if before is not None else len(record.state["events"])
        events = [event_json(event) for event in state.events[known:]]
        version = await self._write(
            keys=self._keys(record),
            args=[
                record.version,
                record.number,
                status_of(state),
                "1" if state.done else "0",
                repr(time.time()),
                json.dumps(events),
                EVENTS_KEPT,
                json.dumps(fields),
                json.dumps(deleted),
                "0" if keep_run else "1",
            ],
        )
        if int(version) < 0:
            raise StaleWriteError(
                f"the registration of {record.number} changed since version {record.version}:"
                " another run took its step over"
            )
        return int(version)

    async def give_up(self, record: Record, error: str, *, status: str = FAILED) -> None:
        """End the registration ``failed`` (or ``status``: ``cancelled``), keeping its state
        and the error that ended it.

        Raises:
            StaleWriteError: another write came first.
        """
        version = await self._write(
            keys=self._keys(record),
            args=[
                record.version,
                record.number,
                status,
                "1",
                repr(time.time()),
                "[]",
                EVENTS_KEPT,
                json.dumps({"error": error, "errors": str(record.errors + 1)}),
                json.dumps(["intent"]),
                "0",
            ],
        )
        if int(version) < 0:
            raise StaleWriteError(f"the registration of {record.number} changed meanwhile")

    def _keys(self, record: Record) -> list[str]:
        return [
            self.key(f"reg:{record.number}"),
            self.key("counts"),
            self.key("due"),
            self.key(f"instance:{record.instance}"),
            self.key("events"),
            self.key("finished"),
        ]

    async def server_time(self) -> float:
        """Redis's clock (Unix time): the one clock every worker's leases are read on."""
        return (await self.server_now()).time

    async def server_now(self) -> ServerNow:
        """Redis's clock, its run id (new at every start) and whether it runs append-only."""
        seconds, micros, run, aof = await self._now()
        return ServerNow(
            time=int(seconds) + int(micros) / 1_000_000,
            run=as_text(run),
            append_only=as_text(aof) == "1",
        )

    async def code_wait_floor(self, configured: float) -> float:
        """The shortest wait a code request starts, as far as anyone knows: ``configured``,
        or a shorter one a worker saw (`lower_code_wait_floor`)."""
        seen = await self.redis.get(self.key("code_wait_floor"))
        return configured if seen is None else min(configured, float(seen))

    async def lower_code_wait_floor(self, seconds: float) -> bool:
        """Note a code request that started a wait of only ``seconds``; whether that
        lowered the floor (no shorter one was seen before)."""
        return bool(await self._lower(keys=[self.key("code_wait_floor")], args=[seconds]))

    async def prune(self, finished_before: float, *, batch: int = 1000) -> int:
        """Forget the registrations that finished before ``finished_before`` (Unix time);
        how many were forgotten."""
        forgotten = 0
        while True:
            gone, seen = await self._prune(
                keys=[self.key("finished"), self.key("numbers"), self.key("counts")],
                args=[self.prefix, repr(finished_before), batch],
            )
            forgotten += int(gone)
            if int(seen) < batch:
                return forgotten

    async def counts(self) -> dict[str, int]:
        raw = await cast("Awaitable[dict[bytes, bytes]]", self.redis.hgetall(self.key("counts")))
        counts = {as_text(k): int(v) for k, v in raw.items()}
        return {status: count for status, count in sorted(counts.items()) if count > 0}

    async def load_many(self, numbers: Sequence[str]) -> list[Record]:
        """The registrations of ``numbers`` (in that order; the ones gone are left out),
        in one round trip."""
        if not numbers:
            return []
        pipe: Any
        async with self.redis.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.hgetall(self.key(f"reg:{number}"))
            found = await pipe.execute()
        return [record_of(n, raw) for n, raw in zip(numbers, found, strict=True) if raw]

    async def size(self) -> int:
        """How many registrations the queue holds (finished ones until pruned)."""
        return int(await self.redis.zcard(self.key("numbers")))

    async def due_between(
        self, start: float, end: float, *, offset: int = 0, limit: int = 100
    ) -> tuple[int, list[str]]:
        """How many unfinished registrations have their next step due from ``start`` to
        ``end`` (Unix times), and a page of them, soonest first."""
        pipe: Any
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(self.key("due"), start, end)
            pipe.zrangebyscore(self.key("due"), start, end, offset, limit)
            count, page = await pipe.execute()
        return int(count), [as_text(n) for n in page]

    async def numbers(self, *, offset: int = 0, limit: int | None = None) -> list[str]:
        end = -1 if limit is None else offset + limit - 1
        return [as_text(n) for n in await self.redis.zrange(self.key("numbers"), offset, end)]

    async def overdue(self, before: float, *, limit: int = 1000) -> list[str]:
        """Unfinished numbers whose next step was due before ``before``."""
        found = await self.redis.zrangebyscore(self.key("due"), "-inf", before, 0, limit)
        return [as_text(n) for n in found]

    async def read_events(
        self, after: str, *, block_ms: int | None, count: int = 100
    ) -> Sequence[tuple[str, dict[str, str]]]:
        """Events of the stream after the id ``after`` (``"$"``: from now on)."""
        answer = await self.redis.xread({self.key("events"): after}, count=count, block=block_ms)
        out: list[tuple[str, dict[str, str]]] = []
        for _stream, entries in answer or ():
            for entry_id, fields in entries:
                out.append((as_text(entry_id), {as_text(k): as_text(v) for k, v in fields.items()}))
        return out
