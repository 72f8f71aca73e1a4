"""Ordered schema migrations of the SQLite ledger.

Each entry is ``(version, script)``; versions are consecutive from 1. A migration is applied
once, in its own transaction, and the ``schema_version`` table records the result. Never edit
a released migration: append a new one.
"""

from __future__ import annotations

SCHEMA_V1 = """
CREATE TABLE lines (
    ci_lineitemid INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    orderid TEXT NOT NULL,
    fulfillment_lineitem_id TEXT,
    record TEXT,                      -- raw CI record (JSON), kept for re-evaluation
    order_date TEXT,                  -- ISO-8601 UTC
    ship_by TEXT,
    quantity INTEGER NOT NULL DEFAULT 0,
    sku TEXT NOT NULL DEFAULT '',
    bom_sku TEXT,
    state TEXT NOT NULL CHECK (state IN
        ('staged', 'held', 'delivered', 'stored', 'acked', 'cancelled')),
    hold_kind TEXT,
    hold_reason TEXT NOT NULL DEFAULT '',
    held_since TEXT,
    host_order_id TEXT,
    ci_status TEXT NOT NULL DEFAULT 'open',
    qty_shipped INTEGER NOT NULL DEFAULT 0,
    first_seen TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    ack_attempts INTEGER NOT NULL DEFAULT 0,
    cancel_detected_at TEXT,
    cancel_reported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX lines_orderid ON lines (orderid);
CREATE INDEX lines_state ON lines (state);

CREATE TABLE acks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ci_lineitemid INTEGER NOT NULL,
    at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);

CREATE TABLE problems (
    key TEXT PRIMARY KEY,             -- sha256 of the raw record
    orderid TEXT,
    reason TEXT NOT NULL,
    first_seen TEXT NOT NULL
);

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    shipment_id TEXT NOT NULL,
    ci_lineitemid INTEGER NOT NULL,
    fulfillment_lineitem_id TEXT,
    orderid TEXT NOT NULL DEFAULT '',
    tracking TEXT NOT NULL,
    courier TEXT NOT NULL DEFAULT '',
    service TEXT NOT NULL DEFAULT '',
    carrier_code TEXT,
    quantity INTEGER NOT NULL,
    endpoint TEXT,
    state TEXT NOT NULL CHECK (state IN
        ('pending', 'sending', 'accepted', 'rejected', 'held', 'retry')),
    hold_kind TEXT,
    reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (shipment_id, ci_lineitemid, tracking)
);
CREATE INDEX outbox_state ON outbox (state);
CREATE INDEX outbox_line ON outbox (ci_lineitemid);
CREATE INDEX outbox_tracking ON outbox (tracking);
CREATE INDEX outbox_order ON outbox (orderid);

CREATE TABLE watermarks (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE notices (
    ci_lineitemid INTEGER NOT NULL,
    kind TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    PRIMARY KEY (ci_lineitemid, kind)
);
"""


def _outbox_v2() -> str:
    """v2: outbox rows may be ``manual`` (written to a tracking upload file for CI's web UI,
    so the API flush leaves them alone). SQLite cannot alter a CHECK constraint, so the table
    is rebuilt with the same columns and every index."""
    table = SCHEMA_V1.split("CREATE TABLE outbox (", 1)[1].split(");", 1)[0]
    widened = table.replace("'held', 'retry')", "'held', 'retry', 'manual')")
    if widened == table:  # pragma: no cover - guards an edit of SCHEMA_V1
        raise AssertionError("outbox state CHECK not found in SCHEMA_V1")
    return (
        f"CREATE TABLE outbox_v2 ({widened});\n"  # noqa: S608 - fixed schema text, no input
        "INSERT INTO outbox_v2 SELECT * FROM outbox;\n"
        "DROP TABLE outbox;\n"
        "ALTER TABLE outbox_v2 RENAME TO outbox;\n"
        "CREATE INDEX outbox_state ON outbox (state);\n"
        "CREATE INDEX outbox_line ON outbox (ci_lineitemid);\n"
        "CREATE INDEX outbox_tracking ON outbox (tracking);\n"
        "CREATE INDEX outbox_order ON outbox (orderid);\n"
    )


SCHEMA_V2 = _outbox_v2()

