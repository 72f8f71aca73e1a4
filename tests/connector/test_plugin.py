"""GrouponPlugin through a host-style PluginManager: one test per hook, channel routing,
several accounts side by side, token hygiene."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

import connector.plugin
from connector.models import HoldKind, LineOutcome, Shipment, StoredOrder
from tests.connector.fakes import T0, FakeCI, make_host, make_line, make_record


def test_hook_oms_channel_info() -> None:
    host = make_host()
    (info,) = host.pm.hook.oms_channel_info()
    assert info.name == "groupon"
    assert {"import", "mark_exported", "dispatch", "partial_dispatch", "cancellations"} <= (
        info.capabilities
    )
    names = [f.name for f in info.config_fields]
    # config_fields are exactly the parameters of Account.from_values (issue 10 item 6).
    import inspect

    from connector.models import Account

    params = list(inspect.signature(Account.from_values).parameters)
    assert names == [p for p in params if p != "cls"]
    assert [f.name for f in info.config_fields if f.secret] == ["token"]
    required = [f.name for f in info.config_fields if f.required]
    assert required == ["name", "supplier_id", "token"]
    assert info.stock_policy == "unlimited"
    assert {"dispatch_many", "void_shipment", "products"} <= info.capabilities


def test_entry_point_object_is_a_plugin() -> None:
    assert isinstance(connector.plugin.plugin, connector.plugin.GrouponPlugin)


def test_hook_oms_import_orders(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert [(o.account, o.orderid, o.ci_lineitemids) for o in batch.orders] == [("us", "A", (1, 2))]
    assert batch.orders[0].ship_to.name == "Jane Example"


def test_hook_oms_mark_exported(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1)]))
    host.pm.hook.oms_import_orders(account=acct)
    results = host.pm.hook.oms_mark_exported(account=acct, stored=[StoredOrder("A", "H1", (1,))])
    assert [(r.ci_lineitemid, r.outcome) for r in results] == [(1, LineOutcome.ACCEPTED)]
    assert host.cis["us"].exported == {1}
    assert host.plugin.ledger_for(acct).get_line(1).host_order_id == "H1"


def test_hook_oms_dispatch(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1)]))
    host.pm.hook.oms_import_orders(account=acct)
    host.pm.hook.oms_mark_exported(account=acct, stored=[StoredOrder("A", "H1", (1,))])
    results = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "ups", "1Z999", {1: 1})
    )
    assert [(r.outcome, r.tracking_number) for r in results] == [(LineOutcome.ACCEPTED, "1Z999")]
    assert host.cis["us"].tracking == {(1, "1Z999"): 1}


def test_hook_oms_flush_outbox(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    assert host.pm.hook.oms_flush_outbox(account=acct) == []
    host.cis["us"].add(make_record("A", [make_line(1)]))
    host.pm.hook.oms_import_orders(account=acct)
    from connector.errors import CITransportError

    host.cis["us"].fail("mark_exported", CITransportError("down"))
    host.pm.hook.oms_mark_exported(account=acct, stored=[StoredOrder("A", "H1", (1,))])
    flushed = host.pm.hook.oms_flush_outbox(account=acct)
    assert [(r.ci_lineitemid, r.outcome) for r in flushed] == [(1, LineOutcome.ACCEPTED)]


def test_hook_oms_held_lines(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1, "UNKNOWN")]))
    host.pm.hook.oms_import_orders(account=acct)
    held = host.pm.hook.oms_held_lines(account=acct)
    assert [(h.account, h.ci_lineitemid, h.kind, h.orderid) for h in held] == [
        ("us", 1, HoldKind.UNMAPPED_SKU, "A")
    ]
    assert held[0].since == host.clock.now


def test_hook_oms_sla_at_risk(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    due = T0 + timedelta(days=1, hours=8)
    host.cis["us"].add(make_record("A", [make_line(1, ship_by=due)]))
    host.cis["us"].add(make_record("B", [make_line(2, ship_by=due + timedelta(days=2))]))
    host.pm.hook.oms_import_orders(account=acct)
    host.pm.hook.oms_mark_exported(
        account=acct, stored=[StoredOrder("A", "H1", (1,)), StoredOrder("B", "H2", (2,))]
    )
    assert host.pm.hook.oms_sla_at_risk(account=acct, now=T0) == []
    today = host.pm.hook.oms_sla_at_risk(account=acct, now=due - timedelta(hours=2))
    assert [(r.ci_lineitemid, r.state, r.deadline) for r in today] == [(1, "due_today", due)]
    late = host.pm.hook.oms_sla_at_risk(account=acct, now=due + timedelta(hours=1))
    assert [(r.ci_lineitemid, r.state) for r in late] == [(1, "overdue")]
    assert late[0].business_days_to_auto_cancel == 6
    # Shipped lines are no longer at risk.
    host.pm.hook.oms_dispatch(account=acct, shipment=Shipment.single("S", "UPS", "1Z1", {1: 1}))
    assert host.pm.hook.oms_sla_at_risk(account=acct, now=due + timedelta(hours=1)) == []


def test_other_channel_gets_none_from_every_hook(tmp_path: Path) -> None:
    host = make_host()
    other = replace(host.account(tmp_path), channel="amazon")
    hook = host.pm.hook
    assert hook.oms_import_orders(account=other) is None
    assert hook.oms_mark_exported(account=other, stored=[]) is None
    assert hook.oms_dispatch(account=other, shipment=Shipment.single("S", "U", "T", {1: 1})) is None
    assert hook.oms_flush_outbox(account=other) is None
    assert hook.oms_held_lines(account=other) is None
    assert hook.oms_sla_at_risk(account=other, now=T0) is None
    assert not (tmp_path / "ledger-us.sqlite3").exists()


def test_two_accounts_are_isolated(tmp_path: Path) -> None:
    host = make_host()
    us = host.account(tmp_path, name="us")
    uk = host.account(tmp_path, name="uk")
    host.cis["us"].add(make_record("A", [make_line(1)]))
    host.cis["uk"].add(make_record("A", [make_line(1, "UNKNOWN")]))
    us_batch = host.pm.hook.oms_import_orders(account=us)
    uk_batch = host.pm.hook.oms_import_orders(account=uk)
    assert [o.orderid for o in us_batch.orders] == ["A"]
    assert uk_batch.orders == ()
    host.pm.hook.oms_mark_exported(account=us, stored=[StoredOrder("A", "H", (1,))])
    assert host.cis["us"].exported == {1}
    assert host.cis["uk"].exported == set()
    assert (tmp_path / "ledger-us.sqlite3").exists()
    assert (tmp_path / "ledger-uk.sqlite3").exists()
    assert host.pm.hook.oms_held_lines(account=us) == []
    assert len(host.pm.hook.oms_held_lines(account=uk)) == 1


def test_broken_mapping_files_are_a_channel_error(tmp_path: Path) -> None:
    from connector.errors import ChannelError, MappingError, MappingProblem
    from connector.plugin import GrouponPlugin

    def broken(_acct: object) -> object:
        raise MappingError([MappingProblem(Path("couriers.csv"), 3, "carrier_code", "empty")])

    plugin = GrouponPlugin(client_factory=lambda a: FakeCI(), mappings_loader=broken)  # type: ignore[arg-type]
    acct = make_host().account(tmp_path)
    with pytest.raises(ChannelError, match=r"couriers\.csv:3"):
        plugin.oms_import_orders(acct)


def test_token_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="connector")
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1)]))
    host.pm.hook.oms_import_orders(account=acct)
    host.pm.hook.oms_mark_exported(account=acct, stored=[StoredOrder("A", "H", (1,))])
    assert caplog.records
    assert acct.token.reveal() not in caplog.text
    assert acct.token.reveal() not in repr(host.plugin.ledger_for(acct).summary())


def test_hook_oms_report_carrier_events(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timezone

    from connector.models import CarrierEvent, CarrierEventKind

    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    host.cis["us"].add(make_record("B", [make_line(3, "UNKNOWN")]))  # held, never handed over
    host.pm.hook.oms_import_orders(account=acct)
    host.pm.hook.oms_mark_exported(account=acct, stored=[StoredOrder("A", "H1", (1, 2))])
    scan = CarrierEvent(1, CarrierEventKind.SCAN, T0 + timedelta(days=1), "1Z1")
    # The same instant written in another zone is the same event.
    cst = timezone(timedelta(hours=-6))
    scan_again = CarrierEvent(1, CarrierEventKind.SCAN, scan.at.astimezone(cst), "1Z1")
    delivered = CarrierEvent(1, CarrierEventKind.DELIVERED, T0 + timedelta(days=3), "1Z1")
    events = [
        scan,
        delivered,
        scan_again,
        CarrierEvent(99, CarrierEventKind.SCAN, T0),
        CarrierEvent(3, CarrierEventKind.SCAN, T0),
        CarrierEvent(2, CarrierEventKind.SCAN, datetime(2024, 3, 5, 9, 0)),  # naive
    ]
    results = host.pm.hook.oms_report_carrier_events(account=acct, events=events)
    assert [(r.ci_lineitemid, r.outcome) for r in results] == [
        (1, LineOutcome.ACCEPTED),
        (1, LineOutcome.ACCEPTED),
        (1, LineOutcome.ALREADY_DONE),
        (99, LineOutcome.REJECTED),
        (3, LineOutcome.REJECTED),
        (2, LineOutcome.REJECTED),
    ]
    assert results[0].tracking_number == "1Z1"
    assert "line 99 is unknown" in results[3].reason
    assert "never handed to the host" in results[4].reason
    assert "has no time zone" in results[5].reason
    # Sending the whole report again changes nothing.
    again = host.pm.hook.oms_report_carrier_events(account=acct, events=events[:2])
    assert [r.outcome for r in again] == [LineOutcome.ALREADY_DONE] * 2
    # A later scan is kept but does not move the first scan.
    later = CarrierEvent(1, CarrierEventKind.SCAN, T0 + timedelta(days=2))
    [r] = host.pm.hook.oms_report_carrier_events(account=acct, events=[later])
    assert r.outcome is LineOutcome.ACCEPTED
    summary = host.plugin.ledger_for(acct).carrier_summary()
    assert summary == {1: (T0 + timedelta(days=1), T0 + timedelta(days=3))}
    assert summary[1][0].tzinfo == UTC
    # Other channels get None and no ledger is touched.
    other = replace(host.account(tmp_path / "other"), channel="amazon")
    assert host.pm.hook.oms_report_carrier_events(account=other, events=events) is None
    assert not (tmp_path / "other").exists()
