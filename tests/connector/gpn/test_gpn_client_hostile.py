"""Issue 9: the GPN client follows the CI client's rules: no redirects (the auth headers
would go along), capped answers (wire and decompressed), an overall deadline per request."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import responses

from connector.errors import GPNError
from connector.gpn import GPNClient
from connector.secrets import Secret
from connector.testing.hostile import HostileServer, gzip_bomb

BASE = "https://gpn.example.test"
URL = f"{BASE}/v3/transactions"
TOKEN = "gPn7Hostile2Tok9Xq4Lm8Zr"
NOW = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)


def _client(base: str = BASE, **kw: object) -> GPNClient:
    return GPNClient(base, "client-1", Secret(TOKEN), auth="SEC1", clock=lambda: NOW, **kw)  # type: ignore[arg-type]


def _fetch(client: GPNClient) -> object:
    return client.transactions(NOW - timedelta(days=1), NOW, overlap_hours=0)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.mark.parametrize("status", [302, 307])
def test_redirect_is_refused_and_the_headers_go_nowhere(
    rsps: responses.RequestsMock, status: int
) -> None:
    rsps.add(responses.GET, URL, status=status, headers={"Location": "https://evil.example/t"})
    rsps.add(responses.GET, "https://evil.example/t", json={"transactions": []})
    with pytest.raises(GPNError, match=r"redirect to host 'evil\.example'") as caught:
        _fetch(_client())
    assert TOKEN not in str(caught.value)
    assert len(rsps.calls) == 1


def test_answer_over_the_cap_is_refused(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, URL, body=json.dumps({"transactions": [], "pad": "x" * 20_000}))
    with pytest.raises(GPNError, match="max_response_bytes=5000"):
        _fetch(_client(max_response_bytes=5000))


def test_gzip_bomb_is_refused(rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.GET, URL, body=gzip_bomb(20 * 1024 * 1024), headers={"Content-Encoding": "gzip"}
    )
    with pytest.raises(GPNError, match="decompressed"):
        _fetch(_client(max_response_bytes=1024 * 1024))


def test_max_retries_zero_is_one_request(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, URL, status=503, body="busy")
    with pytest.raises(GPNError):
        _fetch(_client(max_retries=0))
    assert len(rsps.calls) == 1


@pytest.mark.socket
def test_slow_drip_ends_at_the_deadline() -> None:
    with HostileServer("drip_body", interval=0.3) as server:
        client = _client(server.url, timeout=2.0, call_deadline=1.5, max_retries=0)
        started = time.monotonic()
        with pytest.raises(GPNError, match=r"within the 1\.5 s deadline"):
            _fetch(client)
        assert time.monotonic() - started < 4.0
        client.close()


@pytest.mark.socket
def test_hostile_retry_after_never_stalls_past_the_deadline() -> None:
    # Before: urllib3's plain Retry honoured "Retry-After: 86400" (a day's sleep).
    with HostileServer("retry_after_day") as server:
        client = _client(server.url, call_deadline=2.0, max_retries=3)
        started = time.monotonic()
        with pytest.raises(GPNError, match=r"within the 2 s deadline"):
            _fetch(client)
        assert time.monotonic() - started < 2.0
        client.close()
        assert len(server.requests()) == 1
