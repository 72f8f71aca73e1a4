"""``ci-connector run``: the embedded scheduler (one machine, SQLite, no database server)."""

from __future__ import annotations

import json
import signal
import sys
from functools import partial
from types import FrameType

import click

from connector.cli import open_facade, select_accounts
from connector.cli.context import CliContext, say
from connector.cli.output import prints_no_data
from connector.errors import ConfigError
from connector.reference_host.store import HostStoreError
from connector.runtime.jobs import JOBS, JobResult, JobRuntime, parse_job_names
from connector.runtime.scheduler import Scheduler
from connector.secrets import redact


@prints_no_data
@click.command()
@click.option(
    "--account",
    "account_name",
    default="all",
    show_default=True,
    metavar="NAME|all",
    help="Account to work (its name in the config), or 'all'.",
)
@click.option(
    "--jobs",
    "job_names",
    default=",".join(JOBS),
    show_default=True,
    help="Comma-separated jobs to schedule (import, flush, sla, prune).",
)
@click.option(
    "--max-runs",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many jobs (for a smoke test; default: run until stopped).",
)
@click.pass_obj
def run(obj: CliContext, account_name: str, job_names: str, max_runs: int | None) -> None:
    """Work every account on a schedule until stopped (SIGTERM or Ctrl-C).

    \b
    Per account: import (every import_interval_minutes, sooner when orders held back by
    import_delay_minutes ripen), flush the outbox (flush_interval_minutes), refresh the SLA
    risks (sla_interval_minutes) and prune old customer data (daily, retention_days); the
    orders go into the reference host's store <data_dir>/reference-host.sqlite3, as with
    `sync`. One job at a time; SIGTERM or Ctrl-C lets the job in progress finish, then the
    command exits 0. Each job prints one JSON line on stdout.

    \b
    Example:
      ci-connector --config connector.toml run
      ci-connector run --account us --jobs import,flush
    """
    config = obj.config()
    accounts = select_accounts(config, account_name)
    try:
        wanted = parse_job_names(job_names)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--jobs") from None
    for account in accounts:
        try:
            config.require_token(account.name)
        except ConfigError as exc:
            raise click.ClickException(redact(str(exc))) from None
    try:
        runtime = JobRuntime(config.data_dir, open_facade())
    except HostStoreError as exc:
        raise click.ClickException(redact(str(exc))) from None

    def report(result: JobResult) -> None:
        click.echo(json.dumps(result.to_dict(), sort_keys=True))
        sys.stdout.flush()
        for error in result.errors:
            say(f"{result.account}: {result.job}: {error}", err=True)

    jobs = {name: partial(JOBS[name], runtime) for name in wanted}
    scheduler = Scheduler(accounts, jobs, on_result=report)

    def stop(signum: int, _frame: FrameType | None) -> None:
        if scheduler.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the operator insists
        say(f"{signal.Signals(signum).name}: stopping after the job in progress", err=True)
        scheduler.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with runtime:
            ran = scheduler.run(max_runs=max_runs)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say(f"stopped after {ran} job(s)", err=True)
