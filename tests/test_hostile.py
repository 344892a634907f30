"""Hostile input: only the SDK's errors (or a valid result) come out, never a crash.

Property tests; ``nox -s fuzz`` runs them with 10,000 examples each.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import FUZZ_BIG, JSON_VALUES, RESPONSE_FIELDS, fuzz
from hypothesis import given
from hypothesis import strategies as st

import plugz_async as pz
from plugz_async._bulk._input import MAX_LINE, TOO_LONG, bounded_lines, read_rows
from plugz_async._models import (
    CaptchaAnswer,
    PinConfirmation,
    PinRecovery,
    decode_availability,
    decode_code_confirmation,
    decode_code_request,
    decode_instance_status,
    decode_success,
    decode_unban_request,
)
from plugz_async._redact import Redactor
from plugz_async._transport import Transport
from plugz_async.cli import main

pytestmark = pytest.mark.fuzz

NUMBER = pz.PhoneNumber.parse("+55 11 90000-0001")
NOW = pz.FakeClock().now()

HOSTILE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8")
    | st.sampled_from("0123456789+-() .\x00\t\r\n\u200b\uff10\uff15\u0665\u06f5\u0966"),
    max_size=120,
) | st.builds(lambda digit, n: digit * n, st.sampled_from("9\uff19\u0669"), st.integers(0, 3000))


@fuzz()
@given(HOSTILE_TEXT)
def test_parse_gives_a_number_or_invalid_phone_number(text: str) -> None:
    try:
        number = pz.PhoneNumber.parse(text)
    except pz.InvalidPhoneNumber:
        return
    assert number.ddi.isascii() and number.ddi.isdigit()
    assert number.phone.isascii() and number.phone.isdigit()


async def _check(text: str) -> None:
    # Nothing listens here: an attempted request would be a ConnectError.
    client = pz.PlugzClient("i", "t", "c", base_url="http://127.0.0.1:9", clock=pz.FakeClock())
    async with client:
        await client.check_availability(text, retry=pz.RetryPolicy.none())


@fuzz(200)
@given(HOSTILE_TEXT)
def test_no_request_is_sent_for_an_invalid_number(text: str) -> None:
    try:
        pz.PhoneNumber.parse(text)
        valid = True
    except pz.InvalidPhoneNumber:
        valid = False
    try:
        asyncio.run(_check(text))
    except pz.InvalidPhoneNumber:
        assert not valid
    except pz.ConnectError:
        assert valid  # only a valid number got as far as the network


TRANSPORT = Transport(
    "http://127.0.0.1:9",
    "instance",
    "instance-token",
    "client-token",
    Redactor.of(["instance-token", "client-token"]),
    pz.FakeClock(),
    "ua",
)

DECODERS: dict[str, Callable[[dict[str, Any]], object]] = {
    "mobile/registration-available": lambda data: decode_availability(
        data, number=NUMBER, observed_at=NOW
    ),
    "mobile/request-registration-code": lambda data: decode_code_request(
        data, number=NUMBER, channel=pz.Channel.SMS, observed_at=NOW
    ),
    "mobile/respond-captcha": lambda data: decode_success(
        CaptchaAnswer, data, observed_at=NOW, route="r"
    ),
    "mobile/confirm-registration-code": lambda data: decode_code_confirmation(
        data, observed_at=NOW, route="r"
    ),
    "mobile/confirm-pin-code": lambda data: decode_success(
        PinConfirmation, data, observed_at=NOW, route="r"
    ),
    "mobile/recovery-pin-code": lambda data: decode_success(
        PinRecovery, data, observed_at=NOW, route="r"
    ),
    "mobile/request-unbanning": lambda data: decode_unban_request(data, observed_at=NOW, route="r"),
    "status": lambda data: decode_instance_status(data, observed_at=NOW, route="r"),
}
#: The routes whose answers may hold an ``error`` of their own (the status's).
ANSWER_FIELDS = {route.path: route.answer_field for route in pz.ROUTES}

FIELDS = RESPONSE_FIELDS
OBJECTS = st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=8)


def decode_all(status: int, body: bytes) -> None:
    for route, decoder in DECODERS.items():
        with contextlib.suppress(pz.PlugzError):
            decoder(TRANSPORT.decode(status, body, {}, route, answer_field=ANSWER_FIELDS[route]))


@fuzz()
@given(
    st.binary(max_size=300),
    st.sampled_from([200, 201, 204, 301, 400, 403, 404, 429, 500, 502, 503]),
)
def test_any_bytes_decode_to_a_result_or_a_plugz_error(body: bytes, status: int) -> None:
    decode_all(status, body)


@fuzz()
@given(JSON_VALUES | OBJECTS)
def test_any_json_decodes_to_a_result_or_a_plugz_error(value: Any) -> None:
    decode_all(200, json.dumps(value).encode())


LINES = st.lists(
    st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(',"\r\x00'), max_size=60).map(
        lambda line: line + "\n"
    ),
    max_size=12,
)


@fuzz()
@given(
    st.sampled_from(["", "number\n", "ddi,phone\n", "number,instance_id,instance_token\n"]), LINES
)
def test_any_input_file_gives_rows_never_a_crash(header: str, lines: list[str]) -> None:
    given = [header, *lines] if header else lines
    try:
        rows = list(read_rows(iter(given)))
    except pz.InvalidArgument as refused:  # a first line that is a header of no use, or binary
        first = given[0].strip()
        assert not header and "the input" in str(refused)
        assert "\x00" in first or not any(c.isdigit() for c in first)
        return
    assert len({row.key for row in rows}) == len(rows)  # every row keyed once


@fuzz()
@given(st.text(max_size=200), st.integers(0, 3 * MAX_LINE))
def test_lines_are_bounded(prefix: str, length: int) -> None:
    stream = io.StringIO(prefix + "\n" + "7" * length + "\n+5511900000001\n")
    lines = list(bounded_lines(stream))
    assert all(len(line) <= MAX_LINE + 1 for line in lines)
    assert lines[-1] == "+5511900000001\n"
    assert (TOO_LONG + "\n" in lines) == (length + 1 > MAX_LINE + 1 or length > MAX_LINE)


def test_hostile_bulk_files_are_checked_row_by_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad encodings, a BOM, CRLF, NUL bytes, missing columns and a huge line: every other
    row is checked and written; the bad ones are rows with an error."""
    size = 1024**3 if FUZZ_BIG else 10 * 1024**2
    path = tmp_path / "hostile.csv"
    with open(path, "wb") as f:
        f.write(b"\xef\xbb\xbfnumber,instance_id\r\n")
        f.write(b"+55 11 90000-0001,\r\n")
        f.write(b"\xff\xfe\xfd not utf-8\r\n")
        f.write(b"+55 11 90000-0002\x00,x\r\n")
        block = b"9" * (1024 * 1024)
        for _ in range(size // len(block)):  # one line of `size` bytes
            f.write(block)
        f.write(b"\r\n")
        f.write(b"+55 11 90000-0004,\r\n")
        f.write(b'"an unterminated quote runs to the end of the file\r\n')
    out = tmp_path / "results.jsonl"
    assert main(["bulk", str(path), "--out", str(out), "--sandbox", "--json-summary"]) == 0
    summary = json.loads(capsys.readouterr().out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["total"] == len(records) == 6  # every data row, once
    assert {r["outcome"] for r in records} >= {"ready", "appeal", "error"}
    inputs = {json.dumps(r["input"]) for r in records}
    assert any(TOO_LONG in text for text in inputs)  # the huge line is one bad row
