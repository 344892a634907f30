"""The sandbox's test numbers, like a payment provider's test cards.

Each documented number always gets the same answer (or the same fault), so tests
and demos are deterministic. Every other number is answered from a mix drawn with
a seeded random generator keyed by the number, so a bulk run looks like real
traffic and the same number gets the same answer from run to run.

The captcha's image is painted here too (`captcha_png`): it belongs to the
``captcha`` test number and shows that scenario's answer, `CAPTCHA_TEXT`.

This module writes the wire format (camelCase JSON) on its own and imports nothing
from the client, so tests against the sandbox check the client instead of
mirroring its mistakes.
"""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "ALREADY_CONNECTED",
    "APPEAL_TOKEN",
    "CAPTCHA_PNG",
    "CAPTCHA_TEXT",
    "CONFIRMATION_CODE",
    "NOT_CONNECTED",
    "PIN",
    "RESTORE_SESSION",
    "SCENARIOS",
    "Fault",
    "Scenario",
    "available_answer",
    "captcha_png",
    "mixed_answer",
    "scenario_for",
    "scenario_table",
]

# What the sandbox "sends" and expects back; documented, so tests and demos can use them.
CONFIRMATION_CODE = "123456"
CAPTCHA_TEXT = "SANDBOX"
PIN = "654321"
APPEAL_TOKEN = "Ae0B_sandbox-appeal-token"

# What the instance's status says (``GET /status``): connected, not yet, and the
# ``never-connects`` test number's instance, which stays unconnected after its code.
ALREADY_CONNECTED = "You are already connected."
NOT_CONNECTED = "You are not connected."
RESTORE_SESSION = "You need to restore the session."


@attrs.frozen
class Fault:
    """A misbehaviour of the server for one number.

    Attributes:
        kind: ``"status"`` (an error status, ``times`` times, then the normal answer),
            ``"slow"`` (answers after the sandbox's ``slow_seconds``), ``"drop"`` (closes
            the connection without answering), ``"broken_json"`` or ``"error_body"``.
        status: the HTTP status for ``"status"`` faults.
        times: how many requests fail before the number is answered normally
            (0: every request fails).
        retry_after: ``"seconds"`` or ``"date"``: send a ``Retry-After`` header in that form.
    """

    kind: str
    status: int = 503
    times: int = 0
    retry_after: str | None = None


@attrs.frozen
class Scenario:
    """One documented test number and what the sandbox does with it."""

    number: str
    name: str
    description: str
    answer: Mapping[str, Any] = attrs.field(factory=dict)
    fault: Fault | None = None
    # What the rest of the flow does for this number (code request, confirmation).
    flow: str = "normal"

    @property
    def digits(self) -> str:
        return "".join(c for c in self.number if c.isdigit())


def available_answer(
    sms: float = 0, voice: float = 0, wa_old: float = 0, eligible: bool = True
) -> dict[str, Any]:
    """A registration-available answer for a number that can be registered."""
    return {
        "available": True,
        "smsWaitSeconds": sms,
        "voiceWaitSeconds": voice,
        "waOldWaitSeconds": wa_old,
        "waOldEligible": eligible,
    }


READY = available_answer()

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("+55 11 90000-0001", "ready", "available; every channel open now", READY),
    Scenario(
        "+55 11 90000-0002",
        "waits",
        "available; SMS in 30 s, voice in 90 s, wa_old in 10 min",
        available_answer(30, 90, 600),
    ),
    Scenario(
        "+55 11 90000-0003",
        "wa_old-not-eligible",
        "available; SMS and voice now, wa_old not eligible",
        available_answer(eligible=False),
    ),
    Scenario(
        "+55 11 90000-0004",
        "banned",
        f"banned, with the appeal token {APPEAL_TOKEN}",
        {"available": False, "blocked": True, "appealToken": APPEAL_TOKEN},
    ),
    Scenario(
        "+55 11 90000-0005",
        "unavailable",
        "not available, with a reason",
        {"available": False, "reason": "number is registered on another device"},
    ),
    Scenario(
        "+55 11 90000-0006",
        "voice-first",
        "available; voice now, SMS in 2 min, wa_old in 45 s",
        available_answer(120, 0, 45),
    ),
    Scenario(
        "+55 11 90000-0007",
        "blocked-at-code-request",
        "reported available, but blocked with no appeal token when a code is requested",
        READY,
        flow="blocked",
    ),
    Scenario(
        "+55 11 90000-0008",
        "captcha",
        f"available; the code request asks for a captcha (answer: {CAPTCHA_TEXT})",
        READY,
        flow="captcha",
    ),
    Scenario(
        "+55 11 90000-0009",
        "pin",
        f"available; confirming the code asks for the two-step PIN ({PIN})",
        READY,
        flow="pin",
    ),
    Scenario(
        "+55 11 90000-0010",
        "device-transfer",
        "available; confirming the code asks for approval on the old phone",
        READY,
        flow="device",
    ),
    Scenario(
        "+55 11 90000-0011",
        "code-expires",
        "available; the code it sends is valid for 60 s only",
        READY,
        flow="expires",
    ),
    Scenario(
        "+55 11 90000-0012",
        "growing-waits",
        "available; each code request doubles the waits (60 s, 120 s, 240 s...)",
        READY,
        flow="growing",
    ),
    Scenario(
        "+55 11 90000-0013",
        "never-connects",
        "available; the code is confirmed, but the instance never connects: its status says"
        f' "{RESTORE_SESSION}"',
        READY,
        flow="never_connects",
    ),
    Scenario(
        "+55 11 90000-5032",
        "503-twice",
        "fails with 503 (an HTML page) twice, then is ready",
        READY,
        Fault("status", 503, times=2),
    ),
    Scenario(
        "+55 11 90000-5030",
        "503-always",
        "always fails with 503 (an HTML page)",
        READY,
        Fault("status", 503),
    ),
    Scenario(
        "+55 11 90000-4291",
        "429-seconds",
        "429 with Retry-After: 1 (seconds) once, then is ready",
        READY,
        Fault("status", 429, times=1, retry_after="seconds"),
    ),
    Scenario(
        "+55 11 90000-4292",
        "429-date",
        "429 with Retry-After as an HTTP date 1 to 2 s ahead once, then is ready",
        READY,
        Fault("status", 429, times=1, retry_after="date"),
    ),
    Scenario(
        "+55 11 90000-9001",
        "slow",
        "answers only after slow_seconds (35 s unless set): slower than the client's timeout",
        READY,
        Fault("slow"),
    ),
    Scenario(
        "+55 11 90000-9002",
        "drop",
        "closes the connection without answering",
        READY,
        Fault("drop"),
    ),
    Scenario(
        "+55 11 90000-9003",
        "broken-json",
        "answers 200 with truncated JSON",
        READY,
        Fault("broken_json"),
    ),
    Scenario(
        "+55 11 90000-9004",
        "error-body",
        'answers 200 with {"error": ..., "message": ...}',
        READY,
        Fault("error_body"),
    ),
)

