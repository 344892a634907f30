"""Every table of the command line, at 80, 100, 120 and 160 columns: nothing cut.

Each table is drawn on a rich console of each width. What a person needs must be there,
whole: every number, each row's outcome, each error's kind and the start of its message,
when the next channel opens. No line is wider than the console, no cell is cut (no
``…``), and no column shrank to nothing: the header line holds whole headers only. Then
``plugz-async demo`` runs under a real terminal of 80 columns.
"""

from __future__ import annotations

import io
import os
import re
import select
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from rich.cells import cell_len
from rich.console import Console, RenderableType

import plugz_async as pz
from plugz_async._bulk._summary import BulkSummary
from plugz_async._models import decode_availability
from plugz_async._registration import EventKind, RegistrationEvent, RegistrationStep
from plugz_async.cli._render import (
    Messages,
    ResultRow,
    counts_table,
    events_table,
    fold,
    opens_table,
    registration_facts,
    results_table,
    statuses_table,
    summary_table,
    workers_table,
)

if TYPE_CHECKING:  # the queue's types need its extra: imported by the tests that use them
    from plugz_async.queue import RegistrationStatus, WorkerStatus

WIDTHS = [80, 100, 120, 160]
NOW = datetime(2025, 3, 14, 12, 0, tzinfo=timezone.utc)
OVERDUE = 30.0


def draw(table: RenderableType | None, width: int) -> str:
    """``table`` as a console of ``width`` columns prints it."""
    assert table is not None
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(table)
    return console.export_text()


def flat(text: str) -> str:
    """``text`` as one line: a note wrapped at spaces reads as it was written."""
    return " ".join(text.split())


def assert_fits(text: str, width: int) -> None:
    """No line wider than the console, and no cell cut short."""
    for line in text.splitlines():
        assert cell_len(line) <= width, line
    assert "…" not in text, text


def header_line(text: str, headers: Iterable[str], keys: Iterable[str]) -> list[str]:
    """The headers of the table in ``text``: a line of whole headers (two spaces or more
    apart) that has every key header. None drawn (a card a row) is an empty list."""
    known = set(headers)
    for line in text.splitlines():
        pieces = re.split(r"\s{2,}", line.strip())
        if set(keys) <= set(pieces) and set(pieces) <= known:
            return pieces
    raise AssertionError(f"no line of whole headers {sorted(known)}:\n{text}")


def line_with(text: str, *words: str) -> str:
    """The line that has each of ``words`` whole (a word: between spaces or line ends)."""
    for line in text.splitlines():
        if all(re.search(rf"(?:^|\s){re.escape(w)}(?:\s|$)", line) for w in words):
            return line
    raise AssertionError(f"no line with {words}:\n{text}")


# -- the results of check, plan and demo -------------------------------------------------------


def plan(
    clock: pz.FakeClock, number: str, *, wa_old: bool = False, **wire: Any
) -> pz.RegistrationPlan:
    availability = decode_availability(
        wire,
        number=pz.PhoneNumber.parse(number),
        observed_at=clock.now(),
        observed_monotonic=clock.monotonic(),
    )
    return pz.RegistrationPlanner(clock=clock, allow_wa_old=wa_old).plan(availability)


def open_in(sms: float, voice: float, wa_old: float) -> dict[str, Any]:
    return {
        "available": True,
        "smsWaitSeconds": sms,
        "voiceWaitSeconds": voice,
        "waOldWaitSeconds": wa_old,
        "waOldEligible": True,
    }


TIMEOUT = pz.RequestTimeout(
    "no answer from mobile/registration-available within 10 s (after 3 attempts, 30.0 s in all)"
)
ERRORS = {
    "+5511900005030": (
        pz.ServerError("HTTP 503", status=503),
        "ServerError: HTTP 503",
    ),
    "+5511900009001": (TIMEOUT, "RequestTimeout: no answer from mobile/registration-available"),
    "+5511900009004": (
        pz.APIError(
            "HTTP 200: INTERNAL", status=200, error="INTERNAL", message="registration check failed"
        ),
        "APIError: HTTP 200 INTERNAL: registration check failed",
    ),
}


