"""``ci-connector files``: tracking-upload from the outbox and read-orders, via CliRunner."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from openpyxl import load_workbook

from connector.cli.context import CliContext
from connector.cli.files import files
from connector.config import ConnectorConfig
from connector.ledger import Ledger, open_ledger, open_ledger_file
from connector.ledger.migrations import MIGRATIONS
from connector.models import Account
from connector.ops.manual_files import ORDER_EXPORT_COLUMNS, TRACKING_UPLOAD_COLUMNS
from connector.secrets import Secret

TOKEN = "files-cli-secret-token-987"
NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
EXAMPLE = Path(__file__).parents[2] / "fixtures" / "ci-examples" / "get_orders_v4_page2_of_2.json"


def account(tmp_path: Path) -> Account:
    return Account("us1", "groupon", "SUP1", Secret(TOKEN), region="US", data_dir=tmp_path)


def make_obj(tmp_path: Path) -> CliContext:
    config = ConnectorConfig(
        path=None, data_dir=tmp_path, mappings_dir=None, accounts=(account(tmp_path),), gpn=None
    )
    return CliContext(config_path=tmp_path / "none.toml", _config=config)


def run(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(files, list(args), obj=make_obj(tmp_path), catch_exceptions=False)


def fill(led: Ledger) -> None:
    """Two uploadable rows (pending, retry), one held by pre-flight, one already accepted."""
    for lid, sku in ((11, "SKU-11"), (12, "0042"), (13, "SKU-13"), (14, "SKU-14")):
        led.stage_line(
            ci_lineitemid=lid, orderid=f"O{lid}", now=NOW, quantity=2, sku=sku, state="acked"
        )
    rows: list[tuple[int, str | None, str]] = [
        (11, "ups", "pending"),
        (12, "usps", "retry"),
        (13, None, "held"),
        (14, "ups", "accepted"),
    ]
    for lid, carrier, state in rows:
        led.insert_outbox(
            shipment_id=f"S{lid}",
            ci_lineitemid=lid,
            tracking=f"T{lid}",
            quantity=1,
            now=NOW,
            orderid=f"O{lid}",
            fulfillment_lineitem_id=f"F{lid}",
            carrier_code=carrier,
            state=state,
        )


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    led = open_ledger(account(tmp_path))
    fill(led)
    led.close()
    return tmp_path


def states(tmp_path: Path, migrations: Any = MIGRATIONS) -> dict[int, str]:
    led = open_ledger_file(tmp_path / "ledger-us1.sqlite3", "us1", migrations)
    try:
        return {r.ci_lineitemid: r.state for r in led.outbox_rows()}
    finally:
        led.close()


def test_help_has_examples(tmp_path: Path) -> None:
    for args in ([], ["tracking-upload"], ["read-orders"]):
        result = run(tmp_path, *args, "--help")
        assert result.exit_code == 0
        assert "Examples:" in result.output
        assert "ci-connector files" in result.output


def test_tracking_upload_writes_only_uploadable_rows(filled: Path) -> None:
    out = filled / "tracking.csv"
    result = run(filled, "tracking-upload", "--account", "us1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "wrote 2 tracking row(s)" in result.stdout
    assert "--mark-sent" in result.stderr  # warns that the API may send them too
    rows = list(csv.reader(io.StringIO(out.read_text("utf-8"))))
    assert rows == [
        list(TRACKING_UPLOAD_COLUMNS),
        ["O11", "11", "F11", "SKU-11", "1", "ups", "T11"],
        ["O12", "12", "F12", "0042", "1", "usps", "T12"],
    ]
    assert states(filled) == {11: "pending", 12: "retry", 13: "held", 14: "accepted"}
    assert TOKEN not in result.output


def test_tracking_upload_xlsx_from_suffix(filled: Path) -> None:
    out = filled / "tracking.xlsx"
    assert run(filled, "tracking-upload", "--account", "us1", "--out", str(out)).exit_code == 0
    sheet = load_workbook(out).worksheets[0]
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0] == list(TRACKING_UPLOAD_COLUMNS)
    assert values[2][3] == "0042"
    assert len(values) == 3


def test_mark_sent_marks_rows_manual(filled: Path) -> None:
    tmp_path = filled
    out = tmp_path / "t.csv"
    result = run(tmp_path, "tracking-upload", "--account", "us1", "--out", str(out), "--mark-sent")
    assert result.exit_code == 0, result.output
    assert "marked 2 outbox row(s) 'manual'" in result.output
    assert out.exists()
    assert states(tmp_path) == {11: "manual", 12: "manual", 13: "held", 14: "accepted"}
    # Nothing left to write: a second run says so and writes nothing.
    again = tmp_path / "again.csv"
    result = run(tmp_path, "tracking-upload", "--account", "us1", "--out", str(again))
    assert result.exit_code == 0
    assert "no pending tracking rows" in result.output
    assert not again.exists()


def test_unknown_account_is_a_clean_error(tmp_path: Path) -> None:
    result = run(tmp_path, "tracking-upload", "--account", "nope", "--out", str(tmp_path / "x"))
    assert result.exit_code == 1
    assert "us1" in result.output  # names the known accounts
    assert TOKEN not in result.output


# --- read-orders -----------------------------------------------------------------------------


def export_csv(tmp_path: Path, mutate: dict[str, str] | None = None) -> Path:
    from connector.ci.schemas import ParsedRecord, parse_record
    from connector.ops.manual_files import write_order_export

    records = [parse_record(r) for r in json.loads(EXAMPLE.read_text())["data"]]
    path = tmp_path / "orders.csv"
    write_order_export([r for r in records if isinstance(r, ParsedRecord)], path)
    if mutate:
        rows = list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))
        rows[1].update(mutate)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=ORDER_EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def test_read_orders_table(tmp_path: Path) -> None:
    result = run(tmp_path, "read-orders", str(export_csv(tmp_path)))
    assert result.exit_code == 0, result.output
    assert "4 line(s) in 3 order(s) can be imported" in result.output
    assert "612004567" in result.output
    assert "problems: 0" in result.output


def test_read_orders_reports_problems_with_row_and_column(tmp_path: Path) -> None:
    path = export_csv(tmp_path, {"quantity": "-1"})
    result = run(tmp_path, "read-orders", str(path))
    assert result.exit_code == 1
    assert "3 line(s) in 2 order(s)" in result.output
    assert "incomplete orders (a row has a problem): 1499000263" in result.output
    assert f"{path} row 3 column 'quantity': must be a positive integer" in result.output


def test_read_orders_json(tmp_path: Path) -> None:
    path = export_csv(tmp_path, {"date": "yesterday"})
    result = run(tmp_path, "read-orders", str(path), "--format", "json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert [r["row"] for r in payload["records"]] == [2, 4, 5]
    assert payload["records"][0]["lines"][0]["unit_price"] == "49.99"
    assert payload["incomplete_orders"] == ["1499000263"]
    (problem,) = payload["problems"]
    assert (problem["row"], problem["column"], problem["orderid"]) == (3, "date", "1499000263")


def test_read_orders_missing_file(tmp_path: Path) -> None:
    result = run(tmp_path, "read-orders", str(tmp_path / "none.csv"))
    assert result.exit_code == 1
    assert "cannot read the file" in result.output
