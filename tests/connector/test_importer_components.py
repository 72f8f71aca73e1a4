"""Evaluation looks each ``(sku, bom_sku)`` pair up once per mapping tables: later lines of
the same pair take the answer already found, and tables swapped in (``_prepare_next``
evaluates with the call's own) get their own answers, never the other tables'."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.importer import Importer, _decode_parsed
from connector.ledger import EvalLine, open_ledger
from connector.models import HoldKind, SkuComponent
from tests.connector.fakes import T0, fake_mappings, make_host

ADDRESS = ["Jane Example", "1 Main St", "", "Portland", "OR", "97204", "US", "555"]
NOW = datetime(2024, 3, 5, tzinfo=UTC)


def _row(lid: int, orderid: str, sku: str) -> EvalLine:
    form = [orderid, None, "2024-03-01T10:00:00+00:00", ADDRESS, None, "21.50", "standard"]
    form += ["Shop", lid, lid, f"F{lid}", sku, None, "Board", 2, "10.75", None, "0", "open"]
    form += [None, f"uuid-{lid}", "", ""]
    return EvalLine(
        lid, orderid, "staged", "open", None, "", T0, None, _decode_parsed(json.dumps(form))
    )


def _evaluate(imp: Importer, orderid: str, rows: list[EvalLine]) -> tuple[Any, list[Any]]:
    updates: list[Any] = []
    order = imp._evaluate_order(orderid, rows, None, NOW, timedelta(0), updates)
    return order, updates


def test_each_sku_pair_is_looked_up_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = make_host()
    acct = host.account(tmp_path, watch_cancellations=False)
    imp = Importer(acct, host.cis["us"], open_ledger(acct), fake_mappings(), lambda: T0)
    asked: list[tuple[str, str | None]] = []
    real = Importer._components

    def counting(self: Importer, sku: str, bom_sku: str | None) -> Any:
        asked.append((sku, bom_sku))
        return real(self, sku, bom_sku)

    monkeypatch.setattr(Importer, "_components", counting)
    first, _ = _evaluate(imp, "O1", [_row(1, "O1", "SKU-1"), _row(2, "O1", "SKU-2")])
    second, _ = _evaluate(imp, "O2", [_row(3, "O2", "SKU-1"), _row(4, "O2", "SKU-1")])
    assert asked == [("SKU-1", None), ("SKU-2", None)]
    assert [ln.components for ln in first.lines + second.lines] == [
        (SkuComponent("HOST-1", 1),),
        (SkuComponent("HOST-2", 1),),
        (SkuComponent("HOST-1", 1),),
        (SkuComponent("HOST-1", 1),),
    ]


def test_swapped_mapping_tables_get_their_own_answers(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path, watch_cancellations=False)
    without = fake_mappings(aliases={"SKU-1": [("HOST-1", 1)]})
    with_it = fake_mappings(aliases={"SKU-1": [("HOST-1", 1)], "SKU-9": [("HOST-9", 3)]})
    imp = Importer(acct, host.cis["us"], open_ledger(acct), without, lambda: T0)

    order, updates = _evaluate(imp, "O1", [_row(1, "O1", "SKU-9")])
    assert order is None
    assert [(u[0], u[1], u[2]) for u in updates] == [(1, "held", HoldKind.UNMAPPED_SKU)]

    imp.mappings = with_it  # as _prepare_next does with the call's tables
    order, updates = _evaluate(imp, "O1", [_row(1, "O1", "SKU-9")])
    assert order is not None
    assert order.lines[0].components == (SkuComponent("HOST-9", 3),)
    assert updates == [(1, "delivered", None, "")]

    imp.mappings = without
    order, _ = _evaluate(imp, "O1", [_row(1, "O1", "SKU-9")])
    assert order is None
