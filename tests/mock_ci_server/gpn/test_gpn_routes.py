"""GET /v3/transactions on the GPN blueprint: auth (SEC1/SEC2), parameters, filters, summary."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient

from mock_ci_server.gpn.routes import UNAUTHORIZED_PAGE
from mock_ci_server.gpn.store import GPNRecord

from .conftest import CLIENT_ID, NOW, TOKEN, StubState

BASE = {"clientId": CLIENT_ID, "startDate": "2024-03-01T00:00:00", "endDate": "2024-03-20T00:00:00"}


def sec1(token: str = TOKEN) -> dict[str, str]:
    return {"x-auth-version": "SEC1", "x-auth-token": token}


def sec2(token: str = TOKEN, at: datetime = NOW) -> dict[str, str]:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S")
    digest = hashlib.sha256((token + stamp).encode()).hexdigest()
    return {"x-auth-version": "SEC2", "x-auth-timestamp": stamp, "x-auth-token": digest}


def get(client: FlaskClient, headers: dict[str, str], **params: str) -> Any:
    return client.get("/v3/transactions", query_string={**BASE, **params}, headers=headers)


def _add(sim: StubState, tid: str, kind: str, status: str, modified: datetime, **kw: Any) -> None:
    date = None if kind in ("BONUS", "PAYMENT") else modified
    sim.gpn.add(
        CLIENT_ID,
        GPNRecord(tid, kind, status, modified, date, "USD", "US", 150, **kw),
    )


@pytest.fixture
def rows(sim: StubState) -> StubState:
    t = datetime(2024, 3, 10, 9, 30, tzinfo=UTC)
    _add(sim, "s1", "SALE", "PENDING", t, gross_amount=Decimal("12.99"), order_id="111")
    _add(sim, "s2", "SALE", "COMMISSIONABLE", t + timedelta(hours=1), commission_category="Goods")
    _add(sim, "s3", "SALE", "INVOICED", t + timedelta(hours=2), invoice_id="INV-1")
    _add(sim, "r1", "REFUND", "COMMISSIONABLE", t + timedelta(hours=3))
    _add(sim, "b1", "BONUS", "INVOICED", t, invoice_id="INV-1", transaction_details="Promo")
    _add(sim, "old", "SALE", "COMMISSIONABLE", datetime(2024, 1, 1, tzinfo=UTC))
    return sim


def ids(response: Any) -> list[str]:
    return [t["transactionId"] for t in response.get_json()["transactions"]]


def test_sec1_ok_default_filter_is_non_invoiced(client: FlaskClient, rows: StubState) -> None:
    r = get(client, sec1())
    assert r.status_code == 200
    assert ids(r) == ["s1", "s2", "r1"]
    assert r.get_json()["total"] == 3
    assert "summary" not in r.get_json()


def test_sec2_ok(client: FlaskClient, rows: StubState) -> None:
    r = get(client, sec2(at=NOW - timedelta(minutes=4)))
    assert r.status_code == 200
    assert ids(r) == ["s1", "s2", "r1"]


def _assert_401(r: Any) -> None:
    assert r.status_code == 401
    assert r.headers["Content-Type"] == "text/html;charset=utf-8"
    assert r.get_data(as_text=True) == UNAUTHORIZED_PAGE
    assert "<pre>Unauthorized</pre>" in UNAUTHORIZED_PAGE


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-headers"),
        pytest.param(sec1("wrong-token"), id="sec1-wrong"),
        pytest.param({**sec2(), "x-auth-token": "0" * 64}, id="sec2-forged-hash"),
        pytest.param(sec2(token="other-token"), id="sec2-wrong-token"),
        pytest.param(sec2(at=NOW - timedelta(minutes=6)), id="sec2-stale"),
        pytest.param(sec2(at=NOW + timedelta(minutes=6)), id="sec2-future"),
        pytest.param({**sec2(), "x-auth-timestamp": "2024-03-20 12:00:00"}, id="sec2-bad-stamp"),
        pytest.param({**sec2(), "x-auth-version": "SEC3"}, id="unknown-version"),
        pytest.param({"x-auth-version": "SEC2", "x-auth-token": TOKEN}, id="sec2-no-stamp"),
    ],
)
def test_auth_failures_are_the_html_page(
    client: FlaskClient, rows: StubState, headers: dict[str, str]
) -> None:
    _assert_401(get(client, headers))


def test_unknown_client_is_401(client: FlaskClient, rows: StubState) -> None:
    _assert_401(get(client, sec1(), clientId="someone-else"))


def test_skew_is_configurable(client: FlaskClient, rows: StubState) -> None:
    headers = sec2(at=NOW - timedelta(minutes=3))
    assert get(client, headers).status_code == 200
    r = client.post("/_sim/gpn/config", json={"auth_skew_seconds": 60})
    assert r.status_code == 200
    _assert_401(get(client, headers))


def _error(r: Any) -> str:
    assert r.status_code == 400
    body = r.get_json()
    assert body["error"]["httpCode"] == 400
    message = body["error"]["message"]
    assert isinstance(message, str)
    return message


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"startDate": "2024-03-01"}, "startDate='2024-03-01': must be YYYY-MM-DDTHH:mm:SS"),
        ({"endDate": "2024-02-30T00:00:00"}, "endDate='2024-02-30T00:00:00'"),
        ({"timeZone": "Mars/Olympus"}, "timeZone='Mars/Olympus': unknown time zone"),
        ({"transactionType": "GIFT"}, "transactionType='GIFT'"),
        ({"transactionStatus": "PAID"}, "transactionStatus='PAID'"),
        ({"summary": "yes"}, "summary='yes'"),
        ({"colour": "red"}, "colour='red': Unknown field"),
        ({"endDate": "2024-02-01T00:00:00"}, "is before startDate"),
        ({"endDate": "2024-03-31T00:00:01"}, "longer than the maximum time frame of 30 days"),
    ],
)
def test_bad_parameters(
    client: FlaskClient, rows: StubState, params: dict[str, str], needle: str
) -> None:
    assert needle in _error(get(client, sec1(), **params))


def test_missing_parameters(client: FlaskClient, rows: StubState) -> None:
    r = client.get("/v3/transactions", headers=sec1())
    assert _error(r) == "clientId: missing required parameter"
    r = client.get("/v3/transactions", query_string={"clientId": CLIENT_ID}, headers=sec1())
    assert "Missing data for required field" in _error(r)


def test_exactly_30_days_is_allowed(client: FlaskClient, rows: StubState) -> None:
    assert get(client, sec1(), endDate="2024-03-31T00:00:00").status_code == 200


def test_filters(client: FlaskClient, rows: StubState) -> None:
    assert ids(get(client, sec1(), transactionType="SALE")) == ["s1", "s2"]
    assert ids(get(client, sec1(), transactionStatus="INVOICED")) == ["b1", "s3"]
    assert ids(get(client, sec1(), transactionStatus="INVOICED", invoiceId="INV-1")) == [
        "b1",
        "s3",
    ]
    assert ids(get(client, sec1(), transactionStatus="INVOICED", invoiceId="INV-2")) == []
    assert ids(get(client, sec1(), transactionType="REFUND")) == ["r1"]
    assert ids(get(client, sec1(), transactionStatus="PENDING")) == ["s1"]


def test_time_zone_shifts_the_window_and_the_rendering(client: FlaskClient, sim: StubState) -> None:
    _add(sim, "x", "SALE", "PENDING", datetime(2024, 3, 10, 23, 30, tzinfo=UTC))
    # 23:30 UTC is 00:30 on the 11th in Berlin: outside a Berlin "10th".
    day = {"startDate": "2024-03-10T00:00:00", "endDate": "2024-03-10T23:59:59"}
    assert ids(get(client, sec1(), **day)) == ["x"]
    r = get(client, sec1(), timeZone="Europe/Berlin", **day)
    assert ids(r) == []
    r = get(client, sec1(), timeZone="Europe/Berlin", startDate="2024-03-11T00:00:00")
    assert r.get_json()["transactions"][0]["lastModifiedDate"] == "2024-03-11T00:30:00+01:00"


def test_summary(client: FlaskClient, rows: StubState) -> None:
    body = get(client, sec1(), summary="true").get_json()
    assert body["summary"] == {
        "count": 3,
        "grossAmount": "12.99",
        "payableAmount": 450,
        "currencies": ["USD"],
        "byType": {
            "REFUND": {"count": 1, "payableAmount": 150},
            "SALE": {"count": 2, "payableAmount": 300},
        },
        "byStatus": {
            "COMMISSIONABLE": {"count": 2, "payableAmount": 300},
            "PENDING": {"count": 1, "payableAmount": 150},
        },
    }


FIELDS = {
    "transactionId", "transactionDate", "lastModifiedDate", "orderId", "shortId", "cartId",
    "cartItemId", "supportId", "linkId", "permalink", "grossAmount", "payableAmount", "sid",
    "wid", "transactionStatus", "invoiceId", "transactionType", "transactionDetails",
    "currency", "commissionCategory", "commissionDetails", "country", "isNewUser",
}  # fmt: skip


def test_records_carry_exactly_the_seed_fields_and_empty_rules(
    client: FlaskClient, sim: StubState
) -> None:
    r = client.post(
        "/_sim/gpn/seed",
        json={"client_id": CLIENT_ID, "n": 300, "seed": 4, "start": "2024-02-20T00:00:00Z"},
    )
    assert r.status_code == 201
    assert r.get_json()["created"] == 300
    body = get(client, sec1(), transactionStatus="INVOICED").get_json()
    body2 = get(client, sec1()).get_json()
    rows = body["transactions"] + body2["transactions"]
    assert len(rows) > 50
    for row in rows:
        assert set(row) == FIELDS
        kind = row["transactionType"]
        if kind in ("BONUS", "PAYMENT"):
            assert row["transactionDate"] is None
            assert row["sid"] is None
        if kind in ("BOUNTY", "BOUNTY_REFUND", "BONUS", "PAYMENT"):
            assert row["grossAmount"] is None
            assert row["permalink"] is None
        else:
            assert Decimal(row["grossAmount"]) > 0
        assert isinstance(row["payableAmount"], int)
        assert (row["invoiceId"] is None) == (row["transactionStatus"] != "INVOICED")
        datetime.fromisoformat(row["lastModifiedDate"])


def test_control_plane_rectify_and_state(client: FlaskClient, sim: StubState) -> None:
    t = NOW - timedelta(hours=50)
    _add(sim, "p1", "SALE", "PENDING", t)
    _add(sim, "p2", "SALE", "PENDING", NOW - timedelta(hours=1))
    r = client.post("/_sim/gpn/rectify", json={"older_than_hours": 48})
    assert r.get_json() == {"moved": ["p1"]}
    rows = {x.transaction_id: x for x in sim.gpn.records(CLIENT_ID)}
    assert rows["p1"].last_modified == NOW
    assert rows["p1"].transaction_status in ("COMMISSIONABLE", "NON-COMMISSIONABLE")
    state = client.get("/_sim/gpn/state").get_json()
    assert state["clients"][CLIENT_ID]["transactions"] == 2
    assert TOKEN not in client.get("/_sim/gpn/state").get_data(as_text=True)


def test_control_plane_clients(client: FlaskClient, sim: StubState) -> None:
    r = client.post("/_sim/gpn/clients", json={"client_id": "new", "token": "t-new-1"})
    assert r.status_code == 201
    assert sim.gpn.token_for("new") == "t-new-1"


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/_sim/gpn/clients", {"client_id": "x"}, "token: Missing data"),
        ("/_sim/gpn/clients", [1], "must be a JSON object"),
        ("/_sim/gpn/seed", {"client_id": "ghost"}, "unknown client_id 'ghost'"),
        ("/_sim/gpn/seed", {"client_id": CLIENT_ID, "n": -1}, "n=-1"),
        ("/_sim/gpn/seed", {"client_id": CLIENT_ID, "start": "soon"}, "start='soon'"),
        ("/_sim/gpn/seed", {"client_id": CLIENT_ID, "start": "0001-01-01T00:00:00"}, "year"),
        ("/_sim/gpn/rectify", {"older_than_hours": "x"}, "older_than_hours='x'"),
        ("/_sim/gpn/rectify", {"client_id": "ghost"}, "unknown client_id"),
        ("/_sim/gpn/config", {"auth_skew_seconds": -5}, "auth_skew_seconds=-5"),
    ],
)
def test_control_plane_errors(client: FlaskClient, path: str, body: Any, needle: str) -> None:
    assert needle in _error(client.post(path, json=body))


def test_control_plane_non_json_body(client: FlaskClient) -> None:
    r = client.post("/_sim/gpn/seed", data="not json", content_type="application/json")
    assert "must be a JSON object" in _error(r)
