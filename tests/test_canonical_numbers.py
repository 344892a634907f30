"""``canonical_numbers``: what goes on the wire for a number written in Brazil's old 8-digit
form, by default (as written) and with the option (the line's current form), read from
the sandbox's own request log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from helpers import CLIENT_TOKEN, CONFIG, INSTANCE_ID, INSTANCE_TOKEN

import plugz_async as pz
from plugz_async.sandbox import CONFIRMATION_CODE, Sandbox, running

OLD = "+55 44 9999-9999"
NEW = "+55 44 99999-9999"


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with running(CONFIG) as sandbox:
        yield sandbox


def bodies(sb: Sandbox) -> list[tuple[str, object]]:
    return [(r["route"], r["body"]) for r in sb.requests()]


async def test_a_number_is_sent_as_written_by_default(sb: Sandbox) -> None:
    async with sb.new_client(clock=pz.FakeClock()) as client:
        assert client.canonical_numbers is False
        availability = await client.check_availability(OLD)
        await client.request_code(OLD, "sms")
    assert bodies(sb) == [
        ("registration-available", {"ddi": "55", "phone": "4499999999"}),
        ("request-registration-code", {"ddi": "55", "phone": "4499999999", "method": "sms"}),
    ]
    assert availability.number == pz.PhoneNumber.parse(OLD)


async def test_canonical_numbers_send_the_line_and_keep_the_number_as_written(
    sb: Sandbox,
) -> None:
    async with sb.new_client(clock=pz.FakeClock(), canonical_numbers=True) as client:
        assert client.canonical_numbers is True
        availability = await client.check_availability(OLD)
        await client.request_code(OLD, "voice")
        await client.check_availability(NEW)  # already in its current form
        await client.check_availability("+55 44 3222-2222")  # a landline has one form
        other = client.for_instance(INSTANCE_ID, INSTANCE_TOKEN)
        assert other.canonical_numbers is True
        await other.check_availability(OLD)
    assert bodies(sb) == [
        ("registration-available", {"ddi": "55", "phone": "44999999999"}),
        ("request-registration-code", {"ddi": "55", "phone": "44999999999", "method": "voice"}),
        ("registration-available", {"ddi": "55", "phone": "44999999999"}),
        ("registration-available", {"ddi": "55", "phone": "4432222222"}),
        ("registration-available", {"ddi": "55", "phone": "44999999999"}),
    ]
    assert availability.number == pz.PhoneNumber.parse(OLD)  # what the user wrote


async def test_a_bulk_run_and_a_registration_send_the_line_with_the_option(sb: Sandbox) -> None:
    async with sb.new_client(clock=pz.FakeClock(), canonical_numbers=True) as client:
        async with client.check_many([OLD, "+55 11 90000-0001"]) as run:
            items = {item.index: item async for item in run}
        assert items[0].number == pz.PhoneNumber.parse(OLD)
        assert items[0].to_dict()["number"] == "+554499999999"  # the record: as written

        async def code(channel: pz.Channel) -> str:
            return CONFIRMATION_CODE

        result = await client.registration("+55 44 8888-7777").run(code=code)
        assert result.connected
    sent = [r["body"].get("phone") for r in sb.requests() if isinstance(r["body"], dict)]
    assert sent[:1] == ["44999999999"]
    # The registration: its check and its code request, for the line (the code's
    # confirmation carries no number).
    assert sent[2:] == ["44988887777", "44988887777", None]


def test_from_env_reads_the_option_and_refuses_what_is_no_yes_or_no() -> None:
    env = {
        "PLUGZ_INSTANCE_ID": INSTANCE_ID,
        "PLUGZ_INSTANCE_TOKEN": INSTANCE_TOKEN,
        "PLUGZ_CLIENT_TOKEN": CLIENT_TOKEN,
    }
    assert pz.PlugzClient.from_env(env).canonical_numbers is False
    for yes in ("1", "true", "YES", " on "):
        client = pz.PlugzClient.from_env({**env, "PLUGZ_CANONICAL_NUMBERS": yes})
        assert client.canonical_numbers is True
    for no in ("0", "false", "No", "off", ""):
        client = pz.PlugzClient.from_env({**env, "PLUGZ_CANONICAL_NUMBERS": no})
        assert client.canonical_numbers is False
    on = {**env, "PLUGZ_CANONICAL_NUMBERS": "1"}
    assert pz.PlugzClient.from_env(on, canonical_numbers=False).canonical_numbers is False
    with pytest.raises(pz.ConfigurationError, match="PLUGZ_CANONICAL_NUMBERS must be true or"):
        pz.PlugzClient.from_env({**env, "PLUGZ_CANONICAL_NUMBERS": "sometimes"})
    with pytest.raises(pz.ConfigurationError, match="canonical_numbers must be True or False"):
        pz.PlugzClient(INSTANCE_ID, INSTANCE_TOKEN, CLIENT_TOKEN, canonical_numbers="yes")  # type: ignore[arg-type]
