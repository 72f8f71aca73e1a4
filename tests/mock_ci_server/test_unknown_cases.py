"""Issue 12: cases where the real CI behaviour is unknown, decided and documented (see
docs/simulator.md, "Unknown cases"), plus the US `dhl` code the evidence adds."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from mock_ci_server.state import SimState

from .conftest import SUPPLIER, TOKEN, body, track


def _mark(api: FlaskClient, ids: str, token: str = TOKEN) -> Any:
    form = {"supplier_id": SUPPLIER, "token": token, "ci_lineitem_ids": ids}
    return body(api.post("/api/v4/mark_exported", data=form))


def test_empty_mark_exported_is_a_no_op_but_credentials_still_count(
    sim_state: SimState, api: FlaskClient
) -> None:
    ids = sim_state.seed(SUPPLIER, orders=2, seed=1)["ci_lineitemids"]
    assert _mark(api, "[]") == {"success": True}
    assert all(not ln["exported"] for ln in sim_state.get_state(SUPPLIER)["lines"])
    assert len(ids) == 2
    assert _mark(api, "[]", token="wrong")["success"] is False


def test_empty_and_free_text_carriers_are_refused(sim_state: SimState, api: FlaskClient) -> None:
    [line_id] = sim_state.seed(SUPPLIER, orders=1, seed=1)["ci_lineitemids"]
    empty = track(api, [{"carrier": "", "ci_lineitem_id": line_id, "tracking": "1Z1"}])
    assert empty["success"] is False
    assert "tracking_info[0].carrier" in empty["reason"]
    # ShipWorks sends the user's free text for its "Other" carrier (GrouponCarrierTest).
    other = track(api, [{"carrier": "Other Carrier", "ci_lineitem_id": line_id, "tracking": "1"}])
    assert other["success"] is False
    assert "'Other Carrier' is not an approved carrier code for region US" in other["reason"]
    line = sim_state.line(line_id)
    assert line is not None
    assert line.tracking == []


def test_us_accepts_dhl(sim_state: SimState, api: FlaskClient) -> None:
    # ShipWorks' GrouponCarrier sends `dhl` (Endicia DHL since 2019, DHL eCommerce since 2022).
    [line_id] = sim_state.seed(SUPPLIER, orders=1, seed=1)["ci_lineitemids"]
    items = [{"carrier": "dhl", "ci_lineitem_id": line_id, "tracking": "3318810025"}]
    assert track(api, items) == {"success": True}


def test_one_payload_repeating_a_line_with_and_without_quantity(
    sim_state: SimState, api: FlaskClient
) -> None:
    a, b = sim_state.seed(SUPPLIER, orders=2, seed=1, quantity=(2, 2))["ci_lineitemids"]
    # Quantity first, then the same pair without one: the repeat means "that pair as
    # recorded", a no-op; the line keeps 1 of 2 units shipped.
    first = [
        {"carrier": "ups", "ci_lineitem_id": a, "tracking": "T-A", "quantity": 1},
        {"carrier": "ups", "ci_lineitem_id": a, "tracking": "T-A"},
    ]
    assert track(api, first) == {"success": True}
    line_a = sim_state.line(a)
    assert line_a is not None
    assert (line_a.shipped_quantity, len(line_a.tracking)) == (1, 1)
    # Without quantity first (= every open unit), then an explicit other quantity: an edit,
    # so the whole call is refused and nothing is recorded.
    second = [
        {"carrier": "ups", "ci_lineitem_id": b, "tracking": "T-B"},
        {"carrier": "ups", "ci_lineitem_id": b, "tracking": "T-B", "quantity": 1},
    ]
    out = track(api, second)
    assert out["success"] is False
    assert "tracking_info[1]" in out["reason"]
    assert "already recorded with quantity 2" in out["reason"]
    line_b = sim_state.line(b)
    assert line_b is not None
    assert (line_b.shipped_quantity, line_b.tracking) == (0, [])
    assert "'T-B'" in out["reason"]
