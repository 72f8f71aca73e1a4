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
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from connector.ci.client import LineitemTrackingItem, TrackingItem
from connector.crashpoints import crashpoint
from connector.errors import CIAuthError, CIBusinessError, CIError
from connector.ledger import Ledger, OutboxRow
from connector.ledger.sqlite import ClosedOutboxRow
from connector.mappings import Mappings
from connector.models import Account, HoldKind, LineOutcome, LineResult, Shipment, VoidResult
from connector.overlap import CallPool, runs_concurrently, thread_setup
from connector.preflight import Candidate, Preflight, TrackingChecker, Verdict
from connector.runtime.collector import fewer_collections
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
        # Ordered quantity per line, as pre-flight just read it in this dispatch call (saves
        # the ledger read per tracking call; other paths read the ledger).
        self._ordered: dict[int, int] = {}

    # -- dispatch -----------------------------------------------------------------------------

    def dispatch(self, shipment: Shipment) -> list[LineResult]:
        """Pre-flight, store and send one shipment; idempotent by ``shipment_id``."""
        return self.dispatch_many([shipment])

    def dispatch_many(self, shipments: Sequence[Shipment]) -> list[LineResult]:
        """Pre-flight, store and send many shipments: the outbox committed before any call,
        tracking packed into as few CI calls as the batch size allows, what CI accepted
        recorded in commits without an fsync of their own (one, or a few while the last
        answers are awaited). Results come shipment by shipment, one per (line, parcel).

        With calls in flight (``ack_concurrency`` > 1 and a client that allows it), a long
        call is worked through in parts (:func:`_parts`; of about one tracking call's worth
        of items at the start and at the end, of ``ack_concurrency`` calls' worth between):
        each part is pre-flighted and committed (durable), and its full batches go out while
        the next part is pre-flighted, so CI's time overlaps the connector's. The calls carry the
        same items (each endpoint's rows in order, ``tracking_batch_size`` a call) and the
        results are the same as in one part."""
        # A wave of hundreds of shipments makes tens of thousands of short-lived objects: at
        # CPython's default threshold that was ~16 young collections a wave of 500, whose
        # survivors (the wave's results, held to the end) brought on a full collection of the
        # host's whole heap every few waves (see connector.runtime.collector).
        with fewer_collections():
            return self._dispatch_many(shipments)

    def _dispatch_many(self, shipments: Sequence[Shipment]) -> list[LineResult]:
        now = self.clock()
        lease = self.account.options.lease_seconds
        sender = _Sender(self, now, premarked=True)
        parts: list[Sequence[Shipment]] = [shipments]
        if sender.overlaps:
            # Small parts are one call's worth, large ones as many calls as may be in flight.
            size = sender.batch_size
            parts = _parts(shipments, size, size * sender.workers)
        plans: list[_Plan] = []
        first_in_call: dict[str, _Plan] = {}
        try:
            if len(parts) > 1:
                sender.start()  # the threads, before any call is made (see _Sender.start)
            for k, part in enumerate(parts):
                # One transaction from the first read to the outbox commit: the reads (stored
                # rows, pre-flight's lines and active rows) run inside it rather than as a
                # read transaction each (SQLite: a WAL read lock taken and dropped per
                # statement), and what pre-flight saw is what the rows are written against.
                # It holds the ledger's write lock through pre-flight (CPU, no I/O but the
                # reads): the hooks run under the account lock, which already keeps every
                # other writer of this ledger out for the whole call.
                with self.ledger.transaction():  # one commit: rows stored and claimed together
                    verdicts, owners, stored = self._plan(part, plans, first_in_call)
                    # Claimed before the call (lease in the ledger): no other process sends
                    # them. New rows are inserted claimed; the rest (held rows passing now)
                    # are claimed here.
                    written, claimed = self._store(owners, verdicts, stored, now, lease)
                    rest = [r for r in written if r.id not in claimed]
                    claimed.update(r.id for r in self.ledger.claim_outbox(rest, now, lease))
                for row in written:
                    if row.id not in claimed:
                        first_in_call[row.shipment_id].results[
                            (row.ci_lineitemid, row.tracking)
                        ] = _in_flight(row)
                crashpoint("after_outbox")
                self._ordered.update(
                    (v.line.ci_lineitemid, v.line.quantity) for v in verdicts if v.line
                )
                sender.add([r for r in written if r.id in claimed], more=k + 1 < len(parts))
            sent = sender.finish()
        except BaseException:
            # Every settled row ended its claim with its outcome; free the rest for a retry.
            sender.close(abort=True)
            self.ledger.release_outbox(r.id for r in sender.rows)
            raise
        finally:
            self._ordered = {}
        by_row = {(r.shipment_id, r.ci_lineitemid, r.tracking_number or ""): r for r in sent}
        out: list[LineResult] = []
        for plan in plans:
            sid = plan.shipment.shipment_id
            for key in plan.wanted:
                result = plan.results.get(key) or by_row[(sid, *key)]
                out.append(
                    result if result.shipment_id == sid else replace(result, shipment_id=sid)
                )
        if sender.rows:
            self.settle_holds(now)
        return out

    def _plan(
        self,
        shipments: Sequence[Shipment],
        plans: list[_Plan],
        first_in_call: dict[str, _Plan],
    ) -> tuple[list[Verdict], list[_Plan], dict[str, dict[tuple[int, str], OutboxRow]]]:
        """Read what the ledger holds of ``shipments`` and pre-flight what is new. Appends a
        plan per shipment to ``plans`` (results known so far) and notes the first plan of each
        shipment id in ``first_in_call`` (both kept across the parts of one call); returns the
        verdicts, the plan owning each verdict and the stored rows by shipment."""
        ids = [s.shipment_id for s in shipments]
        stored: dict[str, dict[tuple[int, str], OutboxRow]] = {}
        closed: dict[str, dict[tuple[int, str], ClosedOutboxRow]] = {}
        if self.ledger.any_outbox_of_shipments(ids):  # new shipments: one statement, not two
            for row in self.ledger.outbox_of_shipments(ids):
                stored.setdefault(row.shipment_id, {})[(row.ci_lineitemid, row.tracking)] = row
            for c in self.ledger.closed_outbox(ids):
                closed.setdefault(c.shipment_id, {})[(c.ci_lineitemid, c.tracking)] = c
        checks: list[tuple[str, str, Candidate]] = []
        owners: list[_Plan] = []
        for shipment in shipments:
            plan = _Plan(shipment, _wanted(shipment))
            plans.append(plan)
            sid = shipment.shipment_id
            earlier = first_in_call.get(sid)
            if earlier is not None:
                problem = _difference(
                    sid, _contents_of(earlier.shipment), _contents_of(shipment), "in this call"
                )
                plan.reject_all(problem, duplicate=problem is None)
                continue
            first_in_call[sid] = plan
            problem = _shape_problem(shipment)
            if problem is None and (sid in stored or sid in closed):
                problem = _difference(
                    sid,
                    _stored_contents(stored.get(sid, {}), closed.get(sid, {})),
                    _contents_of(shipment),
                    "before",
                )
            if problem is not None:
                plan.reject_all(problem)
                continue
            for (lid, tracking), qty in plan.wanted.items():
                known = stored.get(sid, {}).get((lid, tracking))
                gone = closed.get(sid, {}).get((lid, tracking))
                if gone is not None:
                    plan.results[(lid, tracking)] = _closed_result(gone)
                elif known is None or known.state == "held":
                    checks.append(
                        (shipment.courier, shipment.service, Candidate(lid, tracking, qty))
                    )
                    owners.append(plan)
                else:
                    plan.results[(lid, tracking)] = _known_result(known)
        return self.preflight.check_many(checks), owners, stored

    def _store(
        self,
        owners: list[_Plan],
        verdicts: list[Verdict],
        stored: dict[str, dict[tuple[int, str], OutboxRow]],
        now: datetime,
        lease_seconds: float,
    ) -> tuple[list[OutboxRow], set[int]]:
        """Write every checked candidate to the outbox, in the caller's transaction (the one
        of the reads the checks made); rows that pass are written as ``sending`` (attempt
        counted) since they are sent right after the commit. Returns the rows to send and
        the ids of those inserted already claimed."""
        out: list[OutboxRow | int] = []  # a row, or the index of a new row in ``fresh``
        fresh: list[dict[str, object]] = []
        if not verdicts:
            return [], set()
        for plan, v in zip(owners, verdicts, strict=True):
            shipment = plan.shipment
            cand = v.candidate
            key = (cand.ci_lineitemid, cand.tracking)
            endpoint = self._endpoint(v) if v.ok else None
            state = "sending" if v.ok else "held"
            old = stored.get(shipment.shipment_id, {}).get(key)
            attempts = (old.attempts if old is not None else 0) + (1 if v.ok else 0)
            if old is not None:
                self.ledger.update_outbox(
                    old.id,
                    now,
                    state=state,
                    attempts=attempts,
                    hold_kind=None if v.ok else v.kind,
                    reason=v.warning if v.ok else v.reason,
                    carrier_code=v.carrier_code,
                    endpoint=endpoint,
                    quantity=cand.quantity,
                    courier=shipment.courier,
                    service=shipment.service,
                    **_line_ids(v),
                )
                if v.ok:
                    out.append(self.ledger.outbox_rows(ids=[old.id])[0])
            else:
                if v.ok:
                    out.append(len(fresh))
                fresh.append(
                    {
                        "shipment_id": shipment.shipment_id,
                        "ci_lineitemid": cand.ci_lineitemid,
                        "tracking": cand.tracking,
                        "quantity": cand.quantity,
                        "orderid": v.line.orderid if v.line else "",
                        "fulfillment_lineitem_id": v.line.fulfillment_lineitem_id
                        if v.line
                        else None,
                        "courier": shipment.courier,
                        "service": shipment.service,
                        "carrier_code": v.carrier_code,
                        "endpoint": endpoint,
                        "state": state,
                        "hold_kind": None if v.ok else v.kind,
                        "reason": v.warning if v.ok else v.reason,
                        "attempts": attempts,
                    }
                )
            if not v.ok:
                plan.results[key] = LineResult(
                    cand.ci_lineitemid, LineOutcome.HELD, v.reason, cand.tracking
                )
        # New rows in one statement (same transaction: the checks above saw no new row).
        inserted, claimed = self.ledger.insert_outbox_claimed(fresh, now, lease_seconds)
        return [inserted[r] if isinstance(r, int) else r for r in out], claimed

    # -- hold lifecycle -------------------------------------------------------------------------

    def settle_holds(self, now: datetime | None = None) -> int:
        """Close held or CI-rejected rows whose line is fully shipped or cancelled
        (``superseded``); returns how many were closed."""
        rows = self.ledger.settled_holds()
        if rows:
            self.ledger.close_outbox(
                rows, "superseded", "line fully shipped or cancelled", now or self.clock()
            )
            log.info("account %s: %d settled hold(s) superseded", self.account.name, len(rows))
        return len(rows)

    def void_shipment(self, shipment_id: str, reason: str) -> VoidResult:
        """Withdraw what of a shipment was not sent yet (see ``oms_void_shipment``)."""
        now = self.clock()
        rows = self.ledger.outbox_of_shipments([shipment_id])
        if not rows:
            known = bool(self.ledger.closed_outbox([shipment_id]))
            return VoidResult(shipment_id, found=known)
        withdraw = [r for r in rows if r.state in ("held", "rejected", "pending", "retry")]
        sent = [r for r in rows if r.state in ("accepted", "manual")]
        flying = [r for r in rows if r.state == "sending"]
        note = reason or "withdrawn by the host"
        self.ledger.close_outbox(withdraw, "voided", note, now)

        def results(rs: list[OutboxRow], outcome: LineOutcome, why: str) -> tuple[LineResult, ...]:
            return tuple(
                LineResult(r.ci_lineitemid, outcome, why, r.tracking, shipment_id) for r in rs
            )

        return VoidResult(
            shipment_id,
            withdrawn=results(withdraw, LineOutcome.ACCEPTED, f"withdrawn: {note}"),
            already_sent=results(
                sent,
                LineOutcome.REJECTED,
                "already sent to CI: tracking cannot be withdrawn through the API",
            ),
            in_flight=results(flying, LineOutcome.QUEUED, "being sent now: void again later"),
        )

    def dismiss(self, row_ids: Sequence[int], reason: str) -> list[OutboxRow]:
        """Close held or CI-rejected rows on an operator's word (``ci-connector held``)."""
        if not reason.strip():
            raise ValueError("a reason is required to dismiss a held dispatch")
        rows = [r for r in self.ledger.outbox_rows(ids=row_ids) if r.state in ("held", "rejected")]
        self.ledger.close_outbox(rows, "dismissed", reason.strip(), self.clock())
        return rows

    def retry_held(self, row_ids: Sequence[int]) -> list[LineResult]:
        """Re-check held or CI-rejected rows now and send those that pass."""
        now = self.clock()
        rows = [r for r in self.ledger.outbox_rows(ids=row_ids) if r.state in ("held", "rejected")]
        results = self._recheck(rows, now)
        due = [r for r in self.ledger.outbox_rows(ids=[r.id for r in rows]) if r.state == "pending"]
        claimed = self.ledger.claim_outbox(due, now, self.account.options.lease_seconds)
        try:
            return results + self._send(claimed, now)
        except BaseException:
            self.ledger.release_outbox(r.id for r in claimed)
            raise

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

    def flush(self, *, force: bool = False) -> list[LineResult]:
        """Send due rows: pending, left ``sending`` by a crash, ``retry`` whose time has come
        (every ``retry`` row when ``force``), and held rows that can now pass: courier holds
        whose mapping is fixed and holds that waited for the host's acknowledgement."""
        now = self.clock()
        self.settle_holds(now)
        due = self._repair_line_ids(
            [
                r
                for r in self.ledger.outbox_rows(states=("pending", "sending", "retry"))
                if force
                or r.state != "retry"
                or r.next_attempt_at is None
                or r.next_attempt_at <= now
            ],
            now,
        )
        results = self._release_holds(now, due)
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

    def _release_holds(self, now: datetime, due: list[OutboxRow]) -> list[LineResult]:
        """Re-check held rows that may pass now; those that do join ``due``."""
        held = self.ledger.outbox_rows(states=("held",))
        awaiting = [r for r in held if _awaits_host(r)]
        confirmed = {
            lid
            for lid, line in self.ledger.get_lines(
                (r.ci_lineitemid for r in awaiting), light=True
            ).items()
            if line.state in ("stored", "acked", "cancelled")
        }
        mapped: dict[tuple[str, str], bool] = {}
        chosen: list[OutboxRow] = []
        for row in held:
            if _awaits_host(row):
                if row.ci_lineitemid in confirmed:
                    chosen.append(row)
            elif row.hold_kind is HoldKind.UNMAPPED_COURIER:
                key = (row.courier, row.service)
                if key not in mapped:
                    mapped[key] = self.preflight.carrier_for(*key)[0] is not None
                if mapped[key]:
                    chosen.append(row)
        results = self._recheck(chosen, now)
        if chosen:
            ids = [r.id for r in chosen]
            due += [r for r in self.ledger.outbox_rows(ids=ids) if r.state == "pending"]
        return results

    def _recheck(self, rows: list[OutboxRow], now: datetime) -> list[LineResult]:
        """Run pre-flight again over held rows (one pass): passing rows become ``pending``;
        the others keep (or change) their hold and are reported ``held``."""
        if not rows:
            return []
        verdicts = self.preflight.check_many(
            [
                (r.courier, r.service, Candidate(r.ci_lineitemid, r.tracking, r.quantity))
                for r in rows
            ]
        )
        results: list[LineResult] = []
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
                else:
                    self.ledger.update_outbox(
                        row.id, now, state="held", hold_kind=v.kind, reason=v.reason
                    )
                    results.append(
                        LineResult(
                            row.ci_lineitemid,
                            LineOutcome.HELD,
                            v.reason,
                            row.tracking,
                            row.shipment_id,
                        )
                    )
        return results

    # -- sending ------------------------------------------------------------------------------

    def _send(
        self, rows: Sequence[OutboxRow], now: datetime, *, premarked: bool = False
    ) -> list[LineResult]:
        """Send ``rows`` in batches per endpoint, then record every acceptance in one commit.
        ``premarked``: the rows were written as ``sending`` (attempt counted) in the commit
        just before, so no second commit. A crash before the acceptance commit leaves rows
        ``sending``: the next flush re-sends them and CI treats an identical re-send as a
        no-op."""
        sender = _Sender(self, now, premarked=premarked)
        try:
            sender.add(rows, more=False)
            return sender.finish()
        except BaseException:
            sender.close(abort=True)
            raise

    def _send_batch(
        self,
        endpoint: str,
        rows: list[OutboxRow],
        now: datetime,
        accepted: list[OutboxRow],
        *,
        premarked: bool = False,
        call: Future[None] | None = None,
    ) -> list[LineResult]:
        if not premarked:
            with self.ledger.transaction():
                for r in rows:
                    self.ledger.update_outbox(r.id, now, state="sending", attempts=r.attempts + 1)
        try:
            if call is None:
                self._call(endpoint, rows)
            else:
                call.result()  # made on a worker thread; its exception is raised here
        except CIAuthError as exc:
            return self._retry(
                rows, f"CI refused the credentials: {exc.reason}", now, counted=premarked
            )
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
                results += self._send_batch(endpoint, [fresh], now, accepted)
            return results
        except CIError as exc:
            return self._retry(rows, f"CI unreachable, will retry: {exc}", now, counted=premarked)
        crashpoint("tracking_sent")
        accepted += rows
        log.info("account %s: %s accepted %d row(s)", self.account.name, endpoint, len(rows))
        return [
            LineResult(r.ci_lineitemid, LineOutcome.ACCEPTED, "", r.tracking, r.shipment_id)
            for r in rows
        ]

    def _call(self, endpoint: str, rows: list[OutboxRow]) -> None:
        self._request(endpoint, rows)()

    def _request(self, endpoint: str, rows: list[OutboxRow]) -> Callable[[], None]:
        """The call for ``rows``, built here (it reads the ledger), made when called."""
        if endpoint == PARTIAL_ENDPOINT:
            elements = [
                LineitemTrackingItem(
                    fulfillment_lineitem_id=r.fulfillment_lineitem_id or "",
                    carrier=r.carrier_code or "",
                    tracking=r.tracking,
                    quantity=r.quantity,
                )
                for r in rows
            ]
            return lambda: self.client.lineitem_tracking_notification(elements)
        ordered = {r.ci_lineitemid: self._ordered[r.ci_lineitemid] for r in rows
                   if r.ci_lineitemid in self._ordered}  # fmt: skip
        missing = [r.ci_lineitemid for r in rows if r.ci_lineitemid not in ordered]
        if missing:
            ordered.update(self.ledger.line_quantities(missing))
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
        return lambda: self.client.tracking_notification(items)

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
        return LineResult(
            row.ci_lineitemid, LineOutcome.REJECTED, text, row.tracking, row.shipment_id
        )

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
        return LineResult(row.ci_lineitemid, LineOutcome.HELD, text, row.tracking, row.shipment_id)

    def _retry(
        self, rows: list[OutboxRow], reason: str, now: datetime, *, counted: bool = False
    ) -> list[LineResult]:
        """Park ``rows`` for a later attempt. ``counted``: their ``attempts`` already include
        this attempt (premarked rows); otherwise the ledger holds one more than they say."""
        when = {r.id: now + retry_delay(r.attempts + (0 if counted else 1)) for r in rows}
        with self.ledger.transaction():
            for r in rows:
                self.ledger.update_outbox(
                    r.id, now, state="retry", reason=reason, next_attempt_at=when[r.id]
                )
        return [
            LineResult(
                r.ci_lineitemid, LineOutcome.QUEUED, reason, r.tracking, r.shipment_id, when[r.id]
            )
            for r in rows
        ]


