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
    "ledger_path",
    "open_ledger",
    "open_ledger_file",
]


def open_ledger(account: Account) -> Ledger:
    """Open the ledger of ``account``: ``<account.data_dir>/ledger-<account.name>.sqlite3``.

    :raises connector.errors.LedgerError: the file cannot be opened, or was written by a newer
        connector (:class:`LedgerVersionError`).
    """
    return open_ledger_file(ledger_path(account.data_dir, account.name), account.name)
