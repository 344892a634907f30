"""A queued registration as read from Redis, and the values its hash holds.

`Record` is one ``reg:{number}`` hash, read; `CodeIntent` the code request it may record
(about to go out, or going out); `ServerNow` what the Redis server says of its clock and
its run. The statuses a step ends a registration with (`FAILED`, `CANCELLED`) sit beside
the outcomes `status_of` files a finished one under.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from plugz_async._registration import RegistrationEvent, RegistrationState, event_to_dict

__all__ = [
    "CANCELLED",
    "FAILED",
    "CodeIntent",
    "Record",
    "ServerNow",
    "as_text",
    "event_json",
    "new_step_id",
    "record_of",
    "status_of",
]

#: The status of a registration a step gave up (an error that trying again cannot mend).
FAILED = "failed"
#: The status of a registration an operator cancelled (`RegistrationQueue.cancel`).
CANCELLED = "cancelled"


@attrs.frozen(kw_only=True)
class CodeIntent:
    """A code request a run is about to send, or is sending.

    Attributes:
        id: the run's own mark.
        channel: the channel.
        lease_until: the run sends only before this moment (Unix time, on Redis's clock),
            and waits for the answer until then at most; a run that finds the intent
            afterwards knows the request is over, one way or the other.
        written_at: when the intent was written (Redis's clock): the request, if it went
            out, went out after this moment, and the wait it started ends no sooner than
            the shortest wait a code request starts after it. None in an intent written
            by an older version of the SDK.
    """

    id: str
    channel: str
    lease_until: float
    written_at: float | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "channel": self.channel,
                "lease_until": self.lease_until,
                "written_at": self.written_at,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> CodeIntent:
        data = json.loads(text)
        written = data.get("written_at")
        return cls(
            id=data["id"],
            channel=data["channel"],
            lease_until=float(data["lease_until"]),
            written_at=None if written is None else float(written),
        )


@attrs.frozen(kw_only=True)
class Record:
    """A registration as read from Redis (the state still as a dict)."""

    number: str
    version: int
    status: str
    done: bool
    instance: str
    step_id: str
    due: float
    state: Mapping[str, Any]
    intent: CodeIntent | None = None
    error: str | None = None
    errors: int = 0
    created: float = 0.0
    updated: float = 0.0
    run: str | None = None


@attrs.frozen
class ServerNow:
    """What `Store.server_now` reads off the Redis server."""

    time: float
    run: str
    append_only: bool


def new_step_id() -> str:
    """A fresh mark for the one step allowed to run next."""
    return uuid.uuid4().hex[:16]


def status_of(state: RegistrationState) -> str:
    """What ``counts()`` files a registration under: its outcome when done, else its step."""
    return state.outcome.value if state.outcome is not None else state.step.value


def event_json(event: RegistrationEvent) -> str:
    return json.dumps(event_to_dict(event))


def as_text(value: bytes | str) -> str:
    """A value Redis answered with, as text."""
    return value.decode() if isinstance(value, bytes) else value


def record_of(number: str, raw: Mapping[bytes, bytes]) -> Record:
    """The `Record` of ``number`` from its hash as Redis answered it."""
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    intent = fields.get("intent")
    return Record(
        number=number,
        version=int(fields["version"]),
        status=fields["status"],
        done=fields["done"] == "1",
        instance=fields["instance"],
        step_id=fields["step_id"],
        due=float(fields["due"]),
        state=json.loads(fields["state"]),
        intent=None if intent is None else CodeIntent.from_json(intent),
        error=fields.get("error"),
        errors=int(fields.get("errors", "0")),
        created=float(fields.get("created", "0")),
        updated=float(fields.get("updated", "0")),
        run=fields.get("run"),
    )
