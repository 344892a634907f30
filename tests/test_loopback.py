"""The suite never leaves loopback, in its own process or in any process a test starts."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

import plugz_async as pz

REAL_HOST = "api.plugzapi.com.br"


def test_this_process_resolves_loopback_only() -> None:
    with pytest.raises(OSError, match="tests stay on loopback"):
        socket.getaddrinfo(REAL_HOST, 443)
    assert socket.getaddrinfo("127.0.0.1", 80)


def test_a_process_a_test_starts_resolves_loopback_only() -> None:
    probe = (
        "import socket\n"
        "try:\n"
        f"    socket.getaddrinfo({REAL_HOST!r}, 443)\n"
        "except OSError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == f"tests stay on loopback: refusing to resolve {REAL_HOST!r}"


async def test_a_client_left_on_the_real_api_fails_before_any_connection() -> None:
    client = pz.PlugzClient(
        "instance-1", "instance-token-1", "client-token-1", retry=pz.RetryPolicy.none()
    )
    async with client:
        assert client.base_url == pz.DEFAULT_BASE_URL
        with pytest.raises(pz.ConnectError, match=f"could not connect .* {REAL_HOST}:443"):
            await client.check_availability("+55 11 90000-0001")
