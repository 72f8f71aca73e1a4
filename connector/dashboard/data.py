"""Everything the dashboard shows, gathered from the sources the CLI commands read.

Held lines come from the channel plugin (``oms_held_lines`` through the facade, as ``status``);
SLA states from the ledger rows judged by :mod:`connector.ops.sla` (as ``sla``); the cycle from
:mod:`connector.ops.threshold` (as ``threshold``); syncs from :mod:`.synclog`. One account that
cannot be read shows its error; the others still show.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector.dashboard.hints import hint_for
from connector.dashboard.synclog import read_syncs
from connector.errors import ChannelError, ConfigError, LedgerError
from connector.models import Account
from connector.ops.sla import SlaState, SlaStatus, at_risk, evaluate_account, scans_reported_in
from connector.ops.threshold import ThresholdReport, evaluate, sales_from_rows
from connector.runtime.identity import OPERATOR, acting_as
from connector.secrets import redact

if TYPE_CHECKING:
    from connector.reference_host.facade import ChannelFacade

#: The SLA timeline spans this window around now (overdue lines older than it sit at its edge).
TIMELINE_BEFORE = timedelta(days=3)
TIMELINE_AFTER = timedelta(days=10)
MAX_HELD_SHOWN = 100
_CURRENCY = {"US": "$", "GB": "£", "UK": "£", "AU": "A$", "CA": "C$", "AE": "AED "}
_EURO = {"DE", "FR", "ES", "IT", "IE", "NL", "BE", "AT", "PT", "PL"}
LANES = (
    (SlaState.OVERDUE.value, "Overdue"),
    (SlaState.DUE_TODAY.value, "Due today"),
    (SlaState.AUTO_CANCEL_SOON.value, "Auto-cancel soon"),
)


def currency_symbol(region: str) -> str:
    """The account's money sign (the ledger's amounts are in the account's currency)."""
    region = region.upper()
    return "€" if region in _EURO else _CURRENCY.get(region, "")


@dataclass(frozen=True)
class HeldView:
    kind: str
    ci_lineitemid: int | None
    orderid: str | None
    since: datetime | None
    reason: str
    hint: str
    command: str


@dataclass(frozen=True)
class Dot:
    """At-risk lines of one lane due within the same hour: ``x`` in [0, 1] across the window;
    ``count`` lines (the circle grows with it)."""

    lane: str
    x: float
    label: str
    clipped: bool
    count: int = 1

    @property
    def radius(self) -> float:
        return round(6 + 2.2 * math.sqrt(min(self.count, 49)), 1)


@dataclass(frozen=True)
class SlaView:
    counts: dict[str, int]
    at_risk: list[dict[str, Any]]
    dots: list[Dot]
    window_start: datetime
    window_end: datetime
    now_x: float
    day_ticks: list[tuple[float, str]]
    lane_counts: dict[str, int]


@dataclass(frozen=True)
class CycleView:
    report: ThresholdReport
    currency: str
    elapsed_share: float | None
    projected_share: float | None
    warn_at: tuple[float, ...]


@dataclass
class AccountView:
    name: str
    region: str
    level: int
    held: list[HeldView] = field(default_factory=list)
    held_total: int = 0
    sla: SlaView | None = None
    cycle: CycleView | None = None
    lines_total: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def held_fixes(self) -> list[tuple[str, str, str, int]]:
        """(kind, what to do, command, lines shown) once per hold kind on the page."""
        seen: dict[str, tuple[str, str, str, int]] = {}
        for h in self.held:
            kind, hint, command, n = seen.get(h.kind, (h.kind, h.hint, h.command, 0))
            seen[h.kind] = (kind, hint, command, n + 1)
        return list(seen.values())


@dataclass(frozen=True)
class DashboardData:
    now: datetime
    accounts: list[AccountView]
    syncs: list[dict[str, Any]]
    sync_log_unreadable: int
    within: int
    collect_ms: float

    @property
    def held_total(self) -> int:
        return sum(a.held_total for a in self.accounts)

    @property
    def at_risk_total(self) -> int:
        return sum(len(a.sla.at_risk) for a in self.accounts if a.sla is not None)


def _share(moment: datetime, start: datetime, end: datetime) -> float:
    span = (end - start).total_seconds()
    return 0.0 if span <= 0 else (moment - start).total_seconds() / span


