"""Exactly-once effects: outbound calls are claimed in the ledger before they are sent, and
recording an outcome is idempotent by row (schema v5)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connector.ledger import Ledger, ledger_path, open_ledger_file
from connector.runtime.identity import machine_name, process_owner

NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
ELSEWHERE = "other-machine:4242:abcd"  # a process on another machine: judged by its lease only


def _ledger(tmp_path: Path) -> Ledger:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    ledger.stage_line(ci_lineitemid=1, orderid="A", now=NOW, quantity=3)
    ledger.stage_line(ci_lineitemid=2, orderid="A", now=NOW, quantity=1)
    return ledger


def _row(ledger: Ledger, lid: int = 1, tracking: str = "1Z1", qty: int = 1) -> int:
    row = ledger.insert_outbox(
        shipment_id="S", ci_lineitemid=lid, tracking=tracking, quantity=qty, now=NOW
    )
    return row.id


def _dead_owner() -> str:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return f"{machine_name()}:{int(proc.stdout)}:dead"


def test_a_row_in_flight_elsewhere_is_not_claimed_until_its_lease_ends(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    rid = _row(ledger)
    rows = ledger.outbox_rows(ids=[rid])
    assert ledger.claim_outbox(rows, NOW, 600, owner=ELSEWHERE) == rows
    assert ledger.claim_outbox(rows, NOW + timedelta(seconds=599), 600) == []
    assert ledger.outbox_leases()[rid][0] == ELSEWHERE
    # The other process died on its machine: its lease runs out, then the row is taken over.
    assert ledger.claim_outbox(rows, NOW + timedelta(seconds=600), 600) == rows
    assert ledger.outbox_leases()[rid][0] == process_owner()


def test_a_dead_process_of_this_machine_is_taken_over_at_once(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    rows = ledger.outbox_rows(ids=[_row(ledger)])
    assert ledger.claim_outbox(rows, NOW, 600, owner=_dead_owner()) == rows
    assert ledger.claim_outbox(rows, NOW, 600) == rows


def test_settled_rows_end_their_claim_and_are_not_claimable(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    a, b = _row(ledger, 1, "1Z1"), _row(ledger, 2, "1Z2")
    rows = ledger.outbox_rows(ids=[a, b])
    ledger.claim_outbox(rows, NOW, 600, owner=ELSEWHERE)
    ledger.update_outbox(b, NOW, state="retry", reason="CI unreachable")
    assert ledger.outbox_leases().keys() == {a}  # a retry is free for the next flush
    ledger.record_tracking_accepted([(a, 1, 1)], NOW)
    assert ledger.outbox_leases() == {}
    assert [r.id for r in ledger.claim_outbox(rows, NOW, 600)] == [b]


def test_accepted_quantity_is_added_once_whatever_the_retries(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    a, b = _row(ledger, 1, "1Z1", 2), _row(ledger, 1, "1Z2", 1)
    assert ledger.record_tracking_accepted([(a, 1, 2)], NOW) == [a]
    # A retry of the same batch, another process recording the same outcome, a duplicate row.
    assert ledger.record_tracking_accepted([(a, 1, 2), (b, 1, 1), (b, 1, 1)], NOW) == [b]
    assert ledger.record_tracking_accepted([(a, 1, 2), (b, 1, 1)], NOW) == []
    line = ledger.get_line(1)
    assert line is not None
    assert line.qty_shipped == 3


def test_acks_are_claimed_and_recorded_once(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.bind_stored([(1, "H1"), (2, "H2")], NOW)
    assert ledger.claim_acks([1, 2], NOW, 600, owner=ELSEWHERE) == [1, 2]
    assert ledger.claim_acks([1, 2], NOW, 600) == []  # in flight elsewhere
    assert ledger.record_acks([1], NOW) == [1]
    assert ledger.record_acks([1, 1], NOW) == []  # recorded again: nothing changes
    assert [e for e in ledger.ack_log() if e[1] == "accepted"] == [(1, "accepted", "")]
    line = ledger.get_line(1)
    assert line is not None
    assert (line.state, line.ack_attempts) == ("acked", 1)
    assert ledger.claim_acks([1], NOW + timedelta(hours=1), 600) == []  # acked: nothing to do
    assert ledger.claim_acks([2], NOW + timedelta(seconds=601), 600) == [2]  # lease ran out
    ledger.release_acks([2])
    assert ledger.claim_acks([2], NOW, 600, owner=ELSEWHERE) == [2]
