"""Ledger rows -> SLA clock with the carrier events a host reported (issue 4): late movement
and cycle time from real ledger data."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from connector.models import CarrierEvent, CarrierEventKind, Shipment, StoredOrder
from connector.ops.businessdays import calendar_for_account
from connector.ops.ledger_rows import rows_from_ledger
from connector.ops.sla import (
    cycle_time_report,
    evaluate,
    scans_reported_in,
    sla_lines_from_rows,
)
from tests.connector.fakes import T0, make_host, make_line, make_record

SCAN, DELIVERED = CarrierEventKind.SCAN, CarrierEventKind.DELIVERED
# T0 is Mon 4 Mar 2024 09:00 UTC (03:00 CT, before the 17:00 CT cut-off): movement is due by
# Thu 7 Mar 17:00 CT = 23:00 UTC.
MOVEMENT_DUE = datetime(2024, 3, 7, 23, 0, tzinfo=T0.tzinfo)
NOW = T0 + timedelta(days=8)  # Tue 12 Mar


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def shipped_host(tmp_path: Path) -> tuple[Any, Any]:
    """Four one-line orders A-D (lines 1-4), stored, acknowledged and shipped at T0 + 3 h."""
    host = make_host()
    acct = host.account(tmp_path)
    for lid, orderid in enumerate("ABCD", start=1):
        host.cis["us"].add(make_record(orderid, [make_line(lid)]))
    host.pm.hook.oms_import_orders(account=acct)
    host.pm.hook.oms_mark_exported(
        account=acct,
        stored=[StoredOrder(o, f"H{o}", (lid,)) for lid, o in enumerate("ABCD", start=1)],
    )
    for lid in range(1, 5):
        host.pm.hook.oms_dispatch(
            account=acct, shipment=Shipment.single(f"S{lid}", "UPS", f"1Z{lid}", {lid: 1})
        )
    return host, acct


def judge(host: Any, acct: Any) -> tuple[dict[int, Any], Sequence[Any], bool]:
    rows = rows_from_ledger(host.plugin.ledger_for(acct), acct)
    lines = sla_lines_from_rows(rows, account=acct.name)
    calendar, cutoff, tz = calendar_for_account(acct)
    scans = scans_reported_in(rows)
    statuses = evaluate(lines, calendar, NOW, cutoff, tz, scans_reported=scans)
    return {s.line.ci_lineitemid: s for s in statuses}, lines, scans


def test_without_events_movement_cannot_be_judged(tmp_path: Path) -> None:
    host, acct = shipped_host(tmp_path)
    by_line, lines, scans = judge(host, acct)
    assert scans is False
    assert {lid: s.state.value for lid, s in by_line.items()} == dict.fromkeys(
        range(1, 5), "shipped"
    )
    assert not any(s.movement_late for s in by_line.values())
    assert cycle_time_report(lines).avg_days is None


def test_reported_scans_and_deliveries_drive_movement_and_cycle_time(tmp_path: Path) -> None:
    host, acct = shipped_host(tmp_path)
    events = [
        CarrierEvent(1, SCAN, day(1), "1Z1"),  # in time
        CarrierEvent(1, DELIVERED, day(4), "1Z1"),  # 4 days
        # line 2: nothing reported: with scans reported that is late movement
        CarrierEvent(3, SCAN, day(4), "1Z3"),  # Fri 8 Mar: after the movement deadline
        CarrierEvent(3, DELIVERED, day(7), "1Z3"),  # 7 days: over Groupon's 6
        CarrierEvent(4, DELIVERED, day(2.5), "1Z4"),  # delivered without a scan: it moved
    ]
    results = host.pm.hook.oms_report_carrier_events(account=acct, events=events)
    assert {r.outcome.value for r in results} == {"accepted"}

    by_line, lines, scans = judge(host, acct)
    assert scans is True
    assert by_line[1].movement_deadline == MOVEMENT_DUE
    assert {lid: s.movement_late for lid, s in by_line.items()} == {
        1: False,
        2: True,
        3: True,
        4: False,
    }
    assert "no carrier movement within 3 business days" in by_line[2].reason
    cycle = cycle_time_report(lines)
    assert (cycle.avg_days, cycle.n, cycle.over_6) == (4.5, 3, 1)  # (4 + 7 + 2.5) / 3
    assert cycle.meets_target is True


def test_sla_hook_with_carrier_events_still_reports_the_open_line(tmp_path: Path) -> None:
    # Movement is not an at-risk state: the delivered line drops out, the open one stays.
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1)]))
    host.cis["us"].add(make_record("B", [make_line(2)]))
    host.pm.hook.oms_import_orders(account=acct)
    host.pm.hook.oms_mark_exported(
        account=acct, stored=[StoredOrder("A", "HA", (1,)), StoredOrder("B", "HB", (2,))]
    )
    host.pm.hook.oms_dispatch(account=acct, shipment=Shipment.single("S", "UPS", "1Z", {1: 1}))
    host.pm.hook.oms_report_carrier_events(
        account=acct, events=[CarrierEvent(1, DELIVERED, day(2))]
    )
    risks = host.pm.hook.oms_sla_at_risk(account=acct, now=day(4))
    assert [(r.ci_lineitemid, r.state) for r in risks] == [(2, "overdue")]
