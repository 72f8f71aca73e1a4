"""Typed values that cross the hook boundary between a host OMS and a channel plugin.

Everything here is plain data: frozen dataclasses and enums with no behaviour that needs I/O,
so the host, the plugin and the tests can build and compare them freely. Money is ``Decimal``;
every timestamp is timezone-aware UTC.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from connector.secrets import Secret

__all__ = [
    "Account",
    "AccountOptions",
    "Address",
    "Cancellation",
    "CarrierEvent",
    "CarrierEventKind",
    "ChannelInfo",
    "ConfigField",
    "HeldLine",
    "HoldKind",
    "ImportBatch",
    "LineOutcome",
    "LineResult",
    "Order",
    "OrderLine",
    "Parcel",
    "Shipment",
    "ShipmentLine",
    "SkuComponent",
    "SlaRisk",
    "StoredOrder",
]


@dataclass(frozen=True, slots=True)
class AccountOptions:
    """Per-account behaviour switches, read from the ``[accounts.options]`` table of the config.

    :ivar import_delay_minutes: only import orders at least this old (gives Groupon's own
        fraud checks time to cancel first).
    :ivar mark_exported: call ``mark_exported`` after the host stored the orders. When off, the
        ledger alone prevents duplicates and CI keeps listing the lines as un-exported.
    :ivar window_mode: read with date windows (< 24 h each, overlapping) instead of the
        "not yet exported" view; this also shows lines Groupon cancelled after export.
    :ivar window_hours: width of one window in window mode (CI refuses 24 h or more).
    :ivar window_overlap_minutes: how far each window run re-reads before the last watermark.
    :ivar lookback_hours: how far back the first window-mode run starts.
    :ivar watch_cancellations: re-read the date windows of lines that are still open so that
        Groupon-side cancellations (e.g. the 7-business-day auto-cancel) reach the host.
    :ivar sku_fallback: what to do with a line whose SKU has no alias: ``"hold"`` it (default),
        or use the Groupon ``"bom_sku"`` or ``"sku"`` as the host SKU.
    :ivar tracking_format_policy: ``"reject"`` a tracking number that fails its carrier's
        format/checksum, only ``"warn"``, or ``"off"``.
    :ivar ack_batch_size: line ids per ``mark_exported`` call.
    :ivar max_orders_per_import: most orders one ``oms_import_orders`` call hands over; when
        more are ready the batch says ``more`` and the host calls again (bounded memory).
    :ivar tracking_batch_size: elements per tracking call.
    :ivar requests_per_second: client-side throttle for this account (0 = unthrottled).
    :ivar timeout_seconds: connect/read timeout of one HTTP call.
    :ivar max_retries: transport retries per call (429, 5xx, connection errors).
    :ivar backoff_seconds: base of the exponential backoff between retries.
    :ivar merchant_level: Groupon merchant level 1-5 (sales-threshold guard).
    :ivar cutoff: local cut-off time ``HH:MM`` for the 1-business-day tracking deadline.
    :ivar timezone: IANA zone of the cut-off (Groupon's vendor article uses US Central).
    :ivar closures: extra non-business dates (ISO ``YYYY-MM-DD``), e.g. warehouse closures.
    :ivar lock_timeout_seconds: how long a hook call waits for another process working the
        same account before it gives up with ``AccountBusy``.
    :ivar lease_seconds: how long a claimed outbound call (ack batch, tracking batch) stays
        reserved to the process that claimed it; a lease of a process on another machine that
        died is taken over after this.
    :ivar retention_days: raw CI records and customer details of lines shipped or cancelled
        longer ago than this are removed from the ledger (ids, states, audit stay).
    :ivar import_interval_minutes: ``ci-connector run`` / ``worker``: minutes between imports.
    :ivar flush_interval_minutes: minutes between outbox flushes.
    :ivar sla_interval_minutes: minutes between SLA risk refreshes.
    """

    import_delay_minutes: int = 0
    mark_exported: bool = True
    window_mode: bool = False
    window_hours: int = 23
    window_overlap_minutes: int = 30
    lookback_hours: int = 72
    watch_cancellations: bool = True
    sku_fallback: str = "hold"
    tracking_format_policy: str = "reject"
    ack_batch_size: int = 100
    max_orders_per_import: int = 500
    tracking_batch_size: int = 100
    requests_per_second: float = 0.0
    timeout_seconds: float = 30.0
    max_retries: int = 5
    backoff_seconds: float = 0.5
    merchant_level: int = 1
    cutoff: str = "17:00"
    timezone: str = "America/Chicago"
    closures: tuple[str, ...] = ()
    lock_timeout_seconds: float = 60.0
    lease_seconds: int = 600
    retention_days: int = 90
    import_interval_minutes: int = 15
    flush_interval_minutes: int = 5
    sla_interval_minutes: int = 60


@dataclass(frozen=True, slots=True)
class Account:
    """One supplier account on one channel (Groupon has one per country, each with its own
    supplier id and token).

    :ivar name: the operator's short name for the account, unique in the configuration.
    :ivar channel: which channel plugin owns the account (``"groupon"``).
    :ivar supplier_id: CI supplier id.
    :ivar token: CI access token; a :class:`~connector.secrets.Secret`, never printed.
    :ivar region: ISO country code that decides the approved carrier list and holidays.
    :ivar api_version: ``"v2"`` or ``"v4"``.
    :ivar base_url: CI host, ``https://scm.commerceinterface.com`` in production.
    :ivar data_dir: where the plugin keeps its ledger for this account.
    :ivar mappings_dir: folder with ``carriers/<region>.csv``, ``couriers.csv``,
        ``sku_aliases.csv``; ``None`` means the mappings shipped with the package.
    :ivar options: behaviour switches.
    :ivar ledger_url: ``postgresql://user@host/db`` to keep the ledger in PostgreSQL (one
        schema per account); ``None`` = a SQLite file in ``data_dir``. Never holds a password.
    :ivar ledger_password: the PostgreSQL password (from the environment variable the config
        names), or ``None`` to let libpq find it (``PGPASSWORD``, ``~/.pgpass``).
    """

    name: str
    channel: str
    supplier_id: str
    token: Secret
    region: str = "US"
    api_version: str = "v4"
    base_url: str = "https://scm.commerceinterface.com"
    data_dir: Path = Path("data")
    mappings_dir: Path | None = None
    options: AccountOptions = field(default_factory=AccountOptions)
    ledger_url: str | None = None
    ledger_password: Secret | None = None


@dataclass(frozen=True, slots=True)
class Address:
    """A postal address as CI sends it (``customer`` is the ship-to address)."""

    name: str
    address1: str
    address2: str = ""
    city: str = ""
    state: str | None = None
    zip: str = ""
    country: str | None = None
    phone: str = ""


@dataclass(frozen=True, slots=True)
class SkuComponent:
    """One host SKU a Groupon line resolves to (a bundle resolves to several)."""

    host_sku: str
    quantity_per_unit: int = 1


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One CI line item, with the host SKU(s) it maps to.

    ``ci_lineitemid`` keys ``mark_exported`` and ``tracking_notification``;
    ``fulfillment_lineitem_id`` keys ``lineitem_tracking_notification`` and is what Groupon
    support calls the "Line Item #".
    """

    ci_lineitemid: int
    fulfillment_lineitem_id: str | None
    sku: str
    bom_sku: str | None
    name: str
    quantity: int
    unit_price: Decimal
    components: tuple[SkuComponent, ...] = ()
    groupon_cost: Decimal | None = None
    discount: Decimal = Decimal("0")
    status: str = "open"
    ship_by: datetime | None = None
    order_line_item_uuid: str | None = None
    voucher_code: str = ""
    gift_message: str = ""


