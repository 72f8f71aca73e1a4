"""The plugin's ledger: every CI line, binding, acknowledgement and outbound tracking call.

Callers use :func:`open_ledger` and the :class:`Ledger` API only. Two backends sit behind it:
SQLite (:mod:`connector.ledger.sqlite`, one file per account, the embedded default) and
PostgreSQL (:mod:`connector.ledger.postgres`, one schema per account, chosen by the account's
``ledger_url``; needs the ``postgres`` extra). Both run the same versioned migrations.
"""

from __future__ import annotations

from collections.abc import Sequence

from connector.ledger.migrations import MIGRATIONS
from connector.ledger.sqlite import (
    HOST_STATES,
    LINE_STATES,
    OUTBOX_STATES,
    UNCONFIRMED_STATES,
    KnownLine,
    Ledger,
    LedgerVersionError,
    LineRow,
    OutboxRow,
    ledger_path,
    open_ledger_file,
)
from connector.models import Account

__all__ = [
    "HOST_STATES",
    "LINE_STATES",
    "OUTBOX_STATES",
    "UNCONFIRMED_STATES",
    "KnownLine",
    "Ledger",
    "LedgerVersionError",
    "LineRow",
    "OutboxRow",
    "is_postgres_url",
    "ledger_path",
    "open_ledger",
    "open_ledger_file",
]

_PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str | None) -> bool:
    """Whether ``url`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return bool(url) and str(url).lower().startswith(_PG_SCHEMES)


def open_ledger(account: Account, migrations: Sequence[tuple[int, str]] = MIGRATIONS) -> Ledger:
    """Open the ledger of ``account``: in PostgreSQL when ``account.ledger_url`` is set (the
    schema ``ledger_<account>``), else the SQLite file
    ``<account.data_dir>/ledger-<account.name>.sqlite3``.

    :raises connector.errors.LedgerError: the ledger cannot be opened (file, server, or the
        psycopg extra missing), or was written by a newer connector
        (:class:`LedgerVersionError`).
    """
    if account.ledger_url:
        # Imported here: the plugin must run on SQLite without psycopg installed.
        from connector.ledger.postgres import PostgresLedger

        return PostgresLedger(
            account.ledger_url, account.name, migrations, password=account.ledger_password
        )
    return open_ledger_file(ledger_path(account.data_dir, account.name), account.name, migrations)
