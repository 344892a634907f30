"""A numbers file as a command reads it (``bulk``, ``queue register``): once, in the
common case.

Its rows come as they are read, with the line and the bytes read so far (`ReadLines`):
the header is judged at once, so a file that cannot be read as numbers is refused
before anything is sent. The file is read through beforehand only where every row must
be checked before anything is sent: with no region (a number written without a country
code is refused, naming its row), and, when asked, for a ``key`` column (a repeated key
is refused); that pass gives the count of rows as well.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import attrs

from plugz_async._bulk._input import count_rows, lines_of, name_of, read_rows
from plugz_async._bulk._items import BulkRow

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
        total: how many rows it holds, when it was read through beforehand.
        size: its size in bytes (``None`` for standard input).
        empty: whether it holds no rows at all.
    """

    name: str
    rows: Iterator[BulkRow] = attrs.field(repr=False)
    lines: ReadLines = attrs.field(repr=False)
    columns: frozenset[str]
    total: int | None
    size: int | None
    empty: bool


def open_numbers(path: str, *, region: str | None, keys: bool = False) -> NumbersFile:
    """The numbers file ``path`` (``"-"``: standard input), its header judged at once; read
    through first only with no ``region`` (or, with ``keys``, when it has a ``key``
    column), and never for standard input (it cannot be read twice).

    Raises:
        InvalidArgument: it cannot be read as numbers (a repeated key too).
        MissingCountryCode: no region, and a row has no ``+`` and no country code that
            makes a valid number (the first such row is named).
    """
    lines = ReadLines(lines_of(path))
    source = read_rows(lines, name_of(path))
    first = next(source, None)
    given = None if first is None else first.given
    columns = frozenset(given) if isinstance(given, dict) else frozenset()
    total = None
    if path != "-" and first is not None and (region is None or (keys and "key" in columns)):
        total = count_rows(path, region=region)
    return NumbersFile(
        name=name_of(path),
        rows=iter(()) if first is None else itertools.chain([first], source),
        lines=lines,
        columns=columns,
        total=total,
        size=None if path == "-" else _size(path),
        empty=first is None,
    )


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:  # pragma: no cover - it was just read
        return None
