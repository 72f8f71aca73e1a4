"""Schema v12: ``lines_state`` indexes the lines not acknowledged yet (a partial index). The
migration keeps every row; the lookups by state answer as before and, on SQLite, still
search the index (they carry its condition); runs on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.ledger import Ledger, ledger_path, open_ledger_file
from connector.ledger.migrations import MIGRATIONS
from connector.models import HoldKind

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


def _fill(ledger: Ledger) -> None:
    for lid in range(1, 9):
        ledger.stage_line(
            ci_lineitemid=lid,
            orderid=f"O{lid % 3}",
            now=T0,
            record={"orderid": f"O{lid % 3}", "line_items": [{"ci_lineitemid": lid}]},
            quantity=2,
            sku="S",
            order_date=T0 - timedelta(days=lid),
        )
    ledger.set_line_states(
        [
            (2, "held", HoldKind.INVALID_PAYLOAD, "bad record"),
            (3, "delivered", None, ""),
            (4, "delivered", None, ""),
            (5, "delivered", None, ""),
            (6, "cancelled", None, ""),
        ],
        T0,
    )
    ledger.bind_stored([(4, "H4"), (5, "H5")], T0)
    ledger.record_acks([5], T0 + timedelta(seconds=1))


def _answers(ledger: Ledger) -> dict[str, Any]:
    return {
        "rows": [tuple(r) for r in ledger._query("SELECT * FROM lines ORDER BY ci_lineitemid")],
        "stored": ledger.stored_unacked(),
        "waiting": ledger.staged_order_dates(),
        "earliest": ledger.earliest_waiting_order_date(),
        "invalid": ledger.invalid_held_order_dates(T0 - timedelta(days=30)),
        "open": ledger.open_order_dates(T0 - timedelta(days=30)),
        "unconfirmed": [r.ci_lineitemid for r in ledger.lines(("staged", "held", "delivered"))],
        "host": [r.ci_lineitemid for r in ledger.lines(("delivered", "stored", "acked"))],
    }


def test_v12_keeps_rows_and_answers(tmp_path: Path) -> None:
    path = ledger_path(tmp_path, "us")
    old = open_ledger_file(path, "us", MIGRATIONS[:11])
    assert old.schema_version() == 11
    _fill(old)
    before = _answers(old)
    old.close()

    ledger = open_ledger_file(path, "us")
    assert ledger.schema_version() == 12
    assert _answers(ledger) == before
    assert before["stored"] == [4]
    assert before["unconfirmed"] == [1, 2, 3, 7, 8]
    assert before["host"] == [3, 4, 5]
    # A new round re-queues the unconfirmed lines only (the round-start query uses the index).
    ledger.begin_import_round()
    queued = ledger._query("SELECT ci_lineitemid FROM lines WHERE pending_eval = 1 ORDER BY 1")
    assert [r[0] for r in queued] == [1, 2, 3, 7, 8]


@pytest.mark.sqlite_only
def test_v12_index_leaves_acked_lines_out_and_lookups_search_it(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    _fill(ledger)
    sql = ledger._query("SELECT sql FROM sqlite_master WHERE name = 'lines_state'")[0][0]
    assert sql.endswith("WHERE state != 'acked'")
    assert [r[0] for r in ledger._query("PRAGMA integrity_check")] == ["ok"]
    statements: list[str] = []
    ledger._conn.set_trace_callback(statements.append)
    ledger.stored_unacked()
    ledger.staged_order_dates()
    ledger.earliest_waiting_order_date()
    ledger.invalid_held_order_dates(T0 - timedelta(days=30))
    list(ledger.lines(("staged", "held")))
    ledger.begin_import_round()
    ledger._conn.set_trace_callback(None)
    by_state = [s for s in statements if "FROM lines" in s and "state" in s and "outbox" not in s]
    by_state += [s for s in statements if s.startswith("UPDATE lines SET pending_eval = 1")]
    assert len(by_state) == 6
    for statement in by_state:
        plan = " ".join(r[3] for r in ledger._query(f"EXPLAIN QUERY PLAN {statement}"))
        assert "USING INDEX lines_state" in plan, (statement, plan)


@pytest.mark.postgres_only
def test_v12_index_is_partial_on_postgres(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    rows = ledger._query("SELECT indexdef FROM pg_indexes WHERE indexname = 'lines_state'")
    assert len(rows) == 1
    assert "WHERE" in rows[0][0]
    assert "acked" in rows[0][0]
