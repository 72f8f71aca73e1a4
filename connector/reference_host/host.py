"""The reference host: one sync cycle and one dispatch, done in the order the contract asks.

``sync`` is, for each import batch while the plugin says ``more``: import (nothing
acknowledged yet) -> store in one transaction (commit) -> ``mark_exported`` with the receipts
of what committed -> record held lines and cancellations; then flush the outbox once.
The host talks to plugins only through :class:`ChannelFacade`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from connector.crashpoints import crashpoint
from connector.errors import ChannelError
from connector.models import (
    Account,
    CarrierEvent,
    ImportBatch,
    LineOutcome,
    LineResult,
    Shipment,
    VoidResult,
)
from connector.reference_host.facade import ChannelFacade, NoChannelPlugin
from connector.reference_host.store import AcceptPolicy, HostStore, ShipmentConflict
from connector.secrets import redact

__all__ = ["HOST_DB_NAME", "SYNC_STAGES", "ReferenceHost", "SyncReport"]

HOST_DB_NAME = "reference-host.sqlite3"
"""File name of the reference host's database inside the config's ``data_dir``."""

SYNC_STAGES = ("import", "store", "mark_exported", "notices", "flush")
"""The stages of one sync, in order; the progress callback receives each name when it is done."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _count(results: list[LineResult], outcome: LineOutcome) -> int:
    return sum(1 for r in results if r.outcome is outcome)