SCHEMA_V3 = """
ALTER TABLE lines ADD COLUMN parsed TEXT;
ALTER TABLE lines ADD COLUMN seen_round INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lines ADD COLUMN pending_eval INTEGER NOT NULL DEFAULT 0;
CREATE INDEX lines_pending_eval ON lines (orderid) WHERE pending_eval = 1;
CREATE INDEX lines_held ON lines (orderid, ci_lineitemid) WHERE hold_kind IS NOT NULL;
CREATE INDEX lines_cancel_unreported ON lines (ci_lineitemid)
    WHERE cancel_reported = 0 AND ci_status IN ('cancelled', 'canceled');
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
"""v3 (streamed, chunked import): ``lines.parsed`` holds the normalised fields delivery needs
(compact JSON, so delivery never re-parses the raw record, which stays in ``record``);
``seen_round`` is the import round that last staged the line (a line on two pages is staged
once); ``pending_eval`` marks lines still to be evaluated in the current round (partial
index: the chunked delivery reads only those); ``meta`` holds the round counters."""

SCHEMA_V4 = """
CREATE TABLE carrier_events (
    ci_lineitemid INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('scan', 'delivered')),
    at TEXT NOT NULL,                 -- ISO-8601 UTC, fixed width (microseconds)
    tracking TEXT,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (ci_lineitemid, kind, at)
);
"""
"""v4: carrier scans and deliveries the host reports (``oms_report_carrier_events``); the
primary key makes a re-sent event a no-op. ``at`` is stored at fixed width so that text order
is time order (the SLA reads the first scan and the first delivery with ``MIN``)."""

SCHEMA_V7 = """
CREATE TABLE outbox_closed (
    id INTEGER PRIMARY KEY,           -- the outbox row's id
    shipment_id TEXT NOT NULL,
    ci_lineitemid INTEGER NOT NULL,
    orderid TEXT NOT NULL DEFAULT '',
    tracking TEXT NOT NULL,
    courier TEXT NOT NULL DEFAULT '',
    service TEXT NOT NULL DEFAULT '',
    quantity INTEGER NOT NULL,
    state_before TEXT NOT NULL,
    hold_kind TEXT,
    reason TEXT NOT NULL DEFAULT '',
    why TEXT NOT NULL CHECK (why IN ('superseded', 'dismissed', 'voided')),
    note TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    closed_at TEXT NOT NULL
);
CREATE INDEX outbox_closed_shipment ON outbox_closed (shipment_id);
"""
"""v7 (host contract v2): dispatch rows that will never be sent are moved out of ``outbox``
into ``outbox_closed``: ``superseded`` (the line was fully shipped or cancelled by other
means), ``dismissed`` by an operator (``ci-connector held dismiss``) or ``voided`` by the host
(``oms_void_shipment``). Moving them (rather than a new state) keeps every outbox query as it
was; the shipment's identity check reads both tables."""
SCHEMA_V5 = """
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
ALTER TABLE outbox ADD COLUMN lease_until TEXT;
ALTER TABLE lines ADD COLUMN ack_owner TEXT;
ALTER TABLE lines ADD COLUMN ack_lease_until TEXT;
"""
"""v5 (exactly-once effects across processes): an outbound call is claimed before it is sent.
``outbox.lease_owner``/``lease_until`` reserve a tracking row, ``lines.ack_owner``/
``ack_lease_until`` a line's ``mark_exported``, to one process (``<machine>:<pid>:<token>``)
until the lease ends; a row in flight is sent by nobody else, an expired lease (or one of a
dead process on this machine) is taken over."""

SCHEMA_V6 = """
CREATE TABLE ledger_identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    ledger_id TEXT NOT NULL,          -- random, also written to the marker beside the ledger
    account TEXT NOT NULL,
    supplier_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    host TEXT                         -- the host OMS that works this ledger
);
ALTER TABLE lines ADD COLUMN pruned_at TEXT;
"""
"""v6: what the ledger belongs to (one row: account, supplier id, creation time, owning host),
and retention (``lines.pruned_at``: when the raw record and customer details were removed)."""

SCHEMA_V8 = """
CREATE TABLE records (
    key TEXT PRIMARY KEY,             -- record_key(text): hash of the text ('line:<id>' if moved)
    record TEXT NOT NULL,             -- raw CI record (JSON), once per record
    pruned_at TEXT                    -- set on the customer-free copy retention keeps
);
ALTER TABLE lines ADD COLUMN record_key TEXT;
INSERT INTO records (key, record, pruned_at)
    SELECT 'line:' || ci_lineitemid, record, pruned_at FROM lines WHERE record IS NOT NULL;
UPDATE lines SET record_key = 'line:' || ci_lineitemid, record = NULL WHERE record IS NOT NULL;
DROP INDEX lines_cancel_unreported;
CREATE INDEX lines_cancel_open ON lines (ci_status, cancel_reported)
    WHERE cancel_reported = 0 AND ci_status IN ('cancelled', 'canceled');
"""
"""v8 (import performance): the raw CI record moves out of ``lines`` into ``records``, stored
once per record (its lines share it through ``lines.record_key``) and read only where a step
needs it; a ``lines`` row keeps its parsed fields and states (~0.5 KB instead of ~2.5 KB, so
the four rewrites of a line during an import touch a fraction of the pages). Existing rows are
moved as they are, one record per line under the key ``line:<id>`` (nothing is re-encoded or
lost; retention re-keys them by hash when it strips them). ``lines.record`` stays, always
NULL (dropping a column rewrites the table and needs SQLite >= 3.35). The unreported
cancellation lookup gets an index the planner prefers to ``lines_state`` (two equality
columns; the old partial index on one column lost to it and the query read every host
line)."""

