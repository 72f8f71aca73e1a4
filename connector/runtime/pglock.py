"""Account exclusion on PostgreSQL: an :class:`~connector.runtime.locks.AccountLock` that is a
session advisory lock keyed by the account's ledger schema.

Every process (on any machine) that works the account through the same database takes the
same key, so one works it at a time. The lock lives on a connection of its own (opened at the
first :meth:`PgAccountLock.acquire`, kept for the next ones, closed by :meth:`close`); the
server releases it when that session ends, so a holder that dies (even by SIGKILL) never
leaves the account locked.

A caller that gives up after ``timeout`` seconds (``lock_timeout`` on the server, no polling)
raises :class:`~connector.errors.AccountBusy` naming the holder from ``pg_locks`` and
``pg_stat_activity``: its ``application_name`` (``ci-connector lock <pid>@<machine>``) and the
time its lock call returned (``state_change``: the lock connection does nothing afterwards).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connector.errors import AccountBusy, LedgerError
from connector.ledger.postgres import advisory_key, connect, display_url, schema_name
from connector.models import Account
from connector.runtime.locks import account_busy
from connector.secrets import Secret, redact

if TYPE_CHECKING:
    import psycopg

    from connector.runtime.locks import AccountLock

__all__ = ["PgAccountLock", "account_lock"]

_HOLDER_SQL = (
    "SELECT a.pid, a.application_name, a.client_addr, a.state_change"
    " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def account_lock(account: Account) -> AccountLock:
    """The exclusion of ``account`` on its ledger's backend: an advisory lock in the ledger
    database with ``ledger_url``, else the file lock beside the SQLite ledger."""
    if account.ledger_url:
        return PgAccountLock(account.ledger_url, account.name, password=account.ledger_password)
    from connector.runtime.locks import FileAccountLock, lock_path

    return FileAccountLock(lock_path(account.data_dir, account.name), account.name)


class PgAccountLock:
    """:class:`~connector.runtime.locks.AccountLock` over ``pg_advisory_lock``. Re-entrant
    within one thread; other threads of the process wait on an in-process lock first, so they
    see the same timeout.

    :param url: the ledger database (``postgresql://...``, no password).
    :param account: the account name (the key is its ledger schema).
    """

    def __init__(
        self,
        url: str,
        account: str,
        *,
        password: Secret | None = None,
        schema: str | None = None,
    ) -> None:
        self.url = url
        self.account = account
        self._password = password
        self.schema = schema or schema_name(account)
        self.key = advisory_key("account", self.schema)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._conn: psycopg.Connection[Any] | None = None

    def acquire(self, timeout: float) -> None:
        if not self._thread_lock.acquire(timeout=max(timeout, 0.0)):
            raise self._busy(timeout, "another thread of this process")
        try:
            if self._depth == 0:
                self._lock(timeout)
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise

    def _lock(self, timeout: float) -> None:
        import psycopg

        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            conn = self._conn = connect(self.url, self._password, role="lock")
        try:
            # lock_timeout 0 means "wait forever" to PostgreSQL: never send 0.
            millis = max(int(timeout * 1000), 1)
            try:
                # One round trip (client-side binding allows two statements).
                conn.execute(
                    f"SET lock_timeout = {millis}; SELECT pg_advisory_lock(%s)", (self.key,)
                )
            except psycopg.errors.LockNotAvailable:
                raise self._busy(timeout, self.holder(conn)) from None
            except psycopg.Error as exc:
                raise LedgerError(
                    redact(f"account {self.account}: cannot lock {display_url(self.url)}: {exc}")
                ) from None
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        """Close the lock's connection (which also releases the lock on the server)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def holder(self, conn: psycopg.Connection[Any] | None = None) -> str:
        """Who holds the account now (``pid 42 on host-a since ...``), or a plain phrase
        when nobody does or it cannot be read."""
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        own = conn is None
        try:
            if conn is None:
                conn = connect(self.url, self._password, role="lock")
            row = conn.execute(_HOLDER_SQL, (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchone()
        except Exception:  # naming the holder is best effort; the busy error still goes out
            return "an unknown process"
        finally:
            if own and conn is not None:
                conn.close()
        if row is None:
            return "nobody (it was just released)"
        return _describe(row[0], row[1], row[2], row[3])

    def current_holder(self) -> str | None:
        """Who holds the account now, ``None`` when nobody does (for ``status``; a session of
        its own, closed again).

        :raises LedgerError: the database cannot be reached.
        """
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        conn = connect(self.url, self._password, role="status")
        try:
            row = conn.execute(_HOLDER_SQL, (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchone()
        except Exception as exc:
            raise LedgerError(
                redact(f"account {self.account}: cannot read the lock holder: {exc}")
            ) from None
        finally:
            conn.close()
        return None if row is None else _describe(row[0], row[1], row[2], row[3])

    def _busy(self, timeout: float, who: str) -> AccountBusy:
        return account_busy(self.account, who, timeout)

    def release(self) -> None:
        if self._depth <= 0:
            raise RuntimeError(f"account lock of {self.account} released more often than acquired")
        self._depth -= 1
        try:
            if self._depth == 0 and self._conn is not None:
                try:
                    # The connection stays for the next acquire (no connect per hook call).
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
                except Exception:
                    self._drop()  # ending the session releases the lock as surely
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        with self._thread_lock:
            self._drop()
            self._depth = 0


def _describe(backend_pid: int, app: str, client: Any, since: datetime | None) -> str:
    """``pid 42 on host-a since 2026-01-01T10:00:00+00:00`` from the holder's session."""
    when = since.isoformat(timespec="seconds") if since is not None else "?"
    prefix = "ci-connector lock "
    if app.startswith(prefix) and "@" in app:
        pid, _, machine = app[len(prefix) :].partition("@")
        return f"pid {pid} on {machine} since {when}"
    where = f" from {client}" if client else ""
    return f"database session {backend_pid} ({app or 'no application_name'}{where}) since {when}"
