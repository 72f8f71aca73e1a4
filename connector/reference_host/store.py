"""The reference host's own database: orders, lines, shipments and notices, in SQLite.

This is the worked example of what a correct host does with a channel's orders:

* each batch is stored in **one transaction**, and only then acknowledged;
* storing is **idempotent**, keyed on ``(account, orderid)`` for orders and
  ``(account, ci_lineitemid)`` for lines, because the channel returns an order again until the
  host confirms it (after a crash between commit and acknowledgement, for instance);
* the host may **refuse** an order (an ``accept`` policy); a refused order is not stored, so it
  is never acknowledged, and the channel offers it again next time.
"""

from __future__ import annotations

import json
import operator
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from pathlib import Path

from connector.models import (
    Address,
    Cancellation,
    HeldLine,
    Order,
    Parcel,
    Shipment,
    ShipmentLine,
    SkuComponent,
    StoredOrder,
)
from connector.runtime import checkpoint
from connector.runtime.collector import fewer_collections
from connector.runtime.files import ensure_private

__all__ = [
    "AcceptPolicy",
    "CancellationOutcome",
    "HostStore",
    "HostStoreError",
    "ShipmentConflict",
    "StoreOutcome",
]

AcceptPolicy = Callable[[Order], "bool | str"]
"""Decides whether the host takes an order: ``True`` to store it, ``False`` or a reason string
to refuse it."""

SCHEMA_VERSION = 2
"""The host database's layout, kept in ``PRAGMA user_version`` (a file without one is version 1
when it has tables, new otherwise; releases up to 0.4.0 wrote version 1).
:meth:`HostStore._migrate` brings older files up to it."""

# The status CHECKs are written with OR, not ``IN ('open', ...)``: SQLite builds a temporary
# index for an IN list on every row it checks, and that was a third of the SQLite time of each
# stored line and of each shipment's line update.
_STATUS_CHECK = "CHECK (status = 'open' OR status = 'cancelled' OR status = 'shipped')"

_ORDERS = f"""
CREATE TABLE IF NOT EXISTS {{name}} (
    seq           INTEGER PRIMARY KEY,
    host_order_id TEXT NOT NULL UNIQUE,
    account       TEXT NOT NULL,
    orderid       TEXT NOT NULL,
    order_date    TEXT NOT NULL,
    ship_by       TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'open' {_STATUS_CHECK},
    ship_to       TEXT NOT NULL,
    total         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    UNIQUE (account, orderid)
)"""
# seq is assigned by store_batch (MAX + 1), so AUTOINCREMENT (a sqlite_sequence write per row)
# bought nothing.

_ORDER_LINES = f"""
CREATE TABLE IF NOT EXISTS {{name}} (
    host_line_id            TEXT AS (host_order_id || '/' || ci_lineitemid) VIRTUAL,
    host_order_id           TEXT NOT NULL REFERENCES orders (host_order_id),
    account                 TEXT NOT NULL,
    ci_lineitemid           INTEGER NOT NULL,
    fulfillment_lineitem_id TEXT,
    sku                     TEXT NOT NULL,
    host_sku                TEXT NOT NULL,
    components              TEXT NOT NULL,
    quantity                INTEGER NOT NULL,
    shipped_quantity        INTEGER NOT NULL DEFAULT 0,
    status                  TEXT NOT NULL DEFAULT 'open' {_STATUS_CHECK},
    PRIMARY KEY (account, ci_lineitemid)
) WITHOUT ROWID"""
# Keyed on (account, ci_lineitemid), what every lookup and update uses: one b-tree instead of
# a rowid table plus two unique indexes. host_line_id is computed (never stored nor indexed:
# nothing looks a line up by it).

_UNDISPATCHED = """
CREATE TABLE IF NOT EXISTS {name} (
    account     TEXT NOT NULL,
    shipment_id TEXT NOT NULL,
    PRIMARY KEY (account, shipment_id)
) WITHOUT ROWID"""
# Written and deleted once per shipment: one b-tree page each time, not a table and its index.

_SCHEMA = (
    _ORDERS.format(name="orders"),
    _ORDER_LINES.format(name="order_lines"),
    # The order-status refresh after each shipment reads an order's lines by host_order_id:
    # without this index every shipment scanned the whole table (dispatch grew with the
    # square of lines).
    "CREATE INDEX IF NOT EXISTS order_lines_host_order ON order_lines (host_order_id)",
    """
CREATE TABLE IF NOT EXISTS shipments (
    account     TEXT NOT NULL,
    shipment_id TEXT NOT NULL,
    courier     TEXT NOT NULL,
    service     TEXT NOT NULL,
    shipped_at  TEXT,
    parcels     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (account, shipment_id)
)""",
    _UNDISPATCHED.format(name="undispatched"),
    """
CREATE TABLE IF NOT EXISTS notices (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    ci_lineitemid INTEGER,
    orderid       TEXT,
    reason        TEXT NOT NULL,
    seen_at       TEXT NOT NULL,
    dedupe_key    TEXT NOT NULL UNIQUE
)""",
)

_ORDER_COLUMNS = (
    "seq, host_order_id, account, orderid, order_date, ship_by, status, ship_to, total, created_at"
)
_LINE_COLUMNS = (
    "host_order_id, account, ci_lineitemid, fulfillment_lineitem_id, sku, host_sku, components,"
    " quantity, shipped_quantity, status"
)

