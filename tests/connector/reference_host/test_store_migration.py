"""The host database's schema version 2 (0.5.0): files written by earlier releases are rebuilt
once when opened, keeping every row; new files start at version 2."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from connector.models import Cancellation, Shipment
from connector.reference_host.store import SCHEMA_VERSION, HostStore, HostStoreError

# The layout every release up to 0.4.0 created (no user_version), verbatim.
_V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    host_order_id TEXT NOT NULL UNIQUE,
    account       TEXT NOT NULL,
    orderid       TEXT NOT NULL,
    order_date    TEXT NOT NULL,
    ship_by       TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'open'
                  CHECK (status IN ('open', 'cancelled', 'shipped')),
    ship_to       TEXT NOT NULL,
    total         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    UNIQUE (account, orderid)
);
CREATE TABLE IF NOT EXISTS order_lines (
    host_line_id            TEXT PRIMARY KEY,
    host_order_id           TEXT NOT NULL REFERENCES orders (host_order_id),
    account                 TEXT NOT NULL,
    ci_lineitemid           INTEGER NOT NULL,
    fulfillment_lineitem_id TEXT,
    sku                     TEXT NOT NULL,
    host_sku                TEXT NOT NULL,
    components              TEXT NOT NULL,
    quantity                INTEGER NOT NULL,
    shipped_quantity        INTEGER NOT NULL DEFAULT 0,
    status                  TEXT NOT NULL DEFAULT 'open'
                            CHECK (status IN ('open', 'cancelled', 'shipped')),
    UNIQUE (account, ci_lineitemid)
);
CREATE INDEX IF NOT EXISTS order_lines_host_order ON order_lines (host_order_id);
CREATE TABLE IF NOT EXISTS shipments (
    account     TEXT NOT NULL,
    shipment_id TEXT NOT NULL,
    courier     TEXT NOT NULL,
    service     TEXT NOT NULL,
    shipped_at  TEXT,
    parcels     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (account, shipment_id)
);
CREATE TABLE IF NOT EXISTS undispatched (
    account     TEXT NOT NULL,
    shipment_id TEXT NOT NULL,
    PRIMARY KEY (account, shipment_id)
);
CREATE TABLE IF NOT EXISTS notices (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    ci_lineitemid INTEGER,
    orderid       TEXT,
    reason        TEXT NOT NULL,
    seen_at       TEXT NOT NULL,
    dedupe_key    TEXT NOT NULL UNIQUE
);
"""

_PARCELS = '[{"tracking_number": "1Z1", "lines": [{"ci_lineitemid": 11, "quantity": 1}]}]'


def _v1_file(path: Path, *, undispatched: bool = True) -> None:
    """A host file as 0.4.0 left it: two orders (one partly shipped, one cancelled), a shipment
    still marked undispatched, a notice."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    schema = _V1_SCHEMA
    if not undispatched:  # files from before 0.2 have no undispatched table
        start = schema.index("CREATE TABLE IF NOT EXISTS undispatched")
        schema = schema[:start] + schema[schema.index("CREATE TABLE IF NOT EXISTS notices") :]
    db.executescript(schema)
    db.executescript(
        """
        INSERT INTO orders (host_order_id, account, orderid, order_date, ship_by, ship_to,
            total, created_at)
        VALUES ('HO-0000001', 'us', 'O1', '2024-03-04T15:00:00+00:00',
            '2024-03-07T15:00:00+00:00', '{"name": "Ann"}', '39.96', '2024-03-04T15:00:00+00:00'),
            ('HO-0000002', 'us', 'O2', '2024-03-04T15:00:00+00:00',
            '2024-03-07T15:00:00+00:00', '{"name": "Ann"}', '19.98', '2024-03-04T15:00:00+00:00');
        UPDATE orders SET status = 'cancelled' WHERE orderid = 'O2';
        INSERT INTO order_lines (host_line_id, host_order_id, account, ci_lineitemid,
            fulfillment_lineitem_id, sku, host_sku, components, quantity, shipped_quantity,
            status)
        VALUES ('HO-0000001/11', 'HO-0000001', 'us', 11, 'F11', 'SKU-11', 'SKU-11', '[]', 2, 1,
                'open'),
            ('HO-0000001/12', 'HO-0000001', 'us', 12, NULL, 'SKU-12', 'OWN-12',
                '[{"host_sku": "OWN-12", "quantity_per_unit": 1}]', 2, 0, 'open'),
            ('HO-0000002/21', 'HO-0000002', 'us', 21, 'F21', 'SKU-21', 'SKU-21', '[]', 2, 0,
                'cancelled');
        INSERT INTO notices (account, kind, ci_lineitemid, orderid, reason, seen_at, dedupe_key)
        VALUES ('us', 'held:unmapped_sku', 13, 'O1', 'no mapping', '2024-03-04T15:00:00+00:00',
            '["us", "held:unmapped_sku", 13, "O1", "no mapping"]');
        """
    )
    db.execute(
        "INSERT INTO shipments VALUES ('us', 'S1', 'UPS', '', NULL, ?, ?)",
        (_PARCELS, "2024-03-04T15:00:00+00:00"),
    )
    if undispatched:
        db.execute("INSERT INTO undispatched VALUES ('us', 'S1')")
    db.close()


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, by named columns (the layout may differ)."""
    db = sqlite3.connect(path)
    try:
        return {
            "orders": db.execute(
                "SELECT seq, host_order_id, account, orderid, order_date, ship_by, status,"
                " ship_to, total, created_at FROM orders ORDER BY seq"
            ).fetchall(),
            "order_lines": db.execute(
                "SELECT host_line_id, host_order_id, account, ci_lineitemid,"
                " fulfillment_lineitem_id, sku, host_sku, components, quantity,"
                " shipped_quantity, status FROM order_lines ORDER BY account, ci_lineitemid"
            ).fetchall(),
            "shipments": db.execute("SELECT * FROM shipments ORDER BY rowid").fetchall(),
            "notices": db.execute("SELECT * FROM notices ORDER BY id").fetchall(),
        }
    finally:
        db.close()


