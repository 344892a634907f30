"""The sandbox: a local stand-in of the PlugzAPI mobile-registration API.

Run the whole registration flow with no account, no phone and no network: the
real routes and checks, documented test numbers (see `SCENARIOS` and
``plugz-async sandbox --help``), faults on demand, and a control API under
``/_sandbox/`` for tests.

Start it in this event loop with `running`, in a thread with
`SandboxThread`, from the command line with ``plugz-async sandbox``, or in
your tests with the ``plugz_sandbox`` pytest fixture.

`SANDBOX_ROUTES` maps each route the sandbox serves to its HTTP method (the client's
``plugz_async.ROUTES`` is another thing: how the client calls each route).

Inside, one module per reason to change: ``_state`` (the configuration, the
registrations, codes, log and clock), ``_routes`` (the fake API: its table of
routes, their checks and answers), ``_faults`` (scripted replies and faults, played
on the wire), ``_control`` (the control API and `create_app`), ``_scenarios`` (the
test numbers and the captcha they send) and ``_running`` (starting it, and the
in-process handles). Only ``_running`` imports the client.
"""

from ._control import CONTROL_PREFIX, create_app
from ._faults import Reply
from ._routes import SANDBOX_ROUTES
from ._running import Sandbox, SandboxThread, running, serve
from ._scenarios import (
    APPEAL_TOKEN,
    CAPTCHA_TEXT,
    CONFIRMATION_CODE,
    PIN,
    SCENARIOS,
    Fault,
    Scenario,
    scenario_table,
)
from ._state import SandboxConfig, SandboxState

__all__ = [
    "APPEAL_TOKEN",
    "CAPTCHA_TEXT",
    "CONFIRMATION_CODE",
    "CONTROL_PREFIX",
    "PIN",
    "SANDBOX_ROUTES",
    "SCENARIOS",
    "Fault",
    "Reply",
    "Sandbox",
    "SandboxConfig",
    "SandboxState",
    "SandboxThread",
    "Scenario",
    "create_app",
    "running",
    "scenario_table",
    "serve",
]


def __getattr__(name: str) -> object:
    if name == "ROUTES":  # the old name, until the next minor version
        import warnings

        warnings.warn(
            "plugz_async.sandbox.ROUTES is now plugz_async.sandbox.SANDBOX_ROUTES (the"
            " client's plugz_async.ROUTES is how the client calls each route)",
            DeprecationWarning,
            stacklevel=2,
        )
        return SANDBOX_ROUTES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
