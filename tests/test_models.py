"""Availability: decoded leniently, kept faithfully."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from helpers import AVAILABILITY_FIELDS, JSON_VALUES, fuzz
from hypothesis import given
from hypothesis import strategies as st

import plugz_async as pz
from plugz_async._models import decode_availability, decode_instance_status

NUMBER = pz.PhoneNumber(ddi="55", phone="44999999999")
WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def decode(data: Any) -> pz.Availability:
    return decode_availability(data, number=NUMBER, observed_at=WHEN, observed_monotonic=5.0)


def test_documented_available_example() -> None:
    a = decode(
        {
            "available": True,
            "smsWaitSeconds": 0,
            "voiceWaitSeconds": 0,
            "waOldWaitSeconds": 0,
            "waOldEligible": True,
        }
    )
    assert a.available and not a.blocked and a.wa_old_eligible
    assert (a.sms_wait_seconds, a.voice_wait_seconds, a.wa_old_wait_seconds) == (0.0, 0.0, 0.0)
    assert a.number == NUMBER and a.observed_at == WHEN and a.observed_monotonic == 5.0
    assert a.appeal_token is None and a.reason is None


def test_documented_banned_example() -> None:
    a = decode({"available": False, "blocked": True, "appealToken": "Ae0B_xyz"})
    assert not a.available and a.blocked and a.appeal_token == "Ae0B_xyz"
    # Missing fields take their documented defaults.
    assert a.sms_wait_seconds == 0.0 and a.wa_old_eligible is False


@pytest.mark.parametrize(
    ("wire", "seconds"),
    [(30, 30.0), (30.0, 30.0), (12.5, 12.5), ("165", 165.0), (" 30.0 ", 30.0), (None, 0.0)],
)
def test_numbers_as_ints_floats_or_strings(wire: Any, seconds: float) -> None:
    a = decode({"available": True, "smsWaitSeconds": wire, "voiceWaitSeconds": wire})
    assert a.sms_wait_seconds == a.voice_wait_seconds == seconds
    assert isinstance(a.sms_wait_seconds, float)


@pytest.mark.parametrize(
    ("wire", "value"),
    [(True, True), (False, False), (1, True), (0, False), ("true", True), ("False", False)],
)
def test_booleans_leniently(wire: Any, value: bool) -> None:
    assert decode({"available": wire}).available is value


def test_nonsense_combination_is_kept_not_fixed() -> None:
    a = decode({"available": True, "blocked": True})
    assert a.available is True and a.blocked is True


def test_unknown_fields_are_kept_in_raw_read_only() -> None:
    wire = {"available": True, "newField": {"x": [1, 2]}, "smsWaitSeconds": "7"}
    a = decode(wire)
    assert dict(a.raw) == wire
    assert a.raw["smsWaitSeconds"] == "7"  # exactly as received
    with pytest.raises(TypeError):
        a.raw["available"] = False  # type: ignore[index]
    # Built by hand, an Availability copies the mapping it is given.
    mine = pz.Availability(number=NUMBER, available=True, observed_at=WHEN, raw=wire)
    wire["available"] = False
    assert mine.raw["available"] is True


def test_reason_and_numeric_appeal_token() -> None:
    a = decode({"available": False, "reason": "number in use", "appealToken": 1234})
    assert a.reason == "number in use" and a.appeal_token == "1234"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (
            {"smsWaitSeconds": "soon"},
            "'smsWaitSeconds' of mobile/registration-available should be a number",
        ),
        ({"smsWaitSeconds": True}, "should be a number"),
        ({"smsWaitSeconds": [1]}, "should be a number"),
        ({"smsWaitSeconds": "inf"}, "finite"),
        ({"smsWaitSeconds": 10**400}, "finite"),
        (
            {"available": "maybe"},
            "'available' of mobile/registration-available should be a boolean",
        ),
        ({"available": 2}, "should be a boolean"),
        ({"reason": {"code": 1}}, "'reason' of mobile/registration-available should be text"),
    ],
)
def test_values_that_cannot_mean_the_field_raise_decode_errors(
    wire: dict[str, Any], message: str
) -> None:
    with pytest.raises(pz.ResponseDecodeError, match=message):
        decode(wire)


@pytest.mark.parametrize("data", [[], "ok", 3, None, True])
def test_not_an_object(data: Any) -> None:
    with pytest.raises(pz.ResponseDecodeError, match="should answer a JSON object"):
        decode(data)


def test_wait_seconds_by_channel_and_to_dict() -> None:
    a = decode(
        {"available": True, "smsWaitSeconds": 1, "voiceWaitSeconds": 2, "waOldWaitSeconds": 3}
    )
    assert [a.wait_seconds(c) for c in pz.Channel] == [1.0, 2.0, 3.0]
    assert a.wait_seconds("voice") == 2.0  # type: ignore[arg-type]
    data = a.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["number"] == "+5544999999999" and data["observed_at"] == "2026-03-01T12:00:00+00:00"


def test_availability_is_frozen_and_hashable() -> None:
    a = decode({"available": True})
    assert hash(a) == hash(decode({"available": True, "extra": 1}))
    with pytest.raises(AttributeError):
        a.available = False  # type: ignore[misc]


JSON = JSON_VALUES
FIELDS = AVAILABILITY_FIELDS


@pytest.mark.fuzz
@fuzz(500)
@given(JSON | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), JSON, max_size=9))
def test_any_json_decodes_or_raises_a_plugz_error(data: Any) -> None:
    try:
        a = decode(data)
    except pz.ResponseDecodeError as exc:
        assert str(exc)
    else:
        assert isinstance(a.available, bool) and isinstance(a.blocked, bool)
        for seconds in (a.sms_wait_seconds, a.voice_wait_seconds, a.wa_old_wait_seconds):
            assert isinstance(seconds, float)
        assert dict(a.raw) == data


# -- the instance's status -------------------------------------------------------------------


def status_of(data: Any) -> pz.InstanceStatus:
    return decode_instance_status(data, observed_at=WHEN, route="status")


def test_documented_status_answers() -> None:
    connected = status_of(
        {"connected": True, "error": "You are already connected.", "smartphoneConnected": True}
    )
    assert connected.connected and connected.smartphone_connected is True
    assert connected.error == "You are already connected." and connected.observed_at == WHEN
    restore = status_of({"connected": False, "error": "You need to restore the session."})
    assert not restore.connected and restore.error == "You need to restore the session."
    assert restore.smartphone_connected is None  # not said: a mobile instance may have none


@pytest.mark.parametrize(
    ("wire", "connected", "error", "phone"),
    [
        ({}, False, None, None),
        ({"connected": "true", "smartphoneConnected": "0"}, True, None, False),
        ({"connected": 1, "error": "", "smartphoneConnected": None}, True, None, None),
        ({"connected": "False", "error": False}, False, None, None),
        (
            {"connected": False, "error": "  You are not connected. "},
            False,
            "You are not connected.",
            None,
        ),
        ({"connected": False, "error": 404}, False, "404", None),
    ],
)
def test_status_is_decoded_leniently(
    wire: dict[str, Any], connected: bool, error: str | None, phone: bool | None
) -> None:
    status = status_of({**wire, "newField": [1]})
    assert (status.connected, status.error, status.smartphone_connected) == (
        connected,
        error,
        phone,
    )
    assert status.raw["newField"] == [1]  # unknown fields kept, as received
    data = status.to_dict()
    assert json.loads(json.dumps(data)) == data and data["connected"] is connected


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ({"connected": "maybe"}, "'connected' of status should be a boolean"),
        ({"smartphoneConnected": 2}, "'smartphoneConnected' of status should be a boolean"),
        ({"error": {"why": 1}}, "'error' of status should be text"),
        ([], "status should answer a JSON object"),
    ],
)
def test_status_values_that_cannot_mean_the_field_raise(wire: Any, message: str) -> None:
    with pytest.raises(pz.ResponseDecodeError, match=message):
        status_of(wire)


STATUS_FIELDS = ["connected", "error", "smartphoneConnected"]


@pytest.mark.fuzz
@fuzz(500)
@given(
    JSON | st.dictionaries(st.sampled_from(STATUS_FIELDS) | st.text(max_size=8), JSON, max_size=6)
)
def test_any_json_decodes_to_a_status_or_raises_a_plugz_error(data: Any) -> None:
    try:
        status = status_of(data)
    except pz.ResponseDecodeError as exc:
        assert str(exc)
    else:
        assert isinstance(status.connected, bool)
        assert status.smartphone_connected in (None, True, False)
        assert status.error is None or (status.error and status.error == status.error.strip())
        assert dict(status.raw) == data
