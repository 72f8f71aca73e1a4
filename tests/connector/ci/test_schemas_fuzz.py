"""parse_record never raises, whatever JSON-like value it is given."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.ci.schemas import ParsedRecord, RecordProblem, parse_record

EXAMPLE = json.loads(
    (
        Path(__file__).parents[2] / "fixtures" / "ci-examples" / "get_orders_v4_page2_of_2.json"
    ).read_text("utf-8")
)["data"][0]

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["", "0", "-1", "1.5", "03/04/2024 09:15AM UTC", "\ud800", "NaN", "1e999"])
)
json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    ["orderid", "date", "line_items", "customer", "amount", "shipping", "parent_orderid", "x"]
)
record_like = st.dictionaries(_keys, json_values, max_size=8)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


EXAMPLE_PATHS = _paths(EXAMPLE)


def _assert_result(result: object) -> None:
    assert isinstance(result, ParsedRecord | RecordProblem)
    if isinstance(result, RecordProblem):
        assert result.reason
        assert len(result.reason) <= 1000
        assert all(isinstance(i, int) and i > 0 for i in result.ci_lineitemids)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(json_values)
def test_any_json_value_never_raises(value: Any) -> None:
    _assert_result(parse_record(value))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(record_like)
def test_record_shaped_dicts_never_raise(value: dict[str, Any]) -> None:
    _assert_result(parse_record(value))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(EXAMPLE_PATHS), json_values), min_size=1, max_size=3),
    st.booleans(),
)
def test_mutated_example_never_raises(
    mutations: list[tuple[tuple[Any, ...], Any]], delete: bool
) -> None:
    raw = copy.deepcopy(EXAMPLE)
    for path, value in mutations:
        node: Any = raw
        try:
            for key in path[:-1]:
                node = node[key]
            if delete and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced a parent
    _assert_result(parse_record(raw))
