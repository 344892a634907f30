"""A local ``redis-server`` of our own: started on loopback at a free port, in a folder, and
ended whatever happens (at interpreter exit at the latest).

One piece of code for everything that starts one: the test suite (every write in an append-only
file synced to disk, so a killed server comes back with its data), ``plugz-async demo --queue``
(nothing saved) and the queue benchmark (``appendfsync everysec``). It talks to the server over
a plain socket in the RESP protocol: the standard library only, no redis-py, so it imports
without the ``queue`` extra.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, TypeAlias

__all__ = [
    "HOST",
    "INSTALL_HINT",
    "AppendFsync",
    "RedisError",
    "RedisServer",
    "Reply",
    "find_redis_server",
    "free_port",
    "stop_process",
]

HOST = "127.0.0.1"

INSTALL_HINT = (
    "redis-server is not installed: apt-get install -y redis-server (Debian/Ubuntu), "
    "or brew install redis (macOS)"
)

# Where package managers put the binary when it is not on PATH (Debian: /usr/bin; some
# distributions and sbin-less PATHs: /usr/sbin; Homebrew: /usr/local/bin, /opt/homebrew/bin).
_PLACES = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/opt/homebrew/bin")

#: When the server syncs its append-only file to disk: after every write, once a second, or
#: when the operating system likes.
AppendFsync: TypeAlias = Literal["always", "everysec", "no"]

# A RESP reply: simple strings and bulk strings come back as bytes, integers as int,
# arrays as lists, a null bulk string or array as None.
Reply: TypeAlias = "bytes | int | list[Reply] | None"


class RedisError(RuntimeError):
    """The server answered with an error (``-ERR ...``), or did not start."""


def find_redis_server() -> str | None:
    """The path of the ``redis-server`` executable, or None when it is not installed."""
    found = shutil.which("redis-server")
    if found:
        return found
    for place in _PLACES:
        candidate = Path(place) / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> int:
    """SIGTERM (once), wait ``timeout`` seconds, then SIGKILL; wait for it, and return its
    exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


# Servers still running, stopped at interpreter exit whatever happened before (a fixture whose
# teardown never ran, a script that forgot to stop its server).
_LIVE: set[RedisServer] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        server.kill()
        server.close()


