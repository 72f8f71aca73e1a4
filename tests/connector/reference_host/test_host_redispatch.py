"""Regression: a host stopped between committing a shipment and handing it to the plugin.

Found by the crash-consistency run (``benchmarks/crash.py``, point ``host_shipment``): the
shipment was in the host database, so the host never planned it again, and the channel never
heard of it; the tracking was lost. The host now keeps an "undispatched" marker committed with
the shipment and cleared after ``oms_dispatch`` returned; ``sync`` re-sends what is marked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connector.models import LineOutcome, Shipment
from connector.reference_host.host import ReferenceHost


def test_shipment_committed_but_never_dispatched_is_sent_by_the_next_sync(
    host: ReferenceHost, fake: Any, kit: Any
) -> None:
    fake.orders = [kit.order("O1", [11, 12])]
    host.sync(kit.account())
    shipment = Shipment.single("S1", "UPS", "1Z1", {11: 2, 12: 1})
    # What ship() did before the process died: the host commit, and nothing else.
    assert host.store.create_shipment("us", shipment) is True
    assert [s.shipment_id for s in host.store.undispatched_shipments("us")] == ["S1"]
    fake.calls.clear()

    report = host.sync(kit.account())

    assert report.redispatched == 1
    assert fake.calls.count("fake:dispatch") == 1
    assert host.store.undispatched_shipments("us") == []
    assert host.sync(kit.account()).redispatched == 0  # sent once, not on every sync


def test_rebuilt_shipment_equals_the_recorded_one(host: ReferenceHost, kit: Any) -> None:
    shipped_at = datetime(2024, 3, 5, 10, 30, tzinfo=UTC)
    shipment = Shipment(
        "S9",
        "UPS",
        (
            Shipment.single("x", "UPS", "1ZA", {11: 1, 12: 2}).parcels[0],
            Shipment.single("x", "UPS", "1ZB", {11: 1}).parcels[0],
        ),
        service="Ground",
        shipped_at=shipped_at,
    )
    host.store.create_shipment("us", shipment)
    assert host.store.undispatched_shipments("us") == [shipment]
    assert host.store.undispatched_shipments("other") == []


def test_completed_ship_leaves_nothing_to_redispatch(
    host: ReferenceHost, fake: Any, kit: Any
) -> None:
    fake.orders = [kit.order("O1", [11])]
    host.sync(kit.account())
    results = host.ship(kit.account(), Shipment.single("S1", "UPS", "1Z1", {11: 2}))
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED]
    assert host.store.undispatched_shipments("us") == []
    fake.calls.clear()
    assert host.sync(kit.account()).redispatched == 0
    assert "fake:dispatch" not in fake.calls
