"""``ci-connector worker``: the account jobs on procrastinate over PostgreSQL (many processes,
many machines). See :mod:`connector.runtime.worker`."""

from __future__ import annotations

import click

from connector.cli.context import CliContext, say
from connector.cli.output import prints_no_data
from connector.errors import ConfigError, LedgerError
from connector.runtime.jobs import JOBS, parse_job_names
from connector.secrets import redact


@prints_no_data  # a queue worker: it prints no data
@click.command()
@click.option(
    "--account",
    "account_names",
    default="all",
    show_default=True,
    metavar="NAMES|all",
    help="Comma-separated accounts to work (names in the config), or 'all'.",
)
@click.option(
    "--jobs",
    "job_names",
    default=",".join(JOBS),
    show_default=True,
    help="Comma-separated jobs to schedule (import, flush, sla, prune).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="Jobs this process runs at once (each on another account).",
)
@click.option(
    "--tick-seconds",
    type=click.IntRange(min=1, max=3600),
    default=30,
    show_default=True,
    help="How often missing job chains are started and a dead worker's jobs retried.",
)
@click.option(
    "--stalled-seconds",
    type=click.FloatRange(min=2),
    default=30.0,
    show_default=True,
    help="A worker silent this long is taken for dead and its jobs are retried.",
)
@click.option(
    "--stop-seconds",
    type=click.FloatRange(min=0, max=3600),
    default=10.0,
    show_default=True,
    help="On SIGTERM/Ctrl-C, how long the jobs in progress may take to finish before their "
    "CI calls are cut short (they are retried later).",
)
@click.option(
    "--name",
    default=None,
    help="Worker name shown in the job queue and in logs (default: ci-connector).",
)
@click.option(
    "--keep-jobs",
    is_flag=True,
    help="Keep finished jobs and their events in the queue (default: delete on success).",
)
@click.option(
    "--init-only",
    is_flag=True,
    help="Create the job queue's tables in the database if missing, then exit.",
)
@click.pass_obj
def worker(
    obj: CliContext,
    account_names: str,
    job_names: str,
    concurrency: int,
    tick_seconds: int,
    stalled_seconds: float,
    stop_seconds: float,
    name: str | None,
    keep_jobs: bool,
    init_only: bool,
) -> None:
    """Work the accounts' jobs from a PostgreSQL job queue, until SIGTERM or Ctrl-C.

    \b
    Needs [connector] ledger_url (and ledger_password_env, or PGPASSWORD) in the config: the
    ledgers and the queue live in that database. Start as many workers as you like, on one
    machine or many, with the same config: per account, import (import_interval_minutes,
    sooner when import_delay_minutes lines ripen), flush the outbox (flush_interval_minutes),
    refresh SLA risks (sla_interval_minutes), prune (daily). One account is never worked by
    two jobs at once. SIGTERM takes no new job, gives the jobs in progress --stop-seconds to
    finish (then cuts their CI calls short: they are retried), hands them back and exits 0;
    if the database does not answer, it says so and exits 1, at most --stop-seconds + 10 s
    after the signal (another worker retries its jobs after --stalled-seconds). A second
    signal exits at once. Each job prints one JSON line on stdout.

    \b
    Example:
      export CONNECTOR_DB_PASSWORD=...
      ci-connector --config connector.toml worker --concurrency 2
    """
    from connector.runtime.worker import (
        WorkerSettings,
        ensure_queue_schema,
        print_result,
        run_worker,
    )
    from connector.runtime.worker import (
        account_names as parse_accounts,
    )

    config = obj.config()
    if not config.ledger_url:
        where = config.path or "the configuration"
        raise click.ClickException(
            f"{where}: the worker needs a PostgreSQL database: set [connector] ledger_url "
            '(e.g. ledger_url = "postgresql://connector@db.example/connector") and '
            "ledger_password_env; for one machine without a database use `ci-connector run`"
        )
    try:
        accounts = parse_accounts(account_names, config)
        jobs = parse_job_names(job_names)
    except ConfigError as exc:
        raise click.ClickException(redact(str(exc))) from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--jobs") from None
    for account in config.accounts:
        if accounts is None or account.name in accounts:
            try:
                config.require_token(account.name)
            except ConfigError as exc:
                raise click.ClickException(redact(str(exc))) from None
    assert config.path is not None  # loaded from a file by CliContext
    settings = WorkerSettings(
        config_path=config.path.resolve(),
        url=config.ledger_url,
        password=config.ledger_password,
        accounts=accounts,
        jobs=jobs,
        concurrency=concurrency,
        tick_seconds=tick_seconds,
        heartbeat_seconds=min(10.0, stalled_seconds / 3),
        stalled_seconds=stalled_seconds,
        name=name or "ci-connector",
        keep_jobs=keep_jobs,
        stop_seconds=stop_seconds,
    )
    try:
        if init_only:
            created = ensure_queue_schema(settings.url, settings.password)
            say("job queue tables created" if created else "job queue tables already there")
            return
        say(f"worker {settings.name}: working {', '.join(accounts or ('all accounts',))}", err=True)
        run_worker(settings, on_result=print_result)
    except LedgerError as exc:
        raise click.ClickException(redact(str(exc))) from None
    say(f"worker {settings.name}: stopped", err=True)
