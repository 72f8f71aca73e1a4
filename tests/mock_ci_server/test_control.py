"""The /_sim/ control plane: POST-only changes, validation with reasons, faults round trip."""

from __future__ import annotations

from datetime import datetime

import pytest
from flask.testing import FlaskClient

from mock_ci_server.businessdays import due_at
from mock_ci_server.state import SimState

from .conftest import SUPPLIER, TOKEN, get_orders

CHANGE_ROUTES = [
    "/_sim/reset",
    "/_sim/seed",
    "/_sim/cancel",
    f"/_sim/accounts/{SUPPLIER}/suspend",
    f"/_sim/accounts/{SUPPLIER}/reinstate",
]


@pytest.mark.parametrize("path", CHANGE_ROUTES)
def test_change_routes_reject_get(api: FlaskClient, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 405
    assert response.json is not None
    assert "changes use POST" in response.json["reason"]


def test_health_and_clock(api: FlaskClient) -> None:
    health = api.get("/_sim/health").json
    assert health == {"status": "ok", "now": "2024-03-04T12:00:00+00:00"}
    moved = api.post("/_sim/clock", json={"advance_days": 1}).json
    assert moved is not None
    assert moved["now"] == "2024-03-05T12:00:00+00:00"
    assert api.get("/_sim/clock").json == {"now": "2024-03-05T12:00:00+00:00", "frozen": True}


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({}, "exactly one"),
        ({"set": "yesterday"}, "set"),
        ({"advance_days": 1, "advance_seconds": 1}, "exactly one"),
        ({"jump": 1}, "jump"),
    ],
)
def test_bad_clock_bodies(api: FlaskClient, payload: dict[str, object], fragment: str) -> None:
    response = api.post("/_sim/clock", json=payload)
    assert response.status_code == 400
    assert response.json is not None
    assert fragment in response.json["reason"]


def test_accounts_create_update_and_refuse(api: FlaskClient) -> None:
    ok = api.post(
        "/_sim/accounts",
        json={"supplier_id": "70001", "token": "t" * 31, "region": "uk", "merchant_level": 3},
    )
    assert ok.status_code == 200
    assert ok.json is not None
    assert ok.json["account"]["region"] == "UK"
    assert "RYM" in ok.json["account"]["approved_carriers"]
    assert "t" * 31 not in ok.get_data(as_text=True)
    bad_region = api.post("/_sim/accounts", json={"supplier_id": "1", "token": "x", "region": "XX"})
    assert bad_region.status_code == 400
    assert bad_region.json is not None
    assert "unknown region 'XX'" in bad_region.json["reason"]
    bad_level = api.post(
        "/_sim/accounts", json={"supplier_id": "1", "token": "x", "merchant_level": 9}
    )
    assert bad_level.status_code == 400
    assert bad_level.json is not None
    assert "merchant_level" in bad_level.json["reason"]
    custom = api.post(
        "/_sim/accounts",
        json={"supplier_id": "70002", "token": "x", "approved_carriers": ["MYCARRIER"]},
    ).json
    assert custom is not None
    assert custom["account"]["approved_carriers"] == ["MYCARRIER"]
    names = [a["supplier_id"] for a in api.get("/_sim/accounts").json["accounts"]]  # type: ignore[index]
    assert {"70001", "70002", SUPPLIER} <= set(names)
    assert api.post("/_sim/accounts/nobody/suspend").status_code == 404


