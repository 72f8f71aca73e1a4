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
    BindingLine,
    BoundLine,
    DispatchLine,
    EvalLine,
    KnownLine,
    Ledger,
    LedgerIdentity,
    LedgerVersionError,
    LineRow,
    OutboxRow,
    json_value,
    ledger_path,
    open_ledger_file,
    record_key,
)
from connector.models import Account

__all__ = [
    "HOST_STATES",
    "LINE_STATES",
    "OUTBOX_STATES",
    "UNCONFIRMED_STATES",
    "BindingLine",
    "BoundLine",
    "DispatchLine",
    "EvalLine",
    "KnownLine",
    "Ledger",
    "LedgerIdentity",
    "LedgerVersionError",
    "LineRow",
    "OutboxRow",
    "is_postgres_url",
    "json_value",
    "ledger_path",
    "open_ledger",
    "open_ledger_file",
    "record_key",
]

_PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str | None) -> bool:
    """Whether ``url`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return bool(url) and str(url).lower().startswith(_PG_SCHEMES)


def open_ledger(
    account: Account,
    *,
    recover: bool = False,
    migrations: Sequence[tuple[int, str]] = MIGRATIONS,
) -> Ledger:
    """Open the ledger of ``account`` and check that it is the account's (see
    :mod:`connector.ledger.identity`): in PostgreSQL when ``account.ledger_url`` is set (the
    schema ``ledger_<account>``), else the SQLite file
    ``<account.data_dir>/ledger-<account.name>.sqlite3`` (files created 0600). Either way the
    identity marker is a file in ``data_dir`` (``ledger-<account>.id.json``, or
    ``ledger-<account>.postgres.id.json``).

    :param recover: accept a missing or replaced ledger and mark the one found as the
        account's (``ci-connector reconcile --fix``, which then rebuilds its lines).
    :raises connector.errors.LedgerIdentityError: missing or replaced ledger of an account
        with history, or another supplier's ledger.
    :raises connector.errors.LedgerError: the ledger cannot be opened (file, server, or the
        psycopg extra missing), or was written by a newer connector
        (:class:`LedgerVersionError`).
    """
    from connector.ledger.identity import check_before_open, read_marker, settle_identity

    ledger: Ledger
    if account.ledger_url:
        # Imported here: the plugin must run on SQLite without psycopg installed.
        from connector.ledger.postgres import PostgresLedger, marker_stem

        stem = marker_stem(account.data_dir, account.name)
        ledger = PostgresLedger(
            account.ledger_url,
            account.name,
            migrations,
            password=account.ledger_password,
            marker_stem=stem,
            may_create=recover or read_marker(stem) is None,
        )
    else:
        path = ledger_path(account.data_dir, account.name)
        if not recover:
            check_before_open(path, account.name)
        ledger = open_ledger_file(path, account.name, migrations)
    try:
        settle_identity(ledger, account.name, account.supplier_id, recover=recover)
    except BaseException:
        ledger.close()
        raise
    return ledger
