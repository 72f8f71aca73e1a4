"""Import pipeline: read every page, staging each in the ledger -> group by orderid ->
aliases -> :class:`~connector.models.ImportBatch` chunks; then acknowledgements after the host
stored orders.

Invariants (see ``docs/engine.md``):

* Nothing is delivered or acknowledged before every page of a read was staged; a failed read
  leaves what it staged waiting for the next complete read.
* A line is acknowledged in CI only after the host confirmed it (``mark_exported``), and the
  binding is committed before the CI call, so a crash between the two re-acks on the next run
  instead of re-delivering.
* A line handed to the host but not confirmed is handed over again (the host dedupes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from time import monotonic
from typing import Any, Protocol, TypeVar, cast

import msgspec

from connector.ci.fast import ledger_fields as fast_ledger_fields
from connector.ci.fast import raw_ledger_fields, raw_value
from connector.ci.fast import record_text as fast_record_text
from connector.ci.schemas import (
    ParsedRecord,
    RecordProblem,
    parse_record,
    parse_record_tolerant,
)
from connector.crashpoints import crashpoint
from connector.errors import CIAuthError, CIBusinessError, CIError
from connector.ledger import (
    HOST_STATES,
    UNCONFIRMED_STATES,
    BindingLine,
    BoundLine,
    EvalLine,
    Ledger,
    LineRow,
    json_value,
    record_key,
)
from connector.mappings import Mappings
from connector.models import (
    Account,
    Address,
    Cancellation,
    HoldKind,
    ImportBatch,
    LineOutcome,
    LineResult,
    Order,
    OrderLine,
    SkuComponent,
    StoredOrder,
    WaitingLine,
)
from connector.overlap import CallPool, closing_iter, prefetch, runs_concurrently, thread_setup
from connector.progress import announce_pages
from connector.runtime.collector import fewer_collections

__all__ = [
    "CANCELLED_STATUSES",
    "WATCH_DAYS",
    "Importer",
    "OrdersClient",
    "OrdersPageLike",
    "fallback_ship_by",
    "split_windows",
    "waiting_lines",
]

log = logging.getLogger("connector.importer")

CANCELLED_STATUSES = frozenset({"cancelled", "canceled"})
"""CI line statuses that mean Groupon cancelled the line (assumed spelling, ci-api.md §5.7)."""

WATCH_DAYS = 30
"""How far back open lines are re-read for cancellations (auto-cancel comes after 7/14 BD)."""

CATCHUP_META = "window_catchup_at"
"""Ledger meta key: when window mode last read the un-exported listing as well."""


def delay_until(
    order_date: datetime, first_seen: datetime, delay: timedelta
) -> tuple[datetime, bool]:
    """When an order's import delay ends, and whether its date is ahead of when the connector
    first saw it (a future-dated order: clock skew or a bad date). The delay then counts from
    first sight, so a bad date cannot keep an order back for days."""
    future = order_date > first_seen
    return (first_seen if future else order_date) + delay, future


def waiting_lines(account: Account, ledger: Ledger, now: datetime) -> tuple[WaitingLine, ...]:
    """Staged lines whose order still waits on ``import_delay_minutes``, each with why and
    until when (for ``ImportBatch.waiting``, ``ci-connector status`` and the sync summary)."""
    minutes = account.options.import_delay_minutes
    if minutes <= 0:
        return ()
    delay = timedelta(minutes=minutes)
    out: list[WaitingLine] = []
    for lid, orderid, order_date, first_seen in ledger.staged_order_dates():
        until, future = delay_until(order_date, first_seen, delay)
        if until <= now:
            continue  # due: the next import hands it over
        ordered = f"{order_date.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        if future:
            reason = (
                f"order dated {ordered}, ahead of when it was first seen "
                f"({first_seen.astimezone(UTC):%Y-%m-%d %H:%M} UTC: clock skew or a bad date "
                f"in CI); import_delay_minutes={minutes} counts from first sight"
            )
        else:
            reason = (
                f"import_delay_minutes={minutes}: ordered {ordered}, Groupon's own checks get "
                "that long to cancel it first"
            )
        out.append(WaitingLine(account.name, lid, orderid, order_date, until, reason))
    return tuple(out)


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


def _record_key(text: str) -> str:
    """Key of a record by its stored text (:func:`_record_text`)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


PREPARED_TTL_SECONDS = 5.0
"""How long a chunk evaluated ahead (:class:`PreparedChunk`) may wait for the next
``import_orders``: a host loop asks at once; later, a mapping edit or the clock may have moved,
so an older chunk is evaluated again instead."""


