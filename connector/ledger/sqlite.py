"""The SQLite ledger: the plugin's durable memory of every CI line and outbound call.

One file per account (``<data_dir>/ledger-<account>.sqlite3``), WAL journal,
``synchronous=FULL``: a commit is on disk before the plugin calls CI, so even a power loss
cannot forget that a line was stored by the host or that tracking is being sent. The price is
one fsync per commit and the engine commits once per batch, not per line. The one exception is
the record of what CI accepted (:meth:`Ledger.record_tracking_accepted`): its loss leaves what
a kill just before it leaves, and the next commit, durable before any further call, syncs it.

Writes join the innermost open :meth:`Ledger.transaction`; outside one, each write commits on
its own. One connection per ledger, guarded by a re-entrant lock, so threads may share it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from connector.errors import LedgerError, LedgerIdentityError
from connector.ledger.migrations import MIGRATIONS
from connector.models import CarrierEvent, HeldLine, HoldKind
from connector.runtime import checkpoint
from connector.runtime.checkpoint import WalCheckpointer
from connector.runtime.files import ensure_private
from connector.runtime.identity import owner_is_dead, process_owner
from connector.secrets import redact

__all__ = [
    "HOST_STATES",
    "LINE_STATES",
    "OUTBOX_STATES",
    "UNCONFIRMED_STATES",
    "BindingLine",
    "BoundLine",
    "DispatchLine",
    "KnownLine",
    "Ledger",
    "LedgerIdentity",
    "LedgerVersionError",
    "LineRow",
    "OutboxRow",
    "json_value",
    "ledger_path",
    "open_ledger_file",
    "record_key",
]

LINE_STATES = ("staged", "held", "delivered", "stored", "acked", "cancelled")
OUTBOX_STATES = ("pending", "sending", "accepted", "rejected", "held", "retry", "manual")

_LINE_COLUMNS = frozenset(
    {
        "orderid",
        "fulfillment_lineitem_id",
        "record",
        "order_date",
        "ship_by",
        "quantity",
        "sku",
        "bom_sku",
        "state",
        "hold_kind",
        "hold_reason",
        "held_since",
        "host_order_id",
        "ci_status",
        "qty_shipped",
        "ack_attempts",
        "cancel_detected_at",
        "cancel_reported",
        "parsed",
        "pending_eval",
    }
)
_OUTBOX_COLUMNS = frozenset(
    {
        "carrier_code",
        "endpoint",
        "state",
        "hold_kind",
        "reason",
        "attempts",
        "next_attempt_at",
        "quantity",
        "fulfillment_lineitem_id",
        "orderid",
        "courier",
        "service",
    }
)


class LedgerVersionError(LedgerError):
    """The ledger file was written by a newer connector than this one."""


UNCONFIRMED_STATES = ("staged", "held", "delivered")
"""Line states not yet confirmed by the host (re-evaluated every import round)."""

_UNFINISHED = "state != 'acked'"
"""The condition of the partial index ``lines_state`` (schema v12): a query that looks lines
up by a state other than ``acked`` carries it, so the planner may use the index (SQLite
takes a partial index only for a query whose WHERE holds its condition's terms)."""

HOST_STATES = ("delivered", "stored", "acked")
"""Line states of lines the host has been handed (the lines SLA risks and carrier events are
accepted for, and the only ones reported as cancellations). A ledger line in state
``cancelled`` was cancelled *before* it was handed over; a line Groupon cancels later keeps its
state and carries the CI status instead."""

# The columns of a LineRow, in the order _line_from reads them (by position: faster than by
# name, and the same for sqlite3.Row and the PostgreSQL adapter's rows). ``{record}`` and
# ``{parsed}`` are filled per read: the raw record lives in ``records`` (schema v8) and is
# read only where a step needs it.
_ROW_COLUMNS = (
    "ci_lineitemid, account, orderid, fulfillment_lineitem_id, {record} AS record,"
    " {parsed} AS parsed, order_date, ship_by, quantity, sku, bom_sku, state, hold_kind,"
    " hold_reason, held_since, host_order_id, ci_status, qty_shipped, first_seen, updated_at,"
    " ack_attempts, cancel_detected_at, cancel_reported"
)
_RECORD_OF_LINE = "(SELECT records.record FROM records WHERE records.key = lines.record_key)"
# Full rows: the raw record from the side table (pre-v8 schemas: the inline column).
_FULL_COLUMNS = _ROW_COLUMNS.format(record=_RECORD_OF_LINE, parsed="parsed")
_FULL_COLUMNS_INLINE = _ROW_COLUMNS.format(record="record", parsed="parsed")
# The raw record without the parsed form (dispatch pre-flight: the ship-to address only).
_RECORD_COLUMNS = _ROW_COLUMNS.format(record=_RECORD_OF_LINE, parsed="NULL")
_RECORD_COLUMNS_INLINE = _ROW_COLUMNS.format(record="record", parsed="NULL")
# Evaluation: the raw record only when no parsed form exists (rows staged before v3).
_EVAL_COLUMNS = _ROW_COLUMNS.format(
    record=f"CASE WHEN parsed IS NULL THEN {_RECORD_OF_LINE} END", parsed="parsed"
)
# Bindings, acknowledgements, cancellations: no JSON read or decoded at all.
_LIGHT_COLUMNS = _ROW_COLUMNS.format(record="NULL", parsed="NULL")
_EVAL_COLUMNS_INLINE = _ROW_COLUMNS.format(
    record="CASE WHEN parsed IS NULL THEN record END", parsed="parsed"
)
# Schema v9: the parsed form lives in ``line_parsed``, joined where a read needs it (its
# columns line_id and parsed are the only names it adds: ``parsed`` is always qualified).
_JOIN_PARSED = " LEFT JOIN line_parsed ON line_parsed.line_id = lines.ci_lineitemid"
_FULL_COLUMNS_V9 = _ROW_COLUMNS.format(record=_RECORD_OF_LINE, parsed="line_parsed.parsed")
_EVAL_COLUMNS_V9 = _ROW_COLUMNS.format(
    record=f"CASE WHEN line_parsed.parsed IS NULL THEN {_RECORD_OF_LINE} END",
    parsed="line_parsed.parsed",
)

# EvalLine's columns, by position; ``{record}`` / ``{parsed}`` filled per schema as above.
_EVAL_LINE_COLUMNS = (
    "ci_lineitemid, orderid, state, ci_status, hold_kind, hold_reason, first_seen,"
    " {record} AS record, {parsed} AS parsed"
)
_EVAL_LINE_V9 = _EVAL_LINE_COLUMNS.format(
    record=f"CASE WHEN line_parsed.parsed IS NULL THEN {_RECORD_OF_LINE} END",
    parsed="line_parsed.parsed",
)
_EVAL_LINE_V8 = _EVAL_LINE_COLUMNS.format(
    record=f"CASE WHEN parsed IS NULL THEN {_RECORD_OF_LINE} END", parsed="parsed"
)
_EVAL_LINE_INLINE = _EVAL_LINE_COLUMNS.format(
    record="CASE WHEN parsed IS NULL THEN record END", parsed="parsed"
)

_STAGE_RECORD = "INSERT OR IGNORE INTO records (key, record) VALUES (?, ?)"
_STAGE_INSERT = (
    "INSERT OR IGNORE INTO lines (ci_lineitemid, account, orderid, fulfillment_lineitem_id,"
    " record_key, parsed, order_date, ship_by, quantity, sku, bom_sku, state, hold_kind,"
    " hold_reason, held_since, ci_status, first_seen, updated_at, seen_round, pending_eval)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1)"
)
_STAGE_REFRESH = (
    "UPDATE lines SET record_key = ?, parsed = ?, orderid = ?, fulfillment_lineitem_id = ?,"
    " order_date = ?, ship_by = ?, quantity = ?, sku = ?, bom_sku = ?, ci_status = ?,"
    " cancel_detected_at = ?, seen_round = ?, pending_eval = 1, updated_at = ?"
    " WHERE ci_lineitemid = ?"
)
_STAGE_BAD_REFRESH = (
    "UPDATE lines SET record_key = ?, parsed = ?, seen_round = ?, pending_eval = 1,"
    " updated_at = ? WHERE ci_lineitemid = ?"
)
# Schema v9: the same rows without ``parsed`` (position 5 of an insert, 1 of a refresh),
# which goes to ``line_parsed``.
_STAGE_INSERT_V9 = _STAGE_INSERT.replace(" parsed,", "").replace("?,?,?,", "?,?,", 1)
_STAGE_REFRESH_V9 = _STAGE_REFRESH.replace(" parsed = ?,", "")
_STAGE_BAD_REFRESH_V9 = _STAGE_BAD_REFRESH.replace(" parsed = ?,", "")
# The usual new line (no hold): hold_kind and held_since as literal NULLs, not parameters.
# Python 3.11's sqlite3 binds None only after trying to adapt it (a failed adapter look-up
# raising and clearing an AttributeError with a formatted message, ~2.4 K instructions per
# None): two per staged line, ~6 % of staging's statement cost on a 20k import.
_STAGE_INSERT_V9_PLAIN = _STAGE_INSERT_V9.replace(
    "?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1", "?,?,?,?,?,?,?,?,?,?,?,NULL,?,NULL,?,?,?,?,1"
)
# An insert row cut to _STAGE_INSERT_V9_PLAIN's values, and to _STAGE_PARSED's: taken in C
# (itemgetter), not by slicing and unpacking each row in Python (~40 % of a page's row work).
_PLAIN_VALUES = itemgetter(0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 15, 16, 17, 18)
_PARSED_VALUES = itemgetter(0, 5)
_STAGE_PARSED = "INSERT OR IGNORE INTO line_parsed (line_id, parsed) VALUES (?, ?)"
_SET_PARSED = "INSERT OR REPLACE INTO line_parsed (line_id, parsed) VALUES (?, ?)"
_STAGE_STATUS = (
    "UPDATE lines SET ci_status = ?, cancel_detected_at = ?, seen_round = ?,"
    " updated_at = CASE WHEN ci_status = ? THEN updated_at ELSE ? END WHERE ci_lineitemid = ?"
)
_SET_STATE = (
    "UPDATE lines SET state = ?, hold_kind = ?, hold_reason = ?, updated_at = ?,"
    " held_since = CASE WHEN ? IS NULL THEN NULL"
    " WHEN hold_kind = ? AND held_since IS NOT NULL THEN held_since ELSE ? END,"
    " pending_eval = 0 WHERE ci_lineitemid IN ({marks})"
)


# A line's acknowledgement recorded (``record_acks``), ``{marks}`` its ids' placeholders.
_ACK_LINES = (
    "UPDATE lines SET state = 'acked', ack_attempts = ack_attempts + 1, ack_owner = NULL,"
    " ack_lease_until = NULL, updated_at = ? WHERE ci_lineitemid IN ({marks})"
)


# Bindings: one statement per :data:`_IN_CHUNK` lines, the ``(id, host order id)`` pairs
# joined as a ``VALUES`` list (``UPDATE ... FROM``, SQLite >= 3.33 and PostgreSQL): ~40% less
# CPU than one ``executemany`` row per line, whose per-row bind and step dominated.
_BIND = (
    "UPDATE lines SET state = 'stored', host_order_id = v.column2, updated_at = ?"
    " FROM (VALUES {values}) AS v WHERE lines.ci_lineitemid = v.column1"
)
# The binding with this process's ack claim, for the lines nobody else holds a claim of
# (see bind_stored); a line held elsewhere is bound by _BIND_HELD_ELSEWHERE, claim untouched.
_BIND_CLAIM = (
    "UPDATE lines SET state = 'stored', host_order_id = v.column2, updated_at = ?,"
    " ack_owner = ?, ack_lease_until = ? FROM (VALUES {values}) AS v"
    " WHERE lines.ci_lineitemid = v.column1 AND (lines.ack_owner IS NULL OR lines.ack_owner = ?)"
)
_BIND_HELD_ELSEWHERE = _BIND + " AND lines.ack_owner IS NOT NULL AND lines.ack_owner != ?"

# bind_checked: the binding checks of mark_exported folded into the write. A line is bound
# only if known, of the host's order and handed over (delivered, or stored already).
# _BIND_CHECKED is the usual case: every line of the statement may be bound, CI refused none
# of them (hold rejected_by_ci: no claim, a result of its own), and, with ``{claim}``, none is
# held elsewhere; its row count says so, with no read before or after (a RETURNING list cost
# the UPDATE ~30% more: SQLite keeps the rows in a temporary table). Otherwise
# _BIND_CHECKED_RETURNING runs on the same rows and says line by line what it bound and
# claimed (rewriting the lines the first one bound with the same values).
_BIND_CHECKED = (
    "UPDATE lines SET state = 'stored', host_order_id = v.column3, updated_at = ?{claim}"
    " FROM (VALUES {values}) AS v WHERE lines.ci_lineitemid = v.column1"
    " AND lines.orderid = v.column2 AND (lines.state = 'delivered' OR lines.state = 'stored')"
    " AND (lines.hold_kind IS NULL OR lines.hold_kind != 'rejected_by_ci')"
    "{owned}"
)
_BIND_CHECKED_CLAIM = ", ack_owner = ?, ack_lease_until = ?"
_BIND_CHECKED_OWNED = " AND (lines.ack_owner IS NULL OR lines.ack_owner = ?)"
_BIND_CHECKED_RETURNING = (
    "UPDATE lines SET state = 'stored', host_order_id = v.column3, updated_at = ?{claim}"
    " FROM (VALUES {values}) AS v WHERE lines.ci_lineitemid = v.column1"
    " AND lines.orderid = v.column2 AND (lines.state = 'delivered' OR lines.state = 'stored')"
    " RETURNING ci_lineitemid, hold_kind = 'rejected_by_ci', hold_reason"
    "{claimed}"
)
_CLAIMABLE = (
    "(hold_kind IS NULL OR hold_kind != 'rejected_by_ci') AND (ack_owner IS NULL OR ack_owner = ?)"
)
_BIND_RETURNING_CLAIM = (
    f", ack_owner = CASE WHEN {_CLAIMABLE} THEN ? ELSE ack_owner END,"
    f" ack_lease_until = CASE WHEN {_CLAIMABLE} THEN ? ELSE ack_lease_until END"
)
_BIND_RETURNING_CLAIMED = ", ack_owner IS NOT NULL AND ack_owner = ? AND ack_lease_until = ?"


def record_key(text: str, anchor: int) -> str:
    """The key of a raw record's stored text in ``records`` (schema v8):
    ``<anchor>:<SHA-256 of the text, 96 bits in hex>``. Content-addressed, so the lines of one
    record share one row and a record staged again unchanged writes nothing. ``anchor`` is
    the record's first line id: keys of new records then sort near the end of the key index,
    as their ids do (a bare hash would scatter the inserts of one page over every page of
    the index, and each of those pages is written again at commit)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{anchor}:{digest[:24]}"


def _anchor_of_key(key: str) -> int:
    """The anchor of a key made by :func:`record_key` or by migration v8 (``line:<id>``)."""
    head, _, rest = key.partition(":")
    with suppress(ValueError):
        return int(rest if head == "line" else head)
    return 0


def _anchor_of_record(record: dict[str, Any], ci_lineitemid: int) -> int:
    """The first line id of a raw record (the line's own id if the record names none)."""
    items = record.get("line_items")
    if isinstance(items, list) and items and isinstance(items[0], dict):
        first = items[0].get("ci_lineitemid")
        if isinstance(first, int) and not isinstance(first, bool):
            return first
    return ci_lineitemid


@dataclass(frozen=True, slots=True)
class LedgerIdentity:
    """What a ledger belongs to (schema v6): a random id (also in the marker file beside it),
    the account name and supplier id, when it was created, and the host OMS that works it
    (``None`` until a host first called a hook on it)."""

    ledger_id: str
    account: str
    supplier_id: str
    created_at: datetime
    host: str | None


def _lease_free(owner: str | None, until: str | None, me: str, now: datetime) -> bool:
    """Whether a claim held by ``owner`` until ``until`` may be taken by ``me`` at ``now``:
    nobody holds it, ``me`` does, it expired, or its owner was a process of this machine
    that no longer runs (killed: nothing will ever finish its call)."""
    if owner is None or owner == me:
        return True
    if until is None or datetime.fromisoformat(until) <= now:
        return True
    return owner_is_dead(owner)


_PERSONAL_KEYS = ("customer", "billing", "billing_address", "shipping_address")
"""Keys of a raw CI record that hold a person's name, address or phone (removed on prune)."""


def _pruned_record(text: str | None) -> str | None:
    """The raw record without customer details (ids, dates, SKUs and prices stay: the
    sales-threshold guard reads unit prices); ``None`` when it is not a JSON object."""
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    for key in _PERSONAL_KEYS:
        record.pop(key, None)
    for item in record.get("line_items") or ():
        if isinstance(item, dict) and item.get("gift_message"):
            item["gift_message"] = ""
    record["pruned"] = True
    return json.dumps(record, sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class KnownLine:
    """The few columns staging needs to decide insert / refresh / status-only."""

    ci_lineitemid: int
    state: str
    ci_status: str
    cancel_detected_at: str | None
    seen_round: int


class BindingLine(NamedTuple):
    """The columns the host's bindings are checked against (``mark_exported``): a tuple
    read by position, built ~10x faster than a :class:`LineRow` from a quarter of its
    columns (every stored line is read once this way)."""

    ci_lineitemid: int
    orderid: str
    state: str
    ci_status: str
    hold_kind: HoldKind | None
    hold_reason: str
    host_order_id: str | None


class BoundLine(NamedTuple):
    """What the acknowledgement needs of a line :meth:`Ledger.bind_checked` bound (the
    usual one, bound and claimed or not claimed, is one shared value: no tuple per line)."""

    rejected_reason: str | None
    """The hold's reason if CI refused its ``mark_exported`` (hold ``rejected_by_ci``)."""
    claimed: bool
    """This process holds its ``mark_exported`` claim (taken, or held already, until then)."""


_BOUND = BoundLine(None, False)
_BOUND_CLAIMED = BoundLine(None, True)


class DispatchLine(NamedTuple):
    """The columns dispatch pre-flight checks a line against
    (:meth:`Ledger.dispatch_lines_and_customers`): a tuple read by position, without the
    record or the dates a :class:`LineRow` decodes (a wave of shipments reads every line it
    ships)."""

    ci_lineitemid: int
    orderid: str
    fulfillment_lineitem_id: str | None
    quantity: int
    state: str
    ci_status: str


class EvalLine(NamedTuple):
    """The columns delivery evaluates a line by (:meth:`Ledger.eval_rows_of_orders`): a
    third of a :class:`LineRow`'s, one date decoded instead of up to six, and a tuple built
    without the frozen dataclass's per-field ``__setattr__`` (every delivered line is read
    once this way). ``record``: only for a line without a parsed form (staged before v3)."""

    ci_lineitemid: int
    orderid: str
    state: str
    ci_status: str
    hold_kind: HoldKind | None
    hold_reason: str
    first_seen: datetime
    record: dict[str, Any] | None
    parsed: Any


# A round stages its lines with few distinct first-seen stamps (one per staging batch):
# evaluation parses each text once instead of once per line.
_first_seen = lru_cache(maxsize=256)(datetime.fromisoformat)
_NOTHING: Any = object()  # no value read yet


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class LineRow:
    """One CI line as the ledger knows it.

    ``state``: staged (seen, not yet handed over) | held | delivered (handed to the host, not
    confirmed) | stored (host confirmed) | acked (CI marked it exported) | cancelled.
    ``tracking`` lists the tracking numbers CI accepted for the line.
    """

    ci_lineitemid: int
    account: str
    orderid: str
    fulfillment_lineitem_id: str | None
    record: dict[str, Any] | None
    order_date: datetime | None
    ship_by: datetime | None
    quantity: int
    sku: str
    bom_sku: str | None
    state: str
    hold_kind: HoldKind | None
    hold_reason: str
    held_since: datetime | None
    host_order_id: str | None
    ci_status: str
    qty_shipped: int
    first_seen: datetime
    updated_at: datetime
    ack_attempts: int
    cancel_detected_at: datetime | None
    cancel_reported: bool
    tracking: tuple[str, ...] = ()
    parsed: Any = None
    """Normalised fields delivery needs (schema v3), ``None`` for rows staged before v3."""

    @property
    def open_quantity(self) -> int:
        """Units not yet covered by accepted tracking."""
        return max(self.quantity - self.qty_shipped, 0)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One (shipment, line, tracking number) on its way to CI."""

    id: int
    shipment_id: str
    ci_lineitemid: int
    fulfillment_lineitem_id: str | None
    orderid: str
    tracking: str
    courier: str
    service: str
    carrier_code: str | None
    quantity: int
    endpoint: str | None
    state: str
    hold_kind: HoldKind | None
    reason: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime


def _line_from(
    row: Sequence[Any],
    tracking: tuple[str, ...] = (),
    loads: Callable[[str], Any] | None = None,
) -> LineRow:
    """A LineRow from a row of :data:`_ROW_COLUMNS` (read by position); ``loads`` decodes
    the raw record (default :func:`json_value`)."""
    (
        lid,
        account,
        orderid,
        fli,
        record,
        parsed,
        order_date,
        ship_by,
        quantity,
        sku,
        bom_sku,
        state,
        hold_kind,
        hold_reason,
        held_since,
        host_order_id,
        ci_status,
        qty_shipped,
        first_seen,
        updated_at,
        ack_attempts,
        cancel_detected_at,
        cancel_reported,
    ) = row
    return LineRow(
        lid,
        account,
        orderid,
        fli,
        (loads or json_value)(record) if record else None,
        None if order_date is None else datetime.fromisoformat(order_date),
        None if ship_by is None else datetime.fromisoformat(ship_by),
        quantity,
        sku,
        bom_sku,
        state,
        HoldKind(hold_kind) if hold_kind else None,
        hold_reason,
        None if held_since is None else datetime.fromisoformat(held_since),
        host_order_id,
        ci_status,
        qty_shipped,
        datetime.fromisoformat(first_seen),
        datetime.fromisoformat(updated_at),
        ack_attempts,
        None if cancel_detected_at is None else datetime.fromisoformat(cancel_detected_at),
        bool(cancel_reported),
        tracking,
        json_value(parsed) if parsed else None,
    )


_decode_json = msgspec.json.Decoder().decode


class _CustomerOnly(msgspec.Struct):
    """A raw record as dispatch pre-flight reads it: every other field is skipped, not
    built (a record is ~2 KB of JSON; its customer a few hundred bytes)."""

    customer: Any = None


_decode_customer = msgspec.json.Decoder(_CustomerOnly).decode


def _customer_of(text: str) -> Any:
    """``json_value(text).get("customer")`` without building the rest of the record. Text
    msgspec refuses, or a record that is not an object, takes the full decode."""
    try:
        return _decode_customer(text).customer
    except msgspec.DecodeError:
        record = json_value(text)
        return record.get("customer") if isinstance(record, dict) else None


def _cached_customer(text: str | None, decoded: dict[str, Any]) -> Any:
    """The customer of a raw record's ``text`` (None without a record), each distinct text
    decoded once per read (the lines of one record share it)."""
    if not text:
        return None
    if text not in decoded:
        decoded[text] = _customer_of(text)
    return decoded[text]


def json_value(text: str | bytes) -> Any:
    """``json.loads(text)``, through msgspec's decoder (~4x faster per ledger row). Text it
    refuses (lone surrogates, NaN/Infinity, numbers beyond float range: all accepted by
    ``json.loads``) goes to ``json.loads``, so the value is the same either way."""
    try:
        return _decode_json(text)
    except msgspec.DecodeError:
        return json.loads(text)


def _outbox_from(row: sqlite3.Row) -> OutboxRow:
    return OutboxRow(
        id=row["id"],
        shipment_id=row["shipment_id"],
        ci_lineitemid=row["ci_lineitemid"],
        fulfillment_lineitem_id=row["fulfillment_lineitem_id"],
        orderid=row["orderid"],
        tracking=row["tracking"],
        courier=row["courier"],
        service=row["service"],
        carrier_code=row["carrier_code"],
        quantity=row["quantity"],
        endpoint=row["endpoint"],
        state=row["state"],
        hold_kind=HoldKind(row["hold_kind"]) if row["hold_kind"] else None,
        reason=row["reason"],
        attempts=row["attempts"],
        next_attempt_at=_dt(row["next_attempt_at"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


_IN_CHUNK = 500
"""Values per ``IN (...)`` query, well under SQLite's bound-parameter limit."""
_SMALL_INSERT = 8
"""Up to this many outbox rows are inserted by one multi-row ``INSERT`` (see
``_insert_outbox``)."""
_VALUES_ROWS = 500
"""Rows per multi-row ``INSERT``."""
_MAX_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
"""SQLite's default bound-parameter limit (PostgreSQL allows 65535)."""


_PAD_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 384, _IN_CHUNK)
"""Row counts a padded statement is written for (see :func:`_padded_rows`)."""


def _padded_rows(count: int) -> int:
    """The row count to write a statement of ``count`` id rows for: one of a few sizes, so
    its text repeats and SQLite's statement cache hits. Parsing a statement of 500 ``(?, ?)``
    rows cost ~12,000 instructions a row; the padding rows (NULLs, which match no line) cost
    a few hundred."""
    for size in _PAD_SIZES:
        if count <= size:
            return size
    return count


@lru_cache(maxsize=64)
def _bind_checked_sql(rows: int, claim: bool, returning: bool) -> str:
    """:data:`_BIND_CHECKED` (or ``_RETURNING``) for ``rows`` ``(id, orderid, host order id)``
    rows."""
    values = ",".join(["(?, ?, ?)"] * rows)
    if returning:
        return _BIND_CHECKED_RETURNING.format(
            values=values,
            claim=_BIND_RETURNING_CLAIM if claim else "",
            claimed=_BIND_RETURNING_CLAIMED if claim else "",
        )
    return _BIND_CHECKED.format(
        values=values,
        claim=_BIND_CHECKED_CLAIM if claim else "",
        owned=_BIND_CHECKED_OWNED if claim else "",
    )


def _piece_rows(count: int) -> int:
    """The largest of :data:`_PAD_SIZES` not over ``count`` (``count`` > 0): rows cut into
    such pieces are written by a few statement texts that recur, without padding."""
    for size in reversed(_PAD_SIZES):
        if size <= count:
            return size
    return count


@lru_cache(maxsize=16)
def _log_accepted_sql(rows: int) -> str:
    """The ``acks`` log rows of ``rows`` accepted lines, ``(id, at)`` parameters each."""
    return "INSERT INTO acks (ci_lineitemid, at, outcome, reason) VALUES " + ",".join(  # noqa: S608
        ["(?, ?, 'accepted', '')"] * rows
    )


def _in_chunks(values: Sequence[Any]) -> Iterator[tuple[list[Any], str]]:
    """``values`` in slices of :data:`_IN_CHUNK`, each with its ``?,?,...`` placeholders."""
    for start in range(0, len(values), _IN_CHUNK):
        chunk = list(values[start : start + _IN_CHUNK])
        yield chunk, ",".join("?" * len(chunk))


def _padded_in_chunks(values: Sequence[Any]) -> Iterator[tuple[list[Any], str]]:
    """:func:`_in_chunks` with each slice padded with NULLs to one of :data:`_PAD_SIZES`:
    ``x IN (..., NULL)`` matches what ``x IN (...)`` does, and the statement text recurs, so
    SQLite's statement cache hits instead of parsing the last, partial slice's text anew."""
    for start in range(0, len(values), _IN_CHUNK):
        chunk = list(values[start : start + _IN_CHUNK])
        size = _padded_rows(len(chunk))
        chunk += [None] * (size - len(chunk))
        yield chunk, _in_marks(size)


@lru_cache(maxsize=32)
def _in_marks(count: int) -> str:
    """``count`` ``?`` placeholders, comma-separated."""
    return ",".join("?" * count)


# Up to this many values, a lookup by an indexed column is written as one ``column = ?``
# part per value (UNION ALL) rather than ``column IN (...)``: SQLite builds a temporary
# table for an IN list of two or more values that drives an index search, which costs more
# than the search itself (a one-shipment dispatch's lists hold one to a few values).
_EQ_PARTS_MAX = 4


_first = itemgetter(0)


def _eq_or_in(column: str, count: int) -> list[str]:
    """The ``WHERE`` terms for ``count`` values of ``column``: ``column = ?`` each (one
    UNION ALL part per term) for a short list, else one ``column IN (...)``."""
    if count <= _EQ_PARTS_MAX:
        return [f"{column} = ?"] * count
    return [f"{column} IN ({_in_marks(count)})"]


def _to_sql(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, HoldKind):
        return value.value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def ledger_path(data_dir: Path, account_name: str) -> Path:
    """Where the ledger of ``account_name`` lives."""
    return Path(data_dir) / f"ledger-{account_name}.sqlite3"


def open_ledger_file(
    path: Path,
    account_name: str,
    migrations: Sequence[tuple[int, str]] = MIGRATIONS,
) -> Ledger:
    """Open (creating or migrating) the ledger file at ``path``.

    :raises LedgerVersionError: the file's schema is newer than ``migrations`` know.
    :raises LedgerError: the file cannot be opened or migrated.
    """
    return Ledger(path, account_name, migrations)


class Ledger:
    """Durable per-account state. See the module docstring for the transaction rule."""

    # A file ledger's background checkpointer (none on PostgreSQL).
    _checkpointer: WalCheckpointer | None = None

    def __init__(
        self, path: Path, account_name: str, migrations: Sequence[tuple[int, str]] = MIGRATIONS
    ) -> None:
        self.path = Path(path)
        self.account = account_name
        self._lock = threading.RLock()
        self._depth = 0
        try:
            # Created 0600 before SQLite opens it (its -wal/-shm files take the same mode).
            self.created = ensure_private(self.path)
            self._file_id = _file_id(self.path)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._conn.row_factory = sqlite3.Row
            # New files only (an existing file keeps its size): a raw record (~1.5 KB) fits
            # twice in a 4 KB page, leaving ~23% of it empty, five times in 8 KB (~4%). On 20k
            # lines: file -14%, checkpoint bytes -13%, half the write calls, staging CPU -10%.
            self._conn.execute("PRAGMA page_size=8192")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.execute("PRAGMA foreign_keys=ON")
            # Statement journals in memory: a statement that writes many rows inside a
            # transaction (UPDATE ... IN (...), multi-row INSERT) keeps the prior content of
            # each page it changes so that it alone can be undone; past 64 KB SQLite spills
            # that to a temporary file (/var/tmp/etilqs_*), opened, written and deleted per
            # statement. On a 20k-line import: ~6,700 writes (31 MB) to such files, all on the
            # main thread in phase 2; in memory none (the copy is bounded by the statement's
            # pages, a few hundred KB). Nothing durable lives there (it dies with the statement).
            self._conn.execute("PRAGMA temp_store=MEMORY")
            # Checkpoints run on a thread of their own from SQLite's 1,000 pages of WAL;
            # this connection's automatic one is only the backstop.
            self._checkpointer = checkpoint.attach(self._conn, self.path)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(redact(f"cannot open ledger {self.path}: {exc}")) from None
        self._migrate(migrations)

    # -- plumbing ---------------------------------------------------------------------------

    def _migrate(self, migrations: Sequence[tuple[int, str]]) -> None:
        latest = max((v for v, _ in migrations), default=0)
        try:
            # Not through transaction(): its LedgerError would hide which step failed.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
                )
                row = self._conn.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            current = int(row["v"] or 0)
        except sqlite3.OperationalError as exc:  # locked, disk full, I/O: not a bad file
            raise self._error(exc, "cannot read the schema version") from None
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                redact(f"ledger {self.path} is not a readable SQLite file: {exc}")
            ) from None
        # Outbox leases exist from v5, the records table from v8 (a ledger opened with fewer
        # migrations, in tests).
        self._leases = max(latest, current) >= 5
        self._side_records = max(latest, current) >= 8
        self._side_parsed = max(latest, current) >= 9
        if current > latest:
            raise LedgerVersionError(
                f"ledger {self.path} has schema version {current}, newer than this connector "
                f"supports ({latest}); upgrade groupon-ci-connector or restore an older ledger"
            )
        for version, script in sorted(migrations):
            if version <= current:
                continue
            with self.transaction():
                try:
                    # executescript would COMMIT our transaction; run statements one by one.
                    for statement in _split_sql(script):
                        self._conn.execute(statement)
                    self._conn.execute(
                        "INSERT INTO schema_version (version) VALUES (?)", (version,)
                    )
                except sqlite3.Error as exc:
                    raise self._error(exc, f"migration to version {version} failed") from None

    def schema_version(self) -> int:
        """The schema version of the open file."""
        rows = self._query("SELECT MAX(version) AS v FROM schema_version")
        return int(rows[0]["v"] or 0)

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Ledger]:
        """One atomic batch. Nested calls join the outer transaction (and its durability).

        ``durable=False``: the commit is not fsync'd (see :meth:`_begin`). Only for a batch
        whose loss in a power cut leaves the state a kill just before it would have left,
        and that no external effect (a CI call, a hand-over to the host) follows before a
        durable commit, which then syncs it too.

        Any ``sqlite3.Error`` inside becomes :class:`LedgerError` (the hook contract allows
        only ChannelError), keeping SQLite's message."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                try:
                    self._begin(durable)
                except sqlite3.Error as exc:
                    self._end(durable)
                    raise self._error(exc, "cannot begin") from None
            self._depth += 1
            try:
                yield self
            except BaseException as exc:
                self._depth -= 1
                if self._depth == 0:
                    self._rollback()
                    self._end(durable)
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc) from None
                raise
            self._depth -= 1
            if self._depth == 0:
                try:
                    self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._rollback()
                    raise self._error(exc, "commit failed") from None
                finally:
                    self._end(durable)
                if self._checkpointer is not None:
                    self._checkpointer.after_commit()

    def _begin(self, durable: bool) -> None:
        """``BEGIN IMMEDIATE``; a non-durable batch first drops to ``synchronous=NORMAL``:
        under WAL its commit is not fsync'd, a kill cannot lose it (the OS has the pages), a
        power cut may lose it and later commits (never half of one: WAL frames are
        checksummed), and the next ``FULL`` commit's fsync of the WAL syncs it too."""
        if not durable:
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("BEGIN IMMEDIATE")

    def _end(self, durable: bool) -> None:
        """After the outermost commit or rollback: back to ``synchronous=FULL``."""
        if not durable:
            try:
                self._conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:  # later commits must not go on unsynced
                raise self._error(exc, "cannot restore synchronous=FULL") from None

    def _rollback(self) -> None:
        """Roll back if a transaction is still open: SQLite ends it by itself on some errors
        (disk full, I/O), and a second ROLLBACK would raise and hide the real error."""
        if not self._conn.in_transaction:
            return
        # The error being raised already says what went wrong.
        with suppress(sqlite3.Error):
            self._conn.execute("ROLLBACK")

    def _error(self, exc: sqlite3.Error, what: str = "") -> LedgerError:
        """A LedgerError carrying SQLite's message (redacted), naming the file."""
        prefix = f"ledger {self.path}: " + (f"{what}: " if what else "")
        return LedgerError(redact(prefix + str(exc)))

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                if self._depth == 0:
                    with self.transaction():
                        return self._conn.execute(sql, params)
                return self._conn.execute(sql, params)
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def _query_tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """:meth:`_query` with each row a plain tuple, for hot reads taken apart by position:
        no ``sqlite3.Row`` is built per row, and unpacking a tuple is one step instead of an
        item lookup per column."""
        with self._lock:
            try:
                cursor = self._conn.cursor()
                cursor.row_factory = None
                return cursor.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def verify_intact(self) -> None:
        """Raise if the ledger file was deleted or replaced since it was opened (the open
        connection would go on writing into a file nobody will ever read again).

        :raises LedgerIdentityError: saying what happened and how to recover.
        """
        try:
            now_id = _file_id(self.path)
        except FileNotFoundError:
            now_id = None
        if now_id == self._file_id:
            return
        what = "was deleted" if now_id is None else "was replaced by another file"
        raise LedgerIdentityError(
            f"ledger {self.path} of account {self.account} {what} while the connector was "
            "working on it; whatever this call recorded went into the lost file. Stop every "
            "process of this account, restore the ledger from a backup if you have one, else "
            f"run `ci-connector reconcile --fix --account {self.account}` to rebuild it from "
            "CI and the host"
        )

    def close(self) -> None:
        """Close the connection (and the background checkpointer's, first: the last
        connection to close checkpoints and removes the WAL, as before)."""
        with self._lock:
            checkpointer, self._checkpointer = self._checkpointer, None
            try:
                if checkpointer is not None:
                    checkpointer.close()
                self._conn.close()
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    # -- lines ------------------------------------------------------------------------------

    def stage_line(
        self,
        *,
        ci_lineitemid: int,
        orderid: str,
        now: datetime,
        fulfillment_lineitem_id: str | None = None,
        record: dict[str, Any] | None = None,
        order_date: datetime | None = None,
        ship_by: datetime | None = None,
        quantity: int = 0,
        sku: str = "",
        bom_sku: str | None = None,
        ci_status: str = "open",
        state: str = "staged",
        hold_kind: HoldKind | None = None,
        hold_reason: str = "",
    ) -> bool:
        """Insert a line seen for the first time. Returns False if it was already known."""
        with self.transaction():
            return self._stage_line(
                ci_lineitemid,
                orderid,
                now,
                fulfillment_lineitem_id,
                self._store_record(record, ci_lineitemid),
                order_date,
                ship_by,
                quantity,
                sku,
                bom_sku,
                ci_status,
                state,
                hold_kind,
                hold_reason,
            )

    def _stage_line(
        self,
        ci_lineitemid: int,
        orderid: str,
        now: datetime,
        fulfillment_lineitem_id: str | None,
        stored: str | None,
        order_date: datetime | None,
        ship_by: datetime | None,
        quantity: int,
        sku: str,
        bom_sku: str | None,
        ci_status: str,
        state: str,
        hold_kind: HoldKind | None,
        hold_reason: str,
    ) -> bool:
        column = "record_key" if self._side_records else "record"
        cur = self._exec(
            "INSERT OR IGNORE INTO lines (ci_lineitemid, account, orderid,"  # noqa: S608
            f" fulfillment_lineitem_id, {column}, order_date, ship_by, quantity, sku, bom_sku,"
            " state, hold_kind, hold_reason, held_since, ci_status, first_seen, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                ci_lineitemid,
                self.account,
                orderid,
                fulfillment_lineitem_id,
                stored,
                _iso(order_date),
                _iso(ship_by),
                quantity,
                sku,
                bom_sku,
                state,
                _to_sql(hold_kind),
                hold_reason,
                _iso(now) if hold_kind else None,
                ci_status,
                _iso(now),
                _iso(now),
            ),
        )
        return cur.rowcount == 1

    def _store_record(self, record: dict[str, Any] | None, ci_lineitemid: int) -> str | None:
        """Write a raw record where this schema keeps it; returns the value of the line's
        column: the key in ``records`` (v8), else the text itself (the inline column)."""
        if record is None:
            return None
        text = _to_sql(record)
        if not self._side_records:
            return str(text)
        key = record_key(text, _anchor_of_record(record, ci_lineitemid))
        self._exec(_STAGE_RECORD, (key, text))
        return key

    def update_line(self, ci_lineitemid: int, now: datetime, **fields: Any) -> None:
        """Set columns of one line (names checked against the schema; ``record`` is the raw
        record, stored in ``records`` from schema v8)."""
        unknown = set(fields) - _LINE_COLUMNS
        if unknown:
            raise ValueError(f"unknown line columns: {sorted(unknown)}")
        if not fields:
            return
        with self.transaction():
            params = {name: _to_sql(v) for name, v in fields.items()}
            if "record" in params and self._side_records:
                params["record_key"] = self._store_record(fields["record"], ci_lineitemid)
                del params["record"]
            if "parsed" in params and self._side_parsed:
                parsed = params.pop("parsed")
                if parsed is None:
                    self._exec("DELETE FROM line_parsed WHERE line_id = ?", (ci_lineitemid,))
                else:
                    self._exec(_SET_PARSED, (ci_lineitemid, parsed))
            assignments = "".join(f"{name} = ?, " for name in params)
            self._exec(
                f"UPDATE lines SET {assignments}updated_at = ? WHERE ci_lineitemid = ?",  # noqa: S608
                [*params.values(), _iso(now), ci_lineitemid],
            )

    def hold_line(self, ci_lineitemid: int, kind: HoldKind, reason: str, now: datetime) -> None:
        """Put a line on hold (keeps ``held_since`` if it was already held for that kind)."""
        self._exec(
            "UPDATE lines SET hold_kind = ?, hold_reason = ?, updated_at = ?,"
            " held_since = CASE WHEN hold_kind = ? AND held_since IS NOT NULL"
            " THEN held_since ELSE ? END WHERE ci_lineitemid = ?",
            (kind.value, reason, _iso(now), kind.value, _iso(now), ci_lineitemid),
        )

    def get_line(self, ci_lineitemid: int) -> LineRow | None:
        """One line, or None if the ledger never saw it."""
        return self.get_lines([ci_lineitemid]).get(ci_lineitemid)

    @property
    def _full_select(self) -> str:
        """``SELECT <full row> FROM lines ...`` (the parsed form joined from schema v9)."""
        if self._side_parsed:
            return f"SELECT {_FULL_COLUMNS_V9} FROM lines{_JOIN_PARSED}"  # noqa: S608
        columns = _FULL_COLUMNS if self._side_records else _FULL_COLUMNS_INLINE
        return f"SELECT {columns} FROM lines"  # noqa: S608

    def get_lines(
        self, ids: Iterable[int], *, light: bool = False, parsed: bool = True
    ) -> dict[int, LineRow]:
        """The known lines among ``ids``. ``light``: without ``record``/``parsed`` (no JSON
        read or decoded; for bindings and acknowledgements). ``parsed=False``: the raw
        record without the parsed form (dispatch pre-flight reads only the ship-to); lines of one
        stored record then share one decoded ``record`` dict (treat it as read-only)."""
        wanted = list(dict.fromkeys(ids))
        found: dict[int, LineRow] = {}
        loads: Callable[[str], Any] = json_value
        if light:
            select = f"SELECT {_LIGHT_COLUMNS} FROM lines"  # noqa: S608
        elif not parsed:
            columns = _RECORD_COLUMNS if self._side_records else _RECORD_COLUMNS_INLINE
            select = f"SELECT {columns} FROM lines"  # noqa: S608
            # The lines of one order share one stored record: decode it once (the dict is
            # then shared by those LineRows; pre-flight only reads it).
            decoded: dict[str, Any] = {}

            def loads(text: str) -> Any:
                value = decoded.get(text)
                if value is None:
                    value = decoded[text] = json_value(text)
                return value

        else:
            select = self._full_select
        for chunk, marks in _in_chunks(wanted):
            rows = self._query(f"{select} WHERE ci_lineitemid IN ({marks})", chunk)
            for r in rows:
                line = _line_from(r, (), loads)
                found[line.ci_lineitemid] = line
        return found

    def binding_lines(self, ids: Iterable[int]) -> dict[int, BindingLine]:
        """The known lines among ``ids``, as checked before a binding (no JSON, no dates)."""
        found: dict[int, BindingLine] = {}
        make = BindingLine._make
        for r in self._line_columns(BindingLine._fields, ids):
            line = make(r)
            if line.hold_kind:
                line = line._replace(hold_kind=HoldKind(line.hold_kind))
            found[line.ci_lineitemid] = line
        return found

    def bind_checked(
        self,
        bindings: Sequence[tuple[int, str, str]],
        now: datetime,
        *,
        claim: bool = False,
        lease_seconds: float = 0.0,
        owner: str | None = None,
    ) -> dict[int, BoundLine]:
        """Bind the lines of ``bindings`` ``(id, orderid, host_order_id)`` that may be bound
        -- known, of that order, handed to the host (``delivered``, or ``stored`` already) --
        as :meth:`bind_stored` does; the rest is left untouched (read them with
        :meth:`binding_lines` to say why). Returns the lines bound, by id.

        ``claim``: each bound line CI has not refused (hold ``rejected_by_ci``) also gets
        ``owner``'s ``mark_exported`` claim until ``now + lease_seconds`` where nobody else
        holds it (see :meth:`claim_acks`), in the same row write; :attr:`BoundLine.claimed`
        says which are held so (:meth:`claim_acks` would find them held and write nothing).
        An id given twice is bound with its first ``(orderid, host_order_id)``."""
        stamp = _iso(now)
        me = owner or process_owner()
        until = _iso(now + timedelta(seconds=lease_seconds))
        claiming = claim and self._leases
        rows: dict[int, tuple[str, str]] = {}
        for lid, orderid, host in bindings:
            rows.setdefault(lid, (orderid, host))
        head: tuple[Any, ...] = (stamp, me, until) if claiming else (stamp,)
        tail: tuple[Any, ...] = (me,) if claiming else ()
        found: dict[int, BoundLine] = {}
        items = list(rows.items())
        conn = self._conn
        with self._lock:
            try:
                with self.transaction():
                    for start in range(0, len(items), _IN_CHUNK):
                        chunk = items[start : start + _IN_CHUNK]
                        size = _padded_rows(len(chunk))
                        params: list[Any] = [v for lid, (o, h) in chunk for v in (lid, o, h)]
                        params += [None] * (3 * (size - len(chunk)))  # rows matching no line
                        sql = _bind_checked_sql(size, claiming, False)
                        if conn.execute(sql, (*head, *params, *tail)).rowcount == len(chunk):
                            plain = _BOUND_CLAIMED if claiming else _BOUND
                            found.update(dict.fromkeys([lid for lid, _ in chunk], plain))
                            continue
                        # Some line was left out: the lines it did bind are bound and claimed
                        # again alike (same values), the rest as they may be.
                        self._bind_returning(found, size, params, stamp, me, until, claiming)
            except sqlite3.Error as exc:
                raise self._error(exc) from None
        return found

    def _bind_returning(
        self,
        found: dict[int, BoundLine],
        size: int,
        params: list[Any],
        stamp: str | None,
        me: str,
        until: str | None,
        claiming: bool,
    ) -> None:
        """:meth:`bind_checked` for one chunk, line by line: which lines it bound, which of
        them CI refused, which it claims."""
        if claiming:
            args: tuple[Any, ...] = (stamp, me, me, me, until, *params, me, until)
        else:
            args = (stamp, *params)
        for r in self._conn.execute(_bind_checked_sql(size, claiming, True), args).fetchall():
            if r[1]:
                found[r[0]] = BoundLine(r[2], False)
            else:
                found[r[0]] = _BOUND_CLAIMED if claiming and r[3] else _BOUND

    def dispatch_lines_and_customers(
        self, ids: Iterable[int]
    ) -> tuple[dict[int, DispatchLine], dict[int, Any]]:
        """The known lines among ``ids`` as dispatch pre-flight checks them (no JSON, no
        dates: :meth:`get_lines` ``light=True`` built a whole :class:`LineRow` per line), and
        their :meth:`line_customers`, from one statement (pre-flight needs both for every
        line that passes; two reads of the same rows were two statements per dispatch
        call)."""
        make = DispatchLine._make
        width = len(DispatchLine._fields)
        select = (
            f"SELECT {', '.join(DispatchLine._fields)}, {self._record_column()}"  # noqa: S608
            " FROM lines WHERE"
        )
        lines: dict[int, DispatchLine] = {}
        customers: dict[int, Any] = {}
        decoded: dict[str, Any] = {}
        for chunk, _ in _in_chunks(list(dict.fromkeys(ids))):
            sql = " UNION ALL ".join(
                f"{select} {term}" for term in _eq_or_in("ci_lineitemid", len(chunk))
            )
            rows = self._query_tuples(sql, chunk)
            if len(rows) > 1:
                rows.sort(key=_first)  # the order an IN list on the key gives
            for row in rows:
                lid = row[0]
                lines[lid] = make(row[:width])
                customers[lid] = _cached_customer(row[width], decoded)
        return lines, customers

    def _line_columns(self, columns: Sequence[str], ids: Iterable[int]) -> Iterator[Any]:
        """``columns`` (``lines`` column names, the first ``ci_lineitemid``) of the known
        lines among ``ids``, one row each, 500 ids a query."""
        select = f"SELECT {', '.join(columns)} FROM lines WHERE ci_lineitemid IN"  # noqa: S608
        for chunk, marks in _padded_in_chunks(list(dict.fromkeys(ids))):
            yield from self._query(f"{select} ({marks})", chunk)

    def lines(self, states: Iterable[str] | None = None) -> Iterator[LineRow]:
        """Every line (optionally only in ``states``), with accepted tracking numbers.

        For the SLA clock and reconciliation: dates, quantities, shipped quantities, CI status.
        """
        tracking: dict[int, list[str]] = {}
        for r in self._query(
            "SELECT ci_lineitemid, tracking FROM outbox WHERE state = 'accepted' ORDER BY id"
        ):
            tracking.setdefault(r["ci_lineitemid"], []).append(r["tracking"])
        select = self._full_select
        if states is None:
            rows = self._query(f"{select} ORDER BY ci_lineitemid")
        else:
            wanted = list(states)
            marks = ",".join("?" * len(wanted))
            # Without acknowledged lines, the partial index applies (see _UNFINISHED).
            unfinished = "" if "acked" in wanted else f" AND {_UNFINISHED}"
            rows = self._query(
                f"{select} WHERE state IN ({marks}){unfinished} ORDER BY ci_lineitemid",
                wanted,
            )
        for r in rows:
            yield _line_from(r, tuple(tracking.get(r[0], ())))

    def log_ack(self, ci_lineitemid: int, outcome: str, now: datetime, reason: str = "") -> None:
        """Append to the acknowledgement log."""
        self._exec(
            "INSERT INTO acks (ci_lineitemid, at, outcome, reason) VALUES (?,?,?,?)",
            (ci_lineitemid, _iso(now), outcome, reason),
        )

    def ack_log(self, ci_lineitemid: int | None = None) -> list[tuple[int, str, str]]:
        """(line id, outcome, reason) entries, oldest first."""
        if ci_lineitemid is None:
            rows = self._query("SELECT * FROM acks ORDER BY id")
        else:
            rows = self._query(
                "SELECT * FROM acks WHERE ci_lineitemid = ? ORDER BY id", (ci_lineitemid,)
            )
        return [(r["ci_lineitemid"], r["outcome"], r["reason"]) for r in rows]

    # -- streamed, chunked import (schema v3) --------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        """A value of the ``meta`` table (round counters), or None."""
        rows = self._query("SELECT value FROM meta WHERE name = ?", (name,))
        return str(rows[0]["value"]) if rows else None

    def set_meta(self, name: str, value: str) -> None:
        """Set a value of the ``meta`` table."""
        self._exec(
            "INSERT INTO meta (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def sync(self) -> None:
        """Make every commit so far durable: one durable commit of a one-row write (an
        empty transaction writes, and so syncs, nothing). After commits that skipped their
        fsync (``transaction(durable=False)``) when no durable commit of other work follows
        before an external effect that relies on them."""
        with self.transaction():
            self._exec(
                "INSERT INTO meta (name, value) VALUES ('synced', '1')"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value"
            )

    def import_rounds(self) -> tuple[int, int]:
        """``(current round, last completed round)``; a round is one full read of CI."""
        return int(self.get_meta("import_round") or 0), int(self.get_meta("import_done") or 0)

    def begin_import_round(self) -> int:
        """Start a read of CI: a new round number, and every unconfirmed line is due for
        evaluation again once the round completes (one transaction)."""
        with self.transaction():
            number = self.import_rounds()[0] + 1
            self.set_meta("import_round", str(number))
            marks = ",".join("?" * len(UNCONFIRMED_STATES))
            self._exec(
                f"UPDATE lines SET pending_eval = 1 WHERE state IN ({marks})"  # noqa: S608
                f" AND {_UNFINISHED} AND pending_eval = 0",
                UNCONFIRMED_STATES,
            )
        return number

    def complete_import_round(self, number: int) -> None:
        """Every page of round ``number`` was read and staged: its lines may be delivered."""
        self.set_meta("import_done", str(number))

    def known_lines(self, ids: Iterable[int]) -> dict[int, KnownLine]:
        """Staging view of the known lines among ``ids`` (no JSON decoded)."""
        wanted = list(dict.fromkeys(ids))
        found: dict[int, KnownLine] = {}
        for chunk, marks in _in_chunks(wanted):
            for r in self._query(
                "SELECT ci_lineitemid, state, ci_status, cancel_detected_at, seen_round"  # noqa: S608
                f" FROM lines WHERE ci_lineitemid IN ({marks})",
                chunk,
            ):
                found[r[0]] = KnownLine(r[0], r[1], r[2], r[3], r[4])
        return found

    def stage_rows(
        self,
        *,
        records: Sequence[tuple[str, str]] = (),
        inserts: Sequence[Sequence[Any]] = (),
        refreshes: Sequence[Sequence[Any]] = (),
        bad_refreshes: Sequence[Sequence[Any]] = (),
        statuses: Sequence[Sequence[Any]] = (),
    ) -> None:
        """Stage one page in one transaction with ``executemany`` (positional rows in the
        order of the ``_STAGE_*`` statements). ``records``: ``(record_key(...), text)`` of
        the raw records the inserted and refreshed lines name in their ``record_key``
        column (one per record, written once: a record stored before is left alone)."""
        with self._lock:
            try:
                # Not durable: a page staged and lost in a power cut is staged again by the
                # next read of CI, as after a kill; nothing leaves the process before a
                # durable commit (the round's completion, the delivery) syncs it.
                with self.transaction(durable=False):
                    self._insert_many(_STAGE_RECORD, records)
                    if self._side_parsed:
                        self._stage_parsed(inserts, refreshes, bad_refreshes)
                    else:
                        self._insert_many(_STAGE_INSERT, inserts)
                        if refreshes:
                            self._conn.executemany(_STAGE_REFRESH, refreshes)
                        if bad_refreshes:
                            self._conn.executemany(_STAGE_BAD_REFRESH, bad_refreshes)
                    if statuses:
                        self._conn.executemany(_STAGE_STATUS, statuses)
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def _stage_parsed(
        self,
        inserts: Sequence[Sequence[Any]],
        refreshes: Sequence[Sequence[Any]],
        bad_refreshes: Sequence[Sequence[Any]],
    ) -> None:
        """The line part of :meth:`stage_rows` from schema v9: each row's ``parsed`` (position
        5 of an insert, 1 of a refresh) goes to ``line_parsed``, the rest to ``lines``."""
        try:
            plain = all(
                [
                    len(r) == 19 and r[12] is None and r[14] is None and r[5] is not None
                    for r in inserts
                ]
            )
        except TypeError:  # a malformed row: the statement refuses it below
            plain = False
        if plain:
            # Positions 12 and 14 (hold_kind, held_since) are the statement's NULLs; every
            # row has a parsed form.
            self._insert_many(_STAGE_INSERT_V9_PLAIN, list(map(_PLAIN_VALUES, inserts)))
            self._insert_many(_STAGE_PARSED, list(map(_PARSED_VALUES, inserts)))
        else:  # a page with held lines (broken records): every row as it is
            self._insert_many(_STAGE_INSERT_V9, [(*r[:5], *r[6:]) for r in inserts])
            self._insert_many(_STAGE_PARSED, [(r[0], r[5]) for r in inserts if r[5] is not None])
        for sql, rows in ((_STAGE_REFRESH_V9, refreshes), (_STAGE_BAD_REFRESH_V9, bad_refreshes)):
            if rows:
                self._conn.executemany(sql, [(r[0], *r[2:]) for r in rows])
                # One row per statement: PostgreSQL's upsert refuses a key twice in one.
                self._conn.executemany(_SET_PARSED, [(r[-1], r[1]) for r in rows if r[1]])

    def _insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """``sql`` (an ``INSERT ... VALUES (...)``) for every row, as multi-row ``VALUES``
        statements (a page is one or two statements, not one per row: ~20% less CPU than
        ``executemany`` in SQLite, and one round trip in PostgreSQL)."""
        if not rows:
            return
        head, _, group = sql.partition(" VALUES ")
        per = max(1, min(_VALUES_ROWS, _MAX_PARAMS // len(rows[0])))
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            self._conn.execute(
                f"{head} VALUES {','.join([group] * len(chunk))}",
                list(chain.from_iterable(chunk)),  # the rows' values in a row, flattened in C
            )

    def has_pending_evaluation(self) -> bool:
        """Whether lines of a completed round still wait for evaluation (deliverable work)."""
        rows = self._query("SELECT 1 FROM lines WHERE pending_eval = 1 LIMIT 1")
        return bool(rows)

    def pending_orderids(self, limit: int) -> list[str]:
        """Up to ``limit`` order ids with lines waiting for evaluation (partial index)."""
        rows = self._query(
            "SELECT DISTINCT orderid FROM lines WHERE pending_eval = 1 LIMIT ?", (limit,)
        )
        return [r[0] for r in rows]

    def eval_lines_of_orders(self, orderids: Sequence[str]) -> dict[str, list[LineRow]]:
        """Lines of ``orderids`` for evaluation: ``parsed`` decoded, the raw ``record`` only
        for rows that have no parsed form (staged before schema v3)."""
        grouped: dict[str, list[LineRow]] = {}
        wanted = list(dict.fromkeys(orderids))
        if self._side_parsed:
            select = f"SELECT {_EVAL_COLUMNS_V9} FROM lines{_JOIN_PARSED}"  # noqa: S608
        else:
            columns = _EVAL_COLUMNS if self._side_records else _EVAL_COLUMNS_INLINE
            select = f"SELECT {columns} FROM lines"  # noqa: S608
        for chunk, marks in _in_chunks(wanted):
            for r in self._query(
                f"{select} WHERE orderid IN ({marks}) ORDER BY ci_lineitemid",
                chunk,
            ):
                line = _line_from(r)
                grouped.setdefault(line.orderid, []).append(line)
        return grouped

    def eval_rows_of_orders(
        self, orderids: Sequence[str], decode: Callable[[str], Any] | None = None
    ) -> dict[str, list[EvalLine]]:
        """What delivery evaluates of the lines of ``orderids`` (each order's lines in line
        id order; the orders' own order is the backend's): the :meth:`eval_lines_of_orders`
        rows cut to :class:`EvalLine`'s columns, ``parsed`` decoded, the raw ``record`` only
        for rows without a parsed form.

        ``decode``: turns a stored parsed form (JSON text) into ``EvalLine.parsed`` (default:
        the plain JSON value). The importer passes one that knows the form's layout and
        skips what it may never read (a typed msgspec decode)."""
        grouped: dict[str, list[EvalLine]] = {}
        if self._side_parsed:
            select = f"SELECT {_EVAL_LINE_V9} FROM lines{_JOIN_PARSED}"  # noqa: S608
        else:
            columns = _EVAL_LINE_V8 if self._side_records else _EVAL_LINE_INLINE
            select = f"SELECT {columns} FROM lines"  # noqa: S608
        loads = json_value
        parse = decode or json_value
        date = _first_seen
        # The tuple built directly: NamedTuple's own ``__new__`` is a Python-level lambda
        # (one more frame per line read).
        make = tuple.__new__
        kinds: dict[str, HoldKind] = {}
        unsorted: set[str] = set()
        last_seen: Any = _NOTHING
        first_seen: Any = None
        # No ORDER BY: sorting every row of the chunk (parsed text and all) cost SQLite a
        # temporary B-tree; only each order's own lines must be in line id order, and SQLite
        # reads them so through ``lines_orderid`` (the row id ends each index entry). Any
        # order read otherwise (another plan, PostgreSQL) is sorted here.
        for chunk, marks in _padded_in_chunks(list(dict.fromkeys(orderids))):
            rows = self._query_tuples(f"{select} WHERE orderid IN ({marks})", chunk)
            for lid, orderid, state, status, kind, reason, seen, record, parsed in rows:
                hold = None
                if kind:
                    hold = kinds.get(kind) or kinds.setdefault(kind, HoldKind(kind))
                if seen != last_seen:  # lines staged together share their stamp
                    last_seen, first_seen = seen, date(seen)
                line = make(
                    EvalLine,
                    (
                        lid,
                        orderid,
                        state,
                        status,
                        hold,
                        reason,
                        first_seen,
                        loads(record) if record else None,
                        parse(parsed) if parsed else None,
                    ),
                )
                group = grouped.get(orderid)
                if group is None:
                    grouped[orderid] = [line]
                else:
                    if lid < group[-1][0]:
                        unsorted.add(orderid)
                    group.append(line)
        for orderid in unsorted:
            grouped[orderid].sort(key=lambda line: line.ci_lineitemid)
        return grouped

    def set_line_states(
        self, updates: Sequence[tuple[int, str, HoldKind | None, str]], now: datetime
    ) -> None:
        """One state change per line ``(id, state, hold_kind, hold_reason)``, batched; also
        ends the line's pending evaluation. ``held_since`` is kept while the hold kind stays."""
        stamp = _iso(now)
        # One statement per (state, hold, reason) and 500 lines: a delivery is one or two.
        groups: dict[tuple[str, str | None, str], list[int]] = {}
        last: tuple[Any, ...] = ()
        ids: list[int] = []
        for lid, state, kind, reason in updates:
            if (state, kind, reason) != last:  # runs of one change (a delivery) grouped once
                last = (state, kind, reason)
                # No _to_sql call for the usual no-hold update (its type tests, per line).
                hold = None if kind is None else _to_sql(kind)
                ids = groups.setdefault((state, hold, reason), [])
            ids.append(lid)
        with self._lock:
            try:
                with self.transaction():
                    for (state, hold, reason), ids in groups.items():
                        for chunk, marks in _padded_in_chunks(ids):
                            self._conn.execute(
                                _SET_STATE.format(marks=marks),
                                (state, hold, reason, stamp, hold, hold, stamp, *chunk),
                            )
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def end_evaluation(self, orderids: Sequence[str]) -> None:
        """These orders were evaluated in this round (whatever the outcome)."""
        for chunk, marks in _padded_in_chunks(orderids):
            self._exec(
                f"UPDATE lines SET pending_eval = 0 WHERE pending_eval = 1"  # noqa: S608
                f" AND orderid IN ({marks})",
                chunk,
            )

    def count_in_state(self, ids: Iterable[int], state: str) -> int:
        """How many distinct lines of ``ids`` are known and in ``state`` (one COUNT per 500
        ids: no row is read back)."""
        total = 0
        for chunk, marks in _padded_in_chunks(list(dict.fromkeys(ids))):
            rows = self._query(
                f"SELECT COUNT(*) FROM lines WHERE state = ?"  # noqa: S608
                f" AND ci_lineitemid IN ({marks})",
                (state, *chunk),
            )
            total += int(rows[0][0])
        return total

    def reopen_evaluation(self, orderids: Sequence[str]) -> None:
        """These orders are due for evaluation again (a chunk evaluated ahead and not handed
        over: its unconfirmed lines go back to the queue :meth:`pending_orderids` reads)."""
        marks_states = ",".join("?" * len(UNCONFIRMED_STATES))
        with self.transaction():
            for chunk, marks in _in_chunks(list(dict.fromkeys(orderids))):
                self._exec(
                    f"UPDATE lines SET pending_eval = 1 WHERE pending_eval = 0"  # noqa: S608
                    f" AND state IN ({marks_states}) AND orderid IN ({marks})",
                    (*UNCONFIRMED_STATES, *chunk),
                )

    def unreported_cancellations(self) -> list[LineRow]:
        """Lines the host has (or was handed) that CI shows cancelled, not yet confirmed
        (light rows: no record, no parsed form; index ``lines_cancel_open``)."""
        rows = self._query(
            f"SELECT {_LIGHT_COLUMNS} FROM lines WHERE cancel_reported = 0"  # noqa: S608
            " AND ci_status IN ('cancelled', 'canceled')"
            " AND state IN ('delivered', 'stored', 'acked') ORDER BY ci_lineitemid"
        )
        return [_line_from(r) for r in rows]

    def open_order_dates(self, since: datetime) -> list[datetime]:
        """Distinct order dates (>= ``since``) of lines the host has that are open in CI and
        not fully shipped: the windows watched for Groupon-side cancellations."""
        rows = self._query(
            "SELECT DISTINCT order_date FROM lines WHERE state IN ('delivered', 'stored', 'acked')"
            " AND order_date IS NOT NULL AND order_date >= ?"
            " AND ci_status NOT IN ('cancelled', 'canceled') AND qty_shipped < quantity"
            " ORDER BY order_date",
            (_iso(since),),
        )
        return [datetime.fromisoformat(r[0]) for r in rows]

    def invalid_held_order_dates(self, since: datetime) -> list[datetime]:
        """Distinct order dates (>= ``since``) of unconfirmed lines held for an invalid CI
        record: window mode re-reads them so a record CI fixed releases its order."""
        rows = self._query(
            "SELECT DISTINCT order_date FROM lines WHERE hold_kind = ? AND state = 'held'"  # noqa: S608
            f" AND {_UNFINISHED} AND order_date IS NOT NULL AND order_date >= ?"
            " ORDER BY order_date",
            (HoldKind.INVALID_PAYLOAD.value, _iso(since)),
        )
        return [datetime.fromisoformat(r[0]) for r in rows]

    def staged_order_dates(self) -> list[tuple[int, str, datetime, datetime]]:
        """``(line id, order id, order date, first seen)`` of every staged, unheld line with
        an order date: what may be waiting on the import delay."""
        rows = self._query(
            "SELECT ci_lineitemid, orderid, order_date, first_seen FROM lines"  # noqa: S608
            f" WHERE state = 'staged' AND {_UNFINISHED} AND hold_kind IS NULL"
            " AND order_date IS NOT NULL"
            " ORDER BY order_date, ci_lineitemid"
        )
        return [
            (r[0], r[1], datetime.fromisoformat(r[2]), datetime.fromisoformat(r[3])) for r in rows
        ]

    def stored_unacked(self) -> list[int]:
        """Line ids the host stored that CI has not acknowledged (not refused by CI)."""
        rows = self._query(
            f"SELECT ci_lineitemid FROM lines WHERE state = 'stored' AND {_UNFINISHED}"  # noqa: S608
            " AND (hold_kind IS NULL OR hold_kind != ?) ORDER BY ci_lineitemid",
            (HoldKind.REJECTED_BY_CI.value,),
        )
        return [r[0] for r in rows]

    def claim_acks(
        self,
        ids: Sequence[int],
        now: datetime,
        lease_seconds: float,
        owner: str | None = None,
    ) -> list[int]:
        """Reserve the ``mark_exported`` of lines ``ids`` for ``owner`` (default: this
        process) until ``now + lease_seconds``. Returns the ids claimed, in order: lines still
        ``stored`` whose previous claim is free. A line acked already, or in flight in
        another live process, is not claimed."""
        me = owner or process_owner()
        until = _iso(now + timedelta(seconds=lease_seconds))
        claimed: list[int] = []
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return claimed

        def held(cur: Any) -> bool:
            return bool(cur is not None and cur[1] == "stored" and cur[2] == me and cur[3] == until)

        with self._lock:
            try:
                # Claimed already by this process until then (with their binding, see
                # bind_stored): one read settles it, without a write transaction. Nobody
                # takes a live claim over, so what the read shows stays true.
                current = self._ack_claims(wanted)
                if all(held(current.get(lid)) for lid in wanted):
                    return wanted
                with self.transaction():
                    current = self._ack_claims(wanted)
                    for lid in wanted:
                        cur = current.get(lid)
                        if cur is None or cur[1] != "stored":
                            continue
                        if _lease_free(cur[2], cur[3], me, now):
                            claimed.append(lid)
                    # Rows held already until then are not written again.
                    stale = [lid for lid in claimed if not held(current[lid])]
                    for chunk, marks in _in_chunks(stale):
                        self._conn.execute(
                            "UPDATE lines SET ack_owner = ?, ack_lease_until = ?"  # noqa: S608
                            f" WHERE ci_lineitemid IN ({marks})",
                            (me, until, *chunk),
                        )
            except sqlite3.Error as exc:
                raise self._error(exc) from None
        return claimed

    def _ack_claims(self, ids: Sequence[int]) -> dict[int, sqlite3.Row]:
        """``(ci_lineitemid, state, ack_owner, ack_lease_until)`` of the known lines ``ids``."""
        current: dict[int, sqlite3.Row] = {}
        for chunk, marks in _in_chunks(ids):
            for r in self._conn.execute(
                "SELECT ci_lineitemid, state, ack_owner, ack_lease_until"  # noqa: S608
                f" FROM lines WHERE ci_lineitemid IN ({marks})",
                chunk,
            ):
                current[r[0]] = r
        return current

    def release_acks(self, ids: Iterable[int], owner: str | None = None) -> None:
        """End ``owner``'s ``mark_exported`` claims on lines ``ids``."""
        me = owner or process_owner()
        with self._lock:
            try:
                with self.transaction():
                    self._conn.executemany(
                        "UPDATE lines SET ack_owner = NULL, ack_lease_until = NULL"
                        " WHERE ci_lineitemid = ? AND ack_owner = ?",
                        [(lid, me) for lid in ids],
                    )
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def record_acks(self, ids: Sequence[int], now: datetime, *, durable: bool = True) -> list[int]:
        """CI accepted ``mark_exported`` for ``ids``: state ``acked``, attempts + 1, logged,
        claim ended. Idempotent by line: a line already ``acked`` changes nothing and is not
        logged again. Returns the ids recorded now. ``durable=False``: see
        :meth:`transaction` (the caller makes no CI call before a durable commit)."""
        stamp = _iso(now)
        with self._lock:
            try:
                with self.transaction(durable=durable):
                    fresh: list[int] = []
                    for chunk, _ in _in_chunks(list(dict.fromkeys(ids))):
                        fresh += self._ack_chunk(chunk, stamp)
                    # In pieces of the padded sizes (a log row cannot be padded): each
                    # statement text recurs, so it is parsed once (see _padded_rows).
                    start = 0
                    while start < len(fresh):
                        size = _piece_rows(len(fresh) - start)
                        piece = fresh[start : start + size]
                        start += size
                        self._conn.execute(
                            _log_accepted_sql(size), [v for lid in piece for v in (lid, stamp)]
                        )
            except sqlite3.Error as exc:
                raise self._error(exc) from None
        return fresh

    def _ack_chunk(self, chunk: list[int], stamp: str | None) -> list[int]:
        """``record_acks`` for one chunk of distinct ids: the ids recorded now, in order.

        Usually every line is known and not acked yet (this process claimed it): one UPDATE
        of the lines not acked finds that from its row count, with no read first (a read of
        the chunk cost ~18% of ``record_acks``). Otherwise the UPDATE is undone (savepoint)
        and the lines acked already are read and left out, as always; an unknown id is not
        one of them (it is logged, as it always was). The id list is padded with NULLs
        (which match no line) to a size whose statement text recurs (see _padded_rows)."""
        pad = [None] * (_padded_rows(len(chunk)) - len(chunk))
        marks = _in_marks(len(chunk) + len(pad))
        self._conn.execute("SAVEPOINT record_acks")
        changed = self._conn.execute(
            _ACK_LINES.format(marks=marks) + " AND state != 'acked'", (stamp, *chunk, *pad)
        ).rowcount
        if changed != len(chunk):
            self._conn.execute("ROLLBACK TO record_acks")
            done = {
                r[0]
                for r in self._conn.execute(
                    "SELECT ci_lineitemid FROM lines"  # noqa: S608
                    f" WHERE ci_lineitemid IN ({marks}) AND state = 'acked'",
                    (*chunk, *pad),
                )
            }
            chunk = [lid for lid in chunk if lid not in done]
            if chunk:
                marks = ",".join("?" * len(chunk))
                self._conn.execute(_ACK_LINES.format(marks=marks), (stamp, *chunk))
        self._conn.execute("RELEASE record_acks")
        return chunk

    def bind_stored(
        self,
        bindings: Sequence[tuple[int, str]],
        now: datetime,
        *,
        claim: Iterable[int] = (),
        lease_seconds: float = 0.0,
        owner: str | None = None,
    ) -> list[int]:
        """The host stored these lines: ``(id, host_order_id)`` -> state ``stored``.

        ``claim``: lines among them this process acknowledges next: their ``mark_exported``
        claim (see :meth:`claim_acks`) is taken in the same row write, where nobody else
        holds it; :meth:`claim_acks` then finds it held and writes nothing. A claim that is
        not used must be released (:meth:`release_acks`).

        Returns ids of ``claim`` this process holds now (in ``claim``'s order), known from
        the write's row counts: every line of a statement claimed. :meth:`claim_acks` would
        return them too (held until ``now`` + lease, nothing written), so a caller need not
        ask it for these. The rest (held elsewhere, unknown, not bound, or in a statement
        where one was) may still be held: :meth:`claim_acks` answers for them as before."""
        stamp = _iso(now)
        wanted = list(dict.fromkeys(claim)) if self._leases else []
        claiming = set(wanted)
        me = owner or process_owner()
        until = _iso(now + timedelta(seconds=lease_seconds))
        # A line bound twice in one call keeps its last host order id (as row-by-row writes
        # did): the join must not offer one row two values.
        claims: list[Any] = []
        plain: list[Any] = []
        for lid, host in dict(bindings).items():
            (claims if lid in claiming else plain).append((lid, host))
        taken: set[int] = set()
        with self._lock:
            try:
                with self.transaction():
                    for chunk, _ in _in_chunks(claims):
                        values = ",".join(["(?, ?)"] * len(chunk))
                        pairs = [v for pair in chunk for v in pair]
                        cur = self._conn.execute(
                            _BIND_CLAIM.format(values=values), (stamp, me, until, *pairs, me)
                        )
                        if cur.rowcount == len(chunk):
                            # Every line of the chunk was free or this process's: all claimed
                            # (known without reading a row back).
                            taken.update(lid for lid, _ in chunk)
                            continue
                        # Some are held elsewhere (bound, claim left alone) or unknown; which
                        # of the chunk this process holds, claim_acks reads when asked.
                        self._conn.execute(
                            _BIND_HELD_ELSEWHERE.format(values=values), (stamp, *pairs, me)
                        )
                    for chunk, _ in _in_chunks(plain):
                        self._conn.execute(
                            _BIND.format(values=",".join(["(?, ?)"] * len(chunk))),
                            (stamp, *(v for pair in chunk for v in pair)),
                        )
            except sqlite3.Error as exc:
                raise self._error(exc) from None
        return [lid for lid in wanted if lid in taken]

    # -- record problems without a usable line id --------------------------------------------

    def replace_problems(
        self, problems: Sequence[tuple[str, str | None, str]], now: datetime
    ) -> None:
        """Replace the list of broken records ``(key, orderid, reason)`` (keeps first_seen)."""
        keep = {r["key"]: r["first_seen"] for r in self._query("SELECT * FROM problems")}
        with self.transaction():
            self._exec("DELETE FROM problems")
            for key, orderid, reason in problems:
                self._exec(
                    "INSERT OR REPLACE INTO problems (key, orderid, reason, first_seen)"
                    " VALUES (?,?,?,?)",
                    (key, orderid, reason, keep.get(key, _iso(now))),
                )

    def add_problems(self, problems: Sequence[tuple[str, str | None, str]], now: datetime) -> None:
        """Add broken records (window mode: a record is only seen while its window is read)."""
        with self.transaction():
            for key, orderid, reason in problems:
                self._exec(
                    "INSERT OR IGNORE INTO problems (key, orderid, reason, first_seen)"
                    " VALUES (?,?,?,?)",
                    (key, orderid, reason, _iso(now)),
                )

    def discard_problems(self, orderids: Iterable[str], *, keep: Iterable[str] = ()) -> int:
        """Forget broken records of ``orderids`` except the keys in ``keep`` (window mode: the
        order was re-read clean, so CI fixed the record). Batched; returns how many went."""
        wanted = set(orderids)
        kept = set(keep)
        if not wanted:
            return 0
        doomed = [
            (r["key"],)
            for r in self._query("SELECT key, orderid FROM problems WHERE orderid IS NOT NULL")
            if r["orderid"] in wanted and r["key"] not in kept
        ]
        if doomed:
            with self._lock:
                try:
                    with self.transaction():
                        self._conn.executemany("DELETE FROM problems WHERE key = ?", doomed)
                except sqlite3.Error as exc:
                    raise self._error(exc) from None
        return len(doomed)

    # -- outbox -----------------------------------------------------------------------------

    def insert_outbox(
        self,
        *,
        shipment_id: str,
        ci_lineitemid: int,
        tracking: str,
        quantity: int,
        now: datetime,
        orderid: str = "",
        fulfillment_lineitem_id: str | None = None,
        courier: str = "",
        service: str = "",
        carrier_code: str | None = None,
        endpoint: str | None = None,
        state: str = "pending",
        hold_kind: HoldKind | None = None,
        reason: str = "",
        attempts: int = 0,
    ) -> OutboxRow:
        """Insert a row keyed (shipment, line, tracking); return the stored row (old if any).

        ``state="sending"`` with ``attempts=1`` inserts a row that is sent right away (saves
        the separate "mark sending" commit)."""
        self._exec(
            "INSERT OR IGNORE INTO outbox (shipment_id, ci_lineitemid, fulfillment_lineitem_id,"
            " orderid, tracking, courier, service, carrier_code, quantity, endpoint, state,"
            " hold_kind, reason, attempts, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                shipment_id,
                ci_lineitemid,
                fulfillment_lineitem_id,
                orderid,
                tracking,
                courier,
                service,
                carrier_code,
                quantity,
                endpoint,
                state,
                _to_sql(hold_kind),
                reason,
                attempts,
                _iso(now),
                _iso(now),
            ),
        )
        rows = self._query(
            "SELECT * FROM outbox WHERE shipment_id = ? AND ci_lineitemid = ? AND tracking = ?",
            (shipment_id, ci_lineitemid, tracking),
        )
        return _outbox_from(rows[0])

    def insert_outbox_many(
        self, rows: Sequence[Mapping[str, Any]], now: datetime
    ) -> list[OutboxRow]:
        """:meth:`insert_outbox` for many rows (each a mapping of its keyword arguments but
        ``now``): one ``executemany`` and at most one read-back per 500 shipments instead of
        two statements a row. Returns the stored rows (old ones where the key existed), in
        the order given."""
        return self._insert_outbox(rows, now, None, None)[0]

    def insert_outbox_claimed(
        self,
        rows: Sequence[Mapping[str, Any]],
        now: datetime,
        lease_seconds: float,
        owner: str | None = None,
    ) -> tuple[list[OutboxRow], set[int]]:
        """:meth:`insert_outbox_many` whose new ``sending`` rows are inserted claimed by
        ``owner`` (default: this process) until ``now + lease_seconds``: what
        :meth:`claim_outbox` would write next, without its read and update. Returns the
        stored rows in the order given and the ids of the rows this call inserted claimed; a
        row whose key existed is returned as stored, for :meth:`claim_outbox`.
        """
        return self._insert_outbox(rows, now, owner or process_owner(), lease_seconds)

    # ``+state``: the state filter of :meth:`active_outbox_of` may not use an index. With more
    # than a few values in an IN list SQLite's planner preferred ``outbox_state`` (every
    # active row, accepted ones included: a scan per dispatch call that grew with the ledger)
    # over the index of the column searched.
    # Written as ``=`` comparisons, not ``+state IN (...)``: SQLite compiles an IN list of
    # constants into an ephemeral table filled when the statement runs (one per UNION ALL
    # part). In a callgrind micro-benchmark of the three-part statement: ~200,000
    # instructions a call with the IN list, ~105,000 this way; in the one-shipment dispatch
    # benchmark the whole change measured far less (~25,000 a shipment with the next one).
    _active_outbox_filter = (
        "(+state = 'pending' OR +state = 'sending' OR +state = 'retry' OR +state = 'accepted')"
    )

    # (data version, identity) of the last identity() read; see there.
    _identity_seen: tuple[int, LedgerIdentity | None] | None = None

    # Rows inserted in one transaction take consecutive ids (AUTOINCREMENT under the write
    # lock of BEGIN IMMEDIATE): a batch that inserted every row needs no read-back.
    _consecutive_ids = True

    def _insert_outbox(
        self,
        rows: Sequence[Mapping[str, Any]],
        now: datetime,
        owner: str | None,
        lease_seconds: float | None,
    ) -> tuple[list[OutboxRow], set[int]]:
        if not rows:
            return [], set()
        stamp = _iso(now)
        lease: tuple[str | None, str | None] = (None, None)
        if owner is not None and lease_seconds is not None and self._leases:
            lease = (owner, _iso(now + timedelta(seconds=lease_seconds)))
        params = [
            (
                r["shipment_id"],
                r["ci_lineitemid"],
                r.get("fulfillment_lineitem_id"),
                r.get("orderid", ""),
                r["tracking"],
                r.get("courier", ""),
                r.get("service", ""),
                r.get("carrier_code"),
                r["quantity"],
                r.get("endpoint"),
                r.get("state", "pending"),
                None if (kind := r.get("hold_kind")) is None else _to_sql(kind),
                r.get("reason", ""),
                r.get("attempts", 0),
                stamp,
                stamp,
            )
            for r in rows
        ]
        leases = [lease if p[10] == "sending" else (None, None) for p in params]
        columns = (
            "shipment_id, ci_lineitemid, fulfillment_lineitem_id, orderid, tracking, courier,"
            " service, carrier_code, quantity, endpoint, state, hold_kind, reason, attempts,"
            " created_at, updated_at"
        )
        marks = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        values: Sequence[Sequence[Any]] = params
        if lease[0] is not None:
            columns += ", lease_owner, lease_until"
            marks = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            values = [p + held for p, held in zip(params, leases, strict=True)]
        sql = f"INSERT OR IGNORE INTO outbox ({columns}) VALUES "  # noqa: S608
        with self._lock:
            try:
                with self.transaction():
                    last = None
                    if self._consecutive_ids and len(values) <= _SMALL_INSERT:
                        # A few rows (a one-shipment dispatch): one multi-row INSERT, whose
                        # cursor gives the last id, instead of executemany and a second
                        # statement to ask for it (~40,000 instructions a statement).
                        cursor = self._conn.execute(
                            sql + ",".join([marks] * len(values)),
                            [v for row in values for v in row],
                        )
                        inserted = cursor.rowcount
                        if inserted == len(params):
                            last = cursor.lastrowid
                    else:
                        inserted = self._conn.executemany(sql + marks, values).rowcount
                        if self._consecutive_ids and inserted == len(params):
                            last = self._conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            except sqlite3.Error as exc:
                raise self._error(exc) from None
        if last is not None:
            # Every row is new: built here, as the read-back would build them.
            made = datetime.fromisoformat(stamp) if stamp else now
            first = int(last) - len(params) + 1
            out = [
                OutboxRow(
                    first + n,
                    *p[:11],
                    HoldKind(p[11]) if p[11] else None,
                    *p[12:14],
                    None,
                    made,
                    made,
                )
                for n, p in enumerate(params)
            ]
            claimed = {r.id for r, held in zip(out, leases, strict=True) if held[0] is not None}
            return out, claimed
        stored: dict[tuple[str, int, str], OutboxRow] = {}
        claimed = set()
        for chunk, marks in _in_chunks(list(dict.fromkeys(r["shipment_id"] for r in rows))):
            for r in self._query(
                f"SELECT * FROM outbox WHERE shipment_id IN ({marks})",  # noqa: S608
                chunk,
            ):
                o = _outbox_from(r)
                stored[(o.shipment_id, o.ci_lineitemid, o.tracking)] = o
                # Inserted by this call: its lease (this owner, this instant) and its stamp.
                if (
                    lease[0] is not None
                    and o.state == "sending"
                    and (r["lease_owner"], r["lease_until"]) == lease
                    and r["created_at"] == stamp
                ):
                    claimed.add(o.id)
        wanted = [stored[(r["shipment_id"], r["ci_lineitemid"], r["tracking"])] for r in rows]
        return wanted, claimed & {o.id for o in wanted}

    def update_outbox(self, row_id: int, now: datetime, **fields: Any) -> None:
        """Set columns of one outbox row (names checked against the schema)."""
        unknown = set(fields) - _OUTBOX_COLUMNS
        if unknown:
            raise ValueError(f"unknown outbox columns: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        params = [_to_sql(v) for v in fields.values()]
        if "state" in fields and fields["state"] != "sending" and self._leases:
            # The call is settled (or parked): its claim ends with it.
            assignments += ", lease_owner = NULL, lease_until = NULL"
        self._exec(
            f"UPDATE outbox SET {assignments}, updated_at = ? WHERE id = ?",  # noqa: S608
            [*params, _iso(now), row_id],
        )

    def claim_outbox(
        self,
        rows: Sequence[OutboxRow],
        now: datetime,
        lease_seconds: float,
        owner: str | None = None,
    ) -> list[OutboxRow]:
        """Reserve ``rows`` for sending by ``owner`` (default: this process) until
        ``now + lease_seconds``, in one transaction. Returns the rows claimed, in order: those
        still pending/sending/retry whose previous claim is free (see :func:`_lease_free`).
        A row another live process holds is left alone: it is in flight there."""
        me = owner or process_owner()
        until = _iso(now + timedelta(seconds=lease_seconds))
        claimed: list[OutboxRow] = []
        if not rows:
            return claimed
        with self._lock:
            try:
                with self.transaction():
                    current: dict[int, sqlite3.Row] = {}
                    for chunk, marks in _in_chunks([r.id for r in rows]):
                        for r in self._conn.execute(
                            "SELECT id, state, lease_owner, lease_until FROM outbox"  # noqa: S608
                            f" WHERE id IN ({marks})",
                            chunk,
                        ):
                            current[r["id"]] = r
                    for row in rows:
                        cur = current.get(row.id)
                        if cur is None or cur["state"] not in ("pending", "sending", "retry"):
                            continue
                        if not _lease_free(cur["lease_owner"], cur["lease_until"], me, now):
                            continue
                        claimed.append(row)
                    self._conn.executemany(
                        "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id = ?",
                        [(me, until, r.id) for r in claimed],
                    )
            except sqlite3.Error as exc:
                raise self._error(exc) from None
        return claimed

    def release_outbox(self, ids: Iterable[int], owner: str | None = None) -> None:
        """End ``owner``'s claims on rows ``ids`` (rows others hold stay theirs)."""
        me = owner or process_owner()
        with self._lock:
            try:
                with self.transaction():
                    self._conn.executemany(
                        "UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
                        " WHERE id = ? AND lease_owner = ?",
                        [(i, me) for i in ids],
                    )
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def outbox_leases(self) -> dict[int, tuple[str, datetime]]:
        """``{row id: (owner, lease until)}`` of every claimed outbox row (for the CLI)."""
        rows = self._query(
            "SELECT id, lease_owner, lease_until FROM outbox WHERE lease_owner IS NOT NULL"
        )
        return {r[0]: (r[1], datetime.fromisoformat(r[2])) for r in rows if r[2]}

    def outbox_rows(
        self,
        *,
        shipment_id: str | None = None,
        ci_lineitemid: int | None = None,
        orderid: str | None = None,
        tracking: str | None = None,
        states: Iterable[str] | None = None,
        ids: Iterable[int] | None = None,
    ) -> list[OutboxRow]:
        """Outbox rows matching every given filter, oldest first."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("shipment_id", shipment_id),
            ("ci_lineitemid", ci_lineitemid),
            ("orderid", orderid),
            ("tracking", tracking),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        for column, values in (("state", states), ("id", ids)):
            if values is not None:
                wanted = list(values)
                if not wanted:
                    return []
                where.append(f"{column} IN ({','.join('?' * len(wanted))})")
                params.extend(wanted)
        sql = "SELECT * FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_outbox_from(r) for r in self._query(sql + " ORDER BY id", params)]

    def record_tracking_accepted(
        self, rows: Sequence[tuple[int, int, int]], now: datetime
    ) -> list[int]:
        """CI accepted outbox rows ``(row id, ci_lineitemid, quantity)``: rows ``accepted``
        and each line's shipped quantity grows (one transaction, batched).

        Idempotent by row: a row already ``accepted`` (recorded by a retry, or by another
        process that took its lease over) adds nothing. Returns the row ids recorded now.

        Not fsync'd (``durable=False``): losing this commit, which only a power loss can do,
        leaves the rows ``sending`` under a lease, the state a kill between the CI call and
        this commit leaves (crash point ``tracking_sent``): the next flush re-sends them and
        CI takes an identical re-send as a no-op. Every further CI call (a new shipment's
        outbox, a flush's claim, a resend's ``sending`` mark) is preceded by a durable
        commit of this ledger, which writes this one to disk with it (the log is replayed
        in order), so no later call can rest on an acceptance the disk does not hold."""
        stamp = _iso(now)
        first: dict[int, tuple[int, int, int]] = {}
        for row in rows:
            first.setdefault(row[0], row)  # the same row twice in one call: once
        done: set[int] = set()
        with self._lock:
            try:
                with self.transaction(durable=False):
                    # One statement per 500 rows; a row already accepted is left alone and
                    # not returned, so its quantity is not added again.
                    for chunk, marks in _in_chunks(list(first)):
                        sql = (
                            "UPDATE outbox SET state = 'accepted', hold_kind = NULL,"  # noqa: S608
                            " next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL,"
                            f" updated_at = ? WHERE id IN ({marks}) AND state != 'accepted'"
                            " RETURNING id"
                        )
                        # Read to the end: the statement is finished before COMMIT.
                        updated = self._conn.execute(sql, [stamp, *chunk]).fetchall()
                        done.update(r[0] for r in updated)
                    missing = [i for i in first if i not in done]
                    if missing:
                        # Not updated: accepted before, or not in the outbox at all (counted,
                        # as before this was one statement: only 'accepted' stops a row).
                        before: set[int] = set()
                        for chunk, marks in _in_chunks(missing):
                            before.update(
                                r[0]
                                for r in self._conn.execute(
                                    f"SELECT id FROM outbox WHERE id IN ({marks})"  # noqa: S608
                                    " AND state = 'accepted'",
                                    chunk,
                                )
                            )
                        done.update(i for i in missing if i not in before)
                    shipped: dict[int, int] = {}
                    for row_id, lid, qty in first.values():
                        if row_id in done:
                            shipped[lid] = shipped.get(lid, 0) + qty
                    self._conn.executemany(
                        "UPDATE lines SET qty_shipped = qty_shipped + ?, updated_at = ?"
                        " WHERE ci_lineitemid = ?",
                        [(qty, stamp, lid) for lid, qty in shipped.items()],
                    )
            except sqlite3.Error as exc:
                raise self._error(exc) from None
        return [row_id for row_id in first if row_id in done]

    def line_quantities(self, ids: Iterable[int]) -> dict[int, int]:
        """Ordered quantity of each known line among ``ids`` (no JSON decoded)."""
        wanted = list(dict.fromkeys(ids))
        found: dict[int, int] = {}
        for chunk, marks in _in_chunks(wanted):
            for r in self._query(
                f"SELECT ci_lineitemid, quantity FROM lines WHERE ci_lineitemid IN ({marks})",  # noqa: S608
                chunk,
            ):
                found[r[0]] = r[1]
        return found

    def pending_outbox(self) -> list[OutboxRow]:
        """Rows not finished: pending, sending, retry and held (for the CLI)."""
        return self.outbox_rows(states=("pending", "sending", "retry", "held"))

    # -- watermarks and notices ---------------------------------------------------------------

    def get_watermark(self, name: str = "orders") -> datetime | None:
        """The window-mode watermark, or None before the first run."""
        rows = self._query("SELECT value FROM watermarks WHERE name = ?", (name,))
        return datetime.fromisoformat(rows[0]["value"]) if rows else None

    def set_watermark(self, value: datetime, name: str = "orders") -> None:
        """Advance (or set) the watermark."""
        self._exec(
            "INSERT INTO watermarks (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, _iso(value)),
        )

    def record_notice(self, ci_lineitemid: int, kind: str, now: datetime) -> None:
        """Remember that the host was told about ``kind`` (e.g. a cancellation) for a line."""
        self._exec(
            "INSERT OR IGNORE INTO notices (ci_lineitemid, kind, reported_at) VALUES (?,?,?)",
            (ci_lineitemid, kind, _iso(now)),
        )

    # -- carrier events (schema v4) ---------------------------------------------------------

    def record_carrier_events(self, events: Sequence[CarrierEvent], now: datetime) -> list[bool]:
        """Record carrier scans/deliveries in one transaction; per event, whether it was new
        (``False``: the same ``(line, kind, at)`` was recorded before, or earlier in ``events``).

        :raises ValueError: an event's ``at`` is naive (callers validate first).
        :raises LedgerError: the ledger could not be written (nothing was recorded).
        """
        params = [
            (e.ci_lineitemid, str(e.kind), _event_time(e), e.tracking_number, _iso(now))
            for e in events
        ]
        inserted: list[bool] = []
        with self._lock:
            try:
                with self.transaction():
                    for row in params:
                        # ON CONFLICT, not OR IGNORE: only a duplicate is skipped, a CHECK
                        # failure (bad kind) must fail the batch instead of looking recorded.
                        cur = self._conn.execute(
                            "INSERT INTO carrier_events"
                            " (ci_lineitemid, kind, at, tracking, recorded_at) VALUES (?,?,?,?,?)"
                            " ON CONFLICT (ci_lineitemid, kind, at) DO NOTHING",
                            row,
                        )
                        inserted.append(cur.rowcount == 1)
            except sqlite3.Error as exc:
                raise self._error(exc) from None
        return inserted

    def carrier_summary(self) -> dict[int, tuple[datetime | None, datetime | None]]:
        """``{ci_lineitemid: (first scan, first delivery)}`` for every line with an event
        (one query; the fixed-width UTC text of ``at`` sorts in time order)."""
        rows = self._query(
            "SELECT ci_lineitemid,"
            " MIN(CASE WHEN kind = 'scan' THEN at END) AS scan,"
            " MIN(CASE WHEN kind = 'delivered' THEN at END) AS delivered"
            " FROM carrier_events GROUP BY ci_lineitemid"
        )
        return {r[0]: (_dt(r["scan"]), _dt(r["delivered"])) for r in rows}

    def earliest_waiting_order_date(self) -> datetime | None:
        """Order date of the oldest line still staged without a hold (held back by
        ``import_delay_minutes`` until old enough), or ``None``."""
        rows = self._query(
            "SELECT MIN(order_date) FROM lines WHERE state = 'staged'"  # noqa: S608
            f" AND {_UNFINISHED} AND hold_kind IS NULL"
        )
        return _dt(rows[0][0]) if rows else None

    # -- identity and retention (schema v6) --------------------------------------------------

    def identity(self) -> LedgerIdentity | None:
        """What this ledger belongs to, or ``None`` for a ledger that never recorded it.

        Read again only when another connection has committed to the file since the last
        read (``PRAGMA data_version`` moved; this connection's own writes go through
        :meth:`set_identity`, which forgets it): every hook call checks the ledger's host, and
        the one-shipment dispatch hook is called once per shipment."""
        with self._lock:
            version = self._data_version()
            seen = self._identity_seen
            if seen is not None and seen[0] == version:
                return seen[1]
            rows = self._query("SELECT * FROM ledger_identity WHERE id = 1")
            found = None
            if rows:
                r = rows[0]
                found = LedgerIdentity(
                    r["ledger_id"],
                    r["account"],
                    r["supplier_id"],
                    _dt(r["created_at"]) or _EPOCH,
                    r["host"],
                )
            if version is not None:
                self._identity_seen = (version, found)
            return found

    def _data_version(self) -> int | None:
        """A number that moves when another connection commits to the ledger (``PRAGMA
        data_version``), or ``None`` where there is none (then every read asks again)."""
        try:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def set_identity(self, identity: LedgerIdentity) -> None:
        """Record (or replace) what this ledger belongs to."""
        self._identity_seen = None
        self._exec(
            "INSERT INTO ledger_identity (id, ledger_id, account, supplier_id, created_at, host)"
            " VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            " ledger_id = excluded.ledger_id, account = excluded.account,"
            " supplier_id = excluded.supplier_id, created_at = excluded.created_at,"
            " host = excluded.host",
            (
                identity.ledger_id,
                identity.account,
                identity.supplier_id,
                _iso(identity.created_at),
                identity.host,
            ),
        )

    def _parsed_column(self, alias: str = "lines") -> str:
        """SQL for a line's parsed form (``alias`` names the ``lines`` table)."""
        if not self._side_parsed:
            return f"{alias}.parsed"
        return f"(SELECT parsed FROM line_parsed WHERE line_id = {alias}.ci_lineitemid)"  # noqa: S608

    def _record_column(self, alias: str = "lines") -> str:
        """SQL for a line's raw record text (``alias`` names the ``lines`` table)."""
        if not self._side_records:
            return f"{alias}.record"
        return f"(SELECT record FROM records WHERE records.key = {alias}.record_key)"  # noqa: S608

    def prune(self, before: datetime, now: datetime) -> int:
        """Retention: for lines finished (fully shipped, or cancelled) and unchanged since
        before ``before``, remove the customer details from the raw record and drop the
        parsed form; ids, states, quantities, bindings, the outbox and the ack log stay.
        Lines still to be evaluated are never touched. Returns how many lines were pruned.

        From schema v8 the stripped record is stored under its own key (the lines of one
        record share it) and a raw record no line names any more is deleted, as are records
        left behind by a line re-staged with a changed payload."""
        marks = ",".join("?" * len(UNCONFIRMED_STATES))
        column = "record_key" if self._side_records else "record"
        rows = self._query(
            f"SELECT ci_lineitemid, {column} FROM lines"  # noqa: S608
            f" WHERE pruned_at IS NULL AND state NOT IN ({marks}) AND updated_at < ?"
            " AND (state = 'cancelled' OR ci_status IN ('cancelled', 'canceled')"
            " OR qty_shipped >= quantity)",
            [*UNCONFIRMED_STATES, _iso(before)],
        )
        stamp = _iso(now)
        with self._lock:
            try:
                with self.transaction():
                    if self._side_records:
                        self._prune_records(rows, stamp)
                    else:
                        self._conn.executemany(
                            "UPDATE lines SET record = ?, parsed = NULL, pruned_at = ?"
                            " WHERE ci_lineitemid = ?",
                            [(_pruned_record(r["record"]), stamp, r[0]) for r in rows],
                        )
            except sqlite3.Error as exc:
                raise self._error(exc) from None
        return len(rows)

    def _prune_records(self, rows: Sequence[sqlite3.Row], stamp: str | None) -> None:
        """The v8 part of :meth:`prune` (inside its transaction): ``rows`` are
        ``(ci_lineitemid, record_key)`` of the lines to prune."""
        stripped: dict[str, tuple[str, str] | None] = {}  # old key -> (new key, text)
        for chunk, marks in _in_chunks(list({r[1] for r in rows if r[1] is not None})):
            for key, text in self._conn.execute(
                f"SELECT key, record FROM records WHERE key IN ({marks})",  # noqa: S608
                chunk,
            ):
                clean = _pruned_record(text)
                if clean is None:
                    stripped[key] = None
                else:
                    stripped[key] = (record_key(clean, _anchor_of_key(key)), clean)
        updates: list[tuple[str | None, str | None, int]] = []
        for lid, key in rows:
            kept = stripped.get(key) if key is not None else None
            updates.append((None if kept is None else kept[0], stamp, lid))
        self._conn.executemany(
            "INSERT OR IGNORE INTO records (key, record, pruned_at) VALUES (?, ?, ?)",
            [(key, clean, stamp) for key, clean in filter(None, stripped.values())],
        )
        self._conn.executemany(
            "UPDATE lines SET record_key = ?, parsed = NULL, pruned_at = ? WHERE ci_lineitemid = ?",
            updates,
        )
        if self._side_parsed:
            self._conn.executemany(
                "DELETE FROM line_parsed WHERE line_id = ?", [(lid,) for _, _, lid in updates]
            )
        # Records no line names any more: the raw ones just replaced, and any left behind by
        # a refresh with a changed payload (one pass per retention run).
        self._conn.execute(self._ORPHAN_RECORDS)

    _ORPHAN_RECORDS = (
        "DELETE FROM records WHERE key NOT IN"
        " (SELECT record_key FROM lines WHERE record_key IS NOT NULL)"
    )
    """SQLite reads the subquery once into a temporary index (``NOT EXISTS`` would scan
    ``lines`` once per record: there is no index on ``record_key``, staging need not pay
    for one)."""

    # -- operator views -----------------------------------------------------------------------

    def claimed_calls(self) -> tuple[list[Sequence[Any]], list[Sequence[Any]]]:
        """Outbound calls under a claim (lease), for ``status``: outbox rows ``(shipment_id,
        ci_lineitemid, orderid, tracking, lease_owner, lease_until)`` and lines claimed for
        ``mark_exported`` ``(ci_lineitemid, orderid, ack_owner, ack_lease_until)``, each by
        lease end. Read only; an operator's view, so a scan of ``lines`` is acceptable."""
        outbox = self._query(
            "SELECT shipment_id, ci_lineitemid, orderid, tracking, lease_owner, lease_until"
            " FROM outbox WHERE lease_owner IS NOT NULL ORDER BY lease_until, id"
        )
        acks = self._query(
            "SELECT ci_lineitemid, orderid, ack_owner, ack_lease_until FROM lines"
            " WHERE ack_owner IS NOT NULL ORDER BY ack_lease_until, ci_lineitemid"
        )
        return list(outbox), list(acks)

    def held_lines(
        self, *, lines: bool = True, problems: bool = True, outbox: bool = True
    ) -> list[HeldLine]:
        """Everything held for the operator: lines, broken records without a line id, and
        dispatch rows (held by pre-flight or rejected by CI). Flags pick the sources."""
        held: list[HeldLine] = []
        # Only the sources asked for are read (the import asks once per chunk); the partial
        # index keeps this a read of the held rows, not of the whole table.
        line_rows = (
            self._query(
                "SELECT ci_lineitemid, orderid, hold_kind, hold_reason, held_since FROM lines"
                " WHERE hold_kind IS NOT NULL ORDER BY orderid, ci_lineitemid"
            )
            if lines
            else []
        )
        for r in line_rows:
            held.append(
                HeldLine(
                    account=self.account,
                    kind=HoldKind(r["hold_kind"]),
                    reason=r["hold_reason"],
                    ci_lineitemid=r["ci_lineitemid"],
                    orderid=r["orderid"] or None,
                    since=_dt(r["held_since"]),
                )
            )
        problem_rows = (
            self._query("SELECT * FROM problems ORDER BY first_seen, key") if problems else []
        )
        for r in problem_rows:
            held.append(
                HeldLine(
                    account=self.account,
                    kind=HoldKind.INVALID_PAYLOAD,
                    reason=r["reason"],
                    ci_lineitemid=None,
                    orderid=r["orderid"],
                    since=_dt(r["first_seen"]),
                )
            )
        for o in self.outbox_rows(states=("held", "rejected")) if outbox else []:
            held.append(
                HeldLine(
                    account=self.account,
                    kind=o.hold_kind or HoldKind.REJECTED_BY_CI,
                    reason=f"shipment {o.shipment_id!r} tracking {o.tracking!r}: {o.reason}",
                    ci_lineitemid=o.ci_lineitemid,
                    orderid=o.orderid or None,
                    since=o.updated_at,
                )
            )
        return held

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts per state: ``{"lines": {...}, "outbox": {...}, "held": {...}}``."""
        lines = {s: 0 for s in LINE_STATES}
        for r in self._query("SELECT state, COUNT(*) AS n FROM lines GROUP BY state"):
            lines[r["state"]] = r["n"]
        outbox = {s: 0 for s in OUTBOX_STATES}
        for r in self._query("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state"):
            outbox[r["state"]] = r["n"]
        held: dict[str, int] = {}
        for h in self.held_lines():
            held[h.kind.value] = held.get(h.kind.value, 0) + 1
        return {"lines": lines, "outbox": outbox, "held": held}

    # -- host contract v2 (schema v7): closed dispatch rows, holds, products -------------------

    def close_outbox(self, rows: Sequence[OutboxRow], why: str, note: str, now: datetime) -> None:
        """Move outbox rows that will never be sent to ``outbox_closed`` (``why``:
        ``superseded``, ``dismissed`` or ``voided``), in one transaction."""
        if not rows:
            return
        stamp = _iso(now)
        with self._lock:
            try:
                with self.transaction():
                    self._conn.executemany(
                        "INSERT OR REPLACE INTO outbox_closed (id, shipment_id, ci_lineitemid,"
                        " orderid, tracking, courier, service, quantity, state_before, hold_kind,"
                        " reason, why, note, created_at, closed_at)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        [
                            (
                                r.id,
                                r.shipment_id,
                                r.ci_lineitemid,
                                r.orderid,
                                r.tracking,
                                r.courier,
                                r.service,
                                r.quantity,
                                r.state,
                                r.hold_kind.value if r.hold_kind else None,
                                r.reason,
                                why,
                                note,
                                _iso(r.created_at),
                                stamp,
                            )
                            for r in rows
                        ],
                    )
                    self._conn.executemany(
                        "DELETE FROM outbox WHERE id = ?", [(r.id,) for r in rows]
                    )
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def closed_outbox(self, shipment_ids: Iterable[str] | None = None) -> list[ClosedOutboxRow]:
        """Closed dispatch rows (all, or those of ``shipment_ids``), oldest first."""
        if shipment_ids is None:
            rows = self._query("SELECT * FROM outbox_closed ORDER BY id")
        else:
            rows = []
            for chunk, marks in _in_chunks(list(dict.fromkeys(shipment_ids))):
                rows += self._query(
                    f"SELECT * FROM outbox_closed WHERE shipment_id IN ({marks})",  # noqa: S608
                    chunk,
                )
        return sorted((_closed_from(r) for r in rows), key=lambda c: c.id)

    def any_outbox_of_shipments(self, shipment_ids: Iterable[str]) -> bool:
        """Whether any of the given shipments has a row, in the outbox or closed: one
        statement per 500 ids, where :meth:`outbox_of_shipments` and :meth:`closed_outbox`
        are one each (a dispatch of new shipments, the usual case, needs neither)."""
        for chunk, marks in _in_chunks(list(dict.fromkeys(shipment_ids))):
            rows = self._query_tuples(
                f"SELECT EXISTS (SELECT 1 FROM outbox WHERE shipment_id IN ({marks}))"  # noqa: S608
                f" OR EXISTS (SELECT 1 FROM outbox_closed WHERE shipment_id IN ({marks}))",
                chunk + chunk,
            )
            if rows[0][0]:
                return True
        return False

    def outbox_of_shipments(self, shipment_ids: Iterable[str]) -> list[OutboxRow]:
        """Every outbox row of the given shipments (one query per 500 ids), oldest first."""
        found: list[OutboxRow] = []
        for chunk, marks in _in_chunks(list(dict.fromkeys(shipment_ids))):
            found += [
                _outbox_from(r)
                for r in self._query(
                    f"SELECT * FROM outbox WHERE shipment_id IN ({marks})",  # noqa: S608
                    chunk,
                )
            ]
        return sorted(found, key=lambda r: r.id)

    def settled_holds(self) -> list[OutboxRow]:
        """Held or CI-rejected dispatch rows whose line needs nothing more: fully shipped by
        other rows, or cancelled."""
        # Usually there is no held or rejected row at all (each sending dispatch asks): two
        # index probes by equality say so for a third of the query's cost, whose two-value
        # IN list builds a temporary table each time. With none, nothing can be settled.
        if not self._query(
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM outbox WHERE state = 'held')"
            " OR EXISTS (SELECT 1 FROM outbox WHERE state = 'rejected')"
        ):
            return []
        rows = self._query(
            "SELECT o.* FROM outbox o JOIN lines l ON l.ci_lineitemid = o.ci_lineitemid"
            " WHERE o.state IN ('held', 'rejected') AND (l.qty_shipped >= l.quantity"
            " OR l.state = 'cancelled' OR l.ci_status IN ('cancelled', 'canceled'))"
            " ORDER BY o.id"
        )
        return [_outbox_from(r) for r in rows]

    def open_dispatch_holds(self) -> list[OutboxRow]:
        """Held or CI-rejected dispatch rows of lines this ledger knows (rows for unknown
        lines wait unlisted: released if the line arrives, dismissable by the operator)."""
        rows = self._query(
            "SELECT o.* FROM outbox o JOIN lines l ON l.ci_lineitemid = o.ci_lineitemid"
            " WHERE o.state IN ('held', 'rejected') ORDER BY o.id"
        )
        return [_outbox_from(r) for r in rows]

    def line_customers(self, ids: Iterable[int]) -> dict[int, Any]:
        """The ``customer`` value of each known line's raw record (``None`` without one):
        dispatch pre-flight compares ship-to addresses and needs nothing else of the record.
        Lines of one stored record share one decoded value (treat it as read-only)."""
        found: dict[int, Any] = {}
        decoded: dict[str, Any] = {}
        for chunk, marks in _in_chunks(list(dict.fromkeys(ids))):
            for lid, text in self._query(
                f"SELECT ci_lineitemid, {self._record_column()} FROM lines"  # noqa: S608
                f" WHERE ci_lineitemid IN ({marks})",
                chunk,
            ):
                found[lid] = _cached_customer(text, decoded)
        return found

    def active_outbox_of(
        self, *, lines: Iterable[int], trackings: Iterable[str], orderids: Iterable[str]
    ) -> list[OutboxRow]:
        """Rows pending, sending, retrying or accepted that touch any of the given lines,
        tracking numbers or orders (pre-flight of a batch reads them once, not per row)."""
        found: dict[int, OutboxRow] = {}
        states = self._active_outbox_filter
        wanted: list[tuple[str, list[Any]]] = [
            ("ci_lineitemid", list(dict.fromkeys(lines))),
            ("tracking", list(dict.fromkeys(trackings))),
            ("orderid", list(dict.fromkeys(orderids))),
        ]
        parts = [(column, values) for column, values in wanted if values]
        if parts and all(len(values) <= _IN_CHUNK for _, values in parts):
            # The usual dispatch call: one statement, not three. UNION ALL, not OR: each part
            # keeps its own index (an OR plan may pick the state index: every active row).
            sql = " UNION ALL ".join(
                f"SELECT * FROM outbox WHERE {states} AND {term}"  # noqa: S608
                for column, values in parts
                for term in _eq_or_in(column, len(values))
            )
            for r in self._query(sql, [v for _, values in parts for v in values]):
                found[r["id"]] = _outbox_from(r)
            return [found[k] for k in sorted(found)]
        for column, values in wanted:
            for chunk, marks in _in_chunks(values):
                for r in self._query(
                    f"SELECT * FROM outbox WHERE {states}"  # noqa: S608
                    f" AND {column} IN ({marks})",
                    chunk,
                ):
                    found[r["id"]] = _outbox_from(r)
        return [found[k] for k in sorted(found)]

    def product_rows(self) -> list[tuple[str, str | None, str | None, str | None, str, int]]:
        """Per distinct ``(sku, bom_sku)``: the latest line's parsed fields and raw record,
        when it was first seen, and how many lines carried it."""
        rows = self._query(
            f"SELECT l.sku, l.bom_sku, {self._parsed_column('l')} AS parsed,"  # noqa: S608
            f" {self._record_column('l')} AS record,"
            " l.first_seen, g.n FROM lines l JOIN (SELECT sku, bom_sku,"
            " MAX(ci_lineitemid) AS last, COUNT(*) AS n FROM lines"
            " GROUP BY sku, bom_sku) g ON l.ci_lineitemid = g.last ORDER BY l.sku, l.bom_sku"
        )
        return [
            (r["sku"], r["bom_sku"], r["parsed"], r["record"], r["first_seen"], r["n"])
            for r in rows
        ]


@dataclass(frozen=True, slots=True)
class ClosedOutboxRow:
    """A dispatch row moved out of the outbox: never to be sent (schema v7)."""

    id: int
    shipment_id: str
    ci_lineitemid: int
    orderid: str
    tracking: str
    courier: str
    service: str
    quantity: int
    state_before: str
    hold_kind: str | None
    reason: str
    why: str
    note: str
    created_at: datetime
    closed_at: datetime


def _closed_from(row: sqlite3.Row) -> ClosedOutboxRow:
    return ClosedOutboxRow(
        id=row["id"],
        shipment_id=row["shipment_id"],
        ci_lineitemid=row["ci_lineitemid"],
        orderid=row["orderid"],
        tracking=row["tracking"],
        courier=row["courier"],
        service=row["service"],
        quantity=row["quantity"],
        state_before=row["state_before"],
        hold_kind=row["hold_kind"],
        reason=row["reason"],
        why=row["why"],
        note=row["note"],
        created_at=datetime.fromisoformat(row["created_at"]),
        closed_at=datetime.fromisoformat(row["closed_at"]),
    )


def _event_time(event: CarrierEvent) -> str:
    """``at`` as fixed-width ISO-8601 UTC, so text order is time order and one instant has one
    spelling whatever zone the host used."""
    if event.at.utcoffset() is None:
        raise ValueError(
            f"carrier event of line {event.ci_lineitemid}: at {event.at.isoformat()} has no "
            "time zone"
        )
    return event.at.astimezone(UTC).isoformat(timespec="microseconds")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _file_id(path: Path) -> tuple[int, int]:
    """(device, inode) of ``path``: changes when the file is deleted and made again."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (our scripts hold no ';' inside strings)."""
    statements = []
    for chunk in script.split(";"):
        lines = [ln.split("--", 1)[0] for ln in chunk.splitlines()]
        text = "\n".join(lines).strip()
        if text:
            statements.append(text)
    return statements
