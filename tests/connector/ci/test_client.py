"""CIClient against `responses` (request shapes, envelopes, errors) and a real loopback server
(urllib3 retries, Retry-After, connection errors)."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses.registries import OrderedRegistry

from connector.ci.client import (
    CIClient,
    LineitemTrackingItem,
    TrackingItem,
    format_window,
)
from connector.errors import CIAuthError, CIBusinessError, CIProtocolError, CITransportError
from connector.models import Account, AccountOptions
from connector.secrets import Secret
from tests.connector.ci._support import BASE, ORDERS_URL
from tests.connector.ci._support import make_client as _client

EXAMPLES = Path(__file__).parents[2] / "fixtures" / "ci-examples"


def _page(number: int, pages: int, items: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    meta = {
        "no_of_pages": pages,
        "current_page": number,
        "max_items_per_page": 250,
        "no_of_items": items,
    }
    return {"meta": meta, "data": records, "success": True}


def _records(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"orderid": str(1000 + start + i)} for i in range(n)]


def _form(call: Any) -> dict[str, str]:
    body = call.request.body
    text = body.decode() if isinstance(body, bytes) else body
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _query(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


# --- get_orders and pagination ----------------------------------------------------------------


@responses.activate
def test_fetch_all_reads_three_pages_in_order() -> None:
    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        number = int(parse_qs(urlsplit(request.url).query)["page"][0])
        count = 250 if number < 3 else 10
        return 200, {}, json.dumps(_page(number, 3, 510, _records(count, number * 1000)))

    responses.add_callback(responses.GET, ORDERS_URL, callback=reply)
    pages = _client().fetch_all()
    assert [p.meta.current_page for p in pages] == [1, 2, 3]
    assert sum(len(p.records) for p in pages) == 510
    assert [_query(c)["page"] for c in responses.calls] == ["1", "2", "3"]
    query = _query(responses.calls[0])
    assert query["supplier_id"] == "90001"
    assert query["token"] == "tok-" + "x" * 27
    assert "start_datetime" not in query


@responses.activate
def test_fetch_all_empty_listing_is_one_call() -> None:
    body = (EXAMPLES / "get_orders_empty.json").read_text()
    responses.add(responses.GET, ORDERS_URL, body=body, content_type="text/json")
    client = _client()
    pages = client.fetch_all()
    assert len(pages) == 1
    assert pages[0].meta.no_of_pages == 0
    assert pages[0].records == []
    assert client.stats.calls == {"get_orders": 1}


@responses.activate
def test_example_page_parses_as_envelope() -> None:
    body = (EXAMPLES / "get_orders_v4_page2_of_2.json").read_text()
    responses.add(responses.GET, ORDERS_URL, body=body, content_type="text/json")
    page = _client().get_orders_page(2)
    assert page.meta.no_of_items == 254
    assert len(page.records) == 4
    assert page.records[0]["orderid"] == "1499000251"


@responses.activate
def test_pages_msgspec_decodes_are_marked_plain_and_equal_to_the_json_module() -> None:
    body = (EXAMPLES / "get_orders_v4_page2_of_2.json").read_text()
    responses.add(responses.GET, ORDERS_URL, body=body, content_type="text/json")
    page = _client().get_orders_page(2)
    assert page.plain_json
    assert page.records == json.loads(body)["data"]


@pytest.mark.parametrize(
    "value",
    ["NaN", "Infinity", "1e400", '"\\ud800"'],
    ids=["nan", "infinity", "overflow", "lone-surrogate"],
)
@responses.activate
def test_pages_only_the_json_module_reads_are_read_as_before_and_not_plain(value: str) -> None:
    records = _records(1)
    body = json.dumps(_page(1, 1, 1, records))[:-1] + f', "extra": {value}}}'
    responses.add(responses.GET, ORDERS_URL, body=body, content_type="text/json")
    page = _client().get_orders_page(1)
    assert not page.plain_json
    assert page.records == records


@responses.activate
def test_a_utf8_bom_body_is_still_read() -> None:
    body = "\ufeff" + json.dumps(_page(1, 1, 1, _records(1)))
    responses.add(responses.GET, ORDERS_URL, body=body.encode(), content_type="text/json")
    page = _client().get_orders_page(1)
    assert not page.plain_json
    assert page.records == _records(1)


@responses.activate
def test_lying_page_count_is_capped_by_item_count(caplog: pytest.LogCaptureFixture) -> None:
    # 1000 pages claimed for 300 items: at most ceil(300/250)+1 = 3 pages are read.
    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        number = int(parse_qs(urlsplit(request.url).query)["page"][0])
        return 200, {}, json.dumps(_page(number, 1000, 300, _records(250, number * 1000)))

    responses.add_callback(responses.GET, ORDERS_URL, callback=reply)
    with caplog.at_level(logging.WARNING, logger="connector.ci.client"):
        pages = _client().fetch_all()
    assert len(pages) == 3
    assert len(responses.calls) == 3
    assert "anomaly" in caplog.text


@responses.activate
def test_smaller_pages_than_documented_are_all_read() -> None:
    # A listing served 50 per page (not the documented 250): all 6 pages are read.
    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        number = int(parse_qs(urlsplit(request.url).query)["page"][0])
        return 200, {}, json.dumps(_page(number, 6, 300, _records(50, number * 1000)))

    responses.add_callback(responses.GET, ORDERS_URL, callback=reply)
    pages = _client().fetch_all()
    assert [len(p.records) for p in pages] == [50] * 6


@responses.activate
def test_changing_page_count_keeps_first_pages_count(caplog: pytest.LogCaptureFixture) -> None:
    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        number = int(parse_qs(urlsplit(request.url).query)["page"][0])
        # page 1 says 2 pages; later pages claim 50
        pages = 2 if number == 1 else 50
        return 200, {}, json.dumps(_page(number, pages, 12000, _records(250, number * 1000)))

    responses.add_callback(responses.GET, ORDERS_URL, callback=reply)
    with caplog.at_level(logging.WARNING, logger="connector.ci.client"):
        pages = _client().fetch_all()
    assert len(pages) == 2
    assert len(responses.calls) == 2
    assert "keeping page 1's count" in caplog.text


@responses.activate
def test_empty_page_before_the_end_stops_reading() -> None:
    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        number = int(parse_qs(urlsplit(request.url).query)["page"][0])
        records = _records(250) if number == 1 else []
        return 200, {}, json.dumps(_page(number, 4, 1000, records))

    responses.add_callback(responses.GET, ORDERS_URL, callback=reply)
    pages = _client().fetch_all()
    assert len(pages) == 1
    assert len(responses.calls) == 2


@responses.activate
def test_window_is_sent_in_utc_minutes() -> None:
    responses.add(responses.GET, ORDERS_URL, json=_page(0, 0, 0, []))
    cet = timezone(timedelta(hours=1))
    start = datetime(2024, 3, 4, 1, 0, tzinfo=cet)  # 00:00 UTC
    _client().get_orders_page(1, (start, start + timedelta(hours=23)))
    query = _query(responses.calls[0])
    assert query["start_datetime"] == "03/04/2024 00:00"
    assert query["end_datetime"] == "03/04/2024 23:00"
    assert query["page"] == "1"


@pytest.mark.parametrize(
    "window",
    [
        (datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 5, tzinfo=UTC)),  # exactly 24 h
        (datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 6, tzinfo=UTC)),
        (datetime(2024, 3, 5, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC)),  # reversed
        (datetime(2024, 3, 4), datetime(2024, 3, 4, 5)),  # naive
    ],
)
@responses.activate
def test_bad_windows_are_refused_before_any_call(window: tuple[datetime, datetime]) -> None:
    with pytest.raises(ValueError):
        _client().get_orders_page(1, window)
    assert len(responses.calls) == 0


def test_window_just_under_a_day_is_allowed() -> None:
    start = datetime(2024, 3, 4, tzinfo=UTC)
    assert format_window((start, start + timedelta(hours=23, minutes=59))) == (
        "03/04/2024 00:00",
        "03/04/2024 23:59",
    )


@pytest.mark.parametrize("page", [0, -1, True, "2"])
def test_bad_page_number_is_refused(page: Any) -> None:
    with pytest.raises(ValueError):
        _client().get_orders_page(page)


# --- writes -----------------------------------------------------------------------------------


@responses.activate
def test_mark_exported_sends_compact_json_ids_in_form_body() -> None:
    responses.add(responses.POST, f"{BASE}/api/v4/mark_exported", json={"success": True})
    _client().mark_exported([612004511, 612004530])
    call = responses.calls[0]
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = _form(call)
    assert form["ci_lineitem_ids"] == "[612004511,612004530]"
    assert json.loads(form["ci_lineitem_ids"]) == [612004511, 612004530]
    assert form["supplier_id"] == "90001"
    assert form["token"] == "tok-" + "x" * 27
    assert "token" not in (urlsplit(call.request.url).query or "")


@responses.activate
def test_mark_exported_nothing_makes_no_call_and_bad_ids_are_refused() -> None:
    client = _client()
    client.mark_exported([])
    assert len(responses.calls) == 0
    with pytest.raises(ValueError):
        client.mark_exported([True])
    with pytest.raises(ValueError):
        client.mark_exported([0])


@responses.activate
def test_tracking_notification_body() -> None:
    responses.add(responses.POST, f"{BASE}/api/v2/tracking_notification", json={"success": True})
    _client(api_version="v2").tracking_notification(
        [
            TrackingItem(612004511, "ups", "1Z999AA10123456784"),
            TrackingItem(612004530, "UPS", "1Z999AA10123456785", quantity=2),
        ]
    )
    info = _form(responses.calls[0])["tracking_info"]
    assert json.loads(info) == [
        {"carrier": "ups", "ci_lineitem_id": 612004511, "tracking": "1Z999AA10123456784"},
        {
            "carrier": "UPS",
            "ci_lineitem_id": 612004530,
            "tracking": "1Z999AA10123456785",
            "quantity": 2,
        },
    ]
    assert " " not in info  # compact separators


@responses.activate
def test_lineitem_tracking_notification_body_v4() -> None:
    url = f"{BASE}/api/v4/lineitem_tracking_notification"
    responses.add(responses.POST, url, json={"success": True})
    _client().lineitem_tracking_notification(
        [
            LineitemTrackingItem("1302200506", "glsit", "ZZ000000001"),
            LineitemTrackingItem("1302200507", "glsit", "ZZ000000001", quantity=1),
        ]
    )
    elements = json.loads(_form(responses.calls[0])["tracking_info"])
    assert elements[0] == {
        "carrier": "glsit",
        "fulfillment_lineitem_id": "1302200506",
        "tracking": "ZZ000000001",
    }
    assert elements[1]["quantity"] == 1
    assert isinstance(elements[1]["fulfillment_lineitem_id"], str)


def test_version_rules() -> None:
    with pytest.raises(ValueError):
        _client(api_version="v2").lineitem_tracking_notification(
            [LineitemTrackingItem("1", "ups", "T")]
        )
    with pytest.raises(ValueError):
        _client(api_version="v3").mark_exported([1])
    with pytest.raises(ValueError):
        _client(api_version="v3").tracking_notification([TrackingItem(1, "ups", "T")])
    with pytest.raises(ValueError):
        _client(api_version="v5")


@responses.activate
def test_v3_reads_are_allowed() -> None:
    responses.add(responses.GET, f"{BASE}/api/v3/get_orders", json=_page(0, 0, 0, []))
    assert _client(api_version="v3").get_orders_page().meta.no_of_pages == 0


# --- failures ---------------------------------------------------------------------------------


@responses.activate(registry=OrderedRegistry)
def test_503_then_200_is_retried_by_urllib3() -> None:
    responses.add(responses.GET, ORDERS_URL, status=503, body="busy")
    responses.add(responses.GET, ORDERS_URL, json=_page(0, 0, 0, []))
    client = _client()
    assert client.get_orders_page().meta.no_of_items == 0
    assert len(responses.calls) == 2
    assert client.stats.retries == {"503": 1}
    assert client.stats.calls == {"get_orders": 1}


@responses.activate
def test_persistent_500_is_a_transport_error_with_status() -> None:
    responses.add(responses.POST, f"{BASE}/api/v4/mark_exported", status=500, body="oops")
    client = _client(max_retries=3)
    with pytest.raises(CITransportError) as info:
        client.mark_exported([1])
    assert info.value.status == 500
    assert info.value.endpoint == "mark_exported"
    assert len(responses.calls) == 4  # first try + 3 retries, POST included
    assert client.stats.retries == {"500": 3}


@responses.activate
def test_connection_error_is_a_transport_error() -> None:
    responses.add(responses.GET, ORDERS_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(CITransportError) as info:
        _client().get_orders_page()
    assert info.value.status is None
    assert "refused" in str(info.value)


@responses.activate
def test_html_page_is_a_protocol_error_after_app_retries() -> None:
    responses.add(
        responses.GET, ORDERS_URL, body="<html><body>Bad gateway</body></html>", status=200
    )
    slept: list[float] = []
    client = _client(backoff=0.5, sleep=slept.append, protocol_retries=2)
    with pytest.raises(CIProtocolError) as info:
        client.get_orders_page()
    assert "not a JSON object" in str(info.value)
    assert len(responses.calls) == 3
    assert slept == [1.0, 2.0]
    stats = client.stats
    assert stats.protocol_errors == 3
    assert stats.retries == {"protocol": 2}
    assert stats.calls == {"get_orders": 3}


@responses.activate(registry=OrderedRegistry)
def test_protocol_error_then_good_answer_recovers() -> None:
    responses.add(responses.POST, f"{BASE}/api/v4/mark_exported", body='{"succ')
    responses.add(responses.POST, f"{BASE}/api/v4/mark_exported", json={"success": True})
    client = _client()
    client.mark_exported([5])
    assert client.stats.protocol_errors == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"meta": {"no_of_pages": 1', "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ('{"data": []}', "no boolean 'success'"),
        ('{"success": true, "data": []}', "'meta'"),
        (
            '{"success": true, "data": {}, "meta": {"no_of_pages": 1, "current_page": 1,'
            ' "max_items_per_page": 250, "no_of_items": 1}}',
            "'data' is not a list",
        ),
        (
            '{"success": true, "data": [], "meta": {"no_of_pages": "1", "current_page": 1,'
            ' "max_items_per_page": 250, "no_of_items": 1}}',
            "meta.no_of_pages",
        ),
    ],
)
@responses.activate
def test_bad_envelopes_are_protocol_errors(body: str, fragment: str) -> None:
    responses.add(responses.GET, ORDERS_URL, body=body)
    with pytest.raises(CIProtocolError) as info:
        _client(protocol_retries=0).get_orders_page()
    assert fragment in str(info.value)


@responses.activate
def test_success_false_is_a_business_error_with_reason() -> None:
    body = (EXAMPLES / "mark_exported_failure.json").read_text()
    responses.add(responses.POST, f"{BASE}/api/v4/mark_exported", body=body)
    client = _client()
    with pytest.raises(CIBusinessError) as info:
        client.mark_exported([1])
    assert type(info.value) is CIBusinessError
    assert info.value.reason == "Invalid ci_lineitem_ids"
    assert info.value.status == 200
    assert len(responses.calls) == 1  # a refusal is not retried
    assert client.stats.failures == {"CIBusinessError": 1}


@responses.activate
def test_4xx_with_json_failure_is_a_business_error_with_status() -> None:
    responses.add(
        responses.POST,
        f"{BASE}/api/v4/tracking_notification",
        status=400,
        json={"success": False, "reason": "Unknown carrier code: XYZ"},
    )
    with pytest.raises(CIBusinessError) as info:
        _client().tracking_notification([TrackingItem(1, "XYZ", "T1")])
    assert info.value.status == 400
    assert info.value.reason == "Unknown carrier code: XYZ"


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (401, None),
        (403, {"success": False, "reason": "Forbidden"}),
        (200, {"success": False, "reason": "Invalid token or supplier_id"}),
    ],
)
@responses.activate
def test_bad_credentials_are_auth_errors(status: int, payload: Any) -> None:
    if payload is None:
        responses.add(responses.GET, ORDERS_URL, status=status, body="Unauthorized")
    else:
        responses.add(responses.GET, ORDERS_URL, status=status, json=payload)
    with pytest.raises(CIAuthError) as info:
        _client().get_orders_page()
    assert info.value.status == status
    assert len(responses.calls) == 1


# --- real socket: urllib3 retries, Retry-After, connection refused -------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_retried_then_transport_error() -> None:
    client = _client(base_url=f"http://127.0.0.1:{_closed_port()}", max_retries=3, timeout=2)
    with pytest.raises(CITransportError) as info:
        client.get_orders_page()
    assert info.value.status is None
    assert "ConnectionError" in str(info.value)
    assert client.stats.retries == {"ConnectionError": 3}
    assert client.stats.failures == {"CITransportError": 1}


def test_retry_after_is_honoured(server: Any) -> None:
    server.add(429, '{"success": false, "reason": "slow down"}', {"Retry-After": "1"})
    server.add(200, json.dumps(_page(0, 0, 0, [])))
    client = _client(base_url=server.url, sleep=time.sleep)
    started = time.monotonic()
    client.get_orders_page()
    elapsed = time.monotonic() - started
    assert elapsed >= 0.9
    assert elapsed < 5
    assert len(server.seen) == 2
    assert client.stats.retries == {"429": 1}


def test_hostile_retry_after_is_capped(server: Any) -> None:
    server.add(503, "down", {"Retry-After": "86400"})
    server.add(200, '{"success": true}')
    slept: list[float] = []
    client = _client(base_url=server.url, sleep=slept.append, retry_after_cap=7)
    client.mark_exported([1])
    assert slept == [7]


def test_exhausted_429_is_a_transport_error(server: Any) -> None:
    server.add(429, "", {"Retry-After": "0"})
    client = _client(base_url=server.url, max_retries=2)
    with pytest.raises(CITransportError) as info:
        client.get_orders_page()
    assert info.value.status == 429
    assert len(server.seen) == 3


def test_backoff_grows_between_retries(server: Any) -> None:
    server.add(502, "x").add(502, "x").add(502, "x").add(200, '{"success": true}')
    slept: list[float] = []
    client = _client(base_url=server.url, max_retries=3, backoff=0.1, sleep=slept.append)
    client.mark_exported([1])
    # urllib3: no sleep before the first retry, then factor * 2**n plus jitter <= factor
    assert len(slept) == 2
    assert 0.2 <= slept[0] <= 0.3
    assert 0.4 <= slept[1] <= 0.5


def test_read_timeout_is_a_transport_error() -> None:
    # Listen without accepting replies: a socket that never answers.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        port = sock.getsockname()[1]
        client = _client(base_url=f"http://127.0.0.1:{port}", max_retries=1, timeout=0.2)
        with pytest.raises(CITransportError):
            client.get_orders_page()
    assert client.stats.retries == {"ReadTimeout": 1}


# --- throttle, stats, construction ------------------------------------------------------------


@responses.activate
def test_requests_per_second_spaces_calls() -> None:
    responses.add(responses.POST, f"{BASE}/api/v4/mark_exported", json={"success": True})
    client = _client(requests_per_second=20, supplier_id="throttled-1")
    started = time.monotonic()
    for _ in range(5):
        client.mark_exported([1])
    assert time.monotonic() - started >= 4 / 20 - 0.01


@responses.activate(registry=OrderedRegistry)
def test_stats_snapshot_is_frozen_and_detached() -> None:
    responses.add(responses.GET, ORDERS_URL, status=503)
    responses.add(responses.GET, ORDERS_URL, json=_page(0, 0, 0, []))
    responses.add(responses.POST, f"{BASE}/api/v4/mark_exported", json={"success": True})
    client = _client()
    client.get_orders_page()
    client.mark_exported([1])
    stats = client.stats
    assert stats.calls == {"get_orders": 1, "mark_exported": 1}
    assert stats.total_retries == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.protocol_errors = 5  # type: ignore[misc]
    stats.calls["get_orders"] = 99
    assert client.stats.calls["get_orders"] == 1


@responses.activate
def test_for_account_uses_account_settings() -> None:
    account = Account(
        name="it",
        channel="groupon",
        supplier_id="90002",
        token=Secret("acct-" + "y" * 26),
        api_version="v2",
        base_url=BASE + "/",
        options=AccountOptions(timeout_seconds=7, max_retries=1, backoff_seconds=0.0),
    )
    client = CIClient.for_account(account)
    assert client.api_version == "v2"
    assert client.timeout == 7
    assert client.max_retries == 1
    responses.add(responses.GET, f"{BASE}/api/v2/get_orders", json=_page(0, 0, 0, []))
    client.get_orders_page()
    assert _query(responses.calls[0])["supplier_id"] == "90002"


def test_given_session_gets_retries_mounted(server: Any) -> None:
    server.add(503, "busy").add(200, '{"success": true}')
    session = requests.Session()
    client = _client(base_url=server.url, session=session)
    client.mark_exported([1])
    client.close()
    assert client.stats.retries == {"503": 1}
    # the caller's session stays usable: the client does not close what it did not open
    assert session.get(server.url + "/api/v4/x", timeout=2).status_code == 200


@responses.activate
def test_mark_exported_ids_of_int_subclasses_are_checked_one_by_one() -> None:
    # Not plain ints: each id goes through the full check (the fast path takes plain ints).
    class Id(int):
        pass

    responses.add(responses.POST, f"{BASE}/api/v4/mark_exported", json={"success": True})
    _client().mark_exported([Id(5), 7])
    assert _form(responses.calls[0])["ci_lineitem_ids"] == "[5,7]"
    with pytest.raises(ValueError):
        _client().mark_exported([5, -1])
    with pytest.raises(ValueError):
        _client().mark_exported([5, False])
    assert len(responses.calls) == 1