@dataclass(frozen=True, slots=True)
class PreparedChunk:
    """The next chunk of orders, evaluated while ``mark_exported`` waited for CI (its states
    committed: the lines are ``delivered``), handed over by the next ``import_orders`` if
    nothing changed in between (:meth:`Importer.import_orders`).

    :ivar rounds: the ledger's ``(current, done)`` import rounds when it was evaluated.
    :ivar orders: the deliverable orders.
    :ivar mappings: the mapping tables it was evaluated with.
    :ivar made: ``time.monotonic()`` when it was evaluated.
    """

    rounds: tuple[int, int]
    orders: tuple[Order, ...]
    mappings: Mappings
    made: float


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
        self.prepared: PreparedChunk | None = None
        """Set by :meth:`mark_exported` when it evaluated the next chunk ahead."""
        self._prepared_synced = True
        """Whether a durable commit followed the (unsynced) evaluation of :attr:`prepared`."""
        self._durable_delivery = True
        """Whether :meth:`_deliver_chunk` commits durably (off while evaluating ahead)."""
        self._components_for: Mappings | None = None
        self._components_cache: dict[tuple[Any, Any], tuple[SkuComponent, ...] | None] = {}

    # -- import -------------------------------------------------------------------------------

    def import_orders(self, prepared: PreparedChunk | None = None) -> ImportBatch:
        """One chunk of the pipeline; see the module docstring.

        Drain before re-reading: while lines of a fully read round still wait for
        evaluation, the next chunk comes from the ledger and CI is not read. Only when nothing
        deliverable is left (or the last read never completed) CI is read again.

        ``prepared``: the chunk the last :meth:`mark_exported` evaluated ahead; handed over
        as this chunk if it is still valid (:meth:`_take_prepared`), else evaluated again.
        """
        with fewer_collections():  # see connector.runtime.collector
            return self._import_orders(prepared)

    def _import_orders(self, prepared: PreparedChunk | None = None) -> ImportBatch:
        now = self.clock()
        taken = self._take_prepared(prepared) if prepared is not None else None
        if taken is not None:
            orders, more = taken, self.ledger.has_pending_evaluation()
        else:
            current, done = self.ledger.import_rounds()
            if not (current > 0 and current == done and self.ledger.has_pending_evaluation()):
                self._fetch_and_stage(now)
            crashpoint("after_stage")
            orders, more = self._deliver_chunk(now)
        crashpoint("after_deliver")
        if self.options.mark_exported:
            self.flush_acks()
        cancellations = self._take_cancellations(now)
        held = tuple(self.ledger.held_lines(outbox=False))
        return ImportBatch(
            orders=tuple(orders),
            held=held,
            cancellations=cancellations,
            more=more,
            waiting=waiting_lines(self.account, self.ledger, now),
        )

    def _pages(self, window: tuple[datetime, datetime] | None) -> Iterable[OrdersPageLike]:
        # The records as their bytes when the client can (CIClient.iter_raw_pages): staging
        # takes a record's text from them and decodes them straight into Structs.
        pages = getattr(self.client, "iter_raw_pages", None) or getattr(
            self.client, "iter_pages", None
        )
        read: Iterable[OrdersPageLike]
        if pages is not None:
            # Page N+1 is read on a worker thread while page N is staged here: one page
            # ahead at most, errors raised at that page's turn, the thread joined on exit.
            read = prefetch(
                cast("Iterable[OrdersPageLike]", pages(window)), thread_setup(self.client)
            )
        else:
            read = self.client.fetch_all(window)
        return announce_pages(read, self.account.name, window)  # progress for a front end

    def _fetch_and_stage(self, now: datetime) -> None:
        """Read every page of this round and stage it page by page (one transaction each).

        The round is marked complete (with the watermark and the broken-record list) only
        after the last page: until then nothing of it is delivered or acknowledged, and a
        crash or read failure simply means the next call reads CI again (known lines are
        only updated)."""
        opts = self.options
        windows: list[tuple[datetime, datetime] | None] = []
        window_end: datetime | None = None
        catchup = False
        if opts.window_mode:
            watermark = self.ledger.get_watermark()
            if watermark is None:
                start = now - timedelta(hours=opts.lookback_hours)
            elif watermark > now:
                # The clock went back (or was ahead when the watermark was set): re-read the
                # lookback instead of reading nothing until the clock catches up.
                log.warning(
                    "account %s: watermark %s is ahead of the clock %s; re-reading %d h",
                    self.account.name,
                    watermark.isoformat(),
                    now.isoformat(),
                    opts.lookback_hours,
                )
                start = now - timedelta(hours=opts.lookback_hours)
            else:
                start = watermark - timedelta(minutes=opts.window_overlap_minutes)
            windows.extend(split_windows(start, now, opts.window_hours))
            window_end = now
            catchup = self._catchup_due(now)
        else:
            windows.append(None)
        if opts.window_mode or opts.watch_cancellations:
            covered = [w for w in windows if w is not None]
            windows.extend(self._watch_windows(now, covered))
        if catchup:
            # Windows only see orders dated inside them: one dated before the watermark minus
            # the overlap (back-dated, late, a clock change) would never be read. The
            # un-exported listing shows every line CI still waits on, whatever its date.
            windows.append(None)
        round_no = self.ledger.begin_import_round()
        problems: list[tuple[str, str | None, str]] = []
        # Window mode: order ids with a broken-record entry, and those of them re-read clean
        # (only these are collected, so memory stays bounded by the problem list).
        broken = (
            frozenset(
                h.orderid
                for h in self.ledger.held_lines(lines=False, outbox=False)
                if h.ci_lineitemid is None and h.orderid
            )
            if opts.window_mode
            else frozenset()
        )
        clean: set[str] = set()
        read = 0
        budget = getattr(self.client, "budget", None)
        limit = (
            budget(opts.sync_deadline_seconds, "sync read")
            if callable(budget)
            else contextlib.nullcontext()
        )
        with limit:
            for window in windows:
                with closing_iter(self._pages(window)) as pages:
                    for page in pages:
                        read += len(page.records)
                        self._stage_page(
                            page.records,
                            now,
                            round_no,
                            problems,
                            clean,
                            broken,
                            plain=getattr(page, "plain_json", False) is True,
                        )
        with self.ledger.transaction():
            if opts.window_mode:
                # An order re-read clean had its broken record fixed by CI: forget the old
                # entry, or the order stays held whole forever. One still broken this round
                # keeps its entry (and its first_seen).
                self.ledger.discard_problems(clean, keep=(key for key, _, _ in problems))
                self.ledger.add_problems(problems, now)
                if window_end is not None:
                    self.ledger.set_watermark(window_end)
                if catchup:
                    self.ledger.set_meta(CATCHUP_META, now.isoformat())
            else:
                # The un-exported view lists every broken record again each time.
                self.ledger.replace_problems(problems, now)
            self.ledger.complete_import_round(round_no)
        log.info(
            "account %s: read %d record(s) in %d listing(s)%s",
            self.account.name,
            read,
            len(windows),
            " (with a catch-up read of the un-exported listing)" if catchup else "",
        )

    def _catchup_due(self, now: datetime) -> bool:
        """Window mode: whether this round also reads the un-exported listing (never done,
        ``window_catchup_minutes`` passed since the last one, or the clock went back)."""
        last = self.ledger.get_meta(CATCHUP_META)
        if last is None:
            return True
        try:
            when = datetime.fromisoformat(last)
        except ValueError:
            return True
        minutes = self.options.window_catchup_minutes
        return when > now or now - when >= timedelta(minutes=minutes)

    def _watch_windows(
        self, now: datetime, covered: list[tuple[datetime, datetime]]
    ) -> list[tuple[datetime, datetime] | None]:
        """Windows containing the order dates of lines the host has but that are still open
        and not fully shipped, so Groupon-side cancellations become visible
        (``watch_cancellations``); in window mode also those of orders held for an invalid
        record, so a record CI fixed is read again (the watermark has moved past it)."""
        horizon = now - timedelta(days=WATCH_DAYS)
        width = timedelta(hours=max(1, min(self.options.window_hours, 23)))
        dates: set[datetime] = set()
        if self.options.watch_cancellations:
            dates.update(self.ledger.open_order_dates(horizon))
        if self.options.window_mode:
            dates.update(self.ledger.invalid_held_order_dates(horizon))
        extra: list[tuple[datetime, datetime]] = []
        for when in sorted(dates):
            if any(a <= when < b for a, b in covered) or (
                extra and extra[-1][0] <= when < extra[-1][1]
            ):
                continue
            start = when.replace(second=0, microsecond=0)
            extra.append((start, min(start + width, max(now, start + timedelta(minutes=1)))))
        return list(extra)

    def _stage_page(
        self,
        records: Sequence[Any],
        now: datetime,
        round_no: int,
        problems: list[tuple[str, str | None, str]],
        clean: set[str] | None = None,
        broken: frozenset[str] = frozenset(),
        *,
        plain: bool = False,
    ) -> None:
        """Parse each record once and stage its lines: one transaction, batched writes.
        ``clean`` collects the order ids among ``broken`` of records that parsed cleanly;
        ``plain``: the records hold JSON values only (``OrdersPage.plain_json``); a record
        may be ``msgspec.Raw`` (``CIClient.iter_raw_pages``)."""
        # (line id, parsed fields, their JSON text, record text, bad order id, problem)
        items: list[tuple[int, list[Any] | None, str, str, str | None, str]] = []
        text: str | None
        for raw in records:
            plain_record = plain
            if type(raw) is msgspec.Raw:
                # Hottest path: the text is the record's bytes, the fields come from its
                # typed decode; a record that does not decode typed becomes its JSON value
                # (as a dict page would hold it) for the paths below.
                fast = raw_ledger_fields(raw)
                if fast is not None:
                    text, orderid, rows = fast
                    if clean is not None and orderid in broken:
                        clean.add(orderid)
                    for line_fields in rows:
                        parsed = _fields_text(line_fields)
                        items.append((line_fields[_F_LID], line_fields, parsed, text, None, ""))
                    continue
                raw, plain_record = raw_value(raw)
            # Hot path: compact JSON text and the positional fields straight from the fast
            # strict parser (connector.ci.fast); anything it defers takes the full parser.
            text = fast_record_text(raw, plain_record)
            staged = None if text is None else fast_ledger_fields(raw)
            if text is not None and staged is not None:
                orderid, rows = staged
                if clean is not None and orderid in broken:
                    clean.add(orderid)
                for line_fields in rows:
                    parsed = _fields_text(line_fields)
                    items.append((line_fields[_F_LID], line_fields, parsed, text, None, ""))
                continue
            # The fast path refused it: when it has a text, parse_record's own fast attempt
            # would refuse it too, so go straight to the tolerant parser.
            result = parse_record(raw) if text is None else parse_record_tolerant(raw)
            if isinstance(result, RecordProblem):
                text = _record_text(raw)  # sorted: a broken record's key is stable across rounds
                if not result.ci_lineitemids:
                    problems.append((_record_key(text), result.orderid, result.reason))
                for lid in result.ci_lineitemids:
                    items.append((lid, None, "", text, result.orderid, result.reason))
                continue
            if text is None:
                text = _record_text(raw)
            if clean is not None and result.orderid in broken:
                clean.add(result.orderid)
            head = _record_head(result)
            for line in result.lines:
                line_fields = head + _line_fields(line)
                parsed = json.dumps(line_fields, separators=(",", ":"))
                items.append((line.ci_lineitemid, line_fields, parsed, text, None, ""))
        if not items:
            return
        known = self.ledger.known_lines(item[0] for item in items)
        stamp = now.isoformat()
        inserts: list[tuple[Any, ...]] = []
        refreshes: list[tuple[Any, ...]] = []
        bad_refreshes: list[tuple[Any, ...]] = []
        statuses: list[tuple[Any, ...]] = []
        # The raw records the written lines name, stored once each: key by the text's
        # object (its lines share it), not by the text, whose hash would be computed once
        # per record (~3 KB of SipHash). ``items`` holds every text until the end, so no id
        # is reused meanwhile; equal texts of two objects (a record twice on a page) get
        # the same key twice, and the second row is ignored as a record stored before is.
        keys: dict[int, str] = {}
        record_rows: list[tuple[str, str]] = []
        seen: set[int] = set()
        for lid, fields, parsed, text, bad_orderid, reason in items:
            if lid in seen:
                continue  # the same line twice on one page is staged once
            seen.add(lid)
            row = known.get(lid)
            if row is not None and row.seen_round == round_no:
                continue  # already staged from an earlier page of this round
            if row is None or row.state in UNCONFIRMED_STATES:
                key = keys.get(id(text))
                if key is None:
                    # Anchored on the record's first line id (the same for all its lines).
                    anchor = lid if fields is None else fields[_F_RECORD]
                    key = keys[id(text)] = record_key(text, anchor)
                    record_rows.append((key, text))
                text = key  # the line names its record; the text goes to ``records``
            if fields is None:
                problem = json.dumps({"problem": reason})
                if row is None:
                    inserts.append(
                        (
                            lid,
                            self.account.name,
                            bad_orderid or "",
                            None,
                            text,
                            problem,
                            None,
                            None,
                            0,
                            "",
                            None,
                            "held",
                            HoldKind.INVALID_PAYLOAD.value,
                            reason,
                            stamp,
                            "open",
                            stamp,
                            stamp,
                            round_no,
                        )
                    )
                elif row.state in UNCONFIRMED_STATES:
                    bad_refreshes.append((text, problem, round_no, stamp, lid))
                else:
                    statuses.append(
                        (row.ci_status, row.cancel_detected_at, round_no, row.ci_status, stamp, lid)
                    )
                continue
            status = fields[_F_STATUS]
            if row is None:
                inserts.append(
                    (
                        lid,
                        self.account.name,
                        fields[_F_ORDERID],
                        fields[_F_FLI],
                        text,
                        parsed,
                        fields[_F_DATE],
                        fields[_F_SHIP_BY],
                        fields[_F_QTY],
                        fields[_F_SKU],
                        fields[_F_BOM],
                        "staged",
                        None,
                        "",
                        None,
                        status,
                        stamp,
                        stamp,
                        round_no,
                    )
                )
                continue
            detected = row.cancel_detected_at
            if status in CANCELLED_STATUSES and status != row.ci_status and detected is None:
                detected = stamp
            if row.state in UNCONFIRMED_STATES:
                # Not yet confirmed by the host: keep the latest payload for re-evaluation.
                refreshes.append(
                    (
                        text,
                        parsed,
                        fields[_F_ORDERID],
                        fields[_F_FLI],
                        fields[_F_DATE],
                        fields[_F_SHIP_BY],
                        fields[_F_QTY],
                        fields[_F_SKU],
                        fields[_F_BOM],
                        status,
                        detected,
                        round_no,
                        stamp,
                        lid,
                    )
                )
            else:
                statuses.append((status, detected, round_no, status, stamp, lid))
        self.ledger.stage_rows(
            records=record_rows,
            inserts=inserts,
            refreshes=refreshes,
            bad_refreshes=bad_refreshes,
            statuses=statuses,
        )

    # -- evaluation ---------------------------------------------------------------------------

    def _deliver_chunk(self, now: datetime) -> tuple[list[Order], bool]:
        """Evaluate waiting orders until ``max_orders_per_import`` orders are deliverable or
        none wait; returns the orders and whether more wait. The state commits skip their
        fsync while :attr:`_durable_delivery` is off (the caller then commits durably before
        any hand-over: see :meth:`_prepare_next`)."""
        limit = max(1, self.options.max_orders_per_import)
        problem_orders = {
            h.orderid: h.reason
            for h in self.ledger.held_lines(lines=False, outbox=False)
            if h.ci_lineitemid is None and h.orderid
        }
        delay = timedelta(minutes=self.options.import_delay_minutes)
        orders: list[Order] = []
        while len(orders) < limit:
            orderids = self.ledger.pending_orderids(limit - len(orders))
            if not orderids:
                break
            grouped = self.ledger.eval_rows_of_orders(orderids, _decode_parsed)
            updates: list[tuple[int, str, HoldKind | None, str]] = []
            for orderid in orderids:
                order = self._evaluate_order(
                    orderid,
                    grouped.get(orderid, []),
                    problem_orders.get(orderid),
                    now,
                    delay,
                    updates,
                )
                if order is not None:
                    orders.append(order)
            # Every line read for these orders (all their lines) changes state here, which
            # ends its pending evaluation too: then end_evaluation would find none left (one
            # index search per order for nothing). The ids of ``updates`` are these orders'
            # lines, so as many distinct ids as lines read means every line.
            every = len(grouped) == len(orderids) and len({u[0] for u in updates}) == sum(
                map(len, grouped.values())
            )
            with self.ledger.transaction(durable=self._durable_delivery):
                self.ledger.set_line_states(updates, now)
                if not every:
                    self.ledger.end_evaluation(orderids)
        return orders, self.ledger.has_pending_evaluation()

    def _prepare_next(self, mappings: Mappings) -> None:
        """Evaluate the next chunk ahead (``mark_exported`` runs this while its CI calls are
        in flight, so the evaluation overlaps the network): only when ``import_orders`` would
        deliver from the ledger without reading CI. The states are committed as
        :meth:`_deliver_chunk` always does, without their fsync: a durable commit of the same
        call follows before the chunk can be handed over (the acknowledgements' record, else
        :meth:`Ledger.sync`; see :meth:`_mark_exported`), and lost before it (power cut), the
        chunk was never handed over: its lines are as a kill before the evaluation left them.
        If the chunk is never handed over, its lines stay ``delivered`` unconfirmed and are
        handed over again by the next round, like lines whose host stopped before storing
        them."""
        current, done = self.ledger.import_rounds()
        if not (current > 0 and current == done and self.ledger.has_pending_evaluation()):
            return
        own = self.mappings
        self.mappings = mappings
        self._durable_delivery = False
        try:
            orders, _ = self._deliver_chunk(self.clock())
        finally:
            self.mappings = own
            self._durable_delivery = True
        if orders:
            self.prepared = PreparedChunk((current, done), tuple(orders), mappings, monotonic())
            self._prepared_synced = False

    def _prepare_quietly(self, mappings: Mappings) -> None:
        """:meth:`_prepare_next`, whose failure must not fail the acknowledgements it runs
        beside: the next ``import_orders`` then evaluates the chunk itself."""
        try:
            self._prepare_next(mappings)
        except Exception as exc:  # a ledger error, say: logged, the import does it again
            self.prepared = None
            log.warning(
                "account %s: evaluating the next chunk ahead failed (%s: %s); the next import "
                "evaluates it",
                self.account.name,
                type(exc).__name__,
                exc,
            )

    def _take_prepared(self, prepared: PreparedChunk) -> list[Order] | None:
        """``prepared``'s orders if nothing changed since it was evaluated: no new import
        round, the same mapping tables, not older than :data:`PREPARED_TTL_SECONDS`, and every
        line still ``delivered``. Otherwise its orders are due for evaluation again (None)."""
        orderids = [o.orderid for o in prepared.orders]
        lids = [lid for o in prepared.orders for lid in o.ci_lineitemids]
        if (
            monotonic() - prepared.made <= PREPARED_TTL_SECONDS
            and prepared.mappings is self.mappings
            and self.ledger.import_rounds() == prepared.rounds
            and self.ledger.count_in_state(lids, "delivered") == len(set(lids))
        ):
            return list(prepared.orders)
        self.ledger.reopen_evaluation(orderids)
        return None

    def _evaluate_order(
        self,
        orderid: str,
        rows: list[EvalLine],
        record_problem: str | None,
        now: datetime,
        delay: timedelta,
        updates: list[tuple[int, str, HoldKind | None, str]],
    ) -> Order | None:
        live: list[EvalLine] = []
        forms: list[Any] = []  # the parsed form of each live row (or why it has none)
        invalid: dict[int, str] = {}
        for row in rows:
            if row.state not in UNCONFIRMED_STATES:
                continue
            if row.ci_status in CANCELLED_STATUSES and row.state != "delivered":
                # Never handed over: nothing to tell the host, just stop tracking it.
                updates.append((row.ci_lineitemid, "cancelled", None, ""))
                continue
            # A cancelled line already handed over stays in the order (status ``cancelled``):
            # the host may have stored it without its mark_exported landing, and only a
            # re-delivery brings that ack; dropping it left it ``delivered`` forever.
            live.append(row)
            fields = row.parsed
            if type(fields) is not tuple and not (
                type(fields) is list and len(fields) == _PARSED_LEN
            ):
                fields = _row_fields(row)  # a problem, or a row of an older schema
                if isinstance(fields, str):
                    invalid[row.ci_lineitemid] = fields
            forms.append(fields)
        if not live:
            return None
        if invalid or record_problem:
            first_id, first_reason = next(
                iter(invalid.items()), (None, record_problem or "invalid record")
            )
            for row in live:
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
                self._hold(row, HoldKind.INVALID_PAYLOAD, reason, updates)
            return None

        # The lines of one record share its date text: each distinct text parsed once.
        if len(forms) == 1:
            order_date = _DATETIMES[forms[0][_F_DATE]]
        else:
            dates = {f[_F_DATE] for f in forms}
            if len(dates) == 1:  # one record, or records of one date: no min() to run
                order_date = _DATETIMES[dates.pop()]
            else:
                order_date = min(map(_iso_datetime, dates))
        if delay and delay_until(order_date, min(row.first_seen for row in live), delay)[0] > now:
            # Too young: stays staged (import_delay_minutes gives Groupon's checks time); a
            # future-dated order counts from first sight (see waiting_lines for the reason
            # shown). Without a delay nothing waits, even an order dated ahead of our clock.
            for row in live:
                if row.state != "staged" or row.hold_kind is not None:
                    updates.append((row.ci_lineitemid, "staged", None, ""))
            return None

        # Components first (from the SKU fields, each distinct pair looked up once per
        # call), so each OrderLine is built once with them.
        components_of = self._components_of()
        resolved: list[tuple[SkuComponent, ...]] = []
        unmapped: list[int] = []
        # zip without strict= (a keyword makes zip parse its arguments the slow way, ~1 us
        # per order): the lists are built together, one entry per live row.
        for row, f in zip(live, forms):  # noqa: B905
            sku_key = (f[_F_SKU], f[_F_BOM])
            try:
                components = components_of.get(sku_key, _UNRESOLVED)
            except TypeError:  # not text (a hand-edited ledger): asked as before
                components = self._components(*sku_key)
            else:
                if components is _UNRESOLVED:
                    components = components_of[sku_key] = self._components(*sku_key)
            if components is None:
                unmapped.append(row.ci_lineitemid)
            else:
                resolved.append(components)
        if unmapped:
            self._hold_unmapped(orderid, live, forms, unmapped, updates)
            return None

        # ``rows`` come in line id order (eval_rows_of_orders), so the lines do.
        lines: list[OrderLine] = []
        heads: dict[Any, Any] = {}
        ship_by = None
        for f, components in zip(forms, resolved):  # noqa: B905 (one each per live row)
            if f[_F_RECORD] not in heads:
                heads[f[_F_RECORD]] = f
            line = _order_line(f, components)
            lines.append(line)
            if line.ship_by is not None and (ship_by is None or line.ship_by < ship_by):
                ship_by = line.ship_by
        for row in live:
            if row.state != "delivered" or row.hold_kind is not None:
                updates.append((row.ci_lineitemid, "delivered", None, ""))
        first = forms[0]
        if len(heads) > 1:  # the earliest record (min by date text; the first of equals)
            earliest = str(first[_F_DATE])
            for f in heads.values():
                if str(f[_F_DATE]) < earliest:
                    first, earliest = f, str(f[_F_DATE])
        billing = _unraw(first[_F_BILLING])
        total = _ZERO  # as sum(..., _ZERO) adds: each record's total once
        for f in heads.values():
            total = total + _decimal(f[_F_TOTAL])
        return _build_order(
            self.account.name,
            orderid,
            order_date,
            ship_by if ship_by is not None else fallback_ship_by(order_date),
            _address(_unraw(first[_F_SHIP_TO])),
            tuple(lines),
            total,
            first[_F_PARENT],
            None if billing is None else _address(billing),
            first[_F_METHOD],
            first[_F_SUPPLIER],
        )

    def _components_of(self) -> dict[tuple[Any, Any], tuple[SkuComponent, ...] | None]:
        """What :meth:`_components` answered per ``(sku, bom_sku)`` under the current
        mapping tables (a catalogue repeats few SKUs over many lines; ``_prepare_next``
        evaluates with other tables, which get their own answers)."""
        if self._components_for is not self.mappings:
            self._components_for = self.mappings
            self._components_cache = {}
        return self._components_cache

    def _hold_unmapped(
        self,
        orderid: str,
        live: list[EvalLine],
        forms: list[Any],
        unmapped: list[int],
        updates: list[tuple[int, str, HoldKind | None, str]],
    ) -> None:
        """Hold the whole order: a SKU of it has no alias (naming the SKUs and the CSV)."""
        parsed = {row.ci_lineitemid: f for row, f in zip(live, forms, strict=True)}
        where = self._aliases_file()
        names = ", ".join(_sku_label(parsed[lid][_F_SKU], parsed[lid][_F_BOM]) for lid in unmapped)
        for row in live:
            f = parsed[row.ci_lineitemid]
            if row.ci_lineitemid in unmapped:
                reason = (
                    f"SKU {_sku_label(f[_F_SKU], f[_F_BOM])} has no alias: add a row "
                    f"'groupon_sku,host_sku,quantity' for it to {where}"
                )
            else:
                reason = f"order {orderid} held whole: unmapped SKU {names} in {where}"
            self._hold(row, HoldKind.UNMAPPED_SKU, reason, updates)

    def _components(self, sku: str, bom_sku: str | None) -> tuple[SkuComponent, ...] | None:
        found = self.mappings.resolve_sku(sku, bom_sku)
        if found is not None:
            return found
        fallback = self.options.sku_fallback
        if fallback == "bom_sku":
            return (SkuComponent(bom_sku or sku, 1),)
        if fallback == "sku":
            return (SkuComponent(sku, 1),)
        return None

    def _aliases_file(self) -> str:
        directory = self.mappings.directory or self.account.mappings_dir
        return str(directory / "sku_aliases.csv") if directory else "sku_aliases.csv"

    def _hold(
        self,
        row: EvalLine,
        kind: HoldKind,
        reason: str,
        updates: list[tuple[int, str, HoldKind | None, str]],
    ) -> None:
        if row.state != "held" or row.hold_kind != kind or row.hold_reason != reason:
            updates.append((row.ci_lineitemid, "held", kind, reason))

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
            for row in self.ledger.unreported_cancellations()
        )

    def confirm_cancellations(self, ci_lineitemids: Sequence[int]) -> list[LineResult]:
        """The host applied these cancellations: stop reporting them (one transaction)."""
        now = self.clock()
        known = self.ledger.get_lines(ci_lineitemids, light=True)
        results: list[LineResult] = []
        first: dict[int, LineResult] = {}
        with self.ledger.transaction():
            for lid in ci_lineitemids:
                earlier = first.get(lid)
                if earlier is not None:
                    # The same id twice in one call: confirmed once, like a second call.
                    if earlier.outcome is LineOutcome.ACCEPTED:
                        earlier = LineResult(lid, LineOutcome.ALREADY_DONE, "confirmed before")
                    results.append(earlier)
                    continue
                row = known.get(lid)
                if row is None or row.ci_status not in CANCELLED_STATUSES:
                    result = LineResult(lid, LineOutcome.REJECTED, "not reported as cancelled")
                elif row.state not in HOST_STATES:
                    # Cancelled before the host ever had it: dropped, never reported.
                    result = LineResult(
                        lid,
                        LineOutcome.REJECTED,
                        f"not reported as cancelled: line {lid} was cancelled before it was "
                        "handed to the host",
                    )
                elif row.cancel_reported:
                    result = LineResult(lid, LineOutcome.ALREADY_DONE, "confirmed before")
                else:
                    self.ledger.update_line(lid, now, cancel_reported=True)
                    self.ledger.record_notice(lid, "cancellation", now)
                    result = LineResult(lid, LineOutcome.ACCEPTED)
                first[lid] = result
                results.append(result)
        return results

    # -- acknowledgements ---------------------------------------------------------------------

    def mark_exported(
        self, stored: Sequence[StoredOrder], prepare_with: Mappings | None = None
    ) -> list[LineResult]:
        """Step 5: record bindings in one transaction, then acknowledge in CI in batches.

        ``prepare_with``: while the acknowledgements are in flight, evaluate the next chunk
        with these mapping tables (:attr:`prepared`; see :meth:`_prepare_next`)."""
        with fewer_collections():  # see connector.runtime.collector
            return self._mark_exported(stored, prepare_with)

    def _mark_exported(
        self, stored: Sequence[StoredOrder], prepare_with: Mappings | None = None
    ) -> list[LineResult]:
        pool = self._ack_pool() if self.options.mark_exported and stored else None
        if pool is None:
            return self._bind_and_ack(stored, prepare_with, None)
        # The ack threads start while the bindings are written: started as the calls came,
        # each waited ~1 ms for the GIL behind the calls already running (issue 11).
        try:
            pool.start()
            return self._bind_and_ack(stored, prepare_with, pool)
        finally:
            # A no-op once _ack closed it; else no call was handed to it (the bindings
            # failed, or none of the lines was left to acknowledge).
            pool.close()

    def _ack_pool(self) -> CallPool | None:
        """Threads for ``ack_concurrency`` calls in flight, if the client may be called from
        several threads (else None: one call after the other on this thread)."""
        workers = self.options.ack_concurrency if runs_concurrently(self.client) else 1
        return CallPool(workers, thread_setup(self.client), "ci-ack") if workers > 1 else None

    def _bind_and_ack(
        self,
        stored: Sequence[StoredOrder],
        prepare_with: Mappings | None,
        pool: CallPool | None,
    ) -> list[LineResult]:
        now = self.clock()
        # Each line is decided by its first binding (a later one of the same line was skipped
        # when the checks ran line by line, as here).
        first: dict[int, StoredOrder] = {}
        for so in stored:
            for lid in so.ci_lineitemids:
                if lid not in first:
                    first[lid] = so
        results: dict[int, LineResult] = {}
        to_ack: list[int] = []
        mark = self.options.mark_exported
        with self.ledger.transaction():
            # The checks are folded into the binding's write (a line is bound only if it may
            # be): the lines it did not bind, usually none, are read to say why. The lines
            # acknowledged next are claimed in the same write (one rewrite and one commit less
            # per batch); claim_acks runs only for those it could not claim.
            bound = self.ledger.bind_checked(
                [(lid, so.orderid, so.host_order_id) for lid, so in first.items()],
                now,
                claim=mark,
                lease_seconds=self.options.lease_seconds,
            )
            if len(bound) < len(first):
                self._not_bound(first, bound, results, now)
            for lid in first:
                line = bound.get(lid)
                if line is None:
                    continue  # refused, or acknowledged before: its result is set
                if line.rejected_reason is not None:
                    results[lid] = LineResult(lid, LineOutcome.REJECTED, line.rejected_reason)
                elif mark:
                    to_ack.append(lid)
                else:
                    results[lid] = _accepted(lid, _ACCEPTED, "", None, None, None)
        taken = [lid for lid in to_ack if bound[lid].claimed]
        try:
            for result in self._ack(to_ack, now, prepare_with, settle=True, taken=taken, pool=pool):
                results[result.ci_lineitemid] = result
        finally:
            # Claims not used up (queued: CI unreachable, refused, or an error) end here, so
            # another process need not wait for the lease; acked lines hold none any more.
            unsent = [
                lid for lid in to_ack if lid not in results or results[lid].outcome is not _ACCEPTED
            ]
            if unsent:
                self.ledger.release_acks(unsent)
        if self.prepared is not None and not self._prepared_synced:
            # The chunk evaluated ahead is handed over by the next import without a commit of
            # its own: its states are made durable here unless a record already did it.
            self.ledger.sync()
            self._prepared_synced = True
        return [results[lid] for lid in first]

    def _not_bound(
        self,
        first: dict[int, StoredOrder],
        bound: dict[int, BoundLine],
        results: dict[int, LineResult],
        now: datetime,
    ) -> None:
        """The lines :meth:`Ledger.bind_checked` left alone, read to say why: refused (never
        imported, another order, cancelled, not handed over) or acknowledged already. One
        that may be bound after all (nothing else writes inside the transaction: not seen)
        is bound here and added to ``bound``."""
        rest = [lid for lid in first if lid not in bound]
        known = self.ledger.binding_lines(rest)
        late: list[tuple[int, str]] = []
        for lid in rest:
            so = first[lid]
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
            late.append((lid, so.host_order_id))
            rejected = row.hold_kind is HoldKind.REJECTED_BY_CI
            bound[lid] = BoundLine(row.hold_reason if rejected else None, False)
        if late:
            self.ledger.bind_stored(late, now)

    def flush_acks(self) -> list[LineResult]:
        """Acknowledge every line the host stored that CI has not taken yet."""
        if not self.options.mark_exported:
            return []
        return self._ack(self.ledger.stored_unacked(), self.clock())

    def _ack(
        self,
        ids: Sequence[int],
        now: datetime,
        prepare_with: Mappings | None = None,
        *,
        settle: bool = False,
        taken: Sequence[int] = (),
        pool: CallPool | None = None,
    ) -> list[LineResult]:
        """Acknowledge ``ids`` in batches of ``ack_batch_size``.

        The whole call is claimed in one transaction (committed before any CI call); up to
        ``ack_concurrency`` batches are in flight on worker threads, which only make the HTTP
        call: every ledger write (``record_acks``, refusals, queueing, releases) stays on this
        thread, and outcomes are taken in batch order, so the results are those of one batch
        after the other. Once a batch finds CI unreachable, every later batch is queued and
        its claims released, also a batch already in flight (CI takes a repeated
        ``mark_exported`` as a no-op at the next flush).

        Accepted batches are recorded together, up to ``_RECORD_EVERY`` batches per ledger
        transaction (before a batch's claims are released or lines are queued, and at the
        end, also on an exception): recording after CI's answer is always safe, and a crash
        before the record only re-acknowledges those lines at the next flush. ``settle``: the
        caller returns to the host next, so the last record skips its fsync (see below).
        ``taken``: ids this process holds the claim of already, taken at ``now`` with this
        lease (``bind_checked``): what ``claim_acks`` would find held; the rest is claimed.
        ``pool``: the threads to use (:meth:`_ack_pool`, started already); closed here like
        one made here."""
        size = max(1, self.options.ack_batch_size)
        batches = [list(ids[start : start + size]) for start in range(0, len(ids), size)]
        if not batches:
            return []
        claimed = set(taken)
        every = len(claimed) == len(ids)  # usual (bind_checked claimed them): no line to sort
        rest = [] if every else [lid for lid in ids if lid not in claimed]
        if rest:
            claimed.update(self.ledger.claim_acks(rest, now, self.options.lease_seconds))
            every = len(claimed) == len(set(ids))
        held = set(claimed)  # claims not yet ended by record_acks or release_acks
        others = [] if every else [lid for lid in ids if lid not in claimed]
        acked = (
            {
                lid
                for lid, row in self.ledger.get_lines(others, light=True).items()
                if row.state == "acked"
            }
            if others
            else set()
        )
        mine = batches if every else [[lid for lid in b if lid in claimed] for b in batches]
        pool = self._ack_pool() if pool is None else pool
        workers = 1 if pool is None else pool.workers
        if pool is None:
            prepare_with = None  # nothing would run meanwhile: no overlap to win
        # Calls handed to the pool at once: ``workers`` (the next as one ends), or every
        # batch when the next chunk is evaluated meanwhile (the pool still runs ``workers``).
        in_flight = workers if prepare_with is None else len(batches)
        calls: dict[int, Future[None]] = {}
        ahead = 0  # next batch to hand to a worker
        results: list[LineResult] = []
        stop_reason: str | None = None
        failed = False
        accepted: list[list[int]] = []  # batches CI accepted, not recorded yet

        def record(*, durable: bool = True) -> None:
            if accepted:
                self.ledger.record_acks([lid for b in accepted for lid in b], now, durable=durable)
                accepted.clear()
                if durable:
                    self._prepared_synced = True  # its fsync syncs the evaluation ahead too
                crashpoint("ack_recorded")

        try:
            for k, batch in enumerate(batches):
                if stop_reason is not None:
                    record()
                    results += self._queue(batch, stop_reason, now)
                    continue
                # A line acked already, or in flight in another process, is not sent again.
                head = (
                    []
                    if every
                    else [
                        LineResult(lid, LineOutcome.ALREADY_DONE, "already marked exported in CI")
                        if lid in acked
                        else LineResult(
                            lid, LineOutcome.QUEUED, "queued: being acknowledged elsewhere"
                        )
                        for lid in batch
                        if lid not in claimed
                    ]
                )
                own = mine[k]
                if not own:
                    results += head
                    continue
                call: Future[None] | None = None
                if pool is not None:
                    ahead = max(ahead, k)
                    while ahead < len(batches) and len(calls) < in_flight:
                        if mine[ahead]:
                            calls[ahead] = pool.submit(self.client.mark_exported, mine[ahead])
                        ahead += 1
                    if prepare_with is not None:
                        # Every batch is queued on the pool (``workers`` at a time): the
                        # next chunk is evaluated here meanwhile, and the calls go on.
                        self._prepare_quietly(prepare_with)
                        prepare_with = None
                    call = calls.pop(k)
                outcome = self._send_claimed_ack(own, now, call, accepted)
                if isinstance(outcome, str) or any(r.outcome is not _ACCEPTED for r in outcome):
                    record()
                    self.ledger.release_acks(own)  # queued or refused: free for the next attempt
                elif len(accepted) >= _RECORD_EVERY:
                    record()
                held.difference_update(own)
                if isinstance(outcome, str):
                    stop_reason = outcome
                    results += self._queue(batch, outcome, now)
                else:
                    results += head + outcome
            # ``settle`` (mark_exported: the hook returns next): no CI call or hand-over
            # follows in this call, so the last record may skip its fsync. Lost in a power
            # cut, its lines stay ``stored`` and claimed, as a kill at ``ack_sent`` leaves them
            # (the next flush re-sends, CI takes a repeated mark_exported as a no-op), and the
            # next CI call or hand-over follows a durable commit (claim, binding or delivery),
            # whose fsync syncs this one too. A flush inside an import stays durable: the
            # import hands its batch over right after; so does the record of a call that
            # evaluated the next chunk ahead (the next import hands it over without a commit).
            record(durable=not settle or self.prepared is not None)
        except BaseException:
            failed = True
            raise
        finally:
            if pool is not None:
                # After a stop or an exception (Ctrl-C too), calls still queued or running are
                # cut short; every worker thread is joined before going on.
                pool.close(abort=failed or stop_reason is not None)
            if failed:
                # CI took these: record them (a ledger failure here must not hide the first).
                with contextlib.suppress(Exception):
                    record()
            if held:
                self.ledger.release_acks(held)  # claimed but never settled here
        return results

    def _send_ack(self, batch: list[int], now: datetime) -> list[LineResult] | str:
        """Claim one batch in the ledger, then acknowledge what was claimed. A line acked
        already, or in flight in another process, is not sent again."""
        claimed = self.ledger.claim_acks(batch, now, self.options.lease_seconds)
        mine = set(claimed)
        others = [lid for lid in batch if lid not in mine]
        acked = {
            lid
            for lid, row in self.ledger.get_lines(others, light=True).items()
            if row.state == "acked"
        }
        results = [
            LineResult(lid, LineOutcome.ALREADY_DONE, "already marked exported in CI")
            if lid in acked
            else LineResult(lid, LineOutcome.QUEUED, "queued: being acknowledged elsewhere")
            for lid in others
        ]
        if not claimed:
            return results
        try:
            outcome = self._send_claimed_ack(claimed, now)
        except BaseException:
            self.ledger.release_acks(claimed)
            raise
        if isinstance(outcome, str) or any(r.outcome is not _ACCEPTED for r in outcome):
            self.ledger.release_acks(claimed)  # queued or refused: free for the next attempt
        return outcome if isinstance(outcome, str) else results + outcome

    def _send_claimed_ack(
        self,
        batch: list[int],
        now: datetime,
        call: Future[None] | None = None,
        accepted: list[list[int]] | None = None,
    ) -> list[LineResult] | str:
        """Acknowledge one claimed batch (``call``: its ``mark_exported`` already running on a
        worker thread). Returns the results, or a reason string when CI could not be reached
        (the caller queues this batch and the rest). Accepted in one call: recorded here, or
        appended to ``accepted`` for the caller to record (see :meth:`_ack`)."""
        try:
            if call is None:
                self.client.mark_exported(batch)
            else:
                call.result()  # the worker's exception, if any, is raised here
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
        if accepted is not None:
            accepted.append(batch)
        else:
            self.ledger.record_acks(batch, now)  # one transaction, batched writes
            crashpoint("ack_recorded")
        # Positional builder: one result per acknowledged line (see _accepted).
        return [_accepted(lid, _ACCEPTED, "", None, None, None) for lid in batch]

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


