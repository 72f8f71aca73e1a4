"""Regression: a connection dropped while the answer's body is read (headers already in) is
retried by the client. urllib3's ``Retry`` never sees it, because it happens after urllib3
returned the response; before the fix one such drop failed the whole call (and with it a whole
multi-page import) at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.ci.client import CIClient
from connector.errors import CITransportError
from connector.secrets import Secret
from mock_ci_server.app import create_app
from mock_ci_server.serve import RunningServer, serve_in_thread
from mock_ci_server.state import SimState

pytestmark = pytest.mark.socket

SUPPLIER, TOKEN = "55001", "tok-DROPBODY-9f8e7d6c5b4a"


@pytest.fixture
def sim() -> Iterator[tuple[SimState, RunningServer, object]]:
    state = SimState()
    state.add_account(SUPPLIER, TOKEN)
    state.seed(SUPPLIER, orders=3, seed=1)
    app = create_app(state)
    server = serve_in_thread(app)
    try:
        yield state, server, app.extensions["sim_faults"]
    finally:
        server.stop()


def _client(url: str) -> CIClient:
    return CIClient(base_url=url, supplier_id=SUPPLIER, token=Secret(TOKEN), timeout=5, backoff=0.0)


def test_body_cut_off_once_is_retried_and_counted(
    sim: tuple[SimState, RunningServer, object],
) -> None:
    _state, server, faults = sim
    faults.set_rules([{"path": "/api/*/get_orders", "drop": True, "count": 1}])  # type: ignore[attr-defined]
    with _client(server.url) as client:
        page = client.get_orders_page(1)
        assert len(page.records) == 3
        assert client.stats.retries == {"ConnectionError": 1}
        assert client.stats.calls == {"get_orders": 2}
        assert client.stats.failures == {}


def test_body_cut_off_after_side_effect_on_write_is_retried(
    sim: tuple[SimState, RunningServer, object],
) -> None:
    state, server, faults = sim
    line_id = state.get_state(supplier_id=SUPPLIER)["lines"][0]["ci_lineitemid"]
    faults.set_rules([{"path": "/api/*/mark_exported", "drop": True, "count": 1}])  # type: ignore[attr-defined]
    with _client(server.url) as client:
        client.mark_exported([line_id])  # the first attempt applied it; the repeat is harmless
        assert client.stats.retries == {"ConnectionError": 1}
    line = state.line(line_id)
    assert line is not None
    assert line.exported
    assert [c["changed"] for c in line.calls] == [True, False]


def test_body_always_cut_off_raises_transport_error_without_token(
    sim: tuple[SimState, RunningServer, object],
) -> None:
    _state, server, faults = sim
    faults.set_rules([{"path": "/api/*/get_orders", "drop": True}])  # type: ignore[attr-defined]
    with _client(server.url) as client, pytest.raises(CITransportError) as info:
        client.get_orders_page(1)
    message = str(info.value)
    assert "get_orders" in message
    assert "cut off 3 times" in message
    assert TOKEN not in message
    assert TOKEN not in repr(info.value)
    assert info.value.__context__ is None
    assert info.value.__cause__ is None
    assert client.stats.retries == {"ConnectionError": 2}
    assert client.stats.failures == {"CITransportError": 1}
