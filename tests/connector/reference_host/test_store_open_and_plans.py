"""Issue 11: opening one host database from several processes at once, the batched
``store_batch`` and an index behind every per-shipment statement."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.models import Address, Cancellation, Parcel, Shipment, ShipmentLine
from connector.reference_host.store import (
    HostStore,
    HostStoreError,
    _address_json,
    _parcels_json,
    _parcels_of,
)


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another connection writing the (still rollback-journal) file: what a second process
    converting a fresh store to WAL looks like to the first."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_open_waits_while_another_connection_writes_a_fresh_file(tmp_path: Path) -> None:
    """``PRAGMA journal_mode=WAL`` answers SQLITE_BUSY at once (no busy handler) while another
    connection holds the write lock: opening failed with 'database is locked' (seen in
    ``make crash`` with three processes); it now retries until the lock is gone."""
    path = tmp_path / "host.sqlite3"
    holder = _hold_write_lock(path)
    release = threading.Timer(0.4, lambda: holder.execute("COMMIT"))
    started = time.monotonic()
    release.start()
    try:
        with HostStore(path) as store:
            waited = time.monotonic() - started
            assert store.count_orders() == 0
    finally:
        release.join()
        holder.close()
    assert waited >= 0.3  # it really waited for the other writer, then opened


def test_open_gives_up_after_its_timeout_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "host.sqlite3"
    holder = _hold_write_lock(path)
    try:
        with pytest.raises(HostStoreError, match=r"cannot open host database .*host\.sqlite3"):
            HostStore(path, timeout=0.3)
    finally:
        holder.close()


def _open_at(path: str, start: float, results: Any) -> None:
    while time.time() < start:  # all processes open at (nearly) the same moment
        pass
    try:
        HostStore(path).close()
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_several_processes_open_a_fresh_store_at_once(tmp_path: Path) -> None:
    """Without the retry about one round in ten failed on this machine (3 processes)."""
    ctx = multiprocessing.get_context("fork")
    failures: list[str] = []
    for attempt in range(6):
        path = tmp_path / f"host-{attempt}.sqlite3"
        results = ctx.Queue()
        start = time.time() + 0.3
        procs = [ctx.Process(target=_open_at, args=(str(path), start, results)) for _ in range(4)]
        for proc in procs:
            proc.start()
        failures += [r for r in (results.get(timeout=60) for _ in procs) if r != "ok"]
        for proc in procs:
            proc.join(30)
    assert failures == []


def test_batch_replay_and_new_orders_mix(tmp_path: Path, kit: Any) -> None:
    """The executemany path: a batch mixing stored and new orders (and one order twice)."""
    with HostStore(tmp_path / "host.sqlite3", clock=lambda: kit.T0) as store:
        first = store.store_batch("us", [kit.order("O1", [11, 12])])
        again = kit.order("O1", [11, 12])
        mixed = store.store_batch("us", [again, kit.order("O2", [21]), kit.order("O2", [21])])
        assert (mixed.new_orders, mixed.existing_orders, mixed.new_lines) == (1, 2, 1)
        assert mixed.stored[0].host_order_id == first.stored[0].host_order_id
        assert mixed.stored[1].host_order_id == mixed.stored[2].host_order_id == "HO-0000002"
        assert store.count_lines() == 3
        assert store.duplicates() == []
        # The columns are the text json.dumps(asdict(...)) wrote before (same keys, order).
        line = store.line("us", 11)
        assert line is not None
        assert line["components"] == json.dumps([asdict(c) for c in again.lines[0].components])
        ship_to = store._db.execute("SELECT ship_to FROM orders WHERE orderid = 'O1'").fetchone()
        assert ship_to[0] == json.dumps(asdict(again.ship_to))


def test_every_per_shipment_statement_uses_an_index(tmp_path: Path, kit: Any) -> None:
    """Every statement the store runs for a shipment (recorded, replayed, marked, cancelled,
    looked up) is traced and explained: none scans a whole table."""
    with HostStore(tmp_path / "host.sqlite3", clock=lambda: kit.T0) as store:
        store.store_batch("us", [kit.order(f"O{n}", [n * 10 + 1, n * 10 + 2]) for n in range(1, 6)])
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        store.store_batch("us", [kit.order("O1", [11, 12]), kit.order("O9", [91])])
        one = Shipment.single("S1", "UPS", "1Z1", {11: 1})
        store.create_shipment("us", one)
        store.create_shipment("us", one)  # replay: read back and compared
        store.mark_dispatched("us", "S1")
        ok, _ = store.create_shipments("us", [Shipment.single("S2", "UPS", "1Z2", {21: 1, 22: 2})])
        store.mark_many_dispatched("us", [s.shipment_id for s in ok])
        store.undispatched_shipments("us")
        store.apply_cancellations("us", [Cancellation("us", "O3", 31, None, kit.T0)])
        store.record_notice("us", "dispatch_held", "why", ci_lineitemid=41)
        store.line("us", 41)
        store.host_order_id("us", "O4")
        store._db.set_trace_callback(None)
        explained = 0
        for sql in statements:
            if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
                continue
            plan = store._db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            details = [str(row[3]) for row in plan]
            explained += 1
            scans = [d for d in details if d.startswith("SCAN ") and "CONSTANT" not in d]
            assert scans == [], f"{sql}: {details}"
        assert explained >= 10


def test_only_the_dispatched_marker_skips_fsync(tmp_path: Path, kit: Any) -> None:
    """The shipment itself is committed durably (synchronous FULL) before anything is sent;
    clearing the 'undispatched' marker afterwards is not fsync'd (a lost clear only repeats an
    idempotent hand-over) and the connection is back at its own level after it."""
    with HostStore(tmp_path / "host.sqlite3", clock=lambda: kit.T0) as store:
        store.store_batch("us", [kit.order("O1", [11, 12])])
        before = store.line("us", 11)
        assert before is not None
        quantity = int(before["quantity"])  # type: ignore[call-overload]
        level = store._db.execute("PRAGMA synchronous").fetchone()[0]
        assert level >= 2  # FULL (or EXTRA): a commit is on disk when COMMIT returns
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        store.create_shipment("us", Shipment.single("S1", "UPS", "1Z1", {11: quantity}))
        recorded = list(statements)
        statements.clear()
        store.mark_dispatched("us", "S1")
        store._db.set_trace_callback(None)
        assert not any("synchronous" in sql for sql in recorded)
        assert statements[0] == "PRAGMA synchronous=NORMAL"
        assert statements[-1] == f"PRAGMA synchronous={level}"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == level
        assert store.undispatched_shipments("us") == []
        line = store.line("us", 11)
        assert line is not None
        assert (line["shipped_quantity"], line["status"]) == (quantity, "shipped")
        status = store._db.execute("SELECT status FROM orders WHERE orderid = 'O1'").fetchone()
        assert status[0] == "open"  # line 12 is still open


_address_values = st.none() | st.text(max_size=12) | st.integers() | st.floats(allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(_address_values, min_size=8, max_size=8))
def test_address_text_is_what_json_dumps_of_asdict_writes(values: list[Any]) -> None:
    # The ship_to column keeps json.dumps' exact text (the template writes text and nulls,
    # json.dumps the rest); lone surrogates, quotes, %-signs and non-ASCII included.
    address = Address(*values)
    assert _address_json(address) == json.dumps(asdict(address))


def test_create_shipments_records_what_create_shipment_records_one_by_one(
    tmp_path: Path, kit: Any
) -> None:
    """The batch path (one statement per table for new ids) leaves the same rows and refuses
    the same shipments as one create_shipment per shipment: new ids, ids recorded before (same
    and other contents), an id twice in the batch (same and other contents), partial and
    over-shipped quantities, a cancelled line, a line the host does not know."""
    from connector.reference_host.store import ShipmentConflict

    orders = [kit.order(f"O{n}", [n * 10 + 1, n * 10 + 2]) for n in range(1, 6)]
    before = [Shipment.single("S0", "UPS", "1Z0", {11: 1}), Shipment.single("S9", "UPS", "1Z9", {})]
    batch = [
        Shipment.single("S1", "UPS", "1Z1", {21: 1}),
        Shipment.single("S0", "UPS", "1Z0", {11: 1}),  # recorded before, same contents
        Shipment.single("S9", "FedEx", "1Z9", {}),  # recorded before, other courier
        Shipment.single("S2", "UPS", "1Z2", {21: 5, 22: 1, 31: 1, 99: 1}),
        Shipment.single("S1", "UPS", "1Z1", {21: 1}),  # twice in the batch, same
        Shipment.single("S2", "UPS", "1Z2", {21: 4}),  # twice in the batch, other contents
        Shipment.single("S3", "UPS", "1Z3", {41: 1, 42: 1, 12: 1}),
        Shipment.single("S4", "UPS", "1Z4", {51: 1}),
    ]
    dumps = []
    outcomes = []
    for how in ("one", "many"):
        with HostStore(tmp_path / f"{how}.sqlite3", clock=lambda: kit.T0) as store:
            store.store_batch("us", orders)
            store.apply_cancellations("us", [Cancellation("us", "O3", 31, None, kit.T0)])
            for shipment in before:
                store.create_shipment("us", shipment)
            if how == "many":
                ok, refused = store.create_shipments("us", batch)
                outcomes.append(
                    ([s.shipment_id for s in ok], [(s.shipment_id, why) for s, why in refused])
                )
            else:
                ok_ids: list[str] = []
                refused_ids: list[tuple[str, str]] = []
                for shipment in batch:
                    try:
                        store.create_shipment("us", shipment)
                    except ShipmentConflict as exc:
                        refused_ids.append((shipment.shipment_id, str(exc)))
                    else:
                        ok_ids.append(shipment.shipment_id)
                outcomes.append((ok_ids, refused_ids))
            dumps.append(
                {
                    table: store._db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()  # noqa: S608
                    for table in ("shipments", "undispatched", "order_lines", "orders")
                }
            )
    assert outcomes[0] == outcomes[1]
    assert [sid for sid, _ in outcomes[0][1]] == ["S9", "S2"]
    for table, rows in dumps[0].items():
        assert [tuple(r) for r in rows] == [tuple(r) for r in dumps[1][table]], table


_tracking = st.text(max_size=12) | st.integers() | st.none()
_number = st.integers(min_value=-(2**70), max_value=2**70) | st.booleans() | st.floats()
_parcel = st.builds(
    Parcel,
    _tracking,
    st.lists(st.builds(ShipmentLine, _number, _number), max_size=3).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_parcel, max_size=3))
def test_parcels_text_is_what_json_dumps_writes(parcels: list[Parcel]) -> None:
    # The parcels column keeps json.dumps' exact text (replays compare through it and
    # reconcile reads it): written directly for text and integers, by json.dumps otherwise
    # (bools, floats, NaN, a number as tracking); quotes and non-ASCII included.
    shipment = Shipment("S1", "UPS", tuple(parcels))
    assert _parcels_json(shipment) == json.dumps(_parcels_of(shipment))