_encode_json = msgspec.json.Encoder().encode


def _fields_text(fields: list[Any]) -> str:
    """The fast path's parsed fields as JSON text: msgspec writes it ~10x faster than
    ``json.dumps`` (valid unicode is assured there: see ``connector.ci.fast.record_text``;
    no floats); anything it refuses goes to ``json.dumps``. Both read back equal."""
    try:
        return _encode_json(fields).decode("utf-8")
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        return json.dumps(fields, separators=(",", ":"))


# Accepted ack batches recorded per ledger transaction at most (bounds the re-acks a crash
# before the record causes; CI takes them as no-ops).
_RECORD_EVERY = 16


def _binding_refusal(
    account: str, so: StoredOrder, lid: int, row: BindingLine | None
) -> str | None:
    if row is None:
        return f"line {lid} was never imported for account {account}: not acknowledged"
    if row.orderid != so.orderid:
        return f"line {lid} belongs to order {row.orderid}, not {so.orderid}: not acknowledged"
    if row.state == "cancelled" or (
        row.ci_status in CANCELLED_STATUSES and row.state not in HOST_STATES
    ):
        # Cancelled before it was handed over: the host cannot have it. One cancelled after
        # (state delivered) may well be stored: its binding and ack go through.
        return f"line {lid} was cancelled in CI: not acknowledged"
    if row.state in ("staged", "held"):
        why = f" ({row.hold_reason})" if row.hold_reason else ""
        return f"line {lid} was not handed to the host yet{why}: not acknowledged"
    return None


