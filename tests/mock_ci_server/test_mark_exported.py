"""mark_exported: encodings, all-or-nothing, unknown ids, re-marking, bad JSON."""

from __future__ import annotations

from flask.testing import FlaskClient

from mock_ci_server.state import SimState

from .conftest import OTHER, SUPPLIER, TOKEN, body, get_orders, mark


def _listed(api: FlaskClient) -> list[int]:
    return [r["line_items"][0]["ci_lineitemid"] for r in get_orders(api)["data"]]


def test_urlencoded(sim_state: SimState, api: FlaskClient) -> None:
    ids = sim_state.seed(SUPPLIER, orders=3, seed=1)["ci_lineitemids"]
    data = f"supplier_id={SUPPLIER}&token={TOKEN}&ci_lineitem_ids=%5B{ids[0]}%2C{ids[1]}%5D"
    response = api.post(
        "/api/v4/mark_exported", data=data, content_type="application/x-www-form-urlencoded"
    )
    assert response.headers["Content-Type"] == "text/json"
    assert body(response) == {"success": True}
    assert _listed(api) == [ids[2]]


def test_raw_brackets_urlencoded(sim_state: SimState, api: FlaskClient) -> None:
    ids = sim_state.seed(SUPPLIER, orders=2, seed=1)["ci_lineitemids"]
    data = f"supplier_id={SUPPLIER}&token={TOKEN}&ci_lineitem_ids=[{ids[0]},{ids[1]}]"
    response = api.post(
        "/api/v2/mark_exported", data=data, content_type="application/x-www-form-urlencoded"
    )
    assert body(response) == {"success": True}
    assert _listed(api) == []


def test_multipart(sim_state: SimState, api: FlaskClient) -> None:
    ids = sim_state.seed(SUPPLIER, orders=2, seed=1)["ci_lineitemids"]
    response = api.post(
        "/api/v4/mark_exported",
        data={"supplier_id": SUPPLIER, "token": TOKEN, "ci_lineitem_ids": f"[{ids[1]}]"},
        content_type="multipart/form-data",
    )
    assert body(response) == {"success": True}
    assert _listed(api) == [ids[0]]
    calls = sim_state.get_state(SUPPLIER)["lines"][1]["calls"]
    assert [c["call"] for c in calls] == ["v4/mark_exported"]


def test_remarking_is_harmless(sim_state: SimState, api: FlaskClient) -> None:
    ids = sim_state.seed(SUPPLIER, orders=1, seed=1)["ci_lineitemids"]
    assert mark(api, ids) == {"success": True}
    assert mark(api, ids + ids) == {"success": True}
    line = sim_state.line(ids[0])
    assert line is not None
    assert line.exported is True
    assert [c["changed"] for c in line.calls] == [True, False]


def test_unknown_id_refuses_whole_call(sim_state: SimState, api: FlaskClient) -> None:
    ids = sim_state.seed(SUPPLIER, orders=2, seed=1)["ci_lineitemids"]
    out = mark(api, [ids[0], 999999999])
    assert out["success"] is False
    assert "999999999" in out["reason"]
    assert _listed(api) == ids  # nothing applied


def test_other_suppliers_ids_are_unknown(sim_state: SimState, api: FlaskClient) -> None:
    theirs = sim_state.seed(OTHER, orders=1, seed=1)["ci_lineitemids"]
    out = mark(api, theirs)
    assert out["success"] is False
    assert str(theirs[0]) in out["reason"]
    line = sim_state.line(theirs[0])
    assert line is not None
    assert line.exported is False


def test_digit_strings_accepted(sim_state: SimState, api: FlaskClient) -> None:
    ids = sim_state.seed(SUPPLIER, orders=1, seed=1)["ci_lineitemids"]
    assert mark(api, [str(ids[0])]) == {"success": True}  # type: ignore[list-item]


def _post(api: FlaskClient, value: str) -> dict[str, object]:
    form = {"supplier_id": SUPPLIER, "token": TOKEN, "ci_lineitem_ids": value}
    result: dict[str, object] = body(api.post("/api/v4/mark_exported", data=form))
    return result


def test_bad_json_and_bad_values_named(api: FlaskClient) -> None:
    bad = _post(api, "[1,2")
    assert bad["success"] is False
    assert "ci_lineitem_ids is not valid JSON" in str(bad["reason"])
    assert "'[1,2'" in str(bad["reason"])
    # Issue 12 decision: `[]` is a harmless no-op (was refused); see test_unknown_cases.py.
    assert _post(api, "[]") == {"success": True}
    assert "must be a JSON array" in str(_post(api, '{"a": 1}')["reason"])
    element = _post(api, '[1, "x", 3]')
    assert "ci_lineitem_ids[1]" in str(element["reason"])
    assert "'x'" in str(element["reason"])
    assert "ci_lineitem_ids[0]" in str(_post(api, "[true]")["reason"])


def test_missing_field_and_wrong_method(api: FlaskClient) -> None:
    out = body(api.post("/api/v4/mark_exported", data={"supplier_id": SUPPLIER, "token": TOKEN}))
    assert out == {"success": False, "reason": "Missing required parameter(s): ci_lineitem_ids"}
    wrong = body(api.get("/api/v4/mark_exported"))
    assert wrong["success"] is False
    assert "use POST" in wrong["reason"]
    v3 = body(api.post("/api/v3/mark_exported", data={"supplier_id": SUPPLIER}))
    assert v3["reason"] == "Unknown endpoint: /api/v3/mark_exported"
