"""What a ledger belongs to, and the marker beside it that outlives a lost ledger file.

On first open a ledger records its identity (a random ledger id, the account, the supplier id,
when it was created) and a marker ``ledger-<account>.id.json`` (0600) is written beside it
with the same facts. The marker is how a *missing* or *replaced* ledger is told apart from a
new account:

* ledger file missing, marker present -> the account has history: refused (an empty ledger
  would hand every open order to the host again and forget what was shipped);
* ledger present with another ledger id than the marker -> replaced: refused;
* ledger of another supplier id than the account's -> another Groupon account's: refused.

``ci-connector reconcile --fix`` opens with ``recover=True``: it accepts the ledger it finds (or
starts a new one), writes a new marker and rebuilds the lines from CI and the host.

The host that works a ledger is recorded on its first hook call (:func:`claim_host`); another
host is refused, because two hosts on one ledger each store the orders the other acknowledged.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

from connector.errors import LedgerIdentityError
from connector.ledger.sqlite import Ledger, LedgerIdentity
from connector.runtime.files import write_private_text

__all__ = [
    "check_before_open",
    "claim_host",
    "hand_over",
    "marker_path",
    "read_marker",
    "settle_identity",
]


def marker_path(ledger_file: Path) -> Path:
    """The marker beside ``ledger-<account>.sqlite3``: ``ledger-<account>.id.json``."""
    return ledger_file.with_name(ledger_file.name.removesuffix(".sqlite3") + ".id.json")


def read_marker(ledger_file: Path) -> dict[str, str] | None:
    """The marker's facts, or ``None`` without a (readable) marker."""
    try:
        data = json.loads(marker_path(ledger_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None


def _recovery(account: str) -> str:
    return (
        f"if the old ledger is gone for good, run `ci-connector reconcile --fix --account "
        f"{account}` (it rebuilds the ledger from CI and the host and writes a new marker)"
    )


def check_before_open(ledger_file: Path, account: str) -> None:
    """Refuse to create a ledger where one existed (the marker says so)."""
    marker = read_marker(ledger_file)
    if marker is None or ledger_file.exists():
        return
    raise LedgerIdentityError(
        f"ledger {ledger_file} of account {account} is missing, but {marker_path(ledger_file)} "
        f"shows it existed (created {marker.get('created_at', '?')}, ledger id "
        f"{marker.get('ledger_id', '?')}). Starting an empty one would hand the host every "
        f"open order again and forget what was shipped. Restore the file from a backup, or "
        f"{_recovery(account)}"
    )


def settle_identity(
    ledger: Ledger, account: str, supplier_id: str, *, recover: bool = False
) -> LedgerIdentity:
    """Check (or record) what ``ledger`` belongs to against the marker beside it.

    :raises LedgerIdentityError: replaced ledger, or another supplier's (unless ``recover``).
    """
    found = ledger.identity()
    marker = read_marker(ledger.path)
    stale_marker = marker is None or found is None or marker.get("ledger_id") != found.ledger_id
    if found is None or (recover and stale_marker):
        if found is None and marker is not None and not recover and not ledger.created:
            # A ledger older than identities (schema < 6) with a marker cannot be: refuse.
            raise LedgerIdentityError(
                f"ledger {ledger.path} records no identity but {marker_path(ledger.path)} "
                f"exists; {_recovery(account)}"
            )
        identity = LedgerIdentity(
            ledger_id=secrets.token_hex(8),
            account=account,
            supplier_id=supplier_id,
            created_at=datetime.now(UTC),
            host=found.host if found is not None else None,
        )
        ledger.set_identity(identity)
        _write_marker(ledger.path, identity)
        return identity
    if found.supplier_id != supplier_id and not recover:
        raise LedgerIdentityError(
            f"ledger {ledger.path} belongs to supplier id {found.supplier_id}, but account "
            f"{account} is configured with supplier id {supplier_id}: this is another Groupon "
            "account's ledger. Fix supplier_id in the config, or give this account its own "
            "data_dir"
        )
    if marker is None:
        _write_marker(ledger.path, found)  # a lost marker is harmless: write it again
    elif marker.get("ledger_id") != found.ledger_id:
        raise LedgerIdentityError(
            f"ledger {ledger.path} of account {account} was replaced: it is ledger "
            f"{found.ledger_id} (created {found.created_at.isoformat()}), but "
            f"{marker_path(ledger.path)} names ledger {marker.get('ledger_id')} (created "
            f"{marker.get('created_at', '?')}). Put the right file back, or "
            f"{_recovery(account)}"
        )
    if found.supplier_id != supplier_id:
        found = LedgerIdentity(found.ledger_id, account, supplier_id, found.created_at, found.host)
        ledger.set_identity(found)
    return found


def claim_host(ledger: Ledger, host: str) -> None:
    """Record ``host`` as the ledger's host on its first hook call; refuse another host.

    :raises LedgerIdentityError: the ledger is worked by a different host.
    """
    found = ledger.identity()
    if found is None:
        return  # opened without an identity (a bare ledger file: tests, benchmarks)
    if found.host is None:
        ledger.set_identity(
            LedgerIdentity(
                found.ledger_id, found.account, found.supplier_id, found.created_at, host
            )
        )
        return
    if found.host != host:
        raise LedgerIdentityError(
            f"account {found.account}: its ledger {ledger.path} is worked by host "
            f"{found.host!r}, and this process acts for host {host!r}. Two hosts on one "
            "ledger each store the orders the other acknowledged (e.g. `ci-connector sync` "
            "beside a real host OMS sharing the data folder diverts real orders into the "
            "demo store). Run only the host that owns the account; to move the account to "
            f"this host for good, stop the old host, then run `ci-connector hand-over "
            f"--account {found.account} --to {host}`"
        )


def hand_over(ledger: Ledger, host: str) -> None:
    """Make ``host`` the ledger's host (the operator moved the account)."""
    found = ledger.identity()
    if found is None:
        raise LedgerIdentityError(f"ledger {ledger.path} records no identity")
    ledger.set_identity(
        LedgerIdentity(found.ledger_id, found.account, found.supplier_id, found.created_at, host)
    )


def _write_marker(ledger_file: Path, identity: LedgerIdentity) -> None:
    text = json.dumps(
        {
            "ledger_id": identity.ledger_id,
            "account": identity.account,
            "supplier_id": identity.supplier_id,
            "created_at": identity.created_at.isoformat(),
            "ledger": ledger_file.name,
        },
        indent=2,
    )
    write_private_text(marker_path(ledger_file), text + "\n")
