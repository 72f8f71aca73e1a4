"""Issue 11: one watchdog thread for every call deadline (a ``threading.Timer`` per call
cost a thread start, ~1 ms, on every CI call)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from connector.ci.bounded import CallGuard


def test_calls_start_no_thread_each(monkeypatch: pytest.MonkeyPatch) -> None:
    with CallGuard(30):  # the watchdog exists from here on
        pass
    starts: list[str] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        starts.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    for _ in range(200):
        with CallGuard(30):
            pass
    assert starts == []


def test_the_earliest_deadline_fires_and_ended_guards_never_do() -> None:
    left, right = socket.socketpair()
    try:
        long_guard = CallGuard(60)
        with long_guard:
            ended = CallGuard(0.05)
            with ended:
                pass
            short = CallGuard(0.2)
            with short:
                short.attach(left)
                left.settimeout(10)
                started = time.monotonic()
                assert left.recv(1) == b""  # shut down by the watchdog, not the 10 s timeout
                waited = time.monotonic() - started
            assert short.fired
            assert waited < 5
            time.sleep(0.1)
            assert not ended.fired  # it ended before its deadline
            assert not long_guard.fired
    finally:
        left.close()
        right.close()


def test_small_request_leaves_in_one_send_with_its_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A POST with a small body: one ``send`` (headers and body together); a request without
    a body sends its headers alone; a body over the limit goes as before (two sends)."""
    import http.client
    import http.server
    import threading

    from connector.ci import bounded

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            reply = b"%d:%s" % (len(body), body[:8])
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sent: list[bytes] = []
    real = http.client.HTTPConnection.send
    monkeypatch.setattr(
        http.client.HTTPConnection,
        "send",
        lambda self, data: (sent.append(data), real(self, data))[1],
    )
    try:
        conn = bounded._GuardedHTTPConnection("127.0.0.1", server.server_address[1])
        for method, body, sends, answer in (
            ("POST", b"a=1&b=2", 1, b"7:a=1&b=2"),
            ("POST", "x=é", 1, b"4:x=\xc3\xa9"),
            ("GET", None, 1, b"0:"),
            ("POST", b"z" * (bounded.ONE_SEGMENT_BYTES + 1), 2, b"65537:zzzzzzzz"),
        ):
            sent.clear()
            conn.request(method, "/x", body=body, headers={"Content-Type": "text/plain"})
            assert conn.getresponse().data == answer
            assert len(sent) == sends
            assert sent[0].startswith(f"{method} /x HTTP/1.1\r\n".encode())
            if body is not None and sends == 1:
                assert sent[0].endswith(body if isinstance(body, bytes) else body.encode())
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