class _Sender:
    """Sends claimed outbox rows for one dispatcher call: batches per endpoint,
    ``tracking_batch_size`` rows a call, and records what CI accepted (:meth:`finish`).

    With overlap (premarked rows, ``ack_concurrency`` > 1, a client that allows calls from
    several threads), up to ``ack_concurrency`` calls are in flight on worker threads, which
    only make the HTTP call: requests are built, and outcomes taken and written, on the
    calling thread in the order the calls were made. :meth:`add` with ``more`` sends the full
    batches at once, while the caller prepares more rows; the rest go at :meth:`finish`. A
    single call is made on the calling thread (no thread started for it)."""

    def __init__(self, dispatcher: Dispatcher, now: datetime, *, premarked: bool) -> None:
        options = dispatcher.account.options
        self.dispatcher = dispatcher
        self.now = now
        self.premarked = premarked
        self.batch_size = max(1, options.tracking_batch_size)
        self.workers = options.ack_concurrency
        self.overlaps = premarked and self.workers > 1 and runs_concurrently(dispatcher.client)
        #: Every row handed over (a caller that fails releases their claims).
        self.rows: list[OutboxRow] = []
        self._waiting: dict[str, list[OutboxRow]] = {FULL_LINE_ENDPOINT: [], PARTIAL_ENDPOINT: []}
        self._calls: deque[tuple[str, list[OutboxRow], Future[None]]] = deque()
        self._pool: CallPool | None = None
        self._results: list[LineResult] = []
        self._accepted: list[OutboxRow] = []

    def add(self, rows: Sequence[OutboxRow], *, more: bool) -> None:
        """Take ``rows`` (claimed, committed); with ``more`` (and overlap) send the full
        batches now and take the outcomes of the calls already answered."""
        self.rows += rows
        for r in rows:
            self._waiting[r.endpoint or FULL_LINE_ENDPOINT].append(r)
        if not (more and self.overlaps):
            return
        size = self.batch_size
        for endpoint, group in self._waiting.items():
            while len(group) >= size:
                self._submit(endpoint, group[:size])
                del group[:size]
        while self._calls and self._calls[0][2].done():
            self._take()

    def finish(self) -> list[LineResult]:
        """Send what is left, take every outcome, record the acceptances: in one commit, or
        with calls in flight also while waiting for an answer (time the calling thread would
        otherwise spend idle; those commits are not fsync'd either)."""
        size = self.batch_size
        batches = [
            (endpoint, group[i : i + size])
            for endpoint, group in self._waiting.items()
            for i in range(0, len(group), size)
        ]
        for group in self._waiting.values():
            group.clear()
        if self.overlaps and (self._calls or len(batches) > 1):
            for endpoint, batch in batches:
                self._submit(endpoint, batch)
            while self._calls:
                if self._accepted and not self._calls[0][2].done():
                    self._record()
                self._take()
            self.close()
        else:
            d = self.dispatcher
            for endpoint, batch in batches:
                self._results += d._send_batch(
                    endpoint, batch, self.now, self._accepted, premarked=self.premarked
                )
        if self._accepted:
            self._record()
        return self._results

    def start(self) -> None:
        """Start the worker threads now, before the first call: a thread started while the
        others make their calls waits for the GIL they hold (milliseconds a thread, measured
        in the middle of a wave), one started now does not."""
        if self.overlaps:
            self._open_pool().start()

    def close(self, *, abort: bool = False) -> None:
        """Join the worker threads; with ``abort``, cut the calls in flight short first."""
        if self._pool is not None:
            self._pool.close(abort=abort)
            self._pool = None

    def _open_pool(self) -> CallPool:
        if self._pool is None:
            client = self.dispatcher.client
            self._pool = CallPool(self.workers, thread_setup(client), "ci-tracking")
        return self._pool

    def _submit(self, endpoint: str, batch: list[OutboxRow]) -> None:
        call = self._open_pool().submit(self.dispatcher._request(endpoint, batch))
        self._calls.append((endpoint, batch, call))

    def _record(self) -> None:
        """Record what CI accepted so far (one commit, see
        :meth:`~connector.ledger.Ledger.record_tracking_accepted`)."""
        rows = [(r.id, r.ci_lineitemid, r.quantity) for r in self._accepted]
        self.dispatcher.ledger.record_tracking_accepted(rows, self.now)
        self._accepted = []
        crashpoint("tracking_recorded")

    def _take(self) -> None:
        """The outcome of the oldest call (waiting for it), written on this thread."""
        endpoint, batch, call = self._calls.popleft()
        self._results += self.dispatcher._send_batch(
            endpoint, batch, self.now, self._accepted, premarked=True, call=call
        )


