"""Serve a WSGI app (the simulator) with waitress: in a background thread, or in the foreground."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from waitress import wasyncore
from waitress.server import BaseWSGIServer, create_server

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


def _create(app: WSGIApplication, host: str, port: int, threads: int) -> Any:
    """Create (bind) the waitress server; typed Any because the stubs lack the attributes used."""
    _install_drop_filter()
    server = create_server(
        app, host=host, port=port, threads=threads, clear_untrusted_proxy_headers=True
    )
    if not isinstance(server, BaseWSGIServer):  # several listen addresses: not how we call it
        server.close()
        raise ValueError(f"expected one listening socket for {host}:{port}")
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
    app: WSGIApplication, host: str = "127.0.0.1", port: int = 0, threads: int = 8
) -> RunningServer:
    """Start ``app`` on waitress in a daemon thread; port 0 picks a free port (read back)."""
    return RunningServer(_create(app, host, port, threads))


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


__all__ = ["RunningServer", "run_forever", "serve_in_thread"]
