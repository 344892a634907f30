"""The sandbox in your own test suite, as pytest fixtures.

plugz-async registers this module as a pytest plugin, so once it is installed the
fixtures below are there in every test, with no import and no conftest:

- ``plugz_sandbox``: a running sandbox (a `~plugz_async.sandbox.SandboxThread`,
  served from a thread, so it works with any event loop, or none); script it with
  ``plugz_sandbox.then(...)``, read what it received with ``plugz_sandbox.requests()``.
  Its ``client`` belongs to the test's event loop: pytest-asyncio closes that loop
  before the sandbox stops, and the client keeps no connection that could be left open.
- ``plugz_env``: the ``PLUGZ_*`` variables set to the sandbox, so code that calls
  ``PlugzClient.from_env()`` talks to it.
- ``plugz_client``: an open ``PlugzClient`` for the sandbox (needs pytest-asyncio).

Example::

    async def test_my_onboarding(plugz_client):
        availability = await plugz_client.check_availability("+55 11 90000-0001")
        assert availability.available
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from plugz_async._client import PlugzClient
from plugz_async.sandbox import SandboxConfig, SandboxThread

__all__ = ["plugz_env", "plugz_sandbox"]


@pytest.fixture
def plugz_sandbox() -> Iterator[SandboxThread]:
    """A sandbox for this test, with the default test credentials; stopped afterwards
    (its ``client`` with it)."""
    with SandboxThread(SandboxConfig()) as sandbox:
        yield sandbox


@pytest.fixture
def plugz_env(plugz_sandbox: SandboxThread, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point ``PlugzClient.from_env()`` at the sandbox for this test; returns the variables."""
    env = plugz_sandbox.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixture needs pytest-asyncio
    pass
else:
    __all__ += ["plugz_client"]

    @pytest_asyncio.fixture
    async def plugz_client(plugz_sandbox: SandboxThread) -> AsyncIterator[PlugzClient]:
        """An open ``PlugzClient`` for the sandbox, closed after the test."""
        async with plugz_sandbox.new_client() as client:
            yield client