@dataclass(frozen=True, slots=True)
class Order:
    """One Groupon order: every CI record sharing an ``orderid``, merged across pages."""

    account: str
    orderid: str
    order_date: datetime
    ship_by: datetime
    ship_to: Address
    lines: tuple[OrderLine, ...]
    total: Decimal
    parent_orderid: str | None = None
    billing: Address | None = None
    shipping_method: str = ""
    supplier_name: str = ""

    @property
    def ci_lineitemids(self) -> tuple[int, ...]:
        return tuple(line.ci_lineitemid for line in self.lines)


class HoldKind(enum.StrEnum):
    """Why a line is held instead of flowing on."""

    UNMAPPED_SKU = "unmapped_sku"
    UNMAPPED_COURIER = "unmapped_courier"
    INVALID_PAYLOAD = "invalid_payload"
    PREFLIGHT = "preflight"
    REJECTED_BY_CI = "rejected_by_ci"


@dataclass(frozen=True, slots=True)
class HeldLine:
    """A line the plugin will not pass on until an operator acts; ``reason`` says what to fix.

    ``ci_lineitemid`` is ``None`` only when the payload was too broken to carry one.
    """

    account: str
    kind: HoldKind
    reason: str
    ci_lineitemid: int | None = None
    orderid: str | None = None
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Cancellation:
    """A line Groupon cancelled after the host imported it."""

    account: str
    orderid: str
    ci_lineitemid: int
    host_order_id: str | None
    detected_at: datetime
    reason: str = "cancelled in CommerceInterface"


