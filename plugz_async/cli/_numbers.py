"""A numbers file as a command reads it (``bulk``, ``queue register``): once, in the
common case.

Its rows come as they are read, with the line and the bytes read so far (`ReadLines`):
the header is judged at once, so a file that cannot be read as numbers is refused
before anything is sent. The file is read through beforehand only where every row must
be checked before anything is sent: with no region (a number written without a country
code is refused, naming its row), and, when asked, for a ``key`` column (a repeated key
is refused); that pass gives the count of rows as well. What can be read only once
(standard input, a pipe such as the shell's ``<(command)``: `read_once`) is never read
again: its rows are checked as they come.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import attrs

from plugz_async._bulk._input import (
    Header,
    count_rows,
    holds_number,
    lines_of,
    name_of,
    read_once,
    read_rows,
)
from plugz_async._bulk._items import BulkRow
from plugz_async._errors import InvalidArgument

__all__ = ["NumbersFile", "ReadLines", "open_numbers"]


class ReadLines:
    """Lines, counting them as they are read: the line just read, and the bytes so far
    (UTF-8, as the file holds them; a byte that was not UTF-8 counts as its stand-in)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.line = 0
        self.bytes = 0

    def __iter__(self) -> ReadLines:
        return self

    def __next__(self) -> str:
        text = next(self._lines)
        self.line += 1
        self.bytes += len(text.encode("utf-8", "surrogateescape"))
        return text


@attrs.frozen
class NumbersFile:
    """A numbers file being read.

    Attributes:
        name: how messages name it (its path, or standard input).
        rows: its rows, read as they are taken (the first one read already).
        lines: the lines read so far, and their bytes.
        columns: the header's columns (none for a file of one number a line).
        header: its header (``None`` for a file of one number a line).
        total: how many rows it holds, when it was read through beforehand.
        size: its size in bytes (``None`` for standard input or a pipe).
        empty: whether it holds no rows at all.
    """

    name: str
    rows: Iterator[BulkRow] = attrs.field(repr=False)
    lines: ReadLines = attrs.field(repr=False)
    columns: frozenset[str]
    header: Header | None
    total: int | None
    size: int | None
    empty: bool

    @property
    def note(self) -> str | None:
        """What to tell the user before reading: the column of numbers, when it was found
        by a common name (``telefone``, say), not as ``number`` nor by ``--column``."""
        header = self.header
        if header is None or not header.common:
            return None
        return (
            f"reading numbers from column {header.number!r} of {self.name} (--column NAME "
            "reads another)"
        )


# Rows of standard input (or a pipe) looked at, at most, for one that holds a number (it
# cannot be read twice: those rows are kept meanwhile).
LOOK_AHEAD = 1000


def open_numbers(
    path: str, *, region: str | None, keys: bool = False, column: str | None = None
) -> NumbersFile:
    """The numbers file ``path`` (``"-"``: standard input), its header judged at once; read
    through first only with no ``region`` (or, with ``keys``, when it has a ``key``
    column), and never when it can be read only once (standard input, a pipe: `read_once`).
    ``column``: the header's column of the numbers.

    A file none of whose rows holds a phone number (a binary file, a list of names) is
    refused: its rows are read until one holds a number, which is its first, as a rule
    (standard input or a pipe: its first `LOOK_AHEAD` rows at most).

    Raises:
        InvalidArgument: it cannot be read as numbers (a repeated key too), or no row of
            it holds a number.
        MissingCountryCode: no region, and a row has no ``+`` and no country code that
            makes a valid number (the first such row is named).
    """
    once = read_once(path)
    raw = lines_of(path)
    seen: list[str] = []  # the lines the look for a number read: read again, as the rows

    def kept() -> Iterator[str]:
        for line in raw:
            seen.append(line)
            yield line

    looked = read_rows(kept(), name_of(path), column=column)
    rows = 0
    for rows, row in enumerate(looked, start=1):
        if holds_number(row, region):
            break
        if rows == LOOK_AHEAD:
            _past_look_ahead(path, region, column, once=once)
            break
    else:
        if rows:
            raise InvalidArgument(_no_number(path, rows))
    lines = ReadLines(itertools.chain(seen, raw))
    source = read_rows(lines, name_of(path), column=column)
    first = next(source, None)
    given = None if first is None else first.given
    columns = frozenset(given) if isinstance(given, dict) else frozenset()
    total = None
    if not once and first is not None and (region is None or (keys and "key" in columns)):
        total = count_rows(path, region=region, column=column)
    return NumbersFile(
        name=name_of(path),
        rows=iter(()) if first is None else itertools.chain([first], source),
        lines=lines,
        columns=columns,
        header=source.header,
        total=total,
        size=None if once else _size(path),
        empty=first is None,
    )


def _no_number(path: str, rows: int, *, first: bool = False) -> str:
    shown = f"{rows:,} rows" if rows != 1 else "1 row"
    which = f"its first {shown}" if first else ("its one row" if rows == 1 else f"its {shown}")
    return (
        f"{name_of(path)} holds no phone number: none of {which} reads as one (a numbers "
        "file has one number a line, or a CSV header naming the column of numbers)"
    )


def _past_look_ahead(path: str, region: str | None, column: str | None, *, once: bool) -> None:
    """No number in the first `LOOK_AHEAD` rows: a file is read through for one (nothing is
    kept); what can be read only ``once`` (standard input, a pipe) is refused.

    Raises:
        InvalidArgument: no row holds a number (read only once: none of the first rows).
    """
    if once:
        raise InvalidArgument(_no_number(path, LOOK_AHEAD, first=True))
    rows = 0
    for row in read_rows(lines_of(path), name_of(path), column=column):
        if holds_number(row, region):
            return
        rows += 1
    raise InvalidArgument(_no_number(path, rows))


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:  # pragma: no cover - it was just read
        return None
