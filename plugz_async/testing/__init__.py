"""Testing with plugz-async: the sandbox as pytest fixtures, and a real redis-server.

- `plugz_async.testing.fixtures`: the pytest fixtures ``plugz_sandbox``, ``plugz_env`` and
  ``plugz_client``; plugz-async registers that module as a pytest plugin, so once it is
  installed they are there in every test, with no import and no conftest.
- ``plugz_async.testing._redis_server``: a ``redis-server`` of our own on loopback, which
  the suite's fixtures, ``demo --queue`` and the queue benchmarks start (standard library
  only: it needs neither pytest nor redis-py).

Importing this package loads neither pytest nor the sandbox; the fixtures' names are
loaded from `fixtures` on first use (``from plugz_async.testing import plugz_sandbox``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["plugz_client", "plugz_env", "plugz_sandbox"]

#: Named as a plugin itself (``pytest -p plugz_async.testing``, or ``pytest_plugins``), this
#: package brings its fixtures' module along.
pytest_plugins = ["plugz_async.testing.fixtures"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(f"{__name__}.fixtures"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