@dataclass
class SyncReport:
    """What one :meth:`ReferenceHost.sync` did for one account.

    Orders and lines: ``orders_imported``/``lines_imported`` came from the channel;
    ``orders_new`` were inserted, ``orders_already_stored`` were replays; ``orders_refused``
    were refused by the host's accept policy (never acknowledged).
    Acknowledgements: ``lines_marked_exported`` accepted by the channel now, ``already_done``,
    ``ack_queued`` (retried by the outbox), ``ack_rejected``.
    Notices: ``held`` lines reported by the plugin (``held_new`` first seen now);
    ``cancellations`` reported, ``cancellations_applied``, ``cancellation_conflicts``.
    Outbox: ``redispatched`` shipments the host recorded but the plugin never took (the host
    stopped in between) sent again; ``retried`` lines attempted by the flush, ``retried_ok``
    accepted, of which ``dispatched`` carried tracking; ``still_queued`` remain queued.
    ``errors`` lists failures after the commit (the sync carried on).
    ``chunks``: import batches handled (the plugin hands over at most
    ``max_orders_per_import`` orders per batch; every count above sums the batches, except
    ``held``, the plugin's current list as of the last batch).
    ``transport_retries``: what the channel's client retried during this sync, per reason
    (``503``, ``429``, ``ConnectionError``, ``ReadTimeout``, ``protocol``, ...).
    """

    account: str
    orders_imported: int = 0
    lines_imported: int = 0
    orders_new: int = 0
    orders_already_stored: int = 0
    orders_refused: int = 0
    lines_marked_exported: int = 0
    already_done: int = 0
    ack_queued: int = 0
    ack_rejected: int = 0
    held: int = 0
    held_new: int = 0
    cancellations: int = 0
    cancellations_applied: int = 0
    cancellation_conflicts: int = 0
    redispatched: int = 0
    retried: int = 0
    retried_ok: int = 0
    dispatched: int = 0
    still_queued: int = 0
    duration_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    chunks: int = 0
    transport_retries: dict[str, int] = field(default_factory=dict)
    waiting: list[dict[str, str]] = field(default_factory=list)
    """Lines waiting on the import delay (last batch): line, order, until, reason."""

    @property
    def ok(self) -> bool:
        """``True`` when every stage ran without an error."""
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict of every count, plus ``ok``."""
        data = asdict(self)
        data["duration_seconds"] = round(self.duration_seconds, 3)
        data["ok"] = self.ok
        return data


class ReferenceHost:
    """A small but correct host OMS over a SQLite database.

    :param db_path: the host database file (created if missing).
    :param facade: the typed hook facade of a loaded plugin manager.
    :param accept: optional policy to refuse orders (``False`` or a reason string refuses).
    :param clock: the host's clock (aware UTC), for notices and timestamps.
    """

    def __init__(
        self,
        db_path: Path | str,
        facade: ChannelFacade,
        *,
        accept: AcceptPolicy | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.facade = facade
        self.accept = accept
        self.clock = clock
        self.store = HostStore(db_path, clock=clock)

    def close(self) -> None:
        """Close the host database."""
        self.store.close()

    def __enter__(self) -> ReferenceHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sync(
        self, account: Account, *, progress: Callable[[str], None] | None = None
    ) -> SyncReport:
        """Run one import cycle for ``account`` and report what happened.

        :raises connector.errors.ChannelError: the import itself failed (nothing was stored
            or acknowledged), or no plugin owns the account's channel.
        :raises connector.reference_host.store.HostStoreError: the host database failed
            before anything was acknowledged.
        """
        started = time.monotonic()
        step = progress or (lambda _stage: None)
        report = SyncReport(account=account.name)
        stats_before = self._stats(account)

        # Chunked import: each batch is stored, acknowledged and its notices recorded before
        # the next one is asked for ("call again while more"), so memory stays bounded.
        while True:
            batch = self.facade.import_orders(account=account)
            self._sync_chunk(account, batch, report, step)
            if not batch.more:
                break
        step("notices")

        try:
            # The host's own outbox first: shipments committed here but never handed over.
            pending = self.store.undispatched_shipments(account.name)
            if pending:  # one oms_dispatch_many call for all of them
                self.ship_many(account, pending)
                report.redispatched += len(pending)
        except ChannelError as exc:
            report.errors.append(f"dispatch: {redact(str(exc))}")
        try:
            flushed = self.facade.flush_outbox(account=account)
        except ChannelError as exc:
            report.errors.append(f"flush_outbox: {redact(str(exc))}")
        else:
            report.retried = len(flushed)
            accepted = [r for r in flushed if r.outcome is LineOutcome.ACCEPTED]
            report.retried_ok = len(accepted)
            report.dispatched = sum(1 for r in accepted if r.tracking_number is not None)
            report.still_queued = _count(flushed, LineOutcome.QUEUED)
        step("flush")

        report.transport_retries = _retries_since(stats_before, self._stats(account))
        report.duration_seconds = time.monotonic() - started
        return report

    def _stats(self, account: Account) -> dict[str, int]:
        """The channel's counters; a plugin predating ``oms_channel_stats`` (no answer) is
        reported as keeping none, explicitly here rather than hidden in the facade."""
        try:
            return self.facade.channel_stats(account=account)
        except NoChannelPlugin as exc:
            if exc.hook != "oms_channel_stats":
                raise
            return {}

    def _sync_chunk(
        self,
        account: Account,
        batch: ImportBatch,
        report: SyncReport,
        step: Callable[[str], None],
    ) -> None:
        """Store, acknowledge and record the notices of one import batch (sums into report)."""
        report.orders_imported += len(batch.orders)
        report.lines_imported += sum(len(o.lines) for o in batch.orders)
        if not report.chunks:
            step("import")
        report.chunks += 1

        # Commit first: only what is durably stored may be acknowledged.
        outcome = self.store.store_batch(account.name, batch.orders, accept=self.accept)
        crashpoint("after_store")
        report.orders_new += outcome.new_orders
        report.orders_already_stored += outcome.existing_orders
        report.orders_refused += len(outcome.refused)
        if report.chunks == 1:
            step("store")

        if outcome.stored:
            try:
                acks = self.facade.mark_exported(account=account, stored=outcome.stored)
            except ChannelError as exc:
                # Stored but not acknowledged: the channel offers these orders again, and the
                # idempotent store turns that into a replay.
                report.errors.append(f"mark_exported: {redact(str(exc))}")
            else:
                report.lines_marked_exported += _count(acks, LineOutcome.ACCEPTED)
                report.already_done += _count(acks, LineOutcome.ALREADY_DONE)
                report.ack_queued += _count(acks, LineOutcome.QUEUED)
                report.ack_rejected += _count(acks, LineOutcome.REJECTED)
        if report.chunks == 1:
            step("mark_exported")

        # Held lines are the full current list in every batch: the last batch's count wins.
        report.held = len(batch.held)
        report.held_new += self.store.record_held(account.name, batch.held)
        report.waiting = [
            {
                "ci_lineitemid": str(w.ci_lineitemid),
                "orderid": w.orderid,
                "until": w.until.isoformat(),
                "reason": w.reason,
            }
            for w in batch.waiting
        ]
        report.cancellations += len(batch.cancellations)
        cancels = self.store.apply_cancellations(account.name, batch.cancellations)
        report.cancellations_applied += cancels.cancelled
        report.cancellation_conflicts += len(cancels.conflicts)
        if batch.cancellations:
            # Committed above (applied or recorded as a conflict): now the plugin may stop
            # reporting them. A crash before this line only means they are reported again.
            try:
                self.facade.confirm_cancellations(
                    account=account,
                    ci_lineitemids=[c.ci_lineitemid for c in batch.cancellations],
                )
            except ChannelError as exc:
                report.errors.append(f"confirm_cancellations: {redact(str(exc))}")

    def ship(self, account: Account, shipment: Shipment) -> list[LineResult]:
        """Record ``shipment`` in the host (committed), then send it through the plugin.

        Lines the plugin holds or CI rejects are kept as ``dispatch_<outcome>`` notices for the
        operator. Sending the same shipment again is safe on both sides. The shipment stays
        marked undispatched until the plugin returned, so if the host stops in between, the
        next :meth:`sync` sends it again.
        """
        try:
            self.store.create_shipment(account.name, shipment)
        except ShipmentConflict as exc:
            # The id is taken by another shipment: refuse it here, never send it.
            return _refused(shipment, str(exc))
        crashpoint("host_shipment")
        results = self.facade.dispatch(account=account, shipment=shipment)
        self._note_problems(account, results)
        self.store.mark_dispatched(account.name, shipment.shipment_id)
        return results

    def ship_many(self, account: Account, shipments: Sequence[Shipment]) -> list[LineResult]:
        """Record many shipments, then send them through ``oms_dispatch_many`` in one call
        (the outbox committed before any call, tracking packed into as few CI calls as
        allowed). A shipment whose id the host already used for other contents is refused
        and not sent.

        .. versionadded:: 0.2.0
        """
        accepted, conflicts = self.store.create_shipments(account.name, shipments)
        refused = [r for shipment, why in conflicts for r in _refused(shipment, why)]
        crashpoint("host_shipment")
        results = self._dispatch_many(account, accepted) if accepted else []
        self._note_problems(account, results)
        self.store.mark_many_dispatched(account.name, [s.shipment_id for s in accepted])
        return refused + results

    def _dispatch_many(self, account: Account, shipments: list[Shipment]) -> list[LineResult]:
        """``oms_dispatch_many``; a channel plugin older than the hook (no answer) gets one
        ``oms_dispatch`` per shipment instead."""
        try:
            return self.facade.dispatch_many(account=account, shipments=shipments)
        except NoChannelPlugin as exc:
            if exc.hook != "oms_dispatch_many":
                raise
        return [r for s in shipments for r in self.facade.dispatch(account=account, shipment=s)]

    def void(self, account: Account, shipment_id: str, reason: str) -> VoidResult:
        """Withdraw a shipment from the channel (``oms_void_shipment``).

        .. versionadded:: 0.2.0
        """
        return self.facade.void_shipment(account=account, shipment_id=shipment_id, reason=reason)

    def _note_problems(self, account: Account, results: Sequence[LineResult]) -> None:
        # One transaction for all of them (a wave may hold or reject hundreds of lines).
        self.store.record_notices(
            account.name,
            [
                (f"dispatch_{r.outcome.value}", r.reason, r.ci_lineitemid)
                for r in results
                if r.outcome in (LineOutcome.HELD, LineOutcome.REJECTED)
            ],
        )

    def report_carrier_events(
        self, account: Account, events: Sequence[CarrierEvent]
    ) -> list[LineResult]:
        """Forward what the host's carrier tracking saw (scans, deliveries) to the channel, so
        its SLA clock and threshold guard can use them. Safe to repeat: a re-sent event is
        ``already_done``. Rejected events (unknown line, naive time) are returned, not stored.
        """
        return self.facade.report_carrier_events(account=account, events=events)


def _refused(shipment: Shipment, reason: str) -> list[LineResult]:
    """One ``rejected`` result per (line, parcel) of a shipment the host refused to send."""
    return [
        LineResult(
            item.ci_lineitemid,
            LineOutcome.REJECTED,
            reason,
            parcel.tracking_number,
            shipment.shipment_id,
        )
        for parcel in shipment.parcels
        for item in parcel.lines
    ]


def _retries_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """``retries:<reason>`` counters that grew between two readings, by reason."""
    grown = {
        key.partition(":")[2]: count - before.get(key, 0)
        for key, count in after.items()
        if key.startswith("retries:") and count > before.get(key, 0)
    }
    return dict(sorted(grown.items()))
