"""Ledger: schema versioning, transactions, read APIs."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.errors import LedgerError
from connector.ledger import LedgerVersionError, ledger_path, open_ledger, open_ledger_file
from connector.ledger.migrations import MIGRATIONS
from connector.models import Account, HoldKind
from connector.secrets import Secret

NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


def _account(tmp_path: Path, name: str = "us") -> Account:
    return Account(
        name=name, channel="groupon", supplier_id="90001", token=Secret("t" * 31), data_dir=tmp_path
    )


@pytest.mark.sqlite_only
def test_open_ledger_creates_wal_file_per_account(tmp_path: Path) -> None:
    ledger = open_ledger(_account(tmp_path))
    assert ledger.path == tmp_path / "ledger-us.sqlite3"
    assert ledger.path.exists()
    mode = sqlite3.connect(ledger.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert ledger.schema_version() == max(v for v, _ in MIGRATIONS)


def test_migrations_apply_in_order_and_newer_file_is_refused(tmp_path: Path) -> None:
    path = ledger_path(tmp_path, "x")
    open_ledger_file(path, "x").close()
    current = max(v for v, _ in MIGRATIONS)
    nxt = (*MIGRATIONS, (current + 1, "ALTER TABLE lines ADD COLUMN note TEXT NOT NULL DEFAULT ''"))
    upgraded = open_ledger_file(path, "x", migrations=nxt)
    assert upgraded.schema_version() == current + 1
    assert upgraded._query("SELECT note FROM lines") == []  # the new column exists
    upgraded.close()
    newer = rf"schema version {current + 1}, newer .* supports \({current}\)"
    with pytest.raises(LedgerVersionError, match=newer):
        open_ledger_file(path, "x")


@pytest.mark.sqlite_only
def test_not_a_database_is_a_clear_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger-bad.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match=r"ledger-bad\.sqlite3"):
        open_ledger_file(path, "bad")


def test_transaction_rolls_back_every_write_of_the_batch(tmp_path: Path) -> None:
    ledger = open_ledger(_account(tmp_path))

    def batch() -> None:
        with ledger.transaction():
            ledger.stage_line(ci_lineitemid=1, orderid="A", now=NOW, quantity=1, sku="s")
            ledger.stage_line(ci_lineitemid=2, orderid="A", now=NOW, quantity=1, sku="s")
            raise RuntimeError("crash mid-batch")

    with pytest.raises(RuntimeError):
        batch()
    assert ledger.get_lines([1, 2]) == {}
    with ledger.transaction():
        assert ledger.stage_line(ci_lineitemid=1, orderid="A", now=NOW, quantity=2, sku="s")
    assert not ledger.stage_line(ci_lineitemid=1, orderid="A", now=NOW, quantity=9, sku="s")
    row = ledger.get_line(1)
    assert row is not None
    assert row.quantity == 2
    assert row.state == "staged"


def test_read_apis_summary_held_and_tracking(tmp_path: Path) -> None:
    ledger = open_ledger(_account(tmp_path))
    ledger.stage_line(ci_lineitemid=1, orderid="A", now=NOW, quantity=2, sku="s", order_date=NOW)
    ledger.stage_line(ci_lineitemid=2, orderid="B", now=NOW, quantity=1, sku="t")
    ledger.hold_line(2, HoldKind.UNMAPPED_SKU, "SKU 't' has no alias", NOW)
    ledger.update_line(1, NOW, state="acked", qty_shipped=1)
    row = ledger.insert_outbox(
        shipment_id="S1",
        ci_lineitemid=1,
        tracking="1Z1",
        quantity=1,
        now=NOW,
        orderid="A",
        state="accepted",
    )
    assert row.id > 0
    again = ledger.insert_outbox(
        shipment_id="S1", ci_lineitemid=1, tracking="1Z1", quantity=5, now=NOW, orderid="A"
    )
    assert again.id == row.id
    assert again.quantity == 1
    lines = {ln.ci_lineitemid: ln for ln in ledger.lines()}
    assert lines[1].tracking == ("1Z1",)
    assert lines[1].open_quantity == 1
    assert lines[1].order_date == NOW
    held = ledger.held_lines()
    assert [(h.ci_lineitemid, h.kind) for h in held] == [(2, HoldKind.UNMAPPED_SKU)]
    summary = ledger.summary()
    assert summary["lines"]["acked"] == 1
    assert summary["lines"]["staged"] == 1
    assert summary["outbox"]["accepted"] == 1
    assert summary["held"] == {"unmapped_sku": 1}
    with pytest.raises(ValueError, match="unknown line columns"):
        ledger.update_line(1, NOW, bogus=1)


def test_watermark_round_trip(tmp_path: Path) -> None:
    ledger = open_ledger(_account(tmp_path))
    assert ledger.get_watermark() is None
    ledger.set_watermark(NOW)
    ledger.set_watermark(NOW.replace(hour=13))
    assert ledger.get_watermark() == NOW.replace(hour=13)


@pytest.mark.sqlite_only
def test_new_files_use_8k_pages_and_old_files_keep_theirs(tmp_path: Path) -> None:
    fresh = open_ledger_file(ledger_path(tmp_path, "new"), "new")
    assert fresh._query("PRAGMA page_size")[0][0] == 8192
    fresh.close()
    old_path = ledger_path(tmp_path, "old")
    conn = sqlite3.connect(old_path)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("CREATE TABLE early (x INTEGER)")  # the file exists with 4 KB pages
    conn.close()
    old = open_ledger_file(old_path, "old")
    assert old._query("PRAGMA page_size")[0][0] == 4096
    assert old.stage_line(ci_lineitemid=1, orderid="A", now=NOW, record={"orderid": "A"})
    assert old.get_lines([1])[1].record == {"orderid": "A"}


@pytest.mark.sqlite_only
def test_a_relaxed_transaction_skips_only_its_own_fsync(tmp_path: Path) -> None:
    """``transaction(durable=False)`` commits under synchronous NORMAL and goes back to FULL
    after it, committed or rolled back; nested in a durable one it changes nothing."""
    ledger = open_ledger(_account(tmp_path))
    statements: list[str] = []
    ledger._conn.set_trace_callback(statements.append)
    with ledger.transaction(durable=False):
        ledger.stage_line(ci_lineitemid=1, orderid="A", now=NOW)
    assert statements[:2] == ["PRAGMA synchronous=NORMAL", "BEGIN IMMEDIATE"]
    assert statements[-2:] == ["COMMIT", "PRAGMA synchronous=FULL"]
    statements.clear()

    def fail() -> None:
        with ledger.transaction(durable=False):
            ledger.stage_line(ci_lineitemid=2, orderid="A", now=NOW)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail()
    assert statements[-2:] == ["ROLLBACK", "PRAGMA synchronous=FULL"]
    statements.clear()
    with ledger.transaction(), ledger.transaction(durable=False):
        ledger.stage_line(ci_lineitemid=3, orderid="A", now=NOW)
    ledger._conn.set_trace_callback(None)
    assert not any("synchronous" in s for s in statements)
    assert ledger._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert ledger.get_line(1) is not None
    assert ledger.get_line(2) is None
    assert ledger.get_line(3) is not None


@pytest.mark.sqlite_only
def test_statement_journals_stay_in_memory_and_still_undo_a_failed_statement(
    tmp_path: Path,
) -> None:
    """temp_store=MEMORY: a many-row statement's journal is not spilled to a temporary file,
    and a statement that fails half-way is still undone alone (earlier work of the same
    transaction stays until the transaction decides)."""
    ledger = open_ledger_file(ledger_path(tmp_path, "x"), "x")
    assert ledger._query("PRAGMA temp_store")[0][0] == 2  # MEMORY
    for lid in range(1, 3001):  # ~80 pages of rows: the journal passes SQLite's 64 KB spill
        ledger.stage_line(ci_lineitemid=lid, orderid=f"O{lid}", now=NOW)
    conn = ledger._conn
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE lines SET hold_reason = 'first' WHERE ci_lineitemid <= 3000")
    with pytest.raises(sqlite3.IntegrityError):  # the CHECK fails on the last row only
        conn.execute(
            "UPDATE lines SET hold_reason = 'second', state = CASE WHEN ci_lineitemid = 3000"
            " THEN 'bogus' ELSE 'delivered' END"
        )
    assert conn.in_transaction
    rows = conn.execute("SELECT DISTINCT state, hold_reason FROM lines").fetchall()
    assert [tuple(r) for r in rows] == [("staged", "first")]
    conn.execute("ROLLBACK")
    assert ledger._query("SELECT COUNT(*) FROM lines WHERE hold_reason = ''")[0][0] == 3000
    ledger.close()


def _rows_in_file(path: Path) -> int:
    """Lines in the ledger file itself, WAL ignored (what checkpoints have copied)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM lines").fetchone()[0])
    except sqlite3.DatabaseError:
        # Not even the table copied yet, or (immutable=1 takes no lock) a page read while
        # the checkpoint thread writes it: the caller looks again.
        return 0
    finally:
        conn.close()


