"""The manual file path: CI's Export -> Orders file in, Import -> Tracking Numbers file out.

Merchants who work by hand in CommerceInterface download an order export (CSV or XLSX) and
upload a tracking file. CI's exact column templates are not public, so both templates below
are ASSUMED (documented in ``docs/manual-files.md``); each is declared once, here. The
simulator keeps its own copy (``mock_ci_server/uploads.py``) and a test proves the two agree.

Reading an export turns every row back into a raw record in the API shape and runs it through
:func:`connector.ci.schemas.parse_record`, so the objects are the very ones the API path
produces. A row that cannot be used becomes an :class:`ExportProblem` naming the file, the row
and the column; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from connector.ci.schemas import ParsedRecord, RecordProblem, parse_record
from connector.errors import ChannelError
from connector.ledger import Ledger, OutboxRow
from connector.ops.sheet_limits import SheetLimitError, SheetLimits, check_size, csv_rows, xlsx_rows
from connector.textsafe import neutralise_cell

__all__ = [
    "MANUAL_STATE",
    "ORDER_EXPORT_COLUMNS",
    "ORDER_EXPORT_REQUIRED",
    "READ_LIMITS",
    "TRACKING_UPLOAD_COLUMNS",
    "UPLOADABLE_STATES",
    "ExportProblem",
    "ManualFileError",
    "OrderExportResult",
    "eligible_for_upload",
    "mark_manual",
    "read_order_export",
    "write_order_export",
    "write_tracking_upload",
]

TRACKING_UPLOAD_COLUMNS: tuple[str, ...] = (
    "orderid",
    "ci_lineitemid",
    "fulfillment_lineitem_id",
    "sku",
    "quantity",
    "carrier",
    "tracking",
)
"""ASSUMED header of CI's Import -> Tracking Numbers file: one row per (line, tracking number).
CI keys a row by ``ci_lineitemid`` (``fulfillment_lineitem_id`` when that is empty);
``orderid`` and ``sku`` help the merchant read the file; an empty ``quantity`` means "every
open unit"."""

ORDER_EXPORT_COLUMNS: tuple[str, ...] = (
    "orderid",
    "parent_orderid",
    "date",
    "ci_lineitemid",
    "fulfillment_lineitem_id",
    "sku",
    "bom_sku",
    "name",
    "quantity",
    "unit_price",
    "groupon_cost",
    "discount",
    "amount_total",
    "ship_by_date",
    "status",
    "customer_name",
    "address1",
    "address2",
    "city",
    "state",
    "zip",
    "country",
    "phone",
    "billing_name",
    "billing_address1",
    "billing_address2",
    "billing_city",
    "billing_state",
    "billing_zip",
    "billing_country",
    "billing_phone",
    "shipping_method",
    "supplier",
    "voucher_code",
    "gift_message",
    "order_line_item_uuid",
)
"""ASSUMED header of CI's Export -> Orders file: one row per line item, enough to rebuild the
API record of that line. Dates use CI's record format (``MM/DD/YYYY hh:mmAM UTC``)."""

ORDER_EXPORT_REQUIRED: tuple[str, ...] = (
    "orderid",
    "date",
    "ci_lineitemid",
    "sku",
    "name",
    "quantity",
    "unit_price",
    "customer_name",
    "address1",
)
"""Columns without which no row can be read; any other template column may be absent."""

UPLOADABLE_STATES: tuple[str, ...] = ("pending", "retry")
"""Outbox states a tracking file is written from (rows that passed pre-flight, not in flight)."""

MANUAL_STATE = "manual"
"""Outbox state of a row handed to the manual path (``files tracking-upload --mark-sent``):
the API flush, which only sends pending/sending/retry rows, leaves it alone."""

READ_LIMITS = SheetLimits()
"""Bounds of one export read (bytes, unpacked bytes, rows, columns, cells, time): a file over
one is refused whole, naming the limit (see :mod:`connector.ops.sheet_limits`)."""

