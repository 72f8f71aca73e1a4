"""Fixtures: the GPN blueprint on a tiny Flask app with a stub state (a fixed clock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mock_ci_server.gpn import routes
from mock_ci_server.gpn.store import GPNStore

NOW = datetime(2024, 3, 20, 12, 0, 0, tzinfo=UTC)
CLIENT_ID = "client-abc"
TOKEN = "tok-s3cret-value"


@dataclass
class FixedClock:
    at: datetime = NOW

    def now(self) -> datetime:
        return self.at


@dataclass
class StubState:
    clock: FixedClock = field(default_factory=FixedClock)
    gpn: GPNStore = field(default_factory=GPNStore)


@pytest.fixture
def sim() -> StubState:
    state = StubState()
    state.gpn.add_client(CLIENT_ID, TOKEN)
    return state


@pytest.fixture
def app(sim: StubState) -> Flask:
    app = Flask("gpn-test")
    app.extensions["sim_state"] = sim
    app.register_blueprint(routes.blueprint)
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