SCHEMA_V9 = """
CREATE TABLE line_parsed (
    line_id INTEGER PRIMARY KEY,      -- lines.ci_lineitemid
    parsed TEXT NOT NULL              -- the line's parsed form (compact JSON)
);
INSERT INTO line_parsed (line_id, parsed)
    SELECT ci_lineitemid, parsed FROM lines WHERE parsed IS NOT NULL;
UPDATE lines SET parsed = NULL WHERE parsed IS NOT NULL;
"""
"""v9 (import performance): a line's parsed form moves out of ``lines`` into ``line_parsed``,
written when the line is staged (or refreshed) and read by evaluation. A ``lines`` row is
rewritten three times per import (delivered, stored, acknowledged): without the ~430 bytes
of JSON it is ~250 bytes, each rewrite copies and logs a third of the bytes and an UPDATE
costs ~35% less CPU (measured on 20,000 lines). ``lines.parsed`` stays, always NULL (as
``lines.record`` since v8)."""

SCHEMA_V10 = """
CREATE TABLE lines_v10 (
    ci_lineitemid INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    orderid TEXT NOT NULL,
    fulfillment_lineitem_id TEXT,
    record TEXT,
    order_date TEXT,
    ship_by TEXT,
    quantity INTEGER NOT NULL DEFAULT 0,
    sku TEXT NOT NULL DEFAULT '',
    bom_sku TEXT,
    state TEXT NOT NULL CHECK (state = 'staged' OR state = 'held' OR state = 'delivered'
        OR state = 'stored' OR state = 'acked' OR state = 'cancelled'),
    hold_kind TEXT,
    hold_reason TEXT NOT NULL DEFAULT '',
    held_since TEXT,
    host_order_id TEXT,
    ci_status TEXT NOT NULL DEFAULT 'open',
    qty_shipped INTEGER NOT NULL DEFAULT 0,
    first_seen TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    ack_attempts INTEGER NOT NULL DEFAULT 0,
    cancel_detected_at TEXT,
    cancel_reported INTEGER NOT NULL DEFAULT 0,
    parsed TEXT,
    seen_round INTEGER NOT NULL DEFAULT 0,
    pending_eval INTEGER NOT NULL DEFAULT 0,
    ack_owner TEXT,
    ack_lease_until TEXT,
    pruned_at TEXT,
    record_key TEXT
);
INSERT INTO lines_v10 (
    ci_lineitemid, account, orderid, fulfillment_lineitem_id, record, order_date, ship_by,
    quantity, sku, bom_sku, state, hold_kind, hold_reason, held_since, host_order_id,
    ci_status, qty_shipped, first_seen, updated_at, ack_attempts, cancel_detected_at,
    cancel_reported, parsed, seen_round, pending_eval, ack_owner, ack_lease_until, pruned_at,
    record_key
) SELECT
    ci_lineitemid, account, orderid, fulfillment_lineitem_id, record, order_date, ship_by,
    quantity, sku, bom_sku, state, hold_kind, hold_reason, held_since, host_order_id,
    ci_status, qty_shipped, first_seen, updated_at, ack_attempts, cancel_detected_at,
    cancel_reported, parsed, seen_round, pending_eval, ack_owner, ack_lease_until, pruned_at,
    record_key
FROM lines;
DROP TABLE lines;
ALTER TABLE lines_v10 RENAME TO lines;
CREATE INDEX lines_orderid ON lines (orderid);
CREATE INDEX lines_state ON lines (state);
CREATE INDEX lines_pending_eval ON lines (orderid) WHERE pending_eval = 1;
CREATE INDEX lines_held ON lines (orderid, ci_lineitemid) WHERE hold_kind IS NOT NULL;
CREATE INDEX lines_cancel_open ON lines (ci_status, cancel_reported)
    WHERE cancel_reported = 0 AND ci_status IN ('cancelled', 'canceled');
"""
"""v10 (import performance): the same ``lines`` table (columns, order, defaults, indexes),
its state CHECK written as ``=`` comparisons instead of ``state IN (...)``. SQLite builds an
ephemeral table of the six values to check an ``IN`` list on every row it writes (an 8 KB
page cleared, six inserts): ~12,000 instructions per row write, and every line is written
three times after staging (delivered, stored, acked); the comparisons cost a few dozen. On a
10,000-line phase 2 (delivery, binding, acknowledgement) under callgrind: -12% of its
instructions. SQLite cannot alter a CHECK, so the table is rebuilt (copy, drop, rename; the
indexes as v1/v3/v8 made them); PostgreSQL checks an ``IN`` list cheaply and alters the
constraint in place (``PG_MIGRATION_OVERRIDES``)."""

