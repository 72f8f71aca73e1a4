"""Schema v10: the ``lines`` state CHECK as ``=`` comparisons (SQLite rebuilds the table for
it, PostgreSQL alters the constraint): every row, column and index survives the migration,
a state outside the six is still refused, and SQLite no longer builds an ephemeral table per
row written to check it; runs on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.errors import LedgerError
from connector.ledger import Ledger, ledger_path, open_ledger_file
from connector.ledger.migrations import MIGRATIONS
from connector.models import HoldKind

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


def _fill(ledger: Ledger) -> None:
    for lid in range(1, 8):
        record = {"orderid": f"O{lid % 3}", "line_items": [{"ci_lineitemid": lid}]}
        ledger.stage_line(
            ci_lineitemid=lid, orderid=f"O{lid % 3}", now=T0, record=record, quantity=2, sku="S"
        )
    ledger.update_line(1, T0, parsed='["p1"]', ci_status="cancelled")
    ledger.set_line_states(
        [
            (2, "held", HoldKind.UNMAPPED_SKU, "no alias"),
            (3, "delivered", None, ""),
            (4, "delivered", None, ""),
            (5, "delivered", None, ""),
            (6, "cancelled", None, ""),
        ],
        T0,
    )
    ledger.bind_stored([(4, "H4"), (5, "H5")], T0, claim=[4], lease_seconds=600)
    ledger.record_acks([5], T0 + timedelta(seconds=1))
    ledger.update_line(5, T0, qty_shipped=1)
    ledger.begin_import_round()


def _everything(ledger: Ledger) -> list[tuple[Any, ...]]:
    rows = ledger._query("SELECT * FROM lines ORDER BY ci_lineitemid")
    return [tuple(r) for r in rows]


def test_v10_keeps_every_row_and_column(tmp_path: Path) -> None:
    path = ledger_path(tmp_path, "us")
    old = open_ledger_file(path, "us", MIGRATIONS[:9])
    assert old.schema_version() == 9
    _fill(old)
    rows = _everything(old)
    lines = old.get_lines(range(1, 8))
    columns = list(old._query("SELECT * FROM lines LIMIT 1")[0].keys())
    old.close()

    ledger = open_ledger_file(path, "us", MIGRATIONS[:10])
    assert ledger.schema_version() == 10
    assert _everything(ledger) == rows
    assert list(ledger._query("SELECT * FROM lines LIMIT 1")[0].keys()) == columns
    assert ledger.get_lines(range(1, 8)) == lines
    assert ledger.stored_unacked() == [4]
    assert ledger.pending_orderids(10)  # the round's queue (partial index) is intact
    assert [h.ci_lineitemid for h in ledger.held_lines(outbox=False)] == [2]
    # Still one row per id, still the six states only.
    ledger.stage_line(ci_lineitemid=8, orderid="O9", now=T0)
    with pytest.raises(LedgerError, match=r"(?i)check constraint"):
        ledger.update_line(8, T0, state="shipped")
    assert ledger.get_line(8) is not None
    assert ledger.get_line(8).state == "staged"  # type: ignore[union-attr]


@pytest.mark.sqlite_only
def test_v10_indexes_and_no_ephemeral_table_per_row(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    indexes = {
        r[0]
        for r in ledger._query(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'lines'"
            " AND sql IS NOT NULL"
        )
    }
    assert indexes == {
        "lines_orderid",
        "lines_state",
        "lines_pending_eval",
        "lines_held",
        "lines_cancel_open",
    }
    assert [r[0] for r in ledger._query("PRAGMA integrity_check")] == ["ok"]
    program = [
        r[1]
        for r in ledger._query("EXPLAIN UPDATE lines SET state = 'acked' WHERE ci_lineitemid = 1")
    ]
    # One ephemeral table at most would be the IN-list check built for every row written.
    assert program.count("OpenEphemeral") == 0
