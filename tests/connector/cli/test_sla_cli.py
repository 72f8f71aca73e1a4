from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import connector.cli.sla as sla_cli
from connector.cli.context import CliContext
from connector.config import ConnectorConfig
from connector.ledger import open_ledger
from connector.models import Account, AccountOptions
from connector.secrets import Secret

TOKEN = "sla-cli-secret-token-123"


def make_obj(tmp_path: Path, *accounts: Account) -> CliContext:
    config = ConnectorConfig(
        path=None, data_dir=tmp_path, mappings_dir=None, accounts=tuple(accounts)
    )
    return CliContext(config_path=tmp_path / "none.toml", _config=config)


def account(tmp_path: Path, name: str = "us1", **opts: Any) -> Account:
    return Account(
        name,
        "groupon",
        "SUP1",
        Secret(TOKEN),
        region="US",
        data_dir=tmp_path,
        options=AccountOptions(**opts),
    )


# Monday 2 March 2026. Line 1: ordered Mon 10:00 CT (due Tue 23:59 CT): on time at Mon noon.
# Line 2: ordered Fri 27 Feb 10:00 CT (due Mon 23:59 CT): due today. Line 3: ordered Tue 24 Feb
# (due Wed 25): overdue. Line 4: shipped and delivered after 4 days.
ROWS: list[dict[str, Any]] = [
    {"orderid": "A", "ci_lineitemid": 1, "order_time": "2026-03-02T16:00:00Z", "quantity": 1},
    {"orderid": "B", "ci_lineitemid": 2, "order_time": "2026-02-27T16:00:00Z", "quantity": 1},
    {"orderid": "C", "ci_lineitemid": 3, "order_time": "2026-02-24T16:00:00Z", "quantity": 1},
    {
        "orderid": "D",
        "ci_lineitemid": 4,
        "order_time": "2026-02-24T16:00:00Z",
        "quantity": 1,
        "qty_shipped": 1,
        "delivered_at": "2026-02-28T16:00:00Z",
    },
]
NOW = "2026-03-02T12:00:00-06:00"


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def fake(acct: Account) -> list[dict[str, Any]]:
        calls.append(acct.name)
        return [dict(r) for r in ROWS]

    monkeypatch.setattr(sla_cli, "load_sla_rows", fake)
    return calls


def run(obj: CliContext, *args: str) -> Any:
    return CliRunner().invoke(sla_cli.sla, list(args), obj=obj, catch_exceptions=False)


def test_table_output_is_aligned_and_summarised(tmp_path: Path, patched: list[str]) -> None:
    result = run(make_obj(tmp_path, account(tmp_path)), "--now", NOW)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = lines[0]
    assert header.startswith("ACCOUNT  ORDERID  LINE  STATE")
    state_col = header.index("STATE")
    deadline_col = header.index("DEADLINE (LOCAL)")
    body = lines[1:4]
    assert [ln[state_col:].split()[0] for ln in body] == ["on_time", "due_today", "overdue"]
    assert all(ln[deadline_col:].startswith(("Mon", "Tue", "Wed")) for ln in body)
    assert "Tue 2026-03-03 23:59 CST" in body[0]  # 23:59 local: the issue-12 ship-by rule
    assert "shipped" not in "\n".join(body)  # finished lines hidden without --all
    assert "us1: 1 on_time, 1 due_today, 1 overdue, 1 shipped; 2 at risk" in result.output
    assert "average 4.0 days over 1 delivered line(s), within" in result.output
    assert patched == ["us1"]


def test_json_is_one_object(tmp_path: Path, patched: list[str]) -> None:
    result = run(make_obj(tmp_path, account(tmp_path)), "--now", NOW, "--format", "json", "--all")
    data = json.loads(result.output)
    assert data["now"] == "2026-03-02T18:00:00+00:00"
    (acc,) = data["accounts"]
    assert acc["counts"]["overdue"] == 1
    assert acc["cycle_time"]["avg_days"] == 4.0
    assert [ln["state"] for ln in acc["lines"]] == ["on_time", "due_today", "overdue", "shipped"]
    assert acc["lines"][2]["deadline"] == "2026-02-26T05:59:00+00:00"  # Wed 25 Feb 23:59 CST


def test_csv_has_header_and_at_risk_filter(tmp_path: Path, patched: list[str]) -> None:
    result = run(
        make_obj(tmp_path, account(tmp_path)), "--now", NOW, "--format", "csv", "--at-risk"
    )
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["ci_lineitemid"], r["state"]) for r in rows] == [
        ("2", "due_today"),
        ("3", "overdue"),
    ]
    assert result.output.splitlines()[0].startswith("account,orderid,ci_lineitemid,status,state")


