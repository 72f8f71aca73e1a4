"""A scripted HTTP server on 127.0.0.1:0, for paths only a real socket exercises (urllib3's own
retries, Retry-After sleeps, connection errors, urllib3's debug log line)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"success": true}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/json"})


@dataclass
class Seen:
    method: str
    path: str
    body: bytes


class ScriptedServer:
    """Answers each request with the next scripted :class:`Reply` (the last one repeats)."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server.seen.append(Seen(self.command, self.path, body))
                    reply = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def add(
        self,
        status: int = 200,
        body: bytes | str = b'{"success": true}',
        headers: dict[str, str] | None = None,
    ) -> ScriptedServer:
        """Queue one reply; returns the server so calls can be chained."""
        data = body.encode() if isinstance(body, str) else body
        self.script.append(Reply(status, data, headers or {"Content-Type": "text/json"}))
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    running = ScriptedServer()
    try:
        yield running
    finally:
        running.stop()
