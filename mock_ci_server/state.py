"""The simulator's store: accounts, lines, indexes and Groupon's rules. Plain Python, no Flask.

Every public method takes one re-entrant lock, so concurrent clients lose no update. Listing
and window queries use sorted indexes (a page costs the same with 100,000 lines as with
1,000); auto-cancel deadlines sit in a sorted list that is swept lazily whenever an operation
sees that the simulated clock has passed the earliest one.
"""

from __future__ import annotations

import heapq
import hmac
import itertools
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sortedcontainers import SortedList

from mock_ci_server.businessdays import due_at
from mock_ci_server.carriers import default_codes, normalise
from mock_ci_server.clock import SimClock
from mock_ci_server.errors import (
    InvalidCredentials,
    InvalidParameter,
    TrackingRefused,
    UnknownLineItems,
)
from mock_ci_server.generator import (
    CI_DATE_FORMAT,
    PAGE_SIZE,
    IdCounters,
    Knobs,
    generate_orders,
    listing_order,
)
from mock_ci_server.gpn.store import GPNStore
from mock_ci_server.requestlog import DEFAULT_CAPACITY, RequestLog

LINE_STATUSES = ("open", "partially_shipped", "shipped", "cancelled")
#: The simulator's line status -> the ``status`` a get_orders record shows. Public evidence
#: knows only ``open`` (every capture) and ``ship`` (ShipWorks' GrouponDownloader maps it to
#: "Shipped"); a partially tracked line stays ``open`` (assumed: it still takes tracking) and
#: ``cancelled`` is INVENTED (only date-window reads show it: cancelled lines leave the
#: default listing). See docs/simulator.md, "Line status".
API_STATUS = {
    "open": "open",
    "partially_shipped": "open",
    "shipped": "ship",
    "cancelled": "cancelled",
}
# Merchant graduation caps per 30-day cycle: (units, sales in cents); level 5 is uncapped.
MERCHANT_CAPS: dict[int, tuple[int, int] | None] = {
    1: (100, 1_000_00),
    2: (200, 5_000_00),
    3: (2_500, 25_000_00),
    4: (12_500, 125_000_00),
    5: None,
}
CYCLE = timedelta(days=30)
CANCEL_NO_TRACKING_BUSINESS_DAYS = 7
CANCEL_PARTIAL_BUSINESS_DAYS = 14
MAX_TRACKING_NUMBERS_PER_ORDER = 6
# The ship-to fields compared for a shared tracking number (phone is contact, not address).
SHIP_TO_FIELDS = ("name", "address1", "address2", "city", "state", "zip", "country")
_MASKED = "********"


class UnknownAccountError(LookupError):
    """The control plane named a supplier_id the simulator does not know."""


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


@dataclass
class Account:
    """A CI supplier account (one per country in real life)."""

    supplier_id: str
    token: str = field(repr=False)
    region: str
    approved_carriers: tuple[str, ...]
    merchant_level: int
    name: str
    suspended: bool = False
    cycle_start: datetime | None = None
    cycle_units: int = 0
    cycle_sales_cents: int = 0
    orders_refused: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.approved_lower = normalise(self.approved_carriers)

    def describe(self) -> dict[str, Any]:
        """Everything about the account except the token (masked)."""
        caps = MERCHANT_CAPS[self.merchant_level]
        return {
            "supplier_id": self.supplier_id,
            "token": _MASKED,
            "name": self.name,
            "region": self.region,
            "approved_carriers": list(self.approved_carriers),
            "merchant_level": self.merchant_level,
            "suspended": self.suspended,
            "cycle": {
                "start": _iso(self.cycle_start) if self.cycle_start else None,
                "units": self.cycle_units,
                "sales": self.cycle_sales_cents / 100,
                "cap_units": caps[0] if caps else None,
                "cap_sales": caps[1] / 100 if caps else None,
            },
            "orders_refused": self.orders_refused,
            "events": list(self.events),
        }


@dataclass(frozen=True)
class TrackingEntry:
    """One tracking number recorded on a line."""

    tracking: str
    carrier: str
    quantity: int
    at: datetime


@dataclass(eq=False)
class Line:
    """One CI line item (= one record of the listing)."""

    ci_lineitemid: int
    supplier_id: str
    orderid: str
    fulfillment_lineitem_id: str | None
    seq: int
    order_date: datetime
    quantity: int
    record: dict[str, Any] = field(repr=False)
    ship_to: tuple[Any, ...] = field(repr=False)
    exported: bool = False
    status: str = "open"
    shipped_quantity: int = 0
    tracking: list[TrackingEntry] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    deadline: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None

    def describe(self, include_record: bool = False) -> dict[str, Any]:
        """The line's simulator-side state (for /_sim/state)."""
        out: dict[str, Any] = {
            "ci_lineitemid": self.ci_lineitemid,
            "supplier_id": self.supplier_id,
            "orderid": self.orderid,
            "fulfillment_lineitem_id": self.fulfillment_lineitem_id,
            "order_date": _iso(self.order_date),
            "quantity": self.quantity,
            "exported": self.exported,
            "status": self.status,
            "shipped_quantity": self.shipped_quantity,
            "tracking": [
                {
                    "tracking": t.tracking,
                    "carrier": t.carrier,
                    "quantity": t.quantity,
                    "at": _iso(t.at),
                }
                for t in self.tracking
            ],
            "calls": list(self.calls),
            "auto_cancel_at": _iso(self.deadline) if self.deadline else None,
            "cancelled_at": _iso(self.cancelled_at) if self.cancelled_at else None,
            "cancel_reason": self.cancel_reason,
        }
        if include_record:
            out["record"] = self.record
        return out


