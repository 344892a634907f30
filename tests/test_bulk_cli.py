"""plugz-async bulk: files in, results out, resumable after SIGKILL at any moment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers import pipe_of

import plugz_async as pz
from plugz_async._bulk._input import read_rows
from plugz_async.cli import EXIT_OK, EXIT_USAGE, main
from plugz_async.sandbox import SandboxThread


def fake_clock() -> pz.FakeClock:
    return pz.FakeClock(start=datetime.now(timezone.utc))


def test_reading_csv_lines_and_bad_rows() -> None:
    csv_rows = list(
        read_rows(
            iter(
                [
                    "Number,instance_id,instance_token\n",
                    "+55 11 90000-0001,,\n",
                    "+55 11 90000-0002,inst,tok\n",
                    "+55 11 90000-0003,inst,\n",  # half the credentials: a bad row, kept
                ]
            )
        )
    )
    assert [r.key for r in csv_rows] == ["0", "1", "2"]
    assert csv_rows[1].instance_id == "inst" and csv_rows[1].instance_token == "tok"
    assert csv_rows[2].number == "+55 11 90000-0003" and csv_rows[2].instance_id is None
    ddi = list(read_rows(iter(["ddi,phone,key\n", "55,11900000001,a\n"])))
    assert ddi[0].number == "+55 11900000001" and ddi[0].key == "a"
    plain = list(read_rows(iter(["# numbers\n", "+55 11 90000-0001\n", "\n", "5511900000002\r\n"])))
    assert [(r.number, r.key) for r in plain] == [
        ("+55 11 90000-0001", "0"),
        ("5511900000002", "1"),
    ]
    assert list(read_rows(iter([]))) == []


def test_bulk_writes_one_record_per_row_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("+55 11 90000-0001\n+55 11 90000-0001\n+55 11 90000-0004\nnonsense\n")
    out = tmp_path / "results.jsonl"
    code = main(
        ["bulk", str(source), "--out", str(out), "--sandbox", "--json-summary"], clock=fake_clock()
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK
    assert summary["total"] == 4
    assert summary["outcomes"] == {"ready": 1, "same_line": 1, "appeal": 1, "error": 1}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["key"] for r in records) == ["0", "1", "2", "3"]  # the duplicate is a row too
    # ...checked once: the second row names the first.
    twice = next(r for r in records if r["key"] == "1")
    assert twice["same_line_as"] == {"index": 0, "number": "+5511900000001"} and twice["final"]
    assert {r["input"] for r in records} == {"+55 11 90000-0001", "+55 11 90000-0004", "nonsense"}


def test_bulk_csv_from_standard_input_to_a_csv(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "plugz_async",
            "bulk",
            "-",
            "--out",
            str(out),
            "--format",
            "csv",
            "--sandbox",
        ],
        input="number,note\n+55 11 90000-0002,x\n+55 11 90000-0005,y\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_OK, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("key,index,input") and len(lines) == 3
    assert "Results in" in done.stdout and "unavailable" in done.stdout


def test_bulk_refuses_to_overwrite_and_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.jsonl"
    out.write_text('{"key": "0"}\n')
    source = tmp_path / "n.txt"
    source.write_text("+55 11 90000-0001\n")
    assert main(["bulk", str(source), "--out", str(out), "--sandbox"]) == EXIT_USAGE
    assert "resume it, or choose another file" in capsys.readouterr().err
    assert (
        main(
            [
                "bulk",
                str(source),
                "--out",
                str(tmp_path / "o.jsonl"),
                "--sandbox",
                "--concurrency",
                "0",
            ]
        )
        == EXIT_USAGE
    )
    assert (
        main(
            ["bulk", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "p.jsonl"), "--sandbox"]
        )
        == EXIT_USAGE
    )


def records(path: Path) -> list[dict[str, object]]:
    """Complete records only (a killed run may leave a half-written last line)."""
    data = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in data.splitlines(keepends=True) if line.endswith("\n")]


@pytest.mark.chaos
def test_killed_at_any_moment_and_resumed_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    rows = 2400
    source = tmp_path / "numbers.csv"
    lines = ["number"] + [f"+55 31 9{i % 1000:04d}-{i:04d}" for i in range(rows)]  # with duplicates
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "results.jsonl"
    kills = []
    with SandboxThread() as sandbox:
        env = {**os.environ, **sandbox.env()}
        command = [
            sys.executable,
            "-m",
            "plugz_async",
            "bulk",
            str(source),
            "--out",
            str(out),
            "--concurrency",
            "16",
            "--rate",
            "2000",
            "--json-summary",
        ]
        for target in (300, 1100, 1900):  # kill when about this many are written
            process = subprocess.Popen(
                command + (["--resume"] if out.exists() else []),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 30
            while (
                len(records(out)) < target
                and process.poll() is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills.append(len(records(out)))
        with open(out, "a") as f:
            f.write('{"key": "half-writ')  # as if killed in the middle of a write
        final = subprocess.run(
            [*command, "--resume"], env=env, capture_output=True, text=True, timeout=60
        )
    assert final.returncode == EXIT_OK, final.stderr
    summary = json.loads(final.stdout)
    done = records(out)
    keys = [str(r["key"]) for r in done]
    assert sorted(keys, key=int) == [str(i) for i in range(rows)]  # every row exactly once
    assert len(set(keys)) == rows == len(done)
    assert summary["skipped"] == kills[-1] and summary["total"] == rows - kills[-1]
    assert kills == sorted(kills) and kills[0] >= 1  # each run made progress before its kill
    print(
        f"kill-and-resume: records after each SIGKILL {kills}; final run added {summary['total']}; "
        f"{len(done)} records for {rows} rows, none twice"
    )


def _opens_of(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The times the numbers reader opens ``path`` (from now on)."""
    from plugz_async._bulk import _input

    opened: list[str] = []
    real_open = open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == str(path):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(_input, "open", counting_open, raising=False)
    return opened


