"""The token never leaks: not in exceptions (message, repr, traceback chain), log lines at
DEBUG (ours and urllib3's), repr(client) or stats, on success and on every error path."""

from __future__ import annotations

import json
import logging
import socket
import traceback
from collections.abc import Callable
from typing import Any

import pytest
import responses

from connector.ci.client import CIClient, TrackingItem
from connector.errors import CIError
from connector.secrets import Secret

CANARY = "CanaryTok3nQx7Zp9Lm2Wv4Rt6Yu8Io"  # 31 chars, like a real CI token
PAGE = {
    "meta": {"no_of_pages": 0, "current_page": 0, "max_items_per_page": 250, "no_of_items": 0},
    "data": [],
    "success": True,
}


def _client(base_url: str, **kwargs: Any) -> CIClient:
    return CIClient(
        base_url=base_url,
        supplier_id="90001",
        token=Secret(CANARY),
        max_retries=1,
        backoff=0.0,
        timeout=2,
        sleep=lambda _s: None,
        **kwargs,
    )


def _assert_clean(client: CIClient, caplog: pytest.LogCaptureFixture, exc: Any = None) -> None:
    assert CANARY not in caplog.text
    for record in caplog.records:
        assert CANARY not in record.getMessage()
    assert CANARY not in repr(client)
    assert CANARY not in str(client)
    assert CANARY not in repr(client.stats)
    if exc is not None:
        assert CANARY not in str(exc)
        assert CANARY not in repr(exc)
        assert exc.__cause__ is None
        assert exc.__context__ is None
        assert CANARY not in "".join(traceback.format_exception(exc))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Each case: (server replies, call) on the real loopback server, so urllib3 logs its
# "GET /api/v4/get_orders?supplier_id=...&token=..." debug line.
CASES: dict[str, tuple[list[tuple[int, str, dict[str, str]]], Callable[[CIClient], Any]]] = {
    "success-get": ([(200, json.dumps(PAGE), {})], lambda c: c.fetch_all()),
    "success-post": ([(200, '{"success": true}', {})], lambda c: c.mark_exported([1])),
    "retry-then-ok": (
        [(503, "busy", {}), (200, json.dumps(PAGE), {})],
        lambda c: c.get_orders_page(),
    ),
    "exhausted-503": ([(503, f"down {CANARY}", {})], lambda c: c.get_orders_page()),
    "exhausted-429": ([(429, "", {"Retry-After": "0"})], lambda c: c.get_orders_page()),
    "html": ([(200, f"<html>token={CANARY}</html>", {})], lambda c: c.get_orders_page()),
    "business": (
        [(200, json.dumps({"success": False, "reason": f"bad call token={CANARY}"}), {})],
        lambda c: c.tracking_notification([TrackingItem(1, "ups", "T")]),
    ),
    "auth-401": ([(401, f"no {CANARY}", {})], lambda c: c.get_orders_page()),
    "auth-reason": (
        [(200, json.dumps({"success": False, "reason": f"Invalid token {CANARY}"}), {})],
        lambda c: c.get_orders_page(),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_token_on_any_path(case: str, server: Any, caplog: pytest.LogCaptureFixture) -> None:
    replies, call = CASES[case]
    for status, body, headers in replies:
        server.add(status, body, {"Content-Type": "text/json", **headers})
    caplog.set_level(logging.DEBUG)
    client = _client(server.url, protocol_retries=1)
    error: CIError | None = None
    try:
        call(client)
    except CIError as exc:
        error = exc
    if case.startswith(("success", "retry")):
        assert error is None
    else:
        assert error is not None
    # the token did go on the wire, and urllib3 did log the request line, redacted
    assert any(CANARY in seen.path or CANARY.encode() in seen.body for seen in server.seen)
    pool_lines = [r for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert any("/api/v4/" in r.getMessage() for r in pool_lines)
    _assert_clean(client, caplog, error)


def test_no_token_when_connection_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = _client(f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(CIError) as info:
        client.get_orders_page()
    assert "token=***" in str(info.value)  # the URL is in the message, masked
    _assert_clean(client, caplog, info.value)


@responses.activate
def test_no_token_with_responses_transport_errors(caplog: pytest.LogCaptureFixture) -> None:
    import requests

    caplog.set_level(logging.DEBUG)
    url = "https://ci.test/api/v4/get_orders"
    responses.add(responses.GET, url, body=requests.ConnectionError(f"boom {url}?token={CANARY}"))
    client = _client("https://ci.test")
    with pytest.raises(CIError) as info:
        client.get_orders_page()
    _assert_clean(client, caplog, info.value)


def test_repr_of_client_shows_mask() -> None:
    client = _client("https://ci.test")
    assert "***" in repr(client)
    assert "90001" in repr(client)
