"""The whole simulator over a real loopback socket (serve_in_thread, 127.0.0.1:0)."""

from __future__ import annotations

import json

import pytest
import requests

from mock_ci_server.app import create_app
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.state import SimState

from .conftest import NOW, SUPPLIER, TOKEN


@pytest.mark.socket
def test_full_cycle_over_socket() -> None:
    state = SimState()
    state.clock.set(NOW)
    state.add_account(SUPPLIER, TOKEN)
    with serve_in_thread(create_app(state)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        seeded = requests.post(
            f"{server.url}/_sim/seed", json={"supplier_id": SUPPLIER, "orders": 3}, timeout=10
        ).json()
        ids = seeded["ci_lineitemids"]
        # '+' for the space and raw '/' ':' straight from the wire.
        url = (
            f"{server.url}/api/v4/get_orders?supplier_id={SUPPLIER}&token={TOKEN}"
            "&start_datetime=03/02/2024+12:00&end_datetime=03/03/2024+11:59"
        )
        listed = requests.get(url, timeout=10)
        assert listed.headers["Content-Type"] == "text/json"
        window_count = listed.json()["meta"]["no_of_items"]
        assert 0 <= window_count <= 3
        raw = f"supplier_id={SUPPLIER}&token={TOKEN}&ci_lineitem_ids=[{ids[0]},{ids[1]}]"
        marked = requests.post(
            f"{server.url}/api/v4/mark_exported",
            data=raw,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        )
        assert marked.json() == {"success": True}
        tracked = requests.post(
            f"{server.url}/api/v4/tracking_notification",
            files={
                "supplier_id": (None, SUPPLIER),
                "token": (None, TOKEN),
                "tracking_info": (
                    None,
                    json.dumps([{"carrier": "ups", "ci_lineitem_id": ids[0], "tracking": "1Z"}]),
                ),
            },
            timeout=10,
        )
        assert tracked.json() == {"success": True}
        rest = requests.get(
            f"{server.url}/api/v4/get_orders",
            params={"supplier_id": SUPPLIER, "token": TOKEN},
            timeout=10,
        ).json()
        assert [r["line_items"][0]["ci_lineitemid"] for r in rest["data"]] == [ids[2]]
    line = state.line(ids[0])
    assert line is not None
    assert line.status == "shipped"
