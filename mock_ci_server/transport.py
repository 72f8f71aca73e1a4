"""In-process transport: route ``requests`` calls for one base URL into a WSGI app, no socket.

Built on ``responses``: every request to ``base_url`` is forwarded (method, path, raw query
string, headers, body) into the app through werkzeug's test client, so multipart and
urlencoded bodies arrive byte-for-byte. Faults map onto what ``requests`` would raise on a
real socket:

* a response carrying ``X-Sim-Fault: drop`` -> ``requests.ConnectionError``;
* an app that took longer than the request's read timeout -> ``requests.ReadTimeout``.

``responses`` patches ``requests`` process-wide while active (all threads), so do not use it
in the same test as a real-socket server unless ``passthrough_other_hosts=True``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import responses
from urllib3 import HTTPHeaderDict
from werkzeug.test import Client

from mock_ci_server.faults import FAULT_HEADER

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# Hop-by-hop or recomputed headers that must not be forwarded as-is.
_SKIP_REQUEST_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_SKIP_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


def _read_timeout(timeout: object) -> float | None:
    """The read part of a ``requests`` timeout (a number, a (connect, read) pair, or None)."""
    if isinstance(timeout, tuple):
        timeout = timeout[1] if len(timeout) > 1 else None
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        return float(timeout)
    return None


def _body_bytes(body: object) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if hasattr(body, "read"):
        data = body.read()
        return data if isinstance(data, bytes) else str(data).encode("utf-8")
    if isinstance(body, Iterable):
        return b"".join(c if isinstance(c, bytes) else str(c).encode("utf-8") for c in body)
    raise TypeError(f"cannot forward a request body of type {type(body).__name__}")


class InProcessTransport:
    """Context manager that serves ``base_url`` from ``app`` in-process via ``responses``.

    ``calls`` counts the requests forwarded into the app; ``mock`` is the underlying
    ``responses.RequestsMock``. Requests to other hosts fail with ``ConnectionError`` unless
    ``passthrough_other_hosts`` is true.
    """

    def __init__(
        self,
        app: WSGIApplication,
        base_url: str = "http://ci.invalid",
        *,
        passthrough_other_hosts: bool = False,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be http(s)://host[:port] (got {base_url!r})")
        self.app = app
        self.base_url = base_url.rstrip("/")
        self._root = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path.rstrip("/")
        self._lock = threading.Lock()
        self._calls = 0
        self.mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        pattern = re.compile(re.escape(self.base_url) + r"(?:[/?#].*)?$")
        for method in _METHODS:
            self.mock.add_callback(method, pattern, callback=self._forward, content_type=None)
        if passthrough_other_hosts:
            self.mock.add_passthru(re.compile(r".*"))

    @property
    def calls(self) -> int:
        """How many requests were forwarded into the app."""
        with self._lock:
            return self._calls

    def _forward(self, request: requests.PreparedRequest) -> tuple[int, HTTPHeaderDict, bytes]:
        url = urlsplit(request.url or "")
        path = url.path or "/"
        # The app sees paths relative to base_url's own path prefix, if any.
        if self._prefix and path.startswith(self._prefix):
            path = path[len(self._prefix) :] or "/"
        headers = [
            (k, v) for k, v in request.headers.items() if k.lower() not in _SKIP_REQUEST_HEADERS
        ]
        body = _body_bytes(request.body)
        kwargs: dict[str, Any] = getattr(request, "req_kwargs", {}) or {}
        read_timeout = _read_timeout(kwargs.get("timeout"))

        with self._lock:
            self._calls += 1
        client = Client(self.app, use_cookies=False)
        started = time.monotonic()
        response = client.open(
            path,
            base_url=self._root,
            method=request.method or "GET",
            query_string=url.query,
            headers=headers,
            data=body,
        )
        try:
            if response.headers.get(FAULT_HEADER) == "drop":
                raise requests.ConnectionError(
                    f"connection to {self._root} aborted mid-response (simulated drop)",
                    request=request,
                )
            data = response.get_data()
        finally:
            response.close()
        elapsed = time.monotonic() - started
        if read_timeout is not None and elapsed > read_timeout:
            raise requests.ReadTimeout(
                f"{self._root} did not answer within {read_timeout:g} s "
                f"(took {elapsed:.2f} s in-process)",
                request=request,
            )
        out_headers = HTTPHeaderDict()
        for key, value in response.headers.items():
            if key.lower() not in _SKIP_RESPONSE_HEADERS:
                out_headers.add(key, value)
        out_headers["Content-Length"] = str(len(data))
        return response.status_code, out_headers, data

    def start(self) -> None:
        """Start intercepting (same as entering the context)."""
        self.mock.start()

    def stop(self) -> None:
        """Stop intercepting."""
        self.mock.stop(allow_assert=False)

    def __enter__(self) -> InProcessTransport:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"InProcessTransport(base_url={self.base_url!r}, calls={self.calls})"


__all__ = ["InProcessTransport"]