_FROM_VERSION_1 = (
    # SQLite's way to change a table's constraints: build the new table, copy, drop, rename
    # (with foreign keys off, checked once at the end). Version 1 stored host_line_id as
    # host_order_id/ci_lineitemid, exactly what version 2 computes.
    # (Files from before 0.2 have no undispatched table: nothing was pending in them.)
    "CREATE TABLE IF NOT EXISTS undispatched (account TEXT NOT NULL, shipment_id TEXT NOT NULL)",
    # (Column lists below are our own constants.)
    _ORDERS.format(name="orders_v2"),
    f"INSERT INTO orders_v2 ({_ORDER_COLUMNS}) SELECT {_ORDER_COLUMNS} FROM orders",  # noqa: S608
    _ORDER_LINES.format(name="order_lines_v2"),
    f"INSERT INTO order_lines_v2 ({_LINE_COLUMNS})"  # noqa: S608
    f" SELECT {_LINE_COLUMNS} FROM order_lines",
    _UNDISPATCHED.format(name="undispatched_v2"),
    "INSERT INTO undispatched_v2 (account, shipment_id) SELECT account, shipment_id"
    " FROM undispatched",
    "DROP TABLE order_lines",
    "DROP TABLE orders",
    "DROP TABLE undispatched",
    "ALTER TABLE orders_v2 RENAME TO orders",
    "ALTER TABLE order_lines_v2 RENAME TO order_lines",
    "ALTER TABLE undispatched_v2 RENAME TO undispatched",
    "DELETE FROM sqlite_sequence WHERE name = 'orders'",
    *_SCHEMA,  # the index on the new order_lines (and any table a version 1 file lacked)
)


OPEN_TIMEOUT_SECONDS = 30.0
"""How long opening the database waits for other processes (busy timeout and open retries)."""

_ADDRESS_FIELDS = tuple(f.name for f in fields(Address))
_IN_CHUNK = 500  # host parameters per ``IN (...)`` query, well under SQLite's limit

# An order is open while any of its lines is open, else shipped if any line shipped, else
# cancelled; refreshed for the orders of the lines given (``{}`` marks their ``IN`` list).
_REFRESH_ORDERS_OF_LINES = (
    "UPDATE orders SET status = CASE "
    "WHEN EXISTS (SELECT 1 FROM order_lines l WHERE l.host_order_id = orders.host_order_id "
    "AND l.status = 'open') THEN 'open' "
    "WHEN EXISTS (SELECT 1 FROM order_lines l WHERE l.host_order_id = orders.host_order_id "
    "AND l.status = 'shipped') THEN 'shipped' "
    "ELSE 'cancelled' END "
    "WHERE host_order_id IN (SELECT host_order_id FROM order_lines WHERE account = ? "
    "AND ci_lineitemid IN ({}) AND status != 'cancelled')"
)

# A shipped quantity added to one line (a cancelled or unknown line updates nothing).
_SHIP_LINE_SQL = (
    "UPDATE order_lines SET shipped_quantity = shipped_quantity + ?1, "
    "status = CASE WHEN shipped_quantity + ?1 >= quantity THEN 'shipped' "
    "ELSE status END WHERE account = ?2 AND ci_lineitemid = ?3 AND status != 'cancelled'"
)
# The same, naming the line's order when it changed it (SQLite >= 3.35).
_SHIP_LINE = _SHIP_LINE_SQL + " RETURNING host_order_id"


_quote = json.encoder.encode_basestring_ascii  # json.dumps' own string writer (C)
_ADDRESS_TEXT = "{" + ", ".join(f'"{name}": %s' for name in _ADDRESS_FIELDS) + "}"


_address_values = operator.attrgetter(*_ADDRESS_FIELDS)


def _address_json(address: Address) -> str:
    """``json.dumps(dataclasses.asdict(address))``, the same text: an address is text and
    nulls, written straight into a template (a third cheaper than a dict through
    ``json.dumps``; once per stored order). Any other value goes through ``json.dumps``."""
    values = _address_values(address)
    try:
        return _ADDRESS_TEXT % tuple(["null" if v is None else _quote(v) for v in values])
    except TypeError:  # not text: json.dumps writes it (or refuses it) as it always did
        return json.dumps(dict(zip(_ADDRESS_FIELDS, values, strict=True)))


@lru_cache(maxsize=4096)
def _components_json(components: tuple[SkuComponent, ...]) -> str:
    """The ``components`` column; many lines share a mapping, so the text is cached."""
    return json.dumps(
        [{"host_sku": c.host_sku, "quantity_per_unit": c.quantity_per_unit} for c in components]
    )


def _isoformat(moment: datetime, texts: dict[datetime, str]) -> str:
    """``moment.isoformat()``, remembered in ``texts`` for UTC moments: an aware
    ``isoformat`` asks the zone for its offset (~1.5 us, twice per stored order), a look-up
    is a tenth of that. Only UTC ones: in other zones, equal moments (or an ambiguous local
    time and its fold) may have other texts."""
    if moment.tzinfo is not UTC:
        return moment.isoformat()
    text = texts.get(moment)
    if text is None:
        text = texts[moment] = moment.isoformat()
    return text


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # no code: judge by SQLite's message
        return "locked" in str(exc) or "busy" in str(exc)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class HostStoreError(Exception):
    """The host database could not be opened or written; the message names the file."""


