"""``ci-connector sync``: run the reference host's import cycle for one or every account."""

from __future__ import annotations

import sys

import click

from connector.cli import open_facade, render_table, select_accounts
from connector.cli.context import CliContext, emit_json, say
from connector.errors import ChannelError, ConfigError
from connector.reference_host.host import HOST_DB_NAME, SYNC_STAGES, ReferenceHost, SyncReport
from connector.reference_host.store import HostStoreError
from connector.runtime.identity import REFERENCE_HOST, acting_as
from connector.secrets import redact

_COLUMNS = (
    ("account", "account"),
    ("orders", "orders_imported"),
    ("lines", "lines_imported"),
    ("new", "orders_new"),
    ("refused", "orders_refused"),
    ("acked", "lines_marked_exported"),
    ("already", "already_done"),
    ("queued", "ack_queued"),
    ("held", "held"),
    ("cancelled", "cancellations_applied"),
    ("retried", "retried"),
    ("errors", "errors"),
)


@click.command()
@click.option(
    "--account",
    "account_name",
    default="all",
    show_default=True,
    metavar="NAME|all",
    help="Account to sync (its name in the config), or 'all'.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def sync(obj: CliContext, account_name: str, as_json: bool) -> None:
    """Import new orders into the reference host, then acknowledge what it stored.

    Per account, for each import batch while the plugin has more: import -> store (one
    transaction) -> mark exported -> record held lines and apply cancellations (then confirm
    them); then re-send shipments the host recorded but never handed over, and flush the
    outbox. Retries of the CI client are summed up per reason. The reference host's database is
    <data_dir>/reference-host.sqlite3. Exits 1 if any account failed.

    \b
    Example:
      ci-connector --config connector.toml sync --account us
      ci-connector sync --json | jq '.accounts[].orders_new'
    """
    config = obj.config()
    accounts = select_accounts(config, account_name)
    facade = open_facade()
    reports: list[SyncReport] = []
    failures: list[dict[str, str]] = []
    try:
        host = ReferenceHost(config.data_dir / HOST_DB_NAME, facade)
    except HostStoreError as exc:
        raise click.ClickException(redact(str(exc))) from None
    # Acting as the reference host: a ledger a real host OMS works refuses this command.
    with host, acting_as(REFERENCE_HOST):
        for account in accounts:
            try:
                config.require_token(account.name)
            except ConfigError as exc:
                failures.append({"account": account.name, "error": redact(str(exc))})
                continue
            with click.progressbar(
                length=len(SYNC_STAGES), label=f"sync {account.name}", file=sys.stderr
            ) as bar:
                try:
                    report = host.sync(account, progress=lambda _stage: bar.update(1))
                except (ChannelError, HostStoreError) as exc:
                    failures.append({"account": account.name, "error": redact(str(exc))})
                    continue
            reports.append(report)

    ok = not failures and all(r.ok for r in reports)
    if as_json:
        emit_json({"ok": ok, "accounts": [r.to_dict() for r in reports], "failures": failures})
    else:
        if reports:
            rows = []
            for r in reports:
                data = r.to_dict()
                rows.append(
                    [len(r.errors) if key == "errors" else data[key] for _, key in _COLUMNS]
                )
            say(render_table([title for title, _ in _COLUMNS], rows))
        for r in reports:
            if r.transport_retries:
                why = ", ".join(f"{reason} x{n}" for reason, n in r.transport_retries.items())
                say(f"{r.account}: retried {sum(r.transport_retries.values())} call(s): {why}")
            for error in r.errors:
                say(f"{r.account}: {error}", err=True)
        for failure in failures:
            say(f"{failure['account']}: sync failed: {failure['error']}", err=True)
    if not ok:
        raise click.exceptions.Exit(1)
