"""``plugz-async queue`` and ``plugz-async worker``: the durable queue from the shell.

``queue register`` queues numbers (or a file of numbers, an instance a row), ``queue
status`` shows where they stand, and ``queue code``, ``queue captcha`` and ``queue pin``
give a registration what it waits for. Workers (``plugz-async worker``) run them.

A module a concern: ``_parser`` (the options of ``queue``, built without the ``queue``
extra), ``_register``, ``_give`` (code, captcha, PIN, cancel), ``_status`` (status,
list, workers, prune), ``_worker`` (the ``worker`` command), ``_demo`` (``demo
--queue``), and ``_redis`` (what they share: the Redis options and errors, the extra).
A subcommand's module is imported only when it runs; the tables are in ``cli/_render``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Coroutine
from typing import Any

from plugz_async.cli._app import App

from ._parser import add_queue

__all__ = ["SUBCOMMANDS", "add_queue", "queue"]

#: Each subcommand of ``queue``: its module, and the async function of it that runs it.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "register": ("._register", "register"),
    "status": ("._status", "status"),
    "list": ("._status", "listing"),
    "workers": ("._status", "workers"),
    "prune": ("._status", "prune"),
    "cancel": ("._give", "cancel"),
    "code": ("._give", "give"),
    "captcha": ("._give", "give"),
    "pin": ("._give", "give"),
}


async def queue(app: App) -> int:
    module, name = SUBCOMMANDS[app.args.queue_command]
    run: Callable[[App], Coroutine[Any, Any, int]] = getattr(
        importlib.import_module(module, __name__), name
    )
    return await run(app)