@dataclass(frozen=True, slots=True)
class ImportBatch:
    """What one ``oms_import_orders`` call hands the host.

    :ivar orders: new orders to store, each complete (all its lines).
    :ivar held: lines the plugin holds back, with reasons, including earlier holds still open.
    :ivar cancellations: lines Groupon cancelled after they were imported, not yet reported.
    :ivar more: further orders are ready: after storing and acknowledging this batch, the
        host calls ``oms_import_orders`` again (and again while ``more``).
    """

    orders: tuple[Order, ...] = ()
    held: tuple[HeldLine, ...] = ()
    cancellations: tuple[Cancellation, ...] = ()
    more: bool = False


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """The host's receipt for an order it has durably committed."""

    orderid: str
    host_order_id: str
    ci_lineitemids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ShipmentLine:
    """Units of one CI line inside one parcel."""

    ci_lineitemid: int
    quantity: int


@dataclass(frozen=True, slots=True)
class Parcel:
    """One tracking number and the line quantities it carries."""

    tracking_number: str
    lines: tuple[ShipmentLine, ...]


@dataclass(frozen=True, slots=True)
class Shipment:
    """A host dispatch: the host's courier/service and one or more parcels.

    ``shipment_id`` is the host's own id; sending the same shipment again changes nothing.
    """

    shipment_id: str
    courier: str
    parcels: tuple[Parcel, ...]
    service: str = ""
    shipped_at: datetime | None = None

    @classmethod
    def single(
        cls,
        shipment_id: str,
        courier: str,
        tracking_number: str,
        lines: Mapping[int, int],
        service: str = "",
    ) -> Shipment:
        """One parcel holding ``{ci_lineitemid: quantity}``."""
        parcel = Parcel(
            tracking_number,
            tuple(ShipmentLine(lid, qty) for lid, qty in lines.items()),
        )
        return cls(shipment_id, courier, (parcel,), service)

    @property
    def tracking_numbers(self) -> tuple[str, ...]:
        return tuple(p.tracking_number for p in self.parcels)


class LineOutcome(enum.StrEnum):
    """Per-line result of an acknowledgement or dispatch."""

    ACCEPTED = "accepted"
    ALREADY_DONE = "already_done"
    REJECTED = "rejected"
    HELD = "held"
    QUEUED = "queued"


@dataclass(frozen=True, slots=True)
class LineResult:
    """What happened to one line. ``reason`` is set for every outcome but ``accepted``."""

    ci_lineitemid: int
    outcome: LineOutcome
    reason: str = ""
    tracking_number: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigField:
    """One configuration field a channel needs, for host set-up screens."""

    name: str
    description: str
    required: bool = True
    secret: bool = False
    default: Any = None


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A channel plugin's self-description."""

    name: str
    version: str
    capabilities: frozenset[str]
    config_fields: tuple[ConfigField, ...]


@dataclass(frozen=True, slots=True)
class SlaRisk:
    """A line whose Groupon deadline is near or past."""

    account: str
    orderid: str
    ci_lineitemid: int
    state: str
    deadline: datetime
    business_days_to_auto_cancel: int | None
    reason: str


class CarrierEventKind(enum.StrEnum):
    """What the host's carrier tracking saw for a parcel."""

    SCAN = "scan"
    """Any carrier movement scan (pick-up, in transit, out for delivery...)."""
    DELIVERED = "delivered"
    """The carrier reports the parcel delivered."""


@dataclass(frozen=True, slots=True)
class CarrierEvent:
    """One carrier scan or delivery of a CI line, as the host's carrier tracking reports it.

    :ivar ci_lineitemid: the CI line the parcel carries.
    :ivar kind: scan or delivery.
    :ivar at: when the carrier recorded it; must be timezone-aware (UTC preferred).
    :ivar tracking_number: the parcel's tracking number, if the host knows it.
    """

    ci_lineitemid: int
    kind: CarrierEventKind
    at: datetime
    tracking_number: str | None = None
