"""The request log: every API call with masked params, status, excerpt, latency; bounded.

An entry is recorded once the answer has been sent, so the Flask test-client calls here read
the body (``get_data()``) as a real HTTP server does."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests
from flask.testing import FlaskClient

from mock_ci_server.app import create_app
from mock_ci_server.requestlog import MASK, RequestLog, RequestRecord
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.state import SimState
from tests.mock_ci_server.conftest import NOW, SUPPLIER, TOKEN


def test_get_orders_is_logged_with_the_token_masked(sim_state: SimState, api: FlaskClient) -> None:
    sim_state.seed(SUPPLIER, orders=2, seed=1)
    api.get("/api/v4/get_orders", query_string={"supplier_id": SUPPLIER, "token": TOKEN}).get_data()
    [entry] = sim_state.request_log()
    assert entry["method"] == "GET"
    assert entry["path"] == "/api/v4/get_orders"
    assert entry["params"] == {"supplier_id": SUPPLIER, "token": MASK}
    assert entry["supplier_id"] == SUPPLIER
    assert entry["status"] == 200
    assert entry["success"] is True
    assert entry["excerpt"].startswith('{"meta": {"no_of_pages": 1')
    assert entry["excerpt"].endswith("…")
    assert entry["latency_ms"] >= 0
    assert entry["sim_now"] == NOW.isoformat()
    assert TOKEN not in json.dumps(sim_state.request_log())


def test_form_body_refusal_and_wrong_token_are_logged(
    sim_state: SimState, api: FlaskClient
) -> None:
    api.post(
        "/api/v4/mark_exported",
        data={"supplier_id": SUPPLIER, "token": "wrong-token-value", "ci_lineitem_ids": "[1]"},
    ).get_data()
    [entry] = sim_state.request_log()
    assert entry["params"]["ci_lineitem_ids"] == "[1]"
    assert entry["params"]["token"] == MASK
    assert entry["success"] is False
    assert "wrong-token-value" not in json.dumps(entry)


def test_control_plane_is_not_logged_and_filters_work(
    sim_state: SimState, api: FlaskClient
) -> None:
    api.get("/_sim/state")
    api.get("/api/v4/get_orders", query_string={"supplier_id": SUPPLIER, "token": TOKEN}).get_data()
    api.get("/api/v9/nothing").get_data()
    log = sim_state.request_log()
    assert [e["path"] for e in log] == ["/api/v9/nothing", "/api/v4/get_orders"]
    newest = log[0]["id"]
    assert sim_state.request_log(after_id=newest) == []
    assert [e["path"] for e in sim_state.request_log(path_contains="get_orders")] == [
        "/api/v4/get_orders"
    ]
    assert [e["path"] for e in sim_state.request_log(supplier_id=SUPPLIER)] == [
        "/api/v4/get_orders"
    ]
    answer = api.get("/_sim/requests", query_string={"limit": 1}).get_json()
    assert [e["path"] for e in answer["requests"]] == ["/api/v9/nothing"]
    api.post("/_sim/requests/clear")
    assert sim_state.request_log() == []


def test_fault_answers_are_logged_as_the_client_saw_them(
    sim_state: SimState, api: FlaskClient
) -> None:
    api.post("/_sim/faults", json=[{"path": "/api/*/get_orders", "status": 503, "count": 1}])
    api.get("/api/v4/get_orders", query_string={"supplier_id": SUPPLIER, "token": TOKEN}).get_data()
    [entry] = sim_state.request_log()
    assert entry["status"] == 503
    assert entry["fault"] == "status"
    assert entry["params"]["token"] == MASK  # from the query string: the app never ran


def test_log_is_bounded_and_reset_clears_it() -> None:
    state = SimState(request_log_size=3)
    state.clock.set(NOW)
    state.add_account(SUPPLIER, TOKEN)
    client = create_app(state).test_client()
    for _ in range(5):
        query = {"supplier_id": SUPPLIER, "token": TOKEN}
        client.get("/api/v4/get_orders", query_string=query).get_data()
    ids = [e["id"] for e in state.request_log()]
    assert ids == [5, 4, 3]
    state.reset()
    assert state.request_log() == []


def test_listener_errors_do_not_break_recording() -> None:
    log = RequestLog(capacity=2)
    seen: list[int] = []

    def broken(_: RequestRecord) -> None:
        raise RuntimeError("printer gone")

    log.add_listener(broken)
    log.add_listener(lambda r: seen.append(r.id))
    now = datetime(2024, 1, 1, tzinfo=UTC)
    record = RequestRecord("GET", "/api/v4/get_orders", {"token": "s3cret"}, 200, "", 1.0, now, now)
    stored = log.record(record)
    assert stored.params == {"token": MASK}
    assert seen == [1]
    with pytest.raises(ValueError, match="capacity"):
        RequestLog(capacity=-1)


def test_over_a_real_socket_with_multipart(sim_state: SimState) -> None:
    server = serve_in_thread(create_app(sim_state))
    try:
        requests.post(
            f"{server.url}/api/v4/mark_exported",
            files={"ci_lineitem_ids": (None, "[]")},
            data={"supplier_id": SUPPLIER, "token": TOKEN},
            timeout=10,
        )
    finally:
        server.stop()
    [entry] = sim_state.request_log()
    assert entry["params"] == {"supplier_id": SUPPLIER, "token": MASK, "ci_lineitem_ids": "[]"}
    assert entry["status"] == 200
