"""Host contract v2 (issue 10): hold lifecycle, shipment identity, batch dispatch, retry
timing, import semantics, host-owned configuration, plugin instances, product sync."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pluggy
import pytest

import connector.hookspecs
from connector.errors import CITransportError
from connector.mappings import CsvMappingsProvider, Mappings, MappingsProvider
from connector.models import (
    Account,
    HoldKind,
    LineOutcome,
    Parcel,
    Shipment,
    ShipmentLine,
    SkuComponent,
    StoredOrder,
)
from connector.plugin import GrouponPlugin, new_plugin, plugin
from tests.connector.fakes import (
    FakeCI,
    Host,
    make_host,
    make_line,
    make_record,
    tracking_checker,
)


def _imported(tmp_path: Path, *records: dict[str, Any], ack: bool = True) -> tuple[Host, Any]:
    host = make_host()
    acct = host.account(tmp_path)
    for rec in records:
        host.cis["us"].add(rec)
    batch = host.pm.hook.oms_import_orders(account=acct)
    if ack:
        stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
        host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    return host, acct


def _held_ids(host: Host, acct: Any) -> list[int | None]:
    return [h.ci_lineitemid for h in host.pm.hook.oms_held_lines(account=acct)]


# -- hold lifecycle ----------------------------------------------------------------------------


def test_hold_is_superseded_once_the_line_is_fully_shipped(tmp_path: Path) -> None:
    """Issue 10 repro: {line: 9} on a line of quantity 1 is held, then {line: 1} is accepted;
    the hold must not be listed any more (it was, forever, in 0.1)."""
    host, acct = _imported(tmp_path, make_record("A", [make_line(1)]))
    [held] = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z001", {1: 9})
    )
    assert held.outcome is LineOutcome.HELD
    assert _held_ids(host, acct) == [1]
    [ok] = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S2", "UPS", "1Z002", {1: 1})
    )
    assert ok.outcome is LineOutcome.ACCEPTED
    assert _held_ids(host, acct) == []
    ledger = host.plugin.ledger_for(acct)
    [closed] = ledger.closed_outbox()
    assert (closed.shipment_id, closed.why) == ("S1", "superseded")
    # The superseded shipment sent again reports why, and is still never sent.
    [again] = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z001", {1: 9})
    )
    assert again.outcome is LineOutcome.ALREADY_DONE
    assert "superseded" in again.reason
    assert len(host.cis["us"].calls_to("tracking_notification")) == 1


def test_hold_of_a_cancelled_line_is_superseded(tmp_path: Path) -> None:
    host, acct = _imported(tmp_path, make_record("A", [make_line(1, quantity=2)]))
    host.pm.hook.oms_dispatch(account=acct, shipment=Shipment.single("S1", "UPS", "1Z1", {1: 5}))
    assert _held_ids(host, acct) == [1]
    host.cis["us"].cancel(1)
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert [c.ci_lineitemid for c in batch.cancellations] == [1]
    host.pm.hook.oms_confirm_cancellations(account=acct, ci_lineitemids=[1])
    assert _held_ids(host, acct) == []


def test_holds_of_unknown_lines_are_not_listed(tmp_path: Path) -> None:
    host, acct = _imported(tmp_path, make_record("A", [make_line(1)]))
    [held] = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z1", {424242: 1})
    )
    assert held.outcome is LineOutcome.HELD
    assert "not known" in held.reason
    assert _held_ids(host, acct) == []
    # Still in the outbox for the operator (ci-connector held list / dismiss).
    [row] = host.plugin.ledger_for(acct).outbox_rows(states=("held",))
    assert row.hold_kind is HoldKind.AWAITING_HOST


def test_ship_before_ack_is_released_by_the_next_flush(tmp_path: Path) -> None:
    """Issue 10 item 2: the host crashed between its commit and the ack, and ships before
    the next sync. After the ack, the next flush sends the held dispatch."""
    host, acct = _imported(tmp_path, make_record("A", [make_line(1)]), ack=False)
    [held] = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z1", {1: 1})
    )
    assert held.outcome is LineOutcome.HELD
    assert "oms_mark_exported" in held.reason
    host.pm.hook.oms_mark_exported(account=acct, stored=[StoredOrder("A", "H-A", (1,))])
    [sent] = host.pm.hook.oms_flush_outbox(account=acct)
    assert (sent.ci_lineitemid, sent.outcome, sent.shipment_id) == (1, LineOutcome.ACCEPTED, "S1")
    assert _held_ids(host, acct) == []
    assert host.plugin.ledger_for(acct).get_line(1).qty_shipped == 1


def test_hook_oms_void_shipment(tmp_path: Path) -> None:
    host, acct = _imported(tmp_path, make_record("A", [make_line(1, quantity=2), make_line(2)]))
    # S1: line 1 held (over-ship), nothing sent.
    host.pm.hook.oms_dispatch(account=acct, shipment=Shipment.single("S1", "UPS", "1Z1", {1: 3}))
    result = host.pm.hook.oms_void_shipment(account=acct, shipment_id="S1", reason="label void")
    assert result.found
    assert [(r.ci_lineitemid, r.tracking_number) for r in result.withdrawn] == [(1, "1Z1")]
    assert result.already_sent == ()
    assert _held_ids(host, acct) == []
    # The id stays used: sending it again is refused and nothing goes out.
    [again] = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z1", {1: 3})
    )
    assert again.outcome is LineOutcome.REJECTED
    assert "voided" in again.reason
    assert "label void" in again.reason
    # S2 accepted: voiding it withdraws nothing and says why.
    host.pm.hook.oms_dispatch(account=acct, shipment=Shipment.single("S2", "UPS", "1Z2", {2: 1}))
    sent = host.pm.hook.oms_void_shipment(account=acct, shipment_id="S2", reason="oops")
    assert sent.withdrawn == ()
    assert [r.ci_lineitemid for r in sent.already_sent] == [2]
    assert "cannot be withdrawn" in sent.already_sent[0].reason
    unknown = host.pm.hook.oms_void_shipment(account=acct, shipment_id="nope", reason="x")
    assert not unknown.found


def test_void_reopens_the_quantity_of_a_queued_row(tmp_path: Path) -> None:
    host, acct = _imported(tmp_path, make_record("A", [make_line(1)]))
    host.cis["us"].fail("tracking_notification", CITransportError("503"))
    [queued] = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z1", {1: 1})
    )
    assert queued.outcome is LineOutcome.QUEUED
    voided = host.pm.hook.oms_void_shipment(account=acct, shipment_id="S1", reason="relabel")
    assert len(voided.withdrawn) == 1
    [ok] = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S2", "UPS", "1Z9", {1: 1})
    )
    assert ok.outcome is LineOutcome.ACCEPTED
    host.clock.advance(hours=2)
    assert host.pm.hook.oms_flush_outbox(account=acct, force=True) == []


# -- shipment identity -------------------------------------------------------------------------


def test_reused_shipment_id_with_other_contents_is_rejected_and_never_sent(tmp_path: Path) -> None:
    """Issue 10 item 3: SHP-1 reused with another tracking number and another line."""
    host, acct = _imported(tmp_path, make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    first = Shipment.single("SHP-1", "UPS", "1Z001", {1: 1})
    [ok] = host.pm.hook.oms_dispatch(account=acct, shipment=first)
    assert ok.outcome is LineOutcome.ACCEPTED
    other = Shipment.single("SHP-1", "UPS", "1Z002", {2: 1})
    results = host.pm.hook.oms_dispatch(account=acct, shipment=other)
    assert [r.outcome for r in results] == [LineOutcome.REJECTED]
    reason = results[0].reason
    assert "line 2 tracking '1Z002' is new" in reason
    assert "line 1 tracking '1Z001' is missing" in reason
    assert "new shipment_id" in reason
    assert len(host.cis["us"].calls_to("tracking_notification")) == 1
    # Another courier is a difference too; the same contents are already_done.
    [courier] = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("SHP-1", "FedEx", "1Z001", {1: 1})
    )
    assert courier.outcome is LineOutcome.REJECTED
    assert "courier 'FedEx' (was 'UPS')" in courier.reason
    [same] = host.pm.hook.oms_dispatch(account=acct, shipment=first)
    assert same.outcome is LineOutcome.ALREADY_DONE


# -- batch dispatch ----------------------------------------------------------------------------


def test_hook_oms_dispatch_many(tmp_path: Path) -> None:
    records = [make_record(f"O{i}", [make_line(i, quantity=2)]) for i in range(1, 6)]
    host, acct = _imported(tmp_path, *records)
    shipments = [Shipment.single(f"S{i}", "UPS", f"1ZB{i:03d}", {i: 2}) for i in range(1, 5)]
    # Line 5: two parcels, partial quantities -> the partial endpoint, one call for both.
    shipments.append(
        Shipment(
            "S5",
            "UPS",
            (Parcel("1ZP1", (ShipmentLine(5, 1),)), Parcel("1ZP2", (ShipmentLine(5, 1),))),
        )
    )
    results = host.pm.hook.oms_dispatch_many(account=acct, shipments=shipments)
    assert [(r.shipment_id, r.ci_lineitemid, r.tracking_number, r.outcome) for r in results] == [
        ("S1", 1, "1ZB001", LineOutcome.ACCEPTED),
        ("S2", 2, "1ZB002", LineOutcome.ACCEPTED),
        ("S3", 3, "1ZB003", LineOutcome.ACCEPTED),
        ("S4", 4, "1ZB004", LineOutcome.ACCEPTED),
        ("S5", 5, "1ZP1", LineOutcome.ACCEPTED),
        ("S5", 5, "1ZP2", LineOutcome.ACCEPTED),
    ]
    assert len(host.cis["us"].calls_to("tracking_notification")) == 1
    assert len(host.cis["us"].calls_to("lineitem_tracking_notification")) == 1
    # The same batch again: every row already done, no call.
    again = host.pm.hook.oms_dispatch_many(account=acct, shipments=shipments)
    assert {r.outcome for r in again} == {LineOutcome.ALREADY_DONE}
    assert len(host.cis["us"].calls_to("tracking_notification")) == 1


def test_dispatch_many_checks_quantities_across_the_batch(tmp_path: Path) -> None:
    host, acct = _imported(tmp_path, make_record("A", [make_line(1, quantity=2)]))
    results = host.pm.hook.oms_dispatch_many(
        account=acct,
        shipments=[
            Shipment.single("S1", "UPS", "1Z1", {1: 2}),
            Shipment.single("S2", "UPS", "1Z2", {1: 1}),
            Shipment.single("S1", "UPS", "1Z1", {1: 2}),  # the same shipment twice
            Shipment.single("S1", "UPS", "1Z3", {1: 2}),  # S1 reused with other contents
        ],
    )
    assert [(r.shipment_id, r.outcome) for r in results] == [
        ("S1", LineOutcome.ACCEPTED),
        ("S2", LineOutcome.HELD),
        ("S1", LineOutcome.ALREADY_DONE),
        ("S1", LineOutcome.REJECTED),
    ]
    assert "exceeds what is still open" in results[1].reason
    [items] = host.cis["us"].calls_to("tracking_notification")
    assert [(i.ci_lineitemid, i.tracking) for i in items] == [(1, "1Z1")]
    # S2's hold is superseded: the line is fully shipped.
    assert _held_ids(host, acct) == []


def test_dispatch_many_keeps_the_same_address_rule_across_shipments(tmp_path: Path) -> None:
    host, acct = _imported(
        tmp_path,
        make_record("A", [make_line(1)], address1="1 Main St"),
        make_record("B", [make_line(2)], address1="9 Other Rd"),
    )
    results = host.pm.hook.oms_dispatch_many(
        account=acct,
        shipments=[
            Shipment.single("S1", "UPS", "1ZSAME", {1: 1}),
            Shipment.single("S2", "UPS", "1ZSAME", {2: 1}),
        ],
    )
    assert [r.outcome for r in results] == [LineOutcome.HELD, LineOutcome.HELD]
    assert "different ship-to addresses" in results[0].reason
    assert host.cis["us"].calls_to("tracking_notification") == []


# -- retry timing ------------------------------------------------------------------------------


def test_queued_results_carry_retry_at_and_force_flushes_now(tmp_path: Path) -> None:
    host, acct = _imported(tmp_path, make_record("A", [make_line(1)]))
    host.cis["us"].fail("tracking_notification", CITransportError("503"))
    [queued] = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z1", {1: 1})
    )
    assert queued.outcome is LineOutcome.QUEUED
    assert queued.retry_at == host.clock.now + timedelta(seconds=60)
    # Re-sending the same shipment reports the same retry time.
    [known] = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z1", {1: 1})
    )
    assert known.retry_at == queued.retry_at
    assert host.pm.hook.oms_flush_outbox(account=acct) == []  # not due yet
    [sent] = host.pm.hook.oms_flush_outbox(account=acct, force=True)
    assert sent.outcome is LineOutcome.ACCEPTED
    assert sent.retry_at is None


# -- import semantics ----------------------------------------------------------------------------


def test_import_batch_held_is_a_full_snapshot(tmp_path: Path) -> None:
    """``held`` is the complete list each time (replace, never append): two calls with nothing
    new report the same holds, not an empty delta and not twice as many."""
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1, "UNMAPPED-1")]))
    host.cis["us"].add(make_record("B", [make_line(2, "UNMAPPED-2")]))
    first = host.pm.hook.oms_import_orders(account=acct)
    second = host.pm.hook.oms_import_orders(account=acct)
    assert sorted(h.ci_lineitemid for h in first.held) == [1, 2]
    assert first.held == second.held
    assert [h for h in host.pm.hook.oms_held_lines(account=acct)] == list(first.held)


def test_partial_redelivery_total_is_the_sum_of_the_records_delivered(tmp_path: Path) -> None:
    """Documented in ImportBatch/oms_import_orders: an order re-delivered with only its new
    lines carries the total of the CI records those lines came in."""
    host, acct = _imported(tmp_path, make_record("A", [make_line(1, price=10.0)]))
    host.cis["us"].add(make_record("A", [make_line(2, "SKU-2", 2, price=7.5)]))
    batch = host.pm.hook.oms_import_orders(account=acct)
    [order] = batch.orders
    assert order.ci_lineitemids == (2,)
    assert order.total == Decimal("15.0")


# -- host-owned configuration -------------------------------------------------------------------


def test_account_from_values_wraps_the_token(tmp_path: Path) -> None:
    token = "tok-FromValues-AbCdEfGhIjKlMnOpQr"
    acct = Account.from_values(
        name="eu-de",
        supplier_id=4711,
        token=token,
        region="gb",
        data_dir=tmp_path,
        options={"merchant_level": 3},
    )
    assert acct.token.reveal() == token
    assert token not in repr(acct)
    assert token not in str(acct)
    assert (acct.supplier_id, acct.region, acct.channel) == ("4711", "UK", "groupon")
    assert acct.options.merchant_level == 3
    with pytest.raises(ValueError) as err:
        Account.from_values(
            name="", supplier_id="", token=token, api_version="v9", options={"nope": 1}
        )
    text = str(err.value)
    for field_name in ("name", "supplier_id", "api_version", "options: unknown key(s) nope"):
        assert field_name in text
    assert token not in text
    with pytest.raises(ValueError, match="token"):
        Account.from_values(name="x", supplier_id="1", token="  ")


def test_mappings_come_from_a_host_provider(tmp_path: Path) -> None:
    """A host supplies couriers and aliases from its own tables through a provider."""

    class HostTables:
        def __init__(self) -> None:
            self.calls = 0

        def mappings_for(self, account: Account) -> Mappings:
            self.calls += 1
            return Mappings.from_tables(
                {"US": ["ups"]}, [("US", "Our Van Line", "", "ups")], {"SKU-1": [("OWN-1", 2)]}
            )

    tables = HostTables()
    assert isinstance(tables, MappingsProvider)
    assert isinstance(CsvMappingsProvider(), MappingsProvider)
    ci = FakeCI()
    grp = GrouponPlugin(
        client_factory=lambda a: ci, mappings_loader=tables, tracking_checker=tracking_checker()
    )
    pm = pluggy.PluginManager("oms")
    pm.add_hookspecs(connector.hookspecs)
    pm.register(grp)
    acct = Account.from_values(
        name="us", supplier_id="1", token="t-Provider-1234567890abcd", data_dir=tmp_path
    )
    ci.add(make_record("A", [make_line(1, quantity=1)]))
    batch = pm.hook.oms_import_orders(account=acct)
    assert batch.orders[0].lines[0].components == (SkuComponent("OWN-1", 2),)
    pm.hook.oms_mark_exported(account=acct, stored=[StoredOrder("A", "H", (1,))])
    [ok] = pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S", "Our Van Line", "1Z999", {1: 1})
    )
    assert ok.outcome is LineOutcome.ACCEPTED
    assert tables.calls >= 2
    grp.close()
    # The factory takes the provider too (what a host registers instead of the entry point).
    assert new_plugin(mappings_loader=tables)._mappings(acct).carrier_code("US", "Our Van Line")


# -- plugin instances ------------------------------------------------------------------------------


def test_new_instance_shares_no_state(tmp_path: Path) -> None:
    fresh = plugin.new_instance()
    other = new_plugin()
    assert fresh is not plugin
    assert other is not plugin
    assert fresh is not other
    host = make_host()
    acct = host.account(tmp_path)
    host.pm.hook.oms_import_orders(account=acct)
    clone = host.plugin.new_instance()
    assert host.plugin._runtimes
    assert not clone._runtimes
    assert clone._client_factory is host.plugin._client_factory


# -- product sync -------------------------------------------------------------------------------


def test_hook_oms_channel_products(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1, "SKU-1", price=12.5), make_line(2, "NEW")]))
    host.cis["us"].add(make_record("B", [make_line(3, "SKU-1", bom_sku="BOM-9")]))
    host.pm.hook.oms_import_orders(account=acct)
    products = host.pm.hook.oms_channel_products(account=acct)
    assert [(p.sku, p.bom_sku, p.lines_seen) for p in products] == [
        ("NEW", None, 1),
        ("SKU-1", None, 1),
        ("SKU-1", "BOM-9", 1),
    ]
    by_key = {(p.sku, p.bom_sku): p for p in products}
    assert by_key[("SKU-1", None)].unit_price == Decimal("12.5")
    assert by_key[("SKU-1", None)].name == "Item SKU-1"
    assert by_key[("SKU-1", None)].host_skus == (SkuComponent("HOST-1", 1),)
    assert by_key[("NEW", None)].host_skus == ()  # unmapped: the host knows what to map
    assert {p.stock for p in products} == {None}  # Groupon takes no stock feed
    (info,) = host.pm.hook.oms_channel_info()
    assert info.stock_policy == "unlimited"
    other = Account.from_values(
        name="x", channel="other", supplier_id="1", token="t-x-1234567890abcdefgh"
    )
    assert host.pm.hook.oms_channel_products(account=other) is None


def test_sla_at_risk_refuses_a_naive_now(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    with pytest.raises(ValueError, match="timezone-aware"):
        host.pm.hook.oms_sla_at_risk(account=acct, now=datetime(2026, 1, 1, 12, 0))
