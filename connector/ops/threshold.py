"""The sales-threshold guard: units and sales in the 30-day cycle against the merchant level.
Pure, no I/O.

From Groupon's "Understanding Merchant Graduation": level 1 may sell 100 units or $1,000 in a
30-day cycle, level 2 200 / $5,000, level 3 2,500 / $25,000, level 4 12,500 / $125,000, level 5
is uncapped. Reaching either cap suspends the account for a performance review. The cycle
restarts when the first unit is sold, at a suspension and at an unsuspension.

Assumed (not documented): after 30 days without such an event the next cycle starts right
where the last one ended (back-to-back cycles from the latest event); "sales" are the gross
line amounts (unit price x quantity) of lines not cancelled; amounts are in the account's
currency, compared with the dollar figures as plain numbers.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.ops.sla import parse_datetime

__all__ = [
    "CYCLE_LENGTH",
    "LEVEL_CAPS",
    "NOT_SOLD_STATUSES",
    "CycleEvent",
    "CycleEventKind",
    "LevelCap",
    "ReviewReadiness",
    "Sale",
    "ThresholdInputError",
    "ThresholdReport",
    "ThresholdWarning",
    "evaluate",
    "orders_delivered",
    "review_readiness",
    "sales_from_rows",
]

CYCLE_LENGTH = timedelta(days=30)
REVIEW_SUSTAIN_DAYS = (4, 8)


class ThresholdInputError(ValueError):
    """Bad input to the threshold guard; the message names the item, field and value."""


@dataclass(frozen=True, slots=True)
class LevelCap:
    """The caps of one merchant level; ``None`` = uncapped."""

    level: int
    max_units: int | None
    max_sales: Decimal | None


LEVEL_CAPS: Mapping[int, LevelCap] = {
    1: LevelCap(1, 100, Decimal("1000")),
    2: LevelCap(2, 200, Decimal("5000")),
    3: LevelCap(3, 2500, Decimal("25000")),
    4: LevelCap(4, 12500, Decimal("125000")),
    5: LevelCap(5, None, None),
}


class CycleEventKind(enum.StrEnum):
    """Events that restart the 30-day cycle."""

    FIRST_SALE = "first_sale"
    SUSPENDED = "suspended"
    UNSUSPENDED = "unsuspended"


@dataclass(frozen=True, slots=True)
class CycleEvent:
    """A cycle-restarting event at an aware UTC moment."""

    at: datetime
    kind: CycleEventKind


@dataclass(frozen=True, slots=True)
class Sale:
    """Units and amount sold at one moment (typically one order line)."""

    at: datetime
    units: int
    amount: Decimal


@dataclass(frozen=True, slots=True)
class ThresholdWarning:
    """A warning level crossed on one measure (``"units"`` or ``"sales"``)."""

    fraction: float
    measure: str
    share: float

    def __str__(self) -> str:
        return f"{self.measure} at {self.share:.0%} of the cap (warn at {self.fraction:.0%})"


@dataclass(frozen=True, slots=True)
class ThresholdReport:
    """Where the account stands in its current cycle.

    :ivar cycle_start: start of the current cycle; ``None`` when nothing started one yet.
    :ivar units_share: units / cap (``None`` at level 5); likewise ``sales_share``.
    :ivar warnings: every (warn level, measure) crossed, lowest level first.
    :ivar projected_cap_at: when a cap is reached at the pace so far (linear over the cycle),
        or when it was reached; ``None`` without pace or without caps.
    :ivar projected_within_cycle: the projection falls before ``cycle_end``.
    :ivar suspended: the latest suspension event is not followed by an unsuspension.
    """

    level: int
    now: datetime
    cycle_start: datetime | None
    cycle_end: datetime | None
    units: int
    sales: Decimal
    max_units: int | None
    max_sales: Decimal | None
    units_share: float | None
    sales_share: float | None
    warnings: tuple[ThresholdWarning, ...]
    cap_reached: bool
    projected_cap_at: datetime | None
    projected_within_cycle: bool
    suspended: bool
    suspended_since: datetime | None

    @property
    def units_headroom(self) -> int | None:
        """Units left before the cap (0 when reached); ``None`` when uncapped."""
        return None if self.max_units is None else max(self.max_units - self.units, 0)

    @property
    def sales_headroom(self) -> Decimal | None:
        """Sales left before the cap (0 when reached); ``None`` when uncapped."""
        return None if self.max_sales is None else max(self.max_sales - self.sales, Decimal(0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view: datetimes ISO 8601, money as strings."""

        def iso(v: datetime | None) -> str | None:
            return None if v is None else v.isoformat()

        return {
            "level": self.level,
            "now": iso(self.now),
            "cycle_start": iso(self.cycle_start),
            "cycle_end": iso(self.cycle_end),
            "units": self.units,
            "sales": str(self.sales),
            "max_units": self.max_units,
            "max_sales": None if self.max_sales is None else str(self.max_sales),
            "units_share": self.units_share,
            "sales_share": self.sales_share,
            "units_headroom": self.units_headroom,
            "sales_headroom": None if self.sales_headroom is None else str(self.sales_headroom),
            "warnings": [
                {"fraction": w.fraction, "measure": w.measure, "share": w.share}
                for w in self.warnings
            ],
            "cap_reached": self.cap_reached,
            "projected_cap_at": iso(self.projected_cap_at),
            "projected_within_cycle": self.projected_within_cycle,
            "suspended": self.suspended,
            "suspended_since": iso(self.suspended_since),
        }