SCHEMA_V11 = """
CREATE TABLE outbox_v11 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    shipment_id TEXT NOT NULL,
    ci_lineitemid INTEGER NOT NULL,
    fulfillment_lineitem_id TEXT,
    orderid TEXT NOT NULL DEFAULT '',
    tracking TEXT NOT NULL,
    courier TEXT NOT NULL DEFAULT '',
    service TEXT NOT NULL DEFAULT '',
    carrier_code TEXT,
    quantity INTEGER NOT NULL,
    endpoint TEXT,
    state TEXT NOT NULL CHECK (state = 'pending' OR state = 'sending' OR state = 'accepted'
        OR state = 'rejected' OR state = 'held' OR state = 'retry' OR state = 'manual'),
    hold_kind TEXT,
    reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_until TEXT,
    UNIQUE (shipment_id, ci_lineitemid, tracking)
);
INSERT INTO outbox_v11 (
    id, shipment_id, ci_lineitemid, fulfillment_lineitem_id, orderid, tracking, courier,
    service, carrier_code, quantity, endpoint, state, hold_kind, reason, attempts,
    next_attempt_at, created_at, updated_at, lease_owner, lease_until
) SELECT
    id, shipment_id, ci_lineitemid, fulfillment_lineitem_id, orderid, tracking, courier,
    service, carrier_code, quantity, endpoint, state, hold_kind, reason, attempts,
    next_attempt_at, created_at, updated_at, lease_owner, lease_until
FROM outbox;
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'outbox_v11', seq FROM sqlite_sequence WHERE name = 'outbox'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox_v11');
UPDATE sqlite_sequence
    SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'outbox'))
    WHERE name = 'outbox_v11' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox');
DROP TABLE outbox;
ALTER TABLE outbox_v11 RENAME TO outbox;
CREATE INDEX outbox_state ON outbox (state);
CREATE INDEX outbox_line ON outbox (ci_lineitemid);
CREATE INDEX outbox_tracking ON outbox (tracking);
CREATE INDEX outbox_order ON outbox (orderid);
"""
"""v11 (dispatch performance): the same ``outbox`` table (columns, order, defaults, unique
key, indexes), its state CHECK written as ``=`` comparisons instead of ``state IN (...)``, as
v10 did for ``lines``: SQLite built an ephemeral table of the seven values on every row
written (each tracking row is written three times: pending, sending, accepted). The table is
rebuilt (copy, drop, rename); AUTOINCREMENT's high-water mark is carried over, so the id of a
row moved to ``outbox_closed`` is never given out again. PostgreSQL alters the constraint in
place (``PG_MIGRATION_OVERRIDES``)."""

SCHEMA_V12 = """
DROP INDEX lines_state;
CREATE INDEX lines_state ON lines (state) WHERE state != 'acked';
"""
"""v12 (import performance): ``lines_state`` indexes the lines not yet acknowledged only. An
acknowledged line is finished for every query that looks lines up by state (evaluation
rounds, waiting and stored lines), yet each acknowledgement inserted its entry, and in a
ledger of any age nearly every entry was one of them. The queries that use the index carry
its condition (``state != 'acked'``) so both planners may pick it; a query over acknowledged
lines reads the table, as a lookup of the large majority of the rows would anyway. The same
script on both backends (PostgreSQL keeps partial indexes alike)."""

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, SCHEMA_V1),
    (2, SCHEMA_V2),
    (3, SCHEMA_V3),
    (4, SCHEMA_V4),
    (5, SCHEMA_V5),
    (6, SCHEMA_V6),
    (7, SCHEMA_V7),
    (8, SCHEMA_V8),
    (9, SCHEMA_V9),
    (10, SCHEMA_V10),
    (11, SCHEMA_V11),
    (12, SCHEMA_V12),
)
"""Every migration this version of the connector knows, in order."""
