"""The simulator's manual file path: Import -> Tracking Numbers and Export -> Orders."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import Workbook, load_workbook

from mock_ci_server.app import create_app
from mock_ci_server.state import SimState
from mock_ci_server.uploads import EXPORT_COLUMNS, UPLOAD_COLUMNS, blueprint

from .conftest import OTHER, OTHER_TOKEN, SUPPLIER, TOKEN, get_orders


@pytest.fixture
def app(sim_state: SimState) -> Flask:
    flask_app = create_app(sim_state)
    if "sim_uploads" not in flask_app.blueprints:  # the lead may register it in create_app
        flask_app.register_blueprint(blueprint)
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def seed(sim_state: SimState, orders: int = 2, quantity: int = 1) -> list[int]:
    ids: list[int] = sim_state.seed(SUPPLIER, orders=orders, seed=3, quantity=(quantity, quantity))[
        "ci_lineitemids"
    ]
    return ids


def csv_bytes(rows: list[list[Any]], header: tuple[str, ...] = UPLOAD_COLUMNS) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def xlsx_bytes(rows: list[list[Any]], header: tuple[str, ...] = UPLOAD_COLUMNS) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(list(header))
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def upload(
    client: FlaskClient,
    data: bytes,
    filename: str = "tracking.csv",
    supplier: str = SUPPLIER,
    token: str = TOKEN,
) -> tuple[int, Any]:
    response = client.post(
        "/_sim/import/tracking",
        data={"supplier_id": supplier, "token": token, "file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )
    return response.status_code, response.get_json()


def row(sim_state: SimState, line_id: int, carrier: str, tracking: str, qty: Any = "") -> list[Any]:
    line = sim_state.line(line_id)
    assert line is not None
    return [line.orderid, line_id, line.fulfillment_lineitem_id, "SKU", qty, carrier, tracking]


def lines_by_id(client: FlaskClient) -> dict[int, Any]:
    state = client.get("/_sim/state", query_string={"supplier_id": SUPPLIER}).get_json()
    return {ln["ci_lineitemid"]: ln for ln in state["lines"]}


# --- import ----------------------------------------------------------------------------------


def test_csv_upload_ships_lines_through_the_api_rules(
    sim_state: SimState, client: FlaskClient
) -> None:
    a, b = seed(sim_state, orders=2, quantity=2)
    data = csv_bytes([row(sim_state, a, "ups", "1ZA"), row(sim_state, b, "USPS", "9400B", 1)])
    status, out = upload(client, data)
    assert (status, out) == (200, {"success": True, "rows": 2})
    lines = lines_by_id(client)
    assert (lines[a]["status"], lines[a]["shipped_quantity"]) == ("shipped", 2)
    assert (lines[b]["status"], lines[b]["shipped_quantity"]) == ("partially_shipped", 1)
    assert lines[a]["calls"][-1]["call"] == "ui/import_tracking"
    assert lines[a]["tracking"][0]["carrier"] == "ups"


def test_xlsx_upload_with_numeric_ids_and_bom_header(
    sim_state: SimState, client: FlaskClient
) -> None:
    (a,) = seed(sim_state, orders=1)
    line = sim_state.line(a)
    assert line is not None
    # Excel stores ids as floats when a merchant retypes them; the first header cell has a BOM.
    header = ("\ufefforderid", *UPLOAD_COLUMNS[1:])
    data = xlsx_bytes([[line.orderid, float(a), None, "S", 1.0, "fedex", "7712"]], header)
    status, out = upload(client, data, "done.XLSX")
    assert (status, out) == (200, {"success": True, "rows": 1})
    assert lines_by_id(client)[a]["status"] == "shipped"


def test_fulfillment_id_only_row_and_blank_rows(sim_state: SimState, client: FlaskClient) -> None:
    (a,) = seed(sim_state, orders=1)
    line = sim_state.line(a)
    assert line is not None
    data = csv_bytes([["", "", line.fulfillment_lineitem_id, "", "", "ups", "1ZF"], [""] * 7, []])
    assert upload(client, data) == (200, {"success": True, "rows": 1})
    assert lines_by_id(client)[a]["status"] == "shipped"


def test_unapproved_carrier_refused_naming_the_row_and_nothing_applied(
    sim_state: SimState, client: FlaskClient
) -> None:
    a, b = seed(sim_state, orders=2)
    data = csv_bytes([row(sim_state, a, "ups", "1ZOK"), row(sim_state, b, "pigeon", "P1")])
    status, out = upload(client, data)
    assert status == 400
    assert out["success"] is False
    assert out["reason"].startswith(f"row 3 (ci_lineitemid {b}): carrier 'pigeon'")
    assert "nothing was imported" in out["reason"]
    lines = lines_by_id(client)
    assert lines[a]["status"] == "open"  # all-or-nothing, like the API
    assert lines[a]["tracking"] == []


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        ([["1", "12x", "", "", "", "ups", "T"]], "row 2: column 'ci_lineitemid'"),
        ([["1", "5", "", "", "0", "ups", "T"]], "row 2: column 'quantity'"),
        ([["1", "5", "", "", "", "", "T"]], "row 2: column 'carrier' is empty"),
        ([["", "", "", "", "", "ups", "T"]], "row 2: give ci_lineitemid or fulfillment"),
    ],
)
def test_bad_rows_are_named(
    sim_state: SimState, client: FlaskClient, rows: list[list[Any]], fragment: str
) -> None:
    status, out = upload(client, csv_bytes(rows))
    assert status == 400
    assert fragment in out["reason"]


def test_quantity_over_open_and_edit_refused_with_row(
    sim_state: SimState, client: FlaskClient
) -> None:
    (a,) = seed(sim_state, orders=1)
    status, out = upload(client, csv_bytes([row(sim_state, a, "ups", "T1", 5)]))
    assert status == 400
    assert (
        f"row 2 (ci_lineitemid {a}): quantity 5 must be between 1 and the open quantity 1"
        in (out["reason"])
    )
    assert upload(client, csv_bytes([row(sim_state, a, "ups", "T1")]))[0] == 200
    status, out = upload(client, csv_bytes([row(sim_state, a, "ups", "T2")]))
    assert status == 400
    assert "already fully shipped" in out["reason"]


def test_orderid_mismatch_is_refused(sim_state: SimState, client: FlaskClient) -> None:
    a, b = seed(sim_state, orders=2)
    bad = row(sim_state, a, "ups", "1Z")
    bad[0] = sim_state.line(b).orderid  # type: ignore[union-attr]
    status, out = upload(client, csv_bytes([bad]))
    assert status == 400
    assert f"row 2 (ci_lineitemid {a}): orderid" in out["reason"]


@pytest.mark.parametrize(
    ("data", "filename", "fragment"),
    [
        (b"orderid,carrier\n", "t.txt", "only .csv or .xlsx"),
        (b"", "t.csv", "is empty"),
        (b"orderid,ci_lineitemid,carrier\n1,2,ups\n", "t.csv", "missing column(s) tracking"),
        (b"orderid,carrier,tracking\n1,ups,T\n", "t.csv", "missing column(s) ci_lineitemid"),
        (csv_bytes([]), "t.csv", "has no data rows"),
        (b"PK\x03\x04 not really a zip", "t.xlsx", "not a readable .xlsx"),
        ("carrier,tracking\n\xe9".encode("latin-1"), "t.csv", "not UTF-8"),
        (
            b'ci_lineitemid,carrier,tracking\n1,ups,"' + b"x" * 200_000 + b'"\n',
            "t.csv",
            "not valid CSV",
        ),
    ],
)
def test_bad_files_get_a_clear_reason(
    client: FlaskClient, data: bytes, filename: str, fragment: str
) -> None:
    status, out = upload(client, data, filename)
    assert status == 400
    assert out["success"] is False
    assert fragment in out["reason"]


def test_credentials_and_missing_file(sim_state: SimState, client: FlaskClient) -> None:
    (a,) = seed(sim_state, orders=1)
    data = csv_bytes([row(sim_state, a, "ups", "1Z")])
    status, out = upload(client, data, token="wrong")
    assert status == 401
    assert "wrong" not in out["reason"]
    # Another supplier's line behaves as unknown.
    status, out = upload(client, data, supplier=OTHER, token=OTHER_TOKEN)
    assert status == 400
    assert "row 2" in out["reason"]
    assert "unknown line item" in out["reason"]
    response = client.post("/_sim/import/tracking", data={"supplier_id": SUPPLIER, "token": TOKEN})
    assert response.status_code == 400
    assert "'file'" in response.get_json()["reason"]


# --- export ----------------------------------------------------------------------------------


def test_csv_export_has_template_header_bom_and_every_line(
    sim_state: SimState, client: FlaskClient
) -> None:
    ids = seed(sim_state, orders=3)
    response = client.get(
        "/_sim/export/orders", query_string={"supplier_id": SUPPLIER, "token": TOKEN}
    )
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    raw = response.get_data()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    by_id = {int(r[EXPORT_COLUMNS.index("ci_lineitemid")]): r for r in rows[1:]}
    assert sorted(by_id) == sorted(ids)
    line = sim_state.line(ids[0])
    assert line is not None
    first = dict(zip(EXPORT_COLUMNS, by_id[ids[0]], strict=True))
    assert first["orderid"] == line.orderid
    assert first["date"] == line.record["date"]
    assert first["customer_name"] == line.record["customer"]["name"]
    assert first["status"] == "open"


def test_status_filter_and_xlsx_ids_are_text(sim_state: SimState, client: FlaskClient) -> None:
    a, b = seed(sim_state, orders=2)
    assert upload(client, csv_bytes([row(sim_state, a, "ups", "1Z")]))[0] == 200
    response = client.get(
        "/_sim/export/orders",
        query_string={"supplier_id": SUPPLIER, "token": TOKEN, "format": "xlsx", "status": "open"},
    )
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.get_data()), read_only=True).worksheets[0]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert len(rows) == 2
    record = dict(zip(EXPORT_COLUMNS, rows[1], strict=True))
    assert record["ci_lineitemid"] == str(b)  # a text cell, not a float
    assert isinstance(record["quantity"], int)


def test_export_refusals(client: FlaskClient) -> None:
    base = {"supplier_id": SUPPLIER, "token": TOKEN}
    for params, status, fragment in (
        ({**base, "format": "pdf"}, 400, "format must be csv or xlsx"),
        ({**base, "status": "lost"}, 400, "status must be one of"),
        ({**base, "token": "nope"}, 401, "Invalid"),
        ({}, 400, "required"),
    ):
        response = client.get("/_sim/export/orders", query_string=params)
        assert response.status_code == status
        assert fragment in response.get_json()["reason"]


def test_export_can_mark_exported(sim_state: SimState, client: FlaskClient) -> None:
    seed(sim_state, orders=2)
    assert get_orders(client)["meta"]["no_of_items"] == 2
    query = {"supplier_id": SUPPLIER, "token": TOKEN}
    client.get("/_sim/export/orders", query_string=query)
    assert get_orders(client)["meta"]["no_of_items"] == 2  # a plain export changes nothing
    client.get("/_sim/export/orders", query_string={**query, "mark_exported": "1"})
    assert get_orders(client)["meta"]["no_of_items"] == 0