_CI_DATE_FORMAT = "%m/%d/%Y %I:%M%p UTC"
_ID_COLUMNS = frozenset(
    {"orderid", "parent_orderid", "ci_lineitemid", "fulfillment_lineitem_id", "sku", "bom_sku"}
)
# Spreadsheets turn these into numbers too (zip codes, phone numbers): undo "123.0".
_NUMBERISH_TEXT = frozenset({"zip", "billing_zip", "phone", "billing_phone"})
_MONEY_COLUMNS = frozenset({"unit_price", "groupon_cost", "discount", "amount_total"})
_INT_FLOAT = re.compile(r"^[+-]?\d+\.0*$")
_SCIENTIFIC = re.compile(r"^[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+$")
_EXCEL_TEXT_FORMULA = re.compile(r'^="(.*)"$')  # ="0123": the classic keep-my-zeros trick

# parse_record's field paths -> export columns, to name the column of a problem.
_PATH_TO_COLUMN: dict[str, str] = {
    "orderid": "orderid",
    "parent_orderid": "parent_orderid",
    "date": "date",
    "supplier": "supplier",
    "amount.total": "amount_total",
    "shipping.method": "shipping_method",
    "customer.name": "customer_name",
    "customer": "customer_name",
    **{f"customer.{k}": k for k in ("address1", "address2", "city", "state", "zip", "country")},
    "customer.phone": "phone",
    **{
        f"customer.billing_address.{k}": f"billing_{k}"
        for k in ("name", "address1", "address2", "city", "state", "zip", "country", "phone")
    },
    **{
        f"line_items[0].{k}": k
        for k in (
            "ci_lineitemid",
            "fulfillment_lineitem_id",
            "sku",
            "bom_sku",
            "name",
            "quantity",
            "unit_price",
            "groupon_cost",
            "discount",
            "ship_by_date",
            "status",
            "voucher_code",
            "gift_message",
            "order_line_item_uuid",
        )
    },
}
_PATH_RE = re.compile(
    r"(?:^|(?<=; ))("
    + "|".join(re.escape(p) for p in sorted(_PATH_TO_COLUMN, key=len, reverse=True))
    + r"): "
)


class ManualFileError(ChannelError):
    """A manual file cannot be written (or a row cannot go into it); the message says why."""


@dataclass(frozen=True, slots=True)
class ExportProblem:
    """A row (or the whole file) of an order export that cannot be used.

    :ivar file: the file name as given.
    :ivar row: 1-based row in the file (the header is row 1); 0 = the file as a whole.
    :ivar column: the template column at fault, when one is.
    :ivar orderid: the row's order id when it could be read.
    :ivar ci_lineitemids: the row's line id when it could be read.
    :ivar reason: what is wrong, with the value.
    """

    file: str
    row: int
    column: str | None
    reason: str
    orderid: str | None = None
    ci_lineitemids: tuple[int, ...] = ()

    def __str__(self) -> str:
        where = self.file if self.row == 0 else f"{self.file} row {self.row}"
        if self.column:
            where += f" column {self.column!r}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class OrderExportResult:
    """What :func:`read_order_export` found.

    ``records[i]`` came from file row ``source_rows[i]`` and raw record ``raw_records[i]``
    (the API shape, for a ledger that keeps raw records).
    """

    records: list[ParsedRecord] = field(default_factory=list)
    problems: list[ExportProblem] = field(default_factory=list)
    source_rows: list[int] = field(default_factory=list)
    raw_records: list[dict[str, Any]] = field(default_factory=list)
    blank_rows: list[int] = field(default_factory=list)


# --- tracking upload (out) -------------------------------------------------------------------


def eligible_for_upload(rows: Iterable[OutboxRow]) -> list[OutboxRow]:
    """The rows a tracking file may carry: pending or retry, with a carrier code (i.e. they
    passed pre-flight and are not in flight)."""
    return [r for r in rows if r.state in UPLOADABLE_STATES and r.carrier_code]