def _sku_label(sku: str, bom_sku: str | None) -> str:
    if bom_sku:
        return f"{sku!r} (bom_sku {bom_sku!r})"
    return repr(sku)


# -- the parsed form stored per line (ledger ``lines.parsed``, compact positional JSON) -------
# Record part, then line part. Decimals as strings, datetimes ISO. Delivery rebuilds
# Order/OrderLine/Address from it without marshmallow.
(
    _F_ORDERID,
    _F_PARENT,
    _F_DATE,
    _F_SHIP_TO,
    _F_BILLING,
    _F_TOTAL,
    _F_METHOD,
    _F_SUPPLIER,
    _F_RECORD,
    _F_LID,
    _F_FLI,
    _F_SKU,
    _F_BOM,
    _F_NAME,
    _F_QTY,
    _F_PRICE,
    _F_COST,
    _F_DISCOUNT,
    _F_STATUS,
    _F_SHIP_BY,
    _F_UUID,
    _F_VOUCHER,
    _F_GIFT,
) = range(23)
_PARSED_LEN = 23

# Evaluation reads every line's parsed form back: decoded against its layout, the two
# addresses (16 of its 23 values) stay undecoded (``msgspec.Raw``) until the order's first
# record is read for them, once per order; prices and dates must be text, as this module
# writes them. A form of any other shape (a problem entry, an older layout, text msgspec
# refuses) takes the plain JSON decode, and evaluation treats it as before.
_PARSED_TYPE = tuple[
    Any, Any, str, msgspec.Raw, msgspec.Raw, str, Any, Any, Any,  # record head
    Any, Any, Any, Any, Any, Any, str, str | None, str, Any, str | None, Any, Any, Any,
]  # fmt: skip
_decode_parsed_typed = msgspec.json.Decoder(_PARSED_TYPE).decode


