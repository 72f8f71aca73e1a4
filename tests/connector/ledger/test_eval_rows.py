"""``eval_rows_of_orders``: the lean rows delivery evaluates, the same values as the full
``eval_lines_of_orders`` rows in every field it keeps, on every schema that stores the parsed
form differently (v9 side table, v8 inline with the raw record aside, v7 all inline); each
order's lines in line id order whatever order the backend reads them in; runs on both
backends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.ledger import EvalLine, Ledger, ledger_path, open_ledger_file
from connector.ledger.migrations import MIGRATIONS
from connector.models import HoldKind

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _fill(ledger: Ledger) -> None:
    for lid, orderid, parsed in (
        (1, "A", '["a1", {"x": "1.50"}]'),
        (2, "A", '{"problem": "bad date"}'),
        (3, "B", None),  # no parsed form (staged before v3): evaluation gets the raw record
        (4, "C", '["c4"]'),
    ):
        record = {"orderid": orderid, "line_items": [{"ci_lineitemid": lid}]}
        ledger.stage_line(ci_lineitemid=lid, orderid=orderid, now=T0, record=record)
        if parsed is not None:
            ledger.update_line(lid, T0, parsed=parsed)
    ledger.set_line_states([(2, "held", HoldKind.INVALID_PAYLOAD, "bad date")], T0)
    ledger.set_line_states([(4, "delivered", None, "")], T0)


@pytest.mark.parametrize("schema", [9, 8, 7])
def test_eval_rows_match_the_full_rows(tmp_path: Path, schema: int) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us", MIGRATIONS[:schema])
    assert ledger.schema_version() == schema
    _fill(ledger)
    orders = ["B", "A", "C", "missing", "A"]
    full = ledger.eval_lines_of_orders(orders)
    lean = ledger.eval_rows_of_orders(orders)
    # Unknown orders left out (the groups' order is the backend's: callers look orders up).
    assert sorted(lean) == sorted(full) == ["A", "B", "C"]
    assert lean == {
        orderid: [EvalLine(*(getattr(row, f) for f in EvalLine._fields)) for row in rows]
        for orderid, rows in full.items()
    }
    a1, a2 = lean["A"]
    assert (a1.parsed, a1.record) == (["a1", {"x": "1.50"}], None)
    assert a2.parsed == {"problem": "bad date"}
    assert (a2.state, a2.hold_kind, a2.hold_reason) == (
        "held",
        HoldKind.INVALID_PAYLOAD,
        "bad date",
    )
    (b3,) = lean["B"]
    assert (b3.parsed, b3.record) == (None, {"orderid": "B", "line_items": [{"ci_lineitemid": 3}]})
    (c4,) = lean["C"]
    assert (c4.state, c4.first_seen) == ("delivered", T0)


@pytest.mark.parametrize("schema", [9, 8])
def test_eval_rows_decode_the_parsed_form_with_the_callers_decoder(
    tmp_path: Path, schema: int
) -> None:
    # ``decode`` gets each stored parsed text (rows without one keep None and their record).
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us", MIGRATIONS[:schema])
    _fill(ledger)
    seen: list[str] = []

    def decode(text: str) -> tuple[str, int]:
        seen.append(text)
        return ("decoded", len(text))

    lean = ledger.eval_rows_of_orders(["A", "B", "C"], decode)
    assert sorted(seen) == sorted(['["a1", {"x": "1.50"}]', '{"problem": "bad date"}', '["c4"]'])
    assert [row.parsed for row in lean["A"]] == [
        ("decoded", len('["a1", {"x": "1.50"}]')),
        ("decoded", len('{"problem": "bad date"}')),
    ]
    (b3,) = lean["B"]
    assert b3.parsed is None
    assert b3.record is not None


@pytest.mark.parametrize("schema", [9, 8])
def test_eval_rows_of_each_order_come_in_line_id_order(tmp_path: Path, schema: int) -> None:
    # No ORDER BY in the read: each order's lines must still come sorted, however the
    # backend happens to return them (lines staged out of order, orders interleaved).
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us", MIGRATIONS[:schema])
    staged = [(9, "A"), (4, "B"), (2, "A"), (7, "B"), (5, "A"), (1, "C"), (8, "B")]
    for lid, orderid in staged:
        record = {"orderid": orderid, "line_items": [{"ci_lineitemid": lid}]}
        ledger.stage_line(ci_lineitemid=lid, orderid=orderid, now=T0, record=record)
        ledger.update_line(lid, T0, parsed=f'["{orderid}{lid}"]')
    lean = ledger.eval_rows_of_orders(["C", "B", "A"])
    assert {o: [row.ci_lineitemid for row in rows] for o, rows in lean.items()} == {
        "A": [2, 5, 9],
        "B": [4, 7, 8],
        "C": [1],
    }
    assert [row.parsed for row in lean["B"]] == [["B4"], ["B7"], ["B8"]]
