"""The reference host's sync cycle and dispatch, driven through the hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy
import pytest

from connector.errors import CITransportError
from connector.models import (
    Cancellation,
    LineOutcome,
    LineResult,
    Order,
    Shipment,
)
from connector.reference_host.facade import ChannelFacade, NoChannelPlugin
from connector.reference_host.host import SYNC_STAGES, ReferenceHost


def test_lifecycle_order_import_store_ack_flush(
    host: ReferenceHost, fake: Any, kit: Any, pm: pluggy.PluginManager
) -> None:
    fake.orders = [kit.order("O1", [11, 12]), kit.order("O2", [21])]
    stages: list[str] = []
    # Spy on the store so the commit's place in the sequence is asserted too.
    real_store = host.store.store_batch

    def spy(*args: Any, **kwargs: Any) -> Any:
        fake.calls.append("host:commit")
        return real_store(*args, **kwargs)

    host.store.store_batch = spy  # type: ignore[method-assign]
    report = host.sync(kit.account(), progress=stages.append)
    assert fake.calls == [
        "fake:import_orders",
        "host:commit",
        "fake:mark_exported",
        "fake:flush_outbox",
    ]
    assert stages == list(SYNC_STAGES)
    assert pm.contract_monitor.seen == [  # type: ignore[attr-defined]
        "oms_channel_stats",  # a reading before and after: the retries of this sync
        "oms_import_orders",
        "oms_mark_exported",
        "oms_flush_outbox",
        "oms_channel_stats",
    ]
    assert (report.orders_imported, report.lines_imported) == (2, 3)
    assert (report.orders_new, report.lines_marked_exported) == (2, 3)
    # What was acknowledged is exactly what the host committed, with the host's ids.
    [receipts] = fake.marked
    assert {(r.orderid, r.host_order_id) for r in receipts} == {
        ("O1", host.store.host_order_id("us", "O1")),
        ("O2", host.store.host_order_id("us", "O2")),
    }
    assert report.ok


def test_second_sync_finds_nothing_new(host: ReferenceHost, fake: Any, kit: Any) -> None:
    fake.orders = [kit.order("O1", [11])]
    host.sync(kit.account())
    report = host.sync(kit.account())
    assert (report.orders_imported, report.lines_marked_exported) == (0, 0)
    assert host.store.count_orders() == 1


def test_refused_order_is_not_acknowledged_and_comes_back(
    tmp_path: Path, pm: pluggy.PluginManager, fake: Any, kit: Any
) -> None:
    fake.orders = [kit.order("O1", [11]), kit.order("O2", [21])]
    refuse: set[str] = {"O2"}

    def accept(order: Order) -> bool | str:
        return "out of stock" if order.orderid in refuse else True

    with ReferenceHost(tmp_path / "h.sqlite3", ChannelFacade(pm), accept=accept) as host:
        report = host.sync(kit.account())
        [receipts] = fake.marked
        assert [r.orderid for r in receipts] == ["O1"]
        assert report.orders_refused == 1
        assert 21 not in fake.confirmed
        # The channel offers O2 again; once the host takes it, it is stored and acknowledged.
        refuse.clear()
        again = host.sync(kit.account())
        assert (again.orders_imported, again.orders_new, again.lines_marked_exported) == (1, 1, 1)
        assert fake.confirmed == {11, 21}


def test_crash_between_commit_and_ack_replays_without_duplicates(
    host: ReferenceHost, fake: Any, kit: Any
) -> None:
    fake.orders = [kit.order("O1", [11, 12])]
    fake.fail_mark_exported = CITransportError("CI unreachable after 5 retries")
    first = host.sync(kit.account())
    assert not first.ok
    assert first.errors == ["mark_exported: CI unreachable after 5 retries"]
    assert first.orders_new == 1
    assert fake.confirmed == set()
    fake.fail_mark_exported = None
    second = host.sync(kit.account())
    assert second.ok
    assert (second.orders_new, second.orders_already_stored) == (0, 1)
    assert second.lines_marked_exported == 2
    assert host.store.count_lines() == 2
    assert host.store.duplicates() == []


def test_held_lines_and_cancellations_reach_the_host(
    host: ReferenceHost, fake: Any, kit: Any
) -> None:
    fake.orders = [kit.order("O1", [11, 12])]
    host.sync(kit.account())
    fake.held = [kit.unmapped_hold(31, "O3")]
    fake.cancellations = [Cancellation("us", "O1", 12, None, kit.T0)]
    report = host.sync(kit.account())
    assert (report.held, report.held_new) == (1, 1)
    assert (report.cancellations, report.cancellations_applied) == (1, 1)
    assert host.store.line("us", 12)["status"] == "cancelled"  # type: ignore[index]
    # The host confirmed after committing, so the channel stops reporting it.
    assert fake.cancel_confirmed == {12}
    again = host.sync(kit.account())
    assert again.held_new == 0
    assert again.cancellations == 0


def test_flush_results_are_counted(host: ReferenceHost, fake: Any, kit: Any) -> None:
    fake.outbox = [
        LineResult(11, LineOutcome.ACCEPTED, tracking_number="1Z1"),
        LineResult(12, LineOutcome.ACCEPTED),
        LineResult(13, LineOutcome.QUEUED, "503 from CI"),
    ]
    report = host.sync(kit.account())
    assert (report.retried, report.retried_ok, report.dispatched, report.still_queued) == (
        3,
        2,
        1,
        1,
    )
    data = report.to_dict()
    assert data["account"] == "us"
    assert data["retried"] == 3
    assert data["ok"] is True


def test_ship_records_then_dispatches(host: ReferenceHost, fake: Any, kit: Any) -> None:
    fake.orders = [kit.order("O1", [11, 12])]
    host.sync(kit.account())
    fake.calls.clear()
    results = host.ship(kit.account(), Shipment.single("S1", "UPS", "1Z1", {11: 2}))
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED]
    assert fake.calls == ["fake:dispatch"]
    assert host.store.line("us", 11)["status"] == "shipped"  # type: ignore[index]
    held = host.ship(kit.account(), Shipment.single("S2", "Pigeon", "P1", {12: 2}))
    assert held[0].outcome is LineOutcome.HELD
    [notice] = host.store.notices("us", "dispatch_held")
    assert notice["reason"] == "courier 'Pigeon' has no carrier code"


def test_sync_for_an_unowned_channel_fails_cleanly(
    host: ReferenceHost, fake: Any, kit: Any
) -> None:
    with pytest.raises(NoChannelPlugin, match="no plugin answers for channel 'ebay'"):
        host.sync(kit.account(channel="ebay"))
    assert host.store.count_orders() == 0


def test_contract_monitor_flags_a_bad_call(pm: pluggy.PluginManager, fake: Any) -> None:
    monitor = pm.contract_monitor  # type: ignore[attr-defined]
    try:
        with pytest.raises(AttributeError):
            pm.hook.oms_import_orders(account="us")  # a string, not an Account
        assert monitor.violations == ["oms_import_orders: account is str"]
    finally:
        monitor.violations.clear()
