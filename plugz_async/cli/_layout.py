"""Tables that fit the terminal they are drawn in.

A `Sheet` holds a table's columns and rows, and picks its layout when it is drawn, from
the width it is given (the terminal's; 160 columns on a file or a pipe), by measuring its
cells. The first of these that fits is drawn:

1. ``table``: a row a line, every column whole; a note column too, when every note fits
   whole in it.
2. ``notes below``: the notes under their row, as wide as the terminal.
3. ``short``: the short form of the cells that have one (``in 1m30s``, without its
   clock time).
4. ``fewer columns``: the columns that may go, the least needed first, each said under
   its row as ``Header: value`` (each time with the full cells first, then the short).
5. ``cards``: a card a row, its key cells on a line, then a ``Header: value`` line for
   each other cell.

No cell is ever cut and no column shrinks to nothing: what does not fit goes under its
row, and free text wraps at spaces. The tables have no borders (as ``gh`` and ``kubectl``
draw theirs): three characters a column are worth more to the cells at 80 columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import attrs
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.text import Text

__all__ = ["BLANK", "Column", "Layout", "Sheet", "Short"]

# Between two columns; before the lines under a row, and a card's lines.
GAP = 2
INDENT = 4
CARD_INDENT = 2

#: The cell of a channel that cannot be used, and any cell with nothing to say: not worth
#: a ``Header: value`` line under its row.
BLANK = "—"


@attrs.frozen
class Column:
    """How one column is drawn.

    Attributes:
        header: its title, in words a person uses (a card's label for its cells).
        justify: ``"right"`` for counts.
        key: on a card's first line (what a row is: its number, its outcome).
        note: free text: in its column when every note fits whole there, else under its
            row.
        wrap: free text wrapped in its column (a list of facts' values).
        drop: ``0``, always a column; else it may go under its row when the row does not
            fit, the highest first.
        style: every cell's style (the names of a list of facts, in bold).
    """

    header: str
    justify: Literal["left", "right"] = "left"
    key: bool = False
    note: bool = False
    wrap: bool = False
    drop: int = 0
    style: str = ""


@attrs.frozen
class Short:
    """A cell with a shorter form, drawn when the full one does not fit."""

    full: str | Text
    short: str | Text


Cell = str | Text | Short


@attrs.frozen
class Layout:
    """How a sheet is drawn at one width.

    Attributes:
        name: ``table``, ``notes below``, ``short``, ``fewer columns`` or ``cards``.
        short: whether the cells' short forms are drawn.
        under: the columns said under their row (by index).
        widths: each column's width, by index (none: cards).
    """

    name: str
    short: bool = False
    under: frozenset[int] = frozenset()
    widths: dict[int, int] = attrs.field(factory=dict)


def _text(cell: str | Text, style: str) -> Text:
    if isinstance(cell, Text):
        return cell
    return Text(cell, style=style)


def _width(text: Text) -> int:
    """The cells the widest line of ``text`` takes."""
    return max((cell_len(line) for line in text.plain.split("\n")), default=0)


def _longest_word(text: Text) -> int:
    return max((cell_len(word) for word in text.plain.split()), default=0)


def _blank(text: Text) -> bool:
    return text.plain.strip() in ("", BLANK)


def _wrapped(text: Text, console: Console, width: int, indent: int = 0) -> Iterator[Text]:
    """``text`` wrapped at spaces to ``width`` (a word longer than that is folded, never
    cut), each line after ``indent`` spaces."""
    room = max(1, width - indent)
    for line in text.wrap(console, room, overflow="fold"):
        line.rstrip()
        yield Text(" " * indent) + line if indent else line


class Sheet:
    """A table that picks its layout from the width it is drawn at (see the module).

    Args:
        columns: the columns, in their order.
        title: drawn above the table.
        headers: whether the headers are drawn (not for a list of facts).
    """

    #: A wrapped column is given at least this many cells (or its longest word).
    WRAP_MIN = 20

    def __init__(self, *columns: Column, title: str | None = None, headers: bool = True) -> None:
        self.columns = columns
        self.title = title
        self.headers = headers
        self.rows: list[list[tuple[Text, Text]]] = []

    def add_row(self, *cells: Cell) -> None:
        """A row: a cell a column (missing ones are empty)."""
        row = []
        padded: Sequence[Cell] = [*cells, *([""] * (len(self.columns) - len(cells)))]
        for column, cell in zip(self.columns, padded, strict=True):
            if isinstance(cell, Short):
                full, short = _text(cell.full, column.style), _text(cell.short, column.style)
            else:
                full = short = _text(cell, column.style)
            row.append((full, short))
        self.rows.append(row)

    def _cells(self, index: int, short: bool) -> Iterator[Text]:
        return (row[index][short] for row in self.rows)

    # -- choosing a layout -------------------------------------------------------------

    def _tries(self) -> Iterator[tuple[str, bool, frozenset[int]]]:
        """The table layouts, the best first: (name, short forms, columns under rows)."""
        columns = self.columns
        notes = frozenset(i for i, c in enumerate(columns) if c.note)
        # A note column with no note at all is no column.
        empty = frozenset(i for i in notes if all(_blank(cell) for cell in self._cells(i, False)))
        yield "table", False, empty
        # Where the whole table does not fit, a column no row says anything in goes first
        # (a queue's "Waits for" once every registration has ended), before any column
        # that does is moved under its rows.
        silent = frozenset(
            i
            for i, c in enumerate(columns)
            if self.rows
            and not c.key
            and not any(cell.plain.strip() for cell in self._cells(i, False))
        )
        if silent - empty:
            yield "table", False, empty | silent
        if notes - empty:
            yield "notes below", False, notes | silent
        shorts = any(full.plain != short.plain for row in self.rows for full, short in row)
        if shorts:
            yield "short", True, notes | silent
        under = set(notes | silent)
        for rank in sorted({c.drop for c in columns if c.drop}, reverse=True):
            under |= {i for i, c in enumerate(columns) if c.drop == rank}
            yield "fewer columns", False, frozenset(under)
            if shorts:
                yield "fewer columns", True, frozenset(under)

    def layout(self, width: int) -> Layout:
        """The layout this sheet is drawn in at ``width`` columns."""
        for name, short, under in self._tries():
            widths = self._widths(width, short, under)
            if widths is not None:
                return Layout(name, short, under, widths)
        return Layout("cards")

    def _widths(self, width: int, short: bool, under: frozenset[int]) -> dict[int, int] | None:
        """Each shown column's width, when they all fit in ``width``: every cell whole (a
        note too), a wrapped column at least its longest word."""
        shown = [i for i in range(len(self.columns)) if i not in under]
        widths: dict[int, int] = {}
        least: dict[int, int] = {}  # the wrapped columns: their least width, and their most
        for i in shown:
            column = self.columns[i]
            header = cell_len(column.header) if self.headers else 0
            cells = list(self._cells(i, short))
            widest = max([header, *(_width(cell) for cell in cells)])
            if column.wrap:
                words = max([header, *(_longest_word(cell) for cell in cells)])
                least[i] = max(words, min(widest, self.WRAP_MIN))
            widths[i] = widest
        fixed = sum(w for i, w in widths.items() if i not in least)
        room = width - fixed - GAP * (len(shown) - 1)
        if room < sum(least.values()):
            return None
        for i in least:  # the wrapped columns share what is left, the first first
            widths[i] = min(widths[i], room - sum(least[j] for j in least if j > i))
            room -= widths[i]
        return widths

    # -- drawing ---------------------------------------------------------------------------

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        if self.title:
            yield from _wrapped(Text(self.title, style="table.title"), console, width)
        layout = self.layout(width)
        if layout.name == "cards":
            yield from self._cards(console, width)
        else:
            yield from self._table(console, width, layout, rule="-" if options.ascii_only else "─")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        _, short, under = next(self._tries())
        widest = self._widths(1 << 30, short, under)
        assert widest is not None
        most = sum(widest.values()) + GAP * (len(widest) - 1)
        words = max([1, *(_longest_word(full) for row in self.rows for full, _ in row)])
        return Measurement(min(words, most), most)

    def _table(self, console: Console, width: int, layout: Layout, rule: str) -> Iterator[Text]:
        shown = sorted(layout.widths)
        if self.headers:
            header = [Text(self.columns[i].header, style="table.header") for i in shown]
            yield self._line(header, shown, layout.widths)
            total = sum(layout.widths.values()) + GAP * (len(shown) - 1)
            yield Text(rule * total, style="dim")
        for row in self.rows:
            cells = [
                self._lines(row[i][layout.short], console, layout.widths[i], self.columns[i])
                for i in shown
            ]
            for k in range(max(len(lines) for lines in cells)):
                line = [lines[k] if k < len(lines) else Text("") for lines in cells]
                yield self._line(line, shown, layout.widths)
            yield from self._under(row, layout.under, console, width)

    def _lines(self, text: Text, console: Console, width: int, column: Column) -> list[Text]:
        if column.wrap:
            return list(_wrapped(text, console, width))
        return list(text.split("\n")) if "\n" in text.plain else [text]

    def _line(self, cells: Sequence[Text], shown: Sequence[int], widths: dict[int, int]) -> Text:
        line = Text()
        for n, (i, cell) in enumerate(zip(shown, cells, strict=True)):
            if n:
                line.append(" " * GAP)
            padded = cell.copy()
            padded.align(self.columns[i].justify, widths[i])
            line.append_text(padded)
        line.rstrip()
        return line

    def _under(
        self, row: Sequence[tuple[Text, Text]], under: Iterable[int], console: Console, width: int
    ) -> Iterator[Text]:
        """The cells of ``row`` said under it: the columns that went, on one line as
        ``Header: value``; then each note, on lines of its own."""
        parts = []
        for i in sorted(under):
            column, cell = self.columns[i], row[i][0]
            if not column.note and not _blank(cell):
                parts.append(Text(f"{column.header}: ", style="dim") + cell)
        indent = INDENT if width > 2 * INDENT + 10 else 0
        said = Text("  ").join(parts)
        if said and cell_len(said.plain) <= width - indent:
            yield from _wrapped(said, console, width, indent)
        else:  # a line each, so that no value is parted from its header
            for part in parts:
                yield from _wrapped(part, console, width, indent)
        for i in sorted(under):
            if self.columns[i].note and not _blank(row[i][0]):
                yield from _wrapped(row[i][0], console, width, indent)

    def _cards(self, console: Console, width: int) -> Iterator[Text]:
        """A card a row: its key cells, then a ``Header: value`` line for each other cell
        that says something."""
        keys = [i for i, c in enumerate(self.columns) if c.key] or [0]
        indent = CARD_INDENT if width > 2 * CARD_INDENT + 10 else 0
        for n, row in enumerate(self.rows):
            if n:
                yield Text("")
            first = Text(" " * GAP).join(row[i][0] for i in keys if not _blank(row[i][0]))
            yield from _wrapped(first, console, width)
            for i, column in enumerate(self.columns):
                cell = row[i][0]
                if i in keys or _blank(cell):
                    continue
                label = Text(f"{column.header}: ", style="dim") if column.header else Text()
                yield from _wrapped(label + cell, console, width, indent)
