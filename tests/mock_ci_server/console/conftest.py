"""A seeded simulator served on 127.0.0.1:0 for the console's browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from flask import Flask

from mock_ci_server.app import create_app
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.state import SimState

SUPPLIER = "90001"
TOKEN = "ConsoleSecretToken0123456789abcd"
OTHER = "90002"
OTHER_TOKEN = "OtherSecretToken0123456789abcdef"
NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # a Monday


@dataclass
class Served:
    url: str
    state: SimState
    app: Flask


def seeded_state() -> SimState:
    state = SimState()
    state.clock.set(NOW)
    state.add_account(SUPPLIER, TOKEN, region="US", name="Acme Home", merchant_level=3)
    state.add_account(OTHER, OTHER_TOKEN, region="IT", name="Casa Bella")
    state.seed(SUPPLIER, orders=120, seed=7, lines_per_order=(1, 2))
    state.seed(OTHER, orders=15, seed=3)
    return state


@pytest.fixture
def served() -> Iterator[Served]:
    state = seeded_state()
    app = create_app(state)
    server = serve_in_thread(app)
    try:
        yield Served(server.url, state, app)
    finally:
        server.stop()
