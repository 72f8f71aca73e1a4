"""Serve the dashboard on 127.0.0.1 with the standard library (no web framework needed).

Each request of ``/`` gathers fresh data (ledger + plugin) and renders the page;
``/data.json`` gives the same data to scripts. Only loopback is ever bound.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any

from connector.dashboard.data import DashboardData
from connector.dashboard.render import render_json, render_page
from connector.secrets import redact

log = logging.getLogger(__name__)
HOST = "127.0.0.1"

Collector = Callable[[datetime | None], DashboardData]


def stylesheet() -> str:
    return files("connector.dashboard").joinpath("templates/dashboard.css").read_text("utf-8")


class DashboardServer:
    """A running dashboard: ``url``, ``stop()``; serves from a daemon thread."""

    def __init__(self, collector: Collector, port: int = 0) -> None:
        css = stylesheet()

        class Handler(BaseHTTPRequestHandler):
            server_version = "ci-connector-dashboard"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    if path in ("/", "/index.html"):
                        body = render_page(collector(None), css=css).encode("utf-8")
                        self._send(HTTPStatus.OK, "text/html; charset=utf-8", body)
                    elif path == "/data.json":
                        body = render_json(collector(None)).encode("utf-8")
                        self._send(HTTPStatus.OK, "application/json", body)
                    elif path == "/favicon.ico":
                        self._send(HTTPStatus.NO_CONTENT, "image/x-icon", b"")
                    else:
                        self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
                except Exception as exc:  # one bad render must not stop the server
                    log.exception("dashboard render failed")
                    text = f"dashboard error: {redact(str(exc))}\n".encode()
                    self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", text)

            def _send(self, status: HTTPStatus, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("dashboard: " + format, *args)

        self._httpd = ThreadingHTTPServer((HOST, port), Handler)
        self._httpd.daemon_threads = True
        self.port: int = int(self._httpd.server_address[1])
        self.url = f"http://{HOST}:{self.port}/"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"dashboard:{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def wait(self) -> None:
        """Block until stopped (Ctrl-C raises KeyboardInterrupt in the caller)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["HOST", "Collector", "DashboardServer", "stylesheet"]