@dataclass(frozen=True)
class TrackingRequest:
    """One validated element of ``tracking_info`` (exactly one of the two ids is set)."""

    index: int
    carrier: str
    tracking: str
    quantity: int | None = None
    ci_lineitemid: int | None = None
    fulfillment_lineitem_id: str | None = None


@dataclass(frozen=True)
class OrdersPage:
    """What get_orders answers: counters plus (record, current status) pairs."""

    no_of_pages: int
    current_page: int
    no_of_items: int
    records: list[tuple[dict[str, Any], str]]


@dataclass
class _TrackingUse:
    ship_to: tuple[Any, ...]
    orderids: set[str]


class _SupplierIndex:
    """Per-supplier indexes; every query touches only O(log n + page) entries."""

    def __init__(self) -> None:
        self.unexported: SortedList = SortedList()  # seq of open, un-exported lines
        self.by_date: SortedList = SortedList()  # (order timestamp, seq) of every line
        self.by_seq: dict[int, int] = {}
        self.by_fulfillment: dict[str, int] = {}
        self.orders: dict[str, list[int]] = {}
        self.order_tracking: dict[str, set[str]] = {}
        self.tracking_use: dict[str, _TrackingUse] = {}


def _deadline(order_date: datetime, region: str, business_days: int) -> datetime:
    """Auto-cancel moment: the ship-by rule with N business days (``businessdays.due_at``:
    23:59 local on the N-th business day after the order's start day). The connector's
    ``auto_cancel_at`` follows the same rule (tests/e2e/test_sla_truth.py)."""
    return due_at(order_date, business_days, region)


def parse_ci_datetime(text: str) -> datetime:
    """``MM/DD/YYYY hh:mmAM UTC`` -> aware UTC datetime (ValueError otherwise)."""
    return datetime.strptime(text, CI_DATE_FORMAT).replace(tzinfo=UTC)


