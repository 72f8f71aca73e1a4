"""An in-memory CI fake with the CIClient interface and realistic semantics.

* ``fetch_all()`` lists records with un-exported lines (250 per page), ``fetch_all(window)``
  every record whose order date is inside ``[start, end)``; windows of 24 h or more are refused.
* ``mark_exported`` refuses the whole batch when any id is unknown or in ``refuse_ack``.
* tracking calls refuse unknown lines, carrier codes outside ``approved`` (case-insensitive),
  ``refuse_tracking`` numbers, and quantities beyond the line; identical re-sends are no-ops.
* ``fail(endpoint, exc, times)`` injects failures (raised before anything changes).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.ci.client import LineitemTrackingItem, OrdersPage, PageMeta, TrackingItem
from connector.ci.schemas import parse_ci_datetime
from connector.errors import CIBusinessError, CIError
from connector.mappings import Mappings
from connector.models import Account, ImportBatch

PAGE_SIZE = 250
T0 = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)  # a Monday


def ci_date(when: datetime) -> str:
    """CI's record date format."""
    return when.strftime("%m/%d/%Y %I:%M%p UTC")


def make_line(
    lid: int,
    sku: str = "SKU-1",
    quantity: int = 1,
    *,
    bom_sku: str | None = None,
    ship_by: datetime | None = None,
    price: float = 10.0,
) -> dict[str, Any]:
    """One ``line_items[]`` element in the real v4 shape (trimmed to what matters)."""
    return {
        "weight": "0.5",
        "bom_sku": bom_sku,
        "ci_lineitemid": lid,
        "sku": sku,
        "unit_price": price,
        "ship_by_date": ci_date(ship_by) if ship_by else "",
        "status": "open",
        "groupon_cost": 5.0,
        "discount": 0,
        "voucher_code": "",
        "name": f"Item {sku}",
        "po_number": None,
        "fulfillment_lineitem_id": str(1300000000 + lid),
        "gift_message": "",
        "order_line_item_uuid": f"uuid-{lid}",
        "quantity": quantity,
    }


def make_record(
    orderid: str,
    lines: Sequence[dict[str, Any]],
    *,
    date: datetime = T0,
    name: str = "Jane Example",
    address1: str = "1 Main St",
) -> dict[str, Any]:
    """One ``data[]`` record in the real v4 shape."""
    return {
        "orderid": orderid,
        "parent_orderid": None,
        "amount": {"total": sum(ln["unit_price"] * ln["quantity"] for ln in lines), "shipping": 0},
        "date": ci_date(date),
        "fulfillment_method": "Drop Ship (Marketplace)",
        "supplier": "EXAMPLE SUPPLIER",
        "line_items": list(lines),
        "customer": {
            "city": "Chicago",
            "state": "IL",
            "name": name,
            "zip": "60601",
            "country": "US",
            "address1": address1,
            "address2": "",
            "phone": "",
        },
        "shipping": {"carrier": "", "method": "standard"},
    }


def fake_mappings(
    *,
    aliases: dict[str, list[tuple[str, int]]] | None = None,
    couriers: Sequence[tuple[str, str, str, str]] = (("US", "UPS", "", "ups"),),
    approved: Sequence[str] = ("ups", "usps", "fedex"),
) -> Mappings:
    """Mapping tables for the US region built in memory."""
    return Mappings.from_tables(
        {"US": list(approved)},
        couriers,
        aliases if aliases is not None else {"SKU-1": [("HOST-1", 1)], "SKU-2": [("HOST-2", 1)]},
    )


