"""examples/fastapi_service.py, driven through FastAPI's test client against the sandbox."""

from __future__ import annotations

import importlib.util
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from plugz_async.sandbox import CONFIRMATION_CODE, SandboxThread

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