def _parts(shipments: Sequence[Shipment], small: int, large: int) -> list[Sequence[Shipment]]:
    """``shipments`` cut into parts of at least ``small`` or ``large`` items (a line in a
    parcel): the first part small (its calls go out soon), the middle ones large (fewer
    commits), the last ones small again (less left to send once every part is stored); the
    very last part may have fewer.

    A cut falls only between shipments, and only where no line and no tracking number has
    items on both sides: pre-flight's checks across candidates (quantity still open, one
    address per tracking number) then see in one part everything they would see in the
    whole call, and the six-numbers-per-order check sees earlier parts' rows in the ledger
    as it would have seen them in memory."""
    last: dict[object, int] = {}  # a line id or tracking number -> its last shipment
    left = 0  # items not in a part yet
    for i, shipment in enumerate(shipments):
        for parcel in shipment.parcels:
            last[parcel.tracking_number.strip()] = i
            left += len(parcel.lines)
            for item in parcel.lines:
                last[item.ci_lineitemid] = i
    parts: list[Sequence[Shipment]] = []
    start = count = reach = 0
    target = small
    for i, shipment in enumerate(shipments):
        for parcel in shipment.parcels:
            reach = max(reach, last[parcel.tracking_number.strip()])
            for item in parcel.lines:
                reach = max(reach, last[item.ci_lineitemid])
            count += len(parcel.lines)
        if count >= target and reach <= i:
            parts.append(shipments[start : i + 1])
            start, left, count = i + 1, left - count, 0
            target = large if left > large + small else small
    if start < len(shipments):
        parts.append(shipments[start:])
    return parts


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
    sid = row.shipment_id
    if row.state == "accepted":
        return LineResult(
            row.ci_lineitemid, LineOutcome.ALREADY_DONE, "already accepted by CI", row.tracking, sid
        )
    if row.state == "rejected":
        return LineResult(row.ci_lineitemid, LineOutcome.REJECTED, row.reason, row.tracking, sid)
    if row.state == "manual":
        # Handed to the manual upload file: the API must not send it too.
        return LineResult(
            row.ci_lineitemid,
            LineOutcome.ALREADY_DONE,
            f"handed to the manual tracking upload ({row.reason})",
            row.tracking,
            sid,
        )
    return LineResult(
        row.ci_lineitemid,
        LineOutcome.QUEUED,
        row.reason or "queued: sent by oms_flush_outbox",
        row.tracking,
        sid,
        row.next_attempt_at if row.state == "retry" else None,
    )


