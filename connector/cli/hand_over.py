"""``ci-connector hand-over``: move an account's ledger to another host OMS for good."""

from __future__ import annotations

import click

from connector.cli import select_accounts
from connector.cli.context import CliContext, emit_json, say
from connector.errors import ChannelError
from connector.secrets import redact


@click.command("hand-over")
@click.option("--account", "account_name", required=True, metavar="NAME", help="Account.")
@click.option(
    "--to",
    "host",
    required=True,
    metavar="HOST",
    help="The host id that works the account from now on (CI_CONNECTOR_HOST_ID of that "
    "host; 'host-oms' for a host that declares none, 'reference-host' for sync/run).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the hand-over as JSON.")
@click.pass_obj
def hand_over(obj: CliContext, account_name: str, host: str, as_json: bool) -> None:
    """Record HOST as the host OMS that works the account's ledger.

    \b
    A ledger refuses hook calls from a host other than the one that first worked it (two
    hosts on one ledger each store the orders the other acknowledged). Stop the old host
    first; then hand the account over. Holds the account's lock while it writes.

    \b
    Example:
      ci-connector hand-over --account us --to odoo-prod
    """
    from connector.ledger import open_ledger
    from connector.ledger.identity import hand_over as record_host
    from connector.runtime.pglock import account_lock

    host = host.strip()
    if not host:
        raise click.BadParameter("must not be empty", param_hint="--to")
    account = select_accounts(obj.config(), account_name)[0]
    lock = account_lock(account)  # the backend's lock: file, or PostgreSQL advisory
    try:
        lock.acquire(account.options.lock_timeout_seconds)
        try:
            ledger = open_ledger(account)
            try:
                before = ledger.identity()
                record_host(ledger, host)
            finally:
                ledger.close()
        finally:
            lock.release()
            lock.close()
    except ChannelError as exc:
        raise click.ClickException(redact(str(exc))) from None
    old = before.host if before is not None else None
    if as_json:
        emit_json({"account": account.name, "from": old, "to": host})
    else:
        say(f"{account.name}: ledger handed over from {old or '(no host yet)'} to {host}")