_BY_DIGITS = {scenario.digits: scenario for scenario in SCENARIOS}


def scenario_for(digits: str) -> Scenario | None:
    """The documented scenario of a number (country code and all, digits only)."""
    return _BY_DIGITS.get(digits)


def mixed_answer(digits: str, seed: int) -> tuple[str, dict[str, Any]]:
    """The answer for an undocumented number: a name and the JSON, the same every time.

    The mix: about 55% ready, 25% waiting (5 s to 5 min per channel), 8% ready with
    wa_old not eligible, 5% banned with an appeal token, 4% unavailable with a
    reason, 3% blocked with no appeal token.
    """
    key = hashlib.blake2b(f"{seed}:{digits}".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(key, "big"))
    roll = rng.random()
    if roll < 0.55:
        return "ready", available_answer(eligible=rng.random() < 0.7)
    if roll < 0.80:
        sms, voice, wa_old = (rng.choice([5, 15, 30, 60, 125, 300]) for _ in range(3))
        return "waits", available_answer(sms, voice, wa_old, eligible=rng.random() < 0.5)
    if roll < 0.88:
        return "wa_old-not-eligible", available_answer(eligible=False)
    if roll < 0.93:
        token = f"Ae0B_{key.hex()}"
        return "banned", {"available": False, "blocked": True, "appealToken": token}
    if roll < 0.97:
        return "unavailable", {"available": False, "reason": "number temporarily unavailable"}
    return "blocked", {"available": False, "blocked": True}


def scenario_table() -> str:
    """The test numbers as a Markdown table (for the docs and ``sandbox --help``)."""
    rows = ["| number | name | what the sandbox does |", "| --- | --- | --- |"]
    rows += [f"| `{s.number}` | {s.name} | {s.description} |" for s in SCENARIOS]
    rows.append("| any other number | (mix) | a seeded random mix: ready, waits, banned, ... |")
    return "\n".join(rows)


# -- the captcha's image ---------------------------------------------------------------------

# A 5x7 pixel font, just for the letters of the captcha's answer.
_GLYPHS = {
    "S": (" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "),
    "A": (" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "N": ("#   #", "##  #", "# # #", "#  ##", "#   #", "#   #", "#   #"),
    "D": ("#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "),
    "B": ("#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "),
    "O": (" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "X": ("#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"),
}


def captcha_png(text: str, scale: int = 4) -> bytes:
    """A greyscale PNG that shows ``text`` (letters of the sandbox's font): the captcha."""
    cells: list[list[bool]] = [[False] * 2 for _ in range(7)]  # a left margin
    for letter in text:
        glyph = _GLYPHS[letter]
        for y in range(7):
            cells[y] += [c == "#" for c in glyph[y]] + [False]
    for line in cells:
        line += [False]
    margin = [[False] * len(cells[0])]
    cells = margin * 2 + cells + margin * 2
    raster = b"".join(
        b"\x00" + bytes(0x20 if on else 0xE8 for on in row for _ in range(scale))
        for row in cells
        for _ in range(scale)
    )
    width, height = len(cells[0]) * scale, len(cells) * scale

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raster))
        + chunk(b"IEND", b"")
    )


# What the ``captcha`` test number sends (as a data: URL) when a code is requested.
CAPTCHA_PNG = captcha_png(CAPTCHA_TEXT)
