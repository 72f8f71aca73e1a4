"""Schema v11: the ``outbox`` state CHECK as ``=`` comparisons (SQLite rebuilds the table for
it, PostgreSQL alters the constraint): every row, column and index survives the migration, an
id once given out (even of a row since moved to ``outbox_closed``) is never given out again, a
state outside the seven is still refused, and SQLite no longer builds an ephemeral table per
row written to check it; runs on both backends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.errors import LedgerError
from connector.ledger import Ledger, ledger_path, open_ledger_file
from connector.ledger.migrations import MIGRATIONS
from connector.models import HoldKind

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


def _fill(ledger: Ledger) -> None:
    for n, state in enumerate(("pending", "sending", "accepted", "held", "retry", "manual")):
        ledger.insert_outbox(
            shipment_id=f"S{n}",
            ci_lineitemid=100 + n,
            tracking=f"1Z{n:04d}",
            quantity=1 + n,
            now=T0,
            orderid=f"O{n}",
            courier="UPS",
            carrier_code="ups",
            state=state,
            hold_kind=HoldKind.UNMAPPED_COURIER if state == "held" else None,
            reason="no carrier code" if state == "held" else "",
        )
    last = ledger.insert_outbox(
        shipment_id="S9", ci_lineitemid=109, tracking="1Z9999", quantity=1, now=T0
    )
    # The highest id moves to outbox_closed: the rebuilt table must not give it out again.
    ledger.close_outbox([last], "voided", "test", T0)


def _everything(ledger: Ledger) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in ledger._query("SELECT * FROM outbox ORDER BY id")]


def test_v11_keeps_every_row_column_and_id(tmp_path: Path) -> None:
    path = ledger_path(tmp_path, "us")
    old = open_ledger_file(path, "us", MIGRATIONS[:10])
    assert old.schema_version() == 10
    _fill(old)
    rows = _everything(old)
    closed = [r.id for r in old.closed_outbox()]
    pending = old.pending_outbox()
    columns = list(old._query("SELECT * FROM outbox LIMIT 1")[0].keys())
    old.close()

    ledger = open_ledger_file(path, "us", MIGRATIONS[:11])
    assert ledger.schema_version() == 11
    assert _everything(ledger) == rows
    assert list(ledger._query("SELECT * FROM outbox LIMIT 1")[0].keys()) == columns
    assert ledger.pending_outbox() == pending
    fresh = ledger.insert_outbox(
        shipment_id="S10", ci_lineitemid=110, tracking="1Z0010", quantity=1, now=T0
    )
    assert fresh.id > max([r[0] for r in rows] + closed)
    # The key is still unique, the seven states only.
    again = ledger.insert_outbox(
        shipment_id="S10", ci_lineitemid=110, tracking="1Z0010", quantity=5, now=T0
    )
    assert (again.id, again.quantity) == (fresh.id, 1)
    with pytest.raises(LedgerError, match=r"(?i)check constraint"):
        ledger.update_outbox(fresh.id, T0, state="shipped")
    assert [r.state for r in ledger.pending_outbox() if r.id == fresh.id] == ["pending"]


def test_v11_on_an_empty_outbox(tmp_path: Path) -> None:
    path = ledger_path(tmp_path, "us")
    open_ledger_file(path, "us", MIGRATIONS[:10]).close()
    ledger = open_ledger_file(path, "us", MIGRATIONS[:11])
    row = ledger.insert_outbox(
        shipment_id="S1", ci_lineitemid=1, tracking="1Z0001", quantity=1, now=T0
    )
    assert row.id == 1


@pytest.mark.sqlite_only
def test_v11_indexes_and_no_ephemeral_table_per_row(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    indexes = {
        r[0]
        for r in ledger._query(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox'"
        )
    }
    assert indexes == {
        "sqlite_autoindex_outbox_1",
        "outbox_state",
        "outbox_line",
        "outbox_tracking",
        "outbox_order",
    }
    assert [r[0] for r in ledger._query("PRAGMA integrity_check")] == ["ok"]
    for sql in (
        "UPDATE outbox SET state = 'accepted' WHERE id = 1",
        "INSERT INTO outbox (shipment_id, ci_lineitemid, tracking, quantity, state,"
        " created_at, updated_at) VALUES ('S', 1, 'T', 1, 'pending', '', '')",
    ):
        program = [r[1] for r in ledger._query(f"EXPLAIN {sql}")]
        # An ephemeral table here would be the IN-list check built for every row written.
        assert program.count("OpenEphemeral") == 0, sql
