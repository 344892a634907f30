"""The queue's command line: ``worker``, ``queue ...`` and ``demo --queue``.

Against a real redis-server (the session's, emptied for each test) and the sandbox in a
thread, with secrets that change under URL encoding. ``queue`` runs in-process through
``main``; the worker runs as a real process, since a real process is what it is: it starts,
takes steps, serves saq's web UI, and stops on SIGTERM.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("saq")
from helpers import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN, pipe_of, table_rows
from redis_server import RedisServer

from plugz_async.cli import (
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    main,
)
from plugz_async.sandbox import PIN, SandboxConfig, SandboxThread

CONFIG = SandboxConfig(
    instance_id=INSTANCE_ID,
    instance_token=INSTANCE_TOKEN,
    client_token=CLIENT_TOKEN,
    instances=4,
    wait_scale=0.01,
    random_codes=True,
)
REDIS_USER = "plugzcli"
REDIS_PASSWORD = "rds-SECRET/pw+5"
SECRETS = (INSTANCE_TOKEN, CLIENT_TOKEN, REDIS_PASSWORD)

READY = "+55 11 90000-0001"
WAITS = "+55 11 90000-0002"
PIN_NUMBER = "+55 11 90000-0009"


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:  # the instance tokens of the others are this one and "-i"
        for form in (secret, quote(secret, safe=""), quote(secret)):
            assert form not in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_environ() -> dict[str, str]:
    """This process's environment without any PLUGZ_* variable."""
    return {name: value for name, value in os.environ.items() if not name.startswith("PLUGZ_")}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> str:
    """No PLUGZ_* variable but PLUGZ_REDIS_URL, the session's (emptied) redis-server."""
    for name in os.environ:
        if name.startswith("PLUGZ_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PLUGZ_REDIS_URL", redis_url)
    return redis_url


@pytest.fixture
def sandbox() -> Iterator[SandboxThread]:
    with SandboxThread(CONFIG) as sb:
        yield sb


def password_url(server: RedisServer) -> str:
    """A URL of the session's server with a user and a password (an ACL user)."""
    server.command("ACL", "SETUSER", REDIS_USER, "on", f">{REDIS_PASSWORD}", "~*", "&*", "+@all")
    return f"redis://{REDIS_USER}:{quote(REDIS_PASSWORD, safe='')}@127.0.0.1:{server.port}/0"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``plugz-async ARGS`` in this process: its exit code, stdout and stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    assert_no_secret(out + err)
    return code, out, err


