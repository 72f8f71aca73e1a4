"""Issue 9, deliverable 1: the client against a hostile CI (or a broken network).

Unit cases use ``responses``; the drip, bomb and endless-body cases need a real socket and use
:class:`connector.testing.hostile.HostileServer` on 127.0.0.1 port 0. Each test fails on the
client before the fix (which followed redirects, read whole bodies, had only per-read
timeouts and retried three times with ``max_retries = 0``).
"""

from __future__ import annotations

import gzip
import json
import logging
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import responses

from connector.ci.client import CIClient
from connector.errors import CILimitError, CIProtocolError, CITransportError
from connector.models import Account, AccountOptions
from connector.secrets import Secret
from connector.testing.hostile import HostileServer, gzip_bomb, orders_page

BASE = "https://ci.test"
SUPPLIER = "4242"
TOKEN = "hX7kQ2mZ9pL4vR8tW3nY6bC1"
ORDERS = f"{BASE}/api/v4/get_orders"
MARK = f"{BASE}/api/v4/mark_exported"


def _client(base: str = BASE, **kw: Any) -> CIClient:
    kw.setdefault("backoff", 0.0)
    kw.setdefault("sleep", lambda _s: None)
    return CIClient(base_url=base, supplier_id=SUPPLIER, token=Secret(TOKEN), **kw)


def _envelope(**extra: Any) -> dict[str, Any]:
    meta = {"no_of_pages": 0, "current_page": 1, "max_items_per_page": 250, "no_of_items": 0}
    return {"success": True, "meta": meta, "data": [], **extra}


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# --- redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_an_error_naming_only_the_host(
    rsps: responses.RequestsMock, status: int
) -> None:
    rsps.add(
        responses.GET,
        ORDERS,
        status=status,
        headers={"Location": f"https://evil.example/x?token={TOKEN}"},
    )
    rsps.add(responses.GET, "https://evil.example/x", json=_envelope())
    with pytest.raises(CIProtocolError) as caught:
        _client().get_orders_page(1)
    message = str(caught.value)
    assert "evil.example" in message
    assert f"HTTP {status}" in message
    assert TOKEN not in message
    assert [c.request.url.split("?")[0] for c in rsps.calls] == [ORDERS]


def test_302_on_mark_exported_is_not_an_acknowledgement(rsps: responses.RequestsMock) -> None:
    # Before: requests turned the POST into an empty GET on the other host whose
    # {"success": true} was taken as CI's acknowledgement.
    rsps.add(responses.POST, MARK, status=302, headers={"Location": "https://evil.example/ok"})
    rsps.add(responses.GET, "https://evil.example/ok", json={"success": True})
    with pytest.raises(CIProtocolError, match=r"redirect to host 'evil\.example'"):
        _client().mark_exported([1, 2])
    assert len(rsps.calls) == 1


def test_redirect_over_a_real_socket_sends_nothing_to_the_other_host() -> None:
    with HostileServer("redirect") as target, HostileServer("redirect") as server:
        target.mode = "ok"
        server.redirect_to = f"{target.url}/api/v4/get_orders"
        other = target.url.removeprefix("http://")
        with pytest.raises(CIProtocolError, match=f"redirect to host '{other}'"):
            _client(server.url).get_orders_page(1)
        assert len(server.requests()) == 1
        assert target.requests() == []


# --- max_retries = 0 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 503, "body": "busy"},
        {"status": 200, "body": "<html>maintenance</html>"},
        {"status": 200, "body": '{"success": true, "meta": {'},
    ],
)
def test_max_retries_zero_sends_exactly_one_request(
    rsps: responses.RequestsMock, reply: dict[str, Any]
) -> None:
    rsps.add(responses.GET, ORDERS, **reply)
    with pytest.raises((CITransportError, CIProtocolError)):
        _client(max_retries=0).get_orders_page(1)
    assert len(rsps.calls) == 1


