"""``ci-connector sync``: run the reference host's import cycle for one or every account."""

from __future__ import annotations

import click

from connector.cli import open_facade, render_table, select_accounts
from connector.cli.context import CliContext, emit_json, say
from connector.cli.hints import explain
from connector.cli.progress import sync_progress
from connector.errors import ChannelError, ConfigError
from connector.reference_host.host import HOST_DB_NAME, ReferenceHost, SyncReport
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


_WAITING_SHOWN = 20


def _say_waiting(report: SyncReport) -> None:
    """One line per line waiting on the import delay: why and until when (first 20)."""
    if not report.waiting:
        return
    say(f"{report.account}: {len(report.waiting)} line(s) wait on the import delay")
    for w in report.waiting[:_WAITING_SHOWN]:
        say(f"  line {w['ci_lineitemid']} (order {w['orderid']}) until {w['until']}: {w['reason']}")
    if len(report.waiting) > _WAITING_SHOWN:
        rest = len(report.waiting) - _WAITING_SHOWN
        say(f"  ... and {rest} more (sync --json or status lists them all)")


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
@click.option("--quiet", "-q", is_flag=True, help="No progress display on stderr.")
@click.pass_obj
def sync(obj: CliContext, account_name: str, as_json: bool, quiet: bool = False) -> None:
    """Import new orders into the reference host, then acknowledge what it stored.

    Per account, for each import batch while the plugin has more: import -> store (one
    transaction) -> mark exported -> record held lines and apply cancellations (then confirm
    them); then re-send shipments the host recorded but never handed over, and flush the
    outbox. Progress (pages, lines, orders, rate, ETA) and every retry are shown on stderr;
    retries are summed up per reason. The reference host's database is
    <data_dir>/reference-host.sqlite3. Exits 1 if any account failed (the message says which
    setting to check), 130 on Ctrl-C (stored batches are kept and acknowledged).

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
    obj.interrupt_note = (
        "every batch the host stored before Ctrl-C is kept and was acknowledged (or will be "
        "re-acknowledged: the store is idempotent); run sync again to read the rest"
    )
    # Acting as the reference host: a ledger a real host OMS works refuses this command.
    with host, acting_as(REFERENCE_HOST), sync_progress(enabled=not quiet) as progress:
        for account in accounts:
            try:
                config.require_token(account.name)
            except ConfigError as exc:
                failures.append({"account": account.name, "error": redact(str(exc))})
                continue
            if progress is not None:
                opts = account.options
                progress.start(account.name, opts.max_retries, opts.backoff_seconds)
            try:
                report = host.sync(account)
            except ChannelError as exc:
                cause = exc if exc.__cause__ is None else exc.__cause__
                message = explain(cause if isinstance(cause, Exception) else exc, account,
                                  config.path)  # fmt: skip
                failures.append({"account": account.name, "error": message})
                continue
            except HostStoreError as exc:
                failures.append({"account": account.name, "error": redact(str(exc))})
                continue
            reports.append(report)

    ok = not failures and all(r.ok for r in reports)
    from connector.dashboard.synclog import record_run_or_warn  # the dashboard's "last syncs"

    record_run_or_warn(config.data_dir, [r.to_dict() for r in reports], failures, warn=say)
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
            _say_waiting(r)
            for error in r.errors:
                say(f"{r.account}: {error}", err=True)
        for failure in failures:
            say(f"{failure['account']}: sync failed: {failure['error']}", err=True)
    if not ok:
        raise click.exceptions.Exit(1)