def wait_for(
    capsys: pytest.CaptureFixture[str],
    number: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 20.0,
) -> dict[str, Any]:
    """``queue status NUMBER --json`` until ``done`` says so."""
    deadline = time.monotonic() + timeout
    while True:
        code, out, err = run(capsys, "queue", "status", number, "--json")
        assert code == EXIT_OK, err
        status: dict[str, Any] = json.loads(out)
        if done(status):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def cli_process(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``plugz-async ARGS`` as a process, with ``env`` (stdout and stderr piped, as text)."""
    return subprocess.Popen(
        [sys.executable, "-m", "plugz_async", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(process: subprocess.Popen[str], timeout: float = 20.0) -> str:
    """The next line of the process's stdout, waiting ``timeout`` seconds at most."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "no line in time"
    return process.stdout.readline()


def stop(process: subprocess.Popen[str], timeout: float = 30.0) -> tuple[str, str]:
    """SIGTERM, and what it printed after (SIGKILL if it does not stop in time)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise


def children() -> set[tuple[int, str]]:
    """This process's child processes: (pid, command line)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            line = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid():
            found.add((int(stat.parent.name), line))
    return found


# -- the worker, a real process ---------------------------------------------------------------


def test_a_worker_process_runs_a_registration_fed_from_the_command_line(
    sandbox: SandboxThread,
    redis_server: RedisServer,
    env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = password_url(redis_server)  # the password must show nowhere
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps(sandbox.instances()))
    instances.chmod(0o600)
    worker_env = {
        **clean_environ(),
        "PLUGZ_REDIS_URL": url,
        "PLUGZ_CLIENT_TOKEN": sandbox.client_token,
        "PLUGZ_BASE_URL": sandbox.base_url,
        "PLUGZ_INSTANCES_FILE": str(instances),
    }
    worker = cli_process(
        worker_env,
        *("worker", "--web", "--web-port", "0"),
        *("--device-poll-interval", "0.2", "--input-timeout", "20"),
        *("--timed-concurrency", "6"),
    )
    try:
        started = read_line(worker)
        assert started.startswith(
            f"worker started: queue 'plugz' at redis://{REDIS_USER}:***@127.0.0.1:"
            f"{redis_server.port}/0, concurrency 10 (6 kept for timed steps), rate limit"
            " 5/second per instance, "
            "tokens for 4 instances, web UI at http://127.0.0.1:"
        )
        # saq's web UI answers, on loopback, about this queue.
        web = re.search(r"web UI at (http://127\.0\.0\.1:\d+)/queues/plugz$", started.strip())
        assert web is not None
        with urllib.request.urlopen(web.group(1) + "/api/queues", timeout=5) as answer:
            # Both lanes: the timed steps' and the checks'.
            queues = [q["name"] for q in json.load(answer)["queues"]]
            assert sorted(queues) == ["plugz", "plugz-checks"]
        with urllib.request.urlopen(web.group(0).split(" at ")[1], timeout=5) as page:
            assert page.status == 200 and b"<html" in page.read().lower()

        monkeypatch.setenv("PLUGZ_REDIS_URL", url)
        instance = f"{INSTANCE_ID}-3"
        code, out, err = run(capsys, "queue", "register", PIN_NUMBER, "--instance", instance)
        assert code == EXIT_OK, err
        assert "+5511900000009" in out and "queued" in out
        wait_for(capsys, PIN_NUMBER, lambda s: s["wants"] == "code")
        sent = sandbox.codes(number="5511900000009")
        code, out, err = run(capsys, "queue", "code", PIN_NUMBER, str(sent[-1]["code"]))
        assert code == EXIT_OK, err
        assert out.startswith("code given to the registration of +5511900000009")
        wait_for(capsys, PIN_NUMBER, lambda s: s["wants"] == "pin")
        monkeypatch.setattr(sys, "stdin", io.StringIO(PIN + "\n"))  # piped: never in ps
        code, out, err = run(capsys, "queue", "pin", PIN_NUMBER)
        assert code == EXIT_OK, err
        assert PIN not in out
        final = wait_for(capsys, PIN_NUMBER, lambda s: s["done"])
        assert final["status"] == "connected" and final["instance"] == instance
        assert [e["kind"] for e in final["events"]][-3:] == [
            "pin_confirmed",
            "instance_connected",
            "finished",
        ]
    finally:
        out, err = stop(worker)
    assert worker.returncode == EXIT_OK, err
    assert (started + out).splitlines() == [started.strip(), "worker stopped: queue 'plugz'"]
    assert "Traceback" not in err
    assert_no_secret(started + out + err)


def start_worker(sandbox: SandboxThread, redis_url: str, tmp_path: Path, *args: str) -> Any:
    """``plugz-async worker ARGS`` as a process, with the sandbox's instances in a file."""
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps(sandbox.instances()))
    instances.chmod(0o600)
    env = {
        **clean_environ(),
        "PLUGZ_REDIS_URL": redis_url,
        "PLUGZ_CLIENT_TOKEN": sandbox.client_token,
        "PLUGZ_BASE_URL": sandbox.base_url,
        "PLUGZ_INSTANCES_FILE": str(instances),
    }
    return cli_process(env, "worker", *args)


