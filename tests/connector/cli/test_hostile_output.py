"""Hostile text on the CLI's way out (issue 9): GPN CSV cells and `files read-orders` tables."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path

import responses
from click.testing import CliRunner
from openpyxl import load_workbook

from connector.ci.schemas import ParsedRecord, parse_record
from connector.cli.files import files
from connector.cli.gpn import gpn
from connector.ledger import open_ledger
from connector.ops.manual_files import write_order_export

from .test_gpn_cli import ROWS, URL, ctx

EXAMPLE = Path(__file__).parents[2] / "fixtures" / "ci-examples" / "get_orders_v4_page2_of_2.json"


@responses.activate
def test_gpn_csv_cells_are_neutralised() -> None:
    row = {**ROWS[1], "transactionDetails": '=HYPERLINK("http://x")', "invoiceId": "@A1"}
    responses.get(URL, json={"transactions": [ROWS[0], row], "total": 2})
    result = CliRunner().invoke(
        gpn,
        ["transactions", "--from", "2024-03-01", "--to", "2024-03-05", "--format", "csv"],
        obj=ctx(),
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert rows[1]["transactionDetails"] == '\'=HYPERLINK("http://x")'
    assert rows[1]["invoiceId"] == "'@A1"
    assert rows[0]["payableAmount"] == "2.50"  # numbers untouched


def test_read_orders_table_shows_escape_sequences_instead_of_running_them(
    tmp_path: Path,
) -> None:
    raw = copy.deepcopy(json.loads(EXAMPLE.read_text())["data"][:1])
    raw[0]["customer"]["name"] = "Eve\x1b[2J\x1b]0;owned\x07\nforged row"
    raw[0]["orderid"] = "1499000251"
    records = [parse_record(r) for r in raw]
    assert all(isinstance(r, ParsedRecord) for r in records)
    path = tmp_path / "orders.csv"
    write_order_export(records, path)  # type: ignore[arg-type]
    # The file writer escaped the controls already; write the raw name back in, as a
    # hostile export from elsewhere would hold it.
    text = path.read_text("utf-8").replace(
        "Eve\\x1b[2J\\x1b]0;owned\\x07\nforged row", "Eve\x1b[2J\x1b]0;owned\x07\nforged row"
    )
    assert "\x1b" in text
    path.write_text(text, "utf-8")
    result = CliRunner().invoke(files, ["read-orders", str(path)], catch_exceptions=False)
    assert "\x1b" not in result.output
    assert "\x07" not in result.output
    assert "Eve\\x1b[2J" in result.output
    assert all(not line.startswith("forged row") for line in result.output.splitlines())


def test_tracking_upload_xlsx_with_control_characters_does_not_crash(tmp_path: Path) -> None:
    # Before the fix: openpyxl's IllegalCharacterError escaped as a traceback.
    from .test_files_cli import NOW, account
    from .test_files_cli import run as run_files

    led = open_ledger(account(tmp_path))
    led.stage_line(
        ci_lineitemid=21, orderid="O21", now=NOW, quantity=1, sku="=SKU\x07\x1b[31m", state="acked"
    )
    led.insert_outbox(
        shipment_id="S21",
        ci_lineitemid=21,
        tracking="@1Z\x00",
        quantity=1,
        now=NOW,
        orderid="O21",
        fulfillment_lineitem_id=None,
        carrier_code="ups",
    )
    led.close()
    out = tmp_path / "t.xlsx"
    result = run_files(tmp_path, "tracking-upload", "--account", "us1", "--out", str(out))
    assert result.exit_code == 0, result.output
    sheet = load_workbook(out).worksheets[0]
    row = list(sheet[2])
    assert [c.value for c in row][3:] == ["'=SKU\\x07\\x1b[31m", "1", "ups", "'@1Z\\x00"]
    assert all(c.data_type == "s" for c in row if c.value is not None)
