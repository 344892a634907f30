"""Tests stay on loopback: a ``socket.getaddrinfo`` that refuses any other host.

The suite installs it in its own process (conftest.py's autouse fixture) and, through
``sitecustomize`` in this folder (put on ``PYTHONPATH`` by conftest.py), in every Python
process a test starts: worker processes, producers, the CLI run as a program.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

LOOPBACK = ("localhost", "127.", "::1")


def guarded(real: Callable[..., Any]) -> Callable[..., Any]:
    """``real`` (a ``getaddrinfo``), refusing every host that is not loopback."""

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.startswith(LOOPBACK):
            raise OSError(f"tests stay on loopback: refusing to resolve {name!r}")
        return real(host, *args, **kwargs)

    return getaddrinfo


def install() -> None:
    """Guard this process's ``socket.getaddrinfo`` (aiohttp and redis-py resolve through it)."""
    socket.getaddrinfo = guarded(socket.getaddrinfo)
