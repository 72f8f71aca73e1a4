"""The host store: one transaction per batch, idempotent, refusals, cancellations, shipments."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from connector.models import Cancellation, Order, Shipment
from connector.reference_host.store import HostStore, HostStoreError


@pytest.fixture
def store(tmp_path: Path, kit: Any) -> Any:
    with HostStore(tmp_path / "host.sqlite3", clock=lambda: kit.T0) as s:
        yield s


def test_same_batch_twice_stores_nothing_twice(store: HostStore, kit: Any) -> None:
    batch = [kit.order("O1", [11, 12]), kit.order("O2", [21])]
    first = store.store_batch("us", batch)
    second = store.store_batch("us", batch)
    assert (first.new_orders, first.existing_orders, first.new_lines) == (2, 0, 3)
    assert (second.new_orders, second.existing_orders, second.new_lines) == (0, 2, 0)
    assert [r.host_order_id for r in first.stored] == [r.host_order_id for r in second.stored]
    assert store.count_orders() == 2
    assert store.count_lines() == 3
    assert store.duplicates() == []


def test_batch_of_many_statements_counts_new_lines_only(store: HostStore, kit: Any) -> None:
    # Rows are inserted 100 a statement: 250 orders (375 lines) span several, the last
    # partly; a replayed order and a line repeated within the batch add nothing.
    batch = [
        kit.order(f"O{i}", [1000 + 2 * i] + ([1001 + 2 * i] if i % 2 else [])) for i in range(250)
    ]
    first = store.store_batch("us", batch[:120])
    again = store.store_batch("us", [*batch[100:], kit.order("O249", [1498, 1499])])
    assert (first.new_orders, first.new_lines) == (120, 180)
    assert (again.new_orders, again.existing_orders, again.new_lines) == (130, 21, 195)
    assert [r.ci_lineitemids for r in again.stored[:20]] == [
        r.ci_lineitemids for r in first.stored[100:]
    ]
    assert store.count_orders() == 250
    assert store.count_lines() == 375
    assert store.duplicates() == []


def test_same_orderid_in_two_accounts_is_two_orders(store: HostStore, kit: Any) -> None:
    store.store_orders("us", [kit.order("O1", [11])])
    store.store_orders("uk", [kit.order("O1", [11], account="uk")])
    assert store.count_orders("us") == 1
    assert store.count_orders("uk") == 1
    assert store.host_order_id("us", "O1") != store.host_order_id("uk", "O1")


def test_receipts_carry_host_ids_and_every_line(store: HostStore, kit: Any) -> None:
    [receipt] = store.store_orders("us", [kit.order("O1", [11, 12])])
    assert receipt.orderid == "O1"
    assert receipt.host_order_id == store.host_order_id("us", "O1") == "HO-0000001"
    assert receipt.ci_lineitemids == (11, 12)
    line = store.line("us", 12)
    assert line is not None
    assert line["status"] == "open"
    assert line["quantity"] == 2


def test_refusal_policy_keeps_the_order_out(store: HostStore, kit: Any) -> None:
    def accept(order: Order) -> bool | str:
        if order.orderid == "BAD":
            return "ship-to country not served"
        return order.orderid != "ALSO-BAD"

    outcome = store.store_batch(
        "us",
        [kit.order("OK", [1]), kit.order("BAD", [2]), kit.order("ALSO-BAD", [3])],
        accept=accept,
    )
    assert [r.orderid for r in outcome.stored] == ["OK"]
    assert outcome.refused == (
        ("BAD", "ship-to country not served"),
        ("ALSO-BAD", "refused by the host"),
    )
    assert store.host_order_id("us", "BAD") is None
    assert [n["orderid"] for n in store.notices("us", "refused")] == ["BAD", "ALSO-BAD"]


def test_batch_is_one_transaction(store: HostStore, kit: Any) -> None:
    def explode(order: Order) -> bool:
        if order.orderid == "O3":
            raise RuntimeError("host crashed mid-batch")
        return True

    with pytest.raises(RuntimeError):
        store.store_batch("us", [kit.order("O1", [1]), kit.order("O3", [3])], accept=explode)
    assert store.count_orders() == 0
    assert store.count_lines() == 0


def test_cancellations_cancel_open_lines_and_flag_shipped_ones(store: HostStore, kit: Any) -> None:
    store.store_orders("us", [kit.order("O1", [11, 12]), kit.order("O2", [21])])
    assert store.create_shipment("us", Shipment.single("S1", "UPS", "1Z1", {21: 2}))
    cancels = [
        Cancellation("us", "O1", 11, None, kit.T0),
        Cancellation("us", "O2", 21, None, kit.T0),
        Cancellation("us", "O9", 99, None, kit.T0),
    ]
    outcome = store.apply_cancellations("us", cancels)
    assert outcome.cancelled == 1
    assert [lid for lid, _ in outcome.conflicts] == [21, 99]
    assert "after the host shipped it" in outcome.conflicts[0][1]
    assert store.line("us", 11)["status"] == "cancelled"  # type: ignore[index]
    again = store.apply_cancellations("us", cancels[:1])
    assert (again.cancelled, again.already_cancelled) == (0, 1)
    store.apply_cancellations("us", [Cancellation("us", "O1", 12, None, kit.T0)])
    status = (
        sqlite3.connect(store.path)
        .execute("SELECT status FROM orders WHERE orderid = 'O1'")
        .fetchone()[0]
    )
    assert status == "cancelled"


def test_record_held_counts_only_new_holds(store: HostStore, kit: Any) -> None:
    holds = [kit.unmapped_hold(13, "O2"), kit.unmapped_hold(14, "O2")]
    assert store.record_held("us", holds) == 2
    assert store.record_held("us", holds) == 0
    assert len(store.notices("us", "held")) == 2


def test_shipment_is_recorded_once_and_marks_lines_shipped(store: HostStore, kit: Any) -> None:
    store.store_orders("us", [kit.order("O1", [11, 12])])
    partial = Shipment.single("S1", "UPS", "1Z1", {11: 1})
    assert store.create_shipment("us", partial) is True
    assert store.create_shipment("us", partial) is False
    assert store.line("us", 11)["shipped_quantity"] == 1  # type: ignore[index]
    assert store.line("us", 11)["status"] == "open"  # type: ignore[index]
    store.create_shipment("us", Shipment.single("S2", "FedEx", "7777", {11: 1, 12: 2}))
    assert store.line("us", 11)["status"] == "shipped"  # type: ignore[index]
    assert store.open_lines("us") == []
    assert store.count_shipments("us") == 2
    assert store.shipment_couriers() == {"us": ["FedEx", "UPS"]}


def test_unwritable_path_is_a_clean_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HostStoreError, match=r"cannot open host database .*file"):
        HostStore(blocker / "host.sqlite3")


def test_per_shipment_lookups_use_an_index(store: HostStore) -> None:
    """Issue 11: the order-status refresh after each shipment read an order's lines with a full
    scan of ``order_lines`` (dispatch time grew with the square of the lines stored)."""
    lookups = {
        "order lines of an order": (
            "SELECT status FROM order_lines WHERE host_order_id = ?",
            ("HO-0000001",),
        ),
        "a line by its CI id": (
            "SELECT * FROM order_lines WHERE account = ? AND ci_lineitemid = ?",
            ("us", 1),
        ),
    }
    for what, (sql, params) in lookups.items():
        rows = store._db.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        plan = " ".join(str(row[3]) for row in rows)
        # (A line by its CI id is a search of the table's own key since schema version 2.)
        assert re.search(r"USING (COVERING )?INDEX|USING PRIMARY KEY", plan), f"{what}: {plan}"


def test_record_notices_writes_many_in_one_commit(store: HostStore) -> None:
    """A dispatch's held and rejected lines become notices in one transaction (the host did
    one fsync'd commit per line); repeats are still deduplicated, nothing writes nothing."""
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    assert store.record_notices("us", []) == 0
    assert statements == []
    problems = [("dispatch_held", "no carrier", 11), ("dispatch_rejected", "bad", 12)]
    assert store.record_notices("us", [*problems, problems[0]]) == 2
    assert store.record_notices("us", problems) == 0
    store._db.set_trace_callback(None)
    assert statements.count("COMMIT") == 2
    assert [(n["kind"], n["ci_lineitemid"]) for n in store.notices("us")] == [
        ("dispatch_held", 11),
        ("dispatch_rejected", 12),
    ]


def test_checkpoints_run_off_the_committing_thread(
    tmp_path: Path, kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """store_batch's commits hand WAL checkpoints to a thread of their own (the connection's
    automatic one is only a backstop); close stops it and leaves no WAL behind."""
    from connector.runtime import checkpoint

    monkeypatch.setattr(checkpoint, "INTERVAL", 0.01)
    path = tmp_path / "host.sqlite3"
    store = HostStore(path, clock=lambda: kit.T0)
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == (
        checkpoint.BACKSTOP_PAGES
    )
    checkpointer = store._checkpointer
    monkeypatch.setattr(checkpointer, "_threshold", 0)  # any WAL counts as big
    store.store_batch("us", [kit.order("O1", [11, 12])])
    assert checkpointer.running
    store.store_batch("us", [kit.order("O2", [21])])
    store.close()
    assert not checkpointer.running
    assert not Path(f"{path}-wal").exists()
    with HostStore(path, clock=lambda: kit.T0) as again:
        assert again.count_lines() == 3
