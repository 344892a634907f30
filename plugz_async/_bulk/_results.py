"""Results files: one record per row, crash-safe, resumable; and reading them back.

`ResultsFile` writes JSON Lines or CSV, one flushed line per record, locks the file for
its run, and on resume keeps the final records and rewrites the file in one atomic
step. `read_results` and `to_dataframe` read a results file (or items) back, one row per
key.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from plugz_async._errors import InvalidArgument, require
from plugz_async._phone import PhoneNumber
from plugz_async._planner import PlanOutcome

from ._items import FINAL_ERROR_NAMES, BulkItem, SeenLines

__all__ = [
    "CSV_FIELDS",
    "ResultsFile",
    "flat_record",
    "format_of",
    "read_results",
    "record_input",
    "record_is_final",
    "to_dataframe",
]


def _outcome(value: object) -> PlanOutcome:
    """A record's outcome; a record too old or too mangled to have one counts as an error."""
    try:
        return PlanOutcome(value)
    except ValueError:
        return PlanOutcome.ERROR


def record_is_final(record: Mapping[str, Any]) -> bool:
    """`is_final` for a results-file record (a JSON record, or a CSV row)."""
    final = record.get("final")
    if isinstance(final, bool):
        return final
    if final in ("True", "False"):
        return bool(final == "True")
    error = record.get("error")
    name = error.get("type") if isinstance(error, Mapping) else record.get("error_type")
    return not name or str(name) in FINAL_ERROR_NAMES


def record_input(record: Mapping[str, Any]) -> tuple[object, str | None]:
    """The row as given (its ``input``: a CSV row's cells, or a line) and the number read
    from it (E.164; ``None`` when none could be read), of a results-file record (a JSON
    record, or a CSV row: its ``input`` is JSON text there when the row had cells)."""
    given = record.get("input")
    if "error_type" in record and isinstance(given, str) and given.startswith("{"):
        try:  # a flat row (CSV, flat_record): the cells are written as JSON
            cells = json.loads(given)
        except ValueError:
            cells = None
        if isinstance(cells, dict):
            given = cells
    number = record.get("number")
    return given, str(number) if number else None


CSV_FIELDS = [
    "key",
    "index",
    "input",
    "number",
    "instance_id",
    "outcome",
    "final",
    "attempts",
    "available",
    "blocked",
    "appeal_token",
    "reason",
    "sms_wait_seconds",
    "voice_wait_seconds",
    "wa_old_wait_seconds",
    "wa_old_eligible",
    "next_channel",
    "sms_ready_at",
    "voice_ready_at",
    "wa_old_ready_at",
    "error_type",
    "error_message",
    "same_line_as",
    "same_line_as_number",
]
# The header of the results files written before a line was checked once (no same_line_as
# columns): still resumed, and written again with the new header.
_CSV_FIELDS_BEFORE_LINES = CSV_FIELDS[:-2]


