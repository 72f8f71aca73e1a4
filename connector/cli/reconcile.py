"""``ci-connector reconcile``: compare CI, the plugin's ledger and the host; heal what is safe."""

from __future__ import annotations

from pathlib import Path

import click

from connector.cli import render_table, select_accounts
from connector.cli.context import CliContext, emit_json, say
from connector.cli.hints import explain
from connector.errors import ChannelError, ConfigError
from connector.ops.reconcile import (
    CHECKS,
    DEFAULT_DAYS,
    DEFAULT_STALE_MINUTES,
    HostView,
    HostViewError,
    ReconcileReport,
    reconcile_account,
)
from connector.reference_host.host import HOST_DB_NAME
from connector.secrets import redact


@click.command()
@click.option(
    "--account",
    "account_name",
    default="all",
    show_default=True,
    metavar="NAME|all",
    help="Account to reconcile (its name in the config), or 'all'.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1, max=90),
    default=DEFAULT_DAYS,
    show_default=True,
    help="How many days of CI date windows (< 24 h each) to compare.",
)
@click.option(
    "--host-db",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Reference host database to compare with "
    "[default: <data_dir>/reference-host.sqlite3 if it exists].",
)
@click.option(
    "--stale-minutes",
    type=click.IntRange(min=0),
    default=DEFAULT_STALE_MINUTES,
    show_default=True,
    help="Tracking not accepted this long after it was queued counts as stuck.",
)
@click.option("--fix", is_flag=True, help="Heal what is safe (re-deliver, re-ack, re-queue).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def reconcile(
    obj: CliContext,
    account_name: str,
    days: int,
    host_db: Path | None,
    stale_minutes: int,
    fix: bool,
    as_json: bool,
) -> None:
    """Find lines lost between CI, the ledger and the host; --fix heals the safe ones.

    \b
    Checks, per account:
      exported_missing  CI (or the ledger) says exported/stored, the host lacks the line.
                        --fix: back to 'staged'; the next sync re-delivers it.
      unacked           the host has the line but no mark_exported is recorded.
                        --fix: bind it in the ledger and re-send mark_exported.
      tracking          shipments without accepted tracking (stuck, rejected, held, or
                        never dispatched). --fix: re-queue stuck rows for the next flush and
                        dispatch shipments the plugin never got; rejected/held need you.
      unexported_unknown  CI lists the line as un-exported, the ledger never saw it
                        (older than --stale-minutes). --fix: stage it; the next sync
                        hands it to the host.

    Exits 0 when nothing remains, 1 when findings remain (or an account failed).

    \b
    Example:
      ci-connector --config connector.toml reconcile --account us --days 7
      ci-connector reconcile --fix && ci-connector sync
      ci-connector reconcile --json | jq '.accounts[].counts'
    """
    config = obj.config()
    accounts = select_accounts(config, account_name)
    if host_db is None:
        candidate = config.data_dir / HOST_DB_NAME
        host_db = candidate if candidate.is_file() else None
    elif not host_db.is_file():
        raise click.ClickException(f"--host-db {host_db}: file not found")

    from connector.ci.client import CIClient
    from connector.ledger import open_ledger
    from connector.runtime.pglock import account_lock

    reports: list[ReconcileReport] = []
    failures: list[dict[str, str]] = []
    host: HostView | None = None
    try:
        if host_db is not None:
            host = HostView(host_db)
        for account in accounts:
            if account.channel != "groupon":
                if account_name != "all":
                    failures.append(
                        {
                            "account": account.name,
                            "error": f"channel {account.channel!r} is not groupon",
                        }
                    )
                continue  # other channels keep no Groupon ledger
            # --fix changes the ledger and calls CI: it holds the account like a hook call.
            lock = account_lock(account)  # the backend's lock: file, or PostgreSQL advisory
            try:
                config.require_token(account.name)
                if fix:
                    lock.acquire(account.options.lock_timeout_seconds)
                try:
                    ledger = open_ledger(account, recover=fix)  # --fix rebuilds a lost ledger
                except BaseException:
                    lock.close()
                    raise
            except (ChannelError, ConfigError) as exc:
                failures.append({"account": account.name, "error": redact(str(exc))})
                continue
            client = CIClient.for_account(account)
            try:
                reports.append(
                    reconcile_account(
                        account,
                        client=client,
                        ledger=ledger,
                        host=host,
                        days=days,
                        stale_minutes=stale_minutes,
                        fix=fix,
                    )
                )
            except ChannelError as exc:
                # Which setting to check (base_url, token variable, supplier id), not urllib3.
                failures.append(
                    {"account": account.name, "error": explain(exc, account, config.path)}
                )
            finally:
                client.close()
                ledger.close()
                lock.close()
    except HostViewError as exc:
        raise click.ClickException(redact(str(exc))) from None
    finally:
        if host is not None:
            host.close()

    clean = not failures and all(r.clean for r in reports)
    if as_json:
        totals = {c: {"found": 0, "fixed": 0, "remaining": 0} for c in CHECKS}
        for r in reports:
            for check, counts in r.counts().items():
                for key, n in counts.items():
                    totals[check][key] += n
        emit_json(
            {
                "clean": clean,
                "fix": fix,
                "counts": totals,
                "accounts": [r.to_dict() for r in reports],
                "failures": failures,
            }
        )
    else:
        _print_table(reports, fix)
        for failure in failures:
            say(f"{failure['account']}: reconcile failed: {failure['error']}", err=True)
    if not clean:
        raise click.exceptions.Exit(1)


def _print_table(reports: list[ReconcileReport], fix: bool) -> None:
    for r in reports:
        host = str(r.host_db) if r.host_db else "none (ledger bindings trusted)"
        say(
            f"{r.account}: {r.windows_read} CI window(s) over {r.days} day(s), "
            f"{r.ci_lines_seen} line(s) seen, {r.ci_exported} exported; host db: {host}"
        )
        if not r.findings:
            say(f"{r.account}: clean")
            continue
        rows = [
            [
                f.check,
                f.kind,
                f.ci_lineitemid if f.ci_lineitemid is not None else "",
                f.orderid or f.shipment_id or "",
                "fixed" if f.fixed else ("fixable" if f.fixable else "operator"),
                f.detail,
            ]
            for f in r.findings
        ]
        say(render_table(["CHECK", "KIND", "LINE", "ORDER/SHIPMENT", "STATUS", "DETAIL"], rows))
        say("")
        say("What to do:")
        for f in r.remaining:
            say(f"  line {f.ci_lineitemid}: {f.action}")
        for note in r.notes:
            say(f"  {note}")
        counts = r.counts()
        summary = ", ".join(
            f"{c} {counts[c]['found']} found/{counts[c]['remaining']} remaining" for c in CHECKS
        )
        say(f"{r.account}: {summary}")
        if not fix and any(f.fixable for f in r.findings):
            say(f"{r.account}: run with --fix to heal the fixable findings")