def _closed_result(row: ClosedOutboxRow) -> LineResult:
    """What a re-sent shipment reports for a row closed before (never sent)."""
    if row.why == "superseded":
        return LineResult(
            row.ci_lineitemid,
            LineOutcome.ALREADY_DONE,
            f"superseded: the line was fully shipped or cancelled by other means ({row.note})",
            row.tracking,
            row.shipment_id,
        )
    return LineResult(
        row.ci_lineitemid,
        LineOutcome.REJECTED,
        f"{row.why} ({row.note}): not sent; dispatch under a new shipment_id",
        row.tracking,
        row.shipment_id,
    )


Contents = tuple[str, str, dict[tuple[int, str], int]]
"""A shipment's identity: courier, service, and quantity per (line, tracking)."""


def _wanted(shipment: Shipment) -> dict[tuple[int, str], int]:
    wanted: dict[tuple[int, str], int] = {}
    for parcel in shipment.parcels:
        for item in parcel.lines:
            key = (item.ci_lineitemid, parcel.tracking_number.strip())
            wanted[key] = wanted.get(key, 0) + item.quantity
    return wanted


def _contents_of(shipment: Shipment) -> Contents:
    return (shipment.courier, shipment.service, _wanted(shipment))


def _stored_contents(
    rows: dict[tuple[int, str], OutboxRow], closed: dict[tuple[int, str], ClosedOutboxRow]
) -> Contents:
    every: list[OutboxRow | ClosedOutboxRow] = [*rows.values(), *closed.values()]
    first = min(every, key=lambda r: r.id)
    quantities = {k: c.quantity for k, c in closed.items()}
    quantities.update({k: r.quantity for k, r in rows.items()})
    return (first.courier, first.service, quantities)