def write_tracking_upload(
    rows: Iterable[OutboxRow],
    path: Path | str,
    fmt: str = "csv",
    *,
    skus: Mapping[int, str] | None = None,
) -> int:
    """Write CI's Import -> Tracking Numbers file (:data:`TRACKING_UPLOAD_COLUMNS`) from
    outbox rows; returns the number of data rows. ``skus`` (``{ci_lineitemid: sku}``) fills
    the informational ``sku`` column.

    CSV is UTF-8 with a header; XLSX has one sheet, a header row and every id as a text cell
    (so Excel does not turn ``612004511`` into ``6.12E+08``). Every cell goes through
    :func:`connector.textsafe.neutralise_cell` (no formula, no control character). The file
    is replaced atomically.

    :raises ManualFileError: a row is not uploadable (see :func:`eligible_for_upload`), the
        format is unknown, or the file cannot be written.
    """
    fmt = _check_format(fmt)
    table: list[list[str]] = []
    for r in rows:
        if r.state not in UPLOADABLE_STATES or not r.carrier_code:
            raise ManualFileError(
                f"outbox row {r.id} (ci_lineitemid {r.ci_lineitemid}, tracking {r.tracking!r}) "
                f"is not uploadable: state {r.state!r}, carrier code {r.carrier_code!r}; only "
                f"{'/'.join(UPLOADABLE_STATES)} rows that passed pre-flight go into the file"
            )
        table.append(
            [
                r.orderid,
                str(r.ci_lineitemid),
                r.fulfillment_lineitem_id or "",
                (skus or {}).get(r.ci_lineitemid, ""),
                str(r.quantity),
                r.carrier_code,
                r.tracking,
            ]
        )
    _write_table(Path(path), fmt, TRACKING_UPLOAD_COLUMNS, table)
    return len(table)


def mark_manual(ledger: Ledger, rows: Sequence[OutboxRow], file: Path | str, now: datetime) -> None:
    """Mark ``rows`` as handed to the manual path (state :data:`MANUAL_STATE`, reason
    ``written to <file>``) in one transaction, so the API flush does not send them too.

    :raises connector.errors.LedgerError: the ledger refused (e.g. its schema does not know
        the ``manual`` state yet); nothing was marked.
    """
    with ledger.transaction():
        for r in rows:
            ledger.update_outbox(r.id, now, state=MANUAL_STATE, reason=f"written to {file}")


# --- order export (in) -----------------------------------------------------------------------


def write_order_export(records: Iterable[ParsedRecord], path: Path | str, fmt: str = "csv") -> int:
    """Write records in the order-export template (one row per line); returns the row count.

    For tests and fixtures: the simulator writes CI's own export. Every cell is text.

    :raises ManualFileError: unknown format or the file cannot be written.
    """
    fmt = _check_format(fmt)
    table = [
        [_export_cell(v) for v in _export_row(record, line).values()]
        for record in records
        for line in record.lines
    ]
    _write_table(Path(path), fmt, ORDER_EXPORT_COLUMNS, table)
    return len(table)


def _export_row(record: ParsedRecord, line: Any) -> dict[str, Any]:
    ship, bill = record.ship_to, record.billing
    row: dict[str, Any] = {
        "orderid": record.orderid,
        "parent_orderid": record.parent_orderid,
        "date": record.order_date.astimezone(UTC).strftime(_CI_DATE_FORMAT),
        "ci_lineitemid": line.ci_lineitemid,
        "fulfillment_lineitem_id": line.fulfillment_lineitem_id,
        "sku": line.sku,
        "bom_sku": line.bom_sku,
        "name": line.name,
        "quantity": line.quantity,
        "unit_price": line.unit_price,
        "groupon_cost": line.groupon_cost,
        "discount": line.discount,
        "amount_total": record.total,
        "ship_by_date": (
            line.ship_by.astimezone(UTC).strftime(_CI_DATE_FORMAT) if line.ship_by else None
        ),
        "status": line.status,
        "customer_name": ship.name,
        "address1": ship.address1,
        "address2": ship.address2,
        "city": ship.city,
        "state": ship.state,
        "zip": ship.zip,
        "country": ship.country,
        "phone": ship.phone,
    }
    for key in ("name", "address1", "address2", "city", "state", "zip", "country", "phone"):
        row[f"billing_{key}"] = getattr(bill, key) if bill is not None else None
    row.update(
        shipping_method=record.shipping_method,
        supplier=record.supplier_name,
        voucher_code=line.voucher_code,
        gift_message=line.gift_message,
        order_line_item_uuid=line.order_line_item_uuid,
    )
    return {name: row[name] for name in ORDER_EXPORT_COLUMNS}


