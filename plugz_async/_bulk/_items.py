"""A bulk run's rows and items: what goes in, what comes out, and when it is done.

`BulkRow` is one row of input (a number, perhaps with its own instance); `BulkItem`
is its result, exactly one of an answer, an error and an earlier row of the same line
(`SameLine`), with the results-file record it makes (`BulkItem.to_dict`). `is_final`
says whether a row is done for good, or must be checked again by a resumed run.
`SeenLines` is what a run remembers of the lines it met: one small entry a line.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import Any

import attrs

from plugz_async._errors import BadRequestError, InvalidArgument
from plugz_async._models import Availability
from plugz_async._phone import PhoneNumber
from plugz_async._planner import PlanOutcome, RegistrationPlan, RegistrationPlanner

__all__ = [
    "FINAL_ERROR_NAMES",
    "BulkItem",
    "BulkRow",
    "NumberInput",
    "SameLine",
    "SeenLines",
    "as_input",
    "is_final",
    "number_in",
    "record",
]

# Errors that belong to the row for good: its record is final, a resume does not redo it.
FINAL_ERRORS = (InvalidArgument, BadRequestError)
# The same, by class name: how a results file (JSON or CSV) names them.
FINAL_ERROR_NAMES = frozenset({"InvalidArgument", "InvalidPhoneNumber", "BadRequestError"})


def is_final(error: BaseException | None) -> bool:
    """Whether a row that ended with ``error`` is done for good (``None``: an answer).

    An answer, a number that cannot exist or a 400 for the row's own body are final.
    Anything else (a 5xx, a timeout, a refused connection, a 429 beyond the retry
    policy, a refused credential, a bug) passed, or may pass: a resume does the row again.
    """
    return error is None or isinstance(error, FINAL_ERRORS)


@attrs.frozen(kw_only=True)
class BulkRow:
    """One row of a bulk run: a number, perhaps with its own instance's credentials.

    Attributes:
        number: the number, as text or a ``PhoneNumber``.
        instance_id: the instance to check it on (default: the client's).
        instance_token: that instance's token (a secret: never written out).
        key: the row's key for resuming (default: its position in the input).
        given: the row as it was read (a CSV row, say), kept as the item's ``input``
            (without any ``instance_token``).
        index: the row's place in the whole input, when the rows given to the run are
            only some of them (a resumed run); default: its place among those given.
    """

    number: str | PhoneNumber
    instance_id: str | None = None
    instance_token: str | None = attrs.field(default=None, repr=False)
    key: str | None = None
    given: object = attrs.field(default=None, repr=False, eq=False)
    index: int | None = None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> BulkRow:
        """A row from a dict such as a CSV row: ``number``, or ``ddi`` and ``phone``,
        and optionally ``instance_id``, ``instance_token`` and ``key``."""

        number = number_in(row)
        if number is None:
            raise InvalidArgument("a row needs 'number', or 'ddi' and 'phone'")
        instance_id, instance_token = _cell(row, "instance_id"), _cell(row, "instance_token")
        if (instance_id is None) != (instance_token is None):
            raise InvalidArgument("a row gives 'instance_id' and 'instance_token' together")
        return cls(
            number=number,
            instance_id=instance_id,
            instance_token=instance_token,
            key=_cell(row, "key"),
            given=row,
        )


def _cell(row: Mapping[str, Any], name: str) -> str | None:
    value = row.get(name)
    return None if value is None or str(value).strip() == "" else str(value).strip()


def number_in(row: Mapping[str, Any]) -> str | None:
    """The number a row (a CSV row, say) gives: its ``number``, else ``+ddi phone`` from
    its ``ddi`` and ``phone``; ``None`` when it gives neither."""
    number = _cell(row, "number")
    if number is not None:
        return number
    ddi, phone = _cell(row, "ddi"), _cell(row, "phone")
    return None if ddi is None or phone is None else f"+{ddi.lstrip('+')} {phone}"


@attrs.frozen
class SameLine:
    """The earlier row that holds a row's line: the line was checked there, once, and the
    row was not sent (`BulkItem.same_line_as`).

    Two rows hold one line when their numbers are equal, or when one is a Brazilian mobile
    in its old 8-digit form and the other its form with the ninth digit
    (`PhoneNumber.line`); whatever their instances.

    Attributes:
        index: that row's index in the input (0-based: row ``index + 1``).
        number: its number, in the form that row wrote it.
    """

    index: int
    number: PhoneNumber

    def __str__(self) -> str:
        return f"the same line as row {self.index + 1} (index {self.index}, {self.number.e164})"

    def to_dict(self) -> dict[str, Any]:
        """As a results file holds it: ``{"index": 3, "number": "+554499999999"}``."""
        return {"index": self.index, "number": self.number.e164}


class SeenLines:
    """The lines a bulk run has met, each with the row that holds it.

    A line is held by a row that got an answer for it, or by the row in flight for it: a
    row of a line held so is not sent. One small entry a line (the line's digits and the
    holding row's index, about 120 bytes): a run over a million distinct numbers holds
    some 120 MB for it, and a million rows of one line hold one. Give one to
    `PlugzClient.check_many` (``seen_lines=``) to have a run go on from what earlier runs
    checked (`ResultsFile.seen_lines`, after a resume) or to share lines between runs.

    `add` notes a line held for good (a row with an answer). A run takes a line for the
    row it sends with `claim`, and `settle` says how that row ended: with an answer the
    row holds the line for good; without one the line is free again, and the next row
    of it is checked.
    """

    __slots__ = ("_first", "_open")

    def __init__(self) -> None:
        # The line's E.164 digits, as an int -> the holding row's index, times 2, plus 1 when
        # that row wrote the line in its old form (the form is all that differs).
        self._first: dict[int, int] = {}
        # The lines whose row is in flight (claimed, not settled) -> the event the later
        # rows of the line wait on, made when the first of them comes (None till then):
        # one entry a row in flight, gone once it is settled.
        self._open: dict[int, asyncio.Event | None] = {}

    def add(self, index: int, number: PhoneNumber) -> SameLine | None:
        """Note that row ``index`` holds ``number``'s line for good (it has an answer):
        ``None`` when the line is new (the row now holds it), else the row that holds it.

        Example:
            >>> seen = SeenLines()
            >>> seen.add(0, PhoneNumber.parse("+55 44 9999-9999")) is None
            True
            >>> print(seen.add(5, PhoneNumber.parse("+55 44 99999-9999")))
            the same line as row 1 (index 0, +554499999999)
        """
        key, first = self._take(index, number)
        return None if first is None else self._row(key, first)

    def _take(self, index: int, number: PhoneNumber) -> tuple[int, int | None]:
        """``number``'s line's key, and the row that held it before (packed as kept);
        row ``index`` holds it now when none did."""
        line = number.line
        key = int(line.ddi + line.phone)
        first = self._first.get(key)
        if first is None:
            self._first[key] = index << 1 | (line.phone != number.phone)
        return key, first

    def claim(self, index: int, number: PhoneNumber) -> int | SameLine | asyncio.Event:
        """Take ``number``'s line for row ``index``, about to be sent, if no row holds it.

        Returns the line's key when the row holds it now, in flight: `settle` it once the
        row has ended. Returns the row that holds the line when that row has an answer
        (this row is not sent), or, while that row is in flight, an event set once it
        has ended: wait for it, then claim again (the line is held for good then, or
        free, or claimed by another row that waited).

        Example:
            >>> seen = SeenLines()
            >>> old = PhoneNumber.parse("+55 44 9999-9999")
            >>> new = PhoneNumber.parse("+55 44 99999-9999")
            >>> line = seen.claim(0, old)
            >>> type(seen.claim(1, new)).__name__  # row 0 is in flight: wait for it
            'Event'
            >>> seen.settle(line, answered=False)  # it ended without an answer
            >>> line == seen.claim(1, new)  # the line is row 1's now
            True
            >>> seen.settle(line, answered=True)
            >>> print(seen.claim(2, old))
            the same line as row 2 (index 1, +5544999999999)
        """
        key, first = self._take(index, number)
        if first is None:
            self._open[key] = None
            return key
        if self._open and key in self._open:  # its row is in flight
            waiting = self._open[key]
            if waiting is None:
                waiting = self._open[key] = asyncio.Event()
            return waiting
        return self._row(key, first)

    def settle(self, line: int, *, answered: bool) -> None:
        """The row that claimed ``line`` (a key from `claim`) has ended: ``answered``, it
        holds the line for good; else the line is free again. The rows of the line that
        wait go on."""
        if not answered:
            self._first.pop(line, None)
        waiting = self._open.pop(line, None)
        if waiting is not None:
            waiting.set()

    @staticmethod
    def _row(key: int, first: int) -> SameLine:
        digits = str(key)
        if first & 1:  # the old form: the ninth digit (after 55 and the area code) dropped
            digits = digits[:4] + digits[5:]
        return SameLine(first >> 1, PhoneNumber.parse("+" + digits))

    def __len__(self) -> int:
        return len(self._first)

    def __repr__(self) -> str:
        return f"<SeenLines: {len(self._first)} lines>"


#: What a bulk run takes as one number: text, a `PhoneNumber`, a `BulkRow`, or a mapping
#: (a CSV row: ``{"number": ...}`` or ``{"ddi": ..., "phone": ...}``).
NumberInput = str | PhoneNumber | BulkRow | Mapping[str, Any]


def as_input(row: object) -> object:
    """The row as given, JSON-ready, without secrets."""
    if isinstance(row, str):
        return row
    if isinstance(row, PhoneNumber):
        return row.e164
    if isinstance(row, BulkRow) and row.given is not None:
        return as_input(row.given)
    if isinstance(row, BulkRow):
        number = row.number if isinstance(row.number, str) else row.number.e164
        return (
            number
            if row.instance_id is None
            else {"number": number, "instance_id": row.instance_id}
        )
    if isinstance(row, Mapping):
        return {str(k): v for k, v in row.items() if k != "instance_token"}
    return repr(row)[:100]


@attrs.frozen(kw_only=True)
class BulkItem:
    """One input row's result: exactly one of ``availability``, ``error`` and
    ``same_line_as`` is set.

    Attributes:
        index: the row's position in the input (0-based).
        key: the row's key (its ``key``, else its position) for resuming.
        input: the row as given (without any token), JSON-ready.
        number: the number as parsed (``None`` when it could not be), in the form written.
        availability: the answer, when there is one.
        error: the error, when there is one (``InvalidPhoneNumber`` for a bad row).
        attempts: the requests sent for this row.
        instance_id: the instance it was checked on.
        same_line_as: the earlier row of the run that holds this row's line (the same
            number, or Brazil's other form of it), when one does: the line was checked
            there, and this row was not sent (``outcome`` is ``PlanOutcome.SAME_LINE``).
    """

    index: int
    key: str
    input: object
    number: PhoneNumber | None = None
    availability: Availability | None = None
    error: Exception | None = None
    attempts: int = 0
    instance_id: str | None = None
    planner: RegistrationPlanner | None = attrs.field(default=None, repr=False, eq=False)
    same_line_as: SameLine | None = None

    @functools.cached_property
    def plan(self) -> RegistrationPlan | None:
        """The plan for the answer (made when first read), or ``None`` for an error."""
        if self.availability is None:
            return None
        return (self.planner or RegistrationPlanner()).plan(self.availability)

    @property
    def ok(self) -> bool:
        """Whether the row has an answer of its own: ``False`` for an error, and for a row
        whose line an earlier row holds (``same_line_as``: that row has the answer)."""
        return self.availability is not None

    @property
    def final(self) -> bool:
        """Whether the row is done for good: an answer, an error of the row's own (a
        number that cannot exist, a 400), or an earlier row of the same line. ``False`` for
        an error that may pass (a 5xx, a timeout, a refused credential...): a resumed run
        checks the row again."""
        return is_final(self.error)

    @property
    def outcome(self) -> PlanOutcome:
        """The plan's outcome (``PlanOutcome.READY``...), ``PlanOutcome.ERROR`` or
        ``PlanOutcome.SAME_LINE``: a `PlanOutcome`, which compares equal to its text
        (``item.outcome == "ready"``)."""
        if self.same_line_as is not None:
            return PlanOutcome.SAME_LINE
        plan = self.plan
        return PlanOutcome.ERROR if plan is None else plan.outcome

    def to_dict(self) -> dict[str, Any]:
        """One results-file record: the input, the number, the answer or the error, the plan."""
        return record(
            index=self.index,
            key=self.key,
            input=self.input,
            number=self.number,
            availability=self.availability,
            plan=self.plan,
            error=self.error,
            attempts=self.attempts,
            instance_id=self.instance_id,
            same_line_as=self.same_line_as,
        )


def record(
    *,
    index: int,
    key: str,
    input: object,
    number: PhoneNumber | None,
    availability: Availability | None,
    plan: RegistrationPlan | None,
    error: Exception | None,
    attempts: int,
    instance_id: str | None = None,
    same_line_as: SameLine | None = None,
) -> dict[str, Any]:
    """The record of one number's result, as results files and ``--json`` hold it: the
    input, the number, the answer (from the plan) or the error, and the plan; or the
    earlier row of the same line (``same_line_as``)."""
    if same_line_as is not None:
        outcome = PlanOutcome.SAME_LINE.value
    else:
        outcome = "error" if plan is None else plan.outcome.value
    return {
        "key": key,
        "index": index,
        "input": input,
        "number": None if number is None else number.e164,
        "instance_id": instance_id,
        "outcome": outcome,
        "final": is_final(error),
        "attempts": attempts,
        "availability": None if availability is None else availability.to_dict(),
        "plan": None if plan is None else plan.to_dict(),
        "error": None if error is None else _error_dict(error),
        "same_line_as": None if same_line_as is None else same_line_as.to_dict(),
    }


def _error_dict(error: Exception) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "message": str(error),
        "status": getattr(error, "status", None),
        "attempts": getattr(error, "attempts", None),
    }
