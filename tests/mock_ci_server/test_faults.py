"""FaultInjector: rule validation, matching, probability, counts, and each fault kind."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests
from flask import Flask, request
from werkzeug.test import Client

from mock_ci_server.faults import FAULT_HEADER, FaultInjector
from mock_ci_server.serve import serve_in_thread

ORDERS_BODY = json.dumps({"meta": {"no_of_pages": 0}, "data": [], "success": True})


def make_app() -> tuple[Flask, FaultInjector, list[str]]:
    """A tiny stand-in app; ``hits`` records every request that reached it."""
    app = Flask("tiny")
    hits: list[str] = []

    @app.get("/api/<version>/get_orders")
    def get_orders(version: str) -> tuple[str, int, dict[str, str]]:
        hits.append(f"GET {request.path}")
        return ORDERS_BODY, 200, {"Content-Type": "text/json"}

    @app.post("/api/<version>/mark_exported")
    def mark_exported(version: str) -> tuple[str, int, dict[str, str]]:
        hits.append(f"POST {request.path}")
        return '{"success": true}', 200, {"Content-Type": "text/json"}

    @app.get("/_sim/health")
    def health() -> str:
        hits.append("health")
        return "ok"

    injector = FaultInjector(app.wsgi_app, seed=3)
    app.wsgi_app = injector  # type: ignore[method-assign]
    return app, injector, hits


@pytest.fixture
def tiny() -> tuple[Flask, FaultInjector, list[str]]:
    return make_app()


def test_no_rules_passes_through(tiny: tuple[Flask, FaultInjector, list[str]]) -> None:
    app, injector, hits = tiny
    resp = Client(app).get("/api/v4/get_orders")
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == ORDERS_BODY
    assert FAULT_HEADER not in resp.headers
    assert hits == ["GET /api/v4/get_orders"]
    assert injector.describe() == []


def test_status_rule_answers_without_calling_app(
    tiny: tuple[Flask, FaultInjector, list[str]],
) -> None:
    app, injector, hits = tiny
    injector.set_rules(
        [
            {
                "method": "GET",
                "path": "/api/*/get_orders",
                "status": 503,
                "body": "<h1>busy</h1>",
                "retry_after": 2,
            }
        ]
    )
    resp = Client(app).get("/api/v2/get_orders")
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "2"
    assert resp.headers["Content-Type"] == "text/html"
    assert resp.headers[FAULT_HEADER] == "status"
    assert resp.get_data(as_text=True) == "<h1>busy</h1>"
    assert hits == []
    # A different method or path is not matched.
    assert Client(app).post("/api/v2/mark_exported").status_code == 200
    assert injector.describe()[0]["fired"] == 1


def test_default_body_names_the_status(tiny: tuple[Flask, FaultInjector, list[str]]) -> None:
    app, injector, _ = tiny
    injector.set_rules([{"status": 429}])
    resp = Client(app).get("/api/v4/get_orders")
    assert resp.status_code == 429
    assert "429 Too Many Requests" in resp.get_data(as_text=True)


def test_first_match_wins_and_count_expires(
    tiny: tuple[Flask, FaultInjector, list[str]],
) -> None:
    app, injector, hits = tiny
    injector.set_rules(
        [
            {"path": "/api/v4/*", "status": 500, "count": 2},
            {"path": "/api/*", "status": 502},
        ]
    )
    client = Client(app)
    statuses = [client.get("/api/v4/get_orders").status_code for _ in range(4)]
    assert statuses == [500, 500, 502, 502]
    described = injector.describe()
    assert described[0]["fired"] == 2
    assert described[0]["remaining"] == 0
    assert described[1]["fired"] == 2
    assert hits == []


def test_control_paths_are_never_faulted(tiny: tuple[Flask, FaultInjector, list[str]]) -> None:
    app, injector, hits = tiny
    injector.set_rules([{"path": "*", "status": 500}])
    resp = Client(app).get("/_sim/health")
    assert resp.status_code == 200
    assert hits == ["health"]
    assert injector.describe()[0]["fired"] == 0


def test_empty_list_turns_faults_off(tiny: tuple[Flask, FaultInjector, list[str]]) -> None:
    app, injector, _ = tiny
    injector.set_rules([{"status": 500}])
    assert Client(app).get("/api/v4/get_orders").status_code == 500
    injector.set_rules([])
    assert Client(app).get("/api/v4/get_orders").status_code == 200
    injector.set_rules([{"status": 500}])
    injector.reset()
    assert Client(app).get("/api/v4/get_orders").status_code == 200


def _pattern(injector: FaultInjector, app: Flask, n: int) -> list[int]:
    client = Client(app)
    return [client.get("/api/v4/get_orders").status_code for _ in range(n)]


def test_probability_is_seeded_and_deterministic() -> None:
    app1, inj1, _ = make_app()
    app2, inj2, _ = make_app()
    rules: list[dict[str, Any]] = [{"probability": 0.3, "status": 503}]
    inj1.set_rules(rules)
    inj2.set_rules(rules)
    first = _pattern(inj1, app1, 200)
    assert first == _pattern(inj2, app2, 200)
    faulted = first.count(503)
    assert 35 <= faulted <= 85  # ~60 expected for p=0.3
    assert inj1.describe()[0]["fired"] == faulted
    # Re-setting the rules restarts the sequence; another seed gives another sequence.
    inj1.set_rules(rules)
    assert _pattern(inj1, app1, 200) == first
    inj1.set_seed(99)
    inj1.set_rules(rules)
    assert _pattern(inj1, app1, 200) != first
    assert inj1.seed == 99


def test_latency_then_pass_through(tiny: tuple[Flask, FaultInjector, list[str]]) -> None:
    app, injector, hits = tiny
    slept: list[float] = []
    injector.sleep = slept.append
    injector.set_rules([{"path": "/api/*/get_orders", "latency_ms": 1500}])
    resp = Client(app).get("/api/v4/get_orders")
    assert slept == [1.5]
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == ORDERS_BODY
    assert hits == ["GET /api/v4/get_orders"]


def test_latency_with_status(tiny: tuple[Flask, FaultInjector, list[str]]) -> None:
    app, injector, hits = tiny
    slept: list[float] = []
    injector.sleep = slept.append
    injector.set_rules([{"latency_ms": 20, "status": 504}])
    resp = Client(app).get("/api/v4/get_orders")
    assert slept == [0.02]
    assert resp.status_code == 504
    assert hits == []


def test_truncate_cuts_real_body_in_half(tiny: tuple[Flask, FaultInjector, list[str]]) -> None:
    app, injector, hits = tiny
    injector.set_rules([{"truncate": True}])
    resp = Client(app).get("/api/v4/get_orders")
    body = resp.get_data()
    assert body == ORDERS_BODY.encode()[: len(ORDERS_BODY) // 2]
    assert resp.headers["Content-Length"] == str(len(body))
    assert resp.headers["Content-Type"] == "text/json"
    assert resp.headers[FAULT_HEADER] == "truncate"
    assert hits == ["GET /api/v4/get_orders"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_drop_marks_response_and_app_side_effects_happen(
    tiny: tuple[Flask, FaultInjector, list[str]],
) -> None:
    app, injector, hits = tiny
    injector.set_rules([{"method": "POST", "drop": True}])
    resp = Client(app).post("/api/v4/mark_exported")
    assert resp.headers[FAULT_HEADER] == "drop"
    assert hits == ["POST /api/v4/mark_exported"]
    # Content-Length announces more than will ever arrive.
    assert int(resp.headers["Content-Length"]) == len('{"success": true}')


def test_drop_over_a_real_socket_aborts_the_connection() -> None:
    app, injector, hits = make_app()
    injector.set_rules([{"path": "/api/*/get_orders", "drop": True, "count": 1}])
    with serve_in_thread(app) as server:
        with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            requests.get(f"{server.url}/api/v4/get_orders", timeout=5)
        # The server survives and the next request (rule expired) succeeds.
        ok = requests.get(f"{server.url}/api/v4/get_orders", timeout=5)
        assert ok.status_code == 200
        assert ok.text == ORDERS_BODY
    assert len(hits) == 2


def test_drop_with_status_does_not_reach_app_over_socket() -> None:
    app, injector, hits = make_app()
    injector.set_rules([{"drop": True, "status": 200, "body": "x" * 400}])
    with (
        serve_in_thread(app) as server,
        pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)),
    ):
        requests.get(f"{server.url}/api/v4/get_orders", timeout=5)
    assert hits == []


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"status": 99}, "field 'status'"),
        ({"status": "503"}, "field 'status'"),
        ({"probability": 1.5, "status": 500}, "field 'probability'"),
        ({"probability": True, "status": 500}, "field 'probability'"),
        ({"count": 0, "status": 500}, "field 'count'"),
        ({"method": "FETCH", "status": 500}, "field 'method'"),
        ({"path": "api/x", "status": 500}, "field 'path'"),
        ({"latency_ms": -1}, "field 'latency_ms'"),
        ({"drop": "yes"}, "field 'drop'"),
        ({"drop": True, "truncate": True}, "field 'truncate'"),
        ({"body": "x"}, "field 'body'"),
        ({"retry_after": 1.5, "status": 503}, "field 'retry_after'"),
        ({"statuscode": 500}, "unknown field 'statuscode'"),
        ({"method": "GET"}, "does nothing"),
    ],
)
def test_bad_rules_name_index_and_field(rule: dict[str, Any], fragment: str) -> None:
    injector = FaultInjector(make_app()[0].wsgi_app)
    with pytest.raises(ValueError, match="fault rule 1") as info:
        injector.set_rules([{"status": 500}, rule])
    assert fragment in str(info.value)
    assert injector.describe() == []  # nothing half-applied


def test_rules_must_be_a_list_of_objects() -> None:
    injector = FaultInjector(make_app()[0].wsgi_app)
    with pytest.raises(ValueError, match="must be a list"):
        injector.set_rules({"status": 500})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fault rule 0: must be an object"):
        injector.set_rules(["boom"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="seed"):
        injector.set_seed("7")  # type: ignore[arg-type]


def test_describe_shows_normalised_rules() -> None:
    injector = FaultInjector(make_app()[0].wsgi_app)
    described = injector.set_rules([{"method": "get", "status": 503, "count": 3}])
    assert described == [
        {
            "index": 0,
            "method": "GET",
            "path": "*",
            "count": 3,
            "status": 503,
            "content_type": "text/html",
            "fired": 0,
            "remaining": 3,
        }
    ]


def test_count_is_exact_under_concurrency() -> None:
    app, injector, _ = make_app()
    injector.set_rules([{"status": 500, "count": 25}])
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        client = Client(app)
        for _ in range(10):
            code = client.get("/api/v4/get_orders").status_code
            with lock:
                statuses.append(code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(500) == 25
    assert statuses.count(200) == 55
    assert injector.describe()[0]["fired"] == 25


# -- through the simulator's own create_app() -------------------------------------------------

SUPPLIER = "90001"
SIM_TOKEN = "FaultsToken0123456789abcdefghij"


def sim_client() -> tuple[Any, Any]:
    from mock_ci_server.app import create_app
    from mock_ci_server.state import SimState

    state = SimState()
    state.add_account(SUPPLIER, SIM_TOKEN)
    state.seed(SUPPLIER, orders=3, seed=1)
    app = create_app(state)
    return app, app.test_client()


def test_simulator_faults_via_control_plane() -> None:
    app, client = sim_client()
    query = {"supplier_id": SUPPLIER, "token": SIM_TOKEN}
    resp = client.post(
        "/_sim/faults",
        json={"rules": [{"path": "*", "status": 503, "count": 1}]},
    )
    assert resp.status_code == 200
    assert resp.get_json()["rules"][0]["remaining"] == 1
    assert app.extensions["sim_faults"].describe()[0]["status"] == 503
    # The control plane itself is never faulted, even by a catch-all rule.
    assert client.get("/_sim/faults").status_code == 200
    first = client.get("/api/v4/get_orders", query_string=query)
    assert first.status_code == 503
    second = client.get("/api/v4/get_orders", query_string=query)
    assert second.status_code == 200
    assert json.loads(second.get_data())["meta"]["no_of_items"] == 3
    assert client.get("/_sim/faults").get_json()["rules"][0]["fired"] == 1


def test_simulator_rejects_bad_rules_with_the_index_and_field() -> None:
    _, client = sim_client()
    resp = client.post("/_sim/faults", json=[{"status": 500}, {"status": 500, "probability": 2}])
    assert resp.status_code == 400
    reason = resp.get_json()["reason"]
    assert "fault rule 1" in reason
    assert "probability" in reason


def test_simulator_truncate_gives_cut_json() -> None:
    _, client = sim_client()
    client.post("/_sim/faults", json=[{"truncate": True}])
    resp = client.get(
        "/api/v4/get_orders", query_string={"supplier_id": SUPPLIER, "token": SIM_TOKEN}
    )
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.get_data())
    client.post("/_sim/reset")
    assert client.get("/_sim/faults").get_json()["rules"] == []