def _export_cell(value: Any) -> str:
    return "" if value is None else str(value)


def read_order_export(
    path: Path | str, fmt: str | None = None, limits: SheetLimits = READ_LIMITS
) -> OrderExportResult:
    """Read a CI order export (CSV or XLSX; ``fmt`` None = from the suffix, else sniffed).

    Every usable row becomes a :class:`ParsedRecord` through ``parse_record``; every other row
    an :class:`ExportProblem` with file, row and column. Blank rows are skipped and listed in
    ``blank_rows``. Never raises for bad content: an unreadable file is one problem on row 0.
    A file over one of ``limits`` (size, unpacked size, declared dimension, rows, columns,
    time) is one problem on row 0 naming the limit, and no record is returned from it.
    """
    path = Path(path)
    name = str(path)
    result = OrderExportResult()
    try:
        kind = fmt.lower() if fmt else _sniff_format(path)
        if kind not in ("csv", "xlsx"):
            raise _FileProblem(f"unknown format {kind!r}; use csv or xlsx")
        try:
            info = path.stat()
        except OSError as exc:
            raise _FileProblem(f"cannot read the file: {exc.strerror or exc}") from None
        if not stat.S_ISREG(info.st_mode):  # /dev/zero, a FIFO: no size to bound the read
            raise _FileProblem("not a regular file")
        check_size(info.st_size, limits)
        rows = _read_csv_rows(path, limits) if kind == "csv" else _read_xlsx_rows(path, limits)
        header = next(rows, None)
        if header is None:
            raise _FileProblem("the file is empty (no header row)")
        columns = _header_index(name, header, result)
        if columns is None:
            return result
        seen: dict[int, int] = {}
        for number, cells in enumerate(rows, start=2):
            if all(_cell_text(c) == "" for c in cells):
                result.blank_rows.append(number)
                continue
            _read_row(name, number, cells, columns, seen, result)
    except SheetLimitError as exc:
        # Refused whole: a half-read runaway file is not a list of orders to act on.
        return OrderExportResult(problems=[ExportProblem(name, 0, None, f"refused: {exc}")])
    except _FileProblem as exc:
        result.problems.append(ExportProblem(name, exc.row, exc.column, exc.reason))
    if not result.records and not result.problems:
        result.problems.append(ExportProblem(name, 0, None, "the file has no data rows"))
    return result


class _FileProblem(Exception):
    def __init__(self, reason: str, row: int = 0, column: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.row, self.column = reason, row, column


def _sniff_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".xlsx"):
        return suffix[1:]
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise _FileProblem(f"cannot read the file: {exc.strerror or exc}") from None
    return "xlsx" if magic == b"PK\x03\x04" else "csv"


def _read_csv_rows(path: Path, limits: SheetLimits) -> Iterator[Sequence[Any]]:
    try:
        with path.open("rb") as fh:
            data = fh.read(limits.max_bytes + 1)  # it may have grown since the stat
    except OSError as exc:
        raise _FileProblem(f"cannot read the file: {exc.strerror or exc}") from None
    check_size(len(data), limits)
    try:
        text = data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        raise _FileProblem(
            f"not UTF-8 text (byte {exc.start}); save the file as 'CSV UTF-8'"
        ) from None
    del data
    first = text.split("\n", 1)[0]
    # Excel in many EU locales saves CSV with ';' as the separator.
    delimiter = ";" if first.count(";") > first.count(",") else ","
    try:
        yield from csv_rows(text, limits, delimiter=delimiter, strict=True)
    except csv.Error as exc:
        raise _FileProblem(f"not valid CSV: {exc}") from None