def _decode_parsed(text: str) -> Any:
    """A stored parsed form for evaluation: a tuple in the layout above (addresses
    ``msgspec.Raw``), or the plain JSON value when the text has another shape."""
    try:
        return _decode_parsed_typed(text)
    except msgspec.DecodeError:  # includes msgspec.ValidationError
        return json_value(text)


def _unraw(value: Any) -> Any:
    """A value of a parsed form, its JSON decoded if :func:`_decode_parsed` left it raw."""
    if type(value) is msgspec.Raw:
        return json_value(bytes(value))
    return value


def _record_text(raw: Any) -> str:
    """The raw record as stored (once per record, shared by its lines)."""
    try:
        return json.dumps(raw, sort_keys=True, default=str)
    except TypeError:
        # Keys of mixed types cannot be sorted (a hostile payload): keep CI's order instead.
        return json.dumps(raw, default=str)


def _address_fields(address: Address) -> list[Any]:
    return [
        address.name,
        address.address1,
        address.address2,
        address.city,
        address.state,
        address.zip,
        address.country,
        address.phone,
    ]


def _address(values: list[Any]) -> Address:
    if type(values) is list and len(values) == _ADDRESS_LEN:
        return _build_address(*values)
    return Address(*values)  # another shape (a hand-edited ledger): Address decides


