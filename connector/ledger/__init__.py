"""The plugin's ledger: every CI line, binding, acknowledgement and outbound tracking call.

Callers use :func:`open_ledger` and the :class:`Ledger` API only; SQLite stays behind this
package so another database can follow.
"""

from __future__ import annotations

from connector.ledger.sqlite import (
    HOST_STATES,
    LINE_STATES,
    OUTBOX_STATES,
    UNCONFIRMED_STATES,
    KnownLine,
    Ledger,
    LedgerIdentity,
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
    "LedgerIdentity",
    "LedgerVersionError",
    "LineRow",
    "OutboxRow",
    "ledger_path",
    "open_ledger",
    "open_ledger_file",
]


def open_ledger(account: Account, *, recover: bool = False) -> Ledger:
    """Open the ledger of ``account``: ``<account.data_dir>/ledger-<account.name>.sqlite3``
    (files created 0600), and check that it is the account's (see
    :mod:`connector.ledger.identity`).

    :param recover: accept a missing or replaced ledger and mark the one found as the
        account's (``ci-connector reconcile --fix``, which then rebuilds its lines).
    :raises connector.errors.LedgerIdentityError: missing or replaced ledger of an account
        with history, or another supplier's ledger.
    :raises connector.errors.LedgerError: the file cannot be opened, or was written by a newer
        connector (:class:`LedgerVersionError`).
    """
    from connector.ledger.identity import check_before_open, settle_identity

    path = ledger_path(account.data_dir, account.name)
    if not recover:
        check_before_open(path, account.name)
    ledger = open_ledger_file(path, account.name)
    try:
        settle_identity(ledger, account.name, account.supplier_id, recover=recover)
    except BaseException:
        ledger.close()
        raise
    return ledger
