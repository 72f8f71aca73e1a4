"""The fast strict parse path (connector.ci.fast) against the marshmallow path it stands in for.

The contract: on anything it accepts, the fast path gives exactly the marshmallow result
(and the importer's positional fields built from it); everything else it defers, and
``parse_record`` then answers exactly as the marshmallow path does (same problem text).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.ci.fast import ledger_fields, parse_fast, record_text
from connector.ci.records import MAX_TEXT, ParsedRecord, RecordProblem
from connector.ci.schemas import parse_record, parse_record_tolerant
from connector.importer import _line_fields, _record_head

EXAMPLES = Path(__file__).parents[2] / "fixtures" / "ci-examples"


def _records(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((EXAMPLES / name).read_text("utf-8"))["data"]
    return data


BASES = _records("get_orders_v4_page2_of_2.json") + _records("get_orders_v2_2017_shape.json")
V4 = BASES[0]


def _check(raw: Any) -> tuple[ParsedRecord | None, ParsedRecord | RecordProblem]:
    """Assert the contract on ``raw``; return (fast result, marshmallow result)."""
    slow = parse_record_tolerant(raw)
    fast = parse_fast(raw)
    if fast is not None:
        assert fast == slow
    assert parse_record(raw) == slow  # the public function: fast or not, the same answer
    text = record_text(raw)
    if text is not None:
        assert json.loads(text) == raw  # the stored text reads back as the record
        staged = ledger_fields(raw)
        if staged is not None:
            assert isinstance(slow, ParsedRecord)
            assert staged == (
                slow.orderid,
                [_record_head(slow) + _line_fields(line) for line in slow.lines],
            )
    return fast, slow


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


# Values aimed at the rules: borderline text, both date formats and broken ones, money and
# quantities in every shape CI drifts to, and the hostile ones.
_AIMED = st.sampled_from(
    [
        "",
        " ",
        "abc",
        "\x00ctrl\x1f\x7f",
        "é ü 東京",
        "\ud800",
        "x" * MAX_TEXT,
        "x" * (MAX_TEXT + 1),
        " " + "1" * MAX_TEXT,
        "12.50",
        " 12.50 ",
        "1e3",
        "1_000",
        "-0",
        "NaN",
        "Infinity",
        "0",
        "3",
        " 3 ",
        "²",
        "١٢",
        "612004511",
        "03/04/2024 09:15AM UTC",
        "03/04/2024 21:15",
        "3/4/2024 9:15 pm",
        "13/04/2024 09:15AM UTC",
        "03/04/2024 13:15PM UTC",
        "02/30/2024 09:15",
        " Cancelled ",
        "OPEN",
        0,
        1,
        -1,
        3,
        10**20,
        2**63,
        10**5000,
        19.99,
        1e-05,
        1e16,
        0.0,
        -0.0,
        math.nan,
        math.inf,
        True,
        False,
        None,
        [],
        {},
        [{}],
    ]
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_values = _AIMED | _AIMED | _json  # the aimed values twice as often


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(BASES)))
    if draw(st.booleans()):  # a second line item, so per-line rules meet several lines
        items = raw.get("line_items")
        if isinstance(items, list) and items:
            extra = copy.deepcopy(items[0])
            extra["ci_lineitemid"] = draw(st.integers(min_value=1, max_value=10**12))
            items.append(extra)
    paths = _paths(raw)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        path = draw(st.sampled_from(paths))
        node: Any = raw
        try:
            for key in path[:-1]:
                node = node[key]
            if draw(st.integers(0, 4)) == 0 and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = draw(_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced a parent
    return raw


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_mutated())
def test_mutated_records_fast_path_agrees_or_defers(raw: dict[str, Any]) -> None:
    _check(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_json)
def test_any_json_value_fast_path_agrees_or_defers(value: Any) -> None:
    _check(value)


def test_every_example_record_takes_the_fast_path() -> None:
    for raw in BASES:
        fast, _ = _check(raw)
        assert fast is not None
        assert record_text(raw) is not None
        assert ledger_fields(raw) is not None


# --- each rule ---------------------------------------------------------------------------------

FAST = "fast"  # accepted by both, equal
DEFER_OK = "defer-ok"  # fast path defers; marshmallow accepts (a drift it handles)
PROBLEM = "problem"  # fast path defers; marshmallow reports a problem


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]

    def mutate(raw: dict[str, Any]) -> None:
        node: Any = raw
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]

    def mutate(raw: dict[str, Any]) -> None:
        node: Any = raw
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return mutate


LINE = "line_items.0"
RULES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    # text: length, unicode, required/non-empty, type
    ("orderid at the length cap", _set("orderid", "9" * MAX_TEXT), FAST),
    ("orderid over the length cap", _set("orderid", "9" * (MAX_TEXT + 1)), PROBLEM),
    ("orderid empty", _set("orderid", ""), PROBLEM),
    ("orderid null", _set("orderid", None), PROBLEM),
    ("orderid missing", _drop("orderid"), PROBLEM),
    ("orderid as an int", _set("orderid", 1499000251), DEFER_OK),
    ("name with a lone surrogate", _set("customer.name", "Giulia \ud800"), PROBLEM),
    ("gift message with a lone surrogate", _set(f"{LINE}.gift_message", "\udfff"), PROBLEM),
    ("name with control characters", _set("customer.name", "Giulia\x00\x1f\x7f"), FAST),
    ("lone surrogate in a field not read", _set("opp_id", "\ud800"), FAST),
    ("non-ASCII text", _set("customer.city", "Torino \u2013 東京"), FAST),
    ("ship-to name empty", _set("customer.name", ""), PROBLEM),
    ("ship-to address1 null", _set("customer.address1", None), PROBLEM),
    ("zip as an int", _set("customer.zip", 10121), DEFER_OK),
    ("zip null", _set("customer.zip", None), FAST),
    ("state null", _set("customer.state", None), FAST),
    ("country missing", _drop("customer.country"), FAST),
    ("phone too long", _set("customer.phone", "1" * (MAX_TEXT + 1)), PROBLEM),
    ("line name empty", _set(f"{LINE}.name", ""), FAST),
    ("line name null", _set(f"{LINE}.name", None), PROBLEM),
    ("sku empty", _set(f"{LINE}.sku", ""), PROBLEM),
    ("sku as an int", _set(f"{LINE}.sku", 8009990001112), DEFER_OK),
    ("bom_sku empty", _set(f"{LINE}.bom_sku", ""), FAST),
    ("status padded and capitalised", _set(f"{LINE}.status", " Cancelled "), FAST),
    ("status blank", _set(f"{LINE}.status", "   "), FAST),
    ("status null", _set(f"{LINE}.status", None), FAST),
    ("uuid empty", _set(f"{LINE}.order_line_item_uuid", ""), FAST),
    # dates
    ("date in the window format", _set("date", "03/04/2024 21:15"), FAST),
    ("date without UTC, lower-case pm", _set("date", "3/4/2024 9:15 pm"), FAST),
    ("date with seconds", _set("date", "03/04/2024 09:15:30AM UTC"), FAST),
    ("date month 13", _set("date", "13/04/2024 09:15AM UTC"), PROBLEM),
    ("date 13 PM", _set("date", "03/04/2024 13:15PM UTC"), PROBLEM),
    ("date February 30", _set("date", "02/30/2024 09:15"), PROBLEM),
    ("date ISO", _set("date", "2024-03-04T09:15:00Z"), PROBLEM),
    ("date as an int", _set("date", 20240304), PROBLEM),
    ("date missing", _drop("date"), PROBLEM),
    ("ship_by_date empty", _set(f"{LINE}.ship_by_date", ""), FAST),
    ("ship_by_date null", _set(f"{LINE}.ship_by_date", None), FAST),
    ("ship_by_date garbage", _set(f"{LINE}.ship_by_date", "soon"), PROBLEM),
    # money
    ("price as a string", _set(f"{LINE}.unit_price", "12.50"), FAST),
    ("price as a padded string", _set(f"{LINE}.unit_price", " 12.50 "), FAST),
    ("price as an int", _set(f"{LINE}.unit_price", 12), FAST),
    ("price tiny float", _set(f"{LINE}.unit_price", 1e-05), FAST),
    ("price exponent string", _set(f"{LINE}.unit_price", "1e3"), FAST),
    ("price NaN string", _set(f"{LINE}.unit_price", "NaN"), PROBLEM),
    ("price NaN float", _set(f"{LINE}.unit_price", math.nan), PROBLEM),
    ("price infinite", _set(f"{LINE}.unit_price", math.inf), PROBLEM),
    ("price boolean", _set(f"{LINE}.unit_price", True), PROBLEM),
    ("price null", _set(f"{LINE}.unit_price", None), PROBLEM),
    ("price not a number", _set(f"{LINE}.unit_price", "abc"), PROBLEM),
    ("price beyond the int digit limit", _set(f"{LINE}.unit_price", 10**5000), PROBLEM),
    ("groupon_cost null", _set(f"{LINE}.groupon_cost", None), FAST),
    ("discount missing", _drop(f"{LINE}.discount"), FAST),
    ("discount NaN", _set(f"{LINE}.discount", math.nan), PROBLEM),
    ("amount.total missing", _drop("amount.total"), FAST),
    ("amount null", _set("amount", None), FAST),
    ("amount not an object", _set("amount", "49.99"), PROBLEM),
    ("amount.total NaN string", _set("amount.total", "NaN"), PROBLEM),
    ("amount.total as a string", _set("amount.total", "49.99"), FAST),
    # quantities
    ("quantity zero", _set(f"{LINE}.quantity", 0), PROBLEM),
    ("quantity negative", _set(f"{LINE}.quantity", -1), PROBLEM),
    ("quantity as a string", _set(f"{LINE}.quantity", "3"), FAST),
    ("quantity as a padded string", _set(f"{LINE}.quantity", " 3 "), FAST),
    ("quantity superscript digit", _set(f"{LINE}.quantity", "²"), PROBLEM),
    ("quantity boolean", _set(f"{LINE}.quantity", True), PROBLEM),
    ("quantity float", _set(f"{LINE}.quantity", 1.0), PROBLEM),
    ("quantity huge", _set(f"{LINE}.quantity", 10**30), FAST),
    # ids
    ("line id as a digit string", _set(f"{LINE}.ci_lineitemid", "612004511"), FAST),
    ("line id zero string", _set(f"{LINE}.ci_lineitemid", "0"), PROBLEM),
    ("line id zero", _set(f"{LINE}.ci_lineitemid", 0), PROBLEM),
    ("line id negative", _set(f"{LINE}.ci_lineitemid", -5), PROBLEM),
    ("line id boolean", _set(f"{LINE}.ci_lineitemid", True), PROBLEM),
    ("line id non-ASCII digits", _set(f"{LINE}.ci_lineitemid", "١٢"), PROBLEM),
    ("line id beyond 64 bits", _set(f"{LINE}.ci_lineitemid", 2**70), FAST),
    ("fulfillment id as an int", _set(f"{LINE}.fulfillment_lineitem_id", 1302200451), FAST),
    ("fulfillment id padded", _set(f"{LINE}.fulfillment_lineitem_id", " 130 "), FAST),
    ("fulfillment id empty", _set(f"{LINE}.fulfillment_lineitem_id", ""), FAST),
    ("fulfillment id float", _set(f"{LINE}.fulfillment_lineitem_id", 1.5), PROBLEM),
    # required / nullable objects
    ("customer null", _set("customer", None), PROBLEM),
    ("customer missing", _drop("customer"), PROBLEM),
    ("customer a list", _set("customer", []), PROBLEM),
    ("billing null", _set("customer.billing_address", None), FAST),
    ("billing missing", _drop("customer.billing_address"), FAST),
    ("billing empty", _set("customer.billing_address", {}), FAST),
    ("billing name null", _set("customer.billing_address.name", None), FAST),
    ("line_items empty", _set("line_items", []), PROBLEM),
    ("line_items missing", _drop("line_items"), PROBLEM),
    ("line_items not objects", _set("line_items", [1]), PROBLEM),
    ("line_items a string", _set("line_items", "x"), PROBLEM),
    ("shipping null", _set("shipping", None), FAST),
    ("shipping.method null", _set("shipping.method", None), FAST),
    ("shipping.method an int", _set("shipping.method", 5), DEFER_OK),
    ("parent_orderid empty", _set("parent_orderid", ""), FAST),
    ("supplier null", _set("supplier", None), FAST),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [(m, e) for _, m, e in RULES], ids=[name for name, _, _ in RULES]
)
def test_rule(mutate: Callable[[dict[str, Any]], None], expected: str) -> None:
    raw = copy.deepcopy(V4)
    mutate(raw)
    fast, slow = _check(raw)
    if expected == FAST:
        assert fast is not None, "the fast path should accept this"
    elif expected == DEFER_OK:
        assert fast is None
        assert isinstance(slow, ParsedRecord)
    else:
        assert fast is None
        assert isinstance(slow, RecordProblem)


def test_an_order_id_beyond_the_int_digit_limit_is_a_problem_not_a_crash() -> None:
    # Found by the property test: reporting the problem converted the id with str() and
    # raised ValueError out of parse_record (whose contract is "never raises").
    raw = copy.deepcopy(V4)
    raw["orderid"] = 10**5000
    result = parse_record(raw)
    assert isinstance(result, RecordProblem)
    assert result.orderid is None
    assert "orderid" in result.reason


@pytest.mark.parametrize("raw", [[], "x", None, 7, [V4]], ids=repr)
def test_non_objects_are_problems_with_the_usual_reason(raw: Any) -> None:
    assert parse_fast(raw) is None
    result = parse_record(raw)
    assert isinstance(result, RecordProblem)
    assert result.reason.startswith("record is not a JSON object")


def test_money_and_totals_are_the_same_decimals() -> None:
    raw = copy.deepcopy(V4)
    raw["line_items"][0].update(unit_price=1e16, quantity=3, groupon_cost="0.10", discount=2)
    del raw["amount"]["total"]
    parsed = parse_fast(raw)
    assert parsed is not None
    assert parsed.lines[0].unit_price == Decimal("1E+16")
    assert parsed.total == Decimal("3E+16")  # without amount.total: sum of price * quantity
    assert str(parsed.lines[0].groupon_cost) == "0.10"
    assert parsed == parse_record_tolerant(raw)


def test_record_text_refuses_what_json_would_not_read_back() -> None:
    raw = copy.deepcopy(V4)
    assert json.loads(record_text(raw) or "null") == raw
    raw["intrinsic_value"] = math.nan  # msgspec would write null: the text must not change it
    assert record_text(raw) is None
    raw["intrinsic_value"] = (1, 2)  # not a JSON value: would read back as a list
    assert record_text(raw) is None
    raw["intrinsic_value"] = "\ud800"
    assert record_text(raw) is None


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(_mutated(), _json))
def test_record_text_of_a_plain_record_reads_back_equal_without_the_check(value: Any) -> None:
    # A page msgspec decoded (OrdersPage.plain_json) skips the read-back check: for anything
    # msgspec decodes, the unchecked text must be the checked one.
    try:
        wire = json.dumps(value)
    except ValueError:
        return
    try:
        decoded = msgspec.json.decode(wire.encode())
    except msgspec.DecodeError:
        return  # NaN, infinities, lone surrogates...: the page is not plain, the check stays
    text = record_text(decoded, plain=True)
    assert text is not None
    assert json.loads(text) == decoded
    assert text == record_text(decoded)
