"""examples/fastapi_service.py, driven through FastAPI's test client against the sandbox;
its queue endpoints against a real redis-server and a worker."""

from __future__ import annotations

import asyncio
import importlib.util
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from plugz_async.sandbox import CONFIRMATION_CODE, SandboxConfig, SandboxThread, running

pytest.importorskip("fastapi")
with warnings.catch_warnings():
    # Recent Starlette asks for a renamed httpx when its test client is imported: not ours.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

EXAMPLE = Path(__file__).parent.parent / "examples" / "fastapi_service.py"


def load_app() -> Any:
    spec = importlib.util.spec_from_file_location("fastapi_service", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def test_the_service_plans_and_registers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLUGZ_REDIS_URL", raising=False)  # the queue stays off
    with SandboxThread() as sandbox:
        for name, value in sandbox.env().items():
            monkeypatch.setenv(name, value)
        with TestClient(load_app()) as http:
            plan = http.get("/numbers/+55 11 90000-0002/plan")
            assert plan.status_code == 200 and plan.json()["next_channel"] == "sms"
            assert http.get("/numbers/call-me/plan").status_code == 422
            assert http.get("/numbers/+55 11 90000-9004/plan").status_code == 502

            started = http.post("/registrations/+55 11 90000-0001")
            assert started.status_code == 202
            registration = started.json()["id"]
            assert (
                http.post(
                    f"/registrations/{registration}/code", json={"code": CONFIRMATION_CODE}
                ).status_code
                == 202
            )
            deadline = time.monotonic() + 10
            while (state := http.get(f"/registrations/{registration}").json())["outcome"] is None:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert state["outcome"] == "connected"
            kinds = [event["kind"] for event in state["events"]]
            assert kinds[0] == "checked" and kinds[-1] == "finished" and "code_confirmed" in kinds
            assert http.get("/registrations/999").status_code == 404
            # Without PLUGZ_REDIS_URL the queue's endpoints say it is off.
            queued = http.post("/registrations", json={"number": "+55 11 90000-0002"})
            assert queued.status_code == 503
            sms = http.post("/webhooks/sms", json={"to": "+5511900000002", "text": "123-456"})
            assert sms.status_code == 503


async def test_a_queued_registration_connects_with_the_code_of_the_sms_webhook(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("saq")
    import httpx

    from plugz_async.queue import QueueWorker

    number, digits = "+55 11 90000-0001", "5511900000001"
    async with running(SandboxConfig(instances=2, wait_scale=0.01, random_codes=True)) as sandbox:
        _, second = sandbox.instances()  # the second instance: not the one of PLUGZ_*
        for name, value in sandbox.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("PLUGZ_REDIS_URL", redis_url)
        worker = QueueWorker(
            redis_url,
            credentials=sandbox.instances(),
            client_token=sandbox.client_token,
            base_url=sandbox.base_url,
            rate_limit=None,
        )
        working = asyncio.create_task(worker.run())
        app = load_app()
        transport = httpx.ASGITransport(app=app)
        try:
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://service") as http,
            ):
                queued = await http.post(
                    "/registrations", json={"number": number, "instance": second}
                )
                assert queued.status_code == 202, queued.text
                assert queued.json()["number"] == "+" + digits
                assert queued.json()["instance"] == second and not queued.json()["done"]
                # One number at a time per instance; an impossible number is refused.
                busy = await http.post(
                    "/registrations", json={"number": "+55 11 90000-0002", "instance": second}
                )
                assert busy.status_code == 409
                wrong = await http.post("/registrations", json={"number": "call-me"})
                assert wrong.status_code == 422
                unknown = {"to": "+55 11 90000-0003", "text": "Your WhatsApp code: 123-456"}
                assert (await http.post("/webhooks/sms", json=unknown)).status_code == 404

                # The worker requests the code; the "SMS" reaches the gateway's webhook.
                code = await _code_sent(sandbox, digits)
                text = f"Your WhatsApp code: {code[:3]}-{code[3:]}. Don't share it."
                no_code = {"to": digits, "text": "Your WhatsApp code is on its way"}
                assert (await http.post("/webhooks/sms", json=no_code)).status_code == 422
                given = await http.post("/webhooks/sms", json={"to": digits, "text": text})
                assert given.status_code == 200, given.text

                loop = asyncio.get_running_loop()
                deadline = loop.time() + 20
                while not (state := (await http.get(f"/registrations/{number}")).json())["done"]:
                    assert loop.time() < deadline, state
                    await asyncio.sleep(0.05)
                assert state["outcome"] == "connected" and state["channel"] == "sms"
                kinds = [event["kind"] for event in state["events"]]
                assert kinds[0] == "checked" and kinds[-1] == "finished"
                assert "code_confirmed" in kinds
                # Done: a code that comes now finds nothing waiting for it.
                late = await http.post("/webhooks/sms", json={"to": digits, "text": text})
                assert late.status_code == 409
                assert (await http.get("/registrations/+5511900000009")).status_code == 404
        finally:
            await worker.stop()
            await working
        assert len(sandbox.codes(number=digits)) == 1  # one code request, one code


async def _code_sent(sandbox: Any, digits: str) -> str:
    """The code the sandbox "sent" to ``digits``, once it has."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not (sent := sandbox.codes(number=digits)):
        assert loop.time() < deadline, "no code was requested"
        await asyncio.sleep(0.02)
    code: str = sent[-1]["code"]
    return code