class SimState:
    """The whole simulated CommerceInterface (plus the GPN store)."""

    def __init__(
        self, clock: SimClock | None = None, *, request_log_size: int = DEFAULT_CAPACITY
    ) -> None:
        self._lock = threading.RLock()
        self.clock = clock or SimClock()
        self.gpn = GPNStore()
        #: The bounded log of answered API calls (fed by the app; see docs/simulator.md).
        self.requests = RequestLog(request_log_size)
        self._init_data()

    def _init_data(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._lines: dict[int, Line] = {}
        self._index: dict[str, _SupplierIndex] = {}
        self._deadlines: SortedList = SortedList()  # (deadline, ci_lineitemid)
        self._next_seq = 0
        self._ids = IdCounters()
        self._scan_cache: dict[str, _ScanCache] = {}  # the console's search lists per supplier

    def reset(self) -> None:
        """Forget everything: accounts, lines, clock offset, GPN data, the request log."""
        with self._lock:
            self._init_data()
            self.clock.reset()
            self.gpn.reset()
            self.requests.clear()

    # --- request log ---------------------------------------------------------------------

    def request_log(
        self,
        limit: int = 100,
        *,
        after_id: int = 0,
        supplier_id: str | None = None,
        path_contains: str | None = None,
        status: int | None = None,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` logged API calls, newest first, as JSON-ready dicts.

        Each: ``id, at, sim_now, method, path, supplier_id, params`` (token masked), ``status,
        success, fault, latency_ms, excerpt``. ``after_id`` keeps only newer entries (poll with
        the largest id seen). Filters combine with AND.
        """
        entries = self.requests.entries(
            limit,
            after_id=after_id,
            supplier_id=supplier_id,
            path_contains=path_contains,
            status=status,
        )
        return [e.describe() for e in entries]

    def clear_request_log(self) -> None:
        """Empty the request log (ids keep increasing)."""
        self.requests.clear()

    # --- accounts ------------------------------------------------------------------------

    def add_account(
        self,
        supplier_id: str,
        token: str,
        region: str = "US",
        merchant_level: int = 5,
        name: str | None = None,
        approved_carriers: list[str] | tuple[str, ...] | None = None,
    ) -> Account:
        """Create or update an account; raises ValueError naming the bad field."""
        if not isinstance(supplier_id, str) or not supplier_id.strip():
            raise ValueError("supplier_id must be a non-empty string")
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        if merchant_level not in MERCHANT_CAPS:
            raise ValueError(f"merchant_level must be 1..5, got {merchant_level!r}")
        region = region.upper()
        codes = tuple(approved_carriers) if approved_carriers is not None else default_codes(region)
        if approved_carriers is not None:
            default_codes(region)  # still refuse unknown regions
            if not codes or not all(isinstance(c, str) and c.strip() for c in codes):
                raise ValueError("approved_carriers must be a non-empty list of codes")
        with self._lock:
            old = self._accounts.get(supplier_id)
            account = Account(
                supplier_id=supplier_id,
                token=token,
                region=region,
                approved_carriers=codes,
                merchant_level=merchant_level,
                name=name or (old.name if old else f"Supplier {supplier_id}"),
            )
            if old is not None:
                for attr in ("suspended", "cycle_start", "cycle_units", "cycle_sales_cents"):
                    setattr(account, attr, getattr(old, attr))
                account.orders_refused = old.orders_refused
                account.events = old.events
            self._accounts[supplier_id] = account
            self._index.setdefault(supplier_id, _SupplierIndex())
            return account

    def accounts(self) -> list[dict[str, Any]]:
        """Every account, tokens masked."""
        with self._lock:
            return [a.describe() for a in self._accounts.values()]

    def _account(self, supplier_id: str) -> Account:
        account = self._accounts.get(supplier_id)
        if account is None:
            raise UnknownAccountError(f"unknown supplier_id {supplier_id!r}")
        return account

    def suspend(self, supplier_id: str, reason: str = "control plane") -> dict[str, Any]:
        """Suspend an account (new orders are refused); the sales cycle restarts."""
        with self._lock:
            account = self._account(supplier_id)
            self._suspend(account, self.clock.now(), reason)
            return account.describe()

    def reinstate(self, supplier_id: str) -> dict[str, Any]:
        """Lift a suspension; the sales cycle restarts at the unsuspension."""
        with self._lock:
            account = self._account(supplier_id)
            now = self.clock.now()
            if account.suspended:
                account.suspended = False
                self._restart_cycle(account, now)
                account.events.append({"event": "reinstated", "at": _iso(now)})
            return account.describe()

    def _suspend(self, account: Account, now: datetime, reason: str) -> None:
        if not account.suspended:
            account.suspended = True
            self._restart_cycle(account, now)
            account.events.append({"event": "suspended", "at": _iso(now), "reason": reason})

    @staticmethod
    def _restart_cycle(account: Account, now: datetime) -> None:
        account.cycle_start = now
        account.cycle_units = 0
        account.cycle_sales_cents = 0

    def _admit_order(self, account: Account, units: int, sales_cents: int, now: datetime) -> bool:
        """Threshold bookkeeping for one new order; False when the account is suspended."""
        if account.suspended:
            account.orders_refused += 1
            return False
        if account.cycle_start is None or now >= account.cycle_start + CYCLE:
            self._restart_cycle(account, now)  # the cycle starts at the first unit sold
        account.cycle_units += units
        account.cycle_sales_cents += sales_cents
        caps = MERCHANT_CAPS[account.merchant_level]
        if caps is not None and (
            account.cycle_units >= caps[0] or account.cycle_sales_cents >= caps[1]
        ):
            self._suspend(
                account,
                now,
                f"level {account.merchant_level} threshold reached "
                f"({account.cycle_units} units, ${account.cycle_sales_cents / 100:,.2f})",
            )
        return True

    # --- authentication ------------------------------------------------------------------

    def authenticate(self, supplier_id: str, token: str) -> Account:
        """The account for these credentials, else InvalidCredentials (never says which)."""
        account = self._accounts.get(supplier_id)
        expected = account.token if account is not None else "\x00" * max(len(token), 1)
        # compare_digest even for unknown suppliers, so timing does not reveal which is wrong.
        ok = hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8"))
        if account is None or not ok:
            raise InvalidCredentials()
        return account

    # --- seeding -------------------------------------------------------------------------

    def seed(
        self,
        supplier_id: str,
        orders: int = 10,
        seed: int = 1,
        *,
        lines_per_order: tuple[int, int] = (1, 1),
        quantity: tuple[int, int] = (1, 1),
        split_share: float = 0.0,
        countries: list[str] | tuple[str, ...] | None = None,
        spread_hours: float = 48.0,
        unmapped_share: float = 0.0,
    ) -> dict[str, Any]:
        """Generate ``orders`` orders for an account (deterministic for a seed on a fresh state).

        Returns counts, the created ``orderids`` and ``ci_lineitemids`` (listing order), and how
        many orders were refused because the account is (or became) suspended.
        """
        with self._lock:
            account = self._account(supplier_id)
            knobs = Knobs(
                orders=orders,
                lines_per_order=(int(lines_per_order[0]), int(lines_per_order[1])),
                quantity=(int(quantity[0]), int(quantity[1])),
                split_share=split_share,
                countries=tuple(countries) if countries else (account.region,),
                spread_hours=spread_hours,
                unmapped_share=unmapped_share,
            )
            now = self.clock.now()
            self._sweep(now)
            created = []
            refused = 0
            for number, order in enumerate(
                generate_orders(
                    seed=seed,
                    knobs=knobs,
                    now=now,
                    supplier_name=account.name,
                    region=account.region,
                    ids=self._ids,
                )
            ):
                if account.suspended:
                    # Nothing more can be created: count the rest without generating them.
                    refused = knobs.orders - number
                    account.orders_refused += refused
                    break
                self._admit_order(account, order.units, order.sales_cents, now)
                created.append(order)
            dates = {order.orderid: order.order_date for order in created}
            records = listing_order(created)
            line_ids = self._insert_records(account, [(r, dates[r["orderid"]]) for r in records])
            return {
                "supplier_id": supplier_id,
                "orders_created": len(created),
                "lines_created": len(line_ids),
                "orders_refused": refused,
                "suspended": account.suspended,
                "orderids": [order.orderid for order in created],
                "ci_lineitemids": line_ids,
            }

    def seed_records(self, supplier_id: str, records: list[Any]) -> dict[str, Any]:
        """Store raw records in the real shape (one line item each), in the order given.

        All-or-nothing: ValueError naming ``records[i].field`` for the first bad record.
        """
        with self._lock:
            account = self._account(supplier_id)
            now = self.clock.now()
            self._sweep(now)
            parsed: list[tuple[dict[str, Any], datetime]] = []
            seen: set[int] = set()
            for i, record in enumerate(records):
                order_date = self._check_record(i, record)
                line_id = record["line_items"][0]["ci_lineitemid"]
                if line_id in self._lines or line_id in seen:
                    raise ValueError(
                        f"records[{i}].line_items[0].ci_lineitemid: {line_id} already exists"
                    )
                seen.add(line_id)
                parsed.append((record, order_date))
            totals = self._order_totals(parsed)
            admitted: dict[str, bool] = {}
            accepted: list[tuple[dict[str, Any], datetime]] = []
            for record, order_date in parsed:
                orderid = record["orderid"]
                if orderid not in admitted:
                    units, cents = totals[orderid]
                    admitted[orderid] = self._admit_order(account, units, cents, now)
                if admitted[orderid]:
                    accepted.append((record, order_date))
            line_ids = self._insert_records(account, accepted)
            self._bump_counters(accepted)
            return {
                "supplier_id": supplier_id,
                "orders_created": sum(admitted.values()),
                "lines_created": len(line_ids),
                "orders_refused": sum(not ok for ok in admitted.values()),
                "suspended": account.suspended,
                "orderids": [o for o, ok in admitted.items() if ok],
                "ci_lineitemids": line_ids,
            }

    @staticmethod
    def _order_totals(
        parsed: list[tuple[dict[str, Any], datetime]],
    ) -> dict[str, tuple[int, int]]:
        """(units, cents) per orderid over all parsed records, in one pass."""
        totals: dict[str, tuple[int, int]] = {}
        for record, _ in parsed:
            item = record["line_items"][0]
            units, cents = totals.get(record["orderid"], (0, 0))
            totals[record["orderid"]] = (
                units + item["quantity"],
                cents + round(float(item.get("unit_price") or 0) * 100) * item["quantity"],
            )
        return totals

    @staticmethod
    def _check_record(i: int, record: Any) -> datetime:
        where = f"records[{i}]"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: must be a JSON object, got {type(record).__name__}")
        orderid = record.get("orderid")
        if not isinstance(orderid, str) or not orderid:
            raise ValueError(f"{where}.orderid: must be a non-empty string, got {orderid!r}")
        try:
            order_date = parse_ci_datetime(str(record.get("date")))
        except ValueError:
            raise ValueError(
                f"{where}.date: expected 'MM/DD/YYYY hh:mmAM UTC', got {record.get('date')!r}"
            ) from None
        items = record.get("line_items")
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            raise ValueError(
                f"{where}.line_items: must hold exactly one line item (one record per line)"
            )
        item = items[0]
        line_id = item.get("ci_lineitemid")
        if not isinstance(line_id, int) or isinstance(line_id, bool) or line_id <= 0:
            raise ValueError(
                f"{where}.line_items[0].ci_lineitemid: must be a positive int, got {line_id!r}"
            )
        qty = item.get("quantity")
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            raise ValueError(f"{where}.line_items[0].quantity: must be an int >= 1, got {qty!r}")
        fid = item.get("fulfillment_lineitem_id")
        if fid is not None and not isinstance(fid, str):
            raise ValueError(
                f"{where}.line_items[0].fulfillment_lineitem_id: must be a string, got {fid!r}"
            )
        price = item.get("unit_price", 0)
        if not isinstance(price, int | float) or isinstance(price, bool):
            raise ValueError(f"{where}.line_items[0].unit_price: must be a number, got {price!r}")
        if not isinstance(record.get("customer"), dict):
            raise ValueError(f"{where}.customer: must be an object")
        return order_date

    def _bump_counters(self, accepted: list[tuple[dict[str, Any], datetime]]) -> None:
        # Keep generated ids clear of ids that came in raw records.
        for record, _ in accepted:
            item = record["line_items"][0]
            self._ids.next_ci_lineitemid = max(
                self._ids.next_ci_lineitemid, item["ci_lineitemid"] + 1
            )
            if record["orderid"].isdigit():
                self._ids.next_orderid = max(self._ids.next_orderid, int(record["orderid"]) + 1)
            fid = item.get("fulfillment_lineitem_id")
            if isinstance(fid, str) and fid.isdigit():
                self._ids.next_fulfillment_id = max(self._ids.next_fulfillment_id, int(fid) + 1)

    def _insert_records(
        self, account: Account, records: list[tuple[dict[str, Any], datetime]]
    ) -> list[int]:
        index = self._index[account.supplier_id]
        seqs: list[int] = []
        dated: list[tuple[float, int]] = []
        deadlines: list[tuple[datetime, int]] = []
        line_ids: list[int] = []
        for record, order_date in records:
            item = record["line_items"][0]
            customer = record["customer"]
            seq = self._next_seq
            self._next_seq += 1
            line = Line(
                ci_lineitemid=item["ci_lineitemid"],
                supplier_id=account.supplier_id,
                orderid=record["orderid"],
                fulfillment_lineitem_id=item.get("fulfillment_lineitem_id"),
                seq=seq,
                order_date=order_date,
                quantity=item["quantity"],
                record=record,
                ship_to=tuple(customer.get(k) for k in SHIP_TO_FIELDS),
            )
            line.deadline = _deadline(order_date, account.region, CANCEL_NO_TRACKING_BUSINESS_DAYS)
            self._lines[line.ci_lineitemid] = line
            index.by_seq[seq] = line.ci_lineitemid
            if line.fulfillment_lineitem_id is not None:
                index.by_fulfillment[line.fulfillment_lineitem_id] = line.ci_lineitemid
            index.orders.setdefault(line.orderid, []).append(line.ci_lineitemid)
            seqs.append(seq)
            dated.append((order_date.timestamp(), seq))
            deadlines.append((line.deadline, line.ci_lineitemid))
            line_ids.append(line.ci_lineitemid)
        # Bulk updates: much faster than one add() per line when seeding 100,000 lines.
        index.unexported.update(seqs)
        index.by_date.update(dated)
        self._deadlines.update(deadlines)
        return line_ids

    # --- auto-cancel ---------------------------------------------------------------------

    def _sweep(self, now: datetime) -> list[int]:
        """Cancel every line whose deadline has passed; O(k log n) for k expired lines."""
        cancelled: list[int] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, line_id = self._deadlines[0]
            line = self._lines[line_id]
            rule = (
                f"no tracking after {CANCEL_NO_TRACKING_BUSINESS_DAYS} business days"
                if line.status == "open"
                else f"partially shipped after {CANCEL_PARTIAL_BUSINESS_DAYS} business days"
            )
            self._cancel(line, deadline, f"auto-cancelled: {rule}")
            cancelled.append(line_id)
        return cancelled

    def _set_deadline(self, line: Line, deadline: datetime | None) -> None:
        if line.deadline is not None:
            self._deadlines.discard((line.deadline, line.ci_lineitemid))
        line.deadline = deadline
        if deadline is not None:
            self._deadlines.add((deadline, line.ci_lineitemid))

    def _cancel(self, line: Line, at: datetime, reason: str) -> None:
        self._set_deadline(line, None)
        line.status = "cancelled"
        line.cancelled_at = at
        line.cancel_reason = reason
        # Assumed: a cancelled line leaves the default (un-exported) listing.
        self._index[line.supplier_id].unexported.discard(line.seq)

    def set_clock(self, dt: datetime) -> dict[str, Any]:
        """Set (and freeze) the clock, then auto-cancel what is due."""
        with self._lock:
            now = self.clock.set(dt)
            return {"now": _iso(now), "auto_cancelled": self._sweep(now)}

    def advance_clock(self, delta: timedelta) -> dict[str, Any]:
        """Move the clock, then auto-cancel what is due."""
        with self._lock:
            now = self.clock.advance(delta)
            return {"now": _iso(now), "auto_cancelled": self._sweep(now)}

    def cancel_lines(
        self, supplier_id: str, line_ids: list[int], reason: str | None = None
    ) -> dict[str, Any]:
        """Groupon customer service cancels lines (all-or-nothing; ValueError names the ids);
        ``reason`` (e.g. typed in the web console) is kept on each line."""
        with self._lock:
            self._account(supplier_id)
            now = self.clock.now()
            self._sweep(now)
            lines = [self._lines.get(i) for i in line_ids]
            unknown = [
                i
                for i, ln in zip(line_ids, lines, strict=True)
                if ln is None or ln.supplier_id != supplier_id
            ]
            if unknown:
                raise ValueError(f"unknown ci_lineitemids for supplier {supplier_id}: {unknown}")
            shipped = [
                ln.ci_lineitemid for ln in lines if ln is not None and ln.status == "shipped"
            ]
            if shipped:
                raise ValueError(f"lines already shipped cannot be cancelled: {shipped}")
            cancelled = []
            for line in lines:
                if line is not None and line.status != "cancelled":
                    why = "cancelled by Groupon customer service"
                    self._cancel(line, now, f"{why}: {reason}" if reason else why)
                    cancelled.append(line.ci_lineitemid)
            return {"now": _iso(now), "cancelled": cancelled}

    # --- CI API operations ---------------------------------------------------------------

    def get_orders(
        self,
        supplier_id: str,
        token: str,
        page: int = 1,
        window: tuple[datetime, datetime] | None = None,
    ) -> OrdersPage:
        """One page: un-exported open lines in listing order, or every line of a date window."""
        with self._lock:
            account = self.authenticate(supplier_id, token)
            self._sweep(self.clock.now())
            index = self._index[account.supplier_id]
            offset = (page - 1) * PAGE_SIZE
            if window is None:
                total = len(index.unexported)
                seqs = (
                    list(index.unexported.islice(offset, offset + PAGE_SIZE))
                    if offset < total
                    else []
                )
            else:
                lo = index.by_date.bisect_left((window[0].timestamp(), -1))
                hi = index.by_date.bisect_left((window[1].timestamp(), -1))
                total = max(hi - lo, 0)
                start = lo + offset
                stop = min(start + PAGE_SIZE, hi)
                seqs = [s for _, s in index.by_date.islice(start, stop)] if start < stop else []
            if total == 0:
                return OrdersPage(0, 0, 0, [])
            records = []
            for seq in seqs:
                line = self._lines[index.by_seq[seq]]
                records.append((line.record, API_STATUS[line.status]))
            return OrdersPage(math.ceil(total / PAGE_SIZE), page, total, records)

    def _owned_line(self, supplier_id: str, line_id: int) -> Line | None:
        line = self._lines.get(line_id)
        if line is None or line.supplier_id != supplier_id:
            return None  # another supplier's line behaves as unknown
        return line

    def mark_exported(
        self, supplier_id: str, token: str, line_ids: list[int], call: str = "v4/mark_exported"
    ) -> None:
        """Mark lines exported; all-or-nothing, unknown ids refuse the whole call."""
        with self._lock:
            account = self.authenticate(supplier_id, token)
            now = self.clock.now()
            self._sweep(now)
            if not line_ids:
                return  # `[]`: nothing to mark, answered as success (ASSUMED, see docs)
            lines = [self._owned_line(account.supplier_id, i) for i in line_ids]
            unknown = sorted({i for i, ln in zip(line_ids, lines, strict=True) if ln is None})
            if unknown:
                raise UnknownLineItems(
                    f"Invalid ci_lineitem_ids (unknown for this supplier): "
                    f"{', '.join(map(str, unknown))}; nothing was marked"
                )
            index = self._index[account.supplier_id]
            for line in {ln.ci_lineitemid: ln for ln in lines if ln is not None}.values():
                was = line.exported
                line.exported = True
                index.unexported.discard(line.seq)
                line.calls.append({"call": call, "at": _iso(now), "changed": not was})

    def tracking_notification(
        self,
        supplier_id: str,
        token: str,
        items: list[TrackingRequest],
        call: str = "v4/tracking_notification",
    ) -> None:
        """Record tracking; the whole call is validated first and applied all-or-nothing."""
        with self._lock:
            account = self.authenticate(supplier_id, token)
            now = self.clock.now()
            self._sweep(now)
            if not items:
                raise InvalidParameter("tracking_info must be a non-empty JSON array")
            plan = self._plan_tracking(account, items)
            self._apply_tracking(account, plan, now, call)

    def _resolve(self, account: Account, item: TrackingRequest) -> tuple[Line, str]:
        if item.ci_lineitemid is not None:
            label = f"tracking_info[{item.index}] (ci_lineitem_id {item.ci_lineitemid})"
            line = self._owned_line(account.supplier_id, item.ci_lineitemid)
        else:
            label = (
                f"tracking_info[{item.index}] "
                f"(fulfillment_lineitem_id {item.fulfillment_lineitem_id})"
            )
            found = self._index[account.supplier_id].by_fulfillment.get(
                item.fulfillment_lineitem_id or ""
            )
            line = self._lines.get(found) if found is not None else None
        if line is None:
            raise UnknownLineItems(f"{label}: unknown line item for this supplier")
        return line, label

    def _plan_tracking(
        self, account: Account, items: list[TrackingRequest]
    ) -> list[tuple[Line, TrackingRequest, int | None]]:
        """Validate every element against current state plus the earlier elements of the call.

        Returns (line, item, quantity to record or None for a harmless repeat).
        """
        index = self._index[account.supplier_id]
        added: dict[int, int] = {}
        pairs: dict[tuple[int, str], int] = {}
        order_numbers: dict[str, set[str]] = {}
        uses: dict[str, _TrackingUse] = {}
        plan: list[tuple[Line, TrackingRequest, int | None]] = []
        for item in items:
            line, label = self._resolve(account, item)
            if item.carrier.strip().lower() not in account.approved_lower:
                raise TrackingRefused(
                    f"{label}: carrier {item.carrier!r} is not an approved carrier code "
                    f"for region {account.region}"
                )
            if line.status == "cancelled":
                raise TrackingRefused(f"{label}: the line is cancelled; no tracking accepted")
            recorded = pairs.get((line.ci_lineitemid, item.tracking))
            if recorded is None:
                recorded = next(
                    (t.quantity for t in line.tracking if t.tracking == item.tracking), None
                )
            if recorded is not None:
                if item.quantity is None or item.quantity == recorded:
                    plan.append((line, item, None))  # same pair, same quantity: harmless no-op
                    continue
                raise TrackingRefused(
                    f"{label}: tracking {item.tracking!r} is already recorded with quantity "
                    f"{recorded}; tracking cannot be edited (got quantity {item.quantity})"
                )
            open_qty = line.quantity - line.shipped_quantity - added.get(line.ci_lineitemid, 0)
            if open_qty <= 0:
                raise TrackingRefused(
                    f"{label}: the line is already fully shipped; tracking cannot be edited "
                    f"or added (new tracking {item.tracking!r})"
                )
            qty = open_qty if item.quantity is None else item.quantity
            if not 1 <= qty <= open_qty:
                raise TrackingRefused(
                    f"{label}: quantity {qty} must be between 1 and the open quantity {open_qty}"
                )
            use = uses.get(item.tracking) or index.tracking_use.get(item.tracking)
            if use is not None and line.orderid not in use.orderids and use.ship_to != line.ship_to:
                raise TrackingRefused(
                    f"{label}: tracking {item.tracking!r} already covers order(s) "
                    f"{', '.join(sorted(use.orderids))} with a different ship-to address; "
                    f"several orders may share a tracking number only if their addresses "
                    f"are identical"
                )
            numbers = order_numbers.get(line.orderid)
            if numbers is None:
                numbers = set(index.order_tracking.get(line.orderid, ()))
                order_numbers[line.orderid] = numbers
            if item.tracking not in numbers and len(numbers) >= MAX_TRACKING_NUMBERS_PER_ORDER:
                raise TrackingRefused(
                    f"{label}: order {line.orderid} already has "
                    f"{MAX_TRACKING_NUMBERS_PER_ORDER} tracking numbers (the maximum)"
                )
            numbers.add(item.tracking)
            new_use = _TrackingUse(
                use.ship_to if use else line.ship_to,
                set(use.orderids if use else ()) | {line.orderid},
            )
            uses[item.tracking] = new_use
            added[line.ci_lineitemid] = added.get(line.ci_lineitemid, 0) + qty
            pairs[(line.ci_lineitemid, item.tracking)] = qty
            plan.append((line, item, qty))
        return plan

    def _apply_tracking(
        self,
        account: Account,
        plan: list[tuple[Line, TrackingRequest, int | None]],
        now: datetime,
        call: str,
    ) -> None:
        index = self._index[account.supplier_id]
        for line, item, qty in plan:
            line.calls.append(
                {
                    "call": call,
                    "at": _iso(now),
                    "tracking": item.tracking,
                    "changed": qty is not None,
                }
            )
            if qty is None:
                continue
            line.tracking.append(TrackingEntry(item.tracking, item.carrier, qty, now))
            line.shipped_quantity += qty
            index.order_tracking.setdefault(line.orderid, set()).add(item.tracking)
            use = index.tracking_use.get(item.tracking)
            if use is None:
                index.tracking_use[item.tracking] = _TrackingUse(line.ship_to, {line.orderid})
            else:
                use.orderids.add(line.orderid)
            if line.shipped_quantity >= line.quantity:
                line.status = "shipped"
                self._set_deadline(line, None)
            else:
                line.status = "partially_shipped"
                self._set_deadline(
                    line, _deadline(line.order_date, account.region, CANCEL_PARTIAL_BUSINESS_DAYS)
                )

    # --- inspection ----------------------------------------------------------------------

    def get_state(
        self, supplier_id: str | None = None, include_records: bool = False
    ) -> dict[str, Any]:
        """Everything the simulator holds (tokens masked), optionally for one supplier."""
        with self._lock:
            now = self.clock.now()
            self._sweep(now)
            if supplier_id is not None:
                self._account(supplier_id)
                ids = [i for ids in self._index[supplier_id].orders.values() for i in ids]
                lines = sorted((self._lines[i] for i in ids), key=lambda ln: ln.seq)
                accounts = [self._accounts[supplier_id].describe()]
            else:
                lines = sorted(self._lines.values(), key=lambda ln: ln.seq)
                accounts = [a.describe() for a in self._accounts.values()]
            return {
                "now": _iso(now),
                "clock_frozen": self.clock.frozen,
                "accounts": accounts,
                "lines": [ln.describe(include_records) for ln in lines],
            }

    def line(self, ci_lineitemid: int) -> Line | None:
        """The stored line (for tests and the CLI); None when unknown."""
        with self._lock:
            return self._lines.get(ci_lineitemid)

    # --- web console (read-only queries, plus acting as the logged-in supplier) -----------

    def find_lines(
        self,
        supplier_id: str | None = None,
        *,
        query: LineQuery | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[dict[str, Any]]]:
        """(total matches, one page of line summaries), newest order date first.

        Without filters a page costs O(log n + offset/load + limit) through the ``by_date``
        indexes; an order id or line id is a dict lookup; SKU/customer/status filters scan the
        supplier's lines once (no copy), which stays well under the console's 1 s budget at
        100,000 lines (``make bench-ui``).
        """
        q = query or LineQuery()
        with self._lock:
            self._sweep(self.clock.now())
            if supplier_id is not None:
                self._account(supplier_id)
                suppliers = [supplier_id]
            else:
                suppliers = list(self._index)
            if q.line_id is not None or q.orderid:
                ids = self._lookup_ids(suppliers, q)
                chosen = sorted((self._lines[i] for i in ids), key=_newest_key, reverse=True)
                matches = [ln for ln in chosen if q.matches(ln)]
                return len(matches), [_summary(ln) for ln in matches[offset : offset + limit]]
            if q.is_empty():
                total = sum(len(self._index[s].by_date) for s in suppliers)
                if len(suppliers) == 1:
                    page = self._supplier_page(suppliers[0], offset, limit)
                else:
                    page = list(
                        itertools.islice(self._newest_first(suppliers), offset, offset + limit)
                    )
                return total, [_summary(ln) for ln in page]
            # A scan: one comprehension per supplier (newest first), merged when several.
            keep = q.predicate()
            found = []
            for supplier in suppliers:
                scan = self._scan_lists(supplier)
                found.append(
                    [ln for ln, text in zip(scan.lines, scan.texts, strict=True) if keep(ln, text)]
                )
            matches = (
                found[0]
                if len(found) == 1
                else list(heapq.merge(*found, key=_newest_key, reverse=True))
            )
            return len(matches), [_summary(ln) for ln in matches[offset : offset + limit]]

    def _supplier_page(self, supplier_id: str, offset: int, limit: int) -> list[Line]:
        """One page of a supplier's lines, newest first: O(log n + limit) on ``by_date``."""
        index = self._index[supplier_id]
        size = len(index.by_date)
        start, stop = max(size - offset - limit, 0), max(size - offset, 0)
        return [
            self._lines[index.by_seq[seq]]
            for _ts, seq in index.by_date.islice(start, stop, reverse=True)
        ]

    def _lookup_ids(self, suppliers: list[str], q: LineQuery) -> list[int]:
        if q.line_id is not None:
            line = self._lines.get(q.line_id)
            found = (
                [line.ci_lineitemid] if line is not None and line.supplier_id in suppliers else []
            )
            return [i for i in found if not q.orderid or self._lines[i].orderid == q.orderid]
        return [i for s in suppliers for i in self._index[s].orders.get(q.orderid or "", [])]

    def _newest_first(self, suppliers: list[str]) -> Iterator[Line]:
        """Lines of ``suppliers`` by order date, newest first (lazy: a page reads a page)."""
        streams = [iter(self._scan_lists(s).lines) for s in suppliers]
        return heapq.merge(*streams, key=_newest_key, reverse=True)

    def _scan_lists(self, supplier_id: str) -> _ScanCache:
        """A supplier's lines newest first with their lowered search texts, rebuilt only when
        lines were added since (lines are never removed but by reset, and a line's SKU,
        customer and order date never change; its status is read live from the Line)."""
        index = self._index[supplier_id]
        key = (len(index.by_date), self._next_seq)
        cached = self._scan_cache.get(supplier_id)
        if cached is not None and cached.key == key:
            return cached
        lines, by_seq = self._lines, index.by_seq
        newest = [lines[by_seq[seq]] for _ts, seq in reversed(index.by_date)]
        built = _ScanCache(key, newest, [(_sku_text(ln), _customer_text(ln)) for ln in newest])
        self._scan_cache[supplier_id] = built
        return built

    def status_counts(self) -> dict[str, dict[str, int]]:
        """Per supplier: lines per status, plus ``lines`` and ``exported`` totals."""
        with self._lock:
            self._sweep(self.clock.now())
            out: dict[str, dict[str, int]] = {}
            for supplier_id, index in self._index.items():
                counts = dict.fromkeys(LINE_STATUSES, 0)
                exported = 0
                for line_id in index.by_seq.values():
                    line = self._lines[line_id]
                    counts[line.status] += 1
                    exported += line.exported
                out[supplier_id] = {**counts, "lines": len(index.by_seq), "exported": exported}
            return out

    def supplier_token(self, supplier_id: str) -> str:
        """The account's token, for in-process callers that act as the logged-in supplier (the
        web console's upload and export). Never rendered: pages and logs show it masked."""
        with self._lock:
            return self._account(supplier_id).token


@dataclass(frozen=True)
class LineQuery:
    """Console search: exact order id or line id; case-insensitive substrings for SKU (sku or
    bom_sku) and customer name; exact status. Empty fields do not filter."""

    orderid: str | None = None
    line_id: int | None = None
    sku: str | None = None
    customer: str | None = None
    status: str | None = None

    def is_empty(self) -> bool:
        return not (self.orderid or self.line_id is not None or self.sku or self.customer) and (
            not self.status
        )

    def matches(self, line: Line) -> bool:
        return self.predicate()(line, (_sku_text(line), _customer_text(line)))

    def predicate(self) -> Callable[[Line, tuple[str, str]], bool]:
        """One function ``(line, (sku text, customer text)) -> bool`` testing every non-empty
        filter; needles are lowered once, texts come lowered from the scan lists."""
        checks: list[Callable[[Line, tuple[str, str]], bool]] = []
        if self.status:
            status = self.status
            checks.append(lambda ln, _t: ln.status == status)
        if self.sku:
            sku = self.sku.lower()
            checks.append(lambda _ln, t: sku in t[0])
        if self.customer:
            customer = self.customer.lower()
            checks.append(lambda _ln, t: customer in t[1])
        if self.orderid:
            orderid = self.orderid
            checks.append(lambda ln, _t: ln.orderid == orderid)
        if self.line_id is not None:
            line_id = self.line_id
            checks.append(lambda ln, _t: ln.ci_lineitemid == line_id)
        if not checks:
            return lambda _ln, _t: True
        if len(checks) == 1:
            return checks[0]
        return lambda ln, t: all(check(ln, t) for check in checks)


@dataclass
class _ScanCache:
    key: tuple[int, int]  # (lines of the supplier, next seq) when built
    lines: list[Line]  # newest order first
    texts: list[tuple[str, str]]  # lowered (sku + bom_sku, customer name), aligned with lines


def _newest_key(line: Line) -> tuple[datetime, int]:
    return line.order_date, line.seq


def _sku_text(line: Line) -> str:
    item = line.record["line_items"][0]
    return f"{item.get('sku') or ''}\x00{item.get('bom_sku') or ''}".lower()


def _customer_text(line: Line) -> str:
    return str((line.record.get("customer") or {}).get("name") or "").lower()


def _summary(line: Line) -> dict[str, Any]:
    """What a console table row shows of a line (no record copy, no calls)."""
    item = line.record["line_items"][0]
    return {
        "ci_lineitemid": line.ci_lineitemid,
        "supplier_id": line.supplier_id,
        "orderid": line.orderid,
        "order_date": line.order_date,
        "sku": item.get("sku"),
        "bom_sku": item.get("bom_sku"),
        "name": item.get("name"),
        "quantity": line.quantity,
        "shipped_quantity": line.shipped_quantity,
        "status": line.status,
        "exported": line.exported,
        "customer": (line.record.get("customer") or {}).get("name"),
        "ship_by_date": item.get("ship_by_date"),
        "auto_cancel_at": line.deadline,
        "tracking": [t.tracking for t in line.tracking],
        "cancel_reason": line.cancel_reason,
    }


__all__ = [
    "LINE_STATUSES",
    "MERCHANT_CAPS",
    "Account",
    "Line",
    "LineQuery",
    "OrdersPage",
    "SimState",
    "TrackingRequest",
    "UnknownAccountError",
    "parse_ci_datetime",
]
