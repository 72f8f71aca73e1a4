"""The SLA clock: where each Groupon line stands against the fulfilment deadlines. Pure, no I/O.

Rules (Groupon's fulfilment guide, "SLA Standards for Merchant Performance"):

* tracking is due within 1 business day of purchase, or by the due date CI shows
  (``ship_by_date``). We use ``ship_by`` when CI sends one; otherwise the rule the 2023 CI
  capture shows for ``ship_by_date``: 23:59 local on the 1st business day after the order's
  start day (see :meth:`BusinessCalendar.due_at`: orders at or after the local cut-off, 17:00
  by default, or on a non-business day start the next business day);
* a line with no tracking after 7 business days is cancelled automatically; one still
  "partially shipped" after 14 business days likewise;
* tracking must show carrier movement within 3 business days of order creation;
* the average cycle time order -> delivered should be at most 6 calendar days.

Assumed (not documented by Groupon): the 7/14 business days are counted like the tracking
deadline, from the order's start day to 23:59 local, also when CI sent a ``ship_by``; the 3
business days of movement end at the cut-off time of that day. The simulator auto-cancels by
the same rule (one SLA truth: ``tests/e2e/test_sla_truth.py``
compares both implementations for every hour of a year).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from connector.models import Account, SlaRisk
from connector.ops.businessdays import BusinessCalendar, calendar_for_account

__all__ = [
    "AUTO_CANCEL_NO_TRACKING_DAYS",
    "AUTO_CANCEL_PARTIAL_DAYS",
    "CYCLE_TIME_TARGET_DAYS",
    "MOVEMENT_BUSINESS_DAYS",
    "TRACKING_BUSINESS_DAYS",
    "CycleTimeReport",
    "LineStatus",
    "SlaInputError",
    "SlaLine",
    "SlaState",
    "SlaStatus",
    "at_risk",
    "cycle_time_report",
    "evaluate",
    "evaluate_account",
    "parse_datetime",
    "risks_for_account",
    "scans_reported_in",
    "sla_lines_from_rows",
]

TRACKING_BUSINESS_DAYS = 1
AUTO_CANCEL_NO_TRACKING_DAYS = 7
AUTO_CANCEL_PARTIAL_DAYS = 14
MOVEMENT_BUSINESS_DAYS = 3
CYCLE_TIME_TARGET_DAYS = 6


class SlaInputError(ValueError):
    """A row handed to :func:`sla_lines_from_rows` (or an :class:`SlaLine`) is unusable; the
    message names the row, the field and the value."""


_DATETIME_FIELDS = (
    "order_time",
    "ship_by",
    "tracking_uploaded_at",
    "first_scan_at",
    "delivered_at",
)


class LineStatus(enum.StrEnum):
    """Fulfilment status of a line, as the ledger knows it."""

    OPEN = "open"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


class SlaState(enum.StrEnum):
    """Where a line stands. ``auto_cancel_soon`` carries a count in
    :attr:`SlaStatus.business_days_to_auto_cancel`."""

    ON_TIME = "on_time"
    DUE_TODAY = "due_today"
    OVERDUE = "overdue"
    AUTO_CANCEL_SOON = "auto_cancel_soon"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class SlaLine:
    """One CI line item as the SLA clock needs it. Datetimes are aware (UTC).

    :ivar ship_by: CI's ``ship_by_date`` or ``None``.
    :ivar tracking_uploaded_at: when the first tracking for the line reached CI.
    :ivar first_scan_at: first carrier scan, if the host reports scans.
    """

    account: str
    orderid: str
    ci_lineitemid: int
    order_time: datetime
    ship_by: datetime | None
    quantity: int
    qty_shipped: int = 0
    tracking_uploaded_at: datetime | None = None
    status: LineStatus = LineStatus.OPEN
    first_scan_at: datetime | None = None
    delivered_at: datetime | None = None

    def __post_init__(self) -> None:
        where = f"line {self.ci_lineitemid} (order {self.orderid})"
        for name in _DATETIME_FIELDS:
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise SlaInputError(f"{where}: {name} {value.isoformat()} has no time zone")
        if self.quantity < 0 or self.qty_shipped < 0:
            raise SlaInputError(
                f"{where}: quantity {self.quantity} / qty_shipped {self.qty_shipped} is negative"
            )

    @property
    def effective_status(self) -> LineStatus:
        """The status, corrected by the quantities (a line with every unit tracked is shipped)."""
        if self.status is LineStatus.CANCELLED:
            return LineStatus.CANCELLED
        if self.status is LineStatus.SHIPPED or (
            self.quantity > 0 and self.qty_shipped >= self.quantity
        ):
            return LineStatus.SHIPPED
        if self.qty_shipped > 0 or self.status is LineStatus.PARTIALLY_SHIPPED:
            return LineStatus.PARTIALLY_SHIPPED
        return LineStatus.OPEN


@dataclass(frozen=True, slots=True)
class SlaStatus:
    """The verdict on one line at ``now``.

    :ivar deadline: when tracking is due (CI's ``ship_by`` or computed; see ``deadline_source``).
    :ivar auto_cancel_at: when Groupon cancels the line if nothing changes (open and partially
        shipped lines only).
    :ivar business_days_to_auto_cancel: business days from today (local) to ``auto_cancel_at``;
        0 = today or already passed.
    :ivar movement_late: the first carrier scan came (or, with scans reported, is still
        missing) after 3 business days.
    :ivar tracking_late: tracking reached CI after ``deadline``.
    """

    line: SlaLine
    state: SlaState
    deadline: datetime
    deadline_source: str
    auto_cancel_at: datetime | None
    business_days_to_auto_cancel: int | None
    movement_deadline: datetime
    movement_late: bool
    tracking_late: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready view (datetimes as ISO 8601 UTC)."""
        return {
            "account": self.line.account,
            "orderid": self.line.orderid,
            "ci_lineitemid": self.line.ci_lineitemid,
            "status": self.line.effective_status.value,
            "state": self.state.value,
            "deadline": self.deadline.isoformat(),
            "deadline_source": self.deadline_source,
            "auto_cancel_at": _iso(self.auto_cancel_at),
            "business_days_to_auto_cancel": self.business_days_to_auto_cancel,
            "movement_late": self.movement_late,
            "tracking_late": self.tracking_late,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class CycleTimeReport:
    """Order -> delivered, calendar days, over the delivered lines.

    :ivar avg_days: mean cycle time (2 decimals); ``None`` when nothing was delivered.
    :ivar n: delivered lines counted.
    :ivar over_6: lines that took more than 6 days.
    """

    avg_days: float | None
    n: int
    over_6: int
    target_days: int = CYCLE_TIME_TARGET_DAYS

    @property
    def meets_target(self) -> bool | None:
        """True when the average is within Groupon's 6 days; ``None`` without data."""
        return None if self.avg_days is None else self.avg_days <= self.target_days


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _fmt_local(value: datetime, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%a %Y-%m-%d %H:%M %Z")


def evaluate(
    lines: Iterable[SlaLine],
    calendar: BusinessCalendar,
    now: datetime,
    cutoff: time,
    tz: ZoneInfo,
    *,
    auto_cancel_warn_days: int = 2,
    scans_reported: bool = False,
) -> list[SlaStatus]:
    """Judge every line at ``now``.

    States, most urgent first, for lines still needing tracking: ``auto_cancel_soon`` (at most
    ``auto_cancel_warn_days`` business days before Groupon's auto-cancel, or past it),
    ``overdue`` (tracking deadline passed), ``due_today`` (deadline later today, local time),
    ``on_time``. Finished lines are ``shipped`` or ``cancelled``.

    :param now: aware datetime to judge against.
    :param scans_reported: the host reports carrier scans, so a missing scan after 3 business
        days counts as late movement (otherwise only a reported late scan does).
    :raises ValueError: ``now`` is naive.
    """
    if now.utcoffset() is None:
        raise ValueError(f"now {now.isoformat()} has no time zone; pass an aware UTC datetime")
    today = now.astimezone(tz).date()
    return [
        _evaluate_line(
            line, calendar, now, today, cutoff, tz, auto_cancel_warn_days, scans_reported
        )
        for line in lines
    ]


def _evaluate_line(
    line: SlaLine,
    calendar: BusinessCalendar,
    now: datetime,
    today: date,
    cutoff: time,
    tz: ZoneInfo,
    warn_days: int,
    scans_reported: bool,
) -> SlaStatus:
    if line.ship_by is not None:
        deadline, source = line.ship_by.astimezone(UTC), "ship_by"
    else:
        deadline = calendar.due_at(line.order_time, TRACKING_BUSINESS_DAYS, cutoff, tz)
        source = "computed"
    # Movement is no deadline Groupon's captures show: kept at the cut-off time (assumed).
    movement_deadline = calendar.deadline_after(line.order_time, MOVEMENT_BUSINESS_DAYS, cutoff, tz)
    status = line.effective_status
    tracking_late = line.tracking_uploaded_at is not None and line.tracking_uploaded_at > deadline
    if status is LineStatus.CANCELLED:
        movement_late = False
    elif line.first_scan_at is not None:
        movement_late = line.first_scan_at > movement_deadline
    else:
        movement_late = scans_reported and now > movement_deadline

    def status_of(
        state: SlaState,
        reason: str,
        auto_cancel_at: datetime | None = None,
        days_left: int | None = None,
    ) -> SlaStatus:
        return SlaStatus(
            line,
            state,
            deadline,
            source,
            auto_cancel_at,
            days_left,
            movement_deadline,
            movement_late,
            tracking_late,
            reason,
        )

    if status is LineStatus.CANCELLED:
        return status_of(SlaState.CANCELLED, "cancelled")
    if status is LineStatus.SHIPPED:
        reason = "shipped"
        if tracking_late:
            reason += f"; tracking reached CI after the deadline {_fmt_local(deadline, tz)}"
        if movement_late:
            reason += "; no carrier movement within 3 business days"
        return status_of(SlaState.SHIPPED, reason)

    if status is LineStatus.PARTIALLY_SHIPPED:
        limit = AUTO_CANCEL_PARTIAL_DAYS
        what = f"partially shipped ({line.qty_shipped} of {line.quantity} units tracked)"
    else:
        limit = AUTO_CANCEL_NO_TRACKING_DAYS
        what = "no tracking"
    auto_cancel_at = calendar.due_at(line.order_time, limit, cutoff, tz)
    if now >= auto_cancel_at:
        days_left = 0
    else:
        days_left = calendar.business_days_between(today, auto_cancel_at.astimezone(tz).date())
    cancel_note = (
        f"Groupon auto-cancels after {limit} business days "
        f"{'(passed ' if now >= auto_cancel_at else '('}{_fmt_local(auto_cancel_at, tz)})"
    )
    if days_left <= warn_days:
        when = "today or already" if days_left == 0 else f"in {days_left} business day(s)"
        return status_of(
            SlaState.AUTO_CANCEL_SOON,
            f"{what}; auto-cancel {when}: {cancel_note}",
            auto_cancel_at,
            days_left,
        )
    if now > deadline:
        return status_of(
            SlaState.OVERDUE,
            f"{what}; tracking was due {_fmt_local(deadline, tz)}; {cancel_note}",
            auto_cancel_at,
            days_left,
        )
    if deadline.astimezone(tz).date() == today:
        return status_of(
            SlaState.DUE_TODAY,
            f"{what}; tracking due today by {_fmt_local(deadline, tz)}",
            auto_cancel_at,
            days_left,
        )
    return status_of(
        SlaState.ON_TIME,
        f"{what}; tracking due {_fmt_local(deadline, tz)}",
        auto_cancel_at,
        days_left,
    )


_RISK_ORDER = {SlaState.AUTO_CANCEL_SOON: 0, SlaState.OVERDUE: 1, SlaState.DUE_TODAY: 2}


def at_risk(statuses: Iterable[SlaStatus], within_business_days: int = 2) -> list[SlaRisk]:
    """The lines an operator must act on: due today, overdue, or at most
    ``within_business_days`` business days from auto-cancel; most urgent first.

    ``SlaRisk.deadline`` is the auto-cancel moment for ``auto_cancel_soon`` lines and the
    tracking deadline otherwise. This is what the ``oms_sla_at_risk`` hook returns.
    """
    picked: list[SlaStatus] = []
    for s in statuses:
        if s.state in (SlaState.SHIPPED, SlaState.CANCELLED):
            continue
        near_cancel = (
            s.business_days_to_auto_cancel is not None
            and s.business_days_to_auto_cancel <= within_business_days
        )
        if s.state in _RISK_ORDER or near_cancel:
            picked.append(s)

    def deadline_of(s: SlaStatus) -> datetime:
        if s.state is SlaState.AUTO_CANCEL_SOON and s.auto_cancel_at is not None:
            return s.auto_cancel_at
        return s.deadline

    picked.sort(key=lambda s: (_RISK_ORDER.get(s.state, 3), deadline_of(s), s.line.ci_lineitemid))
    return [
        SlaRisk(
            account=s.line.account,
            orderid=s.line.orderid,
            ci_lineitemid=s.line.ci_lineitemid,
            state=s.state.value,
            deadline=deadline_of(s),
            business_days_to_auto_cancel=s.business_days_to_auto_cancel,
            reason=s.reason,
        )
        for s in picked
    ]


def scans_reported_in(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the host reports carrier events for these rows: any row has a
    ``first_scan_at`` or a ``delivered_at``. Then a missing scan after 3 business days is late
    movement (the ``scans_reported`` flag of :func:`evaluate`)."""
    return any(
        row.get("first_scan_at") not in (None, "") or row.get("delivered_at") not in (None, "")
        for row in rows
    )


def evaluate_account(
    account: Account,
    rows: Iterable[Mapping[str, Any]],
    now: datetime,
    within_business_days: int = 2,
    *,
    scans_reported: bool | None = None,
) -> list[SlaStatus]:
    """``rows`` (see :func:`sla_lines_from_rows`) judged with the account's calendar, cut-off
    and zone: one status per line, in row order.

    :param scans_reported: passed to :func:`evaluate`; ``None`` decides from the rows
        (:func:`scans_reported_in`).
    :raises connector.errors.ConfigError: bad region/cutoff/timezone/closures options.
    :raises SlaInputError: a bad row.
    """
    rows = list(rows)
    if scans_reported is None:
        scans_reported = scans_reported_in(rows)
    calendar, cutoff, tz = calendar_for_account(account)
    return evaluate(
        sla_lines_from_rows(rows, account=account.name),
        calendar,
        now,
        cutoff,
        tz,
        auto_cancel_warn_days=within_business_days,
        scans_reported=scans_reported,
    )


def risks_for_account(
    account: Account,
    rows: Iterable[Mapping[str, Any]],
    now: datetime,
    within_business_days: int = 2,
    *,
    scans_reported: bool | None = None,
) -> list[SlaRisk]:
    """What ``oms_sla_at_risk`` returns: the at-risk lines of :func:`evaluate_account`."""
    statuses = evaluate_account(
        account, rows, now, within_business_days, scans_reported=scans_reported
    )
    return at_risk(statuses, within_business_days)


def cycle_time_report(lines: Iterable[SlaLine]) -> CycleTimeReport:
    """Average order -> delivered time in calendar days over delivered, non-cancelled lines."""
    days: list[float] = []
    for line in lines:
        if line.delivered_at is None or line.effective_status is LineStatus.CANCELLED:
            continue
        days.append((line.delivered_at - line.order_time).total_seconds() / 86400)
    if not days:
        return CycleTimeReport(None, 0, 0)
    over = sum(1 for d in days if d > CYCLE_TIME_TARGET_DAYS)
    return CycleTimeReport(round(sum(days) / len(days), 2), len(days), over)


# --- rows -> SlaLine ------------------------------------------------------------------

_STATUS_ALIASES = {
    "open": LineStatus.OPEN,
    "new": LineStatus.OPEN,
    "partially_shipped": LineStatus.PARTIALLY_SHIPPED,
    "partially shipped": LineStatus.PARTIALLY_SHIPPED,
    "partial": LineStatus.PARTIALLY_SHIPPED,
    "shipped": LineStatus.SHIPPED,
    "ship": LineStatus.SHIPPED,  # the status string ShipWorks saw from CI
    "delivered": LineStatus.SHIPPED,
    "cancelled": LineStatus.CANCELLED,
    "canceled": LineStatus.CANCELLED,
    "refunded": LineStatus.CANCELLED,
}

_CI_FORMATS = ("%m/%d/%Y %I:%M%p UTC", "%m/%d/%Y %I:%M%p", "%m/%d/%Y %H:%M")


def parse_datetime(value: Any) -> datetime:
    """A datetime, ISO 8601 text or CI's ``MM/DD/YYYY HH:MMAM UTC`` -> aware UTC.

    Naive values are taken as UTC (the connector stores UTC everywhere).

    :raises ValueError: anything else.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            for fmt in _CI_FORMATS:
                try:
                    parsed = datetime.strptime(text, fmt)
                    break
                except ValueError:
                    continue
            else:
                raise ValueError("not a date-time (ISO 8601 or MM/DD/YYYY HH:MMAM UTC)") from None
    else:
        raise ValueError(f"expected a date-time, got {type(value).__name__}")
    if parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class _RowReader:
    """Reads typed fields from one row; every failure names the row, field and value."""

    def __init__(self, row: Mapping[str, Any], index: int) -> None:
        self.row = row
        lineid = row.get("ci_lineitemid")
        self.where = f"row {index}" + (f" (ci_lineitemid {lineid})" if lineid is not None else "")

    def raw(self, *names: str) -> Any:
        for name in names:
            value = self.row.get(name)
            if value is not None and value != "":
                return value
        return None

    def fail(self, field: str, value: Any, why: str) -> SlaInputError:
        return SlaInputError(f"{self.where}: field {field!r} = {value!r}: {why}")

    def missing(self, field: str) -> SlaInputError:
        return SlaInputError(f"{self.where}: field {field!r} is missing")

    def text(self, field: str, default: str | None = None) -> str:
        value = self.raw(field)
        if value is None:
            if default is None:
                raise self.missing(field)
            return default
        return str(value)

    def integer(self, field: str, default: int | None = None) -> int:
        value = self.raw(field)
        if value is None:
            if default is None:
                raise self.missing(field)
            return default
        if isinstance(value, bool):
            raise self.fail(field, value, "not an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise self.fail(field, value, "not an integer") from None

    def when(self, field: str, *aliases: str) -> datetime | None:
        value = self.raw(field, *aliases)
        if value is None:
            return None
        try:
            return parse_datetime(value)
        except ValueError as exc:
            raise self.fail(field, value, str(exc)) from None

    def status(self) -> LineStatus:
        value = self.raw("status")
        if value is None:
            return LineStatus.OPEN
        key = str(value).strip().lower()
        if key not in _STATUS_ALIASES:
            raise self.fail("status", value, f"expected one of {sorted(_STATUS_ALIASES)}")
        return _STATUS_ALIASES[key]


def sla_lines_from_rows(
    rows: Iterable[Mapping[str, Any]], *, account: str | None = None
) -> list[SlaLine]:
    """Build :class:`SlaLine` values from plain dict-like rows (e.g. ledger rows).

    Keys: ``account`` (or the ``account`` argument), ``orderid``, ``ci_lineitemid``,
    ``order_time`` (or ``order_date``), ``ship_by`` (or ``ship_by_date``), ``quantity``,
    ``qty_shipped``, ``tracking_uploaded_at``, ``status``, ``first_scan_at``, ``delivered_at``.
    Optional keys may be missing or ``None``. Date-times as in :func:`parse_datetime`.

    :raises SlaInputError: naming the row number, line id, field and value.
    """
    out: list[SlaLine] = []
    for index, row in enumerate(rows, start=1):
        r = _RowReader(row, index)
        order_time = r.when("order_time", "order_date")
        if order_time is None:
            raise r.missing("order_time")
        out.append(
            SlaLine(
                account=r.text("account", account),
                orderid=r.text("orderid"),
                ci_lineitemid=r.integer("ci_lineitemid"),
                order_time=order_time,
                ship_by=r.when("ship_by", "ship_by_date"),
                quantity=r.integer("quantity"),
                qty_shipped=r.integer("qty_shipped", 0),
                tracking_uploaded_at=r.when("tracking_uploaded_at"),
                status=r.status(),
                first_scan_at=r.when("first_scan_at"),
                delivered_at=r.when("delivered_at"),
            )
        )
    return out
