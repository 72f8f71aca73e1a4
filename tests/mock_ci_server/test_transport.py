"""InProcessTransport: plain ``requests`` calls served by a tiny Flask app, no socket."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from flask import Flask, request

from mock_ci_server.faults import FaultInjector
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.transport import InProcessTransport

BASE = "http://ci.invalid"


def echo_app() -> tuple[Flask, FaultInjector]:
    app = Flask("echo")

    @app.route("/api/<version>/<verb>", methods=["GET", "POST", "PUT", "DELETE"])
    def echo(version: str, verb: str) -> tuple[str, int, dict[str, str]]:
        payload: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": request.query_string.decode(),
            "args": request.args.to_dict(flat=False),
            "form": request.form.to_dict(flat=False),
            "files": sorted(request.files),
            "content_type": request.content_type,
            "host": request.host,
            "x_custom": request.headers.get("X-Custom"),
        }
        return json.dumps(payload), 201, {"Content-Type": "text/json", "X-Echo": "1"}

    @app.get("/sleepy")
    def sleepy() -> str:
        time.sleep(0.3)
        return "late"

    injector = FaultInjector(app.wsgi_app)
    app.wsgi_app = injector  # type: ignore[method-assign]
    return app, injector


def test_get_forwards_path_query_and_headers() -> None:
    app, _ = echo_app()
    with InProcessTransport(app, BASE) as transport:
        resp = requests.get(
            f"{BASE}/api/v4/get_orders",
            params={"supplier_id": "90001", "start_datetime": "03/04/2024 00:00"},
            headers={"X-Custom": "yes"},
            timeout=5,
        )
    assert resp.status_code == 201
    assert resp.headers["Content-Type"] == "text/json"
    assert resp.headers["X-Echo"] == "1"
    body = resp.json()
    assert body["method"] == "GET"
    assert body["path"] == "/api/v4/get_orders"
    # The raw query string arrives untouched ('+' for space, escaped slashes).
    assert body["query"] == "supplier_id=90001&start_datetime=03%2F04%2F2024+00%3A00"
    assert body["args"]["start_datetime"] == ["03/04/2024 00:00"]
    assert body["x_custom"] == "yes"
    assert body["host"] == "ci.invalid"
    assert transport.calls == 1


def test_urlencoded_post_body_arrives_intact() -> None:
    app, _ = echo_app()
    with InProcessTransport(app, BASE):
        resp = requests.post(
            f"{BASE}/api/v4/mark_exported",
            data={"supplier_id": "90001", "ci_lineitem_ids": "[612004511,612004530]"},
            timeout=5,
        )
    body = resp.json()
    assert body["content_type"] == "application/x-www-form-urlencoded"
    assert body["form"]["ci_lineitem_ids"] == ["[612004511,612004530]"]


def test_multipart_post_body_arrives_intact() -> None:
    app, _ = echo_app()
    with InProcessTransport(app, BASE):
        resp = requests.post(
            f"{BASE}/api/v4/tracking_notification",
            files={
                "supplier_id": (None, "90001"),
                "tracking_info": (None, '[{"carrier":"ups","ci_lineitem_id":1}]'),
                "attachment": ("a.txt", b"file body", "text/plain"),
            },
            timeout=5,
        )
    body = resp.json()
    assert body["content_type"].startswith("multipart/form-data; boundary=")
    assert body["form"]["tracking_info"] == ['[{"carrier":"ups","ci_lineitem_id":1}]']
    assert body["form"]["supplier_id"] == ["90001"]
    assert body["files"] == ["attachment"]


def test_other_methods_are_forwarded() -> None:
    app, _ = echo_app()
    with InProcessTransport(app, BASE) as transport:
        assert requests.delete(f"{BASE}/api/v4/x", timeout=5).json()["method"] == "DELETE"
        assert requests.put(f"{BASE}/api/v4/x", data="a=1", timeout=5).json()["method"] == "PUT"
        assert requests.get(f"{BASE}/nowhere", timeout=5).status_code == 404
        assert transport.calls == 3


def test_drop_fault_raises_connection_error_and_app_still_ran() -> None:
    app, injector = echo_app()
    injector.set_rules([{"method": "POST", "drop": True, "count": 1}])
    with InProcessTransport(app, BASE) as transport:
        with pytest.raises(requests.ConnectionError, match="simulated drop"):
            requests.post(f"{BASE}/api/v4/mark_exported", data={"a": "1"}, timeout=5)
        # Expired after one fire: the retry goes through.
        assert requests.post(f"{BASE}/api/v4/mark_exported", timeout=5).status_code == 201
        assert transport.calls == 2
    assert injector.describe()[0]["fired"] == 1


def test_status_and_truncate_faults_come_back_as_responses() -> None:
    app, injector = echo_app()
    injector.set_rules(
        [
            {"path": "/api/v4/get_orders", "status": 503, "retry_after": 1, "count": 1},
            {"path": "/api/v4/get_orders", "truncate": True},
        ]
    )
    with InProcessTransport(app, BASE):
        first = requests.get(f"{BASE}/api/v4/get_orders", timeout=5)
        assert first.status_code == 503
        assert first.headers["Retry-After"] == "1"
        second = requests.get(f"{BASE}/api/v4/get_orders", timeout=5)
        assert second.status_code == 201
        assert second.headers["Content-Length"] == str(len(second.content))
        with pytest.raises(requests.JSONDecodeError):
            second.json()


def test_latency_beyond_timeout_raises_read_timeout() -> None:
    app, injector = echo_app()
    injector.set_rules([{"path": "/api/*/get_orders", "latency_ms": 200}])
    with InProcessTransport(app, BASE):
        with pytest.raises(requests.ReadTimeout, match=r"did not answer within 0\.05 s"):
            requests.get(f"{BASE}/api/v4/get_orders", timeout=0.05)
        with pytest.raises(requests.ReadTimeout):
            requests.get(f"{BASE}/api/v4/get_orders", timeout=(5, 0.05))
        # Within the timeout (or no timeout) the late answer is delivered.
        assert requests.get(f"{BASE}/api/v4/get_orders", timeout=5).status_code == 201
        assert requests.get(f"{BASE}/api/v4/get_orders").status_code == 201  # noqa: S113


def test_slow_app_without_fault_also_times_out() -> None:
    app, _ = echo_app()
    with InProcessTransport(app, BASE), pytest.raises(requests.Timeout):
        requests.get(f"{BASE}/sleepy", timeout=0.1)


def test_other_hosts_are_refused_by_default() -> None:
    app, _ = echo_app()
    with InProcessTransport(app, BASE) as transport:
        with pytest.raises(requests.ConnectionError):
            requests.get("http://elsewhere.invalid/api/v4/get_orders", timeout=5)
        # A host that merely starts with the base host is not ours either.
        with pytest.raises(requests.ConnectionError):
            requests.get("http://ci.invalidx/api/v4/get_orders", timeout=5)
        assert transport.calls == 0


def test_base_url_with_path_prefix() -> None:
    app, _ = echo_app()
    with InProcessTransport(app, "http://gw.invalid/ci") as t:
        body = requests.get("http://gw.invalid/ci/api/v2/get_orders?page=2", timeout=5).json()
        assert body["path"] == "/api/v2/get_orders"
        assert body["query"] == "page=2"
        assert t.calls == 1


@pytest.mark.socket
def test_passthrough_reaches_a_real_local_server_only_when_enabled() -> None:
    other = Flask("other")
    other.add_url_rule("/hello", "hello", lambda: "real socket")
    app, _ = echo_app()
    with serve_in_thread(other) as server:
        with InProcessTransport(app, BASE), pytest.raises(requests.ConnectionError):
            requests.get(f"{server.url}/hello", timeout=5)
        with InProcessTransport(app, BASE, passthrough_other_hosts=True) as t:
            assert requests.get(f"{server.url}/hello", timeout=5).text == "real socket"
            assert requests.get(f"{BASE}/api/v4/x", timeout=5).status_code == 201
            assert t.calls == 1


def test_patch_is_removed_after_exit() -> None:
    app, _ = echo_app()
    with InProcessTransport(app, BASE):
        pass
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{BASE}/api/v4/get_orders", timeout=2)


def test_bad_base_url_is_refused() -> None:
    app, _ = echo_app()
    with pytest.raises(ValueError, match="base_url"):
        InProcessTransport(app, "ci.invalid")


# -- through the simulator's own create_app() -------------------------------------------------

SUPPLIER = "90001"
SIM_TOKEN = "TransportToken0123456789abcdefg"


def seeded_sim() -> tuple[Any, Any, list[int]]:
    from mock_ci_server.app import create_app
    from mock_ci_server.state import SimState

    state = SimState()
    state.add_account(SUPPLIER, SIM_TOKEN)
    ids = state.seed(SUPPLIER, orders=4, seed=2)["ci_lineitemids"]
    return create_app(state), state, ids


def _exported(state: Any) -> set[int]:
    return {
        line["ci_lineitemid"] for line in state.get_state(SUPPLIER)["lines"] if line["exported"]
    }


def test_simulator_round_trip_in_process() -> None:
    app, state, ids = seeded_sim()
    creds = {"supplier_id": SUPPLIER, "token": SIM_TOKEN}
    with InProcessTransport(app, BASE) as transport:
        page = requests.get(f"{BASE}/api/v4/get_orders", params=creds, timeout=5)
        assert page.headers["Content-Type"].startswith("text/json")
        assert page.json()["meta"]["no_of_items"] == 4
        urlencoded = requests.post(
            f"{BASE}/api/v4/mark_exported",
            data={**creds, "ci_lineitem_ids": json.dumps(ids[:1])},
            timeout=5,
        )
        assert urlencoded.json() == {"success": True}
        multipart = requests.post(
            f"{BASE}/api/v2/mark_exported",
            files={
                k: (None, v) for k, v in {**creds, "ci_lineitem_ids": json.dumps(ids[1:2])}.items()
            },
            timeout=5,
        )
        assert multipart.json() == {"success": True}
        assert transport.calls == 3
    assert _exported(state) == set(ids[:2])


def test_simulator_drop_loses_the_answer_but_not_the_effect() -> None:
    app, state, ids = seeded_sim()
    app.extensions["sim_faults"].set_rules([{"path": "/api/*/mark_exported", "drop": True}])
    with InProcessTransport(app, BASE), pytest.raises(requests.ConnectionError):
        requests.post(
            f"{BASE}/api/v4/mark_exported",
            data={"supplier_id": SUPPLIER, "token": SIM_TOKEN, "ci_lineitem_ids": json.dumps(ids)},
            timeout=5,
        )
    assert _exported(state) == set(ids)