class ShipmentConflict(HostStoreError):
    """A ``shipment_id`` the host recorded before, now with other contents; the message
    names the difference. Nothing was recorded (and nothing must be sent).

    .. versionadded:: 0.2.0
    """


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """What :meth:`HostStore.store_batch` did with one batch.

    :ivar stored: a receipt for every order now in the database (new or already there).
    :ivar new_orders: how many orders were inserted by this call.
    :ivar existing_orders: how many were already stored (idempotent replay).
    :ivar new_lines: lines inserted by this call.
    :ivar refused: ``(orderid, reason)`` for each order the accept policy refused.
    """

    stored: tuple[StoredOrder, ...] = ()
    new_orders: int = 0
    existing_orders: int = 0
    new_lines: int = 0
    refused: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CancellationOutcome:
    """What :meth:`HostStore.apply_cancellations` did.

    :ivar cancelled: open lines now cancelled in the host.
    :ivar already_cancelled: lines the host had already cancelled (a repeated notice).
    :ivar conflicts: lines that could not be cancelled (already shipped, or unknown to the
        host), with the reason; each is also kept as a ``cancel_conflict`` notice.
    """

    cancelled: int = 0
    already_cancelled: int = 0
    conflicts: tuple[tuple[int, str], ...] = field(default_factory=tuple)


def _first_column_in(
    db: sqlite3.Connection, sql: str, account: str, values: Sequence[str | int]
) -> set[str]:
    """The first column of ``sql`` (``{}`` marks its ``IN (...)`` list) over ``values``, asked
    ``_IN_CHUNK`` at a time."""
    found: set[str] = set()
    for start in range(0, len(values), _IN_CHUNK):
        chunk = values[start : start + _IN_CHUNK]
        query = sql.format(",".join("?" * len(chunk)))
        found.update(r[0] for r in db.execute(query, [account, *chunk]))
    return found


_ROWS_PER_INSERT = 100  # rows of one multi-row INSERT (9 values each: 900 parameters)


def _insert_rows(db: sqlite3.Connection, head: str, rows: Sequence[tuple[object, ...]]) -> int:
    """``head`` (``INSERT ... VALUES ``) for every row, ``_ROWS_PER_INSERT`` rows a statement;
    returns the rows inserted. One statement for many rows binds and steps once per
    statement: ``executemany`` did both per row, most of the Python-side cost of a stored
    line. The statement texts repeat (every full chunk is the same), so SQLite's statement
    cache keeps them."""
    if not rows:
        return 0
    width = len(rows[0])
    group = "(" + ", ".join("?" * width) + ")"
    inserted = 0
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        sql = head + ", ".join([group] * len(chunk))
        cur = db.execute(sql, list(chain.from_iterable(chunk)))
        inserted += max(cur.rowcount, 0)
    return inserted


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class _Transaction:
    """:meth:`HostStore._transaction`: a plain context manager rather than a generator
    through ``contextlib`` (a third of the Python cost of a one-statement transaction, and a
    one-by-one dispatch runs two per shipment). A failure to begin, write or commit becomes
    :class:`HostStoreError` naming the file; the transaction is rolled back on any error."""

    __slots__ = ("_durable", "_store")

    def __init__(self, store: HostStore, durable: bool) -> None:
        self._store = store
        self._durable = durable

    def __enter__(self) -> sqlite3.Connection:
        store = self._store
        db = store._db
        if not self._durable:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            self._restore()
            if isinstance(exc, sqlite3.Error):
                raise HostStoreError(f"cannot write host database {store.path}: {exc}") from None
            raise
        return db

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        store = self._store
        db = store._db
        try:
            if exc_type is not None:
                db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise HostStoreError(
                        f"cannot write host database {store.path}: {exc}"
                    ) from None
                return  # anything else propagates as it is
            try:
                db.execute("COMMIT")
            except sqlite3.Error as error:
                db.execute("ROLLBACK")
                raise HostStoreError(
                    f"cannot commit to host database {store.path}: {error}"
                ) from None
            store._checkpointer.after_commit()
        finally:
            self._restore()

    def _restore(self) -> None:
        """Back to the connection's own synchronous level after a non-durable one."""
        if not self._durable:
            store = self._store
            store._db.execute(f"PRAGMA synchronous={store._synchronous}")