def _read_xlsx_rows(path: Path, limits: SheetLimits) -> Iterator[Sequence[Any]]:
    try:
        yield from xlsx_rows(path, limits)
    except (SheetLimitError, _FileProblem):
        raise
    except Exception as exc:  # openpyxl/zipfile raise many types for a corrupt or foreign file
        raise _FileProblem(f"not a readable .xlsx workbook: {type(exc).__name__}: {exc}") from None


def _header_index(
    name: str, header: Sequence[Any], result: OrderExportResult
) -> dict[str, int] | None:
    columns: dict[str, int] = {}
    for position, cell in enumerate(header):
        label = _cell_text(cell).lstrip("\ufeff").strip().lower()
        if not label:
            continue
        if label in columns:
            result.problems.append(
                ExportProblem(name, 1, label, "the column appears twice in the header")
            )
            return None
        columns[label] = position
    missing = [c for c in ORDER_EXPORT_REQUIRED if c not in columns]
    if missing:
        for column in missing:
            result.problems.append(
                ExportProblem(
                    name,
                    1,
                    column,
                    "required column missing from the header; expected the order-export "
                    "template (see docs/manual-files.md)",
                )
            )
        return None
    return columns


def _read_row(
    name: str,
    number: int,
    cells: Sequence[Any],
    columns: Mapping[str, int],
    seen: dict[int, int],
    result: OrderExportResult,
) -> None:
    values: dict[str, str] = {}
    bad: list[ExportProblem] = []
    for column in ORDER_EXPORT_COLUMNS:
        position = columns.get(column)
        cell = cells[position] if position is not None and position < len(cells) else None
        try:
            values[column] = _clean(column, cell)
        except ValueError as exc:
            bad.append(ExportProblem(name, number, column, str(exc)))
    orderid = values.get("orderid") or None
    line_id = _line_id(values.get("ci_lineitemid", ""))
    ids = (line_id,) if line_id is not None else ()
    if bad:
        result.problems.extend(
            ExportProblem(p.file, p.row, p.column, p.reason, orderid, ids) for p in bad
        )
        return
    raw = _raw_record(values)
    parsed = parse_record(raw)
    if isinstance(parsed, RecordProblem):
        result.problems.extend(_row_problems(name, number, parsed))
        return
    first = seen.get(parsed.lines[0].ci_lineitemid)
    if first is not None:
        result.problems.append(
            ExportProblem(
                name,
                number,
                "ci_lineitemid",
                f"ci_lineitemid {parsed.lines[0].ci_lineitemid} already appears on row {first}",
                parsed.orderid,
                (parsed.lines[0].ci_lineitemid,),
            )
        )
        return
    seen[parsed.lines[0].ci_lineitemid] = number
    result.records.append(parsed)
    result.source_rows.append(number)
    result.raw_records.append(raw)


def _row_problems(name: str, number: int, problem: RecordProblem) -> list[ExportProblem]:
    """Split parse_record's ``path: message; path: message`` into one problem per column."""
    matches = list(_PATH_RE.finditer(problem.reason))
    if not matches:
        return [
            ExportProblem(
                name, number, None, problem.reason, problem.orderid, problem.ci_lineitemids
            )
        ]
    out = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() - 2 if i + 1 < len(matches) else len(problem.reason)
        message = problem.reason[match.end() : end].strip()
        out.append(
            ExportProblem(
                name,
                number,
                _PATH_TO_COLUMN[match.group(1)],
                message,
                problem.orderid,
                problem.ci_lineitemids,
            )
        )
    return out