def test_seed_generator_and_errors(api: FlaskClient) -> None:
    out = api.post(
        "/_sim/seed",
        json={"supplier_id": SUPPLIER, "orders": 4, "seed": 3, "lines_per_order": [2, 2]},
    ).json
    assert out is not None
    assert (out["orders_created"], out["lines_created"]) == (4, 8)
    assert len(out["ci_lineitemids"]) == 8
    assert get_orders(api)["meta"]["no_of_items"] == 8
    for payload, fragment in [
        ({"supplier_id": SUPPLIER, "orders": 1, "lines_per_order": [3, 1]}, "lines_per_order"),
        ({"supplier_id": SUPPLIER, "orders": 1, "countries": ["ZZ"]}, "countries"),
        ({"supplier_id": SUPPLIER}, "orders"),
        ({"supplier_id": "nobody", "orders": 1}, "unknown supplier_id"),
        ({"supplier_id": SUPPLIER, "orders": 1, "colour": "red"}, "colour"),
    ]:
        response = api.post("/_sim/seed", json=payload)
        assert response.status_code in (400, 404), payload
        assert response.json is not None
        assert fragment in response.json["reason"], response.json


def test_seed_is_deterministic(sim_state: SimState) -> None:
    first = SimState()
    second = SimState()
    for state in (first, second):
        state.clock.set(sim_state.clock.now())
        state.add_account(SUPPLIER, TOKEN)
        state.seed(SUPPLIER, orders=20, seed=42, lines_per_order=(1, 3), split_share=0.3)
    page_a = first.get_orders(SUPPLIER, TOKEN).records
    page_b = second.get_orders(SUPPLIER, TOKEN).records
    assert page_a == page_b
    third = SimState()
    third.clock.set(sim_state.clock.now())
    third.add_account(SUPPLIER, TOKEN)
    third.seed(SUPPLIER, orders=20, seed=43, lines_per_order=(1, 3))
    assert third.get_orders(SUPPLIER, TOKEN).records != page_a


def test_seed_raw_records_validated(api: FlaskClient) -> None:
    good = {
        "orderid": "R1",
        "date": "03/04/2024 09:15AM UTC",
        "line_items": [{"ci_lineitemid": 555000001, "quantity": 2, "unit_price": 9.5}],
        "customer": {"name": "A"},
    }
    ok = api.post("/_sim/seed", json={"supplier_id": SUPPLIER, "records": [good]})
    assert ok.status_code == 200
    data = get_orders(api)["data"]
    assert data[0]["orderid"] == "R1"
    assert data[0]["line_items"][0]["status"] == "open"
    dup = api.post("/_sim/seed", json={"supplier_id": SUPPLIER, "records": [good]})
    assert dup.status_code == 400
    assert dup.json is not None
    assert "records[0].line_items[0].ci_lineitemid: 555000001 already exists" in dup.json["reason"]
    bad_date = {**good, "date": "2024-03-04", "line_items": [{"ci_lineitemid": 2, "quantity": 1}]}
    response = api.post("/_sim/seed", json={"supplier_id": SUPPLIER, "records": [bad_date]})
    assert response.json is not None
    assert "records[0].date" in response.json["reason"]


def test_state_dump_and_filter(sim_state: SimState, api: FlaskClient) -> None:
    sim_state.seed(SUPPLIER, orders=2, seed=1)
    sim_state.seed("90002", orders=1, seed=1)
    everything = api.get("/_sim/state").json
    assert everything is not None
    assert len(everything["lines"]) == 3
    mine = api.get(f"/_sim/state?supplier_id={SUPPLIER}&records=1").json
    assert mine is not None
    assert [ln["supplier_id"] for ln in mine["lines"]] == [SUPPLIER, SUPPLIER]
    line = mine["lines"][0]
    assert line["status"] == "open"
    assert line["exported"] is False
    assert line["record"]["line_items"][0]["ci_lineitemid"] == line["ci_lineitemid"]
    ordered = datetime.fromisoformat(line["order_date"])
    # The deadline rule of issue 12 (23:59 local, 7th business day after the start day).
    assert line["auto_cancel_at"] == due_at(ordered, 7, "US").isoformat()
    assert api.get("/_sim/state?supplier_id=nobody").status_code == 404


