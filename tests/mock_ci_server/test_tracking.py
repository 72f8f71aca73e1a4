"""tracking_notification and lineitem_tracking_notification: every rule, all-or-nothing."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from mock_ci_server.state import SimState

from .conftest import OTHER, OTHER_TOKEN, SUPPLIER, TOKEN, track

LINEITEM = "/api/v4/lineitem_tracking_notification"


def _one(sim_state: SimState, quantity: int = 1, **kw: Any) -> int:
    ids: list[int] = sim_state.seed(
        SUPPLIER, orders=1, seed=kw.pop("seed", 1), quantity=(quantity, quantity), **kw
    )["ci_lineitemids"]
    return ids[0]


def _line(sim_state: SimState, line_id: int) -> Any:
    line = sim_state.line(line_id)
    assert line is not None
    return line


def test_full_shipment_by_ci_lineitem_id(sim_state: SimState, api: FlaskClient) -> None:
    line_id = _one(sim_state, quantity=2)
    out = track(api, [{"carrier": "UPS", "ci_lineitem_id": line_id, "tracking": "1Z9"}])
    assert out == {"success": True}
    line = _line(sim_state, line_id)
    assert line.status == "shipped"
    assert line.shipped_quantity == 2  # missing quantity = all that is open
    assert [(t.tracking, t.carrier, t.quantity) for t in line.tracking] == [("1Z9", "UPS", 2)]
    assert line.deadline is None


def test_v2_path_and_string_id(sim_state: SimState, api: FlaskClient) -> None:
    line_id = _one(sim_state)
    items = [{"carrier": "usps", "ci_lineitem_id": str(line_id), "tracking": "94001"}]
    assert track(api, items, "/api/v2/tracking_notification") == {"success": True}
    assert _line(sim_state, line_id).calls[-1]["call"] == "v2/tracking_notification"


def test_partial_then_rest_by_fulfillment_id(sim_state: SimState, api: FlaskClient) -> None:
    line_id = _one(sim_state, quantity=3)
    fid = _line(sim_state, line_id).fulfillment_lineitem_id
    item = {"quantity": 1, "carrier": "fedex", "fulfillment_lineitem_id": fid, "tracking": "A1"}
    assert track(api, [item], LINEITEM) == {"success": True}
    line = _line(sim_state, line_id)
    assert (line.status, line.shipped_quantity) == ("partially_shipped", 1)
    rest = {"carrier": "fedex", "fulfillment_lineitem_id": fid, "tracking": "A2"}
    assert track(api, [rest], LINEITEM) == {"success": True}
    assert (line.status, line.shipped_quantity) == ("shipped", 3)


def test_grouponnode_style_duplicate_element_is_noop(sim_state: SimState, api: FlaskClient) -> None:
    line_id = _one(sim_state)
    fid = _line(sim_state, line_id).fulfillment_lineitem_id
    items = [
        {"carrier": "ups", "fulfillment_lineitem_id": fid, "tracking": "ZZ1"},
        {"quantity": 1, "carrier": "ups", "fulfillment_lineitem_id": fid, "tracking": "ZZ1"},
    ]
    assert track(api, items, LINEITEM) == {"success": True}
    assert len(_line(sim_state, line_id).tracking) == 1
    # Sending the same again later is harmless too.
    assert track(api, items, LINEITEM) == {"success": True}
    assert len(_line(sim_state, line_id).tracking) == 1


def _refused(out: dict[str, Any], *fragments: str) -> None:
    assert out["success"] is False
    for fragment in fragments:
        assert fragment in out["reason"], out["reason"]


def test_unapproved_carrier_refused_case_insensitive_ok(
    sim_state: SimState, api: FlaskClient
) -> None:
    line_id = _one(sim_state)
    out = track(api, [{"carrier": "DPDUK", "ci_lineitem_id": line_id, "tracking": "X"}])
    _refused(out, "tracking_info[0]", str(line_id), "'DPDUK'", "region US")
    assert track(api, [{"carrier": "UsPs", "ci_lineitem_id": line_id, "tracking": "X"}]) == {
        "success": True
    }


def test_it_region_accepts_glsit_and_uk_codes(sim_state: SimState, api: FlaskClient) -> None:
    ids = sim_state.seed(OTHER, orders=2, seed=1)["ci_lineitemids"]
    items = [
        {"carrier": "glsit", "ci_lineitem_id": ids[0], "tracking": "G1"},
        {"carrier": "BRT", "ci_lineitem_id": ids[1], "tracking": "G2"},
    ]
    _refused(track(api, items, supplier=OTHER, token=OTHER_TOKEN), "tracking_info[1]", "'BRT'")
    items[1]["carrier"] = "bti"
    assert track(api, items, supplier=OTHER, token=OTHER_TOKEN) == {"success": True}


@pytest.mark.parametrize("quantity", [0, 3, -1])
def test_quantity_bounds(sim_state: SimState, api: FlaskClient, quantity: int) -> None:
    line_id = _one(sim_state, quantity=2)
    out = track(
        api, [{"carrier": "ups", "ci_lineitem_id": line_id, "tracking": "Q", "quantity": quantity}]
    )
    _refused(out, "tracking_info[0]")
    assert _line(sim_state, line_id).shipped_quantity == 0


def test_all_or_nothing(sim_state: SimState, api: FlaskClient) -> None:
    ids = sim_state.seed(SUPPLIER, orders=2, seed=1)["ci_lineitemids"]
    items = [
        {"carrier": "ups", "ci_lineitem_id": ids[0], "tracking": "OK1"},
        {"carrier": "nope", "ci_lineitem_id": ids[1], "tracking": "BAD"},
    ]
    _refused(track(api, items), "tracking_info[1]", str(ids[1]))
    assert _line(sim_state, ids[0]).tracking == []
    assert _line(sim_state, ids[0]).status == "open"


def test_cancelled_line_refused(sim_state: SimState, api: FlaskClient) -> None:
    line_id = _one(sim_state)
    sim_state.cancel_lines(SUPPLIER, [line_id])
    out = track(api, [{"carrier": "ups", "ci_lineitem_id": line_id, "tracking": "C"}])
    _refused(out, "cancelled")


def test_tracking_cannot_be_edited(sim_state: SimState, api: FlaskClient) -> None:
    line_id = _one(sim_state, quantity=2)
    first = {"carrier": "ups", "ci_lineitem_id": line_id, "tracking": "E1", "quantity": 1}
    assert track(api, [first]) == {"success": True}
    assert track(api, [first]) == {"success": True}  # same pair, same quantity: no-op
    _refused(track(api, [{**first, "quantity": 2}]), "cannot be edited", "quantity 1")
    assert track(api, [{**first, "tracking": "E2"}]) == {"success": True}
    _refused(track(api, [{**first, "tracking": "E3"}]), "fully shipped")
    assert _line(sim_state, line_id).shipped_quantity == 2


def test_shared_tracking_needs_identical_addresses(sim_state: SimState, api: FlaskClient) -> None:
    def record(line_id: int, orderid: str, address2: str) -> dict[str, Any]:
        return {
            "orderid": orderid,
            "date": "03/04/2024 09:15AM UTC",
            "line_items": [
                {"ci_lineitemid": line_id, "quantity": 1, "unit_price": 10, "sku": "S"}
            ],
            "customer": {
                "name": "Alex Sample", "address1": "1 Main St", "address2": address2,
                "city": "Springfield", "state": "IL", "zip": "62701", "country": "US",
            },
        }  # fmt: skip

    sim_state.seed_records(
        SUPPLIER,
        [
            record(700000001, "A1", ""),
            record(700000002, "A2", ""),
            record(700000003, "A3", "apt 4"),
        ],
    )
    same = [
        {"carrier": "ups", "ci_lineitem_id": 700000001, "tracking": "SHARED"},
        {"carrier": "ups", "ci_lineitem_id": 700000002, "tracking": "SHARED"},
    ]
    assert track(api, same) == {"success": True}
    out = track(api, [{"carrier": "ups", "ci_lineitem_id": 700000003, "tracking": "SHARED"}])
    _refused(out, "different ship-to address", "A1, A2")


def test_at_most_six_tracking_numbers_per_order(sim_state: SimState, api: FlaskClient) -> None:
    ids = sim_state.seed(SUPPLIER, orders=1, seed=1, lines_per_order=(7, 7))["ci_lineitemids"]
    items = [
        {"carrier": "ups", "ci_lineitem_id": line_id, "tracking": f"T{i}"}
        for i, line_id in enumerate(ids)
    ]
    _refused(track(api, items), "tracking_info[6]", "6 tracking numbers")
    assert track(api, items[:6]) == {"success": True}
    # The 7th line can still ride on one of the six numbers.
    assert track(api, [{**items[6], "tracking": "T0"}]) == {"success": True}


def test_unknown_and_foreign_lines(sim_state: SimState, api: FlaskClient) -> None:
    theirs = sim_state.seed(OTHER, orders=1, seed=1)["ci_lineitemids"][0]
    _refused(
        track(api, [{"carrier": "ups", "ci_lineitem_id": theirs, "tracking": "F"}]),
        "tracking_info[0]",
        str(theirs),
        "unknown",
    )
    _refused(
        track(api, [{"carrier": "ups", "fulfillment_lineitem_id": "0", "tracking": "F"}], LINEITEM),
        "fulfillment_lineitem_id 0",
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("not json", "tracking_info is not valid JSON"),
        ("[]", "non-empty JSON array"),
        ("[1]", "tracking_info[0]: must be a JSON object"),
        ('[{"carrier": "ups", "tracking": "x"}]', "tracking_info[0].ci_lineitem_id"),
        ('[{"carrier": "ups", "ci_lineitem_id": 1, "tracking": "x", "foo": 1}]', "foo"),
        ('[{"carrier": "ups", "ci_lineitem_id": 1, "tracking": "x", "quantity": "2"}]', "quantity"),
        ('[{"carrier": "ups", "ci_lineitem_id": "abc", "tracking": "x"}]', "'abc'"),
    ],
)
def test_malformed_tracking_info(api: FlaskClient, value: str, fragment: str) -> None:
    from .conftest import post_form

    out = post_form(api, "/api/v4/tracking_notification", tracking_info=value)
    _refused(out, fragment)


def test_lineitem_endpoint_is_v4_only(api: FlaskClient) -> None:
    out = track(api, [{"carrier": "ups", "fulfillment_lineitem_id": "1", "tracking": "x"}],
                "/api/v2/lineitem_tracking_notification")  # fmt: skip
    _refused(out, "Unknown endpoint")
    assert TOKEN not in out["reason"]
