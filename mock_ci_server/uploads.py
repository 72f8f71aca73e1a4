"""CI's manual file path: Import -> Tracking Numbers and Export -> Orders (``/_sim/...``).

CI's real column templates are not public: both templates below are ASSUMED and documented in
``docs/manual-files.md``. This is the simulator's own copy (it never imports the connector); a
test proves it agrees with ``connector/ops/manual_files.py``.

An upload goes through :meth:`SimState.tracking_notification` with
``call="ui/import_tracking"``, so the same rules as the API apply (approved carriers,
quantities, shared-address rule, six numbers per order, no edits), all-or-nothing. Refusals
name the file row; nothing here answers with a 500.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from mock_ci_server.errors import InvalidCredentials, SimAPIError
from mock_ci_server.generator import format_ci_datetime
from mock_ci_server.sheet_limits import (
    SheetLimitError,
    SheetLimits,
    check_size,
    csv_rows,
    xlsx_rows,
)
from mock_ci_server.state import LINE_STATUSES, SimState, TrackingRequest
from mock_ci_server.textsafe import neutralise_cell

__all__ = [
    "EXPORT_COLUMNS",
    "MAX_UPLOAD_BYTES",
    "UPLOAD_COLUMNS",
    "UploadError",
    "blueprint",
    "export_orders_file",
    "export_rows",
    "import_tracking_file",
    "parse_tracking_upload",
    "render_export",
]

blueprint = Blueprint("sim_uploads", __name__, url_prefix="/_sim")

UPLOAD_COLUMNS: tuple[str, ...] = (
    "orderid",
    "ci_lineitemid",
    "fulfillment_lineitem_id",
    "sku",
    "quantity",
    "carrier",
    "tracking",
)
"""ASSUMED Import -> Tracking Numbers template. Required: ``carrier``, ``tracking`` and one of
``ci_lineitemid`` / ``fulfillment_lineitem_id``; ``quantity`` empty = every open unit;
``orderid`` (checked against the line when given) and ``sku`` are informational."""

_UPLOAD_REQUIRED = ("carrier", "tracking")

EXPORT_COLUMNS: tuple[str, ...] = (
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
"""ASSUMED Export -> Orders template: one row per line item, ids as text, money as numbers."""

_TEXT_EXPORT = frozenset(
    {"orderid", "parent_orderid", "ci_lineitemid", "fulfillment_lineitem_id", "sku", "bom_sku"}
)
_NUMBER_EXPORT = frozenset({"quantity", "unit_price", "groupon_cost", "discount", "amount_total"})

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_ROWS = 10_000
UPLOAD_LIMITS = SheetLimits(
    max_bytes=MAX_UPLOAD_BYTES,
    max_unzipped_bytes=64 * 1024 * 1024,
    max_member_bytes=32 * 1024 * 1024,
    max_shared_strings=100_000,  # 10k rows x 7 columns fit; openpyxl needs ~3 s per 100k
    max_rows=2 * MAX_UPLOAD_ROWS,  # room for blank rows; data rows are capped on their own
    max_columns=256,
    max_cells=2 * MAX_UPLOAD_ROWS * 64,
    max_seconds=30.0,
)
"""What one uploaded file may hold; the simulator has a handful of threads to protect."""
_INT_FLOAT = re.compile(r"^\d+\.0*$")
_LABEL = re.compile(r"tracking_info\[(\d+)\] \((ci_lineitem_id|fulfillment_lineitem_id) ")


class UploadError(Exception):
    """The upload is refused; ``reason`` says why (naming the file row when there is one)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _state() -> SimState:
    state: SimState = current_app.extensions["sim_state"]
    return state


def _refuse(reason: str, status: int) -> Response:
    response = jsonify({"success": False, "reason": reason})
    response.status_code = status
    return response


# --- Import -> Tracking Numbers --------------------------------------------------------------


