"""The sandbox: a local stand-in of the PlugzAPI mobile-registration API.

Run the whole registration flow with no account, no phone and no network: the
real routes and checks, documented test numbers (see `SCENARIOS` and
``plugz-async sandbox --help``), faults on demand, and a control API under
``/_sandbox/`` for tests.

Start it in this event loop with `running`, in a thread with
`SandboxThread`, from the command line with ``plugz-async sandbox``, or in
your tests with the ``plugz_sandbox`` pytest fixture.
"""

from ._app import CONTROL_PREFIX, ROUTES, Reply, SandboxConfig, SandboxState, create_app
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

__all__ = [
    "APPEAL_TOKEN",
    "CAPTCHA_TEXT",
    "CONFIRMATION_CODE",
    "CONTROL_PREFIX",
    "PIN",
    "ROUTES",
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