@pytest.mark.chaos
def test_a_second_signal_stops_the_worker_at_once(
    sandbox: SandboxThread, env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.hold("registration-available", 20.0)  # the first step stays in flight
    worker = start_worker(sandbox, env, tmp_path, "--shutdown-grace", "60")
    try:
        started = read_line(worker)
        assert started.startswith("worker started: queue 'plugz'")
        assert run(capsys, "queue", "register", READY, "--instance", INSTANCE_ID)[0] == EXIT_OK
        deadline = time.monotonic() + 20
        while not sandbox.requests(route="registration-available"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)  # graceful: it would wait for the step
        assert worker.stderr is not None
        ready, _, _ = select.select([worker.stderr], [], [], 20)
        assert ready
        assert worker.stderr.readline() == (
            "plugz-async: worker stopping: no new step; the steps in flight finish (within "
            "60 s). Ctrl-C (or SIGTERM) again to stop at once.\n"
        )
        time.sleep(0.5)
        assert worker.poll() is None  # still waiting for the step
        asked = time.monotonic()
        worker.send_signal(signal.SIGINT)
        out, err = worker.communicate(timeout=20)
        assert time.monotonic() - asked < 10
    finally:
        sandbox.end_holds()
        stop(worker)
    assert worker.returncode == EXIT_INTERRUPTED, err
    assert out.splitlines() == [
        "worker interrupted: queue 'plugz' (the steps cut short run again on another worker)"
    ]
    assert err == ""  # the one line above, and nothing more: no traceback, no Redis warning
    # The step cut short runs again on the next worker.
    asked = len(sandbox.requests(route="registration-available"))
    second = start_worker(sandbox, env, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while len(sandbox.requests(route="registration-available")) <= asked:
            assert time.monotonic() < deadline, "the next worker did not take the step up"
            time.sleep(0.05)
    finally:
        stop(second)


def test_status_shows_the_plan_of_the_code_request_as_it_stands_now(
    sandbox: SandboxThread, env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = start_worker(sandbox, env, tmp_path)
    try:
        assert read_line(worker).startswith("worker started: queue 'plugz'")
        assert run(capsys, "queue", "register", READY, "--instance", INSTANCE_ID)[0] == EXIT_OK
        sent = wait_for(capsys, READY, lambda s: s["wants"] == "code")
        kinds = [event["kind"] for event in sent["events"]]
        assert kinds[:2] == ["checked", "planned"] and "code_requested" in kinds
        assert sent["events"][1]["message"].startswith("planned: ready")
        # The code request planned again: SMS waits its retryAfter (2 s, scaled). Once that
        # has passed, the plan stands ready again, and the status says so (it said 'wait',
        # as planned at the request, for good).
        again = next(w for w in sent["plan"]["windows"] if w["channel"] == "sms")["ready_at"]
        assert again > sent["events"][0]["at"]
        now = wait_for(capsys, READY, lambda s: s["plan"]["outcome"] == "ready")
        assert now["plan"]["windows"] == sent["plan"]["windows"]  # the same plan, read now
        code, out, err = run(capsys, "queue", "status", READY)
        assert code == EXIT_OK, err
        assert re.search(r"^Plan\s+ready\s*$", out, re.M), out
    finally:
        stop(worker)


def test_the_worker_refuses_to_start_without_what_it_needs(
    env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "worker")
    assert code == EXIT_USAGE and "the worker needs the account's Client-Token" in err
    monkeypatch.setenv("PLUGZ_CLIENT_TOKEN", CLIENT_TOKEN)
    code, _, err = run(capsys, "worker")
    assert code == EXIT_USAGE and "the worker has no instance tokens" in err
    broken = tmp_path / "instances.json"
    broken.write_text(json.dumps({"a": 1, "b": INSTANCE_TOKEN}))
    code, _, err = run(capsys, "worker", "--instances", str(broken))
    assert code == EXIT_USAGE and "must hold one JSON object" in err
    code, _, err = run(capsys, "worker", "--instance-id", "a")
    assert code == EXIT_USAGE and "--instance-id needs its token" in err
    one = ["--instance-id", "a", "--instance-token", INSTANCE_TOKEN]
    code, _, err = run(capsys, "worker", *one, "--base-url", "ftp://example")
    assert code == EXIT_USAGE and "--base-url" in err
    with pytest.raises(SystemExit) as info:
        main(["worker", *one, "--rate-limit", "fast"])
    assert info.value.code == EXIT_USAGE
    assert "'fast' is not a rate" in capsys.readouterr().err
    # Everything is there but Redis: exit 4, after a warning about a file others can read.
    shared = tmp_path / "shared.json"
    shared.write_text(json.dumps({"a": INSTANCE_TOKEN}))
    shared.chmod(0o644)
    down = f"redis://127.0.0.1:{free_port()}/0"
    code, out, err = run(capsys, "worker", "--instances", str(shared), "--redis-url", down)
    assert code == EXIT_UNREACHABLE and out == ""
    assert err.splitlines() == [
        f"plugz-async: warning: the instances file {shared} can be read by other users: "
        f"chmod 600 {shared}",
        f"plugz-async: error: cannot reach Redis at {down} (ConnectionError: Error 111 "
        f"connecting to 127.0.0.1:{down.split(':')[2].split('/')[0]}. Connect call failed "
        f"('127.0.0.1', {down.split(':')[2].split('/')[0]}).); check --redis-url and that "
        "Redis runs",
    ]


# -- queue register ---------------------------------------------------------------------------


def test_a_file_with_bad_rows_says_each_with_its_line_and_queues_the_others(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    numbers = tmp_path / "numbers.csv"
    numbers.write_text(
        "number,instance\n"
        f"{READY},inst-a\n"  # line 2
        "+55 44 9,inst-b\n"  # line 3: impossible
        "\n"
        f"{WAITS},inst-a\n"  # line 5: inst-a registers READY
        "+55 11 90000-0003,\n"  # line 6: no instance
        "+55 11 90000-0004,inst-c\n"  # line 7
    )
    code, out, err = run(capsys, "queue", "register", str(numbers), "--json")
    assert code == EXIT_INCOMPLETE
    data = json.loads(out)
    assert (data["queued"], data["refused"]) == (2, 3)
    rows = {row["line"]: row for row in data["rows"]}
    assert sorted(rows) == [2, 3, 5, 6, 7]
    assert rows[2]["queued"] and rows[2]["new"] and rows[2]["status"] == "check"
    assert rows[2]["number"] == "+5511900000001" and rows[2]["instance"] == "inst-a"
    assert rows[3]["error"]["type"] == "InvalidPhoneNumber"
    assert rows[5]["error"]["type"] == "InstanceBusyError"
    assert rows[6]["error"]["type"] == "ConfigurationError"
    assert rows[7]["queued"]
    lines = err.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"plugz-async: {numbers}: line 3: '+55 44 9' not queued: ")
    assert lines[1] == (
        f"plugz-async: {numbers}: line 5: '{WAITS}' not queued: instance inst-a is "
        "registering +5511900000001: one number per instance at a time"
    )
    assert lines[2].startswith(f"plugz-async: {numbers}: line 6: '+55 11 90000-0003' not queued")
    # Again, as a table: the two queued are left as they are.
    code, out, _ = run(capsys, "queue", "register", str(numbers))
    assert code == EXIT_INCOMPLETE
    statuses = [row["Status"] for row in table_rows(out, "Line") if row["Line"].isdigit()]
    assert out.count("already queued") == 2 and statuses.count("refused") == 3
    assert "2 queued on 'plugz', 3 refused." in out
    # Every registration, and the counts.
    code, out, _ = run(capsys, "queue", "status", "--json")
    assert code == EXIT_OK
    data = json.loads(out)
    assert data["counts"] == {"check": 2}
    assert [r["number"] for r in data["registrations"]] == ["+5511900000001", "+5511900000004"]
    code, out, _ = run(capsys, "queue", "status")
    assert code == EXIT_OK
    assert "Registrations of 'plugz'" in out and "+5511900000004" in out and "inst-c" in out
    assert re.search(r"^check\s+2$", out, re.M)


def test_register_reads_the_column_of_numbers_by_name_or_by_column(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    named = tmp_path / "contatos.csv"
    named.write_text(f"nome,telefone,instance\nAna,{READY},inst-a\n\nBia,{WAITS},inst-b\n")
    code, out, err = run(capsys, "queue", "register", str(named), "--json")
    assert code == EXIT_OK, err
    assert f"reading numbers from column 'telefone' of {named}" in err  # found by its name
    rows = json.loads(out)["rows"]
    assert [(r["line"], r["number"], r["instance"]) for r in rows] == [
        (2, "+5511900000001", "inst-a"),
        (4, "+5511900000002", "inst-b"),
    ]
    other = tmp_path / "other.csv"
    other.write_text("cel;instance\n+55 11 90000-0003;inst-c\n")
    code, out, err = run(capsys, "queue", "register", str(other))
    assert code == EXIT_USAGE and "--column NAME names another" in err
    code, out, err = run(capsys, "queue", "register", str(other), "--column", "Cel", "--json")
    assert code == EXIT_OK, err
    assert [r["number"] for r in json.loads(out)["rows"]] == ["+5511900000003"]
    code, out, err = run(capsys, "queue", "register", READY, "--instance", "i", "--column", "cel")
    assert code == EXIT_USAGE and "--column names a column of a FILE" in err
    both = tmp_path / "both.csv"  # a landline and a mobile: which one is for the user to say
    both.write_text(f"phone,mobile,instance\n+55 11 3000-0001,{READY},inst-a\n")
    code, out, err = run(capsys, "queue", "register", str(both))
    assert code == EXIT_USAGE and out == "" and "('phone', 'mobile')" in err
    code, out, err = run(capsys, "queue", "register", str(both), "--column", "mobile", "--json")
    assert code == EXIT_OK and [r["number"] for r in json.loads(out)["rows"]] == ["+5511900000001"]


def test_register_refuses_a_file_that_holds_no_number(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import random

    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(b for b in random.Random(1).randbytes(4000) if b)[:2000])
    header = tmp_path / "header.csv"
    header.write_text("number,instance\n")
    for path, said in (
        (noise, f"{noise} holds no phone number: none of its 16 rows reads as one"),
        (header, f"{header} has no numbers to queue"),
    ):
        code, out, err = run(capsys, "queue", "register", str(path), "--instance", "inst-a")
        assert code == EXIT_USAGE and out == ""
        assert err.count("\n") == 1 and err.startswith(f"plugz-async: error: {said}"), err
    code, out, _ = run(capsys, "queue", "status", "--json")
    assert code == EXIT_OK and json.loads(out)["registrations"] == []
    # A number that cannot exist is a number all the same: its row is not queued, and said.
    impossible = tmp_path / "impossible.txt"
    impossible.write_text("+55 44 9\n")
    code, out, err = run(capsys, "queue", "register", str(impossible), "--instance", "inst-a")
    assert code == EXIT_INCOMPLETE and "holds no phone number" not in err
    assert f"{impossible}: line 1: '+55 44 9' not queued" in err


def test_a_plain_file_takes_the_instance_flag_and_a_file_without_instances_is_refused(
    env: str, tmp_path: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "numbers.txt"
    plain.write_text(f"# one number\n{READY}\n")
    code, _, err = run(capsys, "queue", "register", str(plain))
    assert code == EXIT_USAGE
    assert f"{plain} names no instance: give it an 'instance' column, or give --instance" in err
    code, _, err = run(capsys, "queue", "register", str(tmp_path / "missing.csv"))
    assert code == EXIT_USAGE and "cannot read" in err
    header = tmp_path / "header.csv"
    header.write_text("cel_cliente;instance\n123\n")
    code, _, err = run(capsys, "queue", "register", str(header))
    assert code == EXIT_USAGE and "has no column of numbers" in err
    assert redis_server.dbsize() == 0  # nothing written
    code, out, _ = run(capsys, "queue", "register", str(plain), "--instance", "inst-a", "--json")
    assert code == EXIT_OK
    [row] = json.loads(out)["rows"]
    assert (row["line"], row["instance"], row["queued"]) == (2, "inst-a", True)


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes are POSIX")
def test_register_reads_a_pipe_once(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A named pipe, or the shell's <(command): a file, read once, though its name says nothing.
    text = f"number,instance\n{READY},inst-a\n{WAITS},inst-b\n"
    with pipe_of(tmp_path / "numbers", text) as pipe:
        code, out, err = run(capsys, "queue", "register", str(pipe), "--json")
    assert code == EXIT_OK, err
    assert [r["number"] for r in json.loads(out)["rows"]] == ["+5511900000001", "+5511900000002"]


def test_numbers_on_the_command_line_are_all_checked_before_anything_is_written(
    env: str, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "queue", "register", READY, "call me", "--instance", "a")
    assert code == EXIT_USAGE
    assert err.startswith("plugz-async: error: 'call me' is not a possible phone number")
    assert err.count("\n") == 1
    code, _, err = run(capsys, "queue", "register", READY)
    assert code == EXIT_USAGE and "--instance ID (or set PLUGZ_INSTANCE_ID)" in err
    code, _, err = run(capsys, "queue", "register", READY, WAITS, "--instance", "a")
    assert code == EXIT_USAGE and "instance a registers one number at a time" in err
    code, _, err = run(capsys, "queue", "register", READY, "--prefer", "wa_old", "--instance", "a")
    assert code == EXIT_USAGE and "--allow-wa-old" in err
    assert redis_server.dbsize() == 0
    code, out, _ = run(capsys, "queue", "register", READY, "--instance", "a")
    assert code == EXIT_OK
    assert "+5511900000001" in out and "queued" in out


# -- code, captcha, PIN -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["code", READY, "12ab"], "the code must be 4 to 8 digits"),
        (["code", READY, "123"], "the code must be 4 to 8 digits"),
        (["pin", READY, "12345"], "the PIN must be 6 digits"),
        (["captcha", READY, "  "], "captcha text must be non-empty text"),
        (["code", "call me", "123456"], "'call me' is not a possible phone number"),
    ],
)
def test_input_of_the_wrong_form_is_refused_before_redis_is_asked(
    args: list[str],
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PLUGZ_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # none there
    code, out, err = run(capsys, "queue", *args)
    assert code == EXIT_USAGE and out == ""
    assert err.startswith("plugz-async: error: ") and said in err and err.count("\n") == 1


def test_unknown_registrations_and_input_not_waited_for(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "queue", "code", READY, "123456")
    assert code == EXIT_USAGE
    assert err == (
        "plugz-async: error: the queue has no registration of +5511900000001 (queue 'plugz')\n"
    )
    code, _, err = run(capsys, "queue", "status", READY, "--queue", "other")
    assert code == EXIT_USAGE and "(queue 'other')" in err
    assert run(capsys, "queue", "register", READY, "--instance", "a")[0] == EXIT_OK
    code, _, err = run(capsys, "queue", "captcha", READY, "SANDBOX")
    assert code == EXIT_INCOMPLETE
    assert err == (
        "plugz-async: error: the registration of +5511900000001 does not wait for a captcha "
        "(it is check); see: plugz-async queue status +5511900000001\n"
    )
    code, out, _ = run(capsys, "queue", "status", READY)
    assert code == EXIT_OK
    assert re.search(r"Status\s+check", out) and re.search(r"Instance\s+a", out)


def test_an_ended_registration_is_left_as_it_is_unless_restart_is_asked(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from plugz_async.queue import RegistrationQueue

    async def end_it() -> None:  # as a worker would, with an error retrying cannot mend
        async with RegistrationQueue(env, environ={}) as queue:
            await queue.register(READY, instance="a")
            store = queue._store
            record = await store.load("+5511900000001")
            assert record is not None
            await store.give_up(record, "InstanceNotFoundError: instance not found")

    asyncio.run(end_it())
    code, out, err = run(capsys, "queue", "register", READY, "--instance", "a", "--json")
    assert code == EXIT_INCOMPLETE
    (row,) = json.loads(out)["rows"]
    assert row["queued"] is False and row["new"] is False and row["status"] == "failed"
    assert "--restart starts it again" in err
    code, out, _ = run(capsys, "queue", "register", READY, "--instance", "a", "--restart")
    assert code == EXIT_OK
    assert re.search(r"^\+5511900000001\s+a\s+check\s+queued$", out, re.M)


def test_prune_forgets_nothing_unfinished_and_says_how_many(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "queue", "register", READY, "--instance", "a")[0] == EXIT_OK
    code, out, _ = run(capsys, "queue", "prune", "--older-than", "0")
    assert code == EXIT_OK
    assert out == "Forgot 0 registrations of 'plugz' that ended more than 0 s ago.\n"
    code, out, _ = run(capsys, "queue", "prune", "--older-than", "86400", "--json")
    assert code == EXIT_OK and json.loads(out) == {"queue": "plugz", "forgotten": 0}
    assert run(capsys, "queue", "status", READY)[0] == EXIT_OK  # still there: unfinished
    with pytest.raises(SystemExit) as usage:
        main(["queue", "prune", "--older-than", "-5"])
    assert usage.value.code == EXIT_USAGE
    assert "must be 0 or more" in capsys.readouterr().err


# -- Redis ------------------------------------------------------------------------------------


def test_redis_out_of_reach_or_refusing_is_one_line_without_its_password(
    redis_server: RedisServer,
    env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = quote(REDIS_PASSWORD, safe="")
    port = free_port()
    code, _, err = run(
        capsys, "queue", "status", "--redis-url", f"redis://:{secret}@127.0.0.1:{port}"
    )
    assert code == EXIT_UNREACHABLE
    assert err.startswith(
        f"plugz-async: error: cannot reach Redis at redis://:***@127.0.0.1:{port} ("
    )
    assert err.endswith("check --redis-url and that Redis runs\n")
    wrong = f"redis://nobody:{secret}@127.0.0.1:{redis_server.port}/0?password={secret}"
    monkeypatch.setenv("PLUGZ_REDIS_URL", wrong)
    code, _, err = run(capsys, "queue", "status")
    assert code == EXIT_USAGE
    assert err.startswith(
        f"plugz-async: error: Redis at redis://nobody:***@127.0.0.1:{redis_server.port}/0"
        "?password=*** refused the credentials"
    )
    assert err.endswith("check PLUGZ_REDIS_URL\n")
    code, _, err = run(capsys, "queue", "status", "--redis-url", f"http://u:{secret}@127.0.0.1")
    assert code == EXIT_USAGE
    assert err == "plugz-async: error: --redis-url must be a redis://, rediss:// or unix:// URL\n"
    monkeypatch.delenv("PLUGZ_REDIS_URL")
    code, _, err = run(capsys, "queue", "status")
    assert code == EXIT_USAGE
    assert err == "plugz-async: error: no Redis URL: give --redis-url or set PLUGZ_REDIS_URL\n"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user:p%40ss@h:6379/0", "redis://user:***@h:6379/0"),
        ("rediss://:pw@h/1?ssl_cert_reqs=none", "rediss://:***@h/1?ssl_cert_reqs=none"),
        ("redis://lonely-secret@h", "redis://***@h"),
        ("unix:///run/redis.sock?db=2&password=zz", "unix:///run/redis.sock?db=2&password=***"),
    ],
)
def test_a_redis_url_is_shown_without_its_password(url: str, shown: str) -> None:
    from plugz_async.cli.queue._redis import mask_redis_url

    masked, secrets = mask_redis_url(url)
    assert masked == shown
    for secret in secrets:
        assert secret not in masked
    assert ("p@ss" in secrets) == ("p%40ss" in url)


def test_without_the_queue_extra_each_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(sys.modules):
        if name == "plugz_async.queue" or name.startswith("plugz_async.queue."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "saq", None)  # import saq fails
    monkeypatch.setenv("PLUGZ_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    one = ["--client-token", "client-tok", "--instance-id", "a", "--instance-token", "inst-tok"]
    for args in (
        ["queue", "status"],
        ["queue", "code", READY, "123456"],
        ["worker", *one],
        ["demo", "--queue"],
    ):
        code, _, err = run(capsys, *args)
        assert code == EXIT_USAGE, args
        assert err == (
            "plugz-async: error: plugz_async.queue needs saq, which is not installed: "
            "pip install 'plugz-async[queue]' (from a clone of the repository: "
            "pip install '.[queue]')\n"
        )


# -- demo --queue -----------------------------------------------------------------------------


def test_demo_queue_runs_twenty_registrations_to_their_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = children()
    code, out, err = run(capsys, "demo", "--queue")
    assert code == EXIT_OK, err  # within its own time budget, or it exits 7
    assert children() <= before  # its redis-server and its workers are gone
    assert "20 of 20 ended in" in out and "2 worker processes" in out
    rows = {row["Number"]: row for row in table_rows(out) if row["Number"].startswith("+55")}
    assert len(rows) == 20
    by_scenario = {row["Scenario"]: row["Status"] for row in rows.values()}
    del by_scenario["mix"]
    assert by_scenario == {
        "ready": "connected",
        "waits": "connected",
        "wa_old-not-eligible": "connected",
        "banned": "appeal",
        "unavailable": "unavailable",
        "voice-first": "connected",
        "blocked-at-code-request": "blocked_at_code_request",
        "captcha": "connected",
        "pin": "connected",
        "device-transfer": "connected",
        "growing-waits": "connected",
    }
    assert rows["+5511900000006"]["Channel"] == "voice"  # the channel it was registered by
    assert "export PLUGZ_INSTANCES_FILE=instances.json" in out


def test_demo_queue_without_redis_server_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from plugz_async.cli.queue import _demo as _queue_demo

    monkeypatch.setattr(_queue_demo, "find_redis_server", lambda: None)
    code, out, err = run(capsys, "demo", "--queue")
    assert code == EXIT_USAGE and out == ""
    assert err == (
        "plugz-async: error: redis-server is not installed: apt-get install -y redis-server "
        "(Debian/Ubuntu), or brew install redis (macOS)\n"
    )
    code, _, err = run(capsys, "demo", "--queue", "--numbers", "numbers.csv")
    assert code == EXIT_USAGE and "--numbers does not go with --queue" in err


# -- the dashboard, a real process ------------------------------------------------------------


def test_the_dashboard_serves_the_page_read_only_then_with_a_token_from_a_file(
    redis_server: RedisServer, env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from plugz_async.cli.queue._dashboard import DEFAULT_PORT
    from plugz_async.dashboard import DEFAULT_PORT as SERVED_PORT

    assert DEFAULT_PORT == SERVED_PORT
    url = password_url(redis_server)
    token = "a-dashboard-token-kept-in-a-file"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    for extra, mode in (([], "read-only"), (["--token-file", str(token_file)], "cancel needs")):
        environ = {**clean_environ(), "PLUGZ_REDIS_URL": url}
        process = cli_process(environ, "dashboard", "--port", "0", *extra)
        try:
            started = read_line(process)
            found = re.match(
                r"dashboard of queue 'plugz' at (http://127\.0\.0\.1:\d+/) \((.*)\)", started
            )
            assert found is not None, started
            assert found.group(2).startswith(mode)
            with urllib.request.urlopen(found.group(1), timeout=5) as page:
                html = page.read().decode()
            assert 'Queue <span id="queue-name">plugz</span>' in html
            with urllib.request.urlopen(found.group(1) + "api/summary", timeout=5) as answer:
                assert json.load(answer)["total"] == 0
        finally:
            out, err = stop(process)
        assert process.returncode == EXIT_OK, err
        assert "dashboard stopped" in err
        for text in (started, out, err, html):
            assert REDIS_PASSWORD not in text and token not in text


def test_the_dashboard_says_what_is_wrong_before_it_serves(
    redis_server: RedisServer,
    env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PLUGZ_REDIS_URL", redis_server.url)
    code, _, err = run(capsys, "dashboard", "--token-file", str(tmp_path / "missing"))
    assert code == EXIT_USAGE and "cannot read the token file" in err
    (tmp_path / "short").write_text("short")
    code, _, err = run(capsys, "dashboard", "--token-file", str(tmp_path / "short"))
    assert code == EXIT_USAGE and "16 characters or more" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = run(capsys, "dashboard", "--port", str(taken.getsockname()[1]))
    assert code == EXIT_USAGE and "choose another --port" in err