def test_bulk_reads_its_file_once_when_a_region_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = tmp_path / "numbers.csv", tmp_path / "results.jsonl"
    source.write_text("number\n11 90000-0001\n\n11 90000-0004\n")
    opened = _opens_of(source, monkeypatch)
    argv = ["bulk", str(source), "--out", str(out), "--sandbox", "--json-summary"]
    assert main([*argv, "--region", "BR"], clock=fake_clock()) == EXIT_OK
    assert len(opened) == 1  # no pass to count the rows first
    assert json.loads(capsys.readouterr().out)["total"] == 2
    # With no region every row's country code is checked before anything is sent: that
    # pass (the only one it needs besides the run) counts the rows too.
    source.write_text("number\n+55 11 90000-0001\n+55 11 90000-0004\n")
    opened.clear()
    assert main([*argv[:3], str(tmp_path / "again.jsonl"), *argv[4:]], clock=fake_clock()) == 0
    assert len(opened) == 2


def test_a_resume_checks_each_record_was_read_from_the_column_read_now() -> None:
    from plugz_async.cli._bulk import _read_alike

    def header(line: str, column: str | None = None) -> Any:
        return read_rows(iter([line]), column=column).header

    out = Path("r.jsonl")
    cells = {"ddi": "55", "phone": "11 90000-0001", "cel": "+55 11 90000-0002"}
    ddi = {"input": cells, "number": "+5511900000001"}
    cel = {"input": cells, "number": "+5511900000002"}
    check = _read_alike(header("ddi,phone,cel\n"), None, out)
    assert check is not None
    check(ddi)  # read from 'ddi' and 'phone', as now
    check({"input": cells, "number": None})  # an impossible number: nothing to compare
    said = r"from column 'cel' \(--column cel\), and this run reads columns 'ddi' and 'phone'"
    with pytest.raises(pz.InvalidArgument, match=said + ": resume with --column cel$"):
        check(cel)
    by_cel = _read_alike(header("ddi,phone,cel\n", "cel"), None, out)
    assert by_cel is not None
    by_cel(cel)
    said = r"row 7: \+5511900000001, not in column 'cel'\): resume with the --column it was"
    with pytest.raises(pz.InvalidArgument, match=said):
        by_cel({**ddi, "key": "7"})  # read from two columns: none names it alone
    assert _read_alike(None, None, out) is None  # one number a line: no column