def test_max_retries_zero_from_the_account_options_over_a_real_socket() -> None:
    account = Account(
        name="hx",
        channel="groupon",
        supplier_id=SUPPLIER,
        token=Secret(TOKEN),
        options=AccountOptions(max_retries=0),
    )
    with HostileServer("html") as server:
        client = CIClient.for_account(replace(account, base_url=server.url))
        with pytest.raises(CIProtocolError):
            client.get_orders_page(1)
        client.close()
        assert len(server.requests()) == 1


# --- response size caps -------------------------------------------------------------------


def test_body_over_the_cap_is_refused(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, ORDERS, body=json.dumps(_envelope(pad="x" * 50_000)))
    with pytest.raises(CILimitError, match="max_response_bytes=10000"):
        _client(max_response_bytes=10_000).get_orders_page(1)
    assert len(rsps.calls) == 1  # not retried


def test_gzip_bomb_is_stopped_at_the_decompressed_cap(rsps: responses.RequestsMock) -> None:
    bomb = gzip_bomb(50 * 1024 * 1024)
    assert len(bomb) < 200_000
    rsps.add(responses.GET, ORDERS, body=bomb, headers={"Content-Encoding": "gzip"})
    tracemalloc.start()
    try:
        with pytest.raises(CILimitError, match="decompressed"):
            _client(max_response_bytes=1024 * 1024).get_orders_page(1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak


def test_gzip_answer_within_the_cap_is_decoded(rsps: responses.RequestsMock) -> None:
    body = gzip.compress(json.dumps(_envelope()).encode())
    rsps.add(responses.GET, ORDERS, body=body, headers={"Content-Encoding": "gzip"})
    page = _client().get_orders_page(1)
    assert page.records == []
    assert rsps.calls[0].request.headers["Accept-Encoding"] == "gzip, deflate"


def test_unrequested_content_encoding_is_refused(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, ORDERS, body=b"\x00\x01", headers={"Content-Encoding": "br"})
    with pytest.raises(CILimitError, match="Content-Encoding 'br' was not asked for"):
        _client().get_orders_page(1)


# --- page and item caps -------------------------------------------------------------------


def test_lying_counters_stop_before_page_one_is_staged(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, ORDERS, body=orders_page(1, 1118))
    pages = _client().iter_pages()
    with pytest.raises(CILimitError, match=r"no_of_pages=1118.*max_pages_per_listing=400"):
        next(pages)
    assert len(rsps.calls) == 1


def test_items_cap_stops_before_the_page_that_crosses_it(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, ORDERS, body=orders_page(1, 2))
    client = _client(max_items=600, max_pages=1)
    with pytest.raises(CILimitError, match="max_pages_per_listing=1"):
        list(client.iter_pages())
    rsps.reset()
    # Counters that lie low: page 1 claims 390 items, the pages deliver 250 each.
    first = json.loads(orders_page(1, 3))
    first["meta"]["no_of_items"] = 390
    rsps.add(responses.GET, ORDERS, json=first)
    rsps.add(responses.GET, ORDERS, body=orders_page(2, 3))
    pages = _client(max_items=400).iter_pages()
    assert len(next(pages).records) == 250
    with pytest.raises(CILimitError, match=r"500 records by page 2.*max_items_per_listing=400"):
        next(pages)


def test_items_delivered_beyond_the_counters_are_capped(rsps: responses.RequestsMock) -> None:
    # Counters claim one small page; the page itself carries more records than allowed.
    body = json.loads(orders_page(1, 1))
    body["meta"]["no_of_items"] = 1
    rsps.add(responses.GET, ORDERS, json=body)
    with pytest.raises(CILimitError, match="250 records by page 1"):
        next(_client(max_items=100).iter_pages())


# --- deadlines ----------------------------------------------------------------------------


def test_an_exhausted_budget_refuses_to_call(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, ORDERS, json=_envelope())
    client = _client()
    with client.budget(0.0, "sync"), pytest.raises(CILimitError, match="sync deadline"):
        client.get_orders_page(1)
    assert len(rsps.calls) == 0
    assert client.get_orders_page(1).records == []  # outside the block: the call's own deadline


def test_retry_backoff_never_sleeps_past_the_deadline(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, ORDERS, body="<html/>")
    slept: list[float] = []
    client = _client(backoff=5.0, sleep=slept.append, call_deadline=3.0, max_retries=2)
    with pytest.raises(CITransportError, match="call deadline of 3 s"):
        client.get_orders_page(1)
    assert slept == []


@pytest.mark.socket
@pytest.mark.parametrize("mode", ["drip_body", "drip_headers"])
def test_slow_drip_ends_at_the_call_deadline(mode: str) -> None:
    # One byte every 0.3 s never trips the 2 s per-read timeout; the 1.5 s deadline must.
    with HostileServer(mode, interval=0.3) as server:
        client = _client(server.url, timeout=2.0, call_deadline=1.5, max_retries=1)
        started = time.monotonic()
        with pytest.raises(CITransportError, match=r"call deadline of 1\.5 s") as caught:
            client.get_orders_page(1)
        elapsed = time.monotonic() - started
        client.close()
    assert elapsed < 4.0, elapsed  # generous: the deadline is 1.5 s
    assert TOKEN not in str(caught.value)


@pytest.mark.socket
@pytest.mark.parametrize("mode", ["huge", "huge_declared"])
def test_endless_body_is_cut_at_the_cap(mode: str) -> None:
    with HostileServer(mode) as server:
        client = _client(server.url, max_response_bytes=2 * 1024 * 1024, timeout=5.0)
        with pytest.raises(CILimitError, match="larger than 2097152 bytes"):
            client.get_orders_page(1)
        client.close()
        assert len(server.requests()) == 1


@pytest.mark.socket
def test_gzip_bomb_over_a_real_socket() -> None:
    with HostileServer("gzip_bomb", bomb_bytes=64 * 1024 * 1024) as server:
        client = _client(server.url, max_response_bytes=1024 * 1024)
        with pytest.raises(CILimitError, match="decompressed"):
            client.get_orders_page(1)
        client.close()


@pytest.mark.socket
def test_retried_503_with_an_endless_body_is_not_drained() -> None:
    # urllib3 drains the body of an answer it retries; an endless 503 must not hang the call.
    with HostileServer("status_503_endless") as server:
        client = _client(server.url, max_retries=2, call_deadline=10.0, timeout=2.0)
        started = time.monotonic()
        with pytest.raises(CITransportError, match="HTTP 503 after 2 retries"):
            client.get_orders_page(1)
        assert time.monotonic() - started < 8.0
        client.close()
        assert len(server.requests()) == 3


@pytest.mark.socket
def test_hostile_retry_after_never_stalls_past_the_deadline() -> None:
    with HostileServer("retry_after_day") as server:
        slept: list[float] = []
        client = _client(server.url, call_deadline=5.0, max_retries=3, sleep=slept.append)
        with pytest.raises(CITransportError, match="call deadline of 5 s"):
            client.get_orders_page(1)
        assert slept == []  # capped at 60 s, which is past the deadline: not slept at all
        client.close()


@pytest.mark.socket
@pytest.mark.parametrize(
    "mode", ["redirect", "drip_body", "huge", "gzip_bomb", "status_503_endless", "html"]
)
def test_canary_token_never_logged_on_hostile_paths(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with HostileServer(mode, interval=0.2, bomb_bytes=16 * 1024 * 1024) as server:
        client = _client(
            server.url, call_deadline=1.0, max_retries=1, max_response_bytes=1024 * 1024
        )
        with pytest.raises((CITransportError, CIProtocolError)) as caught:
            client.get_orders_page(1)
        client.close()
        assert any(TOKEN in r.target for r in server.requests())  # it was really sent there
    assert TOKEN not in caplog.text
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)
