"""``ci-connector prune``: retention -- remove customer details of lines finished long ago."""

from __future__ import annotations

import click

from connector.cli import render_table, select_accounts
from connector.cli.context import CliContext, emit_json, say
from connector.errors import ChannelError
from connector.runtime.pglock import account_lock
from connector.secrets import redact


@click.command()
@click.option(
    "--account",
    "account_name",
    default="all",
    show_default=True,
    metavar="NAME|all",
    help="Account to prune (its name in the config), or 'all'.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Override the accounts' retention_days for this run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def prune(obj: CliContext, account_name: str, days: int | None, as_json: bool) -> None:
    """Remove raw CI records and customer details of lines shipped or cancelled long ago.

    \b
    A line fully shipped (or cancelled) and unchanged for retention_days (per account,
    default 90) keeps its ids, states, quantities, tracking and ack log; its raw record
    loses the customer's name, address and phone, and its parsed copy goes. `ci-connector
    run` does this daily. Holds the account's lock while it works.

    \b
    Example:
      ci-connector --config connector.toml prune --account us
      ci-connector prune --days 30 --json
    """
    from datetime import UTC, datetime, timedelta

    from connector.ledger import open_ledger

    config = obj.config()
    accounts = select_accounts(config, account_name)
    now = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    failures: list[dict[str, str]] = []
    for account in accounts:
        keep = days or account.options.retention_days
        lock = account_lock(account)  # the backend's lock: file, or PostgreSQL advisory
        try:
            lock.acquire(account.options.lock_timeout_seconds)
            try:
                ledger = open_ledger(account)
                try:
                    pruned = ledger.prune(now - timedelta(days=keep), now)
                finally:
                    ledger.close()
            finally:
                lock.release()
                lock.close()
        except ChannelError as exc:
            failures.append({"account": account.name, "error": redact(str(exc))})
            continue
        rows.append({"account": account.name, "retention_days": keep, "pruned": pruned})
    if as_json:
        emit_json({"ok": not failures, "accounts": rows, "failures": failures})
    else:
        if rows:
            say(
                render_table(
                    ["account", "retention_days", "pruned"],
                    [[r["account"], r["retention_days"], r["pruned"]] for r in rows],
                )
            )
        for failure in failures:
            say(f"{failure['account']}: prune failed: {failure['error']}", err=True)
    if failures:
        raise click.exceptions.Exit(1)
