"""Dispatch: pre-flight -> durable outbox -> batched tracking calls.

Every (shipment, line, tracking number) becomes one outbox row, unique on that key, so the
same shipment sent twice changes nothing. A row is marked ``sending`` (and its attempt
counted) in a committed transaction *before* the call, and its outcome is recorded after:

* ``accepted``: CI took it; the line's shipped quantity grows;
* ``rejected``: CI refused it (batches are re-sent one row at a time to find the refused rows);
  the row is held for the operator with CI's reason;
* ``retry``: transport/protocol failure; ``next_attempt_at`` backs off exponentially.

A row left ``sending`` by a crash is re-sent by the next flush; CI treats an identical re-send
as a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from connector.ci.client import LineitemTrackingItem, TrackingItem
from connector.crashpoints import crashpoint
from connector.errors import CIAuthError, CIBusinessError, CIError
from connector.ledger import Ledger, OutboxRow
from connector.mappings import Mappings
from connector.models import Account, HoldKind, LineOutcome, LineResult, Shipment
from connector.preflight import Candidate, Preflight, TrackingChecker, Verdict
from connector.secrets import redact

__all__ = [
    "FULL_LINE_ENDPOINT",
    "PARTIAL_ENDPOINT",
    "RETRY_BASE_SECONDS",
    "RETRY_MAX_SECONDS",
    "Dispatcher",
    "TrackingClient",
]

log = logging.getLogger("connector.dispatcher")

FULL_LINE_ENDPOINT = "tracking_notification"
PARTIAL_ENDPOINT = "lineitem_tracking_notification"
RETRY_BASE_SECONDS = 60
RETRY_MAX_SECONDS = 3600


class TrackingClient(Protocol):
    """The part of :class:`connector.ci.client.CIClient` the dispatcher uses."""

    def tracking_notification(self, items: Sequence[TrackingItem]) -> None: ...

    def lineitem_tracking_notification(self, items: Sequence[LineitemTrackingItem]) -> None: ...


def retry_delay(attempts: int) -> timedelta:
    """Backoff before the next attempt after ``attempts`` failed ones (60 s doubling, 1 h cap)."""
    exponent = max(attempts - 1, 0)
    return timedelta(seconds=min(RETRY_BASE_SECONDS * 2 ** min(exponent, 16), RETRY_MAX_SECONDS))


class Dispatcher:
    """Dispatch and outbox flushing for one account."""

    def __init__(
        self,
        account: Account,
        client: TrackingClient,
        ledger: Ledger,
        mappings: Mappings,
        clock: Callable[[], datetime],
        tracking_checker: TrackingChecker | None = None,
    ) -> None:
        self.account = account
        self.client = client
        self.ledger = ledger
        self.clock = clock
        self.preflight = Preflight(account, ledger, mappings, tracking_checker)

    # -- dispatch -----------------------------------------------------------------------------

    def dispatch(self, shipment: Shipment) -> list[LineResult]:
        """Pre-flight, store and send one shipment; idempotent by ``shipment_id``."""
        now = self.clock()
        wanted: dict[tuple[int, str], int] = {}
        for parcel in shipment.parcels:
            for item in parcel.lines:
                key = (item.ci_lineitemid, parcel.tracking_number.strip())
                wanted[key] = wanted.get(key, 0) + item.quantity
        existing = {
            (r.ci_lineitemid, r.tracking): r
            for r in self.ledger.outbox_rows(shipment_id=shipment.shipment_id)
        }
        results: dict[tuple[int, str], LineResult] = {}
        to_check: list[Candidate] = []
        for (lid, tracking), qty in wanted.items():
            row = existing.get((lid, tracking))
            if row is None or row.state == "held":
                to_check.append(Candidate(lid, tracking, qty))
            else:
                results[(lid, tracking)] = _known_result(row)
        verdicts = self.preflight.check(shipment.courier, shipment.service, to_check)
        with self.ledger.transaction():  # one commit: rows stored and claimed together
            stored = self._store(shipment, verdicts, existing, results, now)
            # Claimed before the call (lease in the ledger): no other process sends them.
            to_send = self.ledger.claim_outbox(stored, now, self.account.options.lease_seconds)
        for row in stored:
            if row not in to_send:
                results[(row.ci_lineitemid, row.tracking)] = _in_flight(row)
        crashpoint("after_outbox")
        try:
            for result in self._send(to_send, now, premarked=True):
                results[(result.ci_lineitemid, result.tracking_number or "")] = result
        except BaseException:
            # Every settled row ended its claim with its outcome; free the rest for a retry.
            self.ledger.release_outbox(r.id for r in to_send)
            raise
        return [results[key] for key in wanted]

    def _store(
        self,
        shipment: Shipment,
        verdicts: list[Verdict],
        existing: dict[tuple[int, str], OutboxRow],
        results: dict[tuple[int, str], LineResult],
        now: datetime,
    ) -> list[OutboxRow]:
        """Write every checked candidate to the outbox in one transaction; rows that pass are
        written as ``sending`` (attempt counted) since they are sent right after the commit."""
        stored: list[OutboxRow] = []
        with self.ledger.transaction():
            for v in verdicts:
                cand = v.candidate
                key = (cand.ci_lineitemid, cand.tracking)
                endpoint = self._endpoint(v) if v.ok else None
                state = "sending" if v.ok else "held"
                old = existing.get(key)
                attempts = (old.attempts if old is not None else 0) + (1 if v.ok else 0)
                fields = {
                    "state": state,
                    "attempts": attempts,
                    "hold_kind": None if v.ok else v.kind,
                    "reason": v.warning if v.ok else v.reason,
                    "carrier_code": v.carrier_code,
                    "endpoint": endpoint,
                    "quantity": cand.quantity,
                    "courier": shipment.courier,
                    "service": shipment.service,
                    **_line_ids(v),
                }
                if old is not None:
                    self.ledger.update_outbox(old.id, now, **fields)
                    if v.ok:
                        stored.append(self.ledger.outbox_rows(ids=[old.id])[0])
                else:
                    row = self.ledger.insert_outbox(
                        shipment_id=shipment.shipment_id,
                        ci_lineitemid=cand.ci_lineitemid,
                        tracking=cand.tracking,
                        quantity=cand.quantity,
                        now=now,
                        orderid=v.line.orderid if v.line else "",
                        fulfillment_lineitem_id=v.line.fulfillment_lineitem_id if v.line else None,
                        courier=shipment.courier,
                        service=shipment.service,
                        carrier_code=v.carrier_code,
                        endpoint=endpoint,
                        state=state,
                        hold_kind=None if v.ok else v.kind,
                        reason=v.warning if v.ok else v.reason,
                        attempts=attempts,
                    )
                    if v.ok:
                        stored.append(row)
                if not v.ok:
                    results[key] = LineResult(
                        cand.ci_lineitemid, LineOutcome.HELD, v.reason, cand.tracking
                    )
        return stored

    def _endpoint(self, verdict: Verdict) -> str:
        line = verdict.line
        assert line is not None
        if verdict.candidate.quantity >= line.quantity:
            return FULL_LINE_ENDPOINT
        if self.account.api_version == "v4" and line.fulfillment_lineitem_id:
            return PARTIAL_ENDPOINT
        # No v4 / no Groupon line id: tracking_notification with a quantity instead.
        return FULL_LINE_ENDPOINT

    # -- flush --------------------------------------------------------------------------------

    def flush(self) -> list[LineResult]:
        """Send due rows: pending, left ``sending`` by a crash, ``retry`` whose time has come,
        and courier-held rows whose mapping is now fixed (re-checked in full)."""
        now = self.clock()
        due = self._repair_line_ids(
            [
                r
                for r in self.ledger.outbox_rows(states=("pending", "sending", "retry"))
                if r.state != "retry" or r.next_attempt_at is None or r.next_attempt_at <= now
            ],
            now,
        )
        results = self._release_courier_holds(now, due)
        # A row another live process claimed is in flight there: it is not sent again here.
        claimed = self.ledger.claim_outbox(due, now, self.account.options.lease_seconds)
        crashpoint("flush")
        try:
            return results + self._send(claimed, now)
        except BaseException:
            self.ledger.release_outbox(r.id for r in claimed)
            raise

    def _repair_line_ids(self, rows: list[OutboxRow], now: datetime) -> list[OutboxRow]:
        """Rows written before their line was known (held, then re-checked by an older
        version) lack the order id and Groupon line id: fill them in from the line."""
        broken = [r for r in rows if not r.orderid or not r.fulfillment_lineitem_id]
        if not broken:
            return rows
        lines = self.ledger.get_lines((r.ci_lineitemid for r in broken), light=True)
        fixed: dict[int, OutboxRow] = {}
        with self.ledger.transaction():
            for r in broken:
                line = lines.get(r.ci_lineitemid)
                if line is None:
                    continue
                ids = {
                    "orderid": line.orderid,
                    "fulfillment_lineitem_id": line.fulfillment_lineitem_id,
                }
                if (r.orderid, r.fulfillment_lineitem_id) == tuple(ids.values()):
                    continue
                self.ledger.update_outbox(r.id, now, **ids)
                fixed[r.id] = replace(
                    r, orderid=line.orderid, fulfillment_lineitem_id=line.fulfillment_lineitem_id
                )
        return [fixed.get(r.id, r) for r in rows]

    def _release_courier_holds(self, now: datetime, due: list[OutboxRow]) -> list[LineResult]:
        held = [
            r
            for r in self.ledger.outbox_rows(states=("held",))
            if r.hold_kind is HoldKind.UNMAPPED_COURIER
        ]
        results: list[LineResult] = []
        groups: dict[tuple[str, str], list[OutboxRow]] = {}
        for row in held:
            groups.setdefault((row.courier, row.service), []).append(row)
        for (courier, service), rows in groups.items():
            if self.preflight.carrier_for(courier, service)[0] is None:
                continue  # still unmapped: nothing to re-check
            cands = [Candidate(r.ci_lineitemid, r.tracking, r.quantity) for r in rows]
            verdicts = self.preflight.check(courier, service, cands)
            with self.ledger.transaction():
                for row, v in zip(rows, verdicts, strict=True):
                    if v.ok:
                        self.ledger.update_outbox(
                            row.id,
                            now,
                            state="pending",
                            hold_kind=None,
                            reason=v.warning,
                            carrier_code=v.carrier_code,
                            endpoint=self._endpoint(v),
                            **_line_ids(v),
                        )
                        due.append(self.ledger.outbox_rows(ids=[row.id])[0])
                    else:
                        self.ledger.update_outbox(row.id, now, hold_kind=v.kind, reason=v.reason)
                        results.append(
                            LineResult(row.ci_lineitemid, LineOutcome.HELD, v.reason, row.tracking)
                        )
        return results

    # -- sending ------------------------------------------------------------------------------

    def _send(
        self, rows: Sequence[OutboxRow], now: datetime, *, premarked: bool = False
    ) -> list[LineResult]:
        """Send ``rows`` in batches per endpoint. ``premarked``: the rows were written as
        ``sending`` (attempt counted) in the commit just before, so no second commit."""
        results: list[LineResult] = []
        size = max(1, self.account.options.tracking_batch_size)
        for endpoint in (FULL_LINE_ENDPOINT, PARTIAL_ENDPOINT):
            group = [r for r in rows if (r.endpoint or FULL_LINE_ENDPOINT) == endpoint]
            for start in range(0, len(group), size):
                batch = group[start : start + size]
                results += self._send_batch(endpoint, batch, now, premarked=premarked)
        return results

    def _send_batch(
        self, endpoint: str, rows: list[OutboxRow], now: datetime, *, premarked: bool = False
    ) -> list[LineResult]:
        if premarked:
            # Attempts already counted: _retry adds one to the count *before* this attempt.
            rows = [replace(r, attempts=r.attempts - 1) for r in rows]
        else:
            with self.ledger.transaction():
                for r in rows:
                    self.ledger.update_outbox(r.id, now, state="sending", attempts=r.attempts + 1)
        try:
            self._call(endpoint, rows)
        except CIAuthError as exc:
            return self._retry(rows, f"CI refused the credentials: {exc.reason}", now)
        except (CIBusinessError, ValueError) as exc:
            # ValueError: the client refused to build the request (e.g. an empty Groupon line
            # id) and nothing was sent. Like a refusal by CI it settles that row (held for the
            # operator), never an exception out of the hook leaving the row 'sending'.
            if len(rows) == 1:
                if isinstance(exc, CIBusinessError):
                    return [self._reject(rows[0], exc.reason, now)]
                return [self._hold_invalid(rows[0], str(exc), now)]
            # Find the refused row(s): resend one at a time (CI ignores identical re-sends).
            results: list[LineResult] = []
            for r in rows:
                fresh = self.ledger.outbox_rows(ids=[r.id])[0]
                results += self._send_batch(endpoint, [fresh], now)
            return results
        except CIError as exc:
            return self._retry(rows, f"CI unreachable, will retry: {exc}", now)
        crashpoint("tracking_sent")
        self.ledger.record_tracking_accepted(
            [(r.id, r.ci_lineitemid, r.quantity) for r in rows], now
        )
        crashpoint("tracking_recorded")
        log.info("account %s: %s accepted %d row(s)", self.account.name, endpoint, len(rows))
        return [LineResult(r.ci_lineitemid, LineOutcome.ACCEPTED, "", r.tracking) for r in rows]

    def _call(self, endpoint: str, rows: list[OutboxRow]) -> None:
        if endpoint == PARTIAL_ENDPOINT:
            self.client.lineitem_tracking_notification(
                [
                    LineitemTrackingItem(
                        fulfillment_lineitem_id=r.fulfillment_lineitem_id or "",
                        carrier=r.carrier_code or "",
                        tracking=r.tracking,
                        quantity=r.quantity,
                    )
                    for r in rows
                ]
            )
            return
        ordered = self.ledger.line_quantities(r.ci_lineitemid for r in rows)
        items = []
        for r in rows:
            quantity = ordered.get(r.ci_lineitemid)
            partial = quantity is not None and r.quantity < quantity
            items.append(
                TrackingItem(
                    ci_lineitemid=r.ci_lineitemid,
                    carrier=r.carrier_code or "",
                    tracking=r.tracking,
                    quantity=r.quantity if partial else None,
                )
            )
        self.client.tracking_notification(items)

    def _reject(self, row: OutboxRow, reason: str, now: datetime) -> LineResult:
        text = f"CI refused the tracking: {reason}"
        self.ledger.update_outbox(
            row.id, now, state="rejected", hold_kind=HoldKind.REJECTED_BY_CI, reason=text
        )
        log.warning(
            "account %s line %d tracking %r rejected by CI: %s",
            self.account.name,
            row.ci_lineitemid,
            row.tracking,
            reason,
        )
        return LineResult(row.ci_lineitemid, LineOutcome.REJECTED, text, row.tracking)

    def _hold_invalid(self, row: OutboxRow, reason: str, now: datetime) -> LineResult:
        text = f"not sent: the client refused the tracking request: {redact(reason)}"
        self.ledger.update_outbox(
            row.id, now, state="held", hold_kind=HoldKind.PREFLIGHT, reason=text
        )
        log.warning(
            "account %s line %d tracking %r held: %s",
            self.account.name,
            row.ci_lineitemid,
            row.tracking,
            text,
        )
        return LineResult(row.ci_lineitemid, LineOutcome.HELD, text, row.tracking)

    def _retry(self, rows: list[OutboxRow], reason: str, now: datetime) -> list[LineResult]:
        with self.ledger.transaction():
            for r in rows:
                self.ledger.update_outbox(
                    r.id,
                    now,
                    state="retry",
                    reason=reason,
                    next_attempt_at=now + retry_delay(r.attempts + 1),
                )
        return [LineResult(r.ci_lineitemid, LineOutcome.QUEUED, reason, r.tracking) for r in rows]


def _line_ids(verdict: Verdict) -> dict[str, str | None]:
    """The order id and Groupon line id of a checked candidate's line (a held row may have
    been written before the line was imported: they are set when it is re-checked)."""
    if verdict.line is None:
        return {}
    return {
        "orderid": verdict.line.orderid,
        "fulfillment_lineitem_id": verdict.line.fulfillment_lineitem_id,
    }


def _in_flight(row: OutboxRow) -> LineResult:
    """A row another process claimed: it sends it (or its lease runs out and it is re-sent)."""
    return LineResult(
        row.ci_lineitemid,
        LineOutcome.QUEUED,
        "queued: being sent by another process",
        row.tracking,
    )


def _known_result(row: OutboxRow) -> LineResult:
    """What a re-sent shipment reports for a row already in the outbox."""
    if row.state == "accepted":
        return LineResult(
            row.ci_lineitemid, LineOutcome.ALREADY_DONE, "already accepted by CI", row.tracking
        )
    if row.state == "rejected":
        return LineResult(row.ci_lineitemid, LineOutcome.REJECTED, row.reason, row.tracking)
    if row.state == "manual":
        # Handed to the manual upload file: the API must not send it too.
        return LineResult(
            row.ci_lineitemid,
            LineOutcome.ALREADY_DONE,
            f"handed to the manual tracking upload ({row.reason})",
            row.tracking,
        )
    return LineResult(
        row.ci_lineitemid,
        LineOutcome.QUEUED,
        row.reason or "queued: sent by oms_flush_outbox",
        row.tracking,
    )