@dataclass(frozen=True, slots=True)
class ReviewReadiness:
    """How far a suspended account is from expediting its performance review.

    Groupon expedites the review (otherwise about 30 days) once every order is marked
    delivered (not just shipped) and every customer ticket is resolved, sustained for 4 to 8
    consecutive days.

    :ivar ready: both conditions hold now; ``None`` when the ticket count is unknown and the
        orders condition holds.
    :ivar steps: what is still to do, in words.
    """

    orders_delivered: int
    orders_total: int
    open_tickets: int | None
    delivered_share: float
    orders_ok: bool
    tickets_ok: bool | None
    ready: bool | None
    steps: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "orders_delivered": self.orders_delivered,
            "orders_total": self.orders_total,
            "delivered_share": self.delivered_share,
            "open_tickets": self.open_tickets,
            "orders_ok": self.orders_ok,
            "tickets_ok": self.tickets_ok,
            "ready": self.ready,
            "steps": list(self.steps),
        }


def _aware(value: datetime, what: str) -> datetime:
    if value.utcoffset() is None:
        raise ThresholdInputError(f"{what} {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def _as_sale(item: Sale | Sequence[Any], index: int) -> Sale:
    if isinstance(item, Sale):
        at, units, amount = item.at, item.units, item.amount
    else:
        try:
            at, units, amount = item
        except (TypeError, ValueError):
            raise ThresholdInputError(
                f"sale {index}: expected (time, units, amount), got {item!r}"
            ) from None
    if not isinstance(at, datetime):
        raise ThresholdInputError(f"sale {index}: time {at!r} is not a datetime")
    if isinstance(units, bool) or not isinstance(units, int) or units < 0:
        raise ThresholdInputError(f"sale {index}: units {units!r} is not a whole number >= 0")
    try:
        money = Decimal(str(amount))
    except InvalidOperation:
        raise ThresholdInputError(f"sale {index}: amount {amount!r} is not a number") from None
    if not money.is_finite():
        raise ThresholdInputError(f"sale {index}: amount {amount!r} is not a number")
    return Sale(_aware(at, f"sale {index}: time"), units, money)


def _cycle_bounds(anchor: datetime, now: datetime) -> tuple[datetime, datetime]:
    cycles = (now - anchor) // CYCLE_LENGTH
    start = anchor + cycles * CYCLE_LENGTH
    return start, start + CYCLE_LENGTH


def _share(value: Decimal, cap: Decimal) -> float:
    return round(float(value / cap), 4)


def evaluate(
    level: int,
    sales: Iterable[Sale | Sequence[Any]],
    events: Iterable[CycleEvent],
    now: datetime,
    warn_at: Sequence[float] = (0.80, 0.95),
) -> ThresholdReport:
    """Units and sales in the cycle containing ``now`` against ``level``'s caps.

    The cycle starts at the latest of: the first-sale event (or, if none is given, the
    earliest sale), a suspension, an unsuspension, at or before ``now``; and repeats every
    30 days after it. Sales after ``now`` are ignored.

    :param sales: :class:`Sale` values or ``(time, units, amount)`` tuples.
    :param warn_at: fractions of a cap that raise a warning, each in (0, 1].
    :raises ThresholdInputError: unknown level, bad warn fraction, naive datetime, bad sale.
    """
    if level not in LEVEL_CAPS:
        raise ThresholdInputError(f"merchant level {level!r}: expected 1-5")
    fractions = sorted(float(f) for f in warn_at)
    for f in fractions:
        if not 0 < f <= 1:
            raise ThresholdInputError(f"warn level {f!r}: expected a fraction in (0, 1]")
    now = _aware(now, "now")
    cap = LEVEL_CAPS[level]
    all_sales = sorted(
        (s for s in (_as_sale(item, i) for i, item in enumerate(sales, 1)) if s.at <= now),
        key=lambda s: s.at,
    )
    past_events = sorted(
        (CycleEvent(_aware(e.at, f"{e.kind} event"), CycleEventKind(e.kind)) for e in events),
        key=lambda e: e.at,
    )
    past_events = [e for e in past_events if e.at <= now]

    anchors = [e.at for e in past_events]
    if not any(e.kind is CycleEventKind.FIRST_SALE for e in past_events) and all_sales:
        anchors.append(all_sales[0].at)
    suspended_since: datetime | None = None
    for e in past_events:
        if e.kind is CycleEventKind.SUSPENDED:
            suspended_since = e.at
        elif e.kind is CycleEventKind.UNSUSPENDED:
            suspended_since = None

    if not anchors:
        return ThresholdReport(
            level, now, None, None, 0, Decimal(0), cap.max_units, cap.max_sales,
            0.0 if cap.max_units else None, 0.0 if cap.max_sales else None,
            (), False, None, False, suspended_since is not None, suspended_since,
        )  # fmt: skip

    start, end = _cycle_bounds(max(anchors), now)
    in_cycle = [s for s in all_sales if s.at >= start]
    units = sum(s.units for s in in_cycle)
    amount = sum((s.amount for s in in_cycle), Decimal(0))

    units_share = sales_share = None
    warnings: list[ThresholdWarning] = []
    reached_at: datetime | None = None
    projected: datetime | None = None
    if cap.max_units is not None and cap.max_sales is not None:
        units_share = _share(Decimal(units), Decimal(cap.max_units))
        sales_share = _share(amount, cap.max_sales)
        for f in fractions:
            limit = Decimal(str(f))
            if Decimal(units) >= limit * cap.max_units:
                warnings.append(ThresholdWarning(f, "units", units_share))
            if amount >= limit * cap.max_sales:
                warnings.append(ThresholdWarning(f, "sales", sales_share))
        reached_at = _reached_at(in_cycle, cap.max_units, cap.max_sales)
        projected = reached_at or _project(start, now, units, amount, cap)

    return ThresholdReport(
        level=level,
        now=now,
        cycle_start=start,
        cycle_end=end,
        units=units,
        sales=amount,
        max_units=cap.max_units,
        max_sales=cap.max_sales,
        units_share=units_share,
        sales_share=sales_share,
        warnings=tuple(warnings),
        cap_reached=reached_at is not None,
        projected_cap_at=projected,
        projected_within_cycle=projected is not None and projected <= end,
        suspended=suspended_since is not None,
        suspended_since=suspended_since,
    )


def _reached_at(sales: Sequence[Sale], max_units: int, max_sales: Decimal) -> datetime | None:
    units, amount = 0, Decimal(0)
    for s in sales:
        units += s.units
        amount += s.amount
        if units >= max_units or amount >= max_sales:
            return s.at
    return None


def _project(
    start: datetime, now: datetime, units: int, amount: Decimal, cap: LevelCap
) -> datetime | None:
    elapsed = now - start
    if elapsed <= timedelta(0):
        return None
    candidates: list[datetime] = []
    # Linear pace over the cycle so far: cap / value of the elapsed time is needed in total.
    if units > 0 and cap.max_units is not None:
        candidates.append(start + elapsed * (cap.max_units / units))
    if amount > 0 and cap.max_sales is not None:
        candidates.append(start + elapsed * float(cap.max_sales / amount))
    return min(candidates) if candidates else None


def review_readiness(
    orders_delivered: int, orders_total: int, open_tickets: int | None = None
) -> ReviewReadiness:
    """What a suspended account still needs for an expedited review, and how far it is.

    :param orders_delivered: orders marked delivered (shipped is not enough).
    :param orders_total: orders that must be delivered (all open orders of the account).
    :param open_tickets: unresolved customer tickets; ``None`` when unknown to the connector.
    :raises ThresholdInputError: negative counts or more delivered than total.
    """
    if orders_total < 0 or orders_delivered < 0 or orders_delivered > orders_total:
        raise ThresholdInputError(
            f"orders delivered {orders_delivered} / total {orders_total}: "
            "expected 0 <= delivered <= total"
        )
    if open_tickets is not None and open_tickets < 0:
        raise ThresholdInputError(f"open tickets {open_tickets}: expected >= 0")
    share = 1.0 if orders_total == 0 else round(orders_delivered / orders_total, 4)
    orders_ok = orders_delivered == orders_total
    tickets_ok = None if open_tickets is None else open_tickets == 0
    steps: list[str] = []
    if not orders_ok:
        steps.append(
            f"get {orders_total - orders_delivered} more order(s) marked delivered "
            f"({orders_delivered} of {orders_total} so far)"
        )
    if tickets_ok is None:
        steps.append("check that every customer ticket is resolved (count unknown here)")
    elif not tickets_ok:
        steps.append(f"resolve {open_tickets} open customer ticket(s)")
    lo, hi = REVIEW_SUSTAIN_DAYS
    steps.append(f"then keep both true for {lo} to {hi} consecutive days to expedite the review")
    ready: bool | None = False if not orders_ok or tickets_ok is False else tickets_ok
    return ReviewReadiness(
        orders_delivered, orders_total, open_tickets, share, orders_ok, tickets_ok, ready,
        tuple(steps),
    )  # fmt: skip


NOT_SOLD_STATUSES = frozenset({"cancelled", "canceled", "refunded"})
"""Line statuses that count neither as sales nor as orders to deliver."""


def _not_sold(row: Mapping[str, Any]) -> bool:
    return str(row.get("status") or "").strip().lower() in NOT_SOLD_STATUSES


def sales_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Sale]:
    """Sales from ledger-style rows: ``order_time`` (or ``order_date``), ``quantity`` and
    ``amount`` (or ``unit_price`` x ``quantity``). Cancelled lines are skipped.

    :raises ThresholdInputError: naming the row, field and value.
    """
    out: list[Sale] = []
    for index, row in enumerate(rows, 1):
        where = f"row {index}"
        if row.get("ci_lineitemid") is not None:
            where += f" (ci_lineitemid {row['ci_lineitemid']})"
        if _not_sold(row):
            continue
        raw_time = row.get("order_time") or row.get("order_date")
        if raw_time is None:
            raise ThresholdInputError(f"{where}: field 'order_time' is missing")
        try:
            at = parse_datetime(raw_time)
        except ValueError as exc:
            raise ThresholdInputError(
                f"{where}: field 'order_time' = {raw_time!r}: {exc}"
            ) from None
        try:
            units = int(row["quantity"])
        except (KeyError, TypeError, ValueError):
            raise ThresholdInputError(
                f"{where}: field 'quantity' = {row.get('quantity')!r}: not an integer"
            ) from None
        try:
            if row.get("amount") is not None:
                amount = Decimal(str(row["amount"]))
            elif row.get("unit_price") is not None:
                amount = Decimal(str(row["unit_price"])) * units
            else:
                raise ThresholdInputError(f"{where}: needs 'amount' or 'unit_price'")
        except InvalidOperation:
            field = "amount" if row.get("amount") is not None else "unit_price"
            raise ThresholdInputError(
                f"{where}: field {field!r} = {row.get(field)!r}: not a number"
            ) from None
        out.append(Sale(at, units, amount))
    return out


def orders_delivered(rows: Iterable[Mapping[str, Any]], since: datetime) -> tuple[int, int]:
    """(delivered, total) orders placed since ``since`` that are not wholly cancelled.

    An order counts as delivered when each of its non-cancelled lines has ``delivered_at``.
    """
    orders: dict[str, bool] = {}
    for row in rows:
        if _not_sold(row):
            continue
        raw_time = row.get("order_time") or row.get("order_date")
        if raw_time is None or parse_datetime(raw_time) < since:
            continue
        orderid = str(row.get("orderid"))
        delivered = row.get("delivered_at") is not None
        orders[orderid] = orders.get(orderid, True) and delivered
    return sum(1 for done in orders.values() if done), len(orders)
