"""Numbers files in: one reader for every command that takes a file of numbers.

A CSV with a header (``number``, or ``ddi`` and ``phone``, or the one column of a common
name for a phone number such as ``phone_number`` or ``telefone``, or the column a
command's ``--column`` names; optionally ``instance_id``, ``instance_token``, ``key``,
and any other column), separated by ``,``, ``;``, tabs or ``|`` as spreadsheets export
them; or one number a line. Lines are read lazily and bounded in length, each alone (a stray
quote cannot swallow the lines after it), and the header is judged at once, so a file
that cannot be read as numbers is refused before anything is sent.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
import stat
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from plugz_async._errors import InvalidArgument, InvalidPhoneNumber, MissingCountryCode
from plugz_async._phone import PhoneNumber

from ._items import BulkRow, number_in

__all__ = [
    "COMMON_NAMES",
    "MAX_LINE",
    "TOO_LONG",
    "Header",
    "NumberRows",
    "bounded_lines",
    "count_rows",
    "holds_number",
    "lines_of",
    "name_of",
    "read_once",
    "read_rows",
]

# No row of a numbers file needs more; a longer line is read in pieces and becomes a bad row.
MAX_LINE = 4096
TOO_LONG = "<a line longer than 4096 characters>"


def bounded_lines(stream: io.TextIOBase) -> Iterator[str]:
    """Lines of at most ``MAX_LINE`` characters: a longer one (a 1 GB line, say) is skipped
    in pieces, never held in memory, and stands as one bad row."""
    while line := stream.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE and not line.endswith("\n"):
            while (rest := stream.readline(MAX_LINE)) and not rest.endswith("\n"):
                pass
            line = TOO_LONG + "\n"
        yield line


def lines_of(path: str) -> Iterator[str]:
    """The input's lines, read lazily; undecodable bytes become U+FFFD (a bad row)."""
    if path == "-":
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="replace")
        yield from bounded_lines(stream)
        return
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
            yield from bounded_lines(f)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None


# Column separators a numbers file may use: a spreadsheet in a Portuguese locale exports ";".
DELIMITERS = (",", ";", "\t", "|")
#: The common names of a column of whole numbers, read without ``--column`` when a header
#: has no ``number`` (nor ``ddi`` with ``phone``) and exactly one of them: a header with two
#: (``phone`` and ``mobile``, ``telefone`` and ``celular``) is refused, since which one holds
#: the mobile numbers is for the user to say. Compared in lower case, with spaces and
#: hyphens as ``_`` (``Phone Number`` is ``phone_number``). ``numero`` is not one: in a
#: Brazilian address export it is the street number.
COMMON_NAMES = (
    "phone_number",
    "phone",
    "telefone",
    "celular",
    "whatsapp",
    "mobile",
    "msisdn",
)
NUMBER_COLUMNS = (
    "a 'number' column (or 'ddi' and 'phone', or one of "
    + ", ".join(repr(n) for n in COMMON_NAMES)
    + "); --column NAME names another"
)


