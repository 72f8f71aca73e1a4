"""EnvOnceSession.send and BoundedAdapter.build_response: the answer requests gives, with
cookies and redirects, over a real socket."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from connector.ci.bounded import BoundedAdapter
from connector.ci.session import FORM_CONTENT_TYPE, EnvOnceSession

ANSWERS: dict[str, tuple[int, list[tuple[str, str]]]] = {
    "/plain": (200, [("Content-Type", "application/json; charset=utf-8")]),
    "/cookie": (
        200,
        [
            ("Content-Type", "application/json"),
            ("Set-Cookie", "lb=node-7; Path=/"),
            ("set-cookie", "other=1; Path=/api"),
        ],
    ),
    "/redirect": (302, [("Location", "/plain?from=redirect")]),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        path = self.path.split("?")[0]
        status, headers = ANSWERS[path]
        body = b'{"success": true}'
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a kept-alive connection reset when the test ends


@pytest.fixture
def server() -> Iterator[str]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _ours() -> requests.Session:
    session = EnvOnceSession()
    adapter = BoundedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _post(session: requests.Session, url: str) -> requests.Response:
    return session.post(
        url,
        data="supplier_id=1&token=t",
        headers={"Content-Type": FORM_CONTENT_TYPE},
        timeout=(5, 5),
        allow_redirects=False,
        stream=True,
    )


def _seen(response: requests.Response) -> dict[str, Any]:
    following = response.next
    return {
        "status": response.status_code,
        "reason": response.reason,
        "url": response.url,
        "headers": dict(response.headers),
        "encoding": response.encoding,
        "cookies": sorted(response.cookies.items()),
        "history": response.history,
        "next": None if following is None else (following.method, following.url),
        "content": response.content,
    }


@pytest.mark.parametrize("path", ["/plain", "/cookie", "/redirect"])
def test_answer_is_what_requests_gives(server: str, path: str) -> None:
    ours, theirs = _ours(), requests.Session()
    with ours, theirs:
        mine, expected = _post(ours, server + path), _post(theirs, server + path)
        seen, wanted = _seen(mine), _seen(expected)
        seen["headers"].pop("Date", None)
        wanted["headers"].pop("Date", None)
        assert seen == wanted
        assert sorted(ours.cookies.items()) == sorted(theirs.cookies.items())
        assert mine.elapsed.total_seconds() > 0
    if path == "/cookie":
        assert sorted(mine.cookies.items()) == [("lb", "node-7"), ("other", "1")]
    if path == "/redirect":  # requests turns a 302 of a POST into a GET
        assert seen["next"] == ("GET", server + "/plain?from=redirect")


def test_an_answer_without_cookies_is_not_searched_for_them(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    searched: list[str] = []

    def counting(jar: Any, request: Any, response: Any) -> None:
        searched.append(request.url)

    monkeypatch.setattr("requests.sessions.extract_cookies_to_jar", counting)
    monkeypatch.setattr("requests.adapters.extract_cookies_to_jar", counting)
    with _ours() as session:
        _post(session, server + "/plain").close()
    assert searched == []
    with requests.Session() as plain:
        _post(plain, server + "/plain").close()
    assert len(searched) == 2  # requests' own path: the adapter's and the session's


def test_cookies_set_by_an_answer_are_sent_with_the_next_call(server: str) -> None:
    with _ours() as session:
        _post(session, server + "/cookie").close()
        assert dict(session.cookies) == {"lb": "node-7", "other": "1"}
        # The session now holds cookies: the next call takes requests' own path and sends them.
        answer = _post(session, server + "/plain")
        assert answer.request.headers.get("Cookie") == "lb=node-7"
