"""``bind_checked``: the binding checks of ``mark_exported`` folded into the binding's write
(runs on both backends). A line is bound only if it is known, of the host's order and handed
over; what was bound comes back from the write itself, with the claims it took."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.ledger import BoundLine, Ledger, ledger_path, open_ledger_file
from connector.models import HoldKind

NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
UNTIL = (NOW + timedelta(seconds=600)).isoformat()
ELSEWHERE = "other-machine:4242:abcd"  # a live process on another machine


def _ledger(tmp_path: Path, states: dict[int, str]) -> Ledger:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    for lid, state in states.items():
        ledger.stage_line(ci_lineitemid=lid, orderid="A", now=NOW, quantity=1)
        if state != "staged":
            ledger.update_line(lid, NOW, state=state)
    return ledger


def _rows(ledger: Ledger) -> dict[int, tuple[Any, ...]]:
    rows = ledger._query(
        "SELECT ci_lineitemid, state, host_order_id, ack_owner, ack_lease_until FROM lines"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def test_only_lines_that_may_be_bound_are_bound_and_returned(tmp_path: Path) -> None:
    states = {1: "delivered", 2: "stored", 3: "staged", 4: "held", 5: "acked", 6: "cancelled"}
    ledger = _ledger(tmp_path, states)
    ledger.stage_line(ci_lineitemid=7, orderid="B", now=NOW, quantity=1)
    ledger.update_line(7, NOW, state="delivered")
    before = _rows(ledger)
    bindings = [(lid, "A", f"H{lid}") for lid in range(1, 8)] + [(99, "A", "H99")]
    bound = ledger.bind_checked(bindings, NOW)
    assert bound == {
        1: BoundLine(None, False),
        2: BoundLine(None, False),
    }
    after = _rows(ledger)
    assert (after[1][:2], after[2][:2]) == (("stored", "H1"), ("stored", "H2"))
    # Line 7 is of order B, not A: untouched, as every other line not bound.
    assert {lid: after[lid] for lid in range(3, 8)} == {lid: before[lid] for lid in range(3, 8)}
    assert 99 not in after


def test_claims_are_taken_where_free_or_own_and_reported(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, {1: "delivered", 2: "stored", 3: "stored", 4: "stored"})
    ledger.hold_line(3, HoldKind.REJECTED_BY_CI, "CI refused mark_exported: no", NOW)
    assert ledger.claim_acks([2], NOW, 600, owner=ELSEWHERE) == [2]
    assert ledger.claim_acks([4], NOW - timedelta(seconds=5), 600) == [4]  # own, other end
    bound = ledger.bind_checked(
        [(lid, "A", f"H{lid}") for lid in (1, 2, 3, 4)], NOW, claim=True, lease_seconds=600
    )
    assert bound[1].claimed
    assert bound[4].claimed
    assert not bound[2].claimed  # in flight elsewhere: bound, claim left alone
    assert bound[3] == BoundLine("CI refused mark_exported: no", False)
    rows = _rows(ledger)
    assert rows[1][3] == rows[4][3] == UNTIL
    assert rows[2][2] == ELSEWHERE
    assert rows[3][2:] == (None, None)
    # What claim_acks answers for them agrees, and writes nothing.
    assert ledger.claim_acks([1, 4], NOW, 600) == [1, 4]
    assert ledger.claim_acks([2], NOW, 600) == []
    assert _rows(ledger) == rows


def test_without_claim_no_claim_is_taken(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, {1: "delivered"})
    bound = ledger.bind_checked([(1, "A", "H1")], NOW, claim=False, lease_seconds=600)
    assert bound == {1: BoundLine(None, False)}
    assert _rows(ledger)[1] == ("stored", "H1", None, None)


def test_large_calls_are_bound_whole_and_the_first_binding_of_an_id_wins(
    tmp_path: Path,
) -> None:
    # 500 lines a statement, the last one padded to a fixed size (rows matching nothing):
    # every line of the call is bound once, unknown ids change nothing.
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    ids = range(1, 1203)
    with ledger.transaction():
        for lid in ids:
            ledger.stage_line(ci_lineitemid=lid, orderid=f"O{lid}", now=NOW, quantity=1)
    ledger.set_line_states([(lid, "delivered", None, "") for lid in ids], NOW)
    bindings = [(lid, f"O{lid}", f"H{lid}") for lid in ids]
    bindings += [(7, "O7", "H7-again"), (99999, "O1", "H-none")]
    bound = ledger.bind_checked(bindings, NOW, claim=True, lease_seconds=600)
    assert sorted(bound) == list(ids)
    assert all(line.claimed for line in bound.values())
    rows = _rows(ledger)
    assert all(rows[lid][:2] == ("stored", f"H{lid}") for lid in ids)
    assert all(rows[lid][3] == UNTIL for lid in ids)
    assert set(rows) == set(ids)
    # A call of a size met before, and a small one, bind alike.
    again = ledger.bind_checked(bindings[:3], NOW, claim=True, lease_seconds=600)
    assert sorted(again) == [1, 2, 3]
    assert ledger.bind_checked([], NOW) == {}


def test_a_line_ci_refused_is_bound_and_reported_with_or_without_claim(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, {1: "stored", 2: "delivered"})
    ledger.hold_line(1, HoldKind.REJECTED_BY_CI, "CI refused mark_exported: gone", NOW)
    bound = ledger.bind_checked([(1, "A", "H1"), (2, "A", "H2")], NOW)
    assert bound == {
        1: BoundLine("CI refused mark_exported: gone", False),
        2: BoundLine(None, False),
    }
    assert _rows(ledger)[1] == ("stored", "H1", None, None)
    assert _rows(ledger)[2] == ("stored", "H2", None, None)