class HostStore:
    """The reference host's SQLite database (one file, WAL mode)."""

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], datetime] | None = None,
        timeout: float = OPEN_TIMEOUT_SECONDS,
    ) -> None:
        self.path = Path(path)
        self._clock = clock or (lambda: datetime.now(UTC))
        try:
            # 0600 before SQLite opens it (customer addresses; its -wal/-shm take the mode).
            ensure_private(self.path)
            self._db = self._open(timeout)
            # The connection's own level (FULL unless SQLite was built otherwise), restored
            # after each non-durable commit.
            self._synchronous = int(self._db.execute("PRAGMA synchronous").fetchone()[0])
            # WAL checkpoints on a thread of their own from SQLite's usual 1,000 pages (see
            # connector.runtime.checkpoint: store_batch's commits ran them on the importer's
            # main thread); this connection's automatic one is only the backstop.
            self._checkpointer = checkpoint.attach(self._db, self.path)
        except (OSError, sqlite3.Error) as exc:
            raise HostStoreError(f"cannot open host database {self.path}: {exc}") from None

    def _open(self, timeout: float) -> sqlite3.Connection:
        """Connect, switch to WAL and create or migrate the schema, retrying while another process
        holds the file (up to ``timeout`` seconds in all).

        The busy timeout alone is not enough: ``PRAGMA journal_mode=WAL`` upgrades a read
        transaction to a write one, and SQLite answers SQLITE_BUSY at once (no busy handler,
        to avoid a deadlock) when another connection is writing the file at that moment,
        e.g. a second process converting the same fresh file to WAL. So the whole opening is
        retried with a backoff until the deadline."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            db = sqlite3.connect(str(self.path), isolation_level=None, timeout=timeout)
            try:
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    self._migrate(db)
                db.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as exc:
                db.close()
                if not _is_busy(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
                continue
            except BaseException:
                db.close()
                raise
            return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Create the schema in a new file, or bring an older file up to
        :data:`SCHEMA_VERSION`, in one transaction (another process opening the file at the
        same moment waits for it, then finds the work done)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise HostStoreError(
                    f"host database {self.path} has schema version {version}, newer than this "
                    f"release's {SCHEMA_VERSION}: upgrade groupon-ci-connector"
                )
            if version < SCHEMA_VERSION:
                has_tables = db.execute(
                    "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'orders'"
                ).fetchone()
                # foreign_keys is off on this connection until _open turns it on (after this):
                # the rebuild drops a parent table before renaming its copy into place.
                for sql in _FROM_VERSION_1 if has_tables else _SCHEMA:
                    db.execute(sql)
                broken = len(db.execute("PRAGMA foreign_key_check").fetchall())
                if broken:  # only a file edited by hand: version 1 kept foreign keys on
                    raise HostStoreError(
                        f"host database {self.path}: {broken} order line(s) refer to missing "
                        f"orders; the file is left as it was (schema version {version or 1})"
                    )
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close the database connection (the background checkpointer's first: the last
        connection to close checkpoints and removes the WAL, as before)."""
        self._checkpointer.close()
        self._db.close()

    def __enter__(self) -> HostStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self, *, durable: bool = True) -> _Transaction:
        """``BEGIN IMMEDIATE ... COMMIT``. ``durable=False``: the commit is not fsync'd
        (``synchronous=NORMAL`` under WAL): it survives the process being killed, only a power
        loss may undo it, and the next durable commit syncs it too. Only for bookkeeping whose
        loss is repaired by repeating idempotent work (see :meth:`mark_dispatched`)."""
        return _Transaction(self, durable)

    # -- orders ------------------------------------------------------------------------------

    def store_orders(
        self, account: str, orders: Sequence[Order], *, accept: AcceptPolicy | None = None
    ) -> list[StoredOrder]:
        """Store ``orders`` in one transaction and return a receipt per stored order.

        Idempotent: an order already stored returns its existing ``host_order_id`` and nothing
        is duplicated. Orders refused by ``accept`` are left out of the result.
        """
        return list(self.store_batch(account, orders, accept=accept).stored)

    def store_batch(
        self, account: str, orders: Sequence[Order], *, accept: AcceptPolicy | None = None
    ) -> StoreOutcome:
        """Like :meth:`store_orders`, with counts of what was new, replayed and refused.

        One transaction and a handful of statements per batch: the orders already stored are
        looked up together, new orders and lines are inserted many rows a statement."""
        with fewer_collections():  # a batch is thousands of rows: see connector.runtime.collector
            return self._store_batch(account, orders, accept)

    def _store_batch(
        self, account: str, orders: Sequence[Order], accept: AcceptPolicy | None
    ) -> StoreOutcome:
        receipts: list[StoredOrder] = []
        refused: list[tuple[str, str]] = []
        now = self._clock().isoformat()
        with self._transaction() as db:
            taken: list[Order] = []
            for order in orders:
                verdict: bool | str = True if accept is None else accept(order)
                if verdict is not True:
                    reason = verdict if isinstance(verdict, str) else "refused by the host"
                    refused.append((order.orderid, reason))
                    self._notice(db, account, "refused", None, order.orderid, reason, now)
                    continue
                taken.append(order)
            known = self._host_order_ids(db, account, {o.orderid for o in taken})
            seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM orders").fetchone()[0])
            new_rows: list[tuple[object, ...]] = []
            line_rows: list[tuple[object, ...]] = []
            existing = 0
            texts: dict[datetime, str] = {}  # a batch's orders share a few dates
            # A batch's lines share a handful of component tuples (one per mapping): their
            # column texts are found by identity (the tuple is held in the entry, so its id
            # stays its own), not by hashing each line's tuple of dataclasses.
            mapped: dict[int, tuple[tuple[SkuComponent, ...], bool, str | None, str]] = {}
            for order in taken:
                host_order_id = known.get(order.orderid)
                if host_order_id is None:
                    seq += 1
                    host_order_id = f"HO-{seq:07d}"
                    known[order.orderid] = host_order_id
                    new_rows.append(
                        (
                            seq,
                            host_order_id,
                            account,
                            order.orderid,
                            _isoformat(order.order_date, texts),
                            _isoformat(order.ship_by, texts),
                            _address_json(order.ship_to),
                            str(order.total),
                            now,
                        )
                    )
                else:
                    existing += 1
                # The order's rows and receipt in one pass over its lines (``INSERT OR
                # IGNORE``: a replay adds none). A line with no single resolved component is
                # stocked under its Groupon SKU.
                ids = []
                for line in order.lines:
                    components = line.components
                    entry = mapped.get(id(components))
                    if entry is None:
                        single = len(components) == 1
                        entry = mapped[id(components)] = (
                            components,
                            single,
                            components[0].host_sku if single else None,
                            _components_json(components),
                        )
                    lid = line.ci_lineitemid
                    ids.append(lid)
                    line_rows.append(
                        (
                            host_order_id,
                            account,
                            lid,
                            line.fulfillment_lineitem_id,
                            line.sku,
                            entry[2] if entry[1] else line.sku,
                            entry[3],
                            line.quantity,
                            "cancelled" if line.status == "cancelled" else "open",
                        )
                    )
                receipts.append(StoredOrder(order.orderid, host_order_id, tuple(ids)))
            _insert_rows(
                db,
                "INSERT INTO orders (seq, host_order_id, account, orderid, order_date, ship_by, "
                "ship_to, total, created_at) VALUES ",
                new_rows,
            )
            # INSERT OR IGNORE: a replayed line adds nothing (and is not counted).
            new_lines = _insert_rows(
                db,
                "INSERT OR IGNORE INTO order_lines (host_order_id, account, ci_lineitemid, "
                "fulfillment_lineitem_id, sku, host_sku, components, quantity, status) VALUES ",
                line_rows,
            )
        return StoreOutcome(
            stored=tuple(receipts),
            new_orders=len(new_rows),
            existing_orders=existing,
            new_lines=new_lines,
            refused=tuple(refused),
        )

    @staticmethod
    def _host_order_ids(db: sqlite3.Connection, account: str, orderids: set[str]) -> dict[str, str]:
        """``orderid -> host_order_id`` of the given orders already stored."""
        found: dict[str, str] = {}
        ids = sorted(orderids)
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            for row in db.execute(
                "SELECT orderid, host_order_id FROM orders "  # noqa: S608 (only placeholders)
                f"WHERE account = ? AND orderid IN ({marks})",
                (account, *chunk),
            ):
                found[row[0]] = row[1]
        return found

    def host_order_id(self, account: str, orderid: str) -> str | None:
        """The host's id for a Groupon order, ``None`` if it is not stored."""
        row = self._db.execute(
            "SELECT host_order_id FROM orders WHERE account = ? AND orderid = ?",
            (account, orderid),
        ).fetchone()
        return None if row is None else str(row["host_order_id"])

    def line(self, account: str, ci_lineitemid: int) -> dict[str, object] | None:
        """One stored line as a dict (columns of ``order_lines``), ``None`` if unknown."""
        row = self._db.execute(
            "SELECT * FROM order_lines WHERE account = ? AND ci_lineitemid = ?",
            (account, ci_lineitemid),
        ).fetchone()
        return None if row is None else dict(row)

    def open_lines(self, account: str) -> list[dict[str, object]]:
        """Every open line of ``account`` with its orderid, oldest order first."""
        rows = self._db.execute(
            "SELECT l.*, o.orderid FROM order_lines l JOIN orders o USING (host_order_id) "
            "WHERE l.account = ? AND l.status = 'open' ORDER BY o.seq, l.ci_lineitemid",
            (account,),
        ).fetchall()
        return [dict(r) for r in rows]

    # -- notices and cancellations -----------------------------------------------------------

    def record_held(self, account: str, held: Iterable[HeldLine]) -> int:
        """Remember the lines the channel holds back; returns how many are new to the host.

        The channel repeats still-open holds on every import, so a hold is recorded once per
        (line, order, reason).
        """
        now = self._clock().isoformat()
        added = 0
        with self._transaction() as db:
            for h in held:
                added += self._notice(
                    db, account, f"held:{h.kind}", h.ci_lineitemid, h.orderid, h.reason, now
                )
        return added

    def apply_cancellations(
        self, account: str, cancellations: Iterable[Cancellation]
    ) -> CancellationOutcome:
        """Cancel the host's open lines Groupon cancelled; shipped or unknown lines become
        ``cancel_conflict`` notices for the operator. One transaction; repeat-safe."""
        cancelled = already = 0
        conflicts: list[tuple[int, str]] = []
        now = self._clock().isoformat()
        with self._transaction() as db:
            for c in cancellations:
                row = db.execute(
                    "SELECT host_order_id, status FROM order_lines "
                    "WHERE account = ? AND ci_lineitemid = ?",
                    (account, c.ci_lineitemid),
                ).fetchone()
                if row is None:
                    reason = f"line {c.ci_lineitemid} of order {c.orderid} is not in the host"
                elif row["status"] == "cancelled":
                    already += 1
                    continue
                elif row["status"] == "shipped":
                    reason = (
                        f"line {c.ci_lineitemid} of order {c.orderid} was cancelled by Groupon "
                        "after the host shipped it"
                    )
                else:
                    db.execute(
                        "UPDATE order_lines SET status = 'cancelled' "
                        "WHERE account = ? AND ci_lineitemid = ?",
                        (account, c.ci_lineitemid),
                    )
                    self._refresh_order_status(db, row["host_order_id"])
                    self._notice(
                        db, account, "cancellation", c.ci_lineitemid, c.orderid, c.reason, now
                    )
                    cancelled += 1
                    continue
                conflicts.append((c.ci_lineitemid, reason))
                self._notice(
                    db, account, "cancel_conflict", c.ci_lineitemid, c.orderid, reason, now
                )
        return CancellationOutcome(cancelled, already, tuple(conflicts))

    def record_notice(
        self,
        account: str,
        kind: str,
        reason: str,
        *,
        ci_lineitemid: int | None = None,
        orderid: str | None = None,
    ) -> bool:
        """Record one operator notice (deduplicated); ``True`` if it is new."""
        with self._transaction() as db:
            return bool(
                self._notice(
                    db, account, kind, ci_lineitemid, orderid, reason, self._clock().isoformat()
                )
            )

    def record_notices(self, account: str, notices: Sequence[tuple[str, str, int | None]]) -> int:
        """:meth:`record_notice` for many ``(kind, reason, ci_lineitemid)`` in one transaction
        (one commit for every problem line of a dispatch, not one each); returns how many are
        new. Nothing to record writes nothing (added in 0.5.0)."""
        if not notices:
            return 0
        now = self._clock().isoformat()
        with self._transaction() as db:
            return sum(
                self._notice(db, account, kind, ci_lineitemid, None, reason, now)
                for kind, reason, ci_lineitemid in notices
            )

    def notices(
        self, account: str | None = None, kind: str | None = None
    ) -> list[dict[str, object]]:
        """Recorded notices, oldest first, optionally for one account and/or kind prefix."""
        sql = "SELECT account, kind, ci_lineitemid, orderid, reason, seen_at FROM notices WHERE 1=1"
        args: list[object] = []
        if account is not None:
            sql += " AND account = ?"
            args.append(account)
        if kind is not None:
            sql += " AND kind LIKE ?"
            args.append(kind + "%")
        return [dict(r) for r in self._db.execute(sql + " ORDER BY id", args).fetchall()]

    @staticmethod
    def _notice(
        db: sqlite3.Connection,
        account: str,
        kind: str,
        ci_lineitemid: int | None,
        orderid: str | None,
        reason: str,
        now: str,
    ) -> int:
        key = json.dumps([account, kind, ci_lineitemid, orderid, reason])
        cursor = db.execute(
            "INSERT OR IGNORE INTO notices (account, kind, ci_lineitemid, orderid, reason, "
            "seen_at, dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (account, kind, ci_lineitemid, orderid, reason, now, key),
        )
        return cursor.rowcount

    @staticmethod
    def _refresh_order_status(db: sqlite3.Connection, host_order_id: str) -> None:
        # open while any line is open, else shipped if any line shipped, else cancelled.
        db.execute(
            "UPDATE orders SET status = CASE "
            "WHEN EXISTS (SELECT 1 FROM order_lines WHERE host_order_id = ?1 "
            "AND status = 'open') THEN 'open' "
            "WHEN EXISTS (SELECT 1 FROM order_lines WHERE host_order_id = ?1 "
            "AND status = 'shipped') THEN 'shipped' "
            "ELSE 'cancelled' END WHERE host_order_id = ?1",
            (host_order_id,),
        )

    # -- shipments ---------------------------------------------------------------------------

    def create_shipment(self, account: str, shipment: Shipment) -> bool:
        """Record a dispatch and add its quantities to the lines it carries.

        Idempotent on ``(account, shipment_id)``: recording the same shipment again changes
        nothing and returns ``False``. Lines unknown to the host are not an error here: the
        plugin's pre-flight reports them.

        :raises ShipmentConflict: the id was recorded before with other contents (courier,
            service or parcels); nothing is recorded.
        """
        with self._transaction() as db:
            return self._record_shipment(db, account, shipment, self._clock().isoformat())

    def create_shipments(
        self, account: str, shipments: Sequence[Shipment]
    ) -> tuple[list[Shipment], list[tuple[Shipment, str]]]:
        """Record many dispatches in **one** transaction (see :meth:`create_shipment`).

        :returns: the shipments to send (new, or recorded before with the same contents) and
            ``(shipment, reason)`` for each refused because its id was used for other contents.

        .. versionadded:: 0.2.0
        """
        ok: list[Shipment] = []
        refused: list[tuple[Shipment, str]] = []
        now = self._clock().isoformat()
        with self._transaction() as db:
            # Ids recorded before (by an earlier call) go one by one through the conflict
            # check; new ones are written with one statement per table, not per shipment.
            ids = list(dict.fromkeys(s.shipment_id for s in shipments))
            known: set[str] = _first_column_in(
                db,
                "SELECT shipment_id FROM shipments WHERE account = ? AND shipment_id IN ({})",
                account,
                ids,
            )
            fresh: dict[str, tuple[Shipment, str]] = {}
            for shipment in shipments:
                sid = shipment.shipment_id
                first = fresh.get(sid)
                if sid in known or first is not None:
                    try:
                        if first is not None:
                            _check_same_shipment(account, first[0], shipment)
                        else:
                            self._record_shipment(db, account, shipment, now)
                    except ShipmentConflict as exc:
                        refused.append((shipment, str(exc)))
                        continue
                else:
                    fresh[sid] = (shipment, _parcels_json(shipment))
                ok.append(shipment)
            self._record_new_shipments(db, account, list(fresh.values()), now)
        return ok, refused

    def _record_new_shipments(
        self, db: sqlite3.Connection, account: str, shipments: list[tuple[Shipment, str]], now: str
    ) -> None:
        """:meth:`_record_shipment` for shipments whose ids are not recorded yet (with their
        parcels as JSON): the same rows, written per table with ``executemany``."""
        if not shipments:
            return
        db.executemany(
            "INSERT INTO shipments (account, shipment_id, courier, service, shipped_at, "
            "parcels, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (account, s.shipment_id, s.courier, s.service, _iso(s.shipped_at), parcels, now)
                for s, parcels in shipments
            ],
        )
        self._ship_lines(db, account, [s for s, _ in shipments])

    @staticmethod
    def _ship_lines(db: sqlite3.Connection, account: str, shipments: list[Shipment]) -> None:
        """The rest of recording new shipments: their 'undispatched' markers, their quantities
        added to the lines they carry, and the status of those lines' orders refreshed."""
        # Committed with the shipment, cleared once the plugin took it: a crash in between
        # leaves the marker, and the next sync dispatches the shipment again.
        db.executemany(
            "INSERT OR IGNORE INTO undispatched (account, shipment_id) VALUES (?, ?)",
            [(account, s.shipment_id) for s in shipments],
        )
        items = [
            (item.quantity, account, item.ci_lineitemid)
            for s in shipments
            for parcel in s.parcels
            for item in parcel.lines
        ]
        # In the order the shipments list them (a line's status follows its running sum); a
        # cancelled or unknown line updates nothing.
        db.executemany(_SHIP_LINE_SQL, items)
        # The orders of the lines updated above, each refreshed once, in the same statement
        # that finds them: a line is updated unless it is cancelled or unknown, and an update
        # never makes it cancelled.
        lines = list(dict.fromkeys(lid for *_, lid in items))
        for start in range(0, len(lines), _IN_CHUNK):
            chunk = lines[start : start + _IN_CHUNK]
            db.execute(
                _REFRESH_ORDERS_OF_LINES.format(",".join("?" * len(chunk))), [account, *chunk]
            )

    def mark_many_dispatched(self, account: str, shipment_ids: Sequence[str]) -> None:
        """:meth:`mark_dispatched` for many shipments in one transaction (not fsync'd either)."""
        with self._transaction(durable=False) as db:
            db.executemany(
                "DELETE FROM undispatched WHERE account = ? AND shipment_id = ?",
                [(account, sid) for sid in shipment_ids],
            )

    def _record_shipment(
        self, db: sqlite3.Connection, account: str, shipment: Shipment, now: str
    ) -> bool:
        parcels = _parcels_json(shipment)
        cursor = db.execute(
            "INSERT OR IGNORE INTO shipments (account, shipment_id, courier, service, "
            "shipped_at, parcels, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                account,
                shipment.shipment_id,
                shipment.courier,
                shipment.service,
                _iso(shipment.shipped_at),
                parcels,
                now,
            ),
        )
        if cursor.rowcount == 0:
            before = db.execute(
                "SELECT courier, service, parcels FROM shipments "
                "WHERE account = ? AND shipment_id = ?",
                (account, shipment.shipment_id),
            ).fetchone()
            _raise_if_different(
                account,
                shipment.shipment_id,
                (before["courier"], before["service"], json.loads(before["parcels"])),
                (shipment.courier, shipment.service, _parcels_of(shipment)),
            )
            return False
        self._ship_one(db, account, shipment)
        return True

    @staticmethod
    def _ship_one(db: sqlite3.Connection, account: str, shipment: Shipment) -> None:
        """:meth:`_ship_lines` for one shipment (a one-by-one dispatch records one per call):
        a plain ``execute`` per row, and the orders to refresh are the ones the line updates
        return, each refreshed by its key. The ``IN`` list of the many-shipment statement
        built a temporary b-tree per shipment (~3 % of the host's instructions per shipment)
        for what is almost always one order."""
        db.execute(
            "INSERT OR IGNORE INTO undispatched (account, shipment_id) VALUES (?, ?)",
            (account, shipment.shipment_id),
        )
        orders: dict[str, None] = {}
        for parcel in shipment.parcels:
            for item in parcel.lines:
                # In the order the shipment lists them, as _ship_lines (a running sum).
                for row in db.execute(_SHIP_LINE, (item.quantity, account, item.ci_lineitemid)):
                    orders[row[0]] = None
        for host_order_id in orders:  # only lines the update changed, as _ship_lines
            HostStore._refresh_order_status(db, host_order_id)

    def mark_dispatched(self, account: str, shipment_id: str) -> None:
        """The channel plugin has taken the shipment (into its outbox): stop re-sending it.

        Not fsync'd (one of the four commits of each shipment): losing it, which only a power
        loss can do, means the next sync hands the shipment to the plugin again, and
        ``shipment_id`` makes that a no-op there and in CI."""
        with self._transaction(durable=False) as db:
            db.execute(
                "DELETE FROM undispatched WHERE account = ? AND shipment_id = ?",
                (account, shipment_id),
            )

    def undispatched_shipments(self, account: str) -> list[Shipment]:
        """Shipments recorded by :meth:`create_shipment` that the plugin has not confirmed
        taking (the host stopped between the two), oldest first, rebuilt from the database."""
        rows = self._db.execute(
            "SELECT s.* FROM shipments s JOIN undispatched u USING (account, shipment_id) "
            "WHERE s.account = ? ORDER BY s.rowid",
            (account,),
        ).fetchall()
        return [
            Shipment(
                shipment_id=r["shipment_id"],
                courier=r["courier"],
                service=r["service"],
                shipped_at=datetime.fromisoformat(r["shipped_at"]) if r["shipped_at"] else None,
                parcels=parcels_from_json(r["parcels"]),
            )
            for r in rows
        ]

    def shipment_couriers(self) -> dict[str, list[str]]:
        """The distinct host couriers used in recorded shipments, per account."""
        result: dict[str, list[str]] = {}
        for row in self._db.execute(
            "SELECT DISTINCT account, courier FROM shipments ORDER BY account, courier"
        ):
            result.setdefault(row["account"], []).append(row["courier"])
        return result

    # -- counters (demo, benchmarks) ---------------------------------------------------------

    def count_orders(self, account: str | None = None) -> int:
        """Orders stored (for one account, or all)."""
        return self._count("orders", account)

    def count_lines(self, account: str | None = None) -> int:
        """Lines stored (for one account, or all)."""
        return self._count("order_lines", account)

    def count_shipments(self, account: str | None = None) -> int:
        """Shipments recorded (for one account, or all)."""
        return self._count("shipments", account)

    def _count(self, table: str, account: str | None) -> int:
        # ``table`` is one of our own literals, never user input.
        if account is None:
            row = self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608
        else:
            row = self._db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE account = ?",  # noqa: S608
                (account,),
            ).fetchone()
        return int(row[0])

    def duplicates(self) -> list[tuple[str, str, int]]:
        """Any ``(account, key, copies)`` stored more than once: orders by orderid, lines by
        ci_lineitemid. Always empty in a correct host; the demo and benchmarks assert it."""
        rows = self._db.execute(
            "SELECT account, 'order ' || orderid, COUNT(*) FROM orders "
            "GROUP BY account, orderid HAVING COUNT(*) > 1 "
            "UNION ALL "
            "SELECT account, 'line ' || ci_lineitemid, COUNT(*) FROM order_lines "
            "GROUP BY account, ci_lineitemid HAVING COUNT(*) > 1"
        ).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