def flat_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A results-file record as one flat row (for CSV and DataFrames)."""
    availability = record.get("availability") or {}
    plan = record.get("plan") or {}
    error = record.get("error") or {}
    same = record.get("same_line_as") or {}
    ready = {w["channel"]: w["ready_at"] for w in plan.get("windows", []) if w.get("eligible")}
    given = record.get("input")
    return {
        "key": record.get("key"),
        "index": record.get("index"),
        "input": given if isinstance(given, str) else json.dumps(given, ensure_ascii=False),
        "number": record.get("number"),
        "instance_id": record.get("instance_id"),
        "outcome": record.get("outcome"),
        "final": record_is_final(record),
        "attempts": record.get("attempts"),
        "available": availability.get("available"),
        "blocked": availability.get("blocked"),
        "appeal_token": availability.get("appeal_token"),
        "reason": availability.get("reason"),
        "sms_wait_seconds": availability.get("sms_wait_seconds"),
        "voice_wait_seconds": availability.get("voice_wait_seconds"),
        "wa_old_wait_seconds": availability.get("wa_old_wait_seconds"),
        "wa_old_eligible": availability.get("wa_old_eligible"),
        "next_channel": plan.get("next_channel"),
        "sms_ready_at": ready.get("sms"),
        "voice_ready_at": ready.get("voice"),
        "wa_old_ready_at": ready.get("wa_old"),
        "error_type": error.get("type"),
        "error_message": error.get("message"),
        "same_line_as": same.get("index"),
        "same_line_as_number": same.get("number"),
    }


FORMATS = ("jsonl", "csv")


def format_of(path: Path) -> str:
    """The format of a results file: from its content when it has some, else from its
    name (``.csv`` is CSV, anything else JSON Lines)."""
    try:
        with open(path, "rb") as f:
            start = f.read(64).lstrip()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        start = b""
    if start.startswith(b"{"):
        return "jsonl"
    if start.startswith(b"key,"):
        return "csv"
    return "csv" if Path(path).suffix.lower() == ".csv" else "jsonl"


class ResultsFile:
    """A results file (JSON Lines, or CSV) that a crash cannot corrupt, and that holds
    one record per row at every moment a reader can see it.

    Each record is written with one ``write`` and flushed at once, so a process killed
    at any moment leaves at most a half-written last line. `open` with ``resume=True``
    keeps the final records (an answer, or an error of the row's own: see
    `BulkItem.final`) and returns their keys: the rows to skip. Records of rows that
    failed for a passing reason (a 5xx, a timeout, a refused credential) are dropped, so
    the resumed run checks those rows again; the kept records are written to a new file
    that then replaces the old one in one step (``os.replace``), so a crash at any point
    leaves either the old file or the new one, never a mix.

    Args:
        path: the file.
        format: ``"jsonl"`` or ``"csv"``; by default, the format of the file's content
            when it has some, else ``csv`` for a ``.csv`` name and ``jsonl`` otherwise.

    Attributes:
        kept: after ``open(resume=True)``, the outcomes of the records kept, counted
            (``"ready"``, ``"error"``...).
        kept_errors: the error classes among them, counted.
        dropped: how many records were dropped, to be done again.
        seen_lines: after ``open(resume=True)``, the lines the records kept have an answer
            for, each with its row: give it to ``check_many(seen_lines=...)``, so that a
            row left whose line one of them holds is not checked again (a kept error, such
            as a 400, holds no line: the line is checked on its next row).
    """

    def __init__(self, path: str | Path, *, format: str | None = None) -> None:
        if format is not None and format not in FORMATS:
            raise InvalidArgument("format must be 'jsonl' or 'csv'")
        self.path = Path(path)
        found = format_of(self.path)
        if format is not None and self._has_records() and found != format:
            raise InvalidArgument(
                f"{self.path} holds {_FORMAT_NAMES[found]}, not {_FORMAT_NAMES[format]}"
            )
        self.format = format or found
        self.kept: Counter[PlanOutcome] = Counter()
        self.kept_errors: Counter[str] = Counter()
        self.dropped = 0
        self.seen_lines = SeenLines()
        self._file: io.TextIOWrapper | None = None
        self._old_header = False  # a CSV written before the same_line_as columns
        self._lock_file: tuple[int, Path] | None = None

    def _has_records(self) -> bool:
        try:
            return self.path.stat().st_size > 0 and self.path.is_file()
        except OSError:
            return False

    def open(
        self, *, resume: bool = False, check: Callable[[Mapping[str, Any]], None] | None = None
    ) -> set[str]:
        """Open for appending; with ``resume``, the keys of the final records already there.

        Args:
            resume: go on with the records already there (else the file must be empty).
            check: called with each record a resume keeps (a JSON record, or a CSV row:
                `record_input` reads either), before the file is touched; an
                ``InvalidArgument`` it raises refuses the resume, and leaves the file as
                it was. A command checks that the rows already done were read as it reads
                them now, say.

        Raises:
            InvalidArgument: the file has records and ``resume`` is false; or the file
                cannot be written (its folder is missing, it is a folder, no permission);
                or ``check`` refused a record.
        """
        path = self.path
        self.check()
        self._lock()
        try:
            done: set[str] = set()
            if self._has_records():
                if not resume:
                    raise InvalidArgument(f"{path} is not empty: resume it, or choose another file")
                done = self._recover(check)
            try:
                self._file = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115
            except OSError as exc:
                raise InvalidArgument(f"cannot write {path}: {exc.strerror}") from None
        except BaseException:
            self.close()
            raise
        if self.format == "csv" and self._file.tell() == 0:
            self._write(self._csv_line(dict(zip(CSV_FIELDS, CSV_FIELDS, strict=True))))
        return done

    def check(self) -> None:
        """Say now, before any work, if the path cannot be a results file.

        Raises:
            InvalidArgument: the path is a folder, or its folder does not exist.
        """
        path = self.path
        if path.is_dir():
            raise InvalidArgument(f"{path} is a folder: give the path of a results file")
        if not path.parent.is_dir():
            raise InvalidArgument(f"cannot write {path}: the folder {path.parent} does not exist")

    def _lock(self) -> None:
        """Hold the file for this run: a second run on it would write every row twice.

        The lock (``flock`` on a ``.lock`` file beside it) goes with the process, even
        when it is killed; where the system has no ``flock``, nothing is locked.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX
            return
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise InvalidArgument(f"cannot write {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            raise InvalidArgument(
                f"{self.path} is being written by another run: wait for it to end"
            ) from None
        self._lock_file = (descriptor, lock_path)

    def _recover(self, check: Callable[[Mapping[str, Any]], None] | None = None) -> set[str]:
        """Keep the final records (the first for a key) and return their keys; drop the
        rest and any half-written last line, replacing the file in one step (``check``:
        each record kept is shown to it first)."""
        # A new file that a crash kept from replacing this one: this one still holds.
        self.path.with_name(f".{self.path.name}.resume").unlink(missing_ok=True)
        data = self.path.read_bytes()
        whole = data.rfind(b"\n") + 1  # everything after the last newline is half-written
        text = data[:whole].decode("utf-8", errors="replace")
        done: set[str] = set()
        kept: list[str] = []
        dropped = 0
        self._old_header = False
        for line, record in self._records(text):
            key = str(record.get("key"))
            if record.get("key") is None or key in done or not record_is_final(record):
                dropped += 1
                continue
            if check is not None:
                check(record)
            done.add(key)
            kept.append(self._rewritten(record) if self._old_header else line)
            outcome = _outcome(record.get("outcome"))
            self.kept[outcome] += 1
            if outcome not in (PlanOutcome.SAME_LINE, PlanOutcome.ERROR):
                self._saw(record)  # a row with an answer holds its line; an error holds none
            error = record.get("error")
            name = error.get("type") if isinstance(error, Mapping) else record.get("error_type")
            if name:
                self.kept_errors[str(name)] += 1
        self.dropped = dropped
        if dropped or self._old_header:
            header = [self._csv_line(dict(zip(CSV_FIELDS, CSV_FIELDS, strict=True)))]
            self._replace((header if self.format == "csv" else []) + kept)
        elif whole < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(whole)
        return done

    def _rewritten(self, row: Mapping[str, Any]) -> str:
        """A row of a CSV written before the ``same_line_as`` columns, as a line of now."""
        return self._csv_line({k: v for k, v in row.items() if k in CSV_FIELDS})

    def _saw(self, record: Mapping[str, Any]) -> None:
        """Note the line of a kept record's row in `seen_lines` (a record with no number,
        or a damaged one, has none)."""
        try:
            index = int(record["index"])
            number = PhoneNumber.parse(str(record.get("number")))
        except (KeyError, TypeError, ValueError):  # InvalidPhoneNumber too
            return
        self.seen_lines.add(index, number)

    def _records(self, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(the record's text, the record) for each complete record of ``text``; a damaged
        line stands as an empty record (dropped: its row is done again).

        Raises:
            InvalidArgument: the file does not start as a results file does.
        """
        lines = text.splitlines(keepends=True)
        first = lines[0].strip() if lines else ""
        if self.format == "csv":
            fields = CSV_FIELDS
            if first == ",".join(_CSV_FIELDS_BEFORE_LINES):
                fields, self._old_header = _CSV_FIELDS_BEFORE_LINES, True
            elif first != ",".join(CSV_FIELDS):
                raise self._foreign("its first line is not the header of a results file")
            for line in lines[1:]:
                for row in csv.DictReader([line], fieldnames=fields):
                    yield line, row
            return
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict) or "key" not in record:
                if number == 0:
                    raise self._foreign("its first line is not a record")
                record = {}
            yield line, record

    def _foreign(self, why: str) -> InvalidArgument:
        return InvalidArgument(
            f"{self.path} is not a results file of plugz-async ({why}): choose another file"
        )

    def _replace(self, lines: list[str]) -> None:
        """Write ``lines`` to a new file beside the old one, then swap it in atomically."""
        temporary = self.path.with_name(f".{self.path.name}.resume")
        with open(temporary, "w", encoding="utf-8", newline="") as f:
            os.chmod(temporary, stat.S_IMODE(self.path.stat().st_mode))  # phone numbers
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)
        _sync_folder(self.path.parent)

    def _csv_line(self, row: Mapping[str, Any]) -> str:
        # One record, one line: a line break inside a value would split it on recovery.
        flat = {k: " ".join(v.splitlines()) if isinstance(v, str) else v for k, v in row.items()}
        buffer = io.StringIO()
        csv.DictWriter(buffer, CSV_FIELDS, lineterminator="\n").writerow(flat)
        return buffer.getvalue()

    def _write(self, text: str) -> None:
        assert self._file is not None, "open() the results file first"
        self._file.write(text)
        self._file.flush()

    def write(self, item: BulkItem) -> None:
        """Append one item's record, and flush it."""
        record = item.to_dict()
        if self.format == "jsonl":
            self._write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        else:
            self._write(self._csv_line(flat_record(record)))

    def close(self) -> None:
        """Close the file and let another run have it. Safe to call twice."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock_file is not None:
            descriptor, lock_path = self._lock_file
            self._lock_file = None
            lock_path.unlink(missing_ok=True)
            os.close(descriptor)  # closing releases the lock

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_FORMAT_NAMES = {"jsonl": "JSON Lines", "csv": "CSV"}


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the system allows opening a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - not on every system
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover - not on every file system
        pass
    finally:
        os.close(descriptor)


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The records of a results file, one per key (the last written), in file order.

    A JSON Lines file gives the records as written; a CSV file gives its rows, flat (as
    `flat_record` makes them, values as text). A half-written last line is skipped.
    """
    path = Path(path)
    fmt = format_of(path)
    by_key: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        if fmt == "csv":
            for row in csv.DictReader(f):
                by_key.pop(str(row.get("key")), None)
                by_key[str(row.get("key"))] = dict(row)
        else:
            for line in f:
                if line.endswith("\n") and line.strip():
                    record = json.loads(line)
                    by_key.pop(str(record.get("key")), None)
                    by_key[str(record.get("key"))] = record
    return list(by_key.values())


def to_dataframe(results: Iterable[BulkItem] | Iterable[Mapping[str, Any]] | str | Path) -> Any:
    """A ``pandas.DataFrame`` of bulk results (items, records, or a results file): one
    row per key, in the input's order (sorted by ``index``: a bulk run yields items as
    they complete, and a resumed file holds them in the order they were written), the
    ready times as timestamps. Needs pandas (``plugz-async[pandas]``)."""
    pandas = require("pandas", feature="to_dataframe()", extra="pandas")
    if isinstance(results, (str, Path)):
        records: Iterable[Mapping[str, Any]] = read_results(results)
    else:
        records = (r.to_dict() if isinstance(r, BulkItem) else r for r in results)
    rows = [r if "error_type" in r else flat_record(r) for r in records]
    frame = pandas.DataFrame(rows, columns=CSV_FIELDS)
    frame = frame.sort_values("index", kind="stable", na_position="last", ignore_index=True)
    for column in ("sms_ready_at", "voice_ready_at", "wa_old_ready_at"):
        frame[column] = pandas.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame
