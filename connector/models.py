"""Typed values that cross the hook boundary between a host OMS and a channel plugin.

Everything here is plain data: frozen dataclasses and enums with no behaviour that needs I/O,
so the host, the plugin and the tests can build and compare them freely. Money is ``Decimal``;
every timestamp is timezone-aware UTC.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from connector.secrets import Secret

_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

_T = TypeVar("_T")


def _quick_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted dataclass an ``__init__`` that sets each slot through its member
    descriptor instead of ``object.__setattr__`` (which looks the name up on the type first):
    the same parameters, defaults and result, about half the cost. Used on the values built
    once or more per imported line (issue 11: ~0.5 s of a 100k-line import was these inits)."""
    params = dataclasses.fields(cls)  # type: ignore[arg-type]
    if hasattr(cls, "__post_init__") or any(
        not f.init or f.default_factory is not dataclasses.MISSING for f in params
    ):
        raise TypeError(f"_quick_init: {cls.__name__} needs dataclass's own __init__")
    names: dict[str, Any] = {}
    args: list[str] = []
    body: list[str] = []
    for f in params:
        names[f"_set_{f.name}"] = getattr(cls, f.name).__set__
        if f.default is dataclasses.MISSING:
            args.append(f.name)
        else:
            names[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(args)}):\n" + "\n".join(body) + "\n"
    exec(source, names)  # noqa: S102 (our own field names, as dataclasses itself does)
    init = names["__init__"]
    original = cls.__init__
    init.__qualname__ = original.__qualname__
    init.__annotations__ = original.__annotations__
    init.__doc__ = original.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


