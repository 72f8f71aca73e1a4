"""The manual file path, connector side, round-tripped through the simulator's file endpoints."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import Workbook, load_workbook

from connector.ci.schemas import ParsedRecord, parse_record
from connector.errors import LedgerError
from connector.ledger import Ledger, OutboxRow, open_ledger_file
from connector.ledger.migrations import MIGRATIONS
from connector.ops.manual_files import (
    MANUAL_STATE,
    ORDER_EXPORT_COLUMNS,
    TRACKING_UPLOAD_COLUMNS,
    ManualFileError,
    eligible_for_upload,
    mark_manual,
    read_order_export,
    write_order_export,
    write_tracking_upload,
)
from mock_ci_server import uploads
from mock_ci_server.app import create_app
from mock_ci_server.state import SimState

SUPPLIER = "70001"
TOKEN = "manual-files-token-0123456789"
NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
EXAMPLE = Path(__file__).parents[2] / "fixtures" / "ci-examples" / "get_orders_v4_page2_of_2.json"


@pytest.fixture
def sim() -> SimState:
    state = SimState()
    state.clock.set(NOW)
    state.add_account(SUPPLIER, TOKEN, region="US")
    return state


@pytest.fixture
def client(sim: SimState) -> FlaskClient:
    app: Flask = create_app(sim)
    if "sim_uploads" not in app.blueprints:
        app.register_blueprint(uploads.blueprint)
    return app.test_client()


def api_records(client: FlaskClient) -> list[dict[str, Any]]:
    out = json.loads(
        client.get(
            "/api/v4/get_orders", query_string={"supplier_id": SUPPLIER, "token": TOKEN}
        ).get_data(as_text=True)
    )
    assert out["success"] is True
    records: list[dict[str, Any]] = out["data"]
    return records


def export_file(client: FlaskClient, tmp_path: Path, fmt: str) -> Path:
    response = client.get(
        "/_sim/export/orders", query_string={"supplier_id": SUPPLIER, "token": TOKEN, "format": fmt}
    )
    assert response.status_code == 200
    path = tmp_path / f"orders.{fmt}"
    path.write_bytes(response.get_data())
    return path


def by_line(records: list[ParsedRecord]) -> dict[int, ParsedRecord]:
    return {r.lines[0].ci_lineitemid: r for r in records}


def test_templates_agree_with_the_simulator() -> None:
    assert TRACKING_UPLOAD_COLUMNS == uploads.UPLOAD_COLUMNS
    assert ORDER_EXPORT_COLUMNS == uploads.EXPORT_COLUMNS


# --- order export round trip -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_simulator_export_parses_like_the_api(
    sim: SimState, client: FlaskClient, tmp_path: Path, fmt: str
) -> None:
    sim.seed(SUPPLIER, orders=12, seed=7, lines_per_order=(1, 3), quantity=(1, 3))
    from_api = [parse_record(r) for r in api_records(client)]
    assert all(isinstance(r, ParsedRecord) for r in from_api)
    result = read_order_export(export_file(client, tmp_path, fmt))
    assert result.problems == []
    assert len(result.records) == len(from_api) >= 12
    expected = by_line([r for r in from_api if isinstance(r, ParsedRecord)])
    assert by_line(result.records) == expected  # orderid, ids, Decimal money, dates, addresses
    some = result.records[0]
    assert isinstance(some.lines[0].unit_price, Decimal)
    assert some.order_date.tzinfo is not None
    assert result.source_rows[0] == 2


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_write_then_read_keeps_real_records(tmp_path: Path, fmt: str) -> None:
    raw = json.loads(EXAMPLE.read_text())["data"]
    records = [parse_record(r) for r in raw]
    assert all(isinstance(r, ParsedRecord) for r in records)
    path = tmp_path / f"x.{fmt}"
    assert write_order_export(records, path, fmt) == 4  # type: ignore[arg-type]
    result = read_order_export(path)
    assert result.problems == []
    assert result.records == records
    assert result.raw_records[0]["line_items"][0]["ci_lineitemid"] == "612004511"


# --- tracking upload round trip --------------------------------------------------------------


def ledger(tmp_path: Path, migrations: Any = MIGRATIONS) -> Ledger:
    return open_ledger_file(tmp_path / "ledger.sqlite3", "us", migrations)


def outbox(
    led: Ledger, sim: SimState, line_id: int, carrier: str | None, tracking: str, **kw: Any
) -> OutboxRow:
    line = sim.line(line_id)
    assert line is not None
    return led.insert_outbox(
        shipment_id=f"S-{tracking}",
        ci_lineitemid=line_id,
        tracking=tracking,
        quantity=kw.pop("quantity", line.quantity),
        now=NOW,
        orderid=line.orderid,
        fulfillment_lineitem_id=line.fulfillment_lineitem_id,
        carrier_code=carrier,
        **kw,
    )


def post_upload(client: FlaskClient, path: Path) -> tuple[int, Any]:
    response = client.post(
        "/_sim/import/tracking",
        data={
            "supplier_id": SUPPLIER,
            "token": TOKEN,
            "file": (io.BytesIO(path.read_bytes()), path.name),
        },
        content_type="multipart/form-data",
    )
    return response.status_code, response.get_json()


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_tracking_file_from_outbox_is_accepted_by_the_simulator(
    sim: SimState, client: FlaskClient, tmp_path: Path, fmt: str
) -> None:
    a, b, c = sim.seed(SUPPLIER, orders=3, seed=2, quantity=(2, 2))["ci_lineitemids"]
    led = ledger(tmp_path)
    outbox(led, sim, a, "ups", "1ZAAA")
    outbox(led, sim, b, "usps", "9400B", quantity=1)
    outbox(led, sim, c, None, "HELD1", state="held")  # failed pre-flight: not in the file
    rows = eligible_for_upload(led.outbox_rows())
    assert [r.ci_lineitemid for r in rows] == [a, b]
    path = tmp_path / f"tracking.{fmt}"
    assert write_tracking_upload(rows, path, fmt, skus={a: "SKU-A"}) == 2
    status, out = post_upload(client, path)
    assert (status, out) == (200, {"success": True, "rows": 2})
    state = client.get("/_sim/state", query_string={"supplier_id": SUPPLIER}).get_json()
    lines = {ln["ci_lineitemid"]: ln for ln in state["lines"]}
    assert (lines[a]["status"], lines[a]["shipped_quantity"]) == ("shipped", 2)
    assert (lines[b]["status"], lines[b]["shipped_quantity"]) == ("partially_shipped", 1)
    assert lines[c]["status"] == "open"
    assert lines[a]["tracking"][0]["tracking"] == "1ZAAA"


def test_xlsx_tracking_ids_are_text_cells(sim: SimState, tmp_path: Path) -> None:
    (a,) = sim.seed(SUPPLIER, orders=1, seed=2)["ci_lineitemids"]
    led = ledger(tmp_path)
    row = outbox(led, sim, a, "ups", "1Z1")
    path = tmp_path / "t.xlsx"
    write_tracking_upload([row], path, "xlsx", skus={a: "0012345"})
    sheet = load_workbook(path).worksheets[0]
    assert [c.value for c in sheet[1]] == list(TRACKING_UPLOAD_COLUMNS)
    cells = {name: sheet.cell(2, i + 1) for i, name in enumerate(TRACKING_UPLOAD_COLUMNS)}
    assert cells["ci_lineitemid"].value == str(a)
    assert cells["ci_lineitemid"].data_type == "s"
    assert cells["sku"].value == "0012345"  # leading zero kept


def test_unapproved_carrier_upload_is_refused_naming_the_row(
    sim: SimState, client: FlaskClient, tmp_path: Path
) -> None:
    a, b = sim.seed(SUPPLIER, orders=2, seed=2)["ci_lineitemids"]
    led = ledger(tmp_path)
    rows = [outbox(led, sim, a, "ups", "1ZOK"), outbox(led, sim, b, "DPDUK", "DPD1")]
    path = tmp_path / "t.csv"
    write_tracking_upload(rows, path)
    status, out = post_upload(client, path)
    assert status == 400
    assert out["reason"].startswith(
        f"row 3 (ci_lineitemid {b}): carrier 'DPDUK' is not an approved"
    )
    assert sim.line(a).status == "open"  # type: ignore[union-attr]


def test_write_tracking_upload_refuses_rows_that_are_not_uploadable(
    sim: SimState, tmp_path: Path
) -> None:
    (a,) = sim.seed(SUPPLIER, orders=1, seed=2)["ci_lineitemids"]
    led = ledger(tmp_path)
    accepted = outbox(led, sim, a, "ups", "1Z", state="accepted")
    with pytest.raises(ManualFileError, match=r"state 'accepted'"):
        write_tracking_upload([accepted], tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists()
    with pytest.raises(ManualFileError, match="unknown file format 'pdf'"):
        write_tracking_upload([], tmp_path / "t.pdf", "pdf")


def test_csv_tracking_file_layout(sim: SimState, tmp_path: Path) -> None:
    (a,) = sim.seed(SUPPLIER, orders=1, seed=2, quantity=(3, 3))["ci_lineitemids"]
    led = ledger(tmp_path)
    row = outbox(led, sim, a, "fedex", "7777", quantity=2)
    path = tmp_path / "t.csv"
    write_tracking_upload([row], path)
    rows = list(csv.reader(io.StringIO(path.read_text("utf-8"))))
    line = sim.line(a)
    assert line is not None
    assert rows == [
        list(TRACKING_UPLOAD_COLUMNS),
        [line.orderid, str(a), line.fulfillment_lineitem_id or "", "", "2", "fedex", "7777"],
    ]


# --- marking rows as handed to the manual path -----------------------------------------------


def test_mark_manual_with_a_ledger_that_knows_the_state(sim: SimState, tmp_path: Path) -> None:
    (a,) = sim.seed(SUPPLIER, orders=1, seed=2)["ci_lineitemids"]
    led = ledger(tmp_path)
    row = outbox(led, sim, a, "ups", "1Z")
    mark_manual(led, [row], tmp_path / "t.csv", NOW)
    (stored,) = led.outbox_rows()
    assert stored.state == MANUAL_STATE
    assert stored.reason == f"written to {tmp_path / 't.csv'}"
    assert led.outbox_rows(states=("pending", "sending", "retry")) == []  # flush won't see it


def test_v1_ledger_is_migrated_and_then_accepts_the_manual_state(
    sim: SimState, tmp_path: Path
) -> None:
    a, b = sim.seed(SUPPLIER, orders=2, seed=2)["ci_lineitemids"]
    old = ledger(tmp_path, MIGRATIONS[:1])
    rows = [outbox(old, sim, a, "ups", "1Z"), outbox(old, sim, b, "ups", "1Y")]
    with pytest.raises(LedgerError, match="CHECK constraint"):
        mark_manual(old, rows, tmp_path / "t.csv", NOW)
    assert [r.state for r in old.outbox_rows()] == ["pending", "pending"]  # nothing half-done
    old.close()
    led = ledger(tmp_path)  # opening with this version's migrations upgrades the file
    assert led.schema_version() == max(v for v, _ in MIGRATIONS)
    kept = led.outbox_rows()
    assert [(r.ci_lineitemid, r.tracking, r.state) for r in kept] == [
        (a, "1Z", "pending"),
        (b, "1Y", "pending"),
    ]
    mark_manual(led, kept, tmp_path / "t.csv", NOW)
    assert {r.state for r in led.outbox_rows()} == {MANUAL_STATE}


# --- hostile order exports -------------------------------------------------------------------


def example_rows() -> list[dict[str, str]]:
    """The example records as export rows (written by write_order_export, read back as text)."""
    records = [parse_record(r) for r in json.loads(EXAMPLE.read_text())["data"]]
    tmp = Path(tempfile.mkdtemp()) / "rows.csv"
    write_order_export(records, tmp)  # type: ignore[arg-type]
    return list(csv.DictReader(io.StringIO(tmp.read_text("utf-8"))))


def write_csv(path: Path, rows: list[dict[str, str]], columns: Any = ORDER_EXPORT_COLUMNS) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def test_missing_required_column_is_named_on_the_header_row(tmp_path: Path) -> None:
    columns = [c for c in ORDER_EXPORT_COLUMNS if c != "quantity"]
    path = write_csv(tmp_path / "e.csv", example_rows(), columns)
    result = read_order_export(path)
    assert result.records == []
    assert [(p.row, p.column) for p in result.problems] == [(1, "quantity")]
    assert str(result.problems[0]).startswith(f"{path} row 1 column 'quantity': required column")


def test_bad_cells_are_reported_with_row_and_column(tmp_path: Path) -> None:
    rows = example_rows()
    rows[0]["quantity"] = "two"
    rows[1]["date"] = "2024-03-04"
    rows[2]["unit_price"] = "12,50"
    rows[3]["customer_name"] = ""
    result = read_order_export(write_csv(tmp_path / "e.csv", rows))
    assert result.records == []
    found = {(p.row, p.column) for p in result.problems}
    assert found == {(2, "quantity"), (3, "date"), (4, "unit_price"), (5, "customer_name")}
    quantity = next(p for p in result.problems if p.column == "quantity")
    assert "'two'" in quantity.reason
    assert quantity.orderid == "1499000251"
    assert quantity.ci_lineitemids == (612004511,)


def test_excel_mangled_ids_bom_and_blank_rows(tmp_path: Path) -> None:
    rows = example_rows()
    rows[0]["ci_lineitemid"] = "612004511.0"
    rows[0]["fulfillment_lineitem_id"] = "'1302200451"
    rows[1]["sku"] = '="8009990001129"'
    rows[2]["ci_lineitemid"] = "6.12005E+08"  # digits lost: must not be guessed
    rows[3]["zip"] = "40121.0"
    blank = dict.fromkeys(ORDER_EXPORT_COLUMNS, "")
    path = write_csv(tmp_path / "e.csv", [rows[0], blank, rows[1], rows[2], rows[3], blank])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # Excel's CSV UTF-8 BOM
    result = read_order_export(path)
    assert result.blank_rows == [3, 7]
    got = by_line(result.records)
    assert got[612004511].lines[0].fulfillment_lineitem_id == "1302200451"
    assert got[612004530].lines[0].sku == "8009990001129"
    assert got[612004567].ship_to.zip == "40121"
    assert result.source_rows == [2, 4, 6]
    (problem,) = result.problems
    assert (problem.row, problem.column) == (5, "ci_lineitemid")
    assert "scientific notation" in problem.reason


def test_duplicate_line_and_semicolon_csv(tmp_path: Path) -> None:
    rows = example_rows()
    path = tmp_path / "e.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";")
    writer.writerow(ORDER_EXPORT_COLUMNS)
    for row in (rows[0], rows[1], rows[0]):
        writer.writerow([row[c] for c in ORDER_EXPORT_COLUMNS])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    result = read_order_export(path)
    assert len(result.records) == 2
    (problem,) = result.problems
    assert (problem.row, problem.column) == (4, "ci_lineitemid")
    assert "already appears on row 2" in problem.reason


def test_xlsx_with_numeric_ids_and_real_dates(tmp_path: Path) -> None:
    rows = example_rows()
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(list(ORDER_EXPORT_COLUMNS))
    values: list[Any] = [rows[0][c] for c in ORDER_EXPORT_COLUMNS]
    values[ORDER_EXPORT_COLUMNS.index("ci_lineitemid")] = 612004511.0
    values[ORDER_EXPORT_COLUMNS.index("quantity")] = 1
    values[ORDER_EXPORT_COLUMNS.index("unit_price")] = 49.99
    values[ORDER_EXPORT_COLUMNS.index("date")] = datetime(2024, 3, 4, 9, 15)
    sheet.append(values)
    sheet.append([None] * len(ORDER_EXPORT_COLUMNS))
    path = tmp_path / "e.xlsx"
    workbook.save(path)
    result = read_order_export(path)
    assert result.problems == []
    (record,) = result.records
    assert record.lines[0].ci_lineitemid == 612004511
    assert record.lines[0].unit_price == Decimal("49.99")
    assert record.order_date == datetime(2024, 3, 4, 9, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("e.csv", b"", "the file is empty"),
        ("e.csv", ",".join(ORDER_EXPORT_COLUMNS).encode(), "no data rows"),
        ("e.csv", b"orderid,\xe9\n", "not UTF-8"),
        ("e.xlsx", b"PK\x03\x04garbage", "not a readable .xlsx"),
        ("e.csv", b"orderid,orderid\n1,2\n", "appears twice"),
        (
            "e.csv",
            ",".join(ORDER_EXPORT_COLUMNS).encode() + b'\n"' + b"x" * 200_000 + b'"\n',
            "not valid CSV",
        ),
    ],
)
def test_unreadable_files_are_one_clear_problem(
    tmp_path: Path, name: str, content: bytes, fragment: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = read_order_export(path)
    assert result.records == []
    assert len(result.problems) == 1
    assert fragment in result.problems[0].reason
    assert result.problems[0].file == str(path)


def test_missing_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    result = read_order_export(tmp_path / "nope.csv")
    assert "cannot read the file" in result.problems[0].reason
