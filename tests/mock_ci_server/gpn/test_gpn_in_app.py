"""The GPN blueprint inside the full simulator (``create_app``): routes, SimState wiring, reset."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from mock_ci_server.app import create_app
from mock_ci_server.state import SimState

NOW = datetime(2024, 7, 1, 9, 0, 0, tzinfo=UTC)


def test_gpn_through_create_app() -> None:
    state = SimState()
    state.clock.set(NOW)
    client = create_app(state).test_client()
    assert client.post("/_sim/gpn/clients", json={"client_id": "a1", "token": "tk-a1"}).status_code
    r = client.post("/_sim/gpn/seed", json={"client_id": "a1", "n": 80, "seed": 3})
    assert r.status_code == 201
    stamp = NOW.strftime("%Y-%m-%dT%H:%M:%S")
    headers = {
        "x-auth-version": "SEC2",
        "x-auth-timestamp": stamp,
        "x-auth-token": hashlib.sha256(("tk-a1" + stamp).encode()).hexdigest(),
    }
    query = {"clientId": "a1", "startDate": "2024-06-01T09:00:00", "endDate": "2024-07-01T09:00:00"}
    r = client.get("/v3/transactions", query_string=query, headers=headers)
    assert r.status_code == 200
    body = r.get_json()
    assert body["total"] == len(body["transactions"]) > 0
    expected = sum(1 for x in state.gpn.records("a1") if x.transaction_status != "INVOICED")
    assert body["total"] == expected
    r = client.get("/v3/transactions", query_string=query, headers={**headers, "x-auth-token": "0"})
    assert r.status_code == 401
    assert r.content_type == "text/html;charset=utf-8"
    state.reset()
    assert state.gpn.token_for("a1") is None
