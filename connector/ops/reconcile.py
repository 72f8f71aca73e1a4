"""Reconciliation backstop: compare what CI, the plugin's ledger and the host each believe.

Three checks per account (peers.md §3 item 4, §4 "Reconciliation backstop"):

1. ``exported_missing``: lines CI lists as exported (seen in < 24 h date windows over the last
   ``days`` but absent from the un-exported default view) or lines the ledger says the host
   stored, that the host does not have. This is the plenty failure mode (acked before stored).
   Heal: put the line back to ``staged`` in the ledger; the next sync hands it to the host,
   which stores idempotently, and re-acknowledges it (harmless in CI).
2. ``unacked``: lines the host holds with no recorded acknowledgement: ledger rows ``stored``
   but not ``acked`` while ``mark_exported`` is on, host lines with no ledger row, and host
   lines whose ledger row was never confirmed. Heal: bind them in the ledger and re-send
   ``mark_exported`` (re-marking is harmless in CI).
3. ``tracking``: dispatches without accepted tracking: outbox rows pending/sending/retry for
   longer than ``stale_minutes``, rows CI rejected, rows held by pre-flight, and host shipments
   with no outbox row at all. Heal: re-queue stuck rows for the next flush and dispatch
   shipments the plugin never received (pre-flight still runs). Rejected and held rows need an
   operator: the finding's ``action`` says what to do.
4. ``unexported_unknown``: lines CI lists as un-exported (the default view) that the ledger
   has never seen, older than ``stale_minutes``: no sync imported them (window mode before the
   catch-up read could skip a back-dated order) and Groupon auto-cancels un-exported lines.
   Heal: stage the line from CI's record; the next sync hands it to the host.

Safe by construction: every heal is a re-delivery or re-send that the host or CI treats as
idempotent. Nothing is ever deleted.

Assumed (not evidenced in ci-api.md): the CI date-window filter is on the order ``date``, so a
line ordered before the ``days`` horizon is not compared with CI (the ledger/host comparison
still covers it).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from connector.ci.schemas import RecordProblem, parse_record
from connector.errors import ChannelError, MappingError
from connector.importer import CANCELLED_STATUSES, split_windows
from connector.ledger import Ledger, LineRow, OutboxRow
from connector.mappings import Mappings, load_mappings
from connector.models import Account, HoldKind, LineOutcome, Parcel, Shipment
from connector.reference_host.store import parcels_from_json

__all__ = [
    "CHECKS",
    "DEFAULT_DAYS",
    "DEFAULT_STALE_MINUTES",
    "Finding",
    "HostLine",
    "HostShipment",
    "HostView",
    "HostViewError",
    "ReconcileClient",
    "ReconcileReport",
    "reconcile_account",
]

log = logging.getLogger("connector.ops.reconcile")

CHECKS = ("exported_missing", "unacked", "tracking", "unexported_unknown")
"""The four checks, in report order."""

DEFAULT_DAYS = 7
DEFAULT_STALE_MINUTES = 60
WINDOW_HOURS = 23  # CI refuses windows of 24 h or more (ci-api.md §3)


class HostViewError(ChannelError):
    """The host database could not be read; the message names the file."""


class ReconcileClient(Protocol):
    """What reconciliation calls on :class:`connector.ci.client.CIClient`."""

    def fetch_all(self, window: tuple[datetime, datetime] | None = None) -> Sequence[Any]: ...

    def mark_exported(self, ci_lineitemids: Sequence[int]) -> None: ...

    def tracking_notification(self, items: Sequence[Any]) -> None: ...

    def lineitem_tracking_notification(self, items: Sequence[Any]) -> None: ...


# --- the host side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostLine:
    """One line as the host stored it."""

    ci_lineitemid: int
    orderid: str
    host_order_id: str
    quantity: int
    sku: str
    fulfillment_lineitem_id: str | None
    status: str


@dataclass(frozen=True, slots=True)
class HostShipment:
    """One dispatch the host recorded."""

    shipment_id: str
    courier: str
    service: str
    parcels: tuple[Parcel, ...]


class HostView:
    """Read-only view of the reference host's SQLite database (``reference-host.sqlite3``).

    Reads the tables of :mod:`connector.reference_host.store` (``orders``, ``order_lines``,
    ``shipments``) through a read-only connection; it never writes to the host.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise HostViewError(f"host database {self.path} does not exist")
        try:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0)
            self._db.row_factory = sqlite3.Row
        except sqlite3.Error as exc:
            raise HostViewError(f"cannot open host database {self.path}: {exc}") from None

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> HostView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        try:
            return list(self._db.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise HostViewError(
                f"host database {self.path} is not a reference-host database: {exc}"
            ) from None

    def lines(self, account: str) -> dict[int, HostLine]:
        """Every line the host stored for ``account`` (any status), by ``ci_lineitemid``."""
        rows = self._rows(
            "SELECT l.ci_lineitemid, o.orderid, l.host_order_id, l.quantity, l.sku,"
            " l.fulfillment_lineitem_id, l.status FROM order_lines l"
            " JOIN orders o USING (host_order_id) WHERE l.account = ?",
            (account,),
        )
        return {
            int(r["ci_lineitemid"]): HostLine(
                ci_lineitemid=int(r["ci_lineitemid"]),
                orderid=str(r["orderid"]),
                host_order_id=str(r["host_order_id"]),
                quantity=int(r["quantity"]),
                sku=str(r["sku"]),
                fulfillment_lineitem_id=r["fulfillment_lineitem_id"],
                status=str(r["status"]),
            )
            for r in rows
        }

    def shipments(self, account: str) -> list[HostShipment]:
        """Every shipment the host recorded for ``account``, oldest first."""
        rows = self._rows(
            "SELECT shipment_id, courier, service, parcels FROM shipments"
            " WHERE account = ? ORDER BY created_at, shipment_id",
            (account,),
        )
        out = []
        for r in rows:
            try:
                parcels = parcels_from_json(r["parcels"])
            except (ValueError, KeyError, TypeError) as exc:
                raise HostViewError(
                    f"host database {self.path}: shipment {r['shipment_id']!r} has unreadable"
                    f" parcels: {exc}"
                ) from None
            out.append(HostShipment(str(r["shipment_id"]), r["courier"], r["service"], parcels))
        return out


# --- findings and the report --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One discrepancy.

    :ivar check: one of :data:`CHECKS`.
    :ivar kind: the precise case (e.g. ``not_in_host``, ``stored_not_acked``,
        ``tracking_rejected``).
    :ivar detail: what is wrong and what it means.
    :ivar action: how it is healed (``--fix``) or what the operator must do.
    :ivar fixable: ``--fix`` heals it.
    :ivar fixed: ``--fix`` ran and applied the heal.
    """

    check: str
    kind: str
    ci_lineitemid: int | None
    orderid: str | None
    detail: str
    action: str
    fixable: bool
    fixed: bool = False
    ledger_state: str | None = None
    shipment_id: str | None = None
    tracking: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class ReconcileReport:
    """What :func:`reconcile_account` found (and healed) for one account."""

    account: str
    checked_at: datetime
    days: int
    fix: bool
    host_db: Path | None
    windows_read: int = 0
    ci_lines_seen: int = 0
    ci_exported: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> list[Finding]:
        """Findings not healed by this run."""
        return [f for f in self.findings if not f.fixed]

    @property
    def clean(self) -> bool:
        """Nothing remains to be done."""
        return not self.remaining

    def counts(self) -> dict[str, dict[str, int]]:
        """Per check: ``found``, ``fixed``, ``remaining``."""
        out = {c: {"found": 0, "fixed": 0, "remaining": 0} for c in CHECKS}
        for f in self.findings:
            out[f.check]["found"] += 1
            out[f.check]["fixed" if f.fixed else "remaining"] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: findings grouped per check, counts, notes."""
        return {
            "account": self.account,
            "checked_at": self.checked_at.isoformat(),
            "days": self.days,
            "fix": self.fix,
            "host_db": str(self.host_db) if self.host_db else None,
            "windows_read": self.windows_read,
            "ci_lines_seen": self.ci_lines_seen,
            "ci_exported": self.ci_exported,
            "clean": self.clean,
            "counts": self.counts(),
            "findings": {c: [f.to_dict() for f in self.findings if f.check == c] for c in CHECKS},
            "notes": list(self.notes),
        }


# --- the reconciliation -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CILine:
    ci_lineitemid: int
    orderid: str | None
    status: str
    record: dict[str, Any]
    order_date: datetime | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def reconcile_account(
    account: Account,
    *,
    client: ReconcileClient,
    ledger: Ledger,
    host: HostView | None = None,
    days: int = DEFAULT_DAYS,
    stale_minutes: int = DEFAULT_STALE_MINUTES,
    fix: bool = False,
    clock: Callable[[], datetime] = _utcnow,
    mappings_loader: Callable[[Account], Mappings] | None = None,
) -> ReconcileReport:
    """Run the three checks for ``account`` and, with ``fix``, apply the safe heals.

    :param client: the account's CI client (reads windows and the un-exported view; with
        ``fix`` also re-sends ``mark_exported`` and dispatches).
    :param ledger: the account's ledger (:func:`connector.ledger.open_ledger`).
    :param host: the reference host's database, or ``None`` to trust the ledger's bindings.
    :param days: how far back to read CI date windows (each < 24 h).
    :param stale_minutes: an outbox row not accepted this long after it was created is stuck.
    :param clock: aware UTC now.
    :param mappings_loader: loads the account's mappings (only needed by ``fix``).
    :raises ValueError: ``days`` < 1 or ``stale_minutes`` < 0.
    :raises connector.errors.CIError: CI could not be read (nothing was changed).
    :raises connector.errors.LedgerError: the ledger could not be read or written.
    :raises HostViewError: the host database could not be read.
    """
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if stale_minutes < 0:
        raise ValueError(f"stale_minutes must be >= 0, got {stale_minutes}")
    now = clock()
    report = ReconcileReport(
        account=account.name,
        checked_at=now,
        days=days,
        fix=fix,
        host_db=host.path if host is not None else None,
    )
    ci_lines, exported, unexported = _read_ci(client, now, days, report)
    host_lines = host.lines(account.name) if host is not None else None
    ledger_lines = {row.ci_lineitemid: row for row in ledger.lines()}
    unknown = _check_unexported_unknown(
        unexported, ledger_lines, host_lines, now, stale_minutes, report
    )

    missing = _check_exported_missing(ci_lines, exported, ledger_lines, host_lines)
    unacked = _check_unacked(account, ledger_lines, host_lines, {f.ci_lineitemid for f in missing})
    host_shipments = host.shipments(account.name) if host is not None else []
    tracking = _check_tracking(ledger, host_shipments, now, stale_minutes)

    if fix:
        loader = mappings_loader or (lambda a: load_mappings(a.mappings_dir))
        known_to_ci = {**unexported, **ci_lines}
        healer = _Healer(
            account, client, ledger, loader, clock, report, known_to_ci, host_lines, host_shipments
        )
        missing = healer.heal_missing(missing)
        unacked = healer.heal_unacked(unacked)
        tracking = healer.heal_tracking(tracking)
        unknown = healer.heal_unknown(unknown)
    report.findings = missing + unacked + tracking + unknown
    return report


def _read_ci(
    client: ReconcileClient, now: datetime, days: int, report: ReconcileReport
) -> tuple[dict[int, _CILine], set[int], dict[int, _CILine]]:
    """Lines in the date windows, which of them CI lists as exported, and the lines of the
    un-exported view.

    Windows are read *before* the un-exported view: a line created in between is then absent
    from the windows rather than wrongly counted as exported.
    """
    # Round the end up to the next minute: CI windows have minute resolution.
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    windows = split_windows(end - timedelta(days=days), end, WINDOW_HOURS)
    seen: dict[int, _CILine] = {}
    for window in windows:
        for page in client.fetch_all(window=window):
            for raw in page.records:
                for line in _ci_lines(raw):
                    seen[line.ci_lineitemid] = line
    unexported: dict[int, _CILine] = {}
    for page in client.fetch_all():
        for raw in page.records:
            unexported.update((line.ci_lineitemid, line) for line in _ci_lines(raw))
    exported = {
        lid
        for lid, line in seen.items()
        if lid not in unexported and line.status not in CANCELLED_STATUSES
    }
    report.windows_read = len(windows)
    report.ci_lines_seen = len(seen)
    report.ci_exported = len(exported)
    return seen, exported, unexported


def _ci_lines(raw: Any) -> list[_CILine]:
    if not isinstance(raw, dict):
        return []
    parsed = parse_record(raw)
    if isinstance(parsed, RecordProblem):
        # Unreadable record: the ids it still carries count, status unknown (taken as open).
        return [_CILine(lid, parsed.orderid, "open", raw) for lid in parsed.ci_lineitemids]
    return [
        _CILine(line.ci_lineitemid, parsed.orderid, line.status or "open", raw, parsed.order_date)
        for line in parsed.lines
    ]


_HEAL_STAGE = (
    "--fix puts the line back to 'staged'; the next sync hands it to the host (which stores "
    "idempotently) and re-acknowledges it"
)


def _check_exported_missing(
    ci_lines: dict[int, _CILine],
    exported: set[int],
    ledger_lines: dict[int, LineRow],
    host_lines: dict[int, HostLine] | None,
) -> list[Finding]:
    findings: list[Finding] = []
    checked: set[int] = set()
    for lid in sorted(exported):
        checked.add(lid)
        ci = ci_lines[lid]
        row = ledger_lines.get(lid)
        in_host = host_lines is not None and lid in host_lines
        if in_host or (row is not None and row.state == "cancelled"):
            continue  # present in the host (check 2 looks at its binding) or never wanted
        if row is None:
            if host_lines is None:
                detail = (
                    f"CI lists line {lid} as exported but the ledger never saw it (marked "
                    "exported outside this connector?); the host cannot have it"
                )
            else:
                detail = f"CI lists line {lid} as exported; neither the ledger nor the host has it"
            findings.append(
                Finding(
                    "exported_missing",
                    "not_in_host",
                    lid,
                    ci.orderid,
                    detail,
                    _HEAL_STAGE,
                    fixable=True,
                )
            )
            continue
        if row.state in ("stored", "acked"):
            if host_lines is None:
                continue  # no host database: trust the ledger's binding
            detail = (
                f"CI lists line {lid} as exported and the ledger says the host stored it as "
                f"{row.host_order_id}, but the host does not have it"
            )
        elif row.state == "held":
            findings.append(
                Finding(
                    "exported_missing",
                    "not_in_host",
                    lid,
                    row.orderid,
                    f"CI lists line {lid} as exported but the plugin holds it: {row.hold_reason}",
                    "operator: fix the hold (see 'ci-connector status'), then sync",
                    fixable=False,
                    ledger_state=row.state,
                )
            )
            continue
        else:
            detail = (
                f"CI lists line {lid} as exported but the host never confirmed it "
                f"(ledger state {row.state})"
            )
        findings.append(
            Finding(
                "exported_missing",
                "not_in_host",
                lid,
                row.orderid,
                detail,
                _HEAL_STAGE,
                fixable=True,
                ledger_state=row.state,
            )
        )
    if host_lines is not None:
        for lid, row in sorted(ledger_lines.items()):
            if lid in checked or lid in host_lines or row.state not in ("stored", "acked"):
                continue
            findings.append(
                Finding(
                    "exported_missing",
                    "not_in_host",
                    lid,
                    row.orderid,
                    f"the ledger says the host stored line {lid} as {row.host_order_id} "
                    f"(state {row.state}) but the host does not have it",
                    _HEAL_STAGE,
                    fixable=True,
                    ledger_state=row.state,
                )
            )
    return findings


def _check_unexported_unknown(
    unexported: dict[int, _CILine],
    ledger_lines: dict[int, LineRow],
    host_lines: dict[int, HostLine] | None,
    now: datetime,
    stale_minutes: int,
    report: ReconcileReport,
) -> list[Finding]:
    """Lines CI still waits on (un-exported) that no sync ever read into the ledger."""
    findings: list[Finding] = []
    young = 0
    horizon = now - timedelta(minutes=stale_minutes)
    for lid, ci in sorted(unexported.items()):
        if lid in ledger_lines or (host_lines is not None and lid in host_lines):
            continue  # known (the other checks look at it)
        if ci.status in CANCELLED_STATUSES:
            continue
        if ci.order_date is not None and ci.order_date > horizon:
            young += 1  # new since the last sync: the next one reads it
            continue
        dated = f", dated {ci.order_date.isoformat()}" if ci.order_date else ""
        findings.append(
            Finding(
                "unexported_unknown",
                "unknown_to_ledger",
                lid,
                ci.orderid,
                f"CI lists line {lid} (order {ci.orderid}{dated}) as un-exported but the "
                "ledger has never seen it: no sync imported it, and Groupon auto-cancels "
                "lines left un-exported",
                "--fix stages it from CI's record; the next sync hands it to the host",
                fixable=True,
            )
        )
    if young:
        report.notes.append(
            f"{young} un-exported line(s) unknown to the ledger are younger than "
            f"{stale_minutes} min: the next sync imports them"
        )
    return findings


def _check_unacked(
    account: Account,
    ledger_lines: dict[int, LineRow],
    host_lines: dict[int, HostLine] | None,
    skip: set[int | None],
) -> list[Finding]:
    findings: list[Finding] = []
    resend = "--fix re-sends mark_exported (harmless in CI) and records the ack"
    if account.options.mark_exported:
        for lid, row in sorted(ledger_lines.items()):
            if row.state != "stored" or lid in skip:
                continue
            if row.hold_kind is HoldKind.REJECTED_BY_CI:
                findings.append(
                    Finding(
                        "unacked",
                        "ack_rejected",
                        lid,
                        row.orderid,
                        f"host stored line {lid} as {row.host_order_id}; {row.hold_reason}",
                        "operator: check the line in the CI web UI (unknown id, other "
                        "supplier?); it is not re-sent automatically",
                        fixable=False,
                        ledger_state=row.state,
                    )
                )
                continue
            findings.append(
                Finding(
                    "unacked",
                    "stored_not_acked",
                    lid,
                    row.orderid,
                    f"host stored line {lid} as {row.host_order_id} but no mark_exported was "
                    f"recorded ({row.ack_attempts} attempt(s)); CI may cancel un-exported lines",
                    resend,
                    fixable=True,
                    ledger_state=row.state,
                )
            )
    if host_lines is None:
        return findings
    bind = "--fix binds it in the ledger to the host order" + (
        ", then re-sends mark_exported" if account.options.mark_exported else ""
    )
    for lid, hl in sorted(host_lines.items()):
        bound = ledger_lines.get(lid)
        if bound is None:
            findings.append(
                Finding(
                    "unacked",
                    "host_line_unbound",
                    lid,
                    hl.orderid,
                    f"host has line {lid} in {hl.host_order_id} but the ledger has no row "
                    "for it (lost ledger?): no ack recorded and tracking cannot be sent",
                    bind,
                    fixable=True,
                )
            )
        elif bound.state in ("staged", "delivered"):
            findings.append(
                Finding(
                    "unacked",
                    "host_line_unconfirmed",
                    lid,
                    hl.orderid,
                    f"host has line {lid} in {hl.host_order_id} but never confirmed it to the "
                    f"plugin (ledger state {bound.state})",
                    bind,
                    fixable=True,
                    ledger_state=bound.state,
                )
            )
        elif bound.state == "held":
            findings.append(
                Finding(
                    "unacked",
                    "host_line_held",
                    lid,
                    hl.orderid,
                    f"host has line {lid} in {hl.host_order_id} but the plugin holds it: "
                    f"{bound.hold_reason}",
                    "operator: fix the hold, then sync (the host replays idempotently)",
                    fixable=False,
                    ledger_state=bound.state,
                )
            )
    return findings


def _check_tracking(
    ledger: Ledger, shipments: list[HostShipment], now: datetime, stale_minutes: int
) -> list[Finding]:
    findings: list[Finding] = []
    stale = now - timedelta(minutes=stale_minutes)
    for row in ledger.outbox_rows(states=("pending", "sending", "retry", "rejected", "held")):
        findings.extend(_outbox_finding(row, stale))
    for shipment in shipments:
        rows = ledger.outbox_rows(shipment_id=shipment.shipment_id)
        if rows:
            findings.extend(_divergence(shipment, rows))
            continue
        for parcel in shipment.parcels:
            for item in parcel.lines:
                findings.append(
                    Finding(
                        "tracking",
                        "shipment_not_dispatched",
                        item.ci_lineitemid,
                        None,
                        f"host shipment {shipment.shipment_id!r} ({shipment.courier}) never "
                        "reached the plugin: CI has no tracking for it",
                        "--fix dispatches the host's shipment (pre-flight runs as usual)",
                        fixable=True,
                        shipment_id=shipment.shipment_id,
                        tracking=parcel.tracking_number,
                    )
                )
    return findings


def _divergence(shipment: HostShipment, rows: list[OutboxRow]) -> list[Finding]:
    """A host shipment whose ``shipment_id`` the plugin holds with other contents (possible
    only for shipments dispatched before contract v2, which now refuses a reused id)."""
    host: dict[tuple[int, str], int] = {}
    for parcel in shipment.parcels:
        for item in parcel.lines:
            key = (item.ci_lineitemid, parcel.tracking_number.strip())
            host[key] = host.get(key, 0) + item.quantity
    plugin = {(r.ci_lineitemid, r.tracking): r.quantity for r in rows}
    couriers = {r.courier for r in rows}
    if host == plugin and couriers <= {shipment.courier}:
        return []
    only_host = sorted(set(host) - set(plugin))
    only_plugin = sorted(set(plugin) - set(host))
    detail = (
        f"host shipment {shipment.shipment_id!r} differs from what the plugin holds under "
        f"that id: host-only (line, tracking) {only_host}, plugin-only {only_plugin}, "
        f"host courier {shipment.courier!r}, plugin courier(s) {sorted(couriers)}"
    )
    return [
        Finding(
            "tracking",
            "shipment_diverged",
            None,
            None,
            detail,
            "check CI's tracking for these lines; dispatch the host's parcels under a new "
            "shipment_id if CI lacks them",
            fixable=False,
            shipment_id=shipment.shipment_id,
        )
    ]


def _outbox_finding(row: OutboxRow, stale: datetime) -> list[Finding]:
    where = f"shipment {row.shipment_id!r} line {row.ci_lineitemid} tracking {row.tracking!r}"
    common: dict[str, Any] = {
        "ci_lineitemid": row.ci_lineitemid,
        "orderid": row.orderid or None,
        "ledger_state": row.state,
        "shipment_id": row.shipment_id,
        "tracking": row.tracking,
    }
    if row.state in ("pending", "sending", "retry"):
        if row.created_at > stale:
            return []  # young: the normal flush will take it
        return [
            Finding(
                check="tracking",
                kind="tracking_stuck",
                detail=f"{where} is still {row.state} since {row.created_at.isoformat()} "
                f"after {row.attempts} attempt(s): {row.reason or 'never sent'}",
                action="--fix re-queues it for the next flush (CI ignores identical re-sends)",
                fixable=True,
                **common,
            )
        ]
    if row.state == "rejected":
        line_no = row.fulfillment_lineitem_id or f"(CI line {row.ci_lineitemid})"
        return [
            Finding(
                check="tracking",
                kind="tracking_rejected",
                detail=f"{where}: {row.reason}",
                action=(
                    "operator: CI keeps no edits. If the carrier code was wrong, fix "
                    "mappings/couriers.csv and dispatch again under a new shipment id; to "
                    f"correct tracking already sent, file Groupon's Tracking Update Form "
                    f"(Line Item # {line_no}, old/new tracking, carrier code, "
                    f"quantity {row.quantity})"
                ),
                fixable=False,
                **common,
            )
        ]
    if row.hold_kind is HoldKind.UNMAPPED_COURIER:
        action = (
            f"operator: map courier {row.courier!r} in mappings/couriers.csv; the next "
            "flush releases the hold"
        )
    else:
        action = "operator: correct the shipment (see the reason) and dispatch it again"
    return [
        Finding(
            check="tracking",
            kind="tracking_held",
            detail=f"{where} held: {row.reason}",
            action=action,
            fixable=False,
            **common,
        )
    ]


# --- healing -------------------------------------------------------------------------------


class _Healer:
    """Applies the safe heals; each records what it did on the finding and in the notes."""

    def __init__(
        self,
        account: Account,
        client: ReconcileClient,
        ledger: Ledger,
        mappings_loader: Callable[[Account], Mappings],
        clock: Callable[[], datetime],
        report: ReconcileReport,
        ci_lines: dict[int, _CILine],
        host_lines: dict[int, HostLine] | None,
        host_shipments: list[HostShipment],
    ) -> None:
        self.account = account
        self.client = client
        self.ledger = ledger
        self.mappings_loader = mappings_loader
        self.clock = clock
        self.report = report
        self.ci_lines = ci_lines
        self.host_lines = host_lines or {}
        self.host_shipments = host_shipments
        self._mappings: Mappings | None = None

    def _load_mappings(self) -> Mappings | None:
        if self._mappings is None:
            try:
                self._mappings = self.mappings_loader(self.account)
            except MappingError as exc:
                self.report.notes.append(f"cannot heal what needs the mappings: {exc}")
                return None
        return self._mappings

    def _stage_from_ci(self, lid: int, now: datetime, state: str, **extra: Any) -> bool:
        """Create a ledger row for ``lid`` from the CI record seen in the windows."""
        ci = self.ci_lines.get(lid)
        if ci is None:
            return False
        parsed = parse_record(ci.record)
        if isinstance(parsed, RecordProblem):
            return self.ledger.stage_line(
                ci_lineitemid=lid,
                orderid=ci.orderid or "",
                now=now,
                record=ci.record,
                state="held",
                hold_kind=HoldKind.INVALID_PAYLOAD,
                hold_reason=parsed.reason,
            )
        line = next(ln for ln in parsed.lines if ln.ci_lineitemid == lid)
        created = self.ledger.stage_line(
            ci_lineitemid=lid,
            orderid=parsed.orderid,
            now=now,
            fulfillment_lineitem_id=line.fulfillment_lineitem_id,
            record=ci.record,
            order_date=parsed.order_date,
            ship_by=line.ship_by,
            quantity=line.quantity,
            sku=line.sku,
            bom_sku=line.bom_sku,
            ci_status=line.status or "open",
            state=state,
        )
        if created and extra:
            self.ledger.update_line(lid, now, **extra)
        return created

    def heal_missing(self, findings: list[Finding]) -> list[Finding]:
        now = self.clock()
        out = []
        with self.ledger.transaction():
            for f in findings:
                if not f.fixable or f.ci_lineitemid is None:
                    out.append(f)
                    continue
                lid = f.ci_lineitemid
                if f.ledger_state is None:
                    done = self._stage_from_ci(lid, now, "staged")
                else:
                    fields: dict[str, Any] = {
                        "state": "staged",
                        "host_order_id": None,
                        "hold_kind": None,
                        "hold_reason": "",
                        "held_since": None,
                    }
                    ci = self.ci_lines.get(lid)
                    if ci is not None:
                        fields["record"] = ci.record  # the latest payload for re-evaluation
                    self.ledger.update_line(lid, now, **fields)
                    done = True
                if done:
                    self.report.notes.append(
                        f"line {lid}: put back to 'staged'; the next sync re-delivers it"
                    )
                out.append(_mark(f, done))
        return out

    def heal_unknown(self, findings: list[Finding]) -> list[Finding]:
        now = self.clock()
        out = []
        with self.ledger.transaction():
            for f in findings:
                lid = f.ci_lineitemid
                done = lid is not None and self._stage_from_ci(lid, now, "staged")
                if done:
                    self.report.notes.append(
                        f"line {lid}: staged from CI's un-exported view; the next sync hands it "
                        "to the host"
                    )
                out.append(_mark(f, done))
        return out

    def heal_unacked(self, findings: list[Finding]) -> list[Finding]:
        now = self.clock()
        bound: dict[int, bool] = {}
        with self.ledger.transaction():
            for f in findings:
                lid = f.ci_lineitemid
                if not f.fixable or lid is None:
                    continue
                hl = self.host_lines.get(lid)
                if f.kind == "host_line_unbound" and hl is not None:
                    ok = self._stage_from_ci(lid, now, "stored", host_order_id=hl.host_order_id)
                    if not ok:
                        # Not in the windows read: bind from what the host knows.
                        ok = self.ledger.stage_line(
                            ci_lineitemid=lid,
                            orderid=hl.orderid,
                            now=now,
                            fulfillment_lineitem_id=hl.fulfillment_lineitem_id,
                            quantity=hl.quantity,
                            sku=hl.sku,
                            state="stored",
                        )
                        if ok:
                            self.ledger.update_line(lid, now, host_order_id=hl.host_order_id)
                    bound[lid] = ok
                elif f.kind == "host_line_unconfirmed" and hl is not None:
                    self.ledger.update_line(
                        lid, now, state="stored", host_order_id=hl.host_order_id
                    )
                    bound[lid] = True
        if not self.account.options.mark_exported:
            return [
                _mark(f, bound.get(f.ci_lineitemid or -1, False)) if f.fixable else f
                for f in findings
            ]
        ack = {r.ci_lineitemid: r for r in self._resend_acks(findings, bound)}
        out = []
        for f in findings:
            result = ack.get(f.ci_lineitemid or -1)
            if not f.fixable or result is None:
                out.append(f)
                continue
            done = result.outcome in (LineOutcome.ACCEPTED, LineOutcome.ALREADY_DONE)
            self.report.notes.append(
                f"line {f.ci_lineitemid}: mark_exported re-sent: {result.outcome.value}"
                + (f" ({result.reason})" if result.reason else "")
            )
            out.append(_mark(f, done))
        return out

    def _resend_acks(self, findings: list[Finding], bound: dict[int, bool]) -> list[Any]:
        from connector.importer import Importer

        ids = [
            f.ci_lineitemid
            for f in findings
            if f.fixable
            and f.ci_lineitemid is not None
            and (f.kind == "stored_not_acked" or bound.get(f.ci_lineitemid, False))
        ]
        if not ids:
            return []
        mappings = self._load_mappings()
        if mappings is None:
            return []
        importer = Importer(self.account, self.client, self.ledger, mappings, self.clock)
        wanted = set(ids)
        return [r for r in importer.flush_acks() if r.ci_lineitemid in wanted]

    def heal_tracking(self, findings: list[Finding]) -> list[Finding]:
        now = self.clock()
        out: list[Finding] = []
        stuck = [f for f in findings if f.kind == "tracking_stuck"]
        with self.ledger.transaction():
            for f in stuck:
                for row in self.ledger.outbox_rows(
                    shipment_id=f.shipment_id, ci_lineitemid=f.ci_lineitemid, tracking=f.tracking
                ):
                    self.ledger.update_outbox(row.id, now, state="retry", next_attempt_at=now)
                    self.report.notes.append(
                        f"shipment {row.shipment_id!r} line {row.ci_lineitemid}: re-queued for "
                        "the next flush"
                    )
        dispatched = self._dispatch_missing(
            {f.shipment_id for f in findings if f.kind == "shipment_not_dispatched"}
        )
        for f in findings:
            if f.kind == "tracking_stuck":
                out.append(_mark(f, True))
            elif f.kind == "shipment_not_dispatched":
                outcome = dispatched.get((f.shipment_id or "", f.ci_lineitemid, f.tracking))
                ok = outcome in (LineOutcome.ACCEPTED, LineOutcome.ALREADY_DONE)
                out.append(_mark(f, ok))
            else:
                out.append(f)
        return out

    def _dispatch_missing(
        self, shipment_ids: Iterable[str | None]
    ) -> dict[tuple[str, int | None, str | None], LineOutcome]:
        wanted = {s for s in shipment_ids if s}
        if not wanted:
            return {}
        mappings = self._load_mappings()
        if mappings is None:
            return {}
        from connector.dispatcher import Dispatcher

        dispatcher = Dispatcher(self.account, self.client, self.ledger, mappings, self.clock)
        outcomes: dict[tuple[str, int | None, str | None], LineOutcome] = {}
        by_id = {s.shipment_id: s for s in self.host_shipments if s.shipment_id in wanted}
        for sid, hs in by_id.items():
            shipment = Shipment(sid, hs.courier, hs.parcels, hs.service)
            for r in dispatcher.dispatch(shipment):
                outcomes[(sid, r.ci_lineitemid, r.tracking_number)] = r.outcome
                self.report.notes.append(
                    f"shipment {sid!r} line {r.ci_lineitemid}: dispatched: {r.outcome.value}"
                    + (f" ({r.reason})" if r.reason else "")
                )
        return outcomes


def _mark(finding: Finding, fixed: bool) -> Finding:
    return replace(finding, fixed=True) if fixed else finding
