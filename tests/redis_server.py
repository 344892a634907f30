"""A real ``redis-server`` for the tests: `plugz_async.testing._redis_server`'s ``RedisServer`` (on
loopback, in a temporary directory, with every write in an append-only file synced to disk, so a
killed server comes back with its data), and ``require_redis_server()``, which skips a test
(or fails it under CI) on a machine without redis-server.

A helper module, not a test module: the ``redis_server`` and ``redis_url`` fixtures of
conftest.py build on it. It needs no redis-py: the suite without the ``queue`` extra imports
it too.
"""

from __future__ import annotations

import os

import pytest

from plugz_async.testing._redis_server import (
    INSTALL_HINT,
    RedisError,
    RedisServer,
    find_redis_server,
    free_port,
)

__all__ = [
    "INSTALL_HINT",
    "RedisError",
    "RedisServer",
    "find_redis_server",
    "free_port",
    "require_redis_server",
]


def require_redis_server() -> str:
    """The path of ``redis-server``; when it is missing, the calling test or fixture skips with
    the one line that installs it, or fails when ``CI`` is set (CI must run these tests)."""
    found = find_redis_server()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {INSTALL_HINT}", pytrace=False)
        pytest.skip(INSTALL_HINT)
    return found