def sla_view(statuses: list[SlaStatus], now: datetime, within: int) -> SlaView:
    """Counts per state, the at-risk list (most urgent first) and timeline dots."""
    start, end = now - TIMELINE_BEFORE, now + TIMELINE_AFTER
    risks = at_risk(statuses, within)
    groups: dict[tuple[str, datetime], list[Any]] = {}
    per_lane: Counter[str] = Counter()
    for risk in risks:
        lane = risk.state if risk.state in dict(LANES) else SlaState.AUTO_CANCEL_SOON.value
        per_lane[lane] += 1
        hour = risk.deadline.replace(minute=0, second=0, microsecond=0)
        groups.setdefault((lane, hour), []).append(risk)
    dots: list[Dot] = []
    for (lane, _hour), members in groups.items():
        first = members[0]
        x = _share(first.deadline, start, end)
        ids = ", ".join(str(m.ci_lineitemid) for m in members[:6])
        more = f" and {len(members) - 6} more" if len(members) > 6 else ""
        dots.append(
            Dot(
                lane=lane,
                x=min(max(x, 0.0), 1.0),
                label=(
                    f"{len(members)} line(s) {first.state.replace('_', ' ')} "
                    f"{first.deadline:%Y-%m-%d %H:%M} UTC: {ids}{more}"
                ),
                clipped=not 0.0 <= x <= 1.0,
                count=len(members),
            )
        )
    first_day = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
    ticks = []
    day = first_day
    while day < end:
        ticks.append((_share(day, start, end), f"{day:%a %d}"))
        day += timedelta(days=1)
    counts = Counter(s.state.value for s in statuses)
    return SlaView(
        counts={state.value: counts.get(state.value, 0) for state in SlaState},
        at_risk=[
            {
                "state": r.state,
                "orderid": r.orderid,
                "ci_lineitemid": r.ci_lineitemid,
                "deadline": r.deadline,
                "business_days_to_auto_cancel": r.business_days_to_auto_cancel,
                "reason": r.reason,
            }
            for r in risks
        ],
        dots=dots,
        window_start=start,
        window_end=end,
        now_x=_share(now, start, end),
        day_ticks=ticks,
        lane_counts=dict(per_lane),
    )


def cycle_view(report: ThresholdReport, currency: str, warn_at: tuple[float, ...]) -> CycleView:
    elapsed = projected = None
    if report.cycle_start is not None and report.cycle_end is not None:
        elapsed = min(max(_share(report.now, report.cycle_start, report.cycle_end), 0.0), 1.0)
        if report.projected_cap_at is not None:
            projected = min(
                max(_share(report.projected_cap_at, report.cycle_start, report.cycle_end), 0.0),
                1.0,
            )
    return CycleView(report, currency, elapsed, projected, warn_at)


def _held(facade: ChannelFacade, account: Account) -> tuple[list[HeldView], int]:
    held = facade.held_lines(account=account)
    views = []
    for line in held[:MAX_HELD_SHOWN]:
        kind = str(line.kind.value if hasattr(line.kind, "value") else line.kind)
        hint, command = hint_for(kind)
        views.append(
            HeldView(
                kind=kind,
                ci_lineitemid=line.ci_lineitemid,
                orderid=line.orderid,
                since=line.since,
                reason=redact(line.reason),
                hint=hint,
                command=command.replace("NAME", account.name),
            )
        )
    return views, len(held)


def _ledger_rows(account: Account) -> list[dict[str, Any]]:
    from connector.ledger import open_ledger
    from connector.ops.ledger_rows import rows_from_ledger

    ledger = open_ledger(account)
    try:
        return rows_from_ledger(ledger, account)
    finally:
        ledger.close()


def collect_account(
    facade: ChannelFacade | None,
    account: Account,
    now: datetime,
    within: int = 2,
    warn_at: tuple[float, ...] = (0.8, 0.95),
) -> AccountView:
    """One account's view; every failure becomes a line in ``errors`` (redacted)."""
    view = AccountView(account.name, account.region, account.options.merchant_level)
    if facade is not None:
        try:
            view.held, view.held_total = _held(facade, account)
        except (ChannelError, OSError) as exc:
            view.errors.append(f"held lines: {redact(str(exc))}")
    try:
        rows = _ledger_rows(account)
    except (LedgerError, ConfigError, OSError) as exc:
        view.errors.append(f"ledger: {redact(str(exc))}")
        return view
    view.lines_total = len(rows)
    try:
        statuses = evaluate_account(
            account, rows, now, within, scans_reported=scans_reported_in(rows)
        )
        view.sla = sla_view(statuses, now, within)
    except (ConfigError, ValueError) as exc:  # SlaInputError is a ValueError
        view.errors.append(f"SLA: {redact(str(exc))}")
    try:
        report = evaluate(view.level, sales_from_rows(rows), [], now, warn_at)
        view.cycle = cycle_view(report, currency_symbol(account.region), warn_at)
    except ValueError as exc:  # ThresholdInputError
        view.errors.append(f"threshold: {redact(str(exc))}")
    return view


def collect(
    accounts: list[Account],
    data_dir: Path,
    now: datetime,
    *,
    facade: ChannelFacade | None = None,
    within: int = 2,
    sync_limit: int = 15,
) -> DashboardData:
    """The whole page's data at ``now``."""
    started = time.perf_counter()
    # An operator's view: it reads whichever host's ledger without claiming it for a host.
    with acting_as(OPERATOR):
        views = [collect_account(facade, account, now, within) for account in accounts]
    names = {a.name for a in accounts}
    syncs, unreadable = read_syncs(data_dir, limit=sync_limit * 4)
    syncs = [s for s in syncs if s.get("account") in names][:sync_limit]
    return DashboardData(
        now=now,
        accounts=views,
        syncs=syncs,
        sync_log_unreadable=unreadable,
        within=within,
        collect_ms=(time.perf_counter() - started) * 1000,
    )


__all__ = [
    "LANES",
    "AccountView",
    "CycleView",
    "DashboardData",
    "Dot",
    "HeldView",
    "SlaView",
    "collect",
    "collect_account",
    "currency_symbol",
    "cycle_view",
    "sla_view",
]
