"""Evaluation decodes each stored parsed form against its layout (addresses left raw until
the order's first record is read for them): the orders, holds and state updates are exactly
those of the plain JSON decode, also for forms that must take the plain path (prices that
are numbers, another length, a problem entry, text msgspec refuses)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from connector.importer import Importer, _decimal, _decode_parsed
from connector.ledger import EvalLine, open_ledger
from tests.connector.fakes import T0, fake_mappings, make_host

ADDRESS = ["Jane Example", "1 Main St", "", "Portland", "OR", "97204", "US", "555"]


def _form(lid: int, record: int, **change: Any) -> list[Any]:
    head = ["O1", None, "2024-03-01T10:00:00+00:00", ADDRESS, [*ADDRESS[:7], ""], "21.50"]
    head += ["standard", "Shop", record]
    line = [lid, f"F{lid}", "SKU-1", None, "Board", 2, "10.75", "6.0", "0", "open"]
    line += ["2024-03-03T05:59:00+00:00", f"uuid-{lid}", "", ""]
    form = head + line
    names = {"date": 2, "ship_to": 3, "billing": 4, "total": 5, "price": 15, "ship_by": 19}
    for name, value in change.items():
        form[names[name]] = value
    return form


FORMS: list[list[tuple[int, str]]] = [
    [(1, json.dumps(_form(1, 1)))],
    [(1, json.dumps(_form(1, 1))), (2, json.dumps(_form(2, 1)))],
    # Two records of one order (their heads differ; the earliest date's head is the order's).
    [
        (3, json.dumps(_form(3, 3, date="2024-03-02T10:00:00+00:00", ship_to=ADDRESS[::-1]))),
        (4, json.dumps(_form(4, 4, billing=None, total="3"))),
    ],
    [(5, json.dumps(_form(5, 5, price=10.75)))],  # a number where text is written: plain
    [(6, json.dumps(_form(6, 6, ship_by=None, billing=None)))],
    [(7, json.dumps(_form(7, 7, ship_to=["\udc80 lone", "x", "", "", None, "", None, ""])))],
    [(8, json.dumps({"problem": "bad date"}))],
    [(9, json.dumps(_form(9, 9)[:22]))],  # another length: evaluated as a row without a form
    [(10, json.dumps(_form(10, 10, date="2024-03-01")))],  # date only: fromisoformat's reading
]


def _rows(entries: list[tuple[int, str]], decode: Any) -> list[EvalLine]:
    return [
        EvalLine(lid, "O1", "staged", "open", None, "", T0, None, decode(text))
        for lid, text in entries
    ]


def _plain(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


@pytest.mark.parametrize("entries", FORMS)
def test_typed_decode_evaluates_as_the_plain_decode(
    tmp_path: Path, entries: list[tuple[int, str]]
) -> None:
    host = make_host()
    acct = host.account(tmp_path, watch_cancellations=False)
    imp = Importer(acct, host.cis["us"], open_ledger(acct), fake_mappings(), lambda: T0)
    now = datetime(2024, 3, 5, tzinfo=UTC)

    def evaluate(decode: Any) -> tuple[Any, list[Any]]:
        updates: list[Any] = []
        try:
            order = imp._evaluate_order(
                "O1", _rows(entries, decode), None, now, timedelta(0), updates
            )
        except Exception as exc:  # the same failure either way
            return (type(exc), str(exc)), updates
        return order, updates

    typed, plain = evaluate(_decode_parsed), evaluate(_plain)
    assert typed == plain
    assert repr(typed) == repr(plain)  # the same Decimal and datetime spellings too


def test_cached_values_keep_numbers_of_other_types_apart() -> None:
    # Price texts are cached; a number where text belongs (plain decode) is never cached, so
    # 0 and -0.0 (equal as keys) keep their own values, as Decimal gives them.
    assert str(_decimal(0)) == "0"
    assert str(_decimal(-0.0)) == "-0"
    assert str(_decimal("-0")) == "-0"
    assert _decimal("10.75") is _decimal("10.75")
    assert _decimal(1.5) == Decimal("1.5")
