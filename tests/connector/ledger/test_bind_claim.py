"""A line's ``mark_exported`` claim taken in the same row write as its binding (bind_stored
``claim=``): the claim then costs no second write and no commit of its own, and keeps every
rule of claim_acks (runs on both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.ledger import Ledger, ledger_path, open_ledger_file

NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
ELSEWHERE = "other-machine:4242:abcd"  # a live process on another machine


def _ledger(tmp_path: Path) -> Ledger:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    for lid in (1, 2, 3):
        ledger.stage_line(ci_lineitemid=lid, orderid="A", now=NOW, quantity=1)
        ledger.update_line(lid, NOW, state="delivered")
    return ledger


def _claims(ledger: Ledger) -> dict[int, tuple[Any, ...]]:
    rows = ledger._query(
        "SELECT ci_lineitemid, state, host_order_id, ack_owner, ack_lease_until FROM lines"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def test_binding_takes_the_claim_and_claim_acks_writes_nothing(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.bind_stored([(1, "H1"), (2, "H1"), (3, "H3")], NOW, claim=[1, 2], lease_seconds=600)
    claims = _claims(ledger)
    until = (NOW + timedelta(seconds=600)).isoformat()
    assert claims[1][:2] == ("stored", "H1")
    assert claims[1][3] == until
    assert claims[2][2] == claims[1][2] is not None  # this process
    assert claims[3] == ("stored", "H3", None, None)  # not acknowledged next: no claim
    writes: list[str] = []
    conn = ledger._conn
    if hasattr(conn, "set_trace_callback"):
        conn.set_trace_callback(writes.append)
    assert ledger.claim_acks([1, 2], NOW, 600) == [1, 2]
    if hasattr(conn, "set_trace_callback"):
        conn.set_trace_callback(None)
        assert not [w for w in writes if not w.lstrip().upper().startswith("SELECT")], writes
    assert _claims(ledger) == claims
    # Another process finds them in flight; once recorded, nobody claims them again.
    assert ledger.claim_acks([1, 2], NOW, 600, owner=ELSEWHERE) == []
    assert ledger.record_acks([1, 2], NOW) == [1, 2]
    assert _claims(ledger)[1] == ("acked", "H1", None, None)
    assert ledger.claim_acks([1, 2], NOW, 600) == []


def test_binding_leaves_a_claim_held_elsewhere_alone(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.bind_stored([(1, "H1")], NOW)
    assert ledger.claim_acks([1], NOW, 600, owner=ELSEWHERE) == [1]
    ledger.bind_stored([(1, "H1")], NOW, claim=[1], lease_seconds=600)  # stored again
    assert _claims(ledger)[1][2] == ELSEWHERE
    assert ledger.claim_acks([1], NOW, 600) == []  # still in flight there
    # A later claim with another lease end is written as before.
    ledger.release_acks([1], owner=ELSEWHERE)
    assert ledger.claim_acks([1], NOW + timedelta(seconds=5), 600) == [1]
    assert _claims(ledger)[1][3] == (NOW + timedelta(seconds=605)).isoformat()


def test_an_unused_claim_is_released(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.bind_stored([(1, "H1")], NOW, claim=[1], lease_seconds=600)
    ledger.release_acks([1])
    assert ledger.claim_acks([1], NOW, 600, owner=ELSEWHERE) == [1]


def test_bindings_in_one_statement_per_chunk_keep_every_line_and_the_last_host_id(
    tmp_path: Path,
) -> None:
    # bind_stored joins the (id, host order) pairs as a VALUES list, 500 a statement: every
    # line of a larger call is bound, a line named twice keeps its last host order id (as
    # one write per pair left it), and an unknown id changes nothing.
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    ids = range(1, 1203)
    with ledger.transaction():
        for lid in ids:
            ledger.stage_line(ci_lineitemid=lid, orderid=f"O{lid}", now=NOW, quantity=1)
    ledger.set_line_states([(lid, "delivered", None, "") for lid in ids], NOW)
    bindings = [(lid, f"H{lid}") for lid in ids] + [(7, "H7-again"), (99999, "H-none")]
    ledger.bind_stored(bindings, NOW, claim=range(1, 601), lease_seconds=600)
    claims = _claims(ledger)
    assert set(claims) == set(ids)
    assert all(claims[lid][:2] == ("stored", f"H{lid}") for lid in ids if lid != 7)
    assert claims[7][:2] == ("stored", "H7-again")
    assert all(claims[lid][3] is not None for lid in range(1, 601))  # claimed
    assert all(claims[lid][2:] == (None, None) for lid in range(601, 1203))  # bound only
    assert ledger.claim_acks(list(range(1, 601)), NOW, 600) == list(range(1, 601))


def test_binding_returns_the_claims_it_holds(tmp_path: Path) -> None:
    # The ids of ``claim`` this process holds after the write, in ``claim``'s order, when
    # every line of the statement could be claimed; claim_acks returns them too, writing
    # nothing (the importer then skips it).
    ledger = _ledger(tmp_path)
    ledger.stage_line(ci_lineitemid=4, orderid="A", now=NOW, quantity=1)
    ledger.update_line(4, NOW, state="delivered")
    taken = ledger.bind_stored(
        [(3, "H3"), (2, "H2"), (4, "H4")],
        NOW,
        claim=[3, 2, 99, 3],  # 99: never imported, not bound; 4: bound, not acknowledged next
        lease_seconds=600,
    )
    assert taken == [3, 2]
    claims = _claims(ledger)
    assert ledger.claim_acks([3, 2], NOW, 600) == [3, 2]
    assert _claims(ledger) == claims
    assert claims[4][2:] == (None, None)
    assert ledger.bind_stored([(4, "H4")], NOW) == []  # nothing to claim
    # Bound again by the holder with another lease end: held until then, as claim_acks says.
    later = NOW + timedelta(seconds=5)
    assert ledger.bind_stored([(2, "H2")], later, claim=[2], lease_seconds=600) == [2]
    assert _claims(ledger)[2][3] == (later + timedelta(seconds=600)).isoformat()


def test_binding_beside_a_claim_held_elsewhere_leaves_the_answer_to_claim_acks(
    tmp_path: Path,
) -> None:
    # One line of the statement is in flight in another process: it is bound, its claim left
    # alone, and the others are claimed all the same; which ones, claim_acks answers.
    ledger = _ledger(tmp_path)
    ledger.bind_stored([(1, "H1")], NOW)
    assert ledger.claim_acks([1], NOW, 600, owner=ELSEWHERE) == [1]
    taken = ledger.bind_stored(
        [(3, "H3"), (1, "H1-b"), (2, "H2")], NOW, claim=[3, 1, 2], lease_seconds=600
    )
    assert set(taken) <= {3, 2}
    claims = _claims(ledger)
    assert claims[1][:3] == ("stored", "H1-b", ELSEWHERE)
    assert ledger.claim_acks([3, 1, 2], NOW, 600) == [3, 2]
    assert _claims(ledger) == claims  # held already: nothing written


def test_recording_acks_twice_logs_once_and_unknown_ids_as_before(tmp_path: Path) -> None:
    # record_acks finds the lines acked before from its own UPDATE (RETURNING): they are not
    # logged again; an id the ledger never saw is logged, as it always was.
    ledger = _ledger(tmp_path)
    ledger.bind_stored([(1, "H1"), (2, "H2")], NOW, claim=[1, 2], lease_seconds=600)
    assert ledger.record_acks([2, 1, 2], NOW) == [2, 1]
    assert ledger.record_acks([1, 77, 2], NOW) == [77]
    assert [entry[:2] for entry in ledger.ack_log()] == [
        (2, "accepted"),
        (1, "accepted"),
        (77, "accepted"),
    ]
    assert _claims(ledger)[1] == ("acked", "H1", None, None)