@blueprint.post("/import/tracking")
def import_tracking() -> Response:
    """Multipart ``file`` (.csv/.xlsx), ``supplier_id``, ``token``: CI's tracking import."""
    try:
        supplier_id = request.form.get("supplier_id", "")
        token = request.form.get("token", "")
        if not supplier_id or not token:
            raise UploadError("supplier_id and token form fields are required")
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise UploadError("a file field named 'file' (.csv or .xlsx) is required")
        data = upload.stream.read(MAX_UPLOAD_BYTES + 1)
        rows = import_tracking_file(_state(), supplier_id, token, upload.filename, data)
    except InvalidCredentials as exc:
        return _refuse(exc.reason, 401)
    except UploadError as exc:
        return _refuse(exc.reason, exc.status)
    return jsonify({"success": True, "rows": rows})


def import_tracking_file(
    state: SimState, supplier_id: str, token: str, filename: str, data: bytes
) -> int:
    """Import one tracking file for a supplier (all-or-nothing); returns the rows applied.

    Shared by the upload endpoint and the web console. :raises InvalidCredentials: bad
    credentials. :raises UploadError: anything wrong with the file, naming the row.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"the file is larger than {MAX_UPLOAD_BYTES} bytes")
    state.authenticate(supplier_id, token)
    items, rows = parse_tracking_upload(filename, data)
    _check_orderids(state, supplier_id, items, rows)
    try:
        state.tracking_notification(supplier_id, token, items, call="ui/import_tracking")
    except InvalidCredentials:
        raise
    except SimAPIError as exc:
        raise UploadError(_relabel(exc.reason, rows)) from None
    return len(items)


def parse_tracking_upload(
    filename: str, data: bytes
) -> tuple[list[TrackingRequest], list[tuple[int, str]]]:
    """Parse an uploaded tracking file into requests.

    Returns the requests (``index`` = position) and, per request, ``(file row, orderid)``.

    :raises UploadError: bad file type, unreadable file, missing columns, no data rows, or a
        bad row (the reason names the row and column).
    """
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in ("csv", "xlsx"):
        raise UploadError(f"file {filename!r}: only .csv or .xlsx files can be imported")
    try:
        return _parse_table(filename, _csv_rows(data) if suffix == "csv" else _xlsx_rows(data))
    except SheetLimitError as exc:
        raise UploadError(f"file {filename!r} refused: {exc}", 413) from None


def _parse_table(
    filename: str, table: Iterator[Sequence[Any]]
) -> tuple[list[TrackingRequest], list[tuple[int, str]]]:
    header = next(table, None)
    if header is None:
        raise UploadError(f"file {filename!r} is empty")
    columns: dict[str, int] = {}
    for position, cell in enumerate(header):
        label = _text(cell).lstrip("\ufeff").strip().lower()
        if label and label not in columns:
            columns[label] = position
    missing = [c for c in _UPLOAD_REQUIRED if c not in columns]
    if "ci_lineitemid" not in columns and "fulfillment_lineitem_id" not in columns:
        missing.append("ci_lineitemid")
    if missing:
        raise UploadError(
            f"file {filename!r}: missing column(s) {', '.join(missing)}; "
            f"expected header {','.join(UPLOAD_COLUMNS)}"
        )
    items: list[TrackingRequest] = []
    rows: list[tuple[int, str]] = []
    for number, cells in enumerate(table, start=2):
        values = {c: _cell(cells, columns, c) for c in UPLOAD_COLUMNS}
        if not any(_text(c) for c in cells):
            continue  # blank rows are common at the end of spreadsheets
        if len(items) >= MAX_UPLOAD_ROWS:
            raise UploadError(f"more than {MAX_UPLOAD_ROWS} rows in one file")
        items.append(_request(number, len(items), values))
        rows.append((number, values["orderid"]))
    if not items:
        raise UploadError(f"file {filename!r} has no data rows")
    return items, rows


def _request(number: int, index: int, v: dict[str, str]) -> TrackingRequest:
    where = f"row {number}"
    for column in ("carrier", "tracking"):
        if not v[column]:
            raise UploadError(f"{where}: column {column!r} is empty")
    line_id: int | None = None
    if v["ci_lineitemid"]:
        if not v["ci_lineitemid"].isdigit() or int(v["ci_lineitemid"]) <= 0:
            raise UploadError(
                f"{where}: column 'ci_lineitemid' must be a positive whole number, "
                f"got {v['ci_lineitemid']!r}"
            )
        line_id = int(v["ci_lineitemid"])
    elif not v["fulfillment_lineitem_id"]:
        raise UploadError(f"{where}: give ci_lineitemid or fulfillment_lineitem_id")
    quantity: int | None = None
    if v["quantity"]:
        if not v["quantity"].isdigit() or int(v["quantity"]) < 1:
            raise UploadError(
                f"{where}: column 'quantity' must be a whole number >= 1, got {v['quantity']!r}"
            )
        quantity = int(v["quantity"])
    return TrackingRequest(
        index=index,
        carrier=v["carrier"],
        tracking=v["tracking"],
        quantity=quantity,
        ci_lineitemid=line_id,
        fulfillment_lineitem_id=None if line_id is not None else v["fulfillment_lineitem_id"],
    )


def _check_orderids(
    state: SimState, supplier_id: str, items: list[TrackingRequest], rows: list[tuple[int, str]]
) -> None:
    """A row's orderid, when given, must be the order of its line (catches shifted rows)."""
    for item, (number, orderid) in zip(items, rows, strict=True):
        if not orderid or item.ci_lineitemid is None:
            continue
        line = state.line(item.ci_lineitemid)
        if line is not None and line.supplier_id == supplier_id and line.orderid != orderid:
            raise UploadError(
                f"row {number} (ci_lineitemid {item.ci_lineitemid}): orderid {orderid!r} is not "
                f"the order of this line ({line.orderid}); nothing was imported"
            )