def _line_id(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and 0 < len(text) <= 19 else None


def _cell_text(value: Any) -> str:
    """A cell (CSV text or an openpyxl value) as trimmed text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))  # an id or quantity Excel stored as a number
        return str(Decimal(repr(value)))
    if isinstance(value, datetime):
        # Excel turned a CI date into a real date; CI dates are UTC.
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime(_CI_DATE_FORMAT)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).strftime(_CI_DATE_FORMAT)
    return str(value).strip()


def _clean(column: str, cell: Any) -> str:
    """Undo spreadsheet damage in one cell; ValueError names what cannot be undone."""
    text = _cell_text(cell)
    if text.startswith("'"):
        text = text[1:].strip()  # Excel's "treat as text" prefix leaked into the value
    formula = _EXCEL_TEXT_FORMULA.match(text)
    if formula:
        text = formula.group(1).strip()
    if column in _ID_COLUMNS or column in _NUMBERISH_TEXT or column == "quantity":
        if _SCIENTIFIC.match(text):
            raise ValueError(
                f"value {text!r} was turned into scientific notation by a spreadsheet and its "
                f"digits are lost; export again and open it as text"
            )
        if _INT_FLOAT.match(text):
            text = text.split(".", 1)[0]
    if column in _MONEY_COLUMNS and text:
        try:
            Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not a number: {text[:40]!r}") from None
    return text


def _raw_record(v: Mapping[str, str]) -> dict[str, Any]:
    """One export row -> one raw CI record in the API shape (one line item)."""

    def opt(key: str) -> str | None:
        return v.get(key) or None

    item: dict[str, Any] = {
        "ci_lineitemid": v["ci_lineitemid"],
        "fulfillment_lineitem_id": opt("fulfillment_lineitem_id"),
        "sku": v["sku"],
        "bom_sku": opt("bom_sku"),
        "name": v["name"],
        "quantity": v["quantity"],
        "unit_price": v["unit_price"],
        "groupon_cost": opt("groupon_cost"),
        "discount": opt("discount"),
        "ship_by_date": opt("ship_by_date"),
        "status": v["status"],
        "voucher_code": v["voucher_code"],
        "gift_message": v["gift_message"],
        "order_line_item_uuid": opt("order_line_item_uuid"),
    }
    customer: dict[str, Any] = {
        "name": v["customer_name"],
        "address1": v["address1"],
        "address2": v["address2"],
        "city": v["city"],
        "state": v["state"],
        "zip": v["zip"],
        "country": v["country"],
        "phone": v["phone"],
    }
    billing_keys = ("name", "address1", "address2", "city", "state", "zip", "country", "phone")
    # A spreadsheet cannot tell null from "": no billing cell at all = no billing address.
    if any(v[f"billing_{k}"] for k in billing_keys):
        customer["billing_address"] = {k: v[f"billing_{k}"] for k in billing_keys}
    record: dict[str, Any] = {
        "orderid": v["orderid"],
        "parent_orderid": opt("parent_orderid"),
        "date": v["date"],
        "supplier": v["supplier"],
        "line_items": [item],
        "customer": customer,
        "shipping": {"method": v["shipping_method"]},
    }
    if v["amount_total"]:
        record["amount"] = {"total": v["amount_total"]}
    return record


# --- writing ---------------------------------------------------------------------------------


def _check_format(fmt: str) -> str:
    kind = (fmt or "").lower()
    if kind not in ("csv", "xlsx"):
        raise ManualFileError(f"unknown file format {fmt!r}; use csv or xlsx")
    return kind


def _write_table(
    path: Path,
    fmt: str,
    header: Sequence[str],
    table: Sequence[Sequence[Any]],
) -> None:
    """Write header + rows to ``path`` atomically (temp file in the same folder, then rename).

    Every cell is neutralised first: text that starts like a formula gets a leading ``'``,
    control characters are escaped (openpyxl would refuse them mid-file)."""
    table = [[neutralise_cell(cell) for cell in row] for row in table]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise ManualFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            if fmt == "csv":
                buffer = io.StringIO(newline="")
                writer = csv.writer(buffer, lineterminator="\r\n")
                writer.writerow(header)
                writer.writerows(["" if c is None else c for c in row] for row in table)
                fh.write(buffer.getvalue().encode("utf-8"))
            else:
                fh.write(_xlsx_bytes(header, table))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ManualFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _xlsx_bytes(header: Sequence[str], table: Sequence[Sequence[Any]]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None  # a new Workbook always has one sheet
    sheet.title = "Sheet1"
    sheet.append(list(header))
    for row in table:
        sheet.append(list(row))  # str values: text cells, so ids keep every digit
    for column in sheet.iter_cols(min_row=2):
        for cell in column:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # a string cell, never a formula (whatever it starts with)
            cell.number_format = "@"  # "Text" format: Excel keeps edited ids as text too
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