def _parcels_of(shipment: Shipment) -> list[dict[str, object]]:
    """The parcels of ``shipment`` as stored (JSON) and compared."""
    return [
        {
            "tracking_number": p.tracking_number,
            "lines": [{"ci_lineitemid": s.ci_lineitemid, "quantity": s.quantity} for s in p.lines],
        }
        for p in shipment.parcels
    ]


_PARCEL_LINE = '{"ci_lineitemid": %d, "quantity": %d}'


def _parcels_json(shipment: Shipment) -> str:
    """``json.dumps(_parcels_of(shipment))``, the same text, written directly (no dicts; once
    per recorded shipment) when the parcels hold what they are typed to hold: text tracking
    numbers, integer ids and quantities. Anything else goes through ``json.dumps``."""
    parts = []
    for parcel in shipment.parcels:
        lines = parcel.lines
        if type(parcel.tracking_number) is not str or not all(
            type(i.ci_lineitemid) is int and type(i.quantity) is int for i in lines
        ):
            return json.dumps(_parcels_of(shipment))
        items = ", ".join([_PARCEL_LINE % (i.ci_lineitemid, i.quantity) for i in lines])
        parts.append(f'{{"tracking_number": {_quote(parcel.tracking_number)}, "lines": [{items}]}}')
    return "[" + ", ".join(parts) + "]"


