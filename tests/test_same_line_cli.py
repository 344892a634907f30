"""The command line and one line written two ways (Brazil's ninth digit): checked once, the
old form noted once a run, and ``--canonical-numbers`` sending the line's current form."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

import plugz_async as pz
from plugz_async.cli import EXIT_OK, EXIT_USAGE, build_parser, main
from plugz_async.cli._bulk import resume_command
from plugz_async.sandbox import CONFIRMATION_CODE, Reply, SandboxThread

OLD = "+55 44 9999-9999"
NEW = "+55 44 99999-9999"
OLD_TOO = "+55 44 8888-7777"
READY = "+55 11 90000-0001"
NOTE = (
    "plugz-async: note: +554499999999 is the old 8-digit form of +5544999999999 (Brazil's "
    "ninth digit): the same line"
)


def fake_clock() -> pz.FakeClock:
    return pz.FakeClock(start=datetime.now(timezone.utc))


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxThread]:
    """A sandbox in a thread, its credentials in the environment: the CLI's requests are
    read from its log."""
    with SandboxThread() as running:
        for name, value in running.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("PLUGZ_CANONICAL_NUMBERS", raising=False)
        yield running


def phones(sandbox: SandboxThread, route: str = "registration-available") -> list[str]:
    return [r["body"]["phone"] for r in sandbox.requests(route=route)]


def notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("plugz-async: note:")]


def test_bulk_checks_a_line_once_and_notes_the_old_form_once(
    sandbox: SandboxThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "numbers.csv"
    source.write_text(f"number\n{OLD}\n{READY}\n{NEW}\nnonsense\n{OLD_TOO}\n{OLD}\n")
    out = tmp_path / "results.jsonl"
    code = main(["bulk", str(source), "--out", str(out)], clock=fake_clock())
    printed, err = capsys.readouterr()
    assert code == EXIT_OK
    assert sorted(phones(sandbox)) == ["11900000001", "4488887777", "4499999999"]
    records = {r["index"]: r for r in pz.read_results(out)}
    for index in (2, 5):
        assert records[index]["outcome"] == "same_line"
        assert records[index]["same_line_as"] == {"index": 0, "number": "+554499999999"}
    assert records[3]["error"]["type"] == "InvalidPhoneNumber"  # a bad row is its own
    assert any(line.split() == ["same_line", "2"] for line in printed.splitlines())
    # Three rows wrote an old form (rows 0, 4 and 5), of two lines (row 5 is row 0's line):
    # one note for the run, counting each line once.
    assert notes(err) == [
        f"{NOTE}; 1 more number of this run is an old form too; sent as written "
        "(--canonical-numbers sends the form with the ninth digit)"
    ]


def test_a_resumed_bulk_does_not_check_a_line_its_file_checked(
    sandbox: SandboxThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text(f"{OLD}\n{READY}\n")
    out = tmp_path / "results.jsonl"
    assert main(["bulk", str(source), "--out", str(out)], clock=fake_clock()) == EXIT_OK
    capsys.readouterr()
    source.write_text(f"{OLD}\n{READY}\n{NEW}\n+55 11 90000-0002\n")  # rows added since
    code = main(
        ["bulk", str(source), "--out", str(out), "--resume", "--json-summary"], clock=fake_clock()
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK
    assert phones(sandbox) == ["4499999999", "11900000001", "11900000002"]  # the line once
    assert summary["outcomes"] == {"same_line": 1, "wait": 1} and summary["skipped"] == 2
    records = {r["index"]: r for r in pz.read_results(out)}
    assert records[2]["same_line_as"] == {"index": 0, "number": "+554499999999"}


def test_bulk_sends_the_line_with_canonical_numbers_and_its_resume_says_so(
    sandbox: SandboxThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text(f"{OLD}\n{READY}\n")
    out = tmp_path / "results.jsonl"
    argv = ["bulk", str(source), "--out", str(out), "--canonical-numbers"]
    assert main(argv, clock=fake_clock()) == EXIT_OK
    assert phones(sandbox) == ["44999999999", "11900000001"]
    assert pz.read_results(out)[0]["number"] == "+554499999999"  # as the file wrote it
    assert notes(capsys.readouterr().err) == [
        f"{NOTE}; sent with the ninth digit (--canonical-numbers)"
    ]
    args = build_parser("bulk").parse_args(argv)
    assert resume_command(args).endswith("--resume --canonical-numbers")


def test_the_environment_turns_canonical_numbers_on_and_a_bad_value_is_refused(
    sandbox: SandboxThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLUGZ_CANONICAL_NUMBERS", "yes")
    assert main(["check", OLD], clock=fake_clock()) == EXIT_OK
    assert phones(sandbox) == ["44999999999"]
    monkeypatch.setenv("PLUGZ_CANONICAL_NUMBERS", "sometimes")
    assert main(["check", OLD], clock=fake_clock()) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "PLUGZ_CANONICAL_NUMBERS must be true or false" in err
    assert len(sandbox.requests()) == 1  # nothing sent


def test_check_checks_a_line_once_and_names_the_number_that_holds_it(
    sandbox: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check", OLD, READY, NEW, OLD, "--json"], clock=fake_clock())
    printed, err = capsys.readouterr()
    assert code == EXIT_OK
    assert phones(sandbox) == ["4499999999", "11900000001"]
    rows = json.loads(printed)
    assert [r["outcome"] for r in rows][2:] == ["same_line", "same_line"]
    assert rows[2]["same_line_as"] == {"index": 0, "number": "+554499999999"}
    assert rows[2]["number"] == "+5544999999999" and rows[2]["attempts"] == 0
    # The old form twice, one line: one number, and no other.
    assert notes(err) == [
        f"{NOTE}; sent as written (--canonical-numbers sends the form with the ninth digit)"
    ]
    assert main(["check", NEW, OLD], clock=fake_clock()) == EXIT_OK
    table = capsys.readouterr().out
    assert "the same line as number 1 (+5544999999999), checked there" in " ".join(table.split())


def test_plan_and_check_of_a_current_form_say_no_note(
    sandbox: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", READY], clock=fake_clock()) == EXIT_OK
    assert main(["check", NEW, READY], clock=fake_clock()) == EXIT_OK
    assert notes(capsys.readouterr().err) == []
    assert main(["plan", OLD, "--json"], clock=fake_clock()) == EXIT_OK
    assert notes(capsys.readouterr().err) == [
        f"{NOTE}; sent as written (--canonical-numbers sends the form with the ninth digit)"
    ]


def test_register_notes_the_old_form_and_sends_the_line_when_asked(
    sandbox: SandboxThread,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("builtins.input", lambda prompt="": CONFIRMATION_CODE)
    code = main(["register", OLD_TOO, "--canonical-numbers"], clock=fake_clock())
    out, err = capsys.readouterr()
    assert code == EXIT_OK and "+554488887777 is connected" in out
    assert notes(err) == [
        "plugz-async: note: +554488887777 is the old 8-digit form of +5544988887777 (Brazil's "
        "ninth digit): the same line; sent with the ninth digit (--canonical-numbers)"
    ]
    assert phones(sandbox) == ["44988887777"]
    assert phones(sandbox, "request-registration-code") == ["44988887777"]


def test_the_old_form_note_counts_each_line_once(
    sandbox: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", OLD, READY, OLD], clock=fake_clock()) == EXIT_OK
    assert notes(capsys.readouterr().err) == [
        f"{NOTE}; sent as written (--canonical-numbers sends the form with the ninth digit)"
    ]
    assert main(["check", OLD, OLD_TOO, OLD, NEW, OLD_TOO], clock=fake_clock()) == EXIT_OK
    assert notes(capsys.readouterr().err) == [
        f"{NOTE}; 1 more number of this run is an old form too; sent as written "
        "(--canonical-numbers sends the form with the ninth digit)"
    ]
    # A line written new first: its old form is that line's duplicate, not sent, no note.
    assert main(["check", NEW, OLD], clock=fake_clock()) == EXIT_OK
    assert notes(capsys.readouterr().err) == []
    sent = ["4499999999", "11900000001", "4499999999", "4488887777", "44999999999"]
    assert sorted(phones(sandbox)) == sorted(sent)  # each line once a command


def test_check_checks_a_line_on_its_next_number_when_the_first_got_no_answer(
    sandbox: SandboxThread, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.then(Reply(400, json={"error": "bad phone"}), number=OLD)
    code = main(["check", OLD, NEW, "+55 (44) 9999-9999", "--json"], clock=fake_clock())
    rows = json.loads(capsys.readouterr().out)
    assert code != EXIT_OK  # the 400 is said
    assert phones(sandbox) == ["4499999999", "44999999999"]
    assert rows[0]["error"]["type"] == "BadRequestError" and rows[0]["same_line_as"] is None
    assert rows[1]["outcome"] not in ("error", "same_line")  # checked: row 0 has no answer
    assert rows[2]["same_line_as"] == {"index": 1, "number": "+5544999999999"}
