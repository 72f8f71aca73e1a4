"""Serve a WSGI app (the simulator) with waitress: in a background thread, or in the foreground.

Connection settings (:data:`SERVER_SETTINGS`): idle connections do not hold a worker thread in
waitress, only a connection slot, so the slots are many (``connection_limit``) and an idle one
is closed after ``channel_timeout`` seconds; ``poll()`` instead of ``select()`` so more than
1,024 sockets cannot crash the loop. A body over ``max_request_body_size`` is refused by
waitress before it is buffered, answered in the simulator's JSON envelope.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask

from mock_ci_server.faults import SimulatedDrop

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

_waitress_log = logging.getLogger("waitress")


class _DropFilter(logging.Filter):
    """Hide waitress' traceback for a drop fault: the abort is the point, not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimulatedDrop)


_drop_filter = _DropFilter()


def _install_drop_filter() -> None:
    if _drop_filter not in _waitress_log.filters:
        _waitress_log.addFilter(_drop_filter)


MAX_BODY_BYTES = 16 * 1024 * 1024
"""waitress' body limit; the same as the app's (``mock_ci_server.app.MAX_BODY_BYTES``)."""

SERVER_SETTINGS: dict[str, Any] = {
    "connection_limit": 1000,  # idle sockets cost a slot, not a thread: 300 cannot starve us
    "channel_timeout": 30,  # seconds an idle connection (no request in progress) may live
    "cleanup_interval": 5,  # how often idle connections are looked for
    "asyncore_use_poll": True,  # select() fails beyond 1,024 descriptors
    "max_request_body_size": MAX_BODY_BYTES,
    "max_request_header_size": 64 * 1024,
    "clear_untrusted_proxy_headers": True,
}
"""waitress settings of every simulator server (keyword overrides per call)."""


class _EnvelopeErrorTask(ErrorTask):
    """waitress' own refusals (body too large, bad request line) in the simulator's JSON
    envelope instead of waitress' plain-text page."""

    def execute(self) -> None:
        request: Any = self.request  # the stubs type it loosely
        error = request.error
        reason = f"{error.reason}: {error.body}"
        if error.code == 413:
            reason = f"request body too large: the limit is {MAX_BODY_BYTES:,} bytes"
        body = json.dumps({"success": False, "reason": reason}).encode()
        self.status = f"{error.code} {error.reason}"
        headers: Any = self.response_headers
        headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    error_task_class = _EnvelopeErrorTask


def is_loopback(host: str) -> bool:
    """True when ``host`` only listens on this machine (127.0.0.0/8, ::1, ``localhost``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _create(app: WSGIApplication, host: str, port: int, threads: int, **settings: Any) -> Any:
    """Create (bind) the waitress server; typed Any because the stubs lack the attributes used."""
    _install_drop_filter()
    server = create_server(
        app, host=host, port=port, threads=threads, **{**SERVER_SETTINGS, **settings}
    )
    if not isinstance(server, BaseWSGIServer):  # several listen addresses: not how we call it
        server.close()
        raise ValueError(f"expected one listening socket for {host}:{port}")
    server.channel_class = _Channel  # before the loop runs: no connection accepted yet
    return server


def _url(server: Any) -> str:
    host = str(server.effective_host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{server.effective_port}"


class RunningServer:
    """A waitress server running in a daemon thread. Use as a context manager or call stop()."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self.port: int = int(server.effective_port)
        self.url: str = _url(server)
        self._stopped = False
        self._thread = threading.Thread(
            target=server.run, name=f"mock-ci-server:{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listening socket and every connection, stop the workers, join the thread."""
        if self._stopped:
            return
        self._stopped = True
        server = self._server
        done = threading.Event()

        def close_everything() -> None:
            # Runs inside the server's own loop thread, so the socket map is not mutated
            # under its feet; the loop exits once the map is empty.
            wasyncore.close_all(server._map, ignore_all=True)
            done.set()

        try:
            server.trigger.pull_trigger(close_everything)
        except OSError:
            # The loop's wake-up pipe is already closed (seen once in a full test run, at
            # teardown): nothing can wake the loop, so close what is left from here.
            close_everything()
        done.wait(timeout)
        self._thread.join(timeout)
        server.task_dispatcher.shutdown(timeout=timeout)

    @property
    def running(self) -> bool:
        """True while the serving thread is alive."""
        return self._thread.is_alive()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningServer(url={self.url!r}, running={self.running})"


def serve_in_thread(
    app: WSGIApplication,
    host: str = "127.0.0.1",
    port: int = 0,
    threads: int = 8,
    **settings: Any,
) -> RunningServer:
    """Start ``app`` on waitress in a daemon thread; port 0 picks a free port (read back).
    ``settings`` override :data:`SERVER_SETTINGS` (e.g. ``channel_timeout``)."""
    return RunningServer(_create(app, host, port, threads, **settings))


def run_forever(
    app: WSGIApplication,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 8,
    *,
    on_ready: Callable[[str], None] | None = None,
    out: IO[str] | None = None,
) -> None:
    """Serve ``app`` in the foreground until Ctrl-C (SIGINT), then close cleanly.

    ``on_ready(url)`` runs once the socket is bound (the real port is known).
    """
    stream = out if out is not None else sys.stdout
    server = _create(app, host, port, threads)
    url = _url(server)
    if on_ready is not None:
        on_ready(url)
    stream.flush()
    try:
        # waitress' run() turns KeyboardInterrupt into a dispatcher shutdown and returns.
        server.run()
    except KeyboardInterrupt:  # pragma: no cover - raised outside the loop's own handler
        pass
    finally:
        wasyncore.close_all(server._map, ignore_all=True)
        server.task_dispatcher.shutdown(timeout=5)
    print(f"mock-ci-server on {url} stopped.", file=stream, flush=True)


__all__ = ["SERVER_SETTINGS", "RunningServer", "is_loopback", "run_forever", "serve_in_thread"]
