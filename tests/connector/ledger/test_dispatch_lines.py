"""``dispatch_lines_and_customers`` (issue 11, dispatch pre-flight): the columns pre-flight
checks, the same values a full ``get_lines`` read gives, unknown lines left out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.ledger import DispatchLine, ledger_path, open_ledger_file

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def full_read(ledger: Any, ids: Iterable[int]) -> dict[int, DispatchLine]:
    """What pre-flight's read must give, from a full ``get_lines`` read of the same ids."""
    return {
        lid: DispatchLine(
            row.ci_lineitemid,
            row.orderid,
            row.fulfillment_lineitem_id,
            row.quantity,
            row.state,
            row.ci_status,
        )
        for lid, row in ledger.get_lines(list(ids)).items()
    }


def test_dispatch_lines_match_a_full_read(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    try:
        record = {"orderid": "A", "customer": {"name": "Giulia", "address1": "Via 14"}}
        ledger.stage_line(
            ci_lineitemid=1, orderid="A", now=T0, quantity=2, record=record,
            fulfillment_lineitem_id="F1",
        )  # fmt: skip
        ledger.stage_line(ci_lineitemid=2, orderid="A", now=T0, quantity=1, ci_status="cancelled")
        ledger.stage_line(ci_lineitemid=3, orderid="B", now=T0, quantity=5, state="held")
        ledger.update_line(1, T0, state="acked")
        wanted = [3, 1, 99, 2, 1, *range(1000, 1600)]  # more than one chunk of ids
        got = ledger.dispatch_lines_and_customers(wanted)[0]
        assert got == full_read(ledger, wanted)
        assert sorted(got) == [1, 2, 3]
        assert all(isinstance(line, DispatchLine) for line in got.values())
        assert got[1] == DispatchLine(1, "A", "F1", 2, "acked", "open")
        assert got[2].ci_status == "cancelled"
        assert ledger.dispatch_lines_and_customers([]) == ({}, {})
    finally:
        ledger.close()
