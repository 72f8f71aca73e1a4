"""Fixtures for the reference host: a fresh plugin manager per test, an inline fake channel
plugin, and a hookcall monitor that checks the types of every hook call's kwargs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pluggy
import pytest

from connector import hookimpl
from connector.models import (
    Account,
    Address,
    Cancellation,
    CarrierEvent,
    ChannelInfo,
    HeldLine,
    HoldKind,
    ImportBatch,
    LineOutcome,
    LineResult,
    Order,
    OrderLine,
    Shipment,
    SlaRisk,
    StoredOrder,
)
from connector.reference_host.facade import ChannelFacade
from connector.reference_host.host import ReferenceHost
from connector.reference_host.plugins import get_plugin_manager
from connector.secrets import Secret

T0 = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)


def make_account(name: str = "us", channel: str = "fake", tmp: Any = None) -> Account:
    return Account(
        name=name,
        channel=channel,
        supplier_id="1001",
        token=Secret("tok-SECRET-abc123"),
        **({"data_dir": tmp} if tmp is not None else {}),
    )


def make_order(orderid: str, line_ids: Sequence[int], account: str = "us") -> Order:
    lines = tuple(
        OrderLine(
            ci_lineitemid=lid,
            fulfillment_lineitem_id=f"F{lid}",
            sku=f"SKU-{lid}",
            bom_sku=None,
            name=f"Item {lid}",
            quantity=2,
            unit_price=Decimal("9.99"),
        )
        for lid in line_ids
    )
    return Order(
        account=account,
        orderid=orderid,
        order_date=T0,
        ship_by=T0 + timedelta(days=3),
        ship_to=Address(name="Ann Buyer", address1="1 Main St", city="Chicago", zip="60601"),
        lines=lines,
        total=Decimal("19.98") * len(lines),
    )


class FakeChannel:
    """An in-memory channel that follows the contract: re-offers unconfirmed orders, answers
    only for its own channel, logs every call in ``calls``."""

    def __init__(self, name: str = "fake", calls: list[str] | None = None) -> None:
        self.name = name
        self.calls: list[str] = [] if calls is None else calls
        self.orders: list[Order] = []
        self.confirmed: set[int] = set()
        self.held: list[HeldLine] = []
        self.cancellations: list[Cancellation] = []
        self.cancel_confirmed: set[int] = set()
        self.outbox: list[LineResult] = []
        self.marked: list[list[StoredOrder]] = []
        self.carrier_events: list[CarrierEvent] = []
        self.fail_mark_exported: Exception | None = None

    def _mine(self, account: Account) -> bool:
        return account.channel == self.name

    @hookimpl
    def oms_channel_info(self) -> ChannelInfo:
        # Not logged: the manager reads it at registration (channel ownership), which is not
        # a call of the host's cycle.
        return ChannelInfo(self.name, "9.9", frozenset({"import"}), ())

    @hookimpl
    def oms_import_orders(self, account: Account) -> ImportBatch | None:
        if not self._mine(account):
            return None
        self.calls.append(f"{self.name}:import_orders")
        pending = tuple(o for o in self.orders if not set(o.ci_lineitemids) <= self.confirmed)
        unconfirmed = tuple(
            c for c in self.cancellations if c.ci_lineitemid not in self.cancel_confirmed
        )
        return ImportBatch(pending, tuple(self.held), unconfirmed)

    @hookimpl
    def oms_confirm_cancellations(
        self, account: Account, ci_lineitemids: Sequence[int]
    ) -> list[LineResult] | None:
        if not self._mine(account):
            return None
        self.calls.append(f"{self.name}:confirm_cancellations")
        self.cancel_confirmed.update(ci_lineitemids)
        return [LineResult(lid, LineOutcome.ACCEPTED) for lid in ci_lineitemids]

    @hookimpl
    def oms_mark_exported(
        self, account: Account, stored: Sequence[StoredOrder]
    ) -> list[LineResult] | None:
        if not self._mine(account):
            return None
        self.calls.append(f"{self.name}:mark_exported")
        if self.fail_mark_exported is not None:
            raise self.fail_mark_exported
        self.marked.append(list(stored))
        results = []
        for receipt in stored:
            for lid in receipt.ci_lineitemids:
                done = lid in self.confirmed
                self.confirmed.add(lid)
                results.append(
                    LineResult(
                        lid,
                        LineOutcome.ALREADY_DONE if done else LineOutcome.ACCEPTED,
                        "already exported" if done else "",
                    )
                )
        return results

    @hookimpl
    def oms_dispatch(self, account: Account, shipment: Shipment) -> list[LineResult] | None:
        if not self._mine(account):
            return None
        self.calls.append(f"{self.name}:dispatch")
        results = []
        for parcel in shipment.parcels:
            for item in parcel.lines:
                if shipment.courier == "Pigeon":
                    results.append(
                        LineResult(
                            item.ci_lineitemid,
                            LineOutcome.HELD,
                            "courier 'Pigeon' has no carrier code",
                            parcel.tracking_number,
                        )
                    )
                else:
                    results.append(
                        LineResult(
                            item.ci_lineitemid,
                            LineOutcome.ACCEPTED,
                            tracking_number=parcel.tracking_number,
                        )
                    )
        return results

    @hookimpl
    def oms_flush_outbox(self, account: Account) -> list[LineResult] | None:
        if not self._mine(account):
            return None
        self.calls.append(f"{self.name}:flush_outbox")
        flushed, self.outbox = self.outbox, []
        return flushed

    @hookimpl
    def oms_report_carrier_events(
        self, account: Account, events: Sequence[CarrierEvent]
    ) -> list[LineResult] | None:
        if not self._mine(account):
            return None
        self.calls.append(f"{self.name}:report_carrier_events")
        results = []
        for event in events:
            done = event in self.carrier_events
            if not done:
                self.carrier_events.append(event)
            outcome = LineOutcome.ALREADY_DONE if done else LineOutcome.ACCEPTED
            results.append(LineResult(event.ci_lineitemid, outcome, "recorded" if done else ""))
        return results

    @hookimpl
    def oms_held_lines(self, account: Account) -> list[HeldLine] | None:
        if not self._mine(account):
            return None
        self.calls.append(f"{self.name}:held_lines")
        return list(self.held)

    @hookimpl
    def oms_sla_at_risk(self, account: Account, now: datetime) -> list[SlaRisk] | None:
        if not self._mine(account):
            return None
        self.calls.append(f"{self.name}:sla_at_risk")
        return [
            SlaRisk(
                account.name, o.orderid, o.lines[0].ci_lineitemid, "overdue", o.ship_by, 2, "late"
            )
            for o in self.orders
            if o.ship_by < now
        ]


def unmapped_hold(lid: int, orderid: str) -> HeldLine:
    return HeldLine("us", HoldKind.UNMAPPED_SKU, f"SKU-{lid} has no alias", lid, orderid, T0)


_EXPECTED_KWARGS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "oms_channel_info": {},
    "oms_import_orders": {"account": Account},
    "oms_mark_exported": {"account": Account, "stored": (list, tuple)},
    "oms_channel_stats": {"account": Account},
    "oms_confirm_cancellations": {"account": Account, "ci_lineitemids": (list, tuple)},
    "oms_dispatch": {"account": Account, "shipment": Shipment},
    "oms_dispatch_many": {"account": Account, "shipments": (list, tuple)},
    "oms_void_shipment": {"account": Account, "shipment_id": str, "reason": str},
    "oms_flush_outbox": {"account": Account, "force": bool},
    "oms_channel_products": {"account": Account},
    "oms_report_carrier_events": {"account": Account, "events": (list, tuple)},
    "oms_held_lines": {"account": Account},
    "oms_sla_at_risk": {"account": Account, "now": datetime},
}


class ContractMonitor:
    """Checks every hook call the host makes: known hook, exact kwargs, right types."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.seen: list[str] = []

    def before(self, hook_name: str, hook_impls: Any, kwargs: dict[str, Any]) -> None:
        self.seen.append(hook_name)
        expected = _EXPECTED_KWARGS.get(hook_name)
        if expected is None:
            self.violations.append(f"unknown hook {hook_name}")
            return
        if set(kwargs) != set(expected):
            self.violations.append(f"{hook_name}: kwargs {sorted(kwargs)} != {sorted(expected)}")
        for key, typ in expected.items():
            if key in kwargs and not isinstance(kwargs[key], typ):
                self.violations.append(f"{hook_name}: {key} is {type(kwargs[key]).__name__}")
        if hook_name == "oms_mark_exported":
            for receipt in kwargs.get("stored", ()):
                if not isinstance(receipt, StoredOrder):
                    self.violations.append(f"oms_mark_exported: stored item {receipt!r}")
        if hook_name == "oms_report_carrier_events":
            for event in kwargs.get("events", ()):
                if not isinstance(event, CarrierEvent):
                    self.violations.append(f"oms_report_carrier_events: event {event!r}")
        now = kwargs.get("now")
        if isinstance(now, datetime) and now.tzinfo is None:
            self.violations.append(f"{hook_name}: naive now")

    def after(self, outcome: Any, hook_name: str, hook_impls: Any, kwargs: Any) -> None:
        return None


