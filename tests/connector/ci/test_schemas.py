"""Tolerant parsing of CI records: real shapes pass, hostile input becomes a RecordProblem."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.ci.schemas import (
    MAX_TEXT,
    ParsedRecord,
    RecordProblem,
    parse_ci_datetime,
    parse_record,
)

# Copies of ../shared/reference/ci-examples (synthetic data in the real shape).
EXAMPLES = Path(__file__).parents[2] / "fixtures" / "ci-examples"


def _example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return data


def _v4_record() -> dict[str, Any]:
    return copy.deepcopy(_example("get_orders_v4_page2_of_2.json")["data"][1])


def _ok(raw: Any) -> ParsedRecord:
    result = parse_record(raw)
    assert isinstance(result, ParsedRecord), result
    return result


def _problem(raw: Any) -> RecordProblem:
    result = parse_record(raw)
    assert isinstance(result, RecordProblem), result
    return result


# --- the example files ------------------------------------------------------------------------


def test_v4_page_two_parses_every_record() -> None:
    records = [_ok(r) for r in _example("get_orders_v4_page2_of_2.json")["data"]]
    assert [r.orderid for r in records] == ["1499000251", "1499000263", "1499000277", "1499000277"]
    first = records[0]
    assert first.order_date == datetime(2024, 3, 4, 9, 15, tzinfo=UTC)
    assert first.total == Decimal("49.99")
    assert first.shipping_method == "standard"
    assert first.supplier_name == "EXAMPLE HOUSEWARES SRL"
    assert first.parent_orderid is None
    assert first.billing is not None
    assert first.billing.address2 == ""
    assert first.ship_to.address2 == "Scala B"
    line = first.lines[0]
    assert line.ci_lineitemid == 612004511
    assert line.fulfillment_lineitem_id == "1302200451"
    assert line.bom_sku == "EXH-2001"
    assert line.unit_price == Decimal("49.99")
    assert line.groupon_cost == Decimal("30.45")
    assert line.discount == Decimal("0")
    assert line.ship_by == datetime(2024, 3, 6, 22, 59, tzinfo=UTC)
    assert line.components == ()
    # float discount next to int discounts
    assert records[1].lines[0].discount == Decimal("2.25")
    assert records[1].ship_to.state == ""
    assert records[2].lines[0].quantity == 2


def test_v2_2017_shape_parses_without_billing_and_with_parent() -> None:
    (raw,) = _example("get_orders_v2_2017_shape.json")["data"]
    record = _ok(raw)
    assert record.billing is None
    assert record.parent_orderid == "77001234"
    assert record.order_date == datetime(2017, 6, 12, 15, 27, tzinfo=UTC)
    assert record.shipping_method == "BEST"
    assert record.lines[0].bom_sku is None  # "" means no BOM SKU
    assert record.lines[0].ship_by is None
    assert record.lines[0].sku == "0012345678905"


def test_empty_listing_has_no_records() -> None:
    assert _example("get_orders_empty.json")["data"] == []


# --- v4 doc-sample quirks ---------------------------------------------------------------------


def test_money_int_float_and_numeric_string_become_exact_decimals() -> None:
    raw = _v4_record()
    raw["amount"]["total"] = 75
    raw["line_items"][0]["unit_price"] = "45.60"
    raw["line_items"][0]["groupon_cost"] = 0
    raw["line_items"][0]["discount"] = 0.94
    record = _ok(raw)
    assert record.total == Decimal("75")
    assert str(record.lines[0].unit_price) == "45.60"
    assert record.lines[0].groupon_cost == Decimal("0")
    assert record.lines[0].discount == Decimal("0.94")


def test_doc_sample_nulls_and_float_weight_are_tolerated() -> None:
    raw = _v4_record()
    raw["customer"]["state"] = None
    raw["customer"]["country"] = None
    raw["parent_orderid"] = None
    raw["shipping"]["carrier"] = None
    raw["shipping"]["product_weight"] = 0.0
    item = raw["line_items"][0]
    item.update(po_number=None, bom_sku=None, weight=0.0, ci_lineitemid="612004530")
    item["fulfillment_lineitem_id"] = 1302200470
    record = _ok(raw)
    assert record.ship_to.state is None
    assert record.ship_to.country is None
    assert record.lines[0].bom_sku is None
    assert record.lines[0].ci_lineitemid == 612004530
    assert record.lines[0].fulfillment_lineitem_id == "1302200470"


def test_3pl_keys_and_unknown_keys_are_accepted() -> None:
    raw = _v4_record()
    raw["shipping"]["3PL_warehouse"] = "OH"
    raw["shipping"]["3PL_name"] = "INNOTRAC"
    raw["brand_new_key"] = {"nested": [1, 2, 3]}
    raw["line_items"][0]["another_new_key"] = None
    assert _ok(raw).orderid == "1499000263"


def test_missing_optional_blocks_get_defaults() -> None:
    raw = _v4_record()
    for key in ("amount", "shipping", "supplier", "parent_orderid"):
        del raw[key]
    del raw["customer"]["billing_address"]
    item = raw["line_items"][0]
    for key in ("fulfillment_lineitem_id", "ship_by_date", "status", "discount", "groupon_cost"):
        del item[key]
    record = _ok(raw)
    assert record.total == Decimal("29.99")  # assumed: sum of unit_price * quantity
    assert record.shipping_method == ""
    assert record.billing is None
    assert record.lines[0].status == "open"
    assert record.lines[0].discount == Decimal("0")
    assert record.lines[0].groupon_cost is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("03/04/2024 09:15AM UTC", datetime(2024, 3, 4, 9, 15, tzinfo=UTC)),
        ("03/04/2024 12:05AM UTC", datetime(2024, 3, 4, 0, 5, tzinfo=UTC)),
        ("03/04/2024 12:05PM UTC", datetime(2024, 3, 4, 12, 5, tzinfo=UTC)),
        ("03/06/2024 10:59PM UTC", datetime(2024, 3, 6, 22, 59, tzinfo=UTC)),
        ("03/06/2024 10:59PM", datetime(2024, 3, 6, 22, 59, tzinfo=UTC)),
        ("03/04/2024 09:15", datetime(2024, 3, 4, 9, 15, tzinfo=UTC)),
        ("03/04/2024 21:15 UTC", datetime(2024, 3, 4, 21, 15, tzinfo=UTC)),
    ],
)
def test_parse_ci_datetime_formats(text: str, expected: datetime) -> None:
    assert parse_ci_datetime(text) == expected
    assert parse_ci_datetime(text).tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["", "2024-03-04T09:15:00Z", "13/04/2024 09:15", "03/04/2024 13:15PM", "03/04/2024"]
)
def test_parse_ci_datetime_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ci_datetime(text)


# --- hostile records --------------------------------------------------------------------------


def _set(raw: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("orderid",), None, "orderid"),
        (("orderid",), "", "orderid"),
        (("date",), "yesterday", "date"),
        (("date",), 1709543700, "date"),
        (("line_items",), [], "line_items"),
        (("line_items",), "not a list", "line_items"),
        (("line_items", 0, "ci_lineitemid"), True, "line_items[0].ci_lineitemid"),
        (("line_items", 0, "ci_lineitemid"), -5, "line_items[0].ci_lineitemid"),
        (("line_items", 0, "ci_lineitemid"), "12a", "line_items[0].ci_lineitemid"),
        (("line_items", 0, "quantity"), 0, "line_items[0].quantity"),
        (("line_items", 0, "quantity"), 1.5, "line_items[0].quantity"),
        (("line_items", 0, "quantity"), True, "line_items[0].quantity"),
        (("line_items", 0, "unit_price"), "abc", "line_items[0].unit_price"),
        (("line_items", 0, "unit_price"), None, "line_items[0].unit_price"),
        (("line_items", 0, "unit_price"), "NaN", "line_items[0].unit_price"),
        (("line_items", 0, "unit_price"), True, "line_items[0].unit_price"),
        (("line_items", 0, "sku"), "", "line_items[0].sku"),
        (("line_items", 0, "sku"), {"a": 1}, "line_items[0].sku"),
        (("line_items", 0, "ship_by_date"), "soon", "line_items[0].ship_by_date"),
        (("line_items", 0), "not an object", "line_items[0]"),
        (("customer",), None, "customer"),
        (("customer", "name"), None, "customer.name"),
        (("customer", "address1"), "", "customer.address1"),
        (("customer", "billing_address"), [1], "customer.billing_address"),
        (("amount", "total"), "12,50", "amount.total"),
        (("shipping", "method"), [1], "shipping.method"),
        (("customer", "city"), "x" * (MAX_TEXT + 1), "customer.city"),
        (("customer", "name"), "bad \ud800 surrogate", "customer.name"),
    ],
)
def test_each_bad_field_is_a_problem_naming_the_field(
    path: tuple[Any, ...], value: Any, named: str
) -> None:
    raw = _v4_record()
    _set(raw, path, value)
    problem = _problem(raw)
    assert named in problem.reason
    assert len(problem.reason) <= 1000
    if path != ("orderid",):
        assert problem.orderid == "1499000263"
    if path[:1] != ("line_items",):
        assert problem.ci_lineitemids == (612004530,)


def test_problem_quotes_the_value_truncated() -> None:
    raw = _v4_record()
    raw["line_items"][0]["unit_price"] = "z" * 5000
    problem = _problem(raw)
    assert "line_items[0].unit_price" in problem.reason
    assert "zzzz" in problem.reason
    assert "z" * 100 not in problem.reason


def test_problem_keeps_line_ids_it_could_read() -> None:
    raw = _v4_record()
    second = copy.deepcopy(raw["line_items"][0])
    second.update(ci_lineitemid="612004531", quantity=-1)
    third = {"ci_lineitemid": False}
    raw["line_items"] += [second, third]
    problem = _problem(raw)
    assert problem.ci_lineitemids == (612004530, 612004531)
    assert "line_items[1].quantity" in problem.reason
    assert "line_items[2]" in problem.reason


@pytest.mark.parametrize("raw", [None, [1, 2], "record", 42, {}])
def test_non_records_are_problems(raw: Any) -> None:
    problem = _problem(raw)
    assert problem.ci_lineitemids == ()
    assert problem.reason


def test_exploding_mapping_becomes_a_problem() -> None:
    class Exploding(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("boom")

        def __iter__(self) -> Iterator[str]:
            return iter(["orderid"])

        def __len__(self) -> int:
            return 1

    problem = _problem(Exploding())
    assert "RuntimeError: boom" in problem.reason
    assert problem.orderid is None


def test_huge_integer_is_a_problem_not_a_crash() -> None:
    raw = _v4_record()
    raw["line_items"][0]["unit_price"] = 10**5000
    raw["customer"]["zip"] = 10**5000
    problem = _problem(raw)
    assert "line_items[0].unit_price" in problem.reason
    assert "customer.zip" in problem.reason