@dataclass
class FakeCI:
    """In-memory CommerceInterface for one supplier account."""

    approved: frozenset[str] = frozenset({"ups", "usps", "fedex"})
    records: list[dict[str, Any]] = field(default_factory=list)
    exported: set[int] = field(default_factory=set)
    status: dict[int, str] = field(default_factory=dict)
    refuse_ack: set[int] = field(default_factory=set)
    refuse_tracking: set[str] = field(default_factory=set)
    tracking: dict[tuple[int, str], int] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    failures: dict[str, list[Exception]] = field(default_factory=dict)
    closed: bool = False

    # -- test helpers -------------------------------------------------------------------------

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def fail(self, endpoint: str, exc: Exception, times: int = 1) -> None:
        self.failures.setdefault(endpoint, []).extend([exc] * times)

    def cancel(self, lid: int) -> None:
        self.status[lid] = "cancelled"

    def calls_to(self, endpoint: str) -> list[Any]:
        return [payload for name, payload in self.calls if name == endpoint]

    def _lines(self) -> dict[int, dict[str, Any]]:
        return {ln["ci_lineitemid"]: ln for rec in self.records for ln in rec.get("line_items", [])}

    def _maybe_fail(self, endpoint: str) -> None:
        queue = self.failures.get(endpoint)
        if queue:
            raise queue.pop(0)

    def _view(self, record: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
        out = copy.deepcopy(record)
        if "line_items" not in record:
            return out
        out["line_items"] = copy.deepcopy(lines)
        for ln in out["line_items"]:
            ln["status"] = self.status.get(ln["ci_lineitemid"], ln["status"])
        return out

    # -- CIClient interface -------------------------------------------------------------------

    def fetch_all(self, window: tuple[datetime, datetime] | None = None) -> list[OrdersPage]:
        self.calls.append(("get_orders", window))
        self._maybe_fail("get_orders")
        data: list[dict[str, Any]] = []
        if window is None:
            for rec in self.records:
                items = rec.get("line_items", [])
                lines = [ln for ln in items if ln["ci_lineitemid"] not in self.exported]
                if lines or not items:  # a broken record without lines is never exported
                    data.append(self._view(rec, lines))
        else:
            start, end = window
            if end - start >= timedelta(hours=24):
                raise CIBusinessError("date window must be shorter than 24 hours")
            for rec in self.records:
                if start <= parse_ci_datetime(rec["date"]) < end:
                    data.append(self._view(rec, rec["line_items"]))
        chunks = [data[i : i + PAGE_SIZE] for i in range(0, len(data), PAGE_SIZE)]
        if not chunks:
            return [OrdersPage(PageMeta(0, 0, PAGE_SIZE, 0), [])]
        return [
            OrdersPage(PageMeta(len(chunks), n, PAGE_SIZE, len(data)), chunk)
            for n, chunk in enumerate(chunks, start=1)
        ]

    def mark_exported(self, ci_lineitemids: Sequence[int]) -> None:
        self.calls.append(("mark_exported", list(ci_lineitemids)))
        self._maybe_fail("mark_exported")
        known = self._lines()
        bad = [i for i in ci_lineitemids if i not in known or i in self.refuse_ack]
        if bad:
            raise CIBusinessError("Invalid ci_lineitem_ids", endpoint="mark_exported")
        self.exported.update(ci_lineitemids)

    def _check_tracking(self, lid: int, carrier: str, number: str, qty: int | None) -> None:
        line = self._lines().get(lid)
        if line is None:
            raise CIBusinessError(f"Unknown ci_lineitem_id: {lid}")
        if carrier.lower() not in self.approved:
            raise CIBusinessError(f"Unknown carrier code: {carrier}")
        if number in self.refuse_tracking:
            raise CIBusinessError(f"Invalid tracking number: {number}")
        if (lid, number) in self.tracking:
            return  # identical re-send: no-op
        shipped = sum(q for (i, _), q in self.tracking.items() if i == lid)
        if shipped + (qty or line["quantity"]) > line["quantity"]:
            raise CIBusinessError(f"quantity exceeds line {lid}")

    def tracking_notification(self, items: Sequence[TrackingItem]) -> None:
        self.calls.append(("tracking_notification", list(items)))
        self._maybe_fail("tracking_notification")
        lines = self._lines()
        for it in items:
            self._check_tracking(it.ci_lineitemid, it.carrier, it.tracking, it.quantity)
        for it in items:
            key = (it.ci_lineitemid, it.tracking)
            self.tracking.setdefault(key, it.quantity or lines[it.ci_lineitemid]["quantity"])

    def lineitem_tracking_notification(self, items: Sequence[LineitemTrackingItem]) -> None:
        self.calls.append(("lineitem_tracking_notification", list(items)))
        self._maybe_fail("lineitem_tracking_notification")
        by_fid = {ln["fulfillment_lineitem_id"]: lid for lid, ln in self._lines().items()}
        for it in items:
            lid = by_fid.get(it.fulfillment_lineitem_id)
            if lid is None:
                raise CIBusinessError(
                    f"Unknown fulfillment_lineitem_id: {it.fulfillment_lineitem_id}"
                )
            self._check_tracking(lid, it.carrier, it.tracking, it.quantity)
        for it in items:
            lid = by_fid[it.fulfillment_lineitem_id]
            self.tracking.setdefault((lid, it.tracking), it.quantity or 1)

    def close(self) -> None:
        self.closed = True


class Transport(CIError):
    """Shorthand for a transport failure in tests."""


@dataclass
class FakeTracking:
    """A TrackingCheck look-alike."""

    known_format: bool
    valid: bool
    reason: str = ""


def tracking_checker(bad: set[str] | None = None) -> Any:
    """A format check that fails exactly the numbers in ``bad``."""
    refused = bad or set()

    def check(code: str, number: str) -> FakeTracking:
        if number in refused:
            return FakeTracking(True, False, "check digit mismatch")
        return FakeTracking(True, True)

    return check


class Clock:
    """A settable clock."""

    def __init__(self, now: datetime = T0 + timedelta(hours=3)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class Host:
    """A PluginManager wired the way a host wires it, with fakes behind the plugin."""

    pm: Any
    plugin: Any
    clock: Clock
    cis: dict[str, FakeCI]
    maps: dict[str, Mappings]

    def account(self, tmp: Any, name: str = "us", **options: Any) -> Any:
        from connector.models import Account, AccountOptions
        from connector.secrets import Secret

        self.cis.setdefault(name, FakeCI())
        self.maps.setdefault(name, fake_mappings())
        return Account(
            name=name,
            channel="groupon",
            supplier_id="90001",
            token=Secret(f"tok-{name}-AbCdEfGhIjKlMnOpQrStUvW"),
            data_dir=tmp,
            options=AccountOptions(**options),
        )


def make_host(bad_tracking: set[str] | None = None) -> Host:
    """pluggy.PluginManager("oms") + hookspecs + a GrouponPlugin on fakes."""
    import pluggy

    import connector.hookspecs
    from connector.plugin import GrouponPlugin

    cis: dict[str, FakeCI] = {}
    maps: dict[str, Mappings] = {}
    clock = Clock()
    plugin = GrouponPlugin(
        client_factory=lambda acct: cis.setdefault(acct.name, FakeCI()),
        clock=clock,
        mappings_loader=lambda acct: maps.get(acct.name) or fake_mappings(),
        tracking_checker=tracking_checker(bad_tracking),
    )
    pm = pluggy.PluginManager("oms")
    pm.add_hookspecs(connector.hookspecs)
    pm.register(plugin)
    return Host(pm, plugin, clock, cis, maps)


@dataclass
class Imported:
    """A fake host and its account after one import (the ``three_imported`` fixture)."""

    host: Host
    account: Account
    ci: FakeCI
    batch: ImportBatch

    def unpack(self) -> tuple[Host, Account, FakeCI, ImportBatch]:
        return self.host, self.account, self.ci, self.batch