def test_account_option_and_every_account_by_default(tmp_path: Path, patched: list[str]) -> None:
    obj = make_obj(tmp_path, account(tmp_path, "us1"), account(tmp_path, "us2"))
    assert run(obj, "--now", NOW, "--account", "us2").exit_code == 0
    assert patched == ["us2"]
    run(obj, "--now", NOW)
    assert patched == ["us2", "us1", "us2"]
    bad = CliRunner().invoke(sla_cli.sla, ["--account", "nope"], obj=obj)
    assert bad.exit_code == 1
    assert "nope" in bad.output


def test_bad_now_and_bad_rows_are_clean_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    obj = make_obj(tmp_path, account(tmp_path))
    bad_now = CliRunner().invoke(sla_cli.sla, ["--now", "tomorrow"], obj=obj)
    assert bad_now.exit_code == 2
    assert "'tomorrow' is not an ISO 8601" in bad_now.output
    monkeypatch.setattr(
        sla_cli,
        "load_sla_rows",
        lambda acct: [
            {"orderid": "X", "ci_lineitemid": 9, "order_time": "2026-03-02", "quantity": "lots"}
        ],
    )
    bad_row = CliRunner().invoke(sla_cli.sla, ["--now", NOW], obj=obj)
    assert bad_row.exit_code == 1
    assert "account 'us1': row 1 (ci_lineitemid 9): field 'quantity' = 'lots'" in bad_row.output
    assert "Traceback" not in bad_row.output


def test_bad_account_option_is_a_clean_error(tmp_path: Path, patched: list[str]) -> None:
    obj = make_obj(tmp_path, account(tmp_path, timezone="Mars/Base"))
    result = CliRunner().invoke(sla_cli.sla, ["--now", NOW], obj=obj)
    assert result.exit_code == 1
    assert "account 'us1'" in result.output
    assert "'Mars/Base'" in result.output


def test_help_has_a_worked_example(tmp_path: Path) -> None:
    result = CliRunner().invoke(sla_cli.sla, ["--help"])
    assert result.exit_code == 0
    assert "ci-connector sla --account us-main --now" in result.output
    assert "auto_cancel_soon" in result.output


def test_adapter_reads_the_real_ledger(tmp_path: Path) -> None:
    acct = account(tmp_path)
    order_date = datetime(2026, 3, 2, 16, tzinfo=UTC)
    record = {"orderid": "A", "line_items": [{"ci_lineitemid": 11, "unit_price": 49.99}]}
    ledger = open_ledger(acct)
    try:
        ledger.stage_line(
            ci_lineitemid=11, orderid="A", now=order_date, record=record,
            order_date=order_date, quantity=2,
        )  # fmt: skip
        ledger.stage_line(
            ci_lineitemid=12, orderid="B", now=order_date, order_date=order_date,
            quantity=1, ci_status="weird-new-status",
        )  # fmt: skip
        ledger.stage_line(
            ci_lineitemid=13, orderid="C", now=order_date, state="cancelled", order_date=order_date
        )
        ledger.stage_line(ci_lineitemid=14, orderid="", now=order_date, state="held")  # no date
        out = ledger.insert_outbox(
            shipment_id="S1", ci_lineitemid=11, tracking="1Z999", quantity=1, now=order_date
        )
        ledger.update_outbox(out.id, datetime(2026, 3, 3, 15, tzinfo=UTC), state="accepted")
        ledger.update_line(11, order_date, qty_shipped=1)
    finally:
        ledger.close()
    rows = {r["ci_lineitemid"]: r for r in sla_cli.load_sla_rows(acct)}
    assert sorted(rows) == [11, 12, 13]
    assert rows[11]["unit_price"] == 49.99
    assert rows[11]["qty_shipped"] == 1
    assert rows[11]["tracking_uploaded_at"] == datetime(2026, 3, 3, 15, tzinfo=UTC)
    assert rows[12]["status"] is None
    assert rows[13]["status"] == "cancelled"
    result = run(make_obj(tmp_path, acct), "--now", NOW, "--format", "json", "--all")
    states = {
        ln["ci_lineitemid"]: ln["state"] for ln in json.loads(result.output)["accounts"][0]["lines"]
    }
    assert states == {11: "on_time", 12: "on_time", 13: "cancelled"}
    assert TOKEN not in result.output