def test_cancel_by_customer_service(sim_state: SimState, api: FlaskClient) -> None:
    ids = sim_state.seed(SUPPLIER, orders=2, seed=1)["ci_lineitemids"]
    out = api.post("/_sim/cancel", json={"supplier_id": SUPPLIER, "ci_lineitemids": [ids[0]]}).json
    assert out is not None
    assert out["cancelled"] == [ids[0]]
    assert get_orders(api)["meta"]["no_of_items"] == 1
    unknown = api.post("/_sim/cancel", json={"supplier_id": SUPPLIER, "ci_lineitemids": [1]})
    assert unknown.status_code == 400


def test_reset_wipes_everything(sim_state: SimState, api: FlaskClient) -> None:
    sim_state.seed(SUPPLIER, orders=2, seed=1)
    api.post("/_sim/faults", json=[{"path": "/api/*", "status": 503}])
    assert api.post("/_sim/reset").status_code == 200
    assert api.get("/_sim/accounts").json == {"accounts": []}
    assert api.get("/_sim/faults").json == {"rules": []}
    assert api.get("/_sim/state").json["lines"] == []  # type: ignore[index]


def test_faults_round_trip(api: FlaskClient) -> None:
    rules = [{"method": "GET", "path": "/api/*/get_orders", "status": 503, "count": 1}]
    set_out = api.post("/_sim/faults", json={"rules": rules})
    assert set_out.status_code == 200
    described = api.get("/_sim/faults").json
    assert described is not None
    assert described["rules"][0]["path"] == "/api/*/get_orders"
    faulted = api.get("/api/v4/get_orders", query_string={"supplier_id": SUPPLIER, "token": TOKEN})
    assert faulted.status_code == 503
    # count 1: the next call goes through.
    assert get_orders(api)["success"] is True
    bad = api.post("/_sim/faults", json=[{"status": "soon"}])
    assert bad.status_code == 400
    assert bad.json is not None
    assert "status" in bad.json["reason"]
    assert api.post("/_sim/faults", json={"rules": "x"}).status_code == 400


def test_openapi_route_answers_a_document(api: FlaskClient) -> None:
    doc = api.get("/_sim/openapi.json")
    assert doc.status_code == 200
    assert doc.json is not None
    assert doc.json["openapi"].startswith("3.")


def test_non_json_body_refused(api: FlaskClient) -> None:
    response = api.post("/_sim/seed", data="orders=3")
    assert response.status_code == 400
    assert response.json is not None
    assert "JSON" in response.json["reason"]


def test_unmapped_share_adds_unlisted_product_without_disturbing_other_seeds(
    sim_state: SimState,
) -> None:
    def skus(unmapped_share: float) -> list[str]:
        state = SimState()
        state.clock.set(sim_state.clock.now())
        state.add_account(SUPPLIER, TOKEN)
        state.seed(SUPPLIER, orders=60, seed=5, unmapped_share=unmapped_share)
        page = state.get_orders(SUPPLIER, TOKEN).records
        return [record["line_items"][0]["bom_sku"] for record, _status in page]

    plain = skus(0.0)
    assert "DEMO-9999" not in plain
    assert plain == skus(0.0)  # the knob draws nothing when it is off
    mixed = skus(0.3)
    assert 5 <= mixed.count("DEMO-9999") <= 35
    assert set(mixed) - {"DEMO-9999"} <= set(plain) | {""}


def test_fault_seed_makes_probability_faults_repeatable(api: FlaskClient) -> None:
    rules = [{"method": "GET", "path": "/api/*/get_orders", "status": 503, "probability": 0.5}]

    def pattern(seed: int) -> list[int]:
        assert api.post("/_sim/faults", json={"seed": seed, "rules": rules}).status_code == 200
        query = {"supplier_id": SUPPLIER, "token": TOKEN}
        return [api.get("/api/v4/get_orders", query_string=query).status_code for _ in range(24)]

    first = pattern(11)
    assert first == pattern(11)
    assert {200, 503} == set(first)
    assert pattern(12) != first
    bad = api.post("/_sim/faults", json={"seed": "x", "rules": rules})
    assert bad.status_code == 400
