"""connector.ci.bounded.on_request_written: the callback runs once a request has been written
to its connection, before its answer is awaited (a real socket: the server answers only after
the callback ran), once per request, and only inside the block."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from connector.ci.bounded import ONE_SEGMENT_BYTES, BoundedAdapter, on_request_written


class _Server:
    """Answers ``written`` if the client's callback ran before the answer was due."""

    def __init__(self) -> None:
        self.written = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = b"written" if server.written.wait(2.0) else b"not written"
                server.written.clear()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v4/x"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()


@pytest.fixture
def server() -> Iterator[_Server]:
    running = _Server()
    try:
        yield running
    finally:
        running.httpd.shutdown()
        running.httpd.server_close()
        running.thread.join(5)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.mount("http://", BoundedAdapter())
        yield s


@pytest.mark.socket
@pytest.mark.parametrize(
    ("method", "body"),
    [("GET", None), ("POST", b"a=1"), ("POST", b"a" * (ONE_SEGMENT_BYTES + 1))],
    ids=["get", "small-post", "large-post"],
)
def test_the_callback_runs_once_the_request_is_out_before_its_answer(
    server: _Server, session: requests.Session, method: str, body: bytes | None
) -> None:
    calls: list[int] = []

    def written() -> None:
        calls.append(1)
        server.written.set()

    with on_request_written(written):
        first = session.request(method, server.url, data=body, timeout=10)
        second = session.request(method, server.url, data=body, timeout=10)  # kept alive
    assert (first.text, second.text) == ("written", "written")
    assert len(calls) == 2


@pytest.mark.socket
def test_no_callback_outside_the_block(server: _Server, session: requests.Session) -> None:
    calls: list[int] = []
    with on_request_written(lambda: calls.append(1)):
        pass
    server.written.set()  # the server need not wait for this one
    assert session.get(server.url, timeout=10).text == "written"
    assert calls == []