def _record_head(record: ParsedRecord) -> list[Any]:
    return [
        record.orderid,
        record.parent_orderid,
        record.order_date.isoformat(),
        _address_fields(record.ship_to),
        _address_fields(record.billing) if record.billing is not None else None,
        str(record.total),
        record.shipping_method,
        record.supplier_name,
        record.lines[0].ci_lineitemid,  # identifies the record: its total is counted once
    ]


def _line_fields(line: OrderLine) -> list[Any]:
    return [
        line.ci_lineitemid,
        line.fulfillment_lineitem_id,
        line.sku,
        line.bom_sku,
        line.name,
        line.quantity,
        str(line.unit_price),
        None if line.groupon_cost is None else str(line.groupon_cost),
        str(line.discount),
        line.status or "open",
        None if line.ship_by is None else line.ship_by.isoformat(),
        line.order_line_item_uuid,
        line.voucher_code,
        line.gift_message,
    ]


class _Values(dict[Any, Any]):
    """Text -> its value, made on first use (``make``): delivery turns the same few price
    and date texts into values again and again (a catalogue has few prices, a page few
    minutes), and both are immutable, so one object serves every line. A plain dict
    subscript (``__missing__`` on a miss) costs a fraction of an ``lru_cache`` call; emptied
    at 4,096 entries, so it stays small whatever the listing."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[Any], Any]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: Any) -> Any:
        if type(key) is not str:
            # Only text is kept: equal numbers of other types (0 and -0.0, 1 and 1.0) would
            # share an entry and give one the other's value.
            return self._make(key)
        if len(self) >= 4096:
            self.clear()
        value = self[key] = self._make(key)
        return value


_T = TypeVar("_T")


def _positional_builder(cls: type[_T]) -> Callable[..., _T]:
    """A builder of ``cls`` (a frozen, slotted dataclass) from every field, positionally,
    ~3x cheaper than ``cls(...)``: evaluation builds an Order, its lines and two addresses
    per order (a third of its CPU went to their ``__init__``, one descriptor call per field).

    The fields are stored in a plain class of the same slots (a specialised attribute store
    each), then the instance becomes ``cls`` by ``__class__`` assignment, which CPython
    allows between classes of one layout: the result is a ``cls`` instance like any other
    (same type, values, equality, hash, immutability); only the build is cheaper. Falls back
    to ``cls`` itself if its layout is not one plain slot per field or it has a
    ``__post_init__``."""
    names = tuple(f.name for f in dataclass_fields(cls))  # type: ignore[arg-type]
    slots = cls.__dict__.get("__slots__")
    if (
        slots != names
        or cls.__bases__ != (object,)
        or "__init__" not in cls.__dict__
        or hasattr(cls, "__post_init__")  # its checks would be skipped: the class builds
    ):
        return cls
    # The same ``__slots__`` object: the layout check compares it first.
    parts = type(f"_{cls.__name__}Parts", (), {"__slots__": slots})
    body = "".join(f"    obj.{name} = {name}\n" for name in names)
    source = (
        f"def build({', '.join(names)}):\n    obj = _parts()\n{body}"
        "    obj.__class__ = _cls\n    return obj\n"
    )
    namespace: dict[str, Any] = {"_parts": parts, "_cls": cls}
    exec(source, namespace)  # noqa: S102 (the dataclass's own field names, as dataclasses does)
    build: Callable[..., _T] = namespace["build"]
    return build


_build_order = _positional_builder(Order)
_build_order_line = _positional_builder(OrderLine)
_build_address = _positional_builder(Address)
# LineResult built per acknowledged line: every field positionally, half the cost of its
# (keyword-default) __init__; the same LineResult instance as LineResult(lid, ACCEPTED).
_accepted = _positional_builder(LineResult)
# The member read once: each ``LineOutcome.ACCEPTED`` goes through EnumType.__getattr__'s
# slot (~3x a global read), and the ack checks read it per line.
_ACCEPTED = LineOutcome.ACCEPTED
_ADDRESS_LEN = len(dataclass_fields(Address))

_DECIMALS = _Values(Decimal)
_DATETIMES = _Values(datetime.fromisoformat)
_decimal = _DECIMALS.__getitem__
_iso_datetime = _DATETIMES.__getitem__
_ZERO = Decimal("0")
_UNRESOLVED: Any = object()  # a (sku, bom_sku) not looked up yet (None: looked up, unmapped)


def _order_line(f: list[Any], components: tuple[SkuComponent, ...] = ()) -> OrderLine:
    cost = f[_F_COST]
    ship_by = f[_F_SHIP_BY]
    # Positional, in OrderLine's field order (every field: the builder has no defaults).
    return _build_order_line(
        f[_F_LID],
        f[_F_FLI],
        f[_F_SKU],
        f[_F_BOM],
        f[_F_NAME],
        f[_F_QTY],
        _DECIMALS[f[_F_PRICE]],
        components,
        None if cost is None else _DECIMALS[cost],
        _DECIMALS[f[_F_DISCOUNT]],
        f[_F_STATUS],
        None if ship_by is None else _DATETIMES[ship_by],
        f[_F_UUID],
        f[_F_VOUCHER],
        f[_F_GIFT],
    )


def _row_fields(row: LineRow | EvalLine) -> list[Any] | str:
    """The parsed form of a ledger line, or the reason it has none. Rows staged before
    schema v3 carry only the raw record: parsed here once (the legacy path)."""
    parsed = row.parsed
    if isinstance(parsed, list) and len(parsed) == _PARSED_LEN:
        return parsed
    if isinstance(parsed, dict) and "problem" in parsed:
        return str(parsed["problem"])
    if row.record is None:
        return "no record stored"
    result = parse_record(row.record)
    if isinstance(result, RecordProblem):
        return result.reason
    for line in result.lines:
        if line.ci_lineitemid == row.ci_lineitemid:
            return _record_head(result) + _line_fields(line)
    return "the stored record no longer contains this line"