def result_rows(scenarios: bool) -> list[ResultRow]:
    clock = pz.FakeClock(start=NOW)
    rows = [
        ResultRow("+5511900000001", plan(clock, "+5511900000001", **open_in(0, 0, 0)), "ready"),
        ResultRow("+5511900000002", plan(clock, "+5511900000002", **open_in(30, 90, 600)), "waits"),
        ResultRow(
            "+5511900000006",
            plan(clock, "+5511900000006", wa_old=True, **open_in(120, 90, 45)),
            "voice-first",
        ),
        ResultRow(
            "+5511900000004",
            plan(clock, "+5511900000004", available=False, blocked=True, appealToken="Ae0B_token"),
            "banned",
        ),
        ResultRow(
            "+5511900000005",
            plan(
                clock,
                "+5511900000005",
                available=False,
                reason="number is registered on another device",
            ),
            "unavailable",
        ),
        *(ResultRow(number, error, "faults") for number, (error, _) in ERRORS.items()),
        ResultRow(
            "+55 44 9",
            pz.InvalidPhoneNumber(
                "'+55 44 9' is not a possible phone number: too short for its country",
                input="+55 44 9",
            ),
            "invalid: too short",
        ),
        ResultRow("+5521987654321", plan(clock, "+5521987654321", **open_in(0, 0, 0)), "(mix)"),
        ResultRow(
            "+5511900000007",
            plan(clock, "+5511900000007", **open_in(0, 0, 0)),
            "blocked-at-code-request",
        ),
        # The same line as an earlier number (Brazil's ninth digit): not checked again.
        ResultRow(
            "+5521887654321",
            pz.SameLine(8, pz.PhoneNumber.parse("+5521987654321")),
            "(mix)",
        ),
    ]
    if not scenarios:
        rows = [ResultRow(row.number, row.result) for row in rows]
    return rows


RESULT_HEADERS = ["Number", "Scenario", "Outcome", "Next", "SMS", "Voice", "wa_old", "Note"]


@pytest.mark.parametrize("scenarios", [True, False], ids=["with scenarios", "without"])
@pytest.mark.parametrize("width", WIDTHS)
def test_results_show_every_number_outcome_wait_and_error(scenarios: bool, width: int) -> None:
    rows = result_rows(scenarios)
    text = draw(results_table(rows, NOW, title="Availability and plan"), width)
    assert_fits(text, width)
    headers = header_line(text, RESULT_HEADERS, ["Number", "Outcome"])
    assert "PlanOutcome" not in text
    if width >= 100:  # when each channel opens: a column of its own
        assert {"Next", "SMS", "Voice"} <= set(headers)
    for row in rows:
        if isinstance(row.result, Exception):
            outcome = "error"
        elif isinstance(row.result, pz.SameLine):
            outcome = "same_line"
            assert "the same line as number 9 (+5521987654321), checked there" in flat(text)
        else:
            outcome = row.result.outcome.value
        line = line_with(text, row.number, outcome)
        if scenarios and "Scenario" in headers:
            assert f"  {row.scenario}  " in line
        elif scenarios:  # under its row
            assert f"Scenario: {row.scenario}" in text
    assert "in 30s" in line_with(text, "+5511900000002", "wait")  # SMS opens in 30 s
    assert "in 1m30s" in line_with(text, "+5511900000002", "wait")  # voice in 90 s
    assert "in 45s" in text  # the pop-up of +5511900000006: a column, or under its row
    for _, start in ERRORS.values():
        assert start in flat(text)
    assert "InvalidPhoneNumber: too short for its country" in flat(text)
    assert "appeal token Ae0B_token" in flat(text)
    assert "number is registered on another device" in flat(text)


def test_the_results_layout_changes_with_the_width() -> None:
    rows = result_rows(scenarios=True)
    table = results_table(rows, NOW)
    assert table.layout(160).name == "notes below"
    assert table.layout(120).name == "notes below"
    assert table.layout(100).name == "short"
    assert table.layout(80).name == "fewer columns"
    assert table.layout(40).name == "cards"
    only = results_table([ResultRow("+5511900000001", rows[3].result)], NOW)
    assert only.layout(160).name == "table"  # a note that fits whole stays in its column


def test_a_narrow_terminal_gets_a_card_a_row() -> None:
    rows = result_rows(scenarios=True)
    text = draw(results_table(rows, NOW), 40)
    assert_fits(text, 40)
    assert "+5511900000002  wait\n  Scenario: waits\n  Next: sms\n" in text
    assert "  SMS: in 30s (" in text
    for _, start in ERRORS.values():
        assert start in flat(text)


