"""Import pipeline: fetch every page -> stage in the ledger -> group by orderid -> aliases ->
:class:`~connector.models.ImportBatch`; then acknowledgements after the host stored orders.

Invariants (see ``docs/engine.md``):

* Nothing changes before every page was read; a failed read stages nothing.
* A line is acknowledged in CI only after the host confirmed it (``mark_exported``), and the
  binding is committed before the CI call, so a crash between the two re-acks on the next run
  instead of re-delivering.
* A line handed to the host but not confirmed is handed over again (the host dedupes).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from connector.ci.schemas import ParsedRecord, RecordProblem, parse_record
from connector.crashpoints import crashpoint
from connector.errors import CIAuthError, CIBusinessError, CIError
from connector.ledger import Ledger, LineRow
from connector.mappings import Mappings
from connector.models import (
    Account,
    Cancellation,
    HoldKind,
    ImportBatch,
    LineOutcome,
    LineResult,
    Order,
    OrderLine,
    SkuComponent,
    StoredOrder,
)

__all__ = [
    "CANCELLED_STATUSES",
    "WATCH_DAYS",
    "Importer",
    "OrdersClient",
    "OrdersPageLike",
    "fallback_ship_by",
    "split_windows",
]

log = logging.getLogger("connector.importer")

CANCELLED_STATUSES = frozenset({"cancelled", "canceled"})
"""CI line statuses that mean Groupon cancelled the line (assumed spelling, ci-api.md §5.7)."""

WATCH_DAYS = 30
"""How far back open lines are re-read for cancellations (auto-cancel comes after 7/14 BD)."""

_UNCONFIRMED = ("staged", "held", "delivered")


class OrdersPageLike(Protocol):
    """What the importer reads from one ``get_orders`` page."""

    @property
    def records(self) -> list[dict[str, Any]]: ...


class OrdersClient(Protocol):
    """The part of :class:`connector.ci.client.CIClient` the importer uses."""

    def fetch_all(
        self, window: tuple[datetime, datetime] | None = None
    ) -> Sequence[OrdersPageLike]: ...

    def mark_exported(self, ci_lineitemids: Sequence[int]) -> None: ...


def fallback_ship_by(order_date: datetime) -> datetime:
    """SLA fallback when CI sends no ``ship_by_date``: order time + 1 business day.

    A plain weekday rule (no holidays, no cut-off); ``connector.ops`` refines the SLA clock.
    """
    due = order_date + timedelta(days=1)
    while due.weekday() >= 5:
        due += timedelta(days=1)
    return due


def split_windows(start: datetime, end: datetime, hours: int) -> list[tuple[datetime, datetime]]:
    """Cut ``[start, end)`` into consecutive windows of at most ``hours`` (< 24: CI's limit)."""
    width = timedelta(hours=max(1, min(hours, 23)))
    windows = []
    cursor = start
    while cursor < end:
        stop = min(cursor + width, end)
        windows.append((cursor, stop))
        cursor = stop
    return windows


def _record_key(raw: Mapping[str, Any]) -> str:
    text = json.dumps(raw, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Importer:
    """Import and acknowledgement for one account. Stateless between calls: all state is
    in the ledger; ``mappings`` is the table set loaded for this cycle."""

    def __init__(
        self,
        account: Account,
        client: OrdersClient,
        ledger: Ledger,
        mappings: Mappings,
        clock: Callable[[], datetime],
    ) -> None:
        self.account = account
        self.client = client
        self.ledger = ledger
        self.mappings = mappings
        self.clock = clock
        self.options = account.options

    # -- import -------------------------------------------------------------------------------

    def import_orders(self) -> ImportBatch:
        """Steps 1-4 and 6 of the pipeline; see the module docstring."""
        now = self.clock()
        records, windows_read, window_end = self._fetch(now)
        # Records parsed while staging are reused by the evaluation (parsing is the costly part).
        parsed: dict[str, ParsedRecord | RecordProblem] = {}
        self._stage(records, now, parsed)
        crashpoint("after_stage")
        if self.options.window_mode and window_end is not None:
            # Only after staging committed: a crash before this re-reads the same windows.
            self.ledger.set_watermark(window_end)
        log.info(
            "account %s: read %d record(s) in %d window(s)",
            self.account.name,
            len(records),
            windows_read,
        )
        orders = self._evaluate(now, parsed)
        crashpoint("after_deliver")
        if self.options.mark_exported:
            self.flush_acks()
        cancellations = self._take_cancellations(now)
        held = tuple(self.ledger.held_lines(outbox=False))
        return ImportBatch(orders=tuple(orders), held=held, cancellations=cancellations)

    def _fetch(self, now: datetime) -> tuple[list[dict[str, Any]], int, datetime | None]:
        opts = self.options
        records: list[dict[str, Any]] = []
        windows: list[tuple[datetime, datetime]] = []
        window_end: datetime | None = None
        if opts.window_mode:
            watermark = self.ledger.get_watermark()
            if watermark is None:
                start = now - timedelta(hours=opts.lookback_hours)
            else:
                start = watermark - timedelta(minutes=opts.window_overlap_minutes)
            windows = split_windows(start, now, opts.window_hours)
            window_end = now
        else:
            for page in self.client.fetch_all():
                records.extend(page.records)
        if opts.watch_cancellations:
            windows += self._watch_windows(now, windows)
        for window in windows:
            for page in self.client.fetch_all(window=window):
                records.extend(page.records)
        return records, len(windows), window_end

    def _watch_windows(
        self, now: datetime, covered: list[tuple[datetime, datetime]]
    ) -> list[tuple[datetime, datetime]]:
        """Windows containing the order dates of lines the host has but that are still open
        and not fully shipped, so Groupon-side cancellations become visible."""
        horizon = now - timedelta(days=WATCH_DAYS)
        dates = sorted(
            {
                row.order_date
                for row in self.ledger.lines(("delivered", "stored", "acked"))
                if row.order_date is not None
                and row.order_date >= horizon
                and row.ci_status not in CANCELLED_STATUSES
                and row.qty_shipped < row.quantity
            }
        )
        width = timedelta(hours=max(1, min(self.options.window_hours, 23)))
        extra: list[tuple[datetime, datetime]] = []
        for when in dates:
            if any(a <= when < b for a, b in covered + extra):
                continue
            start = when.replace(second=0, microsecond=0)
            extra.append((start, min(start + width, max(now, start + timedelta(minutes=1)))))
        return extra

    def _stage(
        self,
        records: list[dict[str, Any]],
        now: datetime,
        cache: dict[str, ParsedRecord | RecordProblem] | None = None,
    ) -> None:
        seen: set[int] = set()
        problems: list[tuple[str, str | None, str]] = []
        parsed_lines: list[tuple[Mapping[str, Any], OrderLine, ParsedRecord]] = []
        bad_lines: list[tuple[Mapping[str, Any], int, str | None, str]] = []
        for raw in records:
            if cache is not None and isinstance(raw, dict):
                result = _parse_cached(raw, cache)
            else:
                result = parse_record(raw)
            if isinstance(result, RecordProblem):
                if not result.ci_lineitemids:
                    problems.append((_record_key(raw), result.orderid, result.reason))
                for lid in result.ci_lineitemids:
                    bad_lines.append((raw, lid, result.orderid, result.reason))
                continue
            for line in result.lines:
                parsed_lines.append((raw, line, result))
        known = self.ledger.get_lines(
            [ln.ci_lineitemid for _, ln, _ in parsed_lines] + [b[1] for b in bad_lines]
        )
        with self.ledger.transaction():
            for source, line, record in parsed_lines:
                if line.ci_lineitemid in seen:
                    continue  # the same line twice (even on two pages) is staged once
                seen.add(line.ci_lineitemid)
                self._stage_line(source, line, record, known.get(line.ci_lineitemid), now)
            for source, lid, orderid, reason in bad_lines:
                if lid in seen:
                    continue
                seen.add(lid)
                row = known.get(lid)
                if row is None:
                    self.ledger.stage_line(
                        ci_lineitemid=lid,
                        orderid=orderid or "",
                        now=now,
                        record=dict(source),
                        state="held",
                        hold_kind=HoldKind.INVALID_PAYLOAD,
                        hold_reason=reason,
                    )
                elif row.state in _UNCONFIRMED:
                    self.ledger.update_line(lid, now, record=dict(source))
            if self.options.window_mode:
                self.ledger.add_problems(problems, now)
            else:
                # The un-exported view lists every broken record again each time.
                self.ledger.replace_problems(problems, now)

    def _stage_line(
        self,
        raw: Mapping[str, Any],
        line: OrderLine,
        record: ParsedRecord,
        row: LineRow | None,
        now: datetime,
    ) -> None:
        status = line.status or "open"
        orderid = record.orderid
        if row is None:
            self.ledger.stage_line(
                ci_lineitemid=line.ci_lineitemid,
                orderid=orderid,
                now=now,
                fulfillment_lineitem_id=line.fulfillment_lineitem_id,
                record=dict(raw),
                order_date=record.order_date,
                ship_by=line.ship_by,
                quantity=line.quantity,
                sku=line.sku,
                bom_sku=line.bom_sku,
                ci_status=status,
            )
            return
        fields: dict[str, Any] = {}
        if row.state in _UNCONFIRMED:
            # Not yet confirmed by the host: keep the latest payload for re-evaluation.
            fields.update(
                record=dict(raw),
                orderid=orderid,
                fulfillment_lineitem_id=line.fulfillment_lineitem_id,
                order_date=record.order_date,
                ship_by=line.ship_by,
                quantity=line.quantity,
                sku=line.sku,
                bom_sku=line.bom_sku,
            )
        if status != row.ci_status:
            fields["ci_status"] = status
            if status in CANCELLED_STATUSES and row.cancel_detected_at is None:
                fields["cancel_detected_at"] = now
        if fields:
            self.ledger.update_line(line.ci_lineitemid, now, **fields)

    # -- evaluation ---------------------------------------------------------------------------

    def _evaluate(
        self, now: datetime, cache: dict[str, ParsedRecord | RecordProblem] | None = None
    ) -> list[Order]:
        orderids = self.ledger.orderids_in_states(_UNCONFIRMED)
        grouped = self.ledger.lines_of_orders(orderids)
        problem_orders = {
            h.orderid: h.reason
            for h in self.ledger.held_lines(lines=False, outbox=False)
            if h.ci_lineitemid is None and h.orderid
        }
        delay = timedelta(minutes=self.options.import_delay_minutes)
        cache = {} if cache is None else cache
        orders: list[Order] = []
        with self.ledger.transaction():
            for orderid in orderids:
                rows = grouped.get(orderid, [])
                pending = [r for r in rows if r.state in _UNCONFIRMED]
                live = []
                for row in pending:
                    if row.ci_status in CANCELLED_STATUSES and row.state != "delivered":
                        # Never handed over: nothing to tell the host, just stop tracking it.
                        self.ledger.update_line(
                            row.ci_lineitemid,
                            now,
                            state="cancelled",
                            hold_kind=None,
                            hold_reason="",
                            held_since=None,
                        )
                    elif row.ci_status not in CANCELLED_STATUSES:
                        live.append(row)
                if not live:
                    continue
                order = self._evaluate_order(
                    orderid, live, problem_orders.get(orderid), now, delay, cache
                )
                if order is not None:
                    orders.append(order)
        return orders

    def _evaluate_order(
        self,
        orderid: str,
        rows: list[LineRow],
        record_problem: str | None,
        now: datetime,
        delay: timedelta,
        cache: dict[str, ParsedRecord | RecordProblem],
    ) -> Order | None:
        parsed: dict[int, tuple[ParsedRecord, OrderLine]] = {}
        invalid: dict[int, str] = {}
        for row in rows:
            result = _parse_cached(row.record, cache)
            if isinstance(result, RecordProblem):
                invalid[row.ci_lineitemid] = result.reason
                continue
            match = [ln for ln in result.lines if ln.ci_lineitemid == row.ci_lineitemid]
            if not match:
                invalid[row.ci_lineitemid] = "the stored record no longer contains this line"
                continue
            parsed[row.ci_lineitemid] = (result, match[0])
        if invalid or record_problem:
            first_id, first_reason = next(
                iter(invalid.items()), (None, record_problem or "invalid record")
            )
            for row in rows:
                own = invalid.get(row.ci_lineitemid)
                reason = (
                    f"invalid CI payload: {own}"
                    if own
                    else (
                        f"order {orderid} held whole: record of line {first_id} is invalid: "
                        f"{first_reason}"
                        if first_id is not None
                        else f"order {orderid} held whole: a record is invalid: {first_reason}"
                    )
                )
                self._hold(row, HoldKind.INVALID_PAYLOAD, reason, now)
            return None

        order_date = min(rec.order_date for rec, _ in parsed.values())
        if delay and order_date > now - delay:
            # Too young: stays staged (import_delay_minutes gives Groupon's checks time).
            # Without a delay nothing waits, even an order dated ahead of our clock (skew).
            for row in rows:
                if row.state != "staged" or row.hold_kind is not None:
                    self.ledger.update_line(
                        row.ci_lineitemid,
                        now,
                        state="staged",
                        hold_kind=None,
                        hold_reason="",
                        held_since=None,
                    )
            return None

        resolved: dict[int, tuple[SkuComponent, ...]] = {}
        unmapped: list[OrderLine] = []
        for lid, (_, line) in parsed.items():
            components = self._components(line)
            if components is None:
                unmapped.append(line)
            else:
                resolved[lid] = components
        if unmapped:
            where = self._aliases_file()
            names = ", ".join(_sku_label(ln) for ln in unmapped)
            for row in rows:
                line = parsed[row.ci_lineitemid][1]
                if line in unmapped:
                    reason = (
                        f"SKU {_sku_label(line)} has no alias: add a row "
                        f"'groupon_sku,host_sku,quantity' for it to {where}"
                    )
                else:
                    reason = f"order {orderid} held whole: unmapped SKU {names} in {where}"
                self._hold(row, HoldKind.UNMAPPED_SKU, reason, now)
            return None

        lines = []
        records: dict[int, ParsedRecord] = {}
        for row in sorted(rows, key=lambda r: r.ci_lineitemid):
            record, line = parsed[row.ci_lineitemid]
            records[id(record)] = record
            lines.append(_with_components(line, resolved[row.ci_lineitemid]))
            if row.state != "delivered" or row.hold_kind is not None:
                self.ledger.update_line(
                    row.ci_lineitemid,
                    now,
                    state="delivered",
                    hold_kind=None,
                    hold_reason="",
                    held_since=None,
                )
        first = min(records.values(), key=lambda r: r.order_date)
        ship_bys = [ln.ship_by for ln in lines if ln.ship_by is not None]
        return Order(
            account=self.account.name,
            orderid=orderid,
            order_date=order_date,
            ship_by=min(ship_bys) if ship_bys else fallback_ship_by(order_date),
            ship_to=first.ship_to,
            lines=tuple(lines),
            total=sum((r.total for r in records.values()), Decimal("0")),
            parent_orderid=first.parent_orderid,
            billing=first.billing,
            shipping_method=first.shipping_method,
            supplier_name=first.supplier_name,
        )

    def _components(self, line: OrderLine) -> tuple[SkuComponent, ...] | None:
        found = self.mappings.resolve_sku(line.sku, line.bom_sku)
        if found is not None:
            return found
        fallback = self.options.sku_fallback
        if fallback == "bom_sku":
            return (SkuComponent(line.bom_sku or line.sku, 1),)
        if fallback == "sku":
            return (SkuComponent(line.sku, 1),)
        return None

    def _aliases_file(self) -> str:
        directory = self.mappings.directory or self.account.mappings_dir
        return str(directory / "sku_aliases.csv") if directory else "sku_aliases.csv"

    def _hold(self, row: LineRow, kind: HoldKind, reason: str, now: datetime) -> None:
        if row.state != "held":
            self.ledger.update_line(row.ci_lineitemid, now, state="held")
        if row.hold_kind != kind or row.hold_reason != reason:
            self.ledger.hold_line(row.ci_lineitemid, kind, reason, now)

    # -- cancellations ------------------------------------------------------------------------

    def _take_cancellations(self, now: datetime) -> tuple[Cancellation, ...]:
        """Lines the host has (or was handed) that CI now shows cancelled, not yet confirmed.

        Rule: a cancellation is reported by every import until the host confirms it through
        :meth:`confirm_cancellations`, so a host crash between receiving and applying it loses
        nothing (hosts apply cancellations idempotently).
        """
        return tuple(
            Cancellation(
                account=self.account.name,
                orderid=row.orderid,
                ci_lineitemid=row.ci_lineitemid,
                host_order_id=row.host_order_id,
                detected_at=row.cancel_detected_at or now,
            )
            for row in self.ledger.lines(("delivered", "stored", "acked"))
            if row.ci_status in CANCELLED_STATUSES and not row.cancel_reported
        )

    def confirm_cancellations(self, ci_lineitemids: Sequence[int]) -> list[LineResult]:
        """The host applied these cancellations: stop reporting them (one transaction)."""
        now = self.clock()
        known = self.ledger.get_lines(ci_lineitemids)
        results: list[LineResult] = []
        with self.ledger.transaction():
            for lid in ci_lineitemids:
                row = known.get(lid)
                if row is None or row.ci_status not in CANCELLED_STATUSES:
                    results.append(
                        LineResult(lid, LineOutcome.REJECTED, "not reported as cancelled")
                    )
                elif row.cancel_reported:
                    results.append(LineResult(lid, LineOutcome.ALREADY_DONE, "confirmed before"))
                else:
                    self.ledger.update_line(lid, now, cancel_reported=True)
                    self.ledger.record_notice(lid, "cancellation", now)
                    results.append(LineResult(lid, LineOutcome.ACCEPTED))
        return results

    # -- acknowledgements ---------------------------------------------------------------------

    def mark_exported(self, stored: Sequence[StoredOrder]) -> list[LineResult]:
        """Step 5: record bindings in one transaction, then acknowledge in CI in batches."""
        now = self.clock()
        wanted = [(so, lid) for so in stored for lid in so.ci_lineitemids]
        known = self.ledger.get_lines(lid for _, lid in wanted)
        results: dict[int, LineResult] = {}
        to_ack: list[int] = []
        queued: set[int] = set()  # membership test on to_ack itself was O(n^2)
        with self.ledger.transaction():
            for so, lid in wanted:
                if lid in results or lid in queued:
                    continue
                row = known.get(lid)
                refusal = _binding_refusal(self.account.name, so, lid, row)
                if refusal is not None:
                    results[lid] = LineResult(lid, LineOutcome.REJECTED, refusal)
                    continue
                assert row is not None
                if row.state == "acked":
                    if row.host_order_id is None:
                        self.ledger.update_line(lid, now, host_order_id=so.host_order_id)
                    results[lid] = LineResult(
                        lid, LineOutcome.ALREADY_DONE, "already marked exported in CI"
                    )
                    continue
                self.ledger.update_line(lid, now, state="stored", host_order_id=so.host_order_id)
                if row.hold_kind is HoldKind.REJECTED_BY_CI:
                    results[lid] = LineResult(lid, LineOutcome.REJECTED, row.hold_reason)
                elif self.options.mark_exported:
                    to_ack.append(lid)
                    queued.add(lid)
                else:
                    results[lid] = LineResult(lid, LineOutcome.ACCEPTED)
        for result in self._ack(to_ack, now):
            results[result.ci_lineitemid] = result
        ordered = list(dict.fromkeys(lid for _, lid in wanted))
        return [results[lid] for lid in ordered]

    def flush_acks(self) -> list[LineResult]:
        """Acknowledge every line the host stored that CI has not taken yet."""
        if not self.options.mark_exported:
            return []
        pending = [
            row.ci_lineitemid
            for row in self.ledger.lines(("stored",))
            if row.hold_kind is not HoldKind.REJECTED_BY_CI
        ]
        return self._ack(pending, self.clock())

    def _ack(self, ids: Sequence[int], now: datetime) -> list[LineResult]:
        results: list[LineResult] = []
        size = max(1, self.options.ack_batch_size)
        stop_reason: str | None = None
        for start in range(0, len(ids), size):
            batch = list(ids[start : start + size])
            if stop_reason is not None:
                results += self._queue(batch, stop_reason, now)
                continue
            outcome = self._send_ack(batch, now)
            if isinstance(outcome, str):
                stop_reason = outcome
                results += self._queue(batch, outcome, now)
            else:
                results += outcome
        return results

    def _send_ack(self, batch: list[int], now: datetime) -> list[LineResult] | str:
        """Acknowledge one batch. Returns the results, or a reason string when CI could not
        be reached (the caller queues this batch and the rest)."""
        try:
            self.client.mark_exported(batch)
        except CIAuthError as exc:
            return f"CI refused the credentials: {exc.reason}"
        except CIBusinessError as exc:
            if len(batch) == 1:
                return [self._reject_ack(batch[0], exc.reason, now)]
            # Resend one by one to find the line(s) CI refuses; the rest go through.
            results: list[LineResult] = []
            for i, lid in enumerate(batch):
                single = self._send_ack([lid], now)
                if isinstance(single, str):
                    return [*results, *self._queue(batch[i:], single, now)]
                results += single
            return results
        except CIError as exc:
            return f"CI unreachable, will retry: {exc}"
        crashpoint("ack_sent")
        with self.ledger.transaction():
            rows = self.ledger.get_lines(batch)  # one query per batch, not one per line
            for lid in batch:
                row = rows.get(lid)
                self.ledger.update_line(
                    lid, now, state="acked", ack_attempts=(row.ack_attempts if row else 0) + 1
                )
                self.ledger.log_ack(lid, "accepted", now)
        crashpoint("ack_recorded")
        return [LineResult(lid, LineOutcome.ACCEPTED) for lid in batch]

    def _reject_ack(self, lid: int, reason: str, now: datetime) -> LineResult:
        text = f"CI refused mark_exported: {reason}"
        with self.ledger.transaction():
            self.ledger.hold_line(lid, HoldKind.REJECTED_BY_CI, text, now)
            self.ledger.log_ack(lid, "rejected", now, reason)
        return LineResult(lid, LineOutcome.REJECTED, text)

    def _queue(self, batch: Iterable[int], reason: str, now: datetime) -> list[LineResult]:
        out = []
        ids = list(batch)
        with self.ledger.transaction():
            rows = self.ledger.get_lines(ids)
            for lid in ids:
                row = rows.get(lid)
                self.ledger.update_line(lid, now, ack_attempts=(row.ack_attempts if row else 0) + 1)
                self.ledger.log_ack(lid, "queued", now, reason)
                out.append(LineResult(lid, LineOutcome.QUEUED, reason))
        return out


def _binding_refusal(account: str, so: StoredOrder, lid: int, row: LineRow | None) -> str | None:
    if row is None:
        return f"line {lid} was never imported for account {account}: not acknowledged"
    if row.orderid != so.orderid:
        return f"line {lid} belongs to order {row.orderid}, not {so.orderid}: not acknowledged"
    if row.state == "cancelled" or row.ci_status in CANCELLED_STATUSES:
        return f"line {lid} was cancelled in CI: not acknowledged"
    if row.state in ("staged", "held"):
        why = f" ({row.hold_reason})" if row.hold_reason else ""
        return f"line {lid} was not handed to the host yet{why}: not acknowledged"
    return None


def _parse_cached(
    record: dict[str, Any] | None, cache: dict[str, ParsedRecord | RecordProblem]
) -> ParsedRecord | RecordProblem:
    if record is None:
        return RecordProblem(None, (), "no record stored")
    key = _record_key(record)
    if key not in cache:
        cache[key] = parse_record(record)
    return cache[key]


def _sku_label(line: OrderLine) -> str:
    if line.bom_sku:
        return f"{line.sku!r} (bom_sku {line.bom_sku!r})"
    return repr(line.sku)


def _with_components(line: OrderLine, components: tuple[SkuComponent, ...]) -> OrderLine:
    return replace(line, components=components)
