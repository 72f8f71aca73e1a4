from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import connector.cli.threshold as th_cli
from connector.cli.context import CliContext
from connector.config import ConnectorConfig
from connector.models import Account, AccountOptions
from connector.secrets import Secret

TOKEN = "threshold-cli-secret-token-456"
NOW = "2026-03-11T12:00:00Z"

# First sale 1 Mar 12:00 UTC: 85 units / $850 in 10 days at level 1 (caps 100 / $1,000).
ROWS: list[dict[str, Any]] = [
    {"orderid": "A", "ci_lineitemid": 1, "order_time": "2026-03-01T12:00:00Z", "quantity": 50,
     "unit_price": 10},
    {"orderid": "B", "ci_lineitemid": 2, "order_time": "2026-03-06T12:00:00Z", "quantity": 35,
     "unit_price": "10.00", "delivered_at": "2026-03-09T12:00:00Z"},
    {"orderid": "C", "ci_lineitemid": 3, "order_time": "2026-03-07T12:00:00Z", "quantity": 9,
     "unit_price": 10, "status": "cancelled"},
]  # fmt: skip


def make_obj(tmp_path: Path, level: int = 1) -> CliContext:
    acct = Account(
        "us1",
        "groupon",
        "SUP1",
        Secret(TOKEN),
        data_dir=tmp_path,
        options=AccountOptions(merchant_level=level),
    )
    config = ConnectorConfig(path=None, data_dir=tmp_path, mappings_dir=None, accounts=(acct,))
    return CliContext(config_path=tmp_path / "none.toml", _config=config)


@pytest.fixture(autouse=True)
def fake_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(th_cli, "load_sales_rows", lambda acct: [dict(r) for r in ROWS])


def run(obj: CliContext, *args: str) -> Any:
    return CliRunner().invoke(th_cli.threshold, list(args), obj=obj)


def test_table(tmp_path: Path) -> None:
    result = run(make_obj(tmp_path), "--now", NOW)
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()[:2]
    assert header.split()[:3] == ["account", "level", "cycle"]
    units_col = header.index("units")
    assert row[units_col:].startswith("85/100 (85%)")
    assert "$850.00/$1,000.00 (85%)" in row
    assert "units>=80%, sales>=80%" in row
    # 100 units at 8.5 units/day: 11.76 days after 1 Mar 12:00
    assert "2026-03-13 06:21" in row
    assert row.rstrip().endswith("active")
    assert TOKEN not in result.output


def test_json_with_level_override_and_warn(tmp_path: Path) -> None:
    result = run(
        make_obj(tmp_path), "--now", NOW, "--level", "2", "--warn", "0.4", "--format", "json"
    )
    data = json.loads(result.output)
    (acc,) = data["accounts"]
    assert acc["account"] == "us1"
    assert acc["level"] == 2
    assert acc["units"] == 85
    assert acc["sales"] == "850.00"
    assert acc["warnings"] == [{"fraction": 0.4, "measure": "units", "share": 0.425}]
    assert acc["review"] is None


def test_csv_has_header(tmp_path: Path) -> None:
    result = run(make_obj(tmp_path, level=5), "--now", NOW, "--format", "csv")
    (row,) = list(csv.DictReader(io.StringIO(result.output)))
    assert row["level"] == "5"
    assert row["max_units"] == ""
    assert row["units"] == "85"
    assert row["warnings"] == ""


def test_suspension_event_restarts_cycle_and_shows_review(tmp_path: Path) -> None:
    result = run(
        make_obj(tmp_path),
        "--now", NOW, "--event", "suspended=2026-03-08T00:00:00Z", "--open-tickets", "2",
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # suspended: a problem found
    assert "0/100 (0%)" in result.output
    assert "SUSPENDED" in result.output
    assert "orders delivered 1/2 (50%), open tickets 2" in result.output
    assert "  - resolve 2 open customer ticket(s)" in result.output
    js = run(
        make_obj(tmp_path), "--now", NOW, "--event", "suspended=2026-03-08T00:00:00Z",
        "--format", "json",
    )  # fmt: skip
    acc = json.loads(js.output)["accounts"][0]
    assert acc["cycle_start"] == "2026-03-08T00:00:00+00:00"
    assert acc["review"]["ready"] is False
    assert acc["review"]["open_tickets"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--warn", "0.8,abc"], "'0.8,abc': expected fractions"),
        (["--warn", "1.2"], "fraction in (0, 1]"),
        (["--event", "paused=2026-03-01T00:00:00Z"], "KIND one of first_sale, suspended"),
        (["--event", "suspended=soon"], "'soon' is not an ISO 8601"),
        (["--level", "7"], "7 is not in the range 1<=x<=5"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = run(make_obj(tmp_path), *args)
    assert result.exit_code == 2
    assert message in result.output


def test_bad_rows_are_clean_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        th_cli,
        "load_sales_rows",
        lambda acct: [{"ci_lineitemid": 5, "order_time": "2026-03-01T00:00:00Z", "quantity": 1}],
    )
    result = run(make_obj(tmp_path), "--now", NOW)
    assert result.exit_code == 1
    assert "account 'us1': row 1 (ci_lineitemid 5): needs 'amount' or 'unit_price'" in result.output


def test_help_has_a_worked_example() -> None:
    result = CliRunner().invoke(th_cli.threshold, ["--help"])
    assert result.exit_code == 0
    assert "ci-connector threshold --account us-main --level 2" in result.output
    assert "--event" in result.output


def test_cap_reached_is_said_even_before_a_suspension_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    below = run(make_obj(tmp_path), "--now", NOW)
    assert below.exit_code == 0, below.output
    assert below.output.splitlines()[1].rstrip().endswith("active")  # 85 of 100 units
    past = [dict(r, quantity=r["quantity"] * 2) for r in ROWS]  # 170 units: past the cap
    monkeypatch.setattr(th_cli, "load_sales_rows", lambda acct: [dict(r) for r in past])
    capped = run(make_obj(tmp_path), "--now", NOW)
    assert capped.exit_code == 1, capped.output  # exit 1: problems found (the cap)
    assert "CAP REACHED (Groupon suspends at the cap)" in capped.output


def test_uk_account_shows_pounds_not_dollars(tmp_path: Path) -> None:
    acct = Account("uk1", "groupon", "SUP2", Secret(TOKEN), region="UK", data_dir=tmp_path)
    config = ConnectorConfig(path=None, data_dir=tmp_path, mappings_dir=None, accounts=(acct,))
    obj = CliContext(config_path=tmp_path / "none.toml", _config=config)
    result = run(obj, "--now", NOW)
    assert "£850.00/£1,000.00" in result.output
    assert "$" not in result.output