def _relabel(reason: str, rows: list[tuple[int, str]]) -> str:
    """``tracking_info[3] (ci_lineitem_id 5)`` -> ``row 5 (ci_lineitemid 5)``: name file rows."""

    def sub(match: re.Match[str]) -> str:
        index = int(match.group(1))
        number = rows[index][0] if index < len(rows) else index
        key = "ci_lineitemid" if match.group(2) == "ci_lineitem_id" else match.group(2)
        return f"row {number} ({key} "

    return _LABEL.sub(sub, reason) + "; nothing was imported"


def _cell(cells: Sequence[Any], columns: dict[str, int], column: str) -> str:
    position = columns.get(column)
    text = _text(cells[position]) if position is not None and position < len(cells) else ""
    if text.startswith("'"):
        text = text[1:].strip()
    if column in ("ci_lineitemid", "fulfillment_lineitem_id", "quantity") and _INT_FLOAT.match(
        text
    ):
        text = text.split(".", 1)[0]  # 612004511.0 from a spreadsheet
    return text


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _csv_rows(data: bytes) -> Iterator[Sequence[Any]]:
    check_size(len(data), UPLOAD_LIMITS)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadError(f"the file is not UTF-8 text (byte {exc.start})") from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    try:
        yield from csv_rows(text, UPLOAD_LIMITS, delimiter=delimiter)
    except csv.Error as exc:  # e.g. a field over csv's size limit
        raise UploadError(f"not valid CSV: {exc}") from None


def _xlsx_rows(data: bytes) -> Iterator[Sequence[Any]]:
    check_size(len(data), UPLOAD_LIMITS)
    try:
        yield from xlsx_rows(io.BytesIO(data), UPLOAD_LIMITS)
    except (SheetLimitError, UploadError):
        raise
    except Exception as exc:  # a corrupt or foreign file: many exception types
        raise UploadError(f"not a readable .xlsx workbook ({type(exc).__name__})") from None


# --- Export -> Orders ------------------------------------------------------------------------


