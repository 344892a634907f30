"""What the tests share: the sandbox's credentials, Hypothesis settings and strategies, the
code blocks of a documentation page, a named pipe to read numbers from.

A helper module, not a test module: test modules import from here, never from each other.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from plugz_async.sandbox import SandboxConfig

INSTANCE_ID = "3C0FFEE-instance"
# Secrets with characters that change under URL encoding, to test both forms.
INSTANCE_TOKEN = "tok/SECRET+instance=42"
CLIENT_TOKEN = "ct-SECRET-account+token/7"

CONFIG = SandboxConfig(
    instance_id=INSTANCE_ID, instance_token=INSTANCE_TOKEN, client_token=CLIENT_TOKEN
)

# Property tests run this many examples: a few hundred in the suite, 10,000 in `nox -s fuzz`.
FUZZ_EXAMPLES = int(os.environ.get("PLUGZ_FUZZ_EXAMPLES", "300"))
# `nox -s fuzz` also feeds the bulk input a line of a gigabyte.
FUZZ_BIG = os.environ.get("PLUGZ_FUZZ_BIG") == "1"


def fuzz(default: int | None = None) -> settings:
    """Hypothesis settings for a property test (``deadline=None``: machines vary)."""
    examples = FUZZ_EXAMPLES if default is None else min(default, FUZZ_EXAMPLES)
    if "PLUGZ_FUZZ_EXAMPLES" in os.environ:
        examples = FUZZ_EXAMPLES
    return settings(max_examples=examples, deadline=None)


# Any JSON value: what a server could send where an object is expected.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=14), inner, max_size=5)
    ),
    max_leaves=16,
)

# The fields the API's answers document: availability, then the rest of the flow and errors.
AVAILABILITY_FIELDS = [
    "available",
    "blocked",
    "appealToken",
    "smsWaitSeconds",
    "voiceWaitSeconds",
    "waOldWaitSeconds",
    "waOldEligible",
    "reason",
]
RESPONSE_FIELDS = [
    *AVAILABILITY_FIELDS,
    "success",
    "captcha",
    "retryAfter",
    "method",
    "confirmSecurityCode",
    "deviceConfirm",
    "status",
    "error",
    "message",
    "connected",
    "smartphoneConnected",
]


BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def blocks(page: Path, language: str, info: str = "") -> list[str]:
    """The page's code blocks in ``language`` with exactly this info string after it,
    each padded to start at its own line (so tracebacks point into the page)."""
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        if match.group(1) == language and match.group(2).strip() == info:
            first_line = text.count("\n", 0, match.start(3))
            found.append("\n" * first_line + match.group(3))
    return found


def a_person(code: str | Callable[[Any], Awaitable[str]]) -> dict[str, Any]:
    """What a registration's ``run()`` asks a person for, answered the sandbox's way: the
    code (given, or found by ``code(channel)``), its captcha text, its PIN, the approval."""
    from plugz_async.sandbox import CAPTCHA_TEXT, PIN

    async def give_code(channel: Any) -> str:
        return code if isinstance(code, str) else await code(channel)

    async def captcha(png: bytes) -> str:
        return CAPTCHA_TEXT

    async def pin() -> str:
        return PIN

    async def approved() -> None:
        return None

    return {"code": give_code, "captcha": captcha, "pin": pin, "device_confirmed": approved}


def table_rows(printed: str, first: str = "Number") -> list[dict[str, str]]:
    """The rows of the table whose header line starts with ``first`` in the text a command
    printed, each a dict of its cells by header: cut where the header line puts each
    column. A line under a row (its note) is not a row; the table ends at a blank line,
    and the lines after it before one are rows too (filter them by their first cell)."""
    lines = printed.splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith(f"{first}  "))
    header = lines[at]
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines[at + 2 :]:  # after the rule under the headers
        if not line.strip():
            break
        if line.startswith(" "):
            continue  # said under the row above
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


@contextlib.contextmanager
def pipe_of(path: Path, text: str) -> Iterator[Path]:
    """A named pipe (``mkfifo``) at ``path`` that a thread writes ``text`` into, line by
    line, as the shell's ``<(command)`` gives a command's output: an input that can be
    read only once. POSIX only."""
    os.mkfifo(path)

    def write() -> None:
        try:
            with open(path, "w", encoding="utf-8") as pipe:
                for line in text.splitlines(keepends=True):
                    pipe.write(line)
        except BrokenPipeError:  # the reader stopped reading
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        if writer.is_alive():  # nobody read it to its end: read it, to let the writer go
            reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                for _ in range(1000):
                    with contextlib.suppress(BlockingIOError):
                        os.read(reader, 1 << 16)
                    writer.join(timeout=0.01)
                    if not writer.is_alive():
                        break
            finally:
                os.close(reader)
