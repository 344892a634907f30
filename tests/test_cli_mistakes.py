"""The command line under operator mistakes, as real subprocesses against the sandbox.

A wrong token, an unknown instance, a refused port, an outage in the middle of a file: a
handful of requests, a distinct exit code, one line on stderr, and a resume that ends with
exactly one record per row. Then the file mistakes a new user makes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import pipe_of

from plugz_async.cli import (
    EXIT_API,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from plugz_async.sandbox import SandboxConfig, SandboxThread

ROWS = 2000


def numbers_file(path: Path, rows: int = ROWS) -> Path:
    path.write_text("".join(f"+55 31 9{i:04d}-{i % 10_000:04d}\n" for i in range(rows)))
    return path


def cli(
    *args: str, env: dict[str, str], input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The command line in a subprocess (standard input at its end, unless ``input``)."""
    return subprocess.run(
        [sys.executable, "-m", "plugz_async", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
    )


def start(*args: str, env: dict[str, str], output: int | None = subprocess.DEVNULL) -> Any:
    """The command line in a subprocess left running (``subprocess.Popen``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "plugz_async", *args],
        env={**os.environ, **env},
        stdout=output,
        stderr=output,
        text=True,
    )


def records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def assert_one_record_per_row(path: Path, rows: int = ROWS) -> None:
    done = records(path)
    keys = [str(r["key"]) for r in done]
    assert sorted(keys, key=int) == [str(i) for i in range(rows)]
    assert all(r["final"] for r in done)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("PLUGZ_CLIENT_TOKEN", "a-wrong-client-token", "PLUGZ_CLIENT_TOKEN refused: HTTP 403"),
        ("PLUGZ_INSTANCE_TOKEN", "a-wrong-instance-token", "instance not found: HTTP 200"),
        ("PLUGZ_INSTANCE_ID", "no-such-instance", "instance not found: HTTP 200"),
    ],
)
def test_a_refused_credential_stops_bulk_at_once_and_resume_finishes(
    tmp_path: Path, variable: str, value: str, said: str
) -> None:
    source, out = numbers_file(tmp_path / "numbers.txt"), tmp_path / "results.jsonl"
    with SandboxThread() as sandbox:
        wrong = {**sandbox.env(), variable: value}
        stopped = cli("bulk", str(source), "--out", str(out), env=wrong)
        sent = len(sandbox.requests())
        written = records(out)
        resumed = cli("bulk", str(source), "--out", str(out), "--resume", env=sandbox.env())
    assert stopped.returncode == EXIT_API
    assert sent == 1  # not 2,000: the first request went alone, and it was refused
    lines = stopped.stderr.strip().splitlines()
    assert lines[0].startswith(f"plugz-async: error: {said}") and "127.0.0.1:" in lines[0]
    assert "resume with: plugz-async bulk" in lines[1] and "--resume" in lines[1]
    assert "Traceback" not in stopped.stderr and value not in stopped.stderr + stopped.stdout
    assert written == []  # nothing that a resume would have to skip
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert_one_record_per_row(out)


def test_a_refused_port_stops_bulk_and_resume_finishes(tmp_path: Path) -> None:
    source, out = numbers_file(tmp_path / "numbers.txt"), tmp_path / "results.jsonl"
    with SandboxThread() as sandbox:
        nowhere = {**sandbox.env(), "PLUGZ_BASE_URL": f"http://127.0.0.1:{free_port()}"}
        stopped = cli("bulk", str(source), "--out", str(out), "--attempts", "1", env=nowhere)
        written = records(out)
        resumed = cli(
            "bulk", str(source), "--out", str(out), "--resume", "--json-summary", env=sandbox.env()
        )
    assert stopped.returncode == EXIT_UNREACHABLE
    first = stopped.stderr.splitlines()[0]
    assert first.startswith("plugz-async: error: stopped after 30 numbers in a row could not")
    assert "check PLUGZ_BASE_URL" in first
    assert "ConnectError" in first and "--attempts 1" in stopped.stderr  # the hint repeats it
    assert 30 <= len(written) < 30 + 32 and not any(r["final"] for r in written)
    assert resumed.returncode == EXIT_OK, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["redone"] == len(written) and summary["total"] == ROWS
    assert_one_record_per_row(out)


def test_an_outage_after_300_rows_stops_bulk_and_resume_finishes_after_it(tmp_path: Path) -> None:
    source, out = numbers_file(tmp_path / "numbers.txt"), tmp_path / "results.jsonl"
    with SandboxThread() as sandbox:
        sandbox.outage(after=300)
        stopped = cli("bulk", str(source), "--out", str(out), "--attempts", "1", env=sandbox.env())
        sent = len(sandbox.requests())
        written = records(out)
        sandbox.end_outage()
        resumed = cli("bulk", str(source), "--out", str(out), "--resume", env=sandbox.env())
    assert stopped.returncode == EXIT_UNREACHABLE
    assert 300 + 30 <= sent <= 300 + 30 + 32  # the outage's rows, and what was in flight
    assert "stopped after 30 numbers in a row failed at 127.0.0.1:" in stopped.stderr
    assert "ServerError: HTTP 503" in stopped.stderr
    assert sum(1 for r in written if r["final"]) == 300
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert f"now holds {ROWS} records" in resumed.stdout  # the whole file's counts
    assert_one_record_per_row(out)


def test_rows_with_passing_errors_exit_7_and_are_redone_by_resume(tmp_path: Path) -> None:
    source, out = numbers_file(tmp_path / "numbers.txt", 400), tmp_path / "results.jsonl"
    with SandboxThread(SandboxConfig(fault_rate=0.1)) as sandbox:
        first = cli("bulk", str(source), "--out", str(out), "--attempts", "1", env=sandbox.env())
        failed = [r for r in records(out) if not r["final"]]
        assert first.returncode == EXIT_INCOMPLETE
        assert f"{len(failed)} rows ended in an error that may pass (ServerError" in first.stderr
        assert "check them again with: plugz-async bulk" in first.stderr
        for _ in range(20):  # each resume redoes the failed rows; 10% fail again
            again = cli(
                "bulk", str(source), "--out", str(out), "--resume", "--attempts", "1",
                env=sandbox.env(),
            )  # fmt: skip
            if again.returncode == EXIT_OK:
                break
            assert again.returncode == EXIT_INCOMPLETE
    assert again.returncode == EXIT_OK
    assert_one_record_per_row(out, 400)


@pytest.mark.chaos
def test_a_fault_run_killed_at_any_moment_and_resumed_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    source, out = numbers_file(tmp_path / "numbers.txt"), tmp_path / "results.jsonl"
    with SandboxThread(SandboxConfig(fault_rate=0.05)) as sandbox:
        command = [
            "bulk", str(source), "--out", str(out),
            "--attempts", "1", "--concurrency", "16", "--rate", "2000",
        ]  # fmt: skip
        for target in (300, 900, 1500):
            process = start(*command, *(["--resume"] if out.exists() else []), env=sandbox.env())
            deadline = time.monotonic() + 30
            while len(records(out)) < target and process.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            process.wait()
            keys = [r["key"] for r in records(out)]
            assert len(keys) == len(set(keys))  # one record per key, at every moment
        for _ in range(20):
            final = cli(*command, "--resume", env=sandbox.env())
            if final.returncode == EXIT_OK:
                break
    assert final.returncode == EXIT_OK
    assert_one_record_per_row(out)


# -- the mistakes a new user made -----------------------------------------------------------


def test_a_semicolon_csv_export_is_read_by_its_columns(tmp_path: Path) -> None:
    source = tmp_path / "export.csv"
    source.write_text(
        "nome;number;cidade\nMaria;+55 11 90000-0002;Maringá\nJoão;+55 11 90000-0005;Sé\n",
        encoding="utf-8",
    )
    out = tmp_path / "results.jsonl"
    done = cli("bulk", str(source), "--out", str(out), "--sandbox", env={})
    assert done.returncode == EXIT_OK, done.stderr
    assert sorted(r["number"] for r in records(out)) == ["+5511900000002", "+5511900000005"]


def test_a_header_with_no_column_of_numbers_is_refused_before_anything(tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_text("cel_cliente,name\n+55 11 90000-0002,Maria\n")
    out = tmp_path / "results.jsonl"
    with SandboxThread() as sandbox:
        done = cli("bulk", str(source), "--out", str(out), env=sandbox.env())
        sent = sandbox.requests()
    assert done.returncode == EXIT_USAGE and sent == [] and not out.exists()
    assert done.stderr.count("\n") == 1
    assert "no column of numbers" in done.stderr and "'cel_cliente', 'name'" in done.stderr
    assert "--column NAME names another" in done.stderr  # says how to name it
    assert f"the header of {source} has" in done.stderr  # names the file


@pytest.mark.parametrize(
    "header",
    ["telefone,nome", "phone_number,name", "Phone Number;Name", "nome,Celular", "WhatsApp,nome"],
)
def test_a_column_of_numbers_under_a_common_name_is_read(tmp_path: Path, header: str) -> None:
    source = tmp_path / "people.csv"
    delimiter = ";" if ";" in header else ","
    first_is_number = not header.startswith("nome")
    rows = [("+55 11 90000-0002", "Maria"), ("+55 11 90000-0005", "Ana")]
    source.write_text(
        header
        + "\n"
        + "".join(delimiter.join(row if first_is_number else row[::-1]) + "\n" for row in rows)
    )
    out = tmp_path / "results.jsonl"
    done = cli("bulk", str(source), "--out", str(out), "--sandbox", env={})
    assert done.returncode == EXIT_OK, done.stderr
    assert sorted(r["number"] for r in records(out)) == ["+5511900000002", "+5511900000005"]
    # Read by its common name: the column read is said, once.
    column = header.split(delimiter)[0 if first_is_number else 1].lower()
    said = f"plugz-async: reading numbers from column {column!r} of {source}"
    assert done.stderr.count(said) == 1, done.stderr


# What each column holds in the files below: a landline, a mobile, another mobile.
CELLS = {"name": "Ana", "nome": "Ana", "phone": "+55 11 3000-0001", "telefone": "+55 11 3000-0001"}
CELLS |= {"mobile": "+55 11 90000-0002", "celular": "+55 11 90000-0002"}
CELLS |= {"whatsapp": "+55 11 90000-0005"}


@pytest.mark.parametrize(
    ("header", "candidates", "wanted"),
    [
        ("name,phone,mobile", ["phone", "mobile"], "mobile"),
        ("nome,telefone,celular", ["telefone", "celular"], "celular"),
        ("Celular;WhatsApp;Telefone", ["celular", "whatsapp", "telefone"], "celular"),
    ],
)
def test_a_header_with_two_common_names_is_refused_until_column_says_which(
    tmp_path: Path, header: str, candidates: list[str], wanted: str
) -> None:
    # A landline and a mobile, say: reading the first by its name would check the wrong one.
    source = tmp_path / "people.csv"
    delimiter = ";" if ";" in header else ","
    names = header.lower().split(delimiter)
    source.write_text(header + "\n" + delimiter.join(CELLS[n] for n in names) + "\n")
    out = tmp_path / "results.jsonl"
    with SandboxThread() as sandbox:
        done = cli("bulk", str(source), "--out", str(out), env=sandbox.env())
        sent = sandbox.requests()
    assert done.returncode == EXIT_USAGE and sent == [] and not out.exists(), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    listed = ", ".join(repr(c) for c in candidates)
    assert f"the header of {source} has {len(candidates)} columns that may hold the numbers " in (
        done.stderr
    )
    assert f"({listed}): name the one to read with --column NAME" in done.stderr
    chosen = cli(
        "bulk", str(source), "--out", str(out), "--sandbox", "--column", wanted, env={}
    )  # fmt: skip
    assert chosen.returncode == EXIT_OK, chosen.stderr
    assert [r["number"] for r in records(out)] == ["+5511900000002"]
    assert "reading numbers from column" not in chosen.stderr  # --column said it already


def test_an_address_export_reads_its_celular_not_the_street_number(tmp_path: Path) -> None:
    # A Brazilian address export: "numero" is the street number, "celular" the phone.
    source = tmp_path / "clientes.csv"
    source.write_text(
        "nome,endereco,numero,bairro,celular\n"
        "Maria,Rua das Flores,123,Centro,+55 11 90000-0002\n"
        "Ana,Av. Brasil,4500,Zona 7,+55 11 90000-0005\n"
    )
    out = tmp_path / "results.jsonl"
    done = cli("bulk", str(source), "--out", str(out), "--sandbox", env={})
    assert done.returncode == EXIT_OK, done.stderr
    assert sorted(r["number"] for r in records(out)) == ["+5511900000002", "+5511900000005"]
    assert f"reading numbers from column 'celular' of {source}" in done.stderr
    # A header with "number" reads it, as ever, and says nothing.
    source.write_text("number,celular\n+55 11 90000-0002,+55 11 90000-0005\n")
    again = cli("bulk", str(source), "--out", str(tmp_path / "r.jsonl"), "--sandbox", env={})
    assert again.returncode == EXIT_OK and "reading numbers" not in again.stderr
    assert [r["number"] for r in records(tmp_path / "r.jsonl")] == ["+5511900000002"]


def test_column_names_the_column_of_numbers_and_a_resume_repeats_it(tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    # Another column called "number" (a house number) is not the phone's.
    source.write_text("cel,nome,number\n+55 11 90000-0002,Maria,12\n+55 11 90000-0005,Ana,7\n")
    out = tmp_path / "results.jsonl"
    done = cli("bulk", str(source), "--out", str(out), "--sandbox", "--column", "CEL", env={})
    assert done.returncode == EXIT_OK, done.stderr
    kept = records(out)
    assert sorted(r["number"] for r in kept) == ["+5511900000002", "+5511900000005"]
    assert kept[0]["input"] == {"cel": "+55 11 90000-0002", "nome": "Maria", "number": "12"}
    again = cli(
        "bulk", str(source), "--out", str(out), "--sandbox", "--column", "cel", "--resume",
        env={},
    )  # fmt: skip
    assert again.returncode == EXIT_OK, again.stderr
    assert len(records(out)) == 2
    # A column the header does not have, or a file with no header at all: refused.
    for text in (source.read_text(), "+55 11 90000-0002\n"):
        source.write_text(text)
        missing = cli(
            "bulk", str(source), "--out", str(tmp_path / "r.jsonl"), "--column", "phone",
            "--sandbox", env={},
        )  # fmt: skip
        assert missing.returncode == EXIT_USAGE and missing.stderr.count("\n") == 1
        assert f"--column phone: the first line of {source} names no such column" in (
            missing.stderr
        )
    from plugz_async.cli import build_parser
    from plugz_async.cli._bulk import resume_command

    args = build_parser("bulk").parse_args(
        ["bulk", "in.csv", "--out", "r.jsonl", "--column", "telefone"]
    )
    assert resume_command(args).endswith("--resume --column telefone")


@pytest.mark.parametrize("name", ["results.jsonl", "results.csv"])
def test_a_resume_reads_the_column_its_results_file_was_written_from(
    tmp_path: Path, name: str
) -> None:
    import plugz_async as pz

    source = tmp_path / "contatos.csv"
    rows = range(6)
    source.write_text(
        "nome,telefone,cel\n"
        + "".join(f"P{i},+55 31 3{i:03d}-{i:04d},+55 31 9{i:04d}-{i:04d}\n" for i in rows)
    )
    mobiles = sorted(f"+55319{i:04d}{i:04d}" for i in rows)
    out = tmp_path / name
    done = cli("bulk", str(source), "--out", str(out), "--sandbox", "--column", "cel", env={})
    assert done.returncode == EXIT_OK, done.stderr
    # Interrupted after three rows, as a kill would leave it.
    kept = out.read_text().splitlines(keepends=True)
    out.write_text("".join(kept[: 4 if name.endswith(".csv") else 3]))
    before = out.read_bytes()
    # Resumed without --column: this run would read 'telefone' for the other rows.
    with SandboxThread() as sandbox:
        mixed = cli("bulk", str(source), "--out", str(out), "--resume", env=sandbox.env())
        sent = sandbox.requests()
    assert mixed.returncode == EXIT_USAGE and sent == [], mixed.stderr
    assert mixed.stderr.endswith(
        f"plugz-async: error: {out} was written from column 'cel' (--column cel), and this "
        "run reads column 'telefone': resume with --column cel\n"
    ), mixed.stderr
    assert out.read_bytes() == before  # left as it was
    # With the same --column, the resume goes on.
    again = cli(
        "bulk", str(source), "--out", str(out), "--sandbox", "--column", "cel", "--resume",
        env={},
    )  # fmt: skip
    assert again.returncode == EXIT_OK, again.stderr
    assert sorted(r["number"] for r in pz.read_results(out)) == mobiles


def random_bytes(size: int = 2000) -> bytes:
    """Random bytes with no NUL (a NUL marks a binary file at once): read as lines."""
    import random

    found = bytes(b for b in random.Random(1).randbytes(size * 2) if b)[:size]
    assert len(found) == size
    return found


@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
def test_a_file_holding_no_number_is_refused_before_anything(tmp_path: Path, stdin: bool) -> None:
    source = tmp_path / "noise.bin"
    out = tmp_path / "results.jsonl"
    texts = {
        "random bytes": random_bytes(),
        "a header only": b"number,name\n",
        "names only": b"Maria 1\nAna 2\n\nBia 3\n",
    }
    for what, data in texts.items():
        source.write_bytes(data)
        with SandboxThread() as sandbox:
            if stdin:
                done = subprocess.run(
                    [sys.executable, "-m", "plugz_async", "bulk", "-", "--out", str(out)],
                    env={**os.environ, **sandbox.env()},
                    input=data,
                    capture_output=True,
                )
                err = done.stderr.decode()
            else:
                ran = cli("bulk", str(source), "--out", str(out), env=sandbox.env())
                done, err = ran, ran.stderr  # type: ignore[assignment]
            sent = sandbox.requests()
        assert done.returncode == EXIT_USAGE, (what, err)
        assert sent == [] and not out.exists(), what
        assert err.count("\n") == 1 and err.startswith("plugz-async: error: "), (what, err)
        name = "standard input" if stdin else str(source)
        if what == "a header only":
            assert f"{name} has no numbers to check" in err
        elif what == "names only":
            assert f"{name} holds no phone number: none of its 3 rows reads as one" in err
        else:  # 2,000 bytes, with a digit in the first line: no header, 16 rows of noise
            assert f"{name} holds no phone number: none of its 16 rows reads as one" in err


@pytest.mark.parametrize("text", ["+55 44 9\n", "number,name\n+55 44 9,Ana\n(44) 9.9\n"])
def test_a_file_of_impossible_numbers_is_read_and_each_row_fails_as_a_row(
    tmp_path: Path, text: str
) -> None:
    # Numbers by their shape, though none can exist: not a file of something else. Each
    # row is its own InvalidPhoneNumber record, final, as when a good row is beside it.
    source = tmp_path / "numbers.txt"
    source.write_text(text)
    out = tmp_path / "results.jsonl"
    with SandboxThread() as sandbox:
        done = cli("bulk", str(source), "--out", str(out), env=sandbox.env())
        sent = sandbox.requests()
    assert done.returncode == EXIT_OK, done.stderr
    assert sent == [] and "holds no phone number" not in done.stderr
    kept = records(out)
    assert len(kept) == len(text.splitlines()) - ("," in text)
    assert all(r["error"]["type"] == "InvalidPhoneNumber" and r["final"] for r in kept)


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes are POSIX")
@pytest.mark.parametrize("keys", [True, False], ids=["csv-with-keys", "plain"])
def test_a_pipe_as_input_is_read_once_and_every_row_gets_its_record(
    tmp_path: Path, keys: bool
) -> None:
    # A named pipe, or the shell's <(command): opening it again to count its rows (a key
    # column, or no region) would take the rows the run had not read yet.
    rows = 5000  # more than a pipe holds: the writer is still there when it is opened again
    numbers = [f"+55 31 9{i:04d}-{i % 10_000:04d}" for i in range(rows)]
    text = (
        "key,number,note\n" + "".join(f"k{i},{n},{'x' * 40}\n" for i, n in enumerate(numbers))
        if keys
        else "".join(f"{n}\n" for n in numbers)
    )
    out = tmp_path / "results.jsonl"
    with pipe_of(tmp_path / "numbers.csv", text) as source:
        done = cli("bulk", str(source), "--out", str(out), "--sandbox", env={}, timeout=60)
    assert done.returncode == EXIT_OK, done.stderr
    kept = records(out)
    expected = [f"k{i}" for i in range(rows)] if keys else [str(i) for i in range(rows)]
    assert sorted(r["key"] for r in kept) == sorted(expected)  # every row, once
    assert sorted(r["number"] for r in kept) == sorted(
        n.replace(" ", "").replace("-", "") for n in numbers
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash's <(command)")
def test_process_substitution_is_read_once_and_every_row_gets_its_record(tmp_path: Path) -> None:
    source = numbers_file(tmp_path / "numbers.txt", rows=5000)
    out = tmp_path / "results.jsonl"
    script = 'exec "$0" -m plugz_async bulk <(cat "$1") --out "$2" --sandbox'
    done = subprocess.run(
        ["bash", "-c", script, sys.executable, str(source), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert_one_record_per_row(out, rows=5000)


def test_a_spreadsheet_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    source = tmp_path / "numbers.xlsx"
    source.write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)))
    done = cli("bulk", str(source), "--out", str(tmp_path / "r.jsonl"), "--sandbox", env={})
    assert done.returncode == EXIT_USAGE and "save it as CSV" in done.stderr


def test_a_stray_quote_does_not_swallow_the_rest_of_the_file(tmp_path: Path) -> None:
    source = tmp_path / "numbers.csv"
    source.write_text(
        'number,name\n+55 11 90000-0001,"Maria\n+55 11 90000-0002,Ana\n+55 11 90000-0005,Bia\n'
    )
    out = tmp_path / "results.jsonl"
    done = cli("bulk", str(source), "--out", str(out), "--sandbox", env={})
    assert done.returncode == EXIT_OK, done.stderr
    assert len(records(out)) == 3 and all(r["error"] is None for r in records(out))


@pytest.mark.chaos
def test_ctrl_c_hint_repeats_the_options_and_following_it_finishes(tmp_path: Path) -> None:
    source = numbers_file(tmp_path / "numbers.txt", 800)
    out = tmp_path / "results.csv"  # a .csv name: CSV, with no --format
    with SandboxThread() as sandbox:
        process = start(
            "bulk", str(source), "--out", str(out), "--rate", "100", "--concurrency", "8",
            env=sandbox.env(), output=subprocess.PIPE,
        )  # fmt: skip
        while not out.exists() or len(out.read_text().splitlines()) < 20:
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == EXIT_INTERRUPTED
        assert "plugz-async: interrupted" in err and "Traceback" not in err
        lines = out.read_text().splitlines(keepends=True)
        assert all(line.endswith("\n") for line in lines)  # no half-written record
        hint = err.split("resume with: ", 1)[1].strip()
        assert "--rate 100" in hint and "--concurrency 8" in hint and "--resume" in hint
        words = hint.split()
        assert words[:2] == ["plugz-async", "bulk"]
        resumed = cli(*words[1:], env=sandbox.env())
    assert resumed.returncode == EXIT_OK, resumed.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("key,index,input") and len(lines) == 801
    assert len({line.split(",", 1)[0] for line in lines[1:]}) == 800


def test_a_csv_file_is_resumed_as_csv_and_a_wrong_format_is_refused(tmp_path: Path) -> None:
    source = numbers_file(tmp_path / "numbers.txt", 10)
    out = tmp_path / "results.out"
    made = cli("bulk", str(source), "--out", str(out), "--format", "csv", "--sandbox", env={})
    assert made.returncode == EXIT_OK, made.stderr
    out.write_text("\n".join(out.read_text().splitlines()[:5]) + "\n")  # as if cut short
    resumed = cli("bulk", str(source), "--out", str(out), "--resume", "--sandbox", env={})
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert len(out.read_text().splitlines()) == 11
    wrong = cli(
        "bulk", str(source), "--out", str(out), "--resume", "--format", "jsonl", "--sandbox",
        env={},
    )  # fmt: skip
    assert wrong.returncode == EXIT_USAGE and "holds CSV, not JSON Lines" in wrong.stderr


@pytest.mark.parametrize("where", ["missing folder", "a folder"])
def test_an_out_path_that_cannot_be_a_file_is_a_usage_error(tmp_path: Path, where: str) -> None:
    source = numbers_file(tmp_path / "numbers.txt", 3)
    out = tmp_path / "nope" / "results.jsonl" if where == "missing folder" else tmp_path
    done = cli("bulk", str(source), "--out", str(out), "--sandbox", env={})
    assert done.returncode == EXIT_USAGE and done.stderr.count("\n") == 1
    assert ("does not exist" if where == "missing folder" else "is a folder") in done.stderr
    assert "unexpected" not in done.stderr


def test_the_summary_after_a_resume_counts_the_whole_file(tmp_path: Path) -> None:
    source = numbers_file(tmp_path / "numbers.txt", 50)
    out = tmp_path / "results.jsonl"
    with SandboxThread() as sandbox:
        first = cli("bulk", str(source), "--out", str(out), "--json-summary", env=sandbox.env())
        out.write_text("".join(out.read_text().splitlines(keepends=True)[:20]))
        again = cli(
            "bulk", str(source), "--out", str(out), "--resume", "--json-summary",
            env=sandbox.env(),
        )  # fmt: skip
    assert first.returncode == again.returncode == EXIT_OK
    summary = json.loads(again.stdout)
    assert summary["total"] == 30 and summary["skipped"] == 20
    assert summary["file"]["records"] == 50
    assert sum(summary["file"]["outcomes"].values()) == 50


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("PLUGZ_CLIENT_TOKEN", "a-wrong-client-token", "PLUGZ_CLIENT_TOKEN refused: HTTP 403"),
        ("PLUGZ_INSTANCE_TOKEN", "a-wrong-instance-token", "instance not found"),
        ("PLUGZ_BASE_URL", "http://127.0.0.1:{port}", "cannot connect to 127.0.0.1:"),
    ],
)
@pytest.mark.parametrize("command", ["check", "check --json", "plan", "register"])
def test_every_command_says_a_run_level_error_in_one_line(
    command: str, variable: str, value: str, said: str
) -> None:
    with SandboxThread() as sandbox:
        env = {**sandbox.env(), variable: value.format(port=free_port())}
        answers = "123456\n" if command == "register" else None  # someone to type a code
        done = cli(*command.split(), "+55 11 90000-0001", "--attempts", "1", env=env, input=answers)
    assert done.returncode in (EXIT_API, EXIT_UNREACHABLE)
    errors = [line for line in done.stderr.splitlines() if line.startswith("plugz-async: error")]
    assert len(errors) == 1 and said in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "a-wrong" not in done.stderr + done.stdout
    if command == "check --json":
        [item] = json.loads(done.stdout)  # valid JSON on stdout in every case
        assert item["error"]["type"] and item["final"] is False


def test_check_json_is_json_even_without_credentials() -> None:
    done = cli(
        "check", "--json", "+55 11 90000-0001", "nonsense",
        env={"PLUGZ_INSTANCE_ID": "", "PLUGZ_INSTANCE_TOKEN": "", "PLUGZ_CLIENT_TOKEN": ""},
    )  # fmt: skip
    assert done.returncode == EXIT_USAGE
    items = json.loads(done.stdout)
    assert [item["error"]["type"] for item in items] == ["ConfigurationError", "InvalidPhoneNumber"]
    assert "PLUGZ_" in done.stderr


def test_out_must_be_a_results_file_and_not_the_input(tmp_path: Path) -> None:
    source = tmp_path / "numbers.csv"
    source.write_text("number\n+55 11 90000-0002\n")
    itself = cli("bulk", str(source), "--out", str(source), "--resume", "--sandbox", env={})
    assert itself.returncode == EXIT_USAGE and "--out is INPUT itself" in itself.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    foreign = cli("bulk", str(source), "--out", str(notes), "--resume", "--sandbox", env={})
    assert foreign.returncode == EXIT_USAGE and "is not a results file" in foreign.stderr
    assert notes.read_text() == "my notes\n" and source.read_text().count("\n") == 2


def test_a_damaged_record_is_redone_by_resume(tmp_path: Path) -> None:
    source, out = numbers_file(tmp_path / "numbers.txt", 20), tmp_path / "results.jsonl"
    with SandboxThread() as sandbox:
        assert cli("bulk", str(source), "--out", str(out), env=sandbox.env()).returncode == 0
        lines = out.read_text().splitlines(keepends=True)
        out.write_text("".join(lines[:5]) + "garbage\n" + "".join(lines[6:]))
        resumed = cli("bulk", str(source), "--out", str(out), "--resume", env=sandbox.env())
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert_one_record_per_row(out, 20)


def test_a_second_run_on_the_same_results_file_is_refused(tmp_path: Path) -> None:
    source, out = numbers_file(tmp_path / "numbers.txt", 400), tmp_path / "results.jsonl"
    with SandboxThread() as sandbox:
        first = start("bulk", str(source), "--out", str(out), "--rate", "200", env=sandbox.env())
        while len(records(out)) < 5:
            time.sleep(0.01)
        second = cli("bulk", str(source), "--out", str(out), "--resume", env=sandbox.env())
        assert first.wait(timeout=60) == EXIT_OK
    assert second.returncode == EXIT_USAGE and "being written by another run" in second.stderr
    assert_one_record_per_row(out, 400)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["numbers.txt", "results.jsonl"]


def test_repeated_keys_and_empty_inputs_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "keys.csv"
    source.write_text(
        "key,number\nk1,+55 11 90000-0002\nk2,+55 11 90000-0005\nk1,+55 11 90000-0001\n"
    )
    out = tmp_path / "r.jsonl"
    repeated = cli("bulk", str(source), "--out", str(out), "--sandbox", env={})
    assert repeated.returncode == EXIT_USAGE and not out.exists()
    assert f"{source} repeats the key 'k1' (data rows 1 and 3)" in repeated.stderr
    for text in ("", "number\n", "# nothing yet\n"):
        source.write_text(text)
        empty = cli("bulk", str(source), "--out", str(out), "--sandbox", env={})
        assert empty.returncode == EXIT_USAGE and "has no numbers to check" in empty.stderr


def test_a_bad_header_on_standard_input_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    done = cli("bulk", "-", "--out", str(out), "--sandbox", env={}, input="fone,nome\n1,a\n")
    assert done.returncode == EXIT_USAGE and "'fone', 'nome'" in done.stderr
    assert "the header of standard input has" in done.stderr
    assert not out.exists()


def test_resumed_records_keep_their_place_and_the_file_its_mode(tmp_path: Path) -> None:
    source, out = numbers_file(tmp_path / "numbers.txt", 30), tmp_path / "results.jsonl"
    with SandboxThread() as sandbox:
        sandbox.outage(after=10)
        stopped = cli(
            "bulk", str(source), "--out", str(out), "--attempts", "1", "--concurrency", "1",
            env=sandbox.env(),
        )  # fmt: skip
        assert stopped.returncode == EXIT_INCOMPLETE  # 20 rows of 503: fewer than 30 in a row
        out.chmod(0o600)
        sandbox.end_outage()
        resumed = cli("bulk", str(source), "--out", str(out), "--resume", env=sandbox.env())
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert all(str(r["index"]) == r["key"] for r in records(out))
    assert out.stat().st_mode & 0o777 == 0o600
