"""The evaluation queue (``pending_eval``): orders taken by a chunk, and put back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.ledger import Ledger, ledger_path, open_ledger_file

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _insert(lid: int, orderid: str, round_no: int) -> tuple[Any, ...]:
    """A row of ``stage_rows(inserts=...)`` (the ``_STAGE_INSERT`` order)."""
    stamp = T0.isoformat()
    head = (lid, "us", orderid, None, f"k{lid}", "[]", None, None, 1, "SKU", None, "staged")
    return (*head, None, "", None, "open", stamp, stamp, round_no)


def _staged(tmp_path: Path) -> Ledger:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    round_no = ledger.begin_import_round()
    ledger.stage_rows(
        records=[(f"k{lid}", "{}") for lid in (1, 2, 3, 4)],
        inserts=[
            _insert(lid, orderid, round_no)
            for lid, orderid in ((1, "A"), (2, "A"), (3, "B"), (4, "C"))
        ],
    )
    ledger.complete_import_round(round_no)
    return ledger


def test_reopened_orders_wait_for_evaluation_again(tmp_path: Path) -> None:
    ledger = _staged(tmp_path)
    assert sorted(ledger.pending_orderids(10)) == ["A", "B", "C"]
    with ledger.transaction():
        ledger.set_line_states([(1, "delivered", None, ""), (2, "delivered", None, "")], T0)
        ledger.set_line_states([(3, "stored", None, "")], T0)
        ledger.end_evaluation(["A", "B", "C"])
    assert not ledger.has_pending_evaluation()
    assert ledger.count_in_state([1, 2, 3, 4, 1, 99], "delivered") == 2
    assert ledger.count_in_state([3], "stored") == 1
    assert ledger.count_in_state([], "stored") == 0
    ledger.reopen_evaluation(["A", "B", "A"])
    # A's lines are unconfirmed (delivered): due again; B's one line is the host's already.
    assert ledger.pending_orderids(10) == ["A"]
    assert ledger.has_pending_evaluation()
    ledger.reopen_evaluation([])  # nothing to do
    assert ledger.pending_orderids(10) == ["A"]
    ledger.close()


def test_partial_id_lists_padded_with_nulls_change_and_count_only_their_lines(
    tmp_path: Path,
) -> None:
    """Lists of ids / orders that end in a partial slice (padded with NULLs to a recurring
    statement size) select, count and change exactly the lines they name."""
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    round_no = ledger.begin_import_round()
    lids = range(1, 504)
    ledger.stage_rows(
        records=[(f"k{lid}", "{}") for lid in lids],
        inserts=[_insert(lid, f"O{lid % 5}", round_no) for lid in lids],
    )
    ledger.complete_import_round(round_no)
    delivered = [lid for lid in range(1, 502) if lid % 5 != 4]  # 401: O4's lines left out
    with ledger.transaction():
        ledger.set_line_states([(lid, "delivered", None, "") for lid in delivered], T0)
        ledger.set_line_states([(502, "stored", None, "")], T0)
        ledger.end_evaluation(["O1", "O2"])
    assert ledger.count_in_state(lids, "delivered") == len(delivered)
    assert ledger.count_in_state([*lids, 999], "staged") == len(lids) - len(delivered) - 1
    assert ledger.count_in_state([502, 503, 999], "stored") == 1
    # O3's line 503 and O4's lines were left staged.
    assert sorted(ledger.pending_orderids(10)) == ["O3", "O4"]
    rows = ledger.eval_rows_of_orders(["O2", "O3", "X"])
    assert sorted(rows) == ["O2", "O3"]
    assert [line.ci_lineitemid for line in rows["O2"]] == list(range(2, 504, 5))
    assert {line.state for line in rows["O2"]} == {"delivered", "stored"}
    assert [line.ci_lineitemid for line in rows["O3"]] == list(range(3, 504, 5))
    assert set(ledger.dispatch_lines_and_customers([502, 503, 999])[0]) == {502, 503}
    ledger.close()