@blueprint.get("/export/orders")
def export_orders() -> Response:
    """``?supplier_id&token&format=csv|xlsx[&status=open]``: CI's order export for a supplier.

    Assumed: exporting does not mark the lines exported here (evidence says the CI UI export
    may; pass ``mark_exported=1`` to do that too, recorded as ``ui/export_orders``).
    """
    args = request.args
    supplier_id, token = args.get("supplier_id", ""), args.get("token", "")
    fmt = args.get("format", "csv").lower()
    status = args.get("status") or None
    if not supplier_id or not token:
        return _refuse("supplier_id and token are required", 400)
    if fmt not in ("csv", "xlsx"):
        return _refuse(f"format must be csv or xlsx, got {fmt!r}", 400)
    if status is not None and status not in LINE_STATUSES:
        return _refuse(f"status must be one of {', '.join(LINE_STATUSES)}, got {status!r}", 400)
    try:
        body, mimetype, filename = export_orders_file(
            _state(), supplier_id, token, fmt, status, args.get("mark_exported") in ("1", "true")
        )
    except InvalidCredentials as exc:
        return _refuse(exc.reason, 401)
    return Response(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def export_orders_file(
    state: SimState,
    supplier_id: str,
    token: str,
    fmt: str,
    status: str | None = None,
    mark_exported: bool = False,
) -> tuple[bytes, str, str]:
    """A supplier's order export: (file bytes, MIME type, file name). Shared by the export
    endpoint and the web console. :raises InvalidCredentials: bad credentials."""
    state.authenticate(supplier_id, token)
    lines = state.get_state(supplier_id, include_records=True)["lines"]
    chosen = [ln for ln in lines if status is None or ln["status"] == status]
    if mark_exported and chosen:
        state.mark_exported(
            supplier_id, token, [ln["ci_lineitemid"] for ln in chosen], call="ui/export_orders"
        )
    table = export_rows(chosen)
    body, mimetype = render_export(table, fmt)
    stamp = state.clock.now().strftime("%Y%m%d%H%M")
    return body, mimetype, f"orders-{stamp}.{fmt}"


def export_rows(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``get_state`` line dicts (with records) -> export rows (native values, by column)."""
    out: list[dict[str, Any]] = []
    for ln in lines:
        record = ln["record"]
        item = record["line_items"][0]
        customer = record.get("customer") or {}
        billing = customer.get("billing_address") or {}
        amount = record.get("amount") or {}
        shipping = record.get("shipping") or {}
        row: dict[str, Any] = {
            "orderid": record["orderid"],
            "parent_orderid": record.get("parent_orderid"),
            "date": record.get("date"),
            "customer_name": customer.get("name"),
            "amount_total": amount.get("total"),
            "status": ln["status"],
            "shipping_method": shipping.get("method"),
            "supplier": record.get("supplier"),
        }
        for key in (
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
            "voucher_code",
            "gift_message",
            "order_line_item_uuid",
        ):
            row[key] = item.get(key)
        for key in ("address1", "address2", "city", "state", "zip", "country", "phone"):
            row[key] = customer.get(key)
        for key in ("name", "address1", "address2", "city", "state", "zip", "country", "phone"):
            row[f"billing_{key}"] = billing.get(key)
        out.append({c: row.get(c) for c in EXPORT_COLUMNS})
    return out


def render_export(table: list[dict[str, Any]], fmt: str) -> tuple[bytes, str]:
    """Export rows -> file bytes and MIME type. CSV: UTF-8 with BOM (what Excel writes as
    "CSV UTF-8"). XLSX: ids as text cells, money and quantities as numbers.

    Customer data is untrusted: every cell goes through :func:`neutralise_cell` (a formula-like
    value gets a leading ``'``, control characters are escaped) and every XLSX text cell is a
    string cell, never a formula; nothing in a record can make this answer 500."""
    if fmt == "csv":
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(EXPORT_COLUMNS)
        for row in table:
            writer.writerow(["" if row[c] is None else _csv_value(row[c]) for c in EXPORT_COLUMNS])
        return ("\ufeff" + buffer.getvalue()).encode("utf-8"), "text/csv"
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None  # a new Workbook always has one sheet
    sheet.title = "Orders"
    sheet.append(list(EXPORT_COLUMNS))
    for row in table:
        sheet.append([_xlsx_value(c, row[c]) for c in EXPORT_COLUMNS])
    for cells in sheet.iter_rows(min_row=2):
        for cell in cells:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # text, never a formula
    out = io.BytesIO()
    workbook.save(out)
    return (
        out.getvalue(),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )


def _csv_value(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(neutralise_cell(value))


def _xlsx_value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _NUMBER_EXPORT and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if column in _TEXT_EXPORT:
        return neutralise_cell(str(value))
    if isinstance(value, datetime):
        return format_ci_datetime(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return neutralise_cell(str(value))
