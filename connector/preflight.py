"""Pre-flight checks for shipments: nothing reaches Groupon that it would refuse or that
would hurt the merchant's metrics (CI cannot edit tracking once sent).

Each (line, parcel) of a shipment is checked on its own; a failure becomes a hold with a
reason an operator can act on. The checks, in order:

1. the line is known to the ledger and the host confirmed it (stored/acked);
2. the line is not cancelled;
3. the host courier (+ service) maps to a Groupon carrier code on the region's approved list
   (``UNMAPPED_COURIER``: re-evaluated by ``flush_outbox`` once the CSV is fixed);
   a line not imported or not acknowledged yet is held ``AWAITING_HOST`` and re-evaluated by
   ``flush_outbox`` once the host acknowledged it;
4. the tracking number fits its carrier's format (``tracking_format_policy``);
5. the quantity fits what is still open (line quantity - quantity already sent or queued);
6. one tracking number is shared only by lines with identical ship-to addresses;
7. an order carries at most six distinct tracking numbers.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from connector.importer import CANCELLED_STATUSES
from connector.ledger import DispatchLine, Ledger, OutboxRow
from connector.mappings import Mappings
from connector.models import Account, HoldKind

__all__ = [
    "ACTIVE_OUTBOX_STATES",
    "MAX_TRACKING_PER_ORDER",
    "Candidate",
    "Preflight",
    "TrackingCheckLike",
    "TrackingChecker",
    "Verdict",
    "default_tracking_checker",
]

log = logging.getLogger("connector.preflight")

MAX_TRACKING_PER_ORDER = 6
"""Groupon: an order can carry up to six tracking numbers."""

ACTIVE_OUTBOX_STATES = ("pending", "sending", "retry", "accepted")
"""Outbox rows that count as shipped (or about to be)."""

_ADDRESS_KEYS = ("name", "address1", "address2", "city", "state", "zip", "country")


class TrackingCheckLike(Protocol):
    """The result of :func:`connector.tracking_formats.check_tracking_number`."""

    @property
    def known_format(self) -> bool: ...

    @property
    def valid(self) -> bool: ...

    @property
    def reason(self) -> str: ...


TrackingChecker = Callable[[str, str], TrackingCheckLike]


_default_checker: list[TrackingChecker] = []  # the default, once imported


def default_tracking_checker() -> TrackingChecker:
    """``connector.tracking_formats.check_tracking_number`` (imported when first needed;
    kept here after: a dispatch call builds a new pre-flight, and ``import_module`` on every
    one cost ~10 us)."""
    if not _default_checker:
        module = importlib.import_module("connector.tracking_formats")
        _default_checker.append(cast(TrackingChecker, module.check_tracking_number))
    return _default_checker[0]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One (line, parcel) of a shipment, before the checks."""

    ci_lineitemid: int
    tracking: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of the checks for one candidate. ``carrier_code`` is set when mapped."""

    candidate: Candidate
    ok: bool
    kind: HoldKind | None = None
    reason: str = ""
    carrier_code: str | None = None
    line: DispatchLine | None = None
    warning: str = ""


def _ship_to(customer: Any) -> tuple[Any, ...] | None:
    """The ship-to address in a raw record's ``customer`` value, as CI sent it (``None`` if it
    is not an object). Compared exactly: Groupon says any difference, even capitalisation,
    means separate parcels."""
    if not isinstance(customer, dict):
        return None
    get = customer.get  # the keys of _ADDRESS_KEYS, spelled out: no generator per line
    return (
        get("name"), get("address1"), get("address2"), get("city"), get("state"), get("zip"),
        get("country"),
    )  # fmt: skip


class Preflight:
    """Runs the checks for one account against its ledger and this cycle's mappings."""

    def __init__(
        self,
        account: Account,
        ledger: Ledger,
        mappings: Mappings,
        tracking_checker: TrackingChecker | None = None,
    ) -> None:
        self.account = account
        self.ledger = ledger
        self.mappings = mappings
        self._checker = tracking_checker

    def carrier_for(self, courier: str, service: str) -> tuple[str | None, str]:
        """The approved Groupon code for a host courier, or ``(None, reason)``."""
        region = self.account.region
        code = self.mappings.carrier_code(region, courier, service)
        if code is not None and self.mappings.is_approved(region, code):
            return code, ""
        where = self._file("couriers.csv")  # for the reason only (a path join per call)
        if code is None:
            svc = f" service {service!r}" if service else ""
            return None, (
                f"courier {courier!r}{svc} has no Groupon carrier code for region {region}: "
                f"add a row 'region,courier,service,carrier_code' to {where}"
            )
        return None, (
            f"carrier code {code!r} (courier {courier!r}) is not on Groupon's approved list "
            f"for {region} ({self._file(f'carriers/{region}.csv')}): fix {where}"
        )

    def check(
        self,
        courier: str,
        service: str,
        candidates: Sequence[Candidate],
    ) -> list[Verdict]:
        """Check every candidate of one shipment (or held rows being re-evaluated) against
        the ledger and the outbox rows already pending, sending or accepted."""
        return self.check_many([(courier, service, c) for c in candidates])

    def check_many(self, items: Sequence[tuple[str, str, Candidate]]) -> list[Verdict]:
        """Check candidates of many shipments at once, each with its shipment's courier and
        service. The cross-candidate checks (quantity, shared tracking, six numbers per order)
        see every candidate of the call, so two shipments of one batch cannot together
        over-ship a line. The ledger is read a fixed number of times, not once per row."""
        if not items:
            return []
        # No JSON here but each record's customer: the ship-to check compares the customers
        # of the lines; the lines themselves only the columns checked (no LineRow, no dates).
        # Both in one statement (Ledger.dispatch_lines_and_customers).
        lines, customers = self.ledger.dispatch_lines_and_customers(
            c.ci_lineitemid for _, _, c in items
        )
        carriers: dict[tuple[str, str], tuple[str | None, str]] = {}
        verdicts: list[Verdict] = []
        passed: list[Verdict] = []
        for courier, service, cand in items:
            key = (courier, service)
            if key not in carriers:
                carriers[key] = self.carrier_for(courier, service)
            code, courier_reason = carriers[key]
            line = lines.get(cand.ci_lineitemid)
            verdict = self._line_checks(cand, line, code, courier_reason)
            verdicts.append(verdict)
            if verdict.ok:
                passed.append(verdict)
        # Cross-candidate checks run only over those that passed the per-line checks.
        active = _ActiveRows(
            self.ledger.active_outbox_of(
                lines={v.candidate.ci_lineitemid for v in passed},
                trackings={v.candidate.tracking for v in passed},
                orderids={v.line.orderid for v in passed if v.line is not None},
            )
        )
        failed = self._quantity_checks(passed, active)
        failed.update(self._shared_tracking_checks(passed, failed, active, customers))
        failed.update(self._order_limit_checks(passed, failed, active))
        return [
            Verdict(
                v.candidate,
                False,
                HoldKind.PREFLIGHT,
                failed[id(v)],
                v.carrier_code,
                v.line,
            )
            if id(v) in failed
            else v
            for v in verdicts
        ]

    # -- per line -----------------------------------------------------------------------------

    def _line_checks(
        self, cand: Candidate, line: DispatchLine | None, code: str | None, courier_reason: str
    ) -> Verdict:
        lid = cand.ci_lineitemid
        if line is None:
            return Verdict(
                cand,
                False,
                HoldKind.AWAITING_HOST,
                f"line {lid} is not known to this account's ledger (not imported yet, or "
                "another account's line): sent once it is imported and acknowledged",
            )
        if line.state in ("cancelled",) or line.ci_status in CANCELLED_STATUSES:
            return _fail(cand, line, f"line {lid} is cancelled in CI: no tracking may be sent")
        if line.state not in ("stored", "acked"):
            return Verdict(
                cand,
                False,
                HoldKind.AWAITING_HOST,
                f"line {lid} is {line.state}: the host has not confirmed storing it "
                "(call oms_mark_exported first; the next oms_flush_outbox then sends it)",
                None,
                line,
            )
        if not cand.tracking.strip():
            return _fail(cand, line, f"line {lid}: empty tracking number")
        if cand.quantity < 1:
            return _fail(
                cand, line, f"line {lid}: quantity must be at least 1, got {cand.quantity}"
            )
        if code is None:
            return Verdict(cand, False, HoldKind.UNMAPPED_COURIER, courier_reason, None, line)
        warning = ""
        policy = self.account.options.tracking_format_policy
        if policy != "off":
            result = self._tracking_checker()(code, cand.tracking)
            if result.known_format and not result.valid:
                text = f"tracking {cand.tracking!r} fails the {code} format: {result.reason}"
                if policy == "reject":
                    return Verdict(cand, False, HoldKind.PREFLIGHT, text, code, line)
                warning = text
                log.warning("account %s line %d: %s", self.account.name, lid, text)
        return Verdict(cand, True, None, "", code, line, warning)

    def _tracking_checker(self) -> TrackingChecker:
        if self._checker is None:
            self._checker = default_tracking_checker()
        return self._checker

    # -- across candidates --------------------------------------------------------------------

    def _quantity_checks(self, passed: Iterable[Verdict], active: _ActiveRows) -> dict[int, str]:
        failed: dict[int, str] = {}
        used: dict[int, int] = {}
        for v in passed:
            assert v.line is not None
            lid = v.candidate.ci_lineitemid
            if lid not in used:
                used[lid] = sum(r.quantity for r in active.by_line.get(lid, ()))
            still_open = v.line.quantity - used[lid]
            if v.candidate.quantity > still_open:
                failed[id(v)] = (
                    f"line {lid}: quantity {v.candidate.quantity} exceeds what is still open "
                    f"({still_open} of {v.line.quantity})"
                )
            else:
                used[lid] += v.candidate.quantity
        return failed

    def _shared_tracking_checks(
        self,
        passed: Iterable[Verdict],
        failed: dict[int, str],
        active: _ActiveRows,
        customers: dict[int, Any],
    ) -> dict[int, str]:
        """``customers``: those of the lines checked (read with them); the lines of earlier
        rows sharing a number are read here."""
        out: dict[int, str] = {}
        by_tracking: dict[str, list[Verdict]] = {}
        for v in passed:
            if id(v) not in failed:
                by_tracking.setdefault(v.candidate.tracking, []).append(v)
        earlier_ids = {r.ci_lineitemid for t in by_tracking for r in active.by_tracking.get(t, ())}
        # The customer of every line compared (known lines only: a line the ledger does not
        # hold has no entry, as it had no row before).
        missing = earlier_ids - customers.keys()
        if missing:
            customers = {**customers, **self.ledger.line_customers(missing)}
        for tracking, group in by_tracking.items():
            addresses: dict[tuple[Any, ...] | None, int] = {}
            for r in active.by_tracking.get(tracking, ()):
                if r.ci_lineitemid in customers:
                    addresses.setdefault(_ship_to(customers[r.ci_lineitemid]), r.ci_lineitemid)
            for v in group:
                assert v.line is not None
                lid = v.candidate.ci_lineitemid
                addresses.setdefault(_ship_to(customers.get(lid)), lid)
            if len(addresses) > 1 or None in addresses:
                ids = ", ".join(str(i) for i in sorted(set(addresses.values())))
                for v in group:
                    out[id(v)] = (
                        f"tracking {tracking!r} is shared by lines with different ship-to "
                        f"addresses (lines {ids}): use one tracking number per address"
                    )
        return out

    def _order_limit_checks(
        self, passed: Iterable[Verdict], failed: dict[int, str], active: _ActiveRows
    ) -> dict[int, str]:
        out: dict[int, str] = {}
        by_order: dict[str, list[Verdict]] = {}
        for v in passed:
            if id(v) not in failed:
                assert v.line is not None
                by_order.setdefault(v.line.orderid, []).append(v)
        for orderid, group in by_order.items():
            existing = {r.tracking for r in active.by_order.get(orderid, ())}
            allowed = set(existing)
            for v in group:
                number = v.candidate.tracking
                if number in allowed:
                    continue
                if len(allowed) < MAX_TRACKING_PER_ORDER:
                    allowed.add(number)
                    continue
                out[id(v)] = (
                    f"order {orderid} would carry more than {MAX_TRACKING_PER_ORDER} tracking "
                    f"numbers (already {len(allowed)}): combine parcels"
                )
        return out

    def _file(self, name: str) -> str:
        directory = self.mappings.directory or self.account.mappings_dir
        return str(directory / name) if directory else name


def _fail(cand: Candidate, line: DispatchLine | None, reason: str) -> Verdict:
    return Verdict(cand, False, HoldKind.PREFLIGHT, reason, None, line)


class _ActiveRows:
    """The active outbox rows a check needs, indexed by line, tracking number and order."""

    def __init__(self, rows: Iterable[OutboxRow]) -> None:
        self.by_line: dict[int, list[OutboxRow]] = {}
        self.by_tracking: dict[str, list[OutboxRow]] = {}
        self.by_order: dict[str, list[OutboxRow]] = {}
        for r in rows:
            self.by_line.setdefault(r.ci_lineitemid, []).append(r)
            self.by_tracking.setdefault(r.tracking, []).append(r)
            self.by_order.setdefault(r.orderid, []).append(r)