def _raise_if_different(
    account: str, shipment_id: str, before: tuple[str, str, object], now: tuple[str, str, object]
) -> None:
    """:class:`ShipmentConflict` if ``now`` is not the shipment recorded as ``before``."""
    problem = _shipment_difference(before, now)
    if problem:
        raise ShipmentConflict(
            f"shipment_id {shipment_id!r} of account {account} was "
            f"recorded before with other contents: {problem}; use a new "
            "shipment_id for a different shipment"
        )


def _check_same_shipment(account: str, first: Shipment, again: Shipment) -> None:
    """A shipment id given twice in one batch: the second must be the first (as recorded:
    its parcels through JSON, as a later call would compare them)."""
    _raise_if_different(
        account,
        again.shipment_id,
        (first.courier, first.service, json.loads(json.dumps(_parcels_of(first)))),
        (again.courier, again.service, _parcels_of(again)),
    )


def _shipment_difference(before: tuple[str, str, object], now: tuple[str, str, object]) -> str:
    """What differs between two recordings of one shipment ('' when nothing does)."""
    diffs = []
    if before[0] != now[0]:
        diffs.append(f"courier {now[0]!r} (was {before[0]!r})")
    if before[1] != now[1]:
        diffs.append(f"service {now[1]!r} (was {before[1]!r})")
    if before[2] != now[2]:
        diffs.append(f"parcels {json.dumps(now[2])} (was {json.dumps(before[2])})")
    return "; ".join(diffs)


def parcels_from_json(text: str) -> tuple[Parcel, ...]:
    """The ``parcels`` column of ``shipments`` back as :class:`Parcel` objects.

    :raises ValueError, KeyError, TypeError: the JSON is not what :meth:`HostStore.create_shipment`
        writes.
    """
    return tuple(
        Parcel(
            str(p["tracking_number"]),
            tuple(ShipmentLine(int(i["ci_lineitemid"]), int(i["quantity"])) for i in p["lines"]),
        )
        for p in json.loads(text)
    )
