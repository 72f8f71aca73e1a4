"""``Ledger.record_acks`` without a read first: a chunk whose lines are all known and not
acked yet is recorded by one UPDATE (its row count says so); a chunk with a line acked
already or unknown is undone and recorded as before. Same results either way (runs on both
backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from connector.ledger import Ledger, ledger_path, open_ledger_file

NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=5)


def _ledger(tmp_path: Path, count: int) -> Ledger:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    with ledger.transaction():
        for lid in range(1, count + 1):
            ledger.stage_line(ci_lineitemid=lid, orderid=f"O{lid}", now=NOW, quantity=1)
    ledger.set_line_states([(lid, "delivered", None, "") for lid in range(1, count + 1)], NOW)
    ledger.bind_stored([(lid, f"H{lid}") for lid in range(1, count + 1)], NOW)
    return ledger


def _acks(ledger: Ledger) -> dict[int, tuple[str, int, str]]:
    rows = ledger._query("SELECT ci_lineitemid, state, ack_attempts, updated_at FROM lines")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_chunks_with_and_without_lines_acked_before(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, 1200)
    assert ledger.record_acks([3], NOW) == [3]
    # 1,202 distinct ids in chunks of 500: the first holds line 3 (acked before) and the
    # third two ids the ledger never saw: both undone and recorded the old way (the unknown
    # ids are logged); the second, only fresh lines, is one UPDATE.
    ids = [*range(1, 1201), 9001, 9002]
    undone: list[str] = []
    conn = ledger._conn
    if hasattr(conn, "set_trace_callback"):  # SQLite: see which chunks were undone
        conn.set_trace_callback(lambda sql: undone.append(sql) if "ROLLBACK TO" in sql else None)
    fresh = ledger.record_acks(ids, LATER)
    if hasattr(conn, "set_trace_callback"):
        conn.set_trace_callback(None)
        assert len(undone) == 2
    assert fresh == [lid for lid in ids if lid != 3]
    acks = _acks(ledger)
    assert acks[3] == ("acked", 1, NOW.isoformat())  # not acked a second time
    assert acks[4] == ("acked", 1, LATER.isoformat())
    assert acks[700] == ("acked", 1, LATER.isoformat())
    assert acks[1200] == ("acked", 1, LATER.isoformat())
    logged = [lid for lid, outcome, _ in ledger.ack_log() if outcome == "accepted"]
    assert sorted(logged) == sorted([3, *fresh])
    assert ledger.record_acks(ids, LATER) == [9001, 9002]  # unknown: logged, as before


def test_inside_an_outer_transaction_an_undone_chunk_keeps_the_rest(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, 10)
    with ledger.transaction():
        ledger.update_line(1, NOW, ack_attempts=4)
        assert ledger.record_acks([2], NOW) == [2]
        assert ledger.record_acks([1, 2, 3], LATER) == [1, 3]
    acks = _acks(ledger)
    assert acks[1] == ("acked", 5, LATER.isoformat())  # the earlier write of the batch kept
    assert acks[2] == ("acked", 1, NOW.isoformat())
    assert acks[3] == ("acked", 1, LATER.isoformat())
