"""Who holds what on an account, for ``ci-connector status``: the holder of the account's lock
and the claims (leases) the ledger keeps on outbound calls. Read only: nothing is taken,
released or waited for.

A claim's owner is shown as ``machine:pid``: the third part of the recorded owner (a random
token telling two runs of one pid apart) is left out; no secret is ever part of either.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.ledger import Ledger
from connector.models import Account
from connector.runtime.identity import owner_is_dead, parse_owner
from connector.runtime.locks import Holder, lock_path

__all__ = ["Claim", "LockState", "account_claims", "lock_state"]


@dataclass(frozen=True)
class LockState:
    """The account's lock now: ``held`` and, when held, by whom (``pid 42 on host-a since
    ...``)."""

    held: bool
    holder: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"held": self.held, "holder": self.holder}


@dataclass(frozen=True)
class Claim:
    """One claimed outbound call: ``kind`` ``tracking`` (an outbox row: its shipment, line and
    tracking number) or ``ack`` (a line's ``mark_exported``), who claimed it until when, and
    ``state``: ``active``, ``expired`` (anyone may take it over) or ``owner gone`` (a process
    of this machine that no longer runs: taken over at once)."""

    kind: str
    ci_lineitemid: int
    orderid: str | None
    shipment_id: str | None
    tracking: str | None
    owner: str
    until: datetime | None
    state: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ci_lineitemid": self.ci_lineitemid,
            "orderid": self.orderid,
            "shipment_id": self.shipment_id,
            "tracking": self.tracking,
            "owner": self.owner,
            "until": self.until.isoformat() if self.until is not None else None,
            "state": self.state,
        }


def lock_state(account: Account) -> LockState:
    """Whether the account's lock is held now and by whom (the advisory lock on PostgreSQL,
    the file lock beside a SQLite ledger)."""
    if account.ledger_url:
        from connector.runtime.pglock import PgAccountLock

        lock = PgAccountLock(account.ledger_url, account.name, password=account.ledger_password)
        holder = lock.current_holder()
        return LockState(holder is not None, holder)
    return _file_lock_state(account)


def _file_lock_state(account: Account) -> LockState:
    path = lock_path(account.data_dir, account.name)
    try:
        fd = os.open(path, os.O_RDONLY)  # never created here: no file, nobody ever held it
    except FileNotFoundError:
        return LockState(False)
    try:
        try:
            # A shared lock conflicts with the holder's exclusive one; taken for an instant,
            # it only makes a worker trying just then poll once more.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            return LockState(True, _holder_of(fd).describe())
        fcntl.flock(fd, fcntl.LOCK_UN)
        return LockState(False)
    finally:
        os.close(fd)


def _holder_of(fd: int) -> Holder:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return Holder()
    return Holder(data) if isinstance(data, dict) else Holder()


def account_claims(ledger: Ledger, now: datetime) -> list[Claim]:
    """Every outbound call the ledger has claimed (tracking rows, then acknowledgements)."""
    outbox, acks = ledger.claimed_calls()
    claims = [
        _claim("tracking", int(r[1]), r[2] or None, r[0], r[3], r[4], r[5], now) for r in outbox
    ]
    claims += [_claim("ack", int(r[0]), r[1] or None, None, None, r[2], r[3], now) for r in acks]
    return claims


def _claim(
    kind: str,
    ci_lineitemid: int,
    orderid: str | None,
    shipment_id: str | None,
    tracking: str | None,
    owner: str,
    until_text: Any,
    now: datetime,
) -> Claim:
    until = _when(until_text)
    if until is None or until <= now:
        state = "expired"
    elif owner_is_dead(owner):
        state = "owner gone"
    else:
        state = "active"
    parsed = parse_owner(owner)
    shown = f"{parsed.machine}:{parsed.pid}" if parsed is not None else "unknown"
    return Claim(kind, ci_lineitemid, orderid, shipment_id, tracking, shown, until, state)


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None
