"""The command line, in-process (``main``) and through its real entry points."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import plugz_async as pz
from plugz_async import cli
from plugz_async.cli import (
    EXIT_API,
    EXIT_NO_CHANNEL,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    main,
)
from plugz_async.cli._render import humanize
from plugz_async.sandbox import SCENARIOS, SandboxThread

ROOT = Path(__file__).parent.parent


def fake_clock() -> pz.FakeClock:
    # Real "now", so the sandbox's HTTP-date Retry-After makes sense; sleeps take no time.
    return pz.FakeClock(start=datetime.now(timezone.utc))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "now"),
        (-3, "now"),
        (0.2, "in 1s"),
        (45, "in 45s"),
        (60, "in 1m"),
        (90, "in 1m30s"),
        (3600, "in 1h"),
        (3725, "in 1h2m"),
    ],
)
def test_humanize(seconds: float, text: str) -> None:
    assert humanize(seconds) == text


def test_check_against_the_sandbox_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["check", "--sandbox", "+55 11 90000-0002", "+55 11 90000-0004"], clock=fake_clock()
    )
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "+5511900000002" in out and "wait" in out and "in 30s (" in out and "in 1m30s (" in out
    assert "appeal token Ae0B_sandbox-appeal-token" in out


def test_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["check", "--sandbox", "--json", "+55 11 90000-0006", "+55 44 9"], clock=fake_clock()
    )
    results = json.loads(capsys.readouterr().out)
    assert code == EXIT_USAGE  # one number was invalid
    assert [r["outcome"] for r in results] == ["ready", "error"]
    assert results[0]["plan"]["next_channel"] == "voice"
    assert results[0]["availability"]["sms_wait_seconds"] == 120
    assert results[1]["error"]["type"] == "InvalidPhoneNumber" and results[1]["input"] == "+55 44 9"


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("+55 11 90000-9004", EXIT_API),
        ("+55 11 90000-9003", EXIT_API),
        ("+55 11 90000-9002", EXIT_UNREACHABLE),
    ],
)
def test_check_exit_codes(number: str, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--sandbox", number, "--timeout", "0.2"], clock=fake_clock()) == code


def test_invalid_numbers_only_is_a_usage_error_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "--sandbox", "call me", "+55 44 9"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("plugz-async: error: 'call me' is not a possible phone number")
    assert "Using the sandbox" not in err and err.count("\n") == 1


def test_missing_credentials_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "PLUGZ_INSTANCE_ID",
        "PLUGZ_INSTANCE_TOKEN",
        "PLUGZ_CLIENT_TOKEN",
        "PLUGZ_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    assert main(["check", "+55 11 90000-0001", "--instance-id", "x"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "missing environment variables PLUGZ_INSTANCE_TOKEN, PLUGZ_CLIENT_TOKEN" in err
    assert "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == EXIT_USAGE
    with pytest.raises(SystemExit):
        main(["check", "--sandbox", "+55 11 90000-0001", "--prefer", "fax"])
    assert main(["check", "--sandbox", "+5511900000001", "--prefer", "wa_old"]) == EXIT_USAGE
    assert "--allow-wa-old" in capsys.readouterr().err


def test_plan_wait_counts_down_and_exits_when_the_channel_opens(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = fake_clock()
    assert main(["plan", "--sandbox", "+55 11 90000-0002", "--wait"], clock=clock) == EXIT_OK
    assert clock.monotonic() >= 30.0  # SMS opens 30 s after the answer, never earlier
    assert "sms is open now" in capsys.readouterr().err


def test_plan_wait_with_nothing_to_wait_for(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--sandbox", "+55 11 90000-0004", "--wait"]) == EXIT_NO_CHANNEL
    assert "outcome is appeal" in capsys.readouterr().err


def test_plan_json_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--sandbox", "--json", "+55 11 90000-0001"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["plan"]["outcome"] == "ready"
    assert main(["plan", "--sandbox", "+55 11 90000-9004"]) == EXIT_API
    assert "plugz-async: error: APIError: mobile/registration-available: HTTP 200: INTERNAL" in (
        capsys.readouterr().err
    )
    assert main(["plan", "--sandbox", "12"]) == EXIT_USAGE


def demo_rows() -> list[dict[str, str]]:
    with open(ROOT / "examples" / "numbers.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_bundled_numbers_cover_every_scenario() -> None:
    names = {row["scenario"] for row in demo_rows()}
    assert {s.name for s in SCENARIOS} <= names


def test_demo_json_checks_every_bundled_number(capsys: pytest.CaptureFixture[str]) -> None:
    # The slow number costs three real timeouts; the rest answer at once.
    assert main(["demo", "--json", "--timeout", "0.1"], clock=fake_clock()) == EXIT_OK
    results = json.loads(capsys.readouterr().out)["results"]
    rows = demo_rows()
    assert [r["input"] for r in results] == [row["number"] for row in rows]
    by_input = {r["input"]: r for r in results}
    assert by_input["+55 11 90000-0004"]["outcome"] == "appeal"
    assert by_input["+55 11 90000-5032"]["outcome"] == "ready"  # after two 503s
    assert by_input["+55 11 90000-9001"]["error"]["type"] == "RequestTimeout"
    assert by_input["+55 44 9"]["error"]["type"] == "InvalidPhoneNumber"


def test_demo_shows_results_a_summary_and_the_way_to_the_real_api(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    numbers = tmp_path / "numbers.csv"
    numbers.write_text(
        "\ufeffnumber,scenario\r\n+55 11 90000-0001,ready\r\n+55 11 90000-0005,unavailable\r\n"
    )
    assert main(["demo", "--numbers", str(numbers)], clock=fake_clock()) == EXIT_OK
    out = capsys.readouterr().out
    assert "Sandbox running at http://127.0.0.1:" in out
    assert "2 numbers in" in out and "unavailable" in out
    assert "export PLUGZ_INSTANCE_ID=" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("fone\n123\n")
    assert main(["demo", "--numbers", str(bad)]) == EXIT_USAGE
    assert main(["demo", "--numbers", str(tmp_path / "missing.csv")]) == EXIT_USAGE


# -- through the real entry points -----------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugz_async", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_an_unexpected_error_is_one_line_and_a_traceback_only_when_verbose(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(app: object) -> int:
        raise RuntimeError("boom")

    from plugz_async.cli import _check

    monkeypatch.setattr(_check, "check", broken)
    assert main(["check", "+55 11 90000-0001"]) == cli.EXIT_UNEXPECTED
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "plugz-async: unexpected error: RuntimeError: boom",
        "run again with --verbose for the traceback",
    ]
    assert main(["--verbose", "check", "+55 11 90000-0001"]) == cli.EXIT_UNEXPECTED
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_verbose_logs_requests_redacted_and_leaves_logging_as_it_was(
    capsys: pytest.CaptureFixture[str],
) -> None:
    package = logging.getLogger("plugz_async")
    before = (list(package.handlers), package.level)
    assert main(["--verbose", "check", "--sandbox", "+55 11 90000-0001"]) == EXIT_OK
    err = capsys.readouterr().err
    assert "plugz_async DEBUG POST mobile/registration-available -> 200" in err
    assert "/token/***/mobile/registration-available" in err  # the sandbox's access log
    assert "sandbox-instance-token" not in err
    assert (list(package.handlers), package.level) == before


def test_verbose_after_the_command_logs_as_before_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--sandbox", "+55 11 90000-0001", "--verbose"]) == EXIT_OK
    err = capsys.readouterr().err
    assert "plugz_async DEBUG POST mobile/registration-available -> 200" in err
    assert "sandbox-instance-token" not in err


@pytest.mark.parametrize(
    "words",
    [
        ["check", "--sandbox", "+55 11 90000-0001"],
        ["plan", "+55 11 90000-0001", "--wait"],
        ["bulk", "numbers.csv", "--out", "results.jsonl"],
        ["register", "+55 11 90000-0001"],
        ["sandbox", "--port", "0"],
        ["demo"],
        ["worker"],
        ["dashboard"],
        ["queue", "status"],
        ["queue", "register", "numbers.csv", "--instance", "i-1"],
        ["queue", "code", "+55 11 90000-0001", "123456"],
    ],
    ids=lambda words: " ".join(words[:2]),
)
def test_global_flags_work_after_the_command_too(words: list[str]) -> None:
    from plugz_async.cli import build_parser

    parser = build_parser(words[0])
    assert parser.parse_args(words).verbose is False
    assert parser.parse_args(["--verbose", *words]).verbose is True
    assert parser.parse_args([*words, "--verbose"]).verbose is True
    assert parser.parse_args([*words, "-v"]).verbose is True
    assert parser.parse_args([words[0], "-v", *words[1:]]).verbose is True


@pytest.mark.parametrize("words", [["check", "--version"], ["queue", "status", "--version"]])
def test_version_after_the_command_too(words: list[str]) -> None:
    done = run_cli(*words)
    assert done.returncode == 0 and done.stdout.strip() == f"plugz-async {pz.__version__}"


def test_module_entry_point_and_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"plugz-async {pz.__version__}"


def test_sandbox_help_lists_the_test_numbers() -> None:
    done = run_cli("sandbox", "--help")
    assert done.returncode == 0
    for scenario in SCENARIOS:
        assert scenario.number in done.stdout


def test_nothing_the_cli_prints_shows_a_secret_given_wrong_credentials() -> None:
    instance_token = "inst/SECRET+tok=1"
    client_token = "client-SECRET/tok+2"
    with SandboxThread() as sandbox:
        env = {
            "PLUGZ_INSTANCE_ID": sandbox.instance_id,
            "PLUGZ_INSTANCE_TOKEN": instance_token,
            "PLUGZ_CLIENT_TOKEN": client_token,  # refused: the server echoes it in a 403
            "PLUGZ_BASE_URL": sandbox.base_url,
        }
        refused = run_cli("--verbose", "check", "+55 11 90000-0001", env=env)
        as_json = run_cli("check", "--json", "+55 11 90000-0001", env=env)
        flags = run_cli(
            "--verbose",
            "plan",
            "+55 11 90000-0001",
            "--client-token",
            sandbox.client_token,
            "--instance-token",
            instance_token,  # unknown: NOT_FOUND
            env={**env, "PLUGZ_CLIENT_TOKEN": ""},
        )
    assert refused.returncode == EXIT_API and "AuthenticationError" in refused.stdout
    assert "Client-Token *** not allowed" in refused.stdout
    assert "DEBUG" in refused.stderr  # --verbose logged the request, redacted
    assert json.loads(as_json.stdout)[0]["error"]["type"] == "AuthenticationError"
    assert flags.returncode == EXIT_API and "instance not found" in flags.stderr
    everything = "".join(p.stdout + p.stderr for p in (refused, as_json, flags))
    for secret in (instance_token, client_token, sandbox.client_token):
        for form in (secret, quote(secret, safe=""), quote(secret)):
            assert form not in everything
    assert "Traceback" not in everything


def start_sandbox_command() -> subprocess.Popen[str]:
    """``plugz-async sandbox --port 0`` as a process, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "plugz_async", "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sandbox_command_serves_until_interrupted() -> None:
    process = start_sandbox_command()
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Sandbox listening on http://127.0.0.1:")
        base_url = first.split()[3]
        # The banner's last lines are the ones to paste, and the codes: a terminal of 24
        # lines shows them once the test numbers have scrolled by.
        lines: list[str] = []
        while not lines or not lines[-1].startswith("A registration here takes"):
            line = process.stdout.readline()
            assert line, "the banner ended early:\n" + "".join(lines)
            lines.append(line)
        assert "Test numbers:\n" in lines and "Paste these" in lines[-7]
        assert lines[-2] == "Serving 1 instance: the one above.\n"
        exports = lines[-6:-2]
        assert exports == [
            "  export PLUGZ_INSTANCE_ID=sandbox-instance\n",
            "  export PLUGZ_INSTANCE_TOKEN=sandbox-instance-token\n",
            "  export PLUGZ_CLIENT_TOKEN=sandbox-client-token\n",
            f"  export PLUGZ_BASE_URL={base_url}\n",
        ]
        assert (
            "A registration here takes the confirmation code 123456, the captcha text SANDBOX "
            "and the two-step PIN 654321.\n"
        ) in lines
        # The lines pasted into a shell point the command line at the sandbox.
        script = "".join(exports) + f'"{sys.executable}" -m plugz_async check +5511900000001\n'
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PLUGZ_")}
        done = subprocess.run(
            ["bash", "-c", script], env=environ, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0 and "ready" in done.stdout, done.stderr
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0 and "sandbox stopped" in err


def test_a_sandbox_on_a_taken_port_says_so_and_exits_2() -> None:
    """Another sandbox (or a worker's --web) on the port is a usage matter, not a bug."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "plugz_async", "sandbox", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr == (
        f"plugz-async: error: port {port} on 127.0.0.1 is taken (another sandbox?): give "
        "another with --port N, or --port 0 for any free one\n"
    )


# -- register ---------------------------------------------------------------------------------


def answers(monkeypatch: pytest.MonkeyPatch, *replies: str) -> list[str]:
    """Feed ``input()`` these replies (EOF after them); return the prompts it saw."""
    prompts: list[str] = []
    queue = list(replies)

    def fake_input(prompt: str = "") -> str:
        prompts.append(prompt)
        if not queue:
            raise EOFError
        return queue.pop(0)

    monkeypatch.setattr("builtins.input", fake_input)
    return prompts


def test_register_asks_for_each_thing_the_server_wants(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = answers(monkeypatch, "000000", "123456", "654321")
    # +55 11 90000-0009 needs a PIN; the first code typed is wrong.
    code = main(["register", "--sandbox", "+55 11 90000-0009"], clock=fake_clock())
    out, err = capsys.readouterr()
    assert code == EXIT_OK
    assert "+5511900000009 is connected (code by sms; the instance's status says so)" in out
    assert prompts == [
        "Code received by sms (empty if none came): ",
        "Code received by sms (empty if none came): ",
        "Two-step verification PIN: ",
    ]
    assert "· wrong code" in err and "Sandbox: the code is 123456" in err


def test_register_with_no_code_on_any_channel_does_not_connect(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers(monkeypatch, "", "")  # no code came by sms, nor by voice
    code = main(
        ["register", "--sandbox", "+55 11 90000-0001", "--timeout", "1"], clock=fake_clock()
    )
    assert code == cli.EXIT_NOT_CONNECTED
    assert "+5511900000001: no_code" in capsys.readouterr().out


def test_register_shows_an_instance_that_never_connects(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers(monkeypatch, "123456")
    code = main(["register", "--sandbox", "+55 11 90000-0013"], clock=fake_clock())
    out, err = capsys.readouterr()
    assert code == cli.EXIT_NOT_CONNECTED
    assert " ".join(out.split()) == (
        "+5511900000013: not_connected: the registration went through, but the instance is"
        " not connected; its status says: You need to restore the session."
    )
    assert "· code confirmed\n" in err
    assert "· the instance is not connected after 5 s: You need to restore the session." in err
    assert "· finished: not_connected" in err


def test_register_asks_the_instance_for_as_long_as_it_is_told(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers(monkeypatch, "123456")
    argv = ["register", "--sandbox", "--connected-timeout", "30", "+55 11 90000-0013"]
    assert main(argv, clock=fake_clock()) == cli.EXIT_NOT_CONNECTED
    assert "· the instance is not connected after 30 s" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["register", "--sandbox", "--connected-timeout", "inf", "+55 11 90000-0013"])
    assert "'inf' is not a finite number" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("number", "expected", "exit_code"),
    [
        ("+55 11 90000-0001", {"outcome": "connected", "connected": True}, EXIT_OK),
        (
            "+55 11 90000-0013",
            {
                "outcome": "not_connected",
                "connected": False,
                "instance_error": "You need to restore the session.",
            },
            cli.EXIT_NOT_CONNECTED,
        ),
    ],
)
def test_register_json_says_how_it_ended(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    number: str,
    expected: dict[str, Any],
    exit_code: int,
) -> None:
    answers(monkeypatch, "123456")
    assert main(["register", "--sandbox", "--json", number], clock=fake_clock()) == exit_code
    out, err = capsys.readouterr()
    ended = json.loads(out)  # stdout holds the JSON alone: the questions went to stderr
    assert ended == {
        "number": pz.PhoneNumber.parse(number).e164,
        "channel": "sms",
        "appeal_token": None,
        "reason": None,
        "instance_error": None,
        **expected,
    }
    assert "· finished" in err


def test_register_stops_when_standard_input_ends_at_a_prompt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The input ends at the first code prompt: no second channel is tried (a real SMS and a
    # real call nobody could answer).
    prompts = answers(monkeypatch)
    with SandboxThread() as sandbox:
        for name, value in sandbox.env().items():
            monkeypatch.setenv(name, value)
        code = main(["register", "+55 11 90000-0001", "--timeout", "1"], clock=fake_clock())
        requested = sandbox.requests(route="request-registration-code")
    err = capsys.readouterr().err
    assert code == cli.EXIT_NOT_CONNECTED
    assert len(requested) == 1 and len(prompts) == 1
    assert "standard input ended at 'Code received by sms'" in err
    assert "no further code was requested" in err and "Traceback" not in err


@pytest.mark.parametrize("stdin", ["devnull", "empty pipe"])
def test_register_with_no_input_refuses_before_any_code_request(stdin: str) -> None:
    with SandboxThread() as sandbox:
        done = subprocess.run(
            [sys.executable, "-m", "plugz_async", "register", "+55 11 90000-0001"],
            env={**os.environ, **sandbox.env()},
            stdin=subprocess.DEVNULL if stdin == "devnull" else None,
            input="" if stdin == "empty pipe" else None,
            capture_output=True,
            text=True,
            timeout=60,
        )
        seen = sandbox.requests()
    assert done.returncode == cli.EXIT_USAGE
    assert seen == []  # not even the availability check
    assert done.stderr.count("\n") == 1 and "standard input is at its end" in done.stderr


def test_register_shows_the_captcha_image(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shown: list[bytes] = []
    replies = ["sandbox", "123456"]

    def fake_input(prompt: str = "") -> str:
        if prompt.startswith("Captcha"):  # the image is there while the question is asked
            err = capsys.readouterr().err
            path = Path(err.split("The server asks for a captcha: open ", 1)[1].split()[0])
            shown.append(path.read_bytes())
            paths.append(path)
        return replies.pop(0)

    paths: list[Path] = []
    monkeypatch.setattr("builtins.input", fake_input)
    assert main(["register", "--sandbox", "+55 11 90000-0008"], clock=fake_clock()) == EXIT_OK
    assert shown[0].startswith(b"\x89PNG")
    assert not paths[0].exists() and not paths[0].parent.exists()  # removed at the end


def test_register_a_banned_number_offers_the_appeal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers(monkeypatch, "y", "It is our support line.")
    assert main(["register", "--sandbox", "+55 11 90000-0004"]) == cli.EXIT_NOT_CONNECTED
    out, err = capsys.readouterr()
    assert "+5511900000004: appeal" in out and "Unban request: UNBANNED" in err


def test_a_code_piped_to_register_for_a_banned_number_sends_no_appeal() -> None:
    with SandboxThread() as sandbox:
        done = subprocess.run(
            [sys.executable, "-m", "plugz_async", "register", "+55 11 90000-0004"],
            env={**os.environ, **sandbox.env()},
            input="123456\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        routes = [entry["route"] for entry in sandbox.requests()]
    assert done.returncode == cli.EXIT_NOT_CONNECTED
    assert routes == ["registration-available"]  # no request-unbanning with "123456" in it


def test_register_through_the_entry_point_with_piped_answers() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "plugz_async", "register", "--sandbox", "+55 11 90000-0009"],
        input="123456\n654321\n",  # the code, then the two-step PIN
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert "is connected" in done.stdout and "PIN confirmed" in done.stderr


def test_sandbox_command_stops_cleanly_on_sigterm() -> None:
    process = start_sandbox_command()
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("Sandbox listening on http://127.0.0.1:")
        while not process.stdout.readline().startswith("Control API:"):  # it serves now
            pass
    finally:
        process.send_signal(signal.SIGTERM)  # a supervisor's stop, docker stop
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0 and "sandbox stopped" in err and "Traceback" not in err
