"""BoundedAdapter's per-URL memory of the request line and pool key: the pool and request
line requests works out, found again the usual way once the manager dropped the pool."""

from __future__ import annotations

from pathlib import Path

from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest

from connector.ci.bounded import BoundedAdapter

URLS = (
    "http://ci.example/api/v4/tracking_notification",
    "http://ci.example:8080/api/v4/get_orders?page=2&token=t",
    "https://ci.example/api/v4/mark_exported",
    "https://ci.example:8443/api/v4/mark_exported",
)


def _prepared(url: str) -> PreparedRequest:
    request = PreparedRequest()
    request.prepare(method="POST", url=url, data="a=1")
    return request


def _pool(adapter: HTTPAdapter, url: str, verify: bool | str = True) -> object:
    return adapter.get_connection_with_tls_context(_prepared(url), verify, {}, None)


def test_the_pool_and_request_line_requests_gives() -> None:
    adapter = BoundedAdapter()
    for url in URLS:
        first = _pool(adapter, url)
        assert _pool(adapter, url) is first  # remembered
        # requests' own computation on the same manager finds the same pool.
        assert HTTPAdapter.get_connection_with_tls_context(adapter, _prepared(url), True) is first
        expected = HTTPAdapter().request_url(_prepared(url), {})
        assert adapter.request_url(_prepared(url), {}) == expected
        assert adapter.request_url(_prepared(url), {}) == expected
    assert len(adapter._pool_keys) == len(URLS)
    # verify=False is another pool (another key), as for requests.
    assert _pool(adapter, URLS[2], verify=False) is not _pool(adapter, URLS[2])


def test_a_pool_the_manager_dropped_is_made_again() -> None:
    adapter = BoundedAdapter(pool_connections=1)  # the manager keeps one pool
    first = _pool(adapter, URLS[0])
    other = _pool(adapter, URLS[1])  # evicts the first one
    again = _pool(adapter, URLS[0])
    assert again is not first
    assert again is not other
    assert _pool(adapter, URLS[0]) is again
    adapter.close()  # the manager drops every pool
    after = _pool(adapter, URLS[0])
    assert after is not again
    adapter.init_poolmanager(10, 10)  # another manager: its own pools
    assert _pool(adapter, URLS[0]) is not after
    assert _pool(adapter, URLS[0]) is _pool(adapter, URLS[0])


def test_a_ca_bundle_file_or_directory_is_looked_at_each_time(tmp_path: Path) -> None:
    adapter = BoundedAdapter()
    bundle = tmp_path / "ca"
    bundle.write_text("")
    as_file = _pool(adapter, URLS[2], verify=str(bundle))
    assert _pool(adapter, URLS[2], verify=str(bundle)) is as_file
    assert as_file.ca_certs == str(bundle)  # type: ignore[attr-defined]
    bundle.unlink()
    bundle.mkdir()  # the same path, now a directory: another pool, as requests makes
    as_dir = _pool(adapter, URLS[2], verify=str(bundle))
    assert as_dir is not as_file
    assert as_dir.ca_cert_dir == str(bundle)  # type: ignore[attr-defined]
    assert (
        HTTPAdapter.get_connection_with_tls_context(adapter, _prepared(URLS[2]), str(bundle))
        is as_dir
    )


def test_proxies_take_requests_path() -> None:
    adapter = BoundedAdapter()
    proxies = {"http": "http://proxy.example:3128"}
    request = _prepared(URLS[0])
    assert adapter.request_url(request, proxies) == URLS[0]  # proxied http: the full URL
    pool = adapter.get_connection_with_tls_context(request, True, proxies, None)
    assert pool.host == "proxy.example"
    assert adapter._pool_keys == {}