def _version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_a_new_file_starts_at_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "host.sqlite3"
    HostStore(path).close()
    assert _version(path) == SCHEMA_VERSION == 2
    db = sqlite3.connect(path)
    lines_sql = db.execute("SELECT sql FROM sqlite_schema WHERE name = 'order_lines'").fetchone()
    db.close()
    assert "WITHOUT ROWID" in lines_sql[0]
    assert " IN (" not in lines_sql[0]  # the OR-written CHECK (no temporary index per row)


def test_a_version_1_file_keeps_every_row_and_goes_on_working(tmp_path: Path, kit: Any) -> None:
    path = tmp_path / "host.sqlite3"
    _v1_file(path)
    before = _rows(path)
    with HostStore(path, clock=lambda: kit.T0) as store:
        assert _version(path) == SCHEMA_VERSION
        assert _rows(path) == before
        line = store.line("us", 12)
        assert line is not None
        assert line["host_line_id"] == "HO-0000001/12"  # computed now, the same text
        assert store.undispatched_shipments("us")[0].shipment_id == "S1"
        assert store.notices("us")[0]["kind"] == "held:unmapped_sku"
        again = store.store_orders("us", [kit.order("O1", [11, 12])])
        assert [r.host_order_id for r in again] == ["HO-0000001"]  # idempotent on version 1 rows
        assert store.store_orders("us", [kit.order("O3", [31])])[0].host_order_id == "HO-0000003"
        assert store.create_shipment("us", Shipment.single("S2", "UPS", "1Z2", {11: 1, 12: 2}))
        assert store.open_lines("us")[0]["ci_lineitemid"] == 31
        status = store._db.execute("SELECT status FROM orders WHERE orderid = 'O1'").fetchone()
        assert status[0] == "shipped"
        store.apply_cancellations("us", [Cancellation("us", "O3", 31, None, kit.T0)])
        assert store.duplicates() == []
        with pytest.raises(sqlite3.IntegrityError):  # the constraints came along
            store._db.execute("UPDATE order_lines SET status = 'lost' WHERE ci_lineitemid = 11")
        with pytest.raises(sqlite3.IntegrityError):
            store._db.execute(
                "INSERT INTO order_lines (host_order_id, account, ci_lineitemid, sku, host_sku,"
                " components, quantity) VALUES ('HO-9999999', 'us', 99, 'S', 'S', '[]', 1)"
            )
    with HostStore(path) as again:  # opening again changes nothing
        assert again.count_lines() == 4


def test_a_file_from_before_the_undispatched_table_is_migrated_too(tmp_path: Path) -> None:
    path = tmp_path / "host.sqlite3"
    _v1_file(path, undispatched=False)
    with HostStore(path) as store:
        assert store.undispatched_shipments("us") == []
        assert store.count_shipments() == 1
    assert _version(path) == SCHEMA_VERSION


def test_a_file_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "host.sqlite3"
    HostStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(HostStoreError, match=r"schema version 99, newer than this release's 2"):
        HostStore(path)
    assert _version(path) == 99


def test_a_failed_migration_leaves_the_version_1_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "host.sqlite3"
    _v1_file(path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute(  # a line whose order is missing: the rebuilt file would break the FK
        "INSERT INTO order_lines (host_line_id, host_order_id, account, ci_lineitemid, sku,"
        " host_sku, components, quantity) VALUES ('HO-9/9', 'HO-9', 'us', 9, 'S', 'S', '[]', 1)"
    )
    db.commit()
    db.close()
    before = _rows(path)
    refused = r"1 order line\(s\) refer to missing orders; .* \(schema version 1\)"
    with pytest.raises(HostStoreError, match=refused):
        HostStore(path)
    assert _version(path) == 0
    assert _rows(path) == before


def _open_at(path: str, start: float, results: Any) -> None:
    while time.time() < start:
        pass
    try:
        with HostStore(path) as store:
            results.put(f"ok {store.count_lines()}")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_several_processes_open_a_version_1_file_at_once(tmp_path: Path) -> None:
    """One migrates, the others wait for its transaction and find the work done."""
    ctx = multiprocessing.get_context("fork")
    for attempt in range(3):
        path = tmp_path / f"host-{attempt}.sqlite3"
        _v1_file(path)
        results = ctx.Queue()
        start = time.time() + 0.3
        procs = [ctx.Process(target=_open_at, args=(str(path), start, results)) for _ in range(4)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(30)
        assert outcomes == ["ok 3"] * 4
        assert _version(path) == SCHEMA_VERSION