def test_a_number_without_a_country_code_says_its_fix_on_a_line_of_its_own() -> None:
    from plugz_async.cli._render import fix_hint

    with pytest.raises(pz.MissingCountryCode) as caught:
        pz.PhoneNumber.parse("11 90000-0003")
    error = caught.value
    text = draw(results_table([ResultRow("11 90000-0003", error)], NOW), 80)
    assert_fits(text, 80)
    assert "MissingCountryCode: has no '+' and no country code" in flat(text)
    assert "--region" not in text  # the fix is a line of its own, whole
    assert "--region BR" in (fix_hint(error) or "")


# -- the summaries of bulk and demo ------------------------------------------------------------


def a_summary() -> BulkSummary:
    summary = BulkSummary(
        total=25,
        outcomes=Counter(
            {pz.PlanOutcome.READY: 16, pz.PlanOutcome.WAIT: 1, pz.PlanOutcome.ERROR: 3}
        ),
        errors=Counter({"ResponseDecodeError": 1, "RequestTimeout": 1, "InvalidPhoneNumber": 1}),
    )
    now = NOW.timestamp()
    for channel, delays in {pz.Channel.SMS: (0, 30, 5400), pz.Channel.VOICE: (90, 90, 90)}.items():
        for delay in delays:
            summary.opens[channel].add(now + delay)
    return summary


@pytest.mark.parametrize("width", WIDTHS)
def test_the_summary_counts_by_outcome(width: int) -> None:
    text = draw(summary_table(a_summary()), width)
    assert_fits(text, width)
    assert header_line(text, ["Outcome", "Count"], ["Outcome", "Count"]) == ["Outcome", "Count"]
    assert line_with(text, "ready", "16") and line_with(text, "error:", "ResponseDecodeError", "1")


@pytest.mark.parametrize("width", WIDTHS)
def test_when_the_channels_open(width: int) -> None:
    text = draw(opens_table(a_summary(), NOW, this_run=True), width)
    assert_fits(text, width)
    headers = ["Channel", "Numbers", "Earliest", "Median", "Latest"]
    assert header_line(text, headers, headers) == headers
    assert line_with(text, "SMS", "3", "now", "in", "30s") and "in 1h30m" in text
    assert line_with(text, "Voice", "3", "1m30s")


# -- the durable queue -------------------------------------------------------------------------


def status(number: str, state: str, **fields: Any) -> RegistrationStatus:
    pytest.importorskip("saq")
    from plugz_async.queue import RegistrationStatus

    done = state in ("connected", "failed", "appeal", "blocked_at_code_request")
    values: dict[str, Any] = {
        "number": number,
        "line": number,
        "instance": "3C0FFEE-instance-of-the-sales-team",
        "status": state,
        "done": done,
        "outcome": None,
        "step": RegistrationStep.DONE if done else RegistrationStep(state),
        "channel": "sms",
        "wants": None,
        "next_at": None,
        "plan": None,
        **fields,
    }
    return RegistrationStatus(**values)


FAILED = (
    "InstanceNotFoundError: mobile/request-registration-code: HTTP 404: NOT_FOUND: instance "
    "not found (the instance was deleted, or its token changed)"
)


def statuses() -> list[RegistrationStatus]:
    return [
        status("+5511900000001", "connected"),
        status("+5511900000002", "request_code", next_at=NOW + timedelta(seconds=90)),
        status("+5511900000003", "check", next_at=NOW - timedelta(seconds=95), channel=None),
        status(
            "+5511900000008",
            "confirm_code",
            wants="code",
            next_at=NOW + timedelta(minutes=10),
            error="CodeRejected: wrong code",
        ),
        status("+5511900000009", "failed", error=FAILED),
        status("+5511900000010", "blocked_at_code_request"),
    ]


STATUS_HEADERS = [
    "Number",
    "Scenario",
    "Instance",
    "Status",
    "Channel",
    "Waits for",
    "Next step",
    "Error",
]