@pytest.fixture
def pm() -> Iterator[pluggy.PluginManager]:
    """A fresh manager with the specs and no installed plugins, monitored for contract use."""
    manager = get_plugin_manager(load_entrypoints=False)
    monitor = ContractMonitor()
    undo = manager.add_hookcall_monitoring(monitor.before, monitor.after)
    manager.contract_monitor = monitor  # type: ignore[attr-defined]
    yield manager
    undo()
    assert monitor.violations == [], monitor.violations


@pytest.fixture
def fake(pm: pluggy.PluginManager) -> Iterator[FakeChannel]:
    plugin = FakeChannel()
    pm.register(plugin, name="fake")
    try:
        yield plugin
    finally:
        pm.unregister(name="fake")


class Kit:
    """Helpers for the tests in this folder (the importlib import mode means test modules
    cannot import this conftest, so fixtures hand the helpers over)."""

    T0 = T0
    FakeChannel = FakeChannel
    account = staticmethod(make_account)
    order = staticmethod(make_order)
    unmapped_hold = staticmethod(unmapped_hold)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit


@pytest.fixture
def host(tmp_path: Path, pm: pluggy.PluginManager, kit: Any) -> Iterator[ReferenceHost]:
    """A reference host on ``pm`` (the fake channels), its clock fixed at ``kit.T0``."""
    with ReferenceHost(tmp_path / "host.sqlite3", ChannelFacade(pm), clock=lambda: kit.T0) as h:
        yield h
