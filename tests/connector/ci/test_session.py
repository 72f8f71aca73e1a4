"""EnvOnceSession: the environment's proxies and CA bundle, read once per host, same answer
as ``requests``' own merge."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import responses
from hypothesis import given
from hypothesis import strategies as st

from connector.ci.client import CIClient
from connector.ci.session import FORM_CONTENT_TYPE, EnvOnceSession, form_body
from connector.secrets import Secret

URL = "https://ci.example.test/v4/tracking_notification"


def _both(
    url: str, proxies: dict[str, str] | None = None, verify: bool | None = None
) -> tuple[Any, Any]:
    ours = EnvOnceSession().merge_environment_settings(url, dict(proxies or {}), None, verify, None)
    theirs = requests.Session().merge_environment_settings(
        url, dict(proxies or {}), None, verify, None
    )
    return ours, theirs


def test_same_answer_as_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "bypassed.example.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    ours, theirs = _both(URL)
    assert ours == theirs
    assert ours["proxies"]["https"] == "http://proxy.internal:3128"
    assert ours["verify"] == "/etc/ssl/corp.pem"
    # NO_PROXY still bypasses, and an explicit verify/no_proxy still wins.
    ours, theirs = _both("https://bypassed.example.test/v4/x")
    assert ours == theirs
    assert "https" not in ours["proxies"]
    ours, theirs = _both(URL, {"no_proxy": "ci.example.test"}, verify=False)
    assert ours == theirs
    assert "https" not in ours["proxies"]
    assert ours["verify"] is False


def test_environment_read_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = requests.utils.get_environ_proxies

    def counting(url: str, no_proxy: str | None = None) -> dict[str, str]:
        calls.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr("connector.ci.session.get_environ_proxies", counting)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    session = EnvOnceSession()
    for _ in range(5):
        settings = session.merge_environment_settings(URL, {}, None, None, None)
        assert settings["proxies"]["https"] == "http://proxy.internal:3128"
    session.merge_environment_settings("https://other.example.test/x", {}, None, None, None)
    assert len(calls) == 2


def test_trust_env_off_ignores_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    session = EnvOnceSession()
    session.trust_env = False
    settings = session.merge_environment_settings(URL, {}, None, None, None)
    assert settings["proxies"] == {}
    assert settings["verify"] is True


@responses.activate
def test_client_uses_it_and_calls_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    client = CIClient(
        base_url="https://ci.example.test", supplier_id="1", token=Secret("tok-secret-1")
    )
    assert isinstance(client._session_here(), EnvOnceSession)
    responses.post("https://ci.example.test/api/v4/tracking_notification", json={"success": True})
    from connector.ci.client import TrackingItem

    client.tracking_notification([TrackingItem(ci_lineitemid=7, carrier="ups", tracking="1Z")])
    client.tracking_notification([TrackingItem(ci_lineitemid=8, carrier="ups", tracking="1Z")])
    assert len(responses.calls) == 2


def test_form_body_is_what_requests_sends() -> None:
    payload = {
        "supplier_id": "42",
        "token": "a b&c=é/+",
        "tracking_info": '[{"carrier": "ups", "tracking": "1Z 99"}]',
        "skipped": None,
    }
    prepared = requests.Request("POST", URL, data=payload).prepare()
    assert form_body(payload) == prepared.body
    assert prepared.headers["Content-Type"] == FORM_CONTENT_TYPE


def test_session_proxies_still_merged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    ours, theirs = EnvOnceSession(), requests.Session()
    for s in (ours, theirs):
        s.proxies = {"https": "http://session.proxy:8080"}
    args: tuple[Any, ...] = (URL, {"http": "http://req.proxy:1", "ftp": None}, None, None, None)
    assert ours.merge_environment_settings(*args) == theirs.merge_environment_settings(*args)
    bare = EnvOnceSession().merge_environment_settings(*args)
    assert bare["proxies"] == {"http": "http://req.proxy:1"}


def _prepared_both(
    url: str, data: Any, headers: dict[str, str] | None = None, setup: Any = None
) -> tuple[requests.PreparedRequest, requests.PreparedRequest]:
    ours, theirs = EnvOnceSession(), requests.Session()
    if setup is not None:
        setup(ours)
        setup(theirs)
    request = requests.Request("POST", url, data=data, headers=headers, params={})
    return ours.prepare_request(request), theirs.prepare_request(request)


def _same(ours: requests.PreparedRequest, theirs: requests.PreparedRequest) -> None:
    for name in ("method", "url", "body", "hooks", "_body_position"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert list(ours.headers.items()) == list(theirs.headers.items())
    assert type(ours._cookies) is type(theirs._cookies)
    assert [(c.name, c.value) for c in ours._cookies] == [
        (c.name, c.value) for c in theirs._cookies
    ]


@pytest.mark.parametrize(
    ("url", "headers", "setup"),
    [
        (URL, {"Accept-Encoding": "gzip, deflate", "Content-Type": FORM_CONTENT_TYPE}, None),
        ("http://127.0.0.1:8080/api/v4/x", {"content-length": "99"}, None),
        ("https://CI.Example.test:443/a b/ü?x=1", None, None),
        (URL, {"X-Req": "r"}, lambda s: s.headers.update({"X-Session": "s", "Accept": None})),
    ],
)
def test_prepared_post_is_what_requests_prepares(
    url: str, headers: dict[str, str] | None, setup: Any
) -> None:
    body = form_body({"supplier_id": "42", "token": "a b&c=é", "tracking_info": "[1]"})
    for _ in range(2):  # the second time from the caches
        _same(*_prepared_both(url, body, headers, setup))


def test_prepared_post_falls_back_for_what_it_does_not_handle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    seen: list[str] = []
    real = requests.Session.prepare_request

    def counting(self: requests.Session, request: requests.Request) -> Any:
        seen.append(str(request.url))
        return real(self, request)

    monkeypatch.setattr(requests.Session, "prepare_request", counting)
    # Credentials in the URL, session cookies, auth, a dict body: requests' own path.
    ours, theirs = _prepared_both("https://u:p@ci.example.test/x", "a=1")
    _same(ours, theirs)
    assert ours.headers["Authorization"].startswith("Basic ")
    ours, theirs = _prepared_both(URL, "a=1", setup=lambda s: s.cookies.set("lb", "7"))
    _same(ours, theirs)
    assert ours.headers["Cookie"] == "lb=7"
    ours, theirs = _prepared_both(URL, "a=1", setup=lambda s: setattr(s, "auth", ("u", "p")))
    _same(ours, theirs)
    _same(*_prepared_both(URL, {"a": "1"}))
    # A .netrc entry for the host: its Basic auth is applied as requests applies it.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine ci.example.test login me password pw\n")
    monkeypatch.setenv("NETRC", str(netrc))
    ours, theirs = _prepared_both(URL, "a=1")
    _same(ours, theirs)
    assert "Authorization" in ours.headers
    # The first two sessions of each pair took requests' path on their own side too.
    assert len(seen) == 2 * 5


@given(
    st.dictionaries(
        st.text(max_size=12),
        st.none() | st.text(max_size=40) | st.from_regex(r"\[[0-9,]*\]", fullmatch=True),
        max_size=4,
    )
)
def test_form_body_quotes_as_urlencode(payload: dict[str, str | None]) -> None:
    # The short cuts (nothing to quote; a JSON list of ints) give urlencode's own text.
    expected = urlencode([(k, v) for k, v in payload.items() if v is not None])
    assert form_body(payload) == expected


def test_form_body_of_an_id_list() -> None:
    assert form_body({"supplier_id": "77001", "ci_lineitem_ids": "[12,345]"}) == (
        "supplier_id=77001&ci_lineitem_ids=%5B12%2C345%5D"
    )
