"""Bounded reading of untrusted CSV/XLSX files: size, rows, columns, cells, time.

A spreadsheet is a zip of XML: 5 KB can declare a sheet of ``A1:XFD1048576`` (openpyxl then
pads 16,384 empty cells into each of a million rows), 400 KB can inflate to 800 MB of shared
strings, and a plain CSV can hold a million rows. Every reader of a file the merchant (or
anyone) hands over goes through here, and each limit is checked *before* the work it bounds:

* the file size, before reading it;
* every zip member's declared uncompressed size and their sum, before openpyxl opens the
  archive (Python's zipfile stops at the declared size, so a lying header cannot get past);
* the sheet's declared dimension (rows, columns, cells), before the first row;
* the rows read (blank ones too), the columns per row, and the time since the start, while
  reading.

Exceeding one raises :class:`SheetLimitError` whose message names the limit and the value; the
caller adds the file name. The connector (``connector/ops/sheet_limits.py``) and the simulator
(``mock_ci_server/sheet_limits.py``) each hold a copy of this module, as the two packages never
import each other; a test keeps the copies identical.
"""

from __future__ import annotations

import csv
import io
import re
import struct
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["SheetLimitError", "SheetLimits", "check_archive", "check_size", "csv_rows", "xlsx_rows"]

MIB = 1024 * 1024


class SheetLimitError(ValueError):
    """A file is over one of the :class:`SheetLimits`; the message names limit and value."""


@dataclass(frozen=True, slots=True)
class SheetLimits:
    """The bounds of one read. Defaults suit a merchant's order export."""

    max_bytes: int = 64 * MIB
    """Size of the file as stored (CSV text, or the XLSX zip)."""
    max_unzipped_bytes: int = 256 * MIB
    """Sum of the XLSX members' declared uncompressed sizes."""
    max_member_bytes: int = 64 * MIB
    """One XLSX sheet or shared-strings part, uncompressed."""
    max_other_member_bytes: int = 8 * MIB
    """Any other XLSX part (styles, workbook, theme...), uncompressed: openpyxl parses them
    whole and cannot be interrupted."""
    max_shared_strings: int = 1_000_000
    """Entries of the shared-strings table (openpyxl builds them all before the first row)."""
    max_members: int = 512
    """Files inside the XLSX zip."""
    max_rows: int = 100_000
    """Rows, the header and blank rows included."""
    max_columns: int = 256
    """Columns per row; the order-export template has 36."""
    max_cells: int = 5_000_000
    """Declared rows x columns of the sheet."""
    max_seconds: float = 120.0
    """Wall time from opening the file to the last row (checked between rows)."""


def check_size(size: int, limits: SheetLimits) -> None:
    """Refuse a file of ``size`` bytes over ``limits.max_bytes``."""
    if size > limits.max_bytes:
        raise SheetLimitError(
            f"the file is {size:,} bytes; the limit is {limits.max_bytes:,} bytes"
        )


def check_archive(source: Path | IO[bytes], limits: SheetLimits) -> None:
    """Refuse an XLSX whose zip declares too many members or too many uncompressed bytes.

    :raises SheetLimitError: over a limit.
    :raises zipfile.BadZipFile: not a zip at all (the caller reports it as unreadable).
    """
    if isinstance(source, Path):
        with source.open("rb") as fh:
            _check_directory(fh, limits)
    else:
        _check_directory(source, limits)
        source.seek(0)
    with zipfile.ZipFile(source) as archive:
        members = archive.infolist()
        if len(members) > limits.max_members:
            raise SheetLimitError(
                f"the workbook holds {len(members):,} files; the limit is {limits.max_members:,}"
            )
        total = 0
        for info in members:
            name = info.filename.lower()
            big = name.startswith("xl/worksheets/") or name.endswith("sharedstrings.xml")
            limit = limits.max_member_bytes if big else limits.max_other_member_bytes
            if info.file_size > limit:
                raise SheetLimitError(
                    f"workbook part {info.filename!r} unpacks to {info.file_size:,} bytes "
                    f"({info.compress_size:,} packed); the limit is {limit:,} bytes for it"
                )
            total += info.file_size
        if total > limits.max_unzipped_bytes:
            raise SheetLimitError(
                f"the workbook unpacks to {total:,} bytes; the limit is "
                f"{limits.max_unzipped_bytes:,} bytes"
            )
        for info in members:
            if info.filename.lower().endswith("sharedstrings.xml"):
                _count_shared_strings(archive, info, limits)


# An <si> element, with or without a namespace prefix.
_SI = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?si[\s>/]")


def _count_shared_strings(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: SheetLimits
) -> None:
    """Count the ``<si>`` entries by streaming the (size-checked) part, before openpyxl builds
    them: a few MB of one-letter strings are millions of objects and minutes of parsing."""
    count, tail = 0, b""
    with archive.open(info) as part:
        while chunk := part.read(1024 * 1024):
            data = tail + chunk
            count += len(_SI.findall(data))
            # Keep a short tail (never a whole match) so a tag split across chunks is seen once.
            cut = max(len(data) - 64, 0)
            last = data.rfind(b"<", cut)
            tail = data[last:] if last != -1 and _SI.match(data, last) is None else b""
            if count > limits.max_shared_strings:
                raise SheetLimitError(
                    f"the workbook's shared-strings table holds more than "
                    f"{limits.max_shared_strings:,} entries"
                )