def _plain(name: str) -> str:
    """A column's name as compared: lower case, spaces and hyphens as ``_``."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _number_column(columns: Sequence[str], column: str | None, name: str) -> str | bool | None:
    """The column of ``columns`` that holds the numbers: ``column`` when given, else
    ``number``, else the one of `COMMON_NAMES` (``None``: ``ddi`` and ``phone``
    together); ``False``: none.

    Raises:
        InvalidArgument: no ``column``, no ``number``, and two of `COMMON_NAMES`.
    """
    plain = [_plain(c) for c in columns]
    if column is not None:
        wanted = _plain(column)
        return columns[plain.index(wanted)] if wanted in plain else False
    if "number" in plain:
        return columns[plain.index("number")]
    if {"ddi", "phone"} <= set(plain):
        return None
    found = sorted(plain.index(n) for n in COMMON_NAMES if n in plain)
    if len(found) > 1:
        named = ", ".join(repr(columns[i]) for i in found)
        raise InvalidArgument(
            f"the header of {name} has {len(found)} columns that may hold the numbers "
            f"({named}): name the one to read with --column NAME"
        )
    return columns[found[0]] if found else False


def _fields(line: str, delimiter: str) -> list[str]:
    """The fields of one line. Each line is read alone, so a stray quote cannot swallow
    the lines after it (numbers files have no values that span lines)."""
    text = line.rstrip("\r\n")
    try:
        return next(csv.reader([text], delimiter=delimiter), [])
    except csv.Error:  # a stray line break, say: the fields as they stand
        return text.split(delimiter)


@attrs.frozen
class Header:
    """A numbers file's header line.

    Attributes:
        columns: its column names, in lower case.
        delimiter: the separator of its columns.
        number: the column of the numbers (``None``: ``ddi`` and ``phone``).
        common: whether that column was found by its common name (`COMMON_NAMES`), not
            as ``number`` nor named by ``--column``: a command says which one it reads.
    """

    columns: list[str]
    delimiter: str
    number: str | None
    common: bool = False

    def cells(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        """A row (its cells by column) as the SDK reads one: its number under
        ``number``."""
        return row if self.number in (None, "number") else {**row, "number": row.get(self.number)}


def _header(first: str, name: str, column: str | None = None) -> Header | None:
    """The first line's column names and separator, when it is a header; ``None`` when it
    is a number (a file of one number a line).

    Raises:
        InvalidArgument: it is a header, but with no column that holds numbers (or none of
            the name ``column``: then a file with no header is refused too), or with two
            of the common names and no ``column``.
    """
    text = first.strip()
    if text.startswith("PK\x03\x04") or "\x00" in text:
        raise InvalidArgument(
            f"{name} is a spreadsheet or another binary file: save it as CSV (UTF-8) first"
        )
    if (not text or text.startswith("#")) and column is None:
        return None
    ranked = sorted(DELIMITERS, key=lambda d: -text.count(d))  # the most used first
    for delimiter in ranked:
        columns = [name.strip().lower() for name in _fields(text, delimiter)]
        number = _number_column(columns, column, name)
        if not isinstance(number, bool):  # False: no column of numbers in this reading
            common = column is None and number not in (None, "number")
            return Header(columns, delimiter, number, common)
    found = ", ".join(repr(n.strip()) for n in _fields(text, ranked[0]) if n.strip())
    if column is not None:
        raise InvalidArgument(
            f"--column {column}: the first line of {name} names no such column"
            + (f"; the columns found: {found}" if found else "")
        )
    if any(c.isdigit() for c in text):
        return None  # a number (or a line that will fail as one): no header
    if "\ufffd" in text or any(ord(c) < 32 and c != "\t" for c in text):
        raise InvalidArgument(
            f"{name} is not UTF-8 text (a binary file, or text in another encoding): save "
            "it as CSV (UTF-8) first"
        )
    raise InvalidArgument(
        f"the header of {name} has no column of numbers (it needs {NUMBER_COLUMNS}); "
        f"the columns found: {found}"
    )


class NumberRows(Iterator[BulkRow]):
    """A numbers file's rows, read as they are taken, and its header (``None``: a file of
    one number a line, or an empty one)."""

    def __init__(self, rows: Iterator[BulkRow], header: Header | None = None) -> None:
        self._rows = rows
        self.header = header

    def __next__(self) -> BulkRow:
        return next(self._rows)


def read_rows(
    lines: Iterator[str], name: str = "the input", *, column: str | None = None
) -> NumberRows:
    """Rows of a CSV with a header (``number``, or ``ddi`` and ``phone``, or the one column
    of a common name, `COMMON_NAMES`; separated by ``,``, ``;``, tabs or ``|``) or of
    one number a line; each keyed by its place among the data rows (or its ``key``
    column). ``column``: the header's column that holds the numbers (then the file must
    have a header that names it).

    The header is read at once (the rows' ``header``), so a file that cannot be read as
    numbers is refused before any row is checked; the rows are read lazily.

    Raises:
        InvalidArgument: a header without a column of numbers (or without ``column``, or
            with two of the common names and no ``column``), or a spreadsheet file.
    """
    first = next(lines, None)
    if first is None:
        return NumberRows(iter(()))
    header = _header(first, name, column)
    if header is None:
        return NumberRows(_plain_rows(itertools.chain([first], lines)))
    return NumberRows(_csv_rows(lines, header, name), header)


def _csv_rows(lines: Iterator[str], header: Header, name: str) -> Iterator[BulkRow]:
    columns, delimiter = header.columns, header.delimiter
    index = 0
    keys: dict[str, int] = {}  # a key column's values, each to its row: resume goes by key
    for line in lines:
        fields = _fields(line, delimiter)
        if not any(field.strip() for field in fields):
            continue  # a blank line
        row = dict(zip(columns, fields, strict=False))  # short rows: the rest are missing
        cells = header.cells(row)  # the row as given stays the item's input
        key = (row.get("key") or "").strip() or str(index)
        if "key" in columns:
            if key in keys:
                raise InvalidArgument(
                    f"{name} repeats the key {key!r} (data rows {keys[key] + 1} and "
                    f"{index + 1}): each row needs a key of its own"
                )
            keys[key] = index
        try:
            yield attrs.evolve(BulkRow.from_mapping(cells), key=key, given=row, index=index)
        except InvalidArgument:  # the row is kept, and fails as a row
            yield BulkRow(number=number_in(cells) or "", key=key, given=row, index=index)
        index += 1


def _plain_rows(lines: Iterator[str]) -> Iterator[BulkRow]:
    index = 0
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            yield BulkRow(number=text, key=str(index), given=text, index=index)
            index += 1


def read_once(path: str) -> bool:
    """Whether ``path`` can be read only once: standard input (``"-"``), or anything that is
    not a regular file, such as a pipe (``mkfifo``, or the shell's ``<(command)``) or a
    device. Opening a pipe again does not start it over: it takes the lines that the first
    reading has not read yet, which that reading then never sees."""
    if path == "-":
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # reading it says why it cannot be read
        return False


def name_of(path: str) -> str:
    """How messages name a numbers file: its path, or standard input for ``"-"``."""
    return "standard input" if path == "-" else path


# What a number may be written with besides its digits; a text of only these and digits,
# with at least 4 digits, is a number by its shape (one that may not exist, all the same).
_WRITTEN_WITH = re.compile(r"[\s+\-.()]")
_DIGITS = re.compile(r"[0-9]{4,}")


def holds_number(row: BulkRow, region: str | None = None) -> bool:
    """Whether ``row`` holds a phone number, by its shape: digits (at least 4) written with
    ``+``, spaces, ``-``, ``.``, ``(`` and ``)``, valid or not (``+55 44 9`` is one: it
    fails as its row's error); or one that can be read in ``region`` otherwise.

    This tells a file of numbers from one of something else (random bytes, names), not a
    good number from a bad one."""
    if isinstance(row.number, PhoneNumber):
        return True
    if _DIGITS.fullmatch(_WRITTEN_WITH.sub("", row.number)):
        return True
    try:
        PhoneNumber.parse(row.number, default_region=region)
    except MissingCountryCode:
        return True
    except InvalidArgument:
        return False
    return True


def count_rows(path: str, *, region: str | None = None, column: str | None = None) -> int | None:
    """How many rows ``path`` holds (``None`` for standard input, ``"-"``, or a pipe: what
    can be read only once, `read_once`), reading it through once: also checks that it
    can be read, before any work starts.

    With no ``region``, each row's number is read too, so that a file of numbers written
    without a country code is refused before anything is sent.

    Raises:
        InvalidArgument: the file cannot be read as numbers.
        MissingCountryCode: no region, and a row has no ``+`` and no country code that
            makes a valid number (the first such row is named).
    """
    if read_once(path):
        return None
    total = 0
    for row in read_rows(lines_of(path), name_of(path), column=column):
        if region is None and isinstance(row.number, str):
            try:
                PhoneNumber.parse(row.number)
            except MissingCountryCode as exc:
                raise MissingCountryCode(
                    f"{name_of(path)}, data row {total + 1}: {exc}",
                    input=exc.input,
                    read_as=exc.read_as,
                ) from None
            except InvalidPhoneNumber:
                pass  # a bad row: it fails as a row when checked
        total += 1
    return total
