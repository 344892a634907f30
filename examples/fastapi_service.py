"""A FastAPI service built on plugz-async: check numbers, plan, and run registrations.

One ``PlugzClient`` lives for the app's lifetime (its lifespan), shared by every request.
Credentials come from the ``PLUGZ_*`` variables; point them at the sandbox to try it::

    plugz-async sandbox --port 8080      # prints the variables to export
    uvicorn examples.fastapi_service:app

Endpoints:

- ``GET /numbers/{number}/plan``: check a number; its plan as JSON.
- ``POST /registrations/{number}``: start a registration in the background.
- ``POST /registrations/{id}/code`` with ``{"code": "123456"}``: the code the person received.
- ``GET /registrations/{id}``: the events so far, and the outcome once it ended.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import plugz_async as pz


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
    async with pz.PlugzClient.from_env() as client:
        app.state.plugz = client
        app.state.registrations = {}
        app.state.ids = itertools.count(1)
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
        raise HTTPException(status_code=404, detail="no such registration")
    outcome = None
    if running.task is not None and running.task.done():
        error = running.task.exception()
        outcome = f"error: {type(error).__name__}" if error else running.task.result().outcome.value
    return {"events": running.events, "outcome": outcome}
