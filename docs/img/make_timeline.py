"""Draw docs/img/plan-timeline.png (the planner page): ``python docs/img/make_timeline.py``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import plugz_async as pz


async def main() -> None:
    async with pz.sandbox.running(clock=pz.FakeClock()) as sb:
        availability = await sb.client.check_availability("+55 11 90000-0006")
    plan = pz.RegistrationPlanner(allow_wa_old=True, clock=sb.client.clock).plan(availability)
    ax = plan.plot()
    ax.figure.tight_layout()
    ax.figure.savefig(Path(__file__).with_name("plan-timeline.png"), dpi=110)
    plt.close("all")


asyncio.run(main())
