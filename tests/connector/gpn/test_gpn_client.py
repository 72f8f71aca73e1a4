"""GPNClient against `responses`: windows, overlap de-duplication, SEC1/SEC2, errors, secrecy."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
import responses

from connector.errors import GPNAuthError, GPNError
from connector.gpn import GPNClient, split_windows
from connector.secrets import Secret

BASE = "https://gpn.example.test"
URL = f"{BASE}/v3/transactions"
CANARY = "CANARY-gpn-token-7f3a91"
NOW = datetime(2024, 5, 1, 8, 30, 15, tzinfo=UTC)
PAGE_401 = "<html><body><h2>HTTP ERROR 401</h2><pre>Unauthorized</pre></body></html>"


def make_client(auth: str = "SEC2", **kw: Any) -> GPNClient:
    return GPNClient(BASE, "client-1", Secret(CANARY), auth=auth, clock=lambda: NOW, **kw)


def row(tid: str, modified: str, status: str = "PENDING", **kw: Any) -> dict[str, Any]:
    return {
        "transactionId": tid,
        "transactionType": "SALE",
        "transactionStatus": status,
        "transactionDate": "2024-04-01T10:00:00+00:00",
        "lastModifiedDate": modified,
        "payableAmount": 130,
        "grossAmount": "12.99",
        "currency": "USD",
        **kw,
    }


def params_of(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def test_split_windows_75_days_gives_3() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    windows = split_windows(start, start + timedelta(days=75))
    assert len(windows) == 3
    assert windows[0] == (start, start + timedelta(days=30))
    assert windows[1][0] == windows[0][1] + timedelta(seconds=1)
    assert windows[-1][1] == start + timedelta(days=75)
    assert all(hi - lo <= timedelta(days=30) for lo, hi in windows)
    assert split_windows(start, start + timedelta(days=30)) == [(start, start + timedelta(30))]


def test_split_windows_measures_wall_time_across_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2024, 3, 15, tzinfo=berlin)  # DST starts 31 March inside the range
    windows = split_windows(start, start + timedelta(days=45), berlin)
    for lo, hi in windows:
        assert hi.replace(tzinfo=None) - lo.replace(tzinfo=None) <= timedelta(days=30)


def test_split_windows_refuses_naive_and_reversed() -> None:
    with pytest.raises(ValueError, match="aware"):
        split_windows(datetime(2024, 1, 1), datetime(2024, 1, 2))
    with pytest.raises(ValueError, match="before start"):
        split_windows(NOW, NOW - timedelta(days=1))


@responses.activate
def test_75_days_are_fetched_in_3_windows_with_overlap() -> None:
    responses.get(URL, json={"transactions": [], "total": 0})
    start = datetime(2024, 1, 1, tzinfo=UTC)
    result = make_client().transactions(start, start + timedelta(days=75), overlap_hours=0)
    assert len(responses.calls) == 3
    sent = [params_of(c) for c in responses.calls]
    assert [(p["startDate"], p["endDate"]) for p in sent] == [
        ("2024-01-01T00:00:00", "2024-01-31T00:00:00"),
        ("2024-01-31T00:00:01", "2024-03-01T00:00:01"),
        ("2024-03-01T00:00:02", "2024-03-16T00:00:00"),
    ]
    assert all(p["clientId"] == "client-1" for p in sent)
    assert "timeZone" not in sent[0]
    assert len(result.windows) == 3


@responses.activate
def test_default_overlap_starts_48h_earlier() -> None:
    responses.get(URL, json={"transactions": [], "total": 0})
    start = datetime(2024, 4, 10, tzinfo=UTC)
    make_client().transactions(start, start + timedelta(days=1))
    assert params_of(responses.calls[0])["startDate"] == "2024-04-08T00:00:00"


@responses.activate
def test_overlap_dedupe_keeps_newest_last_modified() -> None:
    first = [
        row("A", "2024-01-20T10:00:00+00:00"),
        row("B", "2024-01-30T10:00:00+00:00", status="COMMISSIONABLE"),
    ]
    second = [
        row("A", "2024-02-01T09:00:00+00:00", status="COMMISSIONABLE"),
        row("B", "2024-01-30T09:00:00Z"),  # older copy must not win
        row("C", "2024-02-05T00:00:00"),  # naive: read as UTC (no timeZone asked)
    ]
    responses.get(URL, json={"transactions": first, "total": 2})
    responses.get(URL, json={"transactions": second, "total": 3})
    start = datetime(2024, 1, 10, tzinfo=UTC)
    result = make_client().transactions(start, start + timedelta(days=40), overlap_hours=0)
    assert result.rows_read == 5
    by_id = {t.transaction_id: t for t in result.transactions}
    assert sorted(by_id) == ["A", "B", "C"]
    assert by_id["A"].transaction_status == "COMMISSIONABLE"
    assert by_id["A"].last_modified == datetime(2024, 2, 1, 9, tzinfo=UTC)
    assert by_id["B"].transaction_status == "COMMISSIONABLE"
    assert by_id["C"].last_modified == datetime(2024, 2, 5, tzinfo=UTC)
    assert by_id["A"].gross_amount == Decimal("12.99")
    assert by_id["A"].payable_amount == Decimal("1.30")
    assert [t.transaction_id for t in result.transactions] == ["B", "A", "C"]


@responses.activate
def test_sec2_headers_recomputed() -> None:
    responses.get(URL, json={"transactions": [], "total": 0})
    make_client().transactions(NOW - timedelta(days=1), NOW)
    headers = responses.calls[0].request.headers
    assert headers["x-auth-version"] == "SEC2"
    assert headers["x-auth-timestamp"] == "2024-05-01T08:30:15"
    expected = hashlib.sha256((CANARY + "2024-05-01T08:30:15").encode()).hexdigest()
    assert headers["x-auth-token"] == expected
    assert CANARY not in str(responses.calls[0].request.url)


@responses.activate
def test_sec2_signs_each_request_fresh() -> None:
    responses.get(URL, json={"transactions": [], "total": 0})
    ticks = iter([NOW, NOW + timedelta(seconds=7), NOW + timedelta(seconds=9)])
    client = GPNClient(BASE, "client-1", Secret(CANARY), clock=lambda: next(ticks))
    client.transactions(NOW - timedelta(days=40), NOW, overlap_hours=0)
    stamps = [c.request.headers["x-auth-timestamp"] for c in responses.calls]
    tokens = {c.request.headers["x-auth-token"] for c in responses.calls}
    assert stamps == ["2024-05-01T08:30:15", "2024-05-01T08:30:22"]
    assert len(tokens) == 2


@responses.activate
def test_sec1_sends_the_token() -> None:
    responses.get(URL, json={"transactions": [], "total": 0})
    make_client("sec1").transactions(NOW - timedelta(days=1), NOW)
    headers = responses.calls[0].request.headers
    assert headers["x-auth-version"] == "SEC1"
    assert headers["x-auth-token"] == CANARY
    assert "x-auth-timestamp" not in headers


@responses.activate
def test_filters_and_time_zone_are_sent() -> None:
    responses.get(URL, json={"transactions": [], "total": 0, "summary": {"count": 0}})
    start = datetime(2024, 4, 1, tzinfo=UTC)
    result = make_client().transactions(
        start,
        start + timedelta(days=1),
        transaction_type="sale",
        transaction_status="invoiced",
        invoice_id="INV-9",
        time_zone="America/New_York",
        summary=True,
        overlap_hours=0,
    )
    p = params_of(responses.calls[0])
    assert p["transactionType"] == "SALE"
    assert p["transactionStatus"] == "INVOICED"
    assert p["invoiceId"] == "INV-9"
    assert p["summary"] == "true"
    assert p["timeZone"] == "America/New_York"
    assert p["startDate"] == "2024-03-31T20:00:00"  # midnight UTC in New York (EDT)
    assert result.summaries == ({"count": 0},)


def test_bad_arguments_are_clear() -> None:
    client = make_client()
    with pytest.raises(ValueError, match="transaction_type='GIFT' is not one of"):
        client.transactions(NOW, NOW, transaction_type="GIFT")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        client.transactions(NOW, NOW, time_zone="Mars/Base")
    with pytest.raises(ValueError, match="auth='SEC9'"):
        make_client("SEC9")


@pytest.mark.parametrize("auth", ["SEC1", "SEC2"])
@responses.activate
def test_401_html_is_auth_error_without_token(auth: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses.get(URL, body=PAGE_401, status=401, content_type="text/html;charset=utf-8")
    client = make_client(auth)
    with pytest.raises(GPNAuthError) as info:
        client.transactions(NOW - timedelta(days=1), NOW)
    text = str(info.value)
    assert text.startswith("GPN refused the credentials (HTTP 401)")
    assert "client-1" in text
    assert CANARY not in text
    assert CANARY not in repr(info.value)
    assert CANARY not in repr(client)
    assert CANARY not in caplog.text
    assert info.value.__cause__ is None


@responses.activate
def test_400_json_error_message_is_kept() -> None:
    body = {"error": {"httpCode": 400, "message": "startDate='x': must be YYYY-MM-DDTHH:mm:SS"}}
    responses.get(URL, json=body, status=400)
    with pytest.raises(GPNError, match=r"HTTP 400.*startDate='x': must be") as info:
        make_client().transactions(NOW - timedelta(days=1), NOW)
    assert not isinstance(info.value, GPNAuthError)


@responses.activate
def test_non_json_200_is_gpn_error() -> None:
    responses.get(URL, body="<html>maintenance</html>", content_type="text/html")
    with pytest.raises(GPNError, match="without the expected JSON object"):
        make_client().transactions(NOW - timedelta(days=1), NOW)


@responses.activate
def test_5xx_is_retried_then_succeeds() -> None:
    responses.get(URL, status=503, body="busy")
    responses.get(URL, status=429, body="slow down")
    responses.get(URL, json={"transactions": [row("A", "2024-04-30T00:00:00Z")], "total": 1})
    result = make_client(backoff=0).transactions(NOW - timedelta(days=1), NOW)
    assert len(responses.calls) == 3
    assert [t.transaction_id for t in result.transactions] == ["A"]


@responses.activate
def test_5xx_after_retries_is_gpn_error() -> None:
    responses.get(URL, status=502, body="bad gateway")
    with pytest.raises(GPNError, match="HTTP 502"):
        make_client(backoff=0, max_retries=2).transactions(NOW - timedelta(days=1), NOW)
    assert len(responses.calls) == 3


@responses.activate
def test_connection_error_is_gpn_error_without_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses.get(URL, body=requests.ConnectionError(f"boom token={CANARY}"))
    with pytest.raises(GPNError, match="GPN request failed") as info:
        make_client("SEC1", max_retries=0).transactions(NOW - timedelta(days=1), NOW)
    assert CANARY not in str(info.value)
    assert CANARY not in caplog.text


@responses.activate
def test_bad_rows_are_skipped_and_named(caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        row("A", "2024-04-30T00:00:00Z"),
        row("B", "yesterday"),
        {"transactionId": "C"},
        "junk",
    ]
    responses.get(URL, json={"transactions": rows, "total": 4})
    result = make_client().transactions(NOW - timedelta(days=1), NOW)
    assert [t.transaction_id for t in result.transactions] == ["A"]
    assert len(result.problems) == 3
    assert (
        "transactionId='B': lastModifiedDate: not an ISO date-time: 'yesterday'"
        in (result.problems[0])
    )
    assert "transactionId='C'" in result.problems[1]
    assert "GPN row skipped" in caplog.text


def test_token_must_be_secret() -> None:
    with pytest.raises(TypeError, match="Secret"):
        GPNClient(BASE, "c", CANARY)  # type: ignore[arg-type]
