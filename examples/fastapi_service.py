"""A FastAPI service built on plugz-async: check numbers, plan, and run registrations.

One ``PlugzClient`` lives for the app's lifetime (its lifespan), shared by every request.
Credentials come from the ``PLUGZ_*`` variables; point them at the sandbox to try it::

    plugz-async sandbox --port 8080      # prints the variables to export
    uvicorn examples.fastapi_service:app

Endpoints:

- ``GET /numbers/{number}/plan``: check a number; its plan as JSON.
- ``POST /registrations/{number}``: start a registration in the background, in this process.
- ``POST /registrations/{id}/code`` with ``{"code": "123456"}``: the code the person received.
- ``GET /registrations/{id}``: the events so far, and the outcome once it ended.

With ``PLUGZ_REDIS_URL`` set (and ``pip install 'plugz-async[queue]'``, from a clone
``pip install '.[queue]'``), registrations can also go through the durable queue
(docs/scale.md), run by workers (``plugz-async worker``) and kept in Redis across restarts:

- ``POST /registrations`` with ``{"number": "...", "instance": "..."}``: queue one; 202 and
  its status (409: the instance registers another number; 422: not a possible number).
- ``POST /webhooks/sms`` with ``{"to": "...", "text": "Your WhatsApp code: 123-456"}``: what
  an SMS gateway posts when a message comes in; the code is handed to the registration of
  ``to`` (404: the queue has none; 409: it waits for no code; 422: no code in the text).
- ``GET /registrations/{number}``: the queued registration's status.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import plugz_async as pz

if TYPE_CHECKING:
    from plugz_async.queue import RegistrationQueue


class Running:
    """One registration in progress: its events, and where the code will arrive."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.codes: asyncio.Queue[str] = asyncio.Queue()
        self.task: asyncio.Task[pz.RegistrationResult] | None = None

    def hear(self, event: pz.RegistrationEvent) -> None:
        self.events.append(
            {
                "kind": event.kind.value,
                "message": event.message,
                "channel": None if event.channel is None else event.channel.value,
                "at": event.at.isoformat(),
            }
        )

    async def code(self, channel: pz.Channel) -> str:
        return await self.codes.get()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with pz.PlugzClient.from_env() as client, AsyncExitStack() as stack:
        app.state.plugz = client
        app.state.registrations = {}
        app.state.ids = itertools.count(1)
        app.state.queue = None
        if os.environ.get("PLUGZ_REDIS_URL", "").strip():
            # Only now: the queue needs the 'queue' extra, and says so if it is missing.
            from plugz_async.queue import RegistrationQueue

            app.state.queue = await stack.enter_async_context(RegistrationQueue())
        yield
        for running in app.state.registrations.values():  # nothing is left running
            if running.task is not None:
                running.task.cancel()


app = FastAPI(title="Onboarding", lifespan=lifespan)


def _client() -> pz.PlugzClient:
    client: pz.PlugzClient = app.state.plugz
    return client


@app.get("/numbers/{number}/plan")
async def plan(number: str) -> dict[str, Any]:
    try:
        availability = await _client().check_availability(number)
    except pz.InvalidPhoneNumber as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    except (pz.APIError, pz.TransportError, pz.ResponseDecodeError) as error:
        raise HTTPException(status_code=502, detail=str(error)) from None  # redacted already
    return pz.RegistrationPlanner(clock=_client().clock).plan(availability).to_dict()


@app.post("/registrations/{number}", status_code=202)
async def start(number: str) -> dict[str, Any]:
    running = Running()
    try:
        registration = _client().registration(number, code_timeout=600, on_event=running.hear)
    except pz.InvalidPhoneNumber as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    registration_id = str(next(app.state.ids))
    app.state.registrations[registration_id] = running
    running.task = asyncio.create_task(registration.run(code=running.code))
    return {"id": registration_id}


class Code(BaseModel):
    code: str


@app.post("/registrations/{registration_id}/code", status_code=202)
async def give_code(registration_id: str, body: Code) -> dict[str, str]:
    running = app.state.registrations.get(registration_id)
    if running is None:
        raise HTTPException(status_code=404, detail="no such registration")
    running.codes.put_nowait(body.code)
    return {"status": "received"}


@app.get("/registrations/{registration_id}")
async def status(registration_id: str) -> dict[str, Any]:
    running = app.state.registrations.get(registration_id)
    if running is None:
        if app.state.queue is not None:  # not one of this process's: a queued one?
            return await queued_status(registration_id)
        raise HTTPException(status_code=404, detail="no such registration")
    outcome = None
    if running.task is not None and running.task.done():
        error = running.task.exception()
        outcome = f"error: {type(error).__name__}" if error else running.task.result().outcome.value
    return {"events": running.events, "outcome": outcome}


# -- the durable queue (docs/scale.md): only with PLUGZ_REDIS_URL ---------------------------


def _queue() -> RegistrationQueue:
    """The app's ``RegistrationQueue``, or a 503 when the queue is not enabled."""
    queue: RegistrationQueue | None = app.state.queue
    if queue is None:
        raise HTTPException(status_code=503, detail="the queue is off: set PLUGZ_REDIS_URL")
    return queue


class NewRegistration(BaseModel):
    number: str
    instance: str | None = None  # None: PLUGZ_INSTANCE_ID


@app.post("/registrations", status_code=202)
async def enqueue(body: NewRegistration) -> dict[str, Any]:
    try:
        queued = await _queue().register(body.number, instance=body.instance)
    except pz.InstanceBusyError as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    except (pz.InvalidPhoneNumber, pz.ConfigurationError) as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    return queued.to_dict()


async def queued_status(number: str) -> dict[str, Any]:
    try:
        found = await _queue().status(number)
    except (pz.UnknownRegistrationError, pz.InvalidPhoneNumber):
        raise HTTPException(status_code=404, detail="no such registration") from None
    return found.to_dict()


class IncomingSms(BaseModel):
    """What an SMS gateway posts for a message received (adapt the names to yours)."""

    to: str  # the number the message was sent to: the one being registered
    text: str


# WhatsApp writes its code as "123-456" (or "123456") within a sentence.
CODE_IN_TEXT = re.compile(r"(?<![\d-])(\d{3})-?(\d{3})(?![\d-])")


@app.post("/webhooks/sms")
async def sms_received(body: IncomingSms) -> dict[str, Any]:
    found = CODE_IN_TEXT.search(body.text)
    if found is None:
        raise HTTPException(status_code=422, detail="no code in the message")
    try:
        given = await _queue().submit_code(body.to, found.group(1) + found.group(2))
    except (pz.UnknownRegistrationError, pz.InvalidPhoneNumber):
        raise HTTPException(status_code=404, detail="no registration of that number") from None
    except pz.RegistrationStateError as error:  # it waits for no code (ended, or elsewhere)
        raise HTTPException(status_code=409, detail=str(error)) from None
    return given.to_dict()
