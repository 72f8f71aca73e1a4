"""GPNClient against the real GPN simulator blueprint over a loopback socket (waitress)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from connector.errors import GPNAuthError
from connector.gpn import GPNClient
from connector.secrets import Secret
from mock_ci_server.gpn import routes
from mock_ci_server.gpn.store import GPNStore
from mock_ci_server.serve import serve_in_thread

pytestmark = pytest.mark.socket

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
TOKEN = "CANARY-sim-token-51c0de"


@dataclass
class Clock:
    at: datetime = NOW

    def now(self) -> datetime:
        return self.at


@dataclass
class State:
    clock: Clock = field(default_factory=Clock)
    gpn: GPNStore = field(default_factory=GPNStore)


@pytest.fixture
def sim() -> Iterator[tuple[State, str]]:
    state = State()
    state.gpn.add_client("aff-1", TOKEN)
    app = Flask("gpn-sim")
    app.extensions["sim_state"] = state
    app.register_blueprint(routes.blueprint)
    server = serve_in_thread(app)
    try:
        yield state, server.url
    finally:
        server.stop()


def client(url: str, state: State, token: str = TOKEN, auth: str = "SEC2") -> GPNClient:
    return GPNClient(url, "aff-1", Secret(token), auth=auth, clock=state.clock.now, timeout=5)


def test_sec2_is_verified_and_75_days_are_split(
    sim: tuple[State, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state, url = sim
    start = NOW - timedelta(days=75)
    seeded = state.gpn.seed("aff-1", 300, 9, start, NOW)
    with client(url, state) as gpn:
        result = gpn.transactions(
            start, NOW, transaction_status="PENDING", overlap_hours=0, summary=True
        )
        assert gpn.requests_sent == 3
    assert len(result.windows) == 3
    expected = sorted(r.transaction_id for r in seeded if r.transaction_status == "PENDING")
    assert expected  # the seed leaves the last 48 h of sales pending
    assert sorted(t.transaction_id for t in result.transactions) == expected
    assert sum(s["count"] for s in result.summaries) == len(expected)
    assert TOKEN not in caplog.text
    assert "GET /v3/transactions" in caplog.text or "GPN window" in caplog.text


def test_every_type_parses_from_the_simulator(sim: tuple[State, str]) -> None:
    state, url = sim
    start = NOW - timedelta(days=20)
    seeded = state.gpn.seed("aff-1", 200, 2, start, NOW)
    non_invoiced = {r.transaction_id for r in seeded if r.transaction_status != "INVOICED"}
    result = client(url, state, auth="SEC1").transactions(start, NOW, overlap_hours=0)
    assert result.problems == ()
    assert {t.transaction_id for t in result.transactions} == non_invoiced
    by_id = {r.transaction_id: r for r in seeded}
    for t in result.transactions:
        r = by_id[t.transaction_id]
        assert t.last_modified == r.last_modified
        assert t.gross_amount == r.gross_amount
        assert t.payable_minor == r.payable_minor
        assert t.order_id == r.order_id


@pytest.mark.parametrize("auth", ["SEC1", "SEC2"])
def test_wrong_token_is_refused(sim: tuple[State, str], auth: str) -> None:
    state, url = sim
    with pytest.raises(GPNAuthError, match=r"HTTP 401") as info:
        client(url, state, token="not-the-token", auth=auth).transactions(NOW, NOW)
    assert "not-the-token" not in str(info.value)


def test_skewed_clock_is_refused(sim: tuple[State, str]) -> None:
    _, url = sim
    gpn = GPNClient(url, "aff-1", Secret(TOKEN), clock=lambda: NOW - timedelta(minutes=10))
    with pytest.raises(GPNAuthError, match="clock"):
        gpn.transactions(NOW - timedelta(days=1), NOW)


def test_overlap_catches_backdated_rectification(sim: tuple[State, str]) -> None:
    """A run reads up to T; GPN later rectifies a sale but stamps lastModifiedDate before T.
    The next run starting at T only sees it thanks to the 48 h overlap."""
    state, url = sim
    state.gpn.seed("aff-1", 150, 4, NOW - timedelta(days=10), NOW)
    first = client(url, state).transactions(NOW - timedelta(days=10), NOW)
    pending = {t.transaction_id for t in first.transactions if t.transaction_status == "PENDING"}
    assert pending
    state.clock.at = NOW + timedelta(hours=50)
    moved = state.gpn.rectify(
        state.clock.at, older_than=timedelta(0), modified_at=NOW - timedelta(hours=6)
    )
    assert set(moved) == pending
    no_overlap = client(url, state).transactions(NOW, state.clock.at, overlap_hours=0)
    assert not pending & {t.transaction_id for t in no_overlap.transactions}
    with_overlap = client(url, state).transactions(NOW, state.clock.at)
    statuses = {
        t.transaction_id: t.transaction_status
        for t in with_overlap.transactions
        if t.transaction_id in pending
    }
    assert set(statuses) == pending
    assert set(statuses.values()) <= {"COMMISSIONABLE", "NON-COMMISSIONABLE"}