def test_a_numbers_file_read_once_counts_its_lines_and_bytes(tmp_path: Path) -> None:
    from plugz_async.cli._numbers import open_numbers

    source = tmp_path / "numbers.csv"
    source.write_text("number,instance\n11 90000-0001,a\n\n11 90000-0004,b\n\n")
    numbers = open_numbers(str(source), region="BR")
    assert numbers.total is None and numbers.columns == {"number", "instance"}
    assert [numbers.lines.line for _ in numbers.rows] == [2, 4]  # each row's line
    assert numbers.size == source.stat().st_size == numbers.lines.bytes  # all of it, once
    source.write_text("number\n+55 11 90000-0001\n+55 11 90000-0004\n")
    counted = open_numbers(str(source), region=None)  # read through first: rows counted
    assert counted.total == 2


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes are POSIX")
def test_a_pipe_is_read_once_as_standard_input_is(tmp_path: Path) -> None:
    from plugz_async._bulk._input import count_rows, read_once
    from plugz_async.cli._numbers import LOOK_AHEAD, open_numbers

    text = "key,number\n" + "".join(f"k{i},+55 11 9{i:04d}-0001\n" for i in range(5000))
    # No region and a key column: a file would be read through first, and counted.
    with pipe_of(tmp_path / "numbers.csv", text) as pipe:
        assert read_once(str(pipe)) and not read_once(__file__) and read_once("-")
        assert count_rows(str(pipe)) is None  # never opened
        numbers = open_numbers(str(pipe), region=None, keys=True)
        assert numbers.total is None and numbers.size is None  # not read twice, no size
        assert [row.key for row in numbers.rows] == [f"k{i}" for i in range(5000)]
    # Noise past the look-ahead: refused after it, as standard input is.
    noise = "".join(f"row {i} x\n" for i in range(LOOK_AHEAD + 500))
    first_rows = r"none of its first 1,000 rows reads"
    with (
        pipe_of(tmp_path / "noise.txt", noise) as pipe,
        pytest.raises(pz.InvalidArgument, match=first_rows),
    ):
        open_numbers(str(pipe), region="BR")


def test_a_numbers_file_is_read_until_a_row_holds_a_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    from plugz_async.cli._numbers import LOOK_AHEAD, open_numbers

    source = tmp_path / "numbers.txt"
    noise = "".join(f"row {i} x\n" for i in range(LOOK_AHEAD + 500))
    source.write_text(noise + "+55 11 90000-0001\n")
    numbers = open_numbers(str(source), region="BR")  # found past the look-ahead: kept
    lines = [numbers.lines.line for _ in numbers.rows]
    assert lines == list(range(1, LOOK_AHEAD + 502))  # every row, each with its line
    source.write_text(noise)
    with pytest.raises(pz.InvalidArgument, match=r"holds no phone number: none of its 1,500 rows"):
        open_numbers(str(source), region="BR")
    # Standard input cannot be read twice: its first rows are looked at, and kept.
    stdin = type("Stdin", (), {"buffer": io.BytesIO(noise.encode())})()
    monkeypatch.setattr(sys, "stdin", stdin)
    with pytest.raises(
        pz.InvalidArgument,
        match=r"^standard input holds no phone number: none of its first 1,000 rows reads",
    ):
        open_numbers("-", region=None)
    stdin.buffer = io.BytesIO(("x1\n" * 10 + "+55 11 90000-0001\n").encode())
    read = open_numbers("-", region=None)
    rows = [(read.lines.line, str(row.number)) for row in read.rows]
    assert len(rows) == 11 and rows[-1] == (11, "+55 11 90000-0001")
    # A first line that is no text is said to be none.
    source.write_bytes(b"\xff\xfe\x8f\x01junk\n+55 11 90000-0001\n")
    with pytest.raises(pz.InvalidArgument, match="is not UTF-8 text"):
        open_numbers(str(source), region="BR")
