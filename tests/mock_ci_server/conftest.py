"""Fixtures for the simulator core: a frozen-clock SimState with two accounts and its app."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mock_ci_server.app import create_app
from mock_ci_server.state import SimState

SUPPLIER = "90001"
TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz01234"
OTHER = "90002"
OTHER_TOKEN = "ZyXwVuTsRqPoNmLkJiHgFeDcBa98765"
NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # a Monday


@pytest.fixture
def sim_state() -> SimState:
    state = SimState()
    state.clock.set(NOW)
    state.add_account(SUPPLIER, TOKEN, region="US")
    state.add_account(OTHER, OTHER_TOKEN, region="IT")
    return state


@pytest.fixture
def sim_app(sim_state: SimState) -> Flask:
    return create_app(sim_state)


@pytest.fixture
def api(sim_app: Flask) -> FlaskClient:
    return sim_app.test_client()


def body(response: Any) -> Any:
    """Decode a CI response (text/json) keeping key order."""
    return json.loads(response.get_data(as_text=True))


def get_orders(
    api: FlaskClient,
    version: str = "v4",
    *,
    supplier: str = SUPPLIER,
    token: str = TOKEN,
    **params: Any,
) -> Any:
    query = {"supplier_id": supplier, "token": token, **params}
    return body(api.get(f"/api/{version}/get_orders", query_string=query))


def post_form(
    api: FlaskClient,
    path: str,
    *,
    supplier: str = SUPPLIER,
    token: str = TOKEN,
    **fields: Any,
) -> Any:
    data = {"supplier_id": supplier, "token": token, **fields}
    return body(api.post(path, data=data))


def mark(api: FlaskClient, ids: list[int], **kw: Any) -> Any:
    return post_form(api, "/api/v4/mark_exported", ci_lineitem_ids=json.dumps(ids), **kw)


def track(
    api: FlaskClient,
    items: list[dict[str, Any]],
    path: str = "/api/v4/tracking_notification",
    **kw: Any,
) -> Any:
    return post_form(api, path, tracking_info=json.dumps(items), **kw)