def _check_directory(fh: IO[bytes], limits: SheetLimits) -> None:
    """Read the zip's end record: the entry count and directory size, before zipfile builds
    an object per entry (a 64 MB directory is over a million entries)."""
    fh.seek(0, io.SEEK_END)
    end = fh.tell()
    span = min(end, 22 + 65_535)  # the end record plus the longest possible comment
    fh.seek(end - span)
    tail = fh.read(span)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise zipfile.BadZipFile("no zip end record: not an .xlsx workbook")
    entries, size = struct.unpack("<HI", tail[at + 10 : at + 16])
    if entries > limits.max_members:  # 0xFFFF (a ZIP64 count) lands here too
        raise SheetLimitError(
            f"the workbook holds {entries:,} files; the limit is {limits.max_members:,}"
        )
    if size > limits.max_members * 1024:
        raise SheetLimitError(
            f"the workbook's zip directory is {size:,} bytes; the limit is "
            f"{limits.max_members * 1024:,} bytes"
        )


class _Clock:
    def __init__(self, limits: SheetLimits) -> None:
        self.limit = limits.max_seconds
        self.deadline = time.monotonic() + limits.max_seconds

    def check(self, row: int) -> None:
        if time.monotonic() > self.deadline:
            raise SheetLimitError(
                f"reading stopped at row {row:,}: it took longer than {self.limit:g} s"
            )


def _too_many_rows(limits: SheetLimits) -> SheetLimitError:
    return SheetLimitError(
        f"the file has more than {limits.max_rows:,} rows (header and blank rows included); "
        f"nothing was read: split it into smaller files"
    )


def csv_rows(
    text: str, limits: SheetLimits, *, delimiter: str = ",", strict: bool = False
) -> Iterator[list[str]]:
    """Rows of CSV ``text`` (already size-checked and decoded).

    The rows are counted in a first pass (the csv module in C, no per-row work), so a file
    over ``max_rows`` is refused before any row is handed out.

    :raises SheetLimitError: too many rows, a row too wide, or too slow.
    :raises csv.Error: not valid CSV (the caller names it).
    """
    clock = _Clock(limits)
    counting = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=strict)
    for count, _ in enumerate(counting, start=1):
        if count > limits.max_rows:
            raise _too_many_rows(limits)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=strict)
    for number, row in enumerate(reader, start=1):
        if len(row) > limits.max_columns:
            raise SheetLimitError(
                f"row {number:,} has {len(row):,} columns; the limit is {limits.max_columns:,}"
            )
        if number % 256 == 0:
            clock.check(number)
        yield row


def xlsx_rows(source: Path | IO[bytes], limits: SheetLimits) -> Iterator[tuple[Any, ...]]:
    """Values of the first sheet's rows, read-only and bounded (see the module doc).

    ``source`` must have passed :func:`check_size`; the archive is checked here.

    :raises SheetLimitError: over a limit.
    :raises Exception: whatever openpyxl raises for a corrupt or foreign file.
    """
    from openpyxl import load_workbook

    clock = _Clock(limits)
    check_archive(source, limits)
    if not isinstance(source, Path):
        source.seek(0)
    workbook = load_workbook(source, read_only=True, data_only=True)
    try:
        if not workbook.worksheets:
            raise ValueError("the workbook has no sheet")
        sheet: Any = workbook.worksheets[0]
        rows, columns = sheet.max_row, sheet.max_column  # the declared dimension, or None
        if rows is not None and columns is not None:
            dimension = (
                f"declares {sheet.calculate_dimension()} ({rows:,} rows x {columns:,} columns"
            )
            if rows > limits.max_rows:
                raise SheetLimitError(
                    f"the sheet {dimension}); the limit is {limits.max_rows:,} rows"
                )
            if columns > limits.max_columns:
                raise SheetLimitError(
                    f"the sheet {dimension}); the limit is {limits.max_columns:,} columns"
                )
            if rows * columns > limits.max_cells:
                raise SheetLimitError(
                    f"the sheet {dimension} = {rows * columns:,} cells); the limit is "
                    f"{limits.max_cells:,} cells"
                )
        clock.check(0)
        # A declared dimension can also be too SMALL (some writers always say "A1"): read what
        # is there instead, with max_col bounding every row openpyxl builds (each row is
        # padded to it, so not wider than needed: the declared width, at least 64 columns).
        width = min(max(columns or 0, 64), limits.max_columns)
        sheet.reset_dimensions()
        rows_read = sheet.iter_rows(max_col=width, values_only=True)
        for number, row in enumerate(rows_read, start=1):
            if number > limits.max_rows:
                raise _too_many_rows(limits)
            if number % 256 == 0:
                clock.check(number)
            yield tuple(row)
    finally:
        workbook.close()