@pytest.mark.parametrize("scenarios", [True, False], ids=["the queue's demo", "queue status"])
@pytest.mark.parametrize("width", WIDTHS)
def test_registrations_show_number_status_next_step_and_error(scenarios: bool, width: int) -> None:
    rows = statuses()
    named = {"+5511900000010": "blocked-at-code-request"} if scenarios else None
    table = statuses_table(rows, NOW, overdue=OVERDUE, title="Registrations", scenarios=named)
    text = draw(table, width)
    assert_fits(text, width)
    headers = header_line(text, STATUS_HEADERS, ["Number", "Status"])
    for row in rows:
        assert line_with(text, row.number, row.status)
    assert "in 1m30s" in line_with(text, "+5511900000002")
    assert "overdue 1m35s" in line_with(text, "+5511900000003")
    assert "until" in line_with(text, "+5511900000008", "code")
    assert FAILED in flat(text) and "CodeRejected: wrong code" in flat(text)
    if "Instance" not in headers:
        assert "Instance: 3C0FFEE-instance-of-the-sales-team" in text
    if scenarios and "Scenario" not in headers:
        assert "Scenario: blocked-at-code-request" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_counts_by_status(width: int) -> None:
    text = draw(counts_table({"connected": 16, "blocked_at_code_request": 1, "check": 3}), width)
    assert_fits(text, width)
    assert header_line(text, ["Status", "Count"], ["Status", "Count"]) == ["Status", "Count"]
    assert line_with(text, "connected", "16") and line_with(text, "blocked_at_code_request", "1")


def one_registration() -> RegistrationStatus:
    events = (
        RegistrationEvent(kind=EventKind.CHECKED, at=NOW, message="checked: available"),
        RegistrationEvent(
            kind=EventKind.WAITING,
            at=NOW,
            message="waiting 30 s for sms (voice opens in 90 s; wa_old is not allowed)",
            channel=pz.Channel.SMS,
            wait_seconds=30,
        ),
        RegistrationEvent(
            kind=EventKind.CODE_REQUESTED,
            at=NOW + timedelta(seconds=30),
            message="code requested by sms",
            channel=pz.Channel.SMS,
        ),
    )
    return status(
        "+5511900000002",
        "confirm_code",
        wants="code",
        next_at=NOW + timedelta(minutes=10),
        error=FAILED,
        appeal_token="Ae0B_token",
        events=events,
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_one_registrations_facts(width: int) -> None:
    text = draw(registration_facts(one_registration(), NOW, OVERDUE), width)
    assert_fits(text, width)
    for name, value in [
        ("Number", "+5511900000002"),
        ("Instance", "3C0FFEE-instance-of-the-sales-team"),
        ("Status", "confirm_code"),
        ("Waits for", "code"),
        ("Appeal token", "Ae0B_token"),
    ]:
        assert re.search(rf"^{name}\s+{re.escape(value)}$", text, re.M), name
    assert FAILED in flat(text) and re.search(r"^Next step +until ", text, re.M)


@pytest.mark.parametrize("width", WIDTHS)
def test_one_registrations_events(width: int) -> None:
    text = draw(events_table(one_registration(), NOW), width)
    assert_fits(text, width)
    headers = header_line(text, ["At", "Event", "Channel", "What"], ["At", "Event"])
    for event in one_registration().events:
        assert line_with(text, event.kind.value)
        assert event.message in flat(text)
    if width >= 100:
        assert headers == ["At", "Event", "Channel", "What"]


def workers() -> list[WorkerStatus]:
    pytest.importorskip("saq")
    from plugz_async.queue import WorkerStatus

    return [
        WorkerStatus(
            id="a1b2c3d4e5f6",
            host="ip-10-0-12-34.sa-east-1.compute.internal",
            pid=48213,
            started_at=NOW - timedelta(hours=2),
            last_seen=NOW - timedelta(seconds=3),
            running=7,
            concurrency=10,
            alive=True,
        ),
        WorkerStatus(
            id="f6e5d4c3b2a1",
            host="worker-2",
            pid=None,
            started_at=None,
            last_seen=NOW - timedelta(minutes=4, seconds=10),
            running=0,
            concurrency=None,
            alive=False,
        ),
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_workers(width: int) -> None:
    headers = ["Worker", "Host", "PID", "State", "Last seen", "Running", "Started"]
    text = draw(workers_table(workers(), NOW, title="Workers of 'plugz'"), width)
    assert_fits(text, width)
    shown = header_line(text, headers, ["Worker", "State"])
    assert line_with(text, "a1b2c3d4", "alive", "3s", "ago", "7/10")
    assert line_with(text, "f6e5d4c3", "gone", "4m10s", "ago", "0/?")
    assert "ip-10-0-12-34.sa-east-1.compute.internal" in text
    if "Host" not in shown:
        assert "Host: ip-10-0-12-34.sa-east-1.compute.internal" in text


QUEUED_HEADERS = ["Line", "Number", "Instance", "Status", "Note"]


@pytest.mark.parametrize("width", WIDTHS)
def test_what_queue_register_queued(width: int) -> None:
    pytest.importorskip("saq")
    from plugz_async.cli._render import queued_table
    from plugz_async.cli.queue._register import Queued, RowToQueue

    instance = "3C0FFEE-instance-of-the-sales-team"
    results = [
        Queued(
            RowToQueue(2, "+55 11 90000-0001", instance),
            status("+5511900000001", "check"),
            new=True,
        ),
        Queued(
            RowToQueue(3, "+55 44 9", instance),
            error=pz.InvalidPhoneNumber(
                "'+55 44 9' is not a possible phone number: too short for its country"
            ),
        ),
        Queued(
            RowToQueue(4, "+55 11 90000-0002", None),
            error=pz.ConfigurationError(
                "no instance: fill the row's instance, or give --instance (or PLUGZ_INSTANCE_ID)"
            ),
        ),
    ]
    text = draw(queued_table(results, lines=True), width)
    assert_fits(text, width)
    header_line(text, QUEUED_HEADERS, ["Line", "Number", "Status"])
    assert line_with(text, "2", "+5511900000001", "check")
    assert line_with(text, "3", "+55", "44", "9", "refused")
    assert line_with(text, "4", "+55", "11", "90000-0002", "refused")
    assert "InvalidPhoneNumber: too short for its country" in flat(text)
    assert "ConfigurationError: no instance: fill the row's instance" in flat(text)


# -- a real terminal ---------------------------------------------------------------------------

ESCAPES = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-B]"
)