@pytest.mark.sqlite_only
def test_ledger_checkpoints_in_the_background_and_stops_it_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.runtime import checkpoint

    monkeypatch.setattr(checkpoint, "INTERVAL", 0.01)
    ledger = open_ledger_file(ledger_path(tmp_path, "x"), "x")
    # The committing connection checkpoints by itself only far past SQLite's default.
    assert ledger._query("PRAGMA wal_autocheckpoint")[0][0] == checkpoint.BACKSTOP_PAGES
    checkpointer = ledger._checkpointer
    assert checkpointer is not None
    monkeypatch.setattr(checkpointer, "_threshold", 0)  # any WAL counts as big
    ledger.stage_line(ci_lineitemid=1, orderid="A", now=NOW)
    assert checkpointer.running
    deadline = time.monotonic() + 10
    while _rows_in_file(ledger.path) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _rows_in_file(ledger.path) == 1  # copied by the other thread
    ledger.stage_line(ci_lineitemid=2, orderid="A", now=NOW)
    ledger.close()
    assert not checkpointer.running
    assert _rows_in_file(ledger.path) == 2  # the last close checkpoints, as before
    assert not Path(f"{ledger.path}-wal").exists()


@pytest.mark.sqlite_only
def test_small_ledgers_start_no_checkpoint_thread(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "x"), "x")
    for lid in range(1, 50):
        ledger.stage_line(ci_lineitemid=lid, orderid="A", now=NOW)
    assert ledger._checkpointer is not None
    assert not ledger._checkpointer.running
    ledger.close()