__all__ = [
    "Account",
    "AccountOptions",
    "Address",
    "Cancellation",
    "CarrierEvent",
    "CarrierEventKind",
    "ChannelInfo",
    "ChannelProduct",
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
    "VoidResult",
    "WaitingLine",
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
    :ivar ack_concurrency: most ``mark_exported`` (and packed tracking) calls in flight at
        once, each on a thread with its own HTTP session (1 = one after the other); the
        throttle and ``Retry-After`` still hold across them.
    :ivar requests_per_second: client-side throttle for this account (0 = unthrottled).
    :ivar timeout_seconds: connect/read timeout of one HTTP call.
    :ivar max_retries: transport retries per call (429, 5xx, connection errors).
    :ivar backoff_seconds: base of the exponential backoff between retries.
    :ivar merchant_level: Groupon merchant level 1-5 (sales-threshold guard).
    :ivar holiday_region: public holidays of a subdivision (``GB-ENG``, ``GB-SCT``, ``US-CA``)
        instead of the country-wide ones; ``""`` = the account's region.
    :ivar cutoff: local cut-off time ``HH:MM`` for the 1-business-day tracking deadline.
    :ivar timezone: IANA zone of the cut-off (Groupon's vendor article uses US Central).
    :ivar closures: extra non-business dates (ISO ``YYYY-MM-DD``), e.g. warehouse closures.
    :ivar max_response_bytes: cap of one CI answer, on the wire and decompressed.
    :ivar call_deadline_seconds: overall deadline of one CI call (attempts, retries, sleeps).
    :ivar sync_deadline_seconds: overall deadline of one import's reading of CI (all listings).
    :ivar max_pages_per_listing: most pages one ``get_orders`` listing may have.
    :ivar max_items_per_listing: most records one ``get_orders`` listing may have.
    :ivar window_catchup_minutes: in window mode, also read the un-exported listing when the
        last such catch-up is at least this old (0 = every import), so an order dated before
        the windows (back-dated, late, a clock change) is still imported.
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
    holiday_region: str = ""
    cutoff: str = "17:00"
    timezone: str = "America/Chicago"
    closures: tuple[str, ...] = ()
    # Hostile-world caps of the CI client (issue 9); see docs/reliability.md.
    max_response_bytes: int = 8 * 1024 * 1024
    call_deadline_seconds: float = 120.0
    sync_deadline_seconds: float = 1800.0
    max_pages_per_listing: int = 400
    max_items_per_listing: int = 100_000
    window_catchup_minutes: int = 60
    lock_timeout_seconds: float = 60.0
    lease_seconds: int = 600
    retention_days: int = 90
    import_interval_minutes: int = 15
    flush_interval_minutes: int = 5
    sla_interval_minutes: int = 60
    ack_concurrency: int = 3


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

    @classmethod
    def from_values(
        cls,
        *,
        name: str,
        supplier_id: str | int,
        token: str | Secret,
        channel: str = "groupon",
        region: str = "US",
        api_version: str = "v4",
        base_url: str = "https://scm.commerceinterface.com",
        data_dir: Path | str = Path("data"),
        mappings_dir: Path | str | None = None,
        options: AccountOptions | Mapping[str, Any] | None = None,
    ) -> Account:
        """Build an account from plain values, e.g. a row of the host's own accounts table.

        This is the public way for a host that keeps accounts in its database (instead of the
        connector's TOML file) to make an :class:`Account`: the token is passed as a plain
        ``str`` and wrapped in a :class:`~connector.secrets.Secret` here, so it never shows in
        a repr, a log line or an error message from then on.

        :param options: an :class:`AccountOptions` or a mapping of its field names (the same
            keys as the config file's ``[accounts.options]`` table).
        :raises ValueError: a value is missing or malformed; the message names the field
            (never the token's value).

        .. versionadded:: 0.2.0
        """
        problems: list[str] = []
        if not isinstance(name, str) or not _ACCOUNT_NAME.match(name):
            problems.append(f"name {name!r}: letters, digits, '_', '.', '-' (not empty)")
        sid = str(supplier_id).strip() if isinstance(supplier_id, (str, int)) else ""
        if not sid or isinstance(supplier_id, bool):
            problems.append(f"supplier_id {supplier_id!r}: a non-empty id is required")
        if isinstance(token, Secret):
            secret: Secret | None = token
        elif isinstance(token, str) and token.strip():
            secret = Secret(token.strip())
        else:
            secret = None
            problems.append("token: a non-empty str is required")
        if not isinstance(channel, str) or not channel:
            problems.append(f"channel {channel!r}: a non-empty channel name is required")
        reg = region.strip().upper() if isinstance(region, str) else ""
        if reg == "GB":
            reg = "UK"
        if not re.fullmatch(r"[A-Z]{2}", reg):
            problems.append(f"region {region!r}: a two-letter country code such as US or UK")
        if api_version not in ("v2", "v4"):
            problems.append(f"api_version {api_version!r}: one of v2, v4")
        if not isinstance(base_url, str) or not re.match(r"^https?://[^\s/]+", base_url):
            problems.append(f"base_url {base_url!r}: must start with https:// (or http://)")
        opts: AccountOptions | None
        if options is None:
            opts = AccountOptions()
        elif isinstance(options, AccountOptions):
            opts = options
        else:
            known = {f.name for f in dataclasses.fields(AccountOptions)}
            unknown = sorted(set(options) - known)
            if unknown:
                problems.append(f"options: unknown key(s) {', '.join(unknown)}")
                opts = None
            else:
                opts = AccountOptions(**dict(options))
        if problems or secret is None or opts is None:
            raise ValueError("cannot build account: " + "; ".join(problems))
        return cls(
            name=name,
            channel=channel,
            supplier_id=sid,
            token=secret,
            region=reg,
            api_version=api_version,
            base_url=base_url.rstrip("/"),
            data_dir=Path(data_dir),
            mappings_dir=Path(mappings_dir) if mappings_dir is not None else None,
            options=opts,
        )


@_quick_init
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


@_quick_init
@dataclass(frozen=True, slots=True)
class SkuComponent:
    """One host SKU a Groupon line resolves to (a bundle resolves to several)."""

    host_sku: str
    quantity_per_unit: int = 1


@_quick_init
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


@_quick_init
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
    AWAITING_HOST = "awaiting_host"
    """A dispatch for a line the host has not confirmed storing yet (``oms_mark_exported``
    not called, or the line not imported yet): released by the next ``oms_flush_outbox``
    once the line is acknowledged.

    .. versionadded:: 0.2.0
    """


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
class WaitingLine:
    """A line that is not handed over yet because its order waits on
    ``import_delay_minutes``: ``reason`` says why, ``until`` when it will be (aware UTC)."""

    account: str
    ci_lineitemid: int
    orderid: str
    order_date: datetime
    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class ImportBatch:
    """What one ``oms_import_orders`` call hands the host.

    :ivar orders: orders to store. Usually an order carries all its lines; when records of
        one ``orderid`` arrive in different reads (or a held order is released), the same
        ``orderid`` comes back carrying **only the lines the host has not been handed yet**,
        and its ``total`` is the sum of the CI records those lines came in (not the order's
        grand total): merge by line and add the total to the stored order's.
    :ivar held: a **full snapshot**, not a delta: every import-side line held at the end of
        this call (unmapped SKU, invalid payload), earlier holds included. Replace the list
        the host keeps with it; never append (within one chunked round it grows as more
        orders are evaluated, and the batch with ``more=False`` is complete). Dispatch holds
        are not in it: see ``oms_held_lines``.
    :ivar cancellations: lines Groupon cancelled after they were imported that the host has
        not **confirmed** yet (``oms_confirm_cancellations``): each is reported again by every
        import until confirmed, so apply them idempotently.
    :ivar more: further orders are ready: after storing and acknowledging this batch, the
        host calls ``oms_import_orders`` again (and again while ``more``).
    :ivar waiting: lines staged but waiting on the import delay, with why and until when
        (informational: nothing for the host to do).
    """

    orders: tuple[Order, ...] = ()
    held: tuple[HeldLine, ...] = ()
    cancellations: tuple[Cancellation, ...] = ()
    more: bool = False
    waiting: tuple[WaitingLine, ...] = ()


@_quick_init
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

    ``shipment_id`` is the host's own id and the **idempotency key** of a dispatch: the same
    id with the same contents (courier, service, and per parcel the tracking number and line
    quantities) again changes nothing and reports ``already_done``; the same id with other
    contents is ``rejected`` with a reason naming the difference and nothing is sent.

    .. versionchanged:: 0.2.0
       A reused ``shipment_id`` with other contents is rejected (it used to be sent).
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


@_quick_init
@dataclass(frozen=True, slots=True)
class LineResult:
    """What happened to one line (for dispatch: to one (line, parcel)). ``reason`` is set for
    every outcome but ``accepted``.

    :ivar tracking_number: the parcel's tracking number (dispatch and carrier events).
    :ivar shipment_id: the shipment the result belongs to (dispatch results), so the results
        of ``oms_dispatch_many`` can be matched to their shipments.
    :ivar retry_at: for ``queued`` outcomes, the earliest time ``oms_flush_outbox`` will try
        again (``None`` for other outcomes, or when it is due at once).

    .. versionchanged:: 0.2.0
       Added ``shipment_id`` and ``retry_at``.
    """

    ci_lineitemid: int
    outcome: LineOutcome
    reason: str = ""
    tracking_number: str | None = None
    shipment_id: str | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class VoidResult:
    """What ``oms_void_shipment`` did with a shipment the host withdrew.

    :ivar shipment_id: the shipment.
    :ivar withdrawn: (line, tracking) rows taken out of the outbox: never sent to CI.
    :ivar already_sent: rows CI has already accepted (tracking cannot be edited in CI; the
        host must correct them in CI's web UI or with Groupon support).
    :ivar in_flight: rows being sent right now; try again after the next flush.
    :ivar found: whether the plugin knew the shipment at all.

    .. versionadded:: 0.2.0
    """

    shipment_id: str
    withdrawn: tuple[LineResult, ...] = ()
    already_sent: tuple[LineResult, ...] = ()
    in_flight: tuple[LineResult, ...] = ()
    found: bool = True


@dataclass(frozen=True, slots=True)
class ChannelProduct:
    """One product the channel has sold, as the host should know it (product sync).

    Groupon takes no stock feed (CI has no inventory endpoint): a Groupon deal's quantity is
    managed in Groupon's merchant centre. The channel therefore reports ``stock=None``,
    meaning *unlimited / not managed by the channel*; a host must not expect stock levels
    to flow back.

    :ivar sku: the Groupon SKU on the line items.
    :ivar bom_sku: the bill-of-materials SKU Groupon sent with it, if any.
    :ivar name: the product name as sold (the latest seen).
    :ivar unit_price: the latest unit price seen.
    :ivar option: the deal option / variant text, if CI sent one.
    :ivar host_skus: what the SKU maps to on the host (``sku_aliases``), empty when unmapped
        (then lines of this SKU are held, unless ``sku_fallback`` says otherwise).
    :ivar lines_seen: how many line items carried this SKU.
    :ivar last_seen: when the latest of them was first read.
    :ivar stock: always ``None`` for Groupon: unlimited, no stock feed.

    .. versionadded:: 0.2.0
    """

    sku: str
    bom_sku: str | None
    name: str
    unit_price: Decimal | None
    option: str = ""
    host_skus: tuple[SkuComponent, ...] = ()
    lines_seen: int = 0
    last_seen: datetime | None = None
    stock: int | None = None


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
    """A channel plugin's self-description.

    :ivar name: the channel the plugin owns (one plugin per channel in a plugin manager).
    :ivar stock_policy: ``"unlimited"`` when the channel takes no stock feed (Groupon),
        ``"managed"`` when the host should push stock.

    .. versionchanged:: 0.2.0
       Added ``stock_policy``.
    """

    name: str
    version: str
    capabilities: frozenset[str]
    config_fields: tuple[ConfigField, ...]
    stock_policy: str = "unlimited"


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