def _difference(sid: str, before: Contents, now: Contents, when: str) -> str | None:
    """Why ``now`` is not the shipment ``sid`` sent ``when``, or ``None`` if it is."""
    diffs: list[str] = []
    if before[0] != now[0]:
        diffs.append(f"courier {now[0]!r} (was {before[0]!r})")
    if before[1] != now[1]:
        diffs.append(f"service {now[1]!r} (was {before[1]!r})")
    old, new = before[2], now[2]
    for key in sorted(set(old) | set(new)):
        lid, tracking = key
        if key not in old:
            diffs.append(f"line {lid} tracking {tracking!r} is new")
        elif key not in new:
            diffs.append(f"line {lid} tracking {tracking!r} is missing")
        elif old[key] != new[key]:
            diffs.append(f"line {lid} tracking {tracking!r} quantity {new[key]} (was {old[key]})")
    if not diffs:
        return None
    return (
        f"shipment_id {sid!r} was dispatched {when} with other contents: "
        + "; ".join(diffs)
        + ". Nothing was sent: use a new shipment_id for a different shipment"
    )


def _shape_problem(shipment: Shipment) -> str | None:
    if not isinstance(shipment.shipment_id, str) or not shipment.shipment_id.strip():
        return f"shipment_id {shipment.shipment_id!r} is empty"
    if not shipment.parcels or not any(p.lines for p in shipment.parcels):
        return f"shipment {shipment.shipment_id!r} has no lines"
    return None


def _awaits_host(row: OutboxRow) -> bool:
    """A held row that waits for the line to be imported and acknowledged (rows held by an
    older version carry the reason only)."""
    return row.hold_kind is HoldKind.AWAITING_HOST or (
        row.hold_kind is HoldKind.PREFLIGHT and "oms_mark_exported first" in row.reason
    )


class _Plan:
    """One shipment of a dispatch call: what it wants and the results known so far."""

    def __init__(self, shipment: Shipment, wanted: dict[tuple[int, str], int]) -> None:
        self.shipment = shipment
        self.wanted = wanted
        self.results: dict[tuple[int, str], LineResult] = {}

    def reject_all(self, problem: str | None, *, duplicate: bool = False) -> None:
        for lid, tracking in self.wanted:
            if duplicate:
                result = LineResult(
                    lid,
                    LineOutcome.ALREADY_DONE,
                    "the same shipment appears earlier in this call",
                    tracking,
                )
            else:
                result = LineResult(lid, LineOutcome.REJECTED, problem or "", tracking)
            self.results[(lid, tracking)] = result
