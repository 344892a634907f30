"""Every stored time has one format (``_stored``): ISO-8601 in UTC with its offset."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import plugz_async as pz
from plugz_async._models import decode_availability
from plugz_async._registration import RegistrationMachine
from plugz_async._stored import epoch_to_iso, from_iso, to_iso

STORED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$")


def times_in(value: Any) -> list[str]:
    """Every text that looks like a time, anywhere in a JSON-ready value."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in times_in(v)]
    if isinstance(value, list):
        return [t for v in value for t in times_in(v)]
    if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\dT", value):
        return [value]
    return []


def test_plans_states_events_and_answers_store_times_in_the_one_format() -> None:
    clock = pz.FakeClock(start=datetime(2026, 12, 2, 20, 0, tzinfo=timezone(timedelta(hours=-3))))
    number = pz.PhoneNumber.parse("+55 44 99999-9999")
    availability = decode_availability(
        {"available": True, "smsWaitSeconds": 30},
        number=number,
        observed_at=clock.now(),
        observed_monotonic=clock.monotonic(),
    )
    machine = RegistrationMachine(planner=pz.RegistrationPlanner(clock=clock))
    state = machine.checked(machine.start(number), availability)
    stored = {
        "plan": state.plan.to_dict() if state.plan else None,
        "availability": availability.to_dict(),
        "state": state.to_dict(),
    }
    found = times_in(stored)
    assert len(found) >= 8  # observed_at twice, three windows, the events...
    assert all(STORED.match(t) for t in found), found
    again = pz.RegistrationState.from_dict(state.to_dict(), clock=clock)
    assert again.events == state.events and again.plan == state.plan


def test_reading_takes_z_and_other_offsets_and_refuses_naive_times() -> None:
    utc = datetime(2026, 12, 2, 20, 0, tzinfo=timezone.utc)
    assert from_iso("2026-12-02T20:00:00Z") == utc
    assert from_iso("2026-12-02T17:00:00-03:00") == utc
    assert from_iso(to_iso(utc)) == utc and to_iso(utc) == "2026-12-02T20:00:00+00:00"
    assert epoch_to_iso(utc.timestamp()) == "2026-12-02T20:00:00+00:00"
    with pytest.raises(ValueError, match="no time zone"):
        from_iso("2026-12-02T20:00:00")
    with pytest.raises(ValueError, match="needs a time zone"):
        to_iso(datetime(2026, 12, 2, 20, 0))  # the naive time refused
    with pytest.raises(ValueError, match="ISO-8601 text"):
        from_iso(1764705600)
