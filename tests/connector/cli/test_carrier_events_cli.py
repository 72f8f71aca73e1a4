"""`sla` and `threshold` on a real ledger holding carrier events the host reported."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

import connector.cli.sla as sla_cli
import connector.cli.threshold as th_cli
from connector.cli.context import CliContext
from connector.config import ConnectorConfig
from connector.models import CarrierEvent, CarrierEventKind, Shipment, StoredOrder
from tests.connector.fakes import T0, make_host, make_line, make_record

SCAN, DELIVERED = CarrierEventKind.SCAN, CarrierEventKind.DELIVERED


def ledger_with_events(tmp_path: Path, events: bool = True) -> CliContext:
    """Orders A, B (two lines), C on T0 (Mon 4 Mar 2024), all shipped; A delivered after 3
    days, B's first line after 6 (its second line never), C scanned but not delivered."""
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1)]))
    host.cis["us"].add(make_record("B", [make_line(2), make_line(3)]))
    host.cis["us"].add(make_record("C", [make_line(4)]))
    host.pm.hook.oms_import_orders(account=acct)
    host.pm.hook.oms_mark_exported(
        account=acct,
        stored=[
            StoredOrder("A", "HA", (1,)),
            StoredOrder("B", "HB", (2, 3)),
            StoredOrder("C", "HC", (4,)),
        ],
    )
    for lid in range(1, 5):
        host.pm.hook.oms_dispatch(
            account=acct, shipment=Shipment.single(f"S{lid}", "UPS", f"1Z{lid}", {lid: 1})
        )
    if events:
        results = host.pm.hook.oms_report_carrier_events(
            account=acct,
            events=[
                CarrierEvent(1, SCAN, T0 + timedelta(days=1)),
                CarrierEvent(1, DELIVERED, T0 + timedelta(days=3)),
                CarrierEvent(2, SCAN, T0 + timedelta(days=1)),
                CarrierEvent(2, DELIVERED, T0 + timedelta(days=6)),
                CarrierEvent(3, SCAN, T0 + timedelta(days=1)),
                CarrierEvent(4, SCAN, T0 + timedelta(days=1)),
            ],
        )
        assert {r.outcome.value for r in results} == {"accepted"}
    host.plugin.close()
    config = ConnectorConfig(path=None, data_dir=tmp_path, mappings_dir=None, accounts=(acct,))
    return CliContext(config_path=tmp_path / "none.toml", _config=config)


def run(command: Any, obj: CliContext, *args: str) -> Any:
    return CliRunner().invoke(command, list(args), obj=obj, catch_exceptions=False)


def test_sla_json_shows_cycle_time_and_movement_from_the_ledger(tmp_path: Path) -> None:
    obj = ledger_with_events(tmp_path)
    result = run(sla_cli.sla, obj, "--now", "2024-03-12T12:00:00Z", "--format", "json", "--all")
    assert result.exit_code == 0, result.output
    (acc,) = json.loads(result.output)["accounts"]
    assert acc["scans_reported"] is True
    assert acc["cycle_time"] == {
        "avg_days": 4.5,
        "delivered_lines": 2,
        "over_6_days": 0,
        "meets_target": True,
    }
    assert acc["movement_late"] == 0
    assert {line["ci_lineitemid"]: line["state"] for line in acc["lines"]} == dict.fromkeys(
        range(1, 5), "shipped"
    )


def test_sla_table_says_whether_scans_are_reported(tmp_path: Path) -> None:
    with_events = run(
        sla_cli.sla, ledger_with_events(tmp_path / "a"), "--now", "2024-03-12T12:00:00Z"
    )
    assert "0 with late carrier movement" in with_events.output
    assert "average 4.5 days over 2 delivered line(s), within Groupon's 6-day target" in (
        with_events.output
    )
    without = run(
        sla_cli.sla,
        ledger_with_events(tmp_path / "b", events=False),
        "--now",
        "2024-03-12T12:00:00Z",
    )
    assert "no carrier scans reported" in without.output
    assert "no delivered lines recorded" in without.output


def test_threshold_review_counts_orders_delivered_from_events(tmp_path: Path) -> None:
    obj = ledger_with_events(tmp_path)
    args = ("--now", "2024-03-12T12:00:00Z", "--event", "suspended=2024-03-10T00:00:00Z")
    result = run(th_cli.threshold, obj, *args, "--format", "json", "--open-tickets", "0")
    assert result.exit_code == 1, result.output  # suspended: exit 1
    review = json.loads(result.output)["accounts"][0]["review"]
    # A is delivered; B has an undelivered line; C is only scanned.
    assert (review["orders_delivered"], review["orders_total"]) == (1, 3)
    assert review["orders_ok"] is False
    table = run(th_cli.threshold, obj, *args)
    assert "orders delivered 1/3 (33%)" in table.output