def in_a_terminal(args: Sequence[str], columns: int, timeout: float = 60) -> tuple[int, str]:
    """``plugz-async ARGS`` run in a pseudo-terminal ``columns`` wide (stdin, stdout and
    stderr all on it): its exit code, and what it printed, escapes stripped."""
    import fcntl
    import pty
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-m", "plugz_async", *args],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**env, "TERM": "xterm-256color"},
        start_new_session=True,
    )
    os.close(secondary)
    printed = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal's other side closed: the command ended
                break
            if not chunk:
                break
            printed += chunk
    finally:
        os.close(primary)
        code = process.wait(timeout=10)
    return code, ESCAPES.sub("", printed.decode("utf-8", "replace"))


# The demo's scenarios that answer at once (the 429s, 503s, slow and dropped ones wait).
DEMO_NUMBERS = """number,scenario
+55 11 90000-0001,ready
+55 11 90000-0002,waits
+55 11 90000-0004,banned
+55 11 90000-0005,unavailable
+55 11 90000-0006,voice-first
+55 11 90000-0007,blocked-at-code-request
+55 11 90000-9003,broken-json
+55 11 90000-9004,error-body
+44 7700 900123,(mix)
5531991234567,(mix)
+55 44 9,invalid: too short
"""


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_demo_in_a_terminal_of_80_columns(tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.csv"
    numbers.write_text(DEMO_NUMBERS)
    code, printed = in_a_terminal(["demo", "--numbers", str(numbers)], 80)
    assert code == 0, printed
    # What the terminal shows: each line, or each redrawing of the progress bar.
    lines = printed.replace("\r\n", "\n").replace("\r", "\n").splitlines()
    for line in lines:
        assert cell_len(line) <= 80, line
    assert "…" not in printed
    table = printed[printed.index("Availability and plan") :]
    for number in ["+5511900000001", "+5511900000007", "+447700900123", "+5531991234567"]:
        assert number in table
    assert line_with(table, "+5511900000007", "blocked-at-code-request", "ready")
    assert line_with(table, "+5511900000002", "waits", "wait", "in")  # SMS in about 30 s
    assert line_with(table, "+5511900009003", "broken-json", "error")
    for reason in [
        "ResponseDecodeError: the answer of mobile/registration-available is not JSON",
        "APIError: HTTP 200 INTERNAL: registration check failed",
        "InvalidPhoneNumber: too short for its country",
        "appeal token Ae0B_sandbox-appeal-token",
        "number is registered on another device",
    ]:
        assert reason in flat(table), reason
    assert "(plugz-async sandbox --help)." in printed  # a command, never wrapped


# -- messages ----------------------------------------------------------------------------------

RESUME = (
    "plugz-async: 1 row ended in an error that may pass (ServerError 1); check them again "
    "with: plugz-async bulk pt.csv --out pt.jsonl --resume --region BR --sandbox"
)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_message_folds_at_spaces_and_its_command_keeps_a_line(width: int) -> None:
    folded = fold(RESUME, width)
    lines = folded.splitlines()
    command = "plugz-async bulk pt.csv --out pt.jsonl --resume --region BR --sandbox"
    if len(RESUME) <= width:
        assert folded == RESUME  # a message that fits is left as it is
        return
    assert lines[-1] == f"    {command}"  # whole, alone, to be copied in one piece
    assert all(len(line) <= width for line in lines)
    # Only whole words, in order: nothing lost, nothing cut.
    assert " ".join(folded.split()) == " ".join(RESUME.split())


def test_a_message_with_no_command_folds_at_spaces_only() -> None:
    message = (
        "plugz-async: '11 90000-0003' has no '+' and no country code that makes a valid "
        "number (read as +11900000003, it is none): give a default region to read it in "
        "(default_region='BR', PLUGZ_DEFAULT_REGION, --region BR), or write it with '+' "
        "and the country code"
    )
    lines = fold(message, 80).splitlines()
    assert len(lines) == 4 and all(len(line) <= 80 for line in lines)
    assert any("--region BR" in line for line in lines)  # never split inside the flag
    assert " ".join(" ".join(lines).split()) == message


def test_messages_are_one_line_each_on_a_pipe() -> None:
    """A script reads a message whole: off a terminal, `Messages` folds nothing."""
    out = io.StringIO()
    Messages(file=out, width=40, soft_wrap=True).print(RESUME, markup=False)
    assert out.getvalue() == RESUME + "\n"


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_the_region_hint_in_a_terminal_of_80_columns_is_folded_at_spaces() -> None:
    code, printed = in_a_terminal(["check", "--sandbox", "11 90000-0003"], 80)
    assert code == 2, printed
    lines = printed.replace("\r\n", "\n").splitlines()
    assert all(cell_len(line) <= 80 for line in lines), lines
    hint = [line for line in lines if "--region BR" in line]
    assert hint, printed  # the way to fix it, its flag on one line
    # The lines the command wrote fit (the terminal breaks none of them mid-word), and
    # they hold the message's words whole, in order.
    assert (
        "has no '+' and no country code that makes a valid number (read as +11900000003, it is "
        "none): give a default region to read it in (default_region='BR', PLUGZ_DEFAULT_REGION, "
        "--region BR), or write it with '+' and the country code"
    ) in flat(printed)


def test_a_column_no_row_fills_goes_before_one_that_says_something() -> None:
    from plugz_async.cli._layout import Column, Sheet

    sheet = Sheet(
        Column("Number", key=True),
        Column("Scenario", drop=1),
        Column("Instance", drop=2),
        Column("Status"),
        Column("Waits for"),
        Column("Next step"),
    )
    for i in range(3):
        number, scenario = f"+55119000000{i:02d}", "blocked-at-code-request"
        sheet.add_row(number, scenario, f"sandbox-instance-{i + 10}", "connected", "", "")
    wide, narrow = draw(sheet, 160), draw(sheet, 80)
    assert wide.splitlines()[0].split() == [
        "Number",
        "Scenario",
        "Instance",
        "Status",
        "Waits",
        "for",
        "Next",
        "step",
    ]  # fits whole: every column stays
    assert sheet.layout(80).name == "table"
    assert narrow.splitlines()[0].split() == ["Number", "Scenario", "Instance", "Status"]
    assert line_with(narrow, "+5511900000002", "blocked-at-code-request", "sandbox-instance-12")
    assert len(narrow.splitlines()) == 2 + 3  # a line a row: nothing moved under them


@pytest.mark.parametrize("columns", ["0", "5", "", "wide"])
def test_a_columns_setting_too_small_or_not_a_number_draws_at_160(
    columns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``COLUMNS=$(tput cols)`` with no terminal sets 0: the output must not vanish."""
    from plugz_async.cli._render import console

    monkeypatch.setenv("COLUMNS", columns)
    assert console().width == 160 and console(stderr=True).width == 160
    monkeypatch.setenv("COLUMNS", "80")
    assert console().width == 80


@pytest.mark.parametrize("width", WIDTHS)
def test_the_sandbox_test_numbers_fit_its_help(width: int) -> None:
    from plugz_async.sandbox import SCENARIOS

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-m", "plugz_async", "sandbox", "--help"],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": str(width)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(cell_len(line) <= width for line in lines), max(lines, key=cell_len)
    for scenario in SCENARIOS:
        assert line_with(done.stdout, scenario.number, scenario.name), scenario.number
    # The description is prose: wrapped at spaces, as argparse wraps it.
    assert "test credentials and the test" in flat(done.stdout)