class RedisServer:
    """One ``redis-server`` process, listening on ``127.0.0.1`` at a free port.

    ``with RedisServer() as server:`` starts it; ``server.url`` is then, for instance,
    ``redis://127.0.0.1:40123/0``.

    ``start()`` waits until the server answers PING; ``kill()`` (SIGKILL) and ``stop()``
    (SIGTERM) end the process but keep its directory, so ``restart()`` brings it back on the
    same port replaying the append-only file; ``close()`` (and leaving the ``with`` block)
    stops it and removes the directory it made (not one it was given).

    It never saves snapshots (``--save ""``). By default every write goes to the append-only
    file, synced before the server answers (``appendfsync always``); ``appendfsync`` picks
    another policy, and ``appendonly=False`` keeps nothing at all (a restart starts empty).
    """

    def __init__(
        self,
        executable: str | None = None,
        *,
        directory: Path | str | None = None,
        appendonly: bool = True,
        appendfsync: AppendFsync = "always",
        startup_timeout: float = 5.0,
        attempts: int = 3,
    ) -> None:
        found = executable or find_redis_server()
        if found is None:
            raise FileNotFoundError(INSTALL_HINT)
        self.executable = found
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.startup_timeout = startup_timeout
        self.attempts = attempts
        self._own_directory = directory is None
        self._directory: Path | None = None if directory is None else Path(directory)
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # What the users read.

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server was never started")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``"""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def directory(self) -> Path:
        """Where the server keeps its append-only file and this class its log."""
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="plugz-redis-"))
        return self._directory

    @property
    def log_path(self) -> Path:
        return self.directory / "redis-server.log"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 20, *, since: int = 0) -> str:
        """The last lines of the log (of what was written after byte ``since``)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(since)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # The life of the process.

    def start(self) -> None:
        """Start the server and wait until it answers PING (at most ``startup_timeout``).

        The first start picks a free port, and picks another if the port was taken between
        asking and binding; a restart keeps its port (the clients know the URL).

        Raises:
            RedisError: it did not start (the message ends with its log's last lines).
        """
        if self.running:
            raise RuntimeError(f"redis-server is already running on port {self._port}")
        keep_port = self._port is not None
        for attempt in range(1, self.attempts + 1):
            port = self._port if keep_port and self._port is not None else free_port()
            try:
                self._launch(port)
                return
            except _PortTaken:
                if attempt == self.attempts:
                    raise RedisError(
                        f"redis-server could not listen on {HOST}:{port} "
                        f"(tried {attempt} times):\n{self.log_tail()}"
                    ) from None
                if keep_port:
                    time.sleep(0.2)  # the port is this server's to take back: wait for it

    def _arguments(self, port: int) -> list[str]:
        persistence = ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        return [
            self.executable,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            *(persistence if self.appendonly else ["--appendonly", "no"]),
            "--save",
            "",
            "--dir",
            str(self.directory),
            "--logfile",
            "",  # the log goes to stdout, which is our log file
        ]

    def _launch(self, port: int) -> None:
        with open(self.log_path, "ab") as log:
            since = log.tell()  # this start's lines follow
            process = subprocess.Popen(
                self._arguments(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        self._process = process
        self._port = port
        _LIVE.add(self)
        deadline = time.monotonic() + self.startup_timeout
        try:
            while True:
                if process.poll() is not None:
                    tail = self.log_tail(since=since)
                    self._reap()
                    if "Address already in use" in tail:
                        raise _PortTaken
                    raise RedisError(
                        f"redis-server exited with status {process.returncode} on start:\n{tail}"
                    )
                if self._answers_ping(process.pid):
                    return
                if time.monotonic() > deadline:
                    raise RedisError(
                        f"redis-server did not answer PING on {HOST}:{port} within "
                        f"{self.startup_timeout} s:\n{self.log_tail(since=since)}"
                    )
                time.sleep(0.01)
        except BaseException:
            self.kill()
            raise

    def _answers_ping(self, pid: int) -> bool:
        """Whether the server of process ``pid`` (not another one that holds the port)
        answers PING."""
        try:
            return self.command("PING", timeout=0.5) == b"PONG" and self.info("server").get(
                "process_id"
            ) == str(pid)
        except (OSError, RedisError):  # not listening yet; -LOADING while it replays the AOF
            return False

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash; wait for it."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self._reap()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the server syncs its files and exits), wait; SIGKILL after ``timeout``."""
        if self._process is not None:
            stop_process(self._process, timeout)
        self._reap()

    def restart(self) -> None:
        """Stop the server if it runs, then start it again on the same port and directory:
        it replays its append-only file before it answers PING."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove the directory this class made for it."""
        try:
            self.stop()
        finally:
            if self._own_directory and self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)
                self._directory = None

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
            self._process = None
        _LIVE.discard(self)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {state} port={self._port} dir={self._directory}>"

    # Commands, for the fixtures and benchmarks (the code under test uses redis-py).

    def command(self, *args: str | bytes | int, timeout: float = 5.0) -> Reply:
        """Send one command in RESP and return its reply; an error reply raises RedisError."""
        parts = [b if isinstance(b, bytes) else str(b).encode() for b in args]
        request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        with (
            socket.create_connection((HOST, self.port), timeout=timeout) as sock,
            sock.makefile("rb") as stream,
        ):
            sock.sendall(request)
            return _read_reply(stream)

    def flush(self) -> None:
        """FLUSHALL: every database emptied (synchronously), for a test that starts clean."""
        if self.command("FLUSHALL") != b"OK":
            raise RedisError("FLUSHALL did not answer OK")

    def info(self, section: str = "") -> dict[str, str]:
        """``INFO [section]`` as a dict of its ``key:value`` lines."""
        reply = self.command("INFO", section) if section else self.command("INFO")
        if not isinstance(reply, bytes):
            raise RedisError(f"INFO answered {reply!r}")
        fields: dict[str, str] = {}
        for line in reply.decode().splitlines():
            if line and not line.startswith("#") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value
        return fields

    def info_memory(self) -> int:
        """``used_memory`` of ``INFO memory``, in bytes."""
        return int(self.info("memory")["used_memory"])

    def dbsize(self) -> int:
        size = self.command("DBSIZE")
        if not isinstance(size, int):
            raise RedisError(f"DBSIZE answered {size!r}")
        return size


class _PortTaken(Exception):
    """The server exited at start because another process holds its port."""


def _read_reply(stream: IO[bytes]) -> Reply:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("redis-server closed the connection")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body
    if kind == b"-":
        raise RedisError(body.decode(errors="replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("redis-server closed the connection")
        return data[:-2]
    if kind == b"*":
        count = int(body)
        if count < 0:
            return None
        return [_read_reply(stream) for _ in range(count)]
    raise RedisError(f"unexpected RESP reply: {line!r}")
