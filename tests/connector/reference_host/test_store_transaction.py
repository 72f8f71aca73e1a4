"""Issue 11 (round 6): the host store's transaction as a plain context manager (begin, write
and commit failures, the non-durable level restored) and ``store_batch``'s one-pass rows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from connector.models import Order, SkuComponent
from connector.reference_host.store import HostStore, HostStoreError


class _FailOn:
    """The store's connection, except that one statement fails (a full disk at COMMIT, say)."""

    def __init__(self, db: sqlite3.Connection, statement: str) -> None:
        self._db = db
        self._statement = statement

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == self._statement:
            raise sqlite3.OperationalError("disk I/O error")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


_NOTICE = (
    "INSERT INTO notices (account, kind, reason, seen_at, dedupe_key) "
    "VALUES ('us', 'k', 'r', 't', 'key')"
)


def _write(store: HostStore, durable: bool, then: str | Exception | None = None) -> None:
    """One transaction: a notice, then ``then`` (a statement to run or an error to raise)."""
    with store._transaction(durable=durable) as db:
        db.execute(_NOTICE)
        if isinstance(then, Exception):
            raise then
        if then is not None:
            db.execute(then)


def _level(store: HostStore) -> int:
    return int(store._db.execute("PRAGMA synchronous").fetchone()[0])


@pytest.mark.parametrize("durable", [True, False])
def test_a_failed_statement_rolls_back_and_names_the_file(
    tmp_path: Path, kit: Any, durable: bool
) -> None:
    with HostStore(tmp_path / "host.sqlite3", clock=lambda: kit.T0) as store:
        level = _level(store)
        with pytest.raises(HostStoreError, match=r"cannot write host database .*host\.sqlite3"):
            _write(store, durable, "INSERT INTO no_such_table VALUES (1)")
        assert store.notices() == []  # the first insert was rolled back with the rest
        assert not store._db.in_transaction
        assert _level(store) == level


def test_other_errors_roll_back_and_propagate_unchanged(tmp_path: Path, kit: Any) -> None:
    with HostStore(tmp_path / "host.sqlite3", clock=lambda: kit.T0) as store:
        level = _level(store)
        with pytest.raises(ValueError, match="the host's own"):
            _write(store, False, ValueError("the host's own"))
        assert store.notices() == []
        assert not store._db.in_transaction
        assert _level(store) == level


@pytest.mark.parametrize("durable", [True, False])
def test_a_busy_file_fails_to_begin_with_the_level_restored(
    tmp_path: Path, kit: Any, durable: bool
) -> None:
    path = tmp_path / "host.sqlite3"
    with HostStore(path, clock=lambda: kit.T0, timeout=0.05) as store:
        level = _level(store)
        holder = sqlite3.connect(path, isolation_level=None, timeout=0.05)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(HostStoreError, match=r"cannot write host database .*locked"):
                _write(store, durable)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert _level(store) == level
        assert store.record_notice("us", "k", "r")  # the store still works


@pytest.mark.parametrize("durable", [True, False])
def test_a_failed_commit_rolls_back_and_says_so(tmp_path: Path, kit: Any, durable: bool) -> None:
    with HostStore(tmp_path / "host.sqlite3", clock=lambda: kit.T0) as store:
        level = _level(store)
        real = store._db
        store._db = _FailOn(real, "COMMIT")  # type: ignore[assignment]
        try:
            with pytest.raises(HostStoreError, match=r"cannot commit to host database .*disk I/O"):
                _write(store, durable)
        finally:
            store._db = real
        assert store.notices() == []
        assert not real.in_transaction
        assert _level(store) == level


def _with_components(order: Order, *components: tuple[SkuComponent, ...]) -> Order:
    lines = tuple(
        replace(line, components=c) for line, c in zip(order.lines, components, strict=True)
    )
    return replace(order, lines=lines)


def test_store_batch_rows_and_receipts_follow_each_lines_components(
    tmp_path: Path, kit: Any
) -> None:
    """The one-pass loop finds a component tuple's texts by identity: lines sharing one tuple,
    an equal but distinct tuple, two components, none, and a cancelled line all get the
    columns the per-line formula gives (one component: its host SKU; else the Groupon SKU)."""
    one = (SkuComponent("OWN-1", 1),)
    same = (SkuComponent("OWN-1", 1),)
    two = (SkuComponent("OWN-2", 1), SkuComponent("OWN-3", 2))
    first = _with_components(kit.order("O1", [11, 12, 13]), one, one, two)
    second = _with_components(kit.order("O2", [21, 22]), same, ())
    second = replace(second, lines=(second.lines[0], replace(second.lines[1], status="cancelled")))
    with HostStore(tmp_path / "host.sqlite3", clock=lambda: kit.T0) as store:
        outcome = store.store_batch("us", [first, second])
        assert [(r.orderid, r.host_order_id, r.ci_lineitemids) for r in outcome.stored] == [
            ("O1", "HO-0000001", (11, 12, 13)),
            ("O2", "HO-0000002", (21, 22)),
        ]
        for order in (first, second):
            for line in order.lines:
                row = store.line("us", line.ci_lineitemid)
                assert row is not None
                expected_sku = (
                    line.components[0].host_sku if len(line.components) == 1 else line.sku
                )
                assert row["host_sku"] == expected_sku
                assert row["components"] == json.dumps(
                    [
                        {"host_sku": c.host_sku, "quantity_per_unit": c.quantity_per_unit}
                        for c in line.components
                    ]
                )
                assert row["status"] == ("cancelled" if line.status == "cancelled" else "open")
        again = store.store_batch("us", [second])  # a replay: the same receipt, no rows
        assert (again.new_orders, again.existing_orders, again.new_lines) == (0, 1, 0)
        assert again.stored == outcome.stored[1:]
