"""``ci-connector worker``: the account jobs on procrastinate (a PostgreSQL task queue), so many
processes on many machines share the accounts of one configuration.

The jobs are :data:`connector.runtime.jobs.JOBS` (import, flush, sla, prune), the very
functions ``ci-connector run`` schedules in one process. Here each (account, job) pair is a
chain of procrastinate jobs of one task, :data:`JOB_TASK`:

* a job runs the job function, then defers the pair's next run at its due time (the job's
  interval, sooner when ``import_delay_minutes`` lines ripen, 30 s after ``AccountBusy``);
* the periodic task :data:`TICK_TASK` (every ``tick_seconds``, deferred once per tick whatever
  the number of workers) starts a chain for every pair that has none waiting or running —
  on first start, after a config change, after a job failed for good — and hands the jobs of
  a worker that stopped sending heartbeats (SIGKILL, a lost machine) back to the queue.

One account is never worked by two jobs at once: every job of an account carries the
procrastinate ``lock`` ``account:<name>`` (jobs with one lock run one after the other, on any
worker), each pair at most one waiting job (``queueing_lock``), and every hook call inside
holds the account's own exclusion (a PostgreSQL advisory lock; see
:mod:`connector.runtime.pglock`).

Stopping: SIGTERM or Ctrl-C lets the jobs in progress finish, then the worker exits 0 (a
second signal aborts). SIGKILL loses nothing: the killed job is retried (its ledger claims
expire or belong to a dead process, the advisory lock died with its session), and every job
function is safe to run again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector.config import ConnectorConfig, load_config
from connector.errors import LedgerError
from connector.ledger.postgres import advisory_key, connect, display_url
from connector.runtime.jobs import JOBS, JobResult, JobRuntime
from connector.runtime.pglock import account_lock
from connector.runtime.scheduler import BUSY_RETRY, interval_of
from connector.secrets import Secret, redact

if TYPE_CHECKING:
    import procrastinate

__all__ = [
    "JOB_TASK",
    "QUEUE",
    "TICK_TASK",
    "WorkerSettings",
    "build_app",
    "ensure_queue_schema",
    "run_worker",
]

log = logging.getLogger("connector.runtime.worker")

QUEUE = "ci-connector"
JOB_TASK = "ci_connector.account_job"
TICK_TASK = "ci_connector.tick"


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker works and how.

    :ivar config_path: the connector configuration (read by every job).
    :ivar url: the queue database (the config's ``[connector] ledger_url`` by default).
    :ivar accounts: account names to work (``None``: every account of the config).
    :ivar jobs: job names to schedule.
    :ivar concurrency: jobs run at once by this process (each in a thread of its own).
    :ivar tick_seconds: how often the chains are checked and stalled jobs handed back.
    :ivar heartbeat_seconds / stalled_seconds: a worker silent for ``stalled_seconds`` is
        taken for dead and its jobs are retried.
    :ivar keep_jobs: keep finished jobs (and their event log) in the queue for inspection;
        by default a job that succeeded is deleted (the next run of its pair is a new job).
    """

    config_path: Path
    url: str
    password: Secret | None = None
    accounts: tuple[str, ...] | None = None
    jobs: tuple[str, ...] = tuple(JOBS)
    concurrency: int = 1
    tick_seconds: int = 30
    heartbeat_seconds: float = 10.0
    stalled_seconds: float = 30.0
    name: str = "ci-connector"
    keep_jobs: bool = False


def _queueing_lock(account: str, job: str) -> str:
    return f"{account}:{job}"


def _account_lock_name(account: str) -> str:
    return f"account:{account}"


# -- the job function side (runs in a worker thread) ------------------------------------------


class JobRunner:
    """Runs one job of one account in the calling thread: loads the config, builds a
    :class:`JobRuntime` (the reference host's store is a SQLite connection of this thread),
    runs the job function, and releases every ledger connection the plugins opened (so a
    worker holds connections only for the jobs in progress, however many accounts)."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self._cached: tuple[tuple[int, int], ConnectorConfig] | None = None
        self._lock = threading.Lock()

    def config(self) -> ConnectorConfig:
        """The configuration, read again only when the file changed (a worker picks up an
        edited config without a restart; with hundreds of accounts a read is not free)."""
        try:
            st = self.config_path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = (0, 0)  # load_config raises the clear error
        with self._lock:
            if self._cached is not None and self._cached[0] == stamp:
                return self._cached[1]
        loaded = load_config(self.config_path)
        with self._lock:
            self._cached = (stamp, loaded)
        return loaded

    def run(self, account_name: str, job: str) -> JobResult:
        from connector.cli import open_facade

        config = self.config()
        account = config.account(account_name)
        config.require_token(account.name)
        facade = open_facade()
        try:
            with JobRuntime(config.data_dir, facade, lock_factory=account_lock) as runtime:
                return JOBS[job](runtime, account)
        finally:
            for plugin in facade.pm.get_plugins():
                close = getattr(plugin, "close", None)
                if callable(close):
                    close()


def next_due(job: str, result: JobResult, interval: timedelta, now: datetime) -> datetime:
    """When the pair runs again (the embedded scheduler's rule)."""
    if any("AccountBusy" in e for e in result.errors):
        return now + BUSY_RETRY
    due = now + interval
    if result.next_due is not None:
        due = min(due, max(result.next_due, now))
    return due


# -- the procrastinate side ------------------------------------------------------------------


def ensure_queue_schema(url: str, password: Secret | None = None) -> bool:
    """Create procrastinate's tables in the queue database if they are missing (one worker
    does it; the others wait on an advisory lock). Returns whether they were created."""
    from procrastinate.schema import SchemaManager

    conn = connect(url, password, role="worker")
    try:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("queue", "schema"),))
        row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        if row is not None and row[0]:
            conn.execute("COMMIT")
            return False
        conn.execute(SchemaManager.get_schema())
        conn.execute("COMMIT")
        return True
    except Exception as exc:
        raise LedgerError(
            redact(f"cannot set up the job queue in {display_url(url)}: {exc}")
        ) from None
    finally:
        conn.close()


def build_app(
    settings: WorkerSettings,
    *,
    runner: JobRunner | None = None,
    on_result: Callable[[JobResult], None] | None = None,
) -> procrastinate.App:
    """The procrastinate app of ``settings``: the account job task and the tick."""
    import procrastinate

    kwargs: dict[str, Any] = {
        "application_name": f"ci-connector worker {settings.name}"[:63],
    }
    if settings.password is not None and settings.password.reveal():
        kwargs["password"] = settings.password.reveal()
    connector = procrastinate.PsycopgConnector(
        conninfo=settings.url,
        kwargs=kwargs,
        min_size=1,
        max_size=max(4, settings.concurrency + 3),
    )
    app = procrastinate.App(connector=connector)
    job_runner = runner or JobRunner(settings.config_path)
    report = on_result or (lambda _r: None)

    async def defer(account: str, job: str, at: datetime | None = None) -> bool:
        """Defer the pair's next job (``False``: one is already waiting)."""
        configured = app.configure_task(
            JOB_TASK,
            queue=QUEUE,
            lock=_account_lock_name(account),
            queueing_lock=_queueing_lock(account, job),
            schedule_at=at,
        )
        try:
            await configured.defer_async(account=account, job=job)
        except procrastinate.exceptions.AlreadyEnqueued:
            return False
        return True

    @app.task(name=JOB_TASK, queue=QUEUE, pass_context=True)
    async def account_job(context: procrastinate.JobContext, account: str, job: str) -> None:
        started = datetime.now(UTC)
        result = await asyncio.to_thread(job_runner.run, account, job)
        report(result)
        try:
            config = await asyncio.to_thread(job_runner.config)
            acct = config.account(account)
        except Exception:
            log.warning("account %s is no longer configured; its %s chain ends", account, job)
            return
        if settings.accounts is not None and account not in settings.accounts:
            return
        now = max(datetime.now(UTC), started)
        await defer(account, job, next_due(job, result, interval_of(job, acct), now))

    @app.periodic(cron=_cron(settings.tick_seconds), periodic_id="tick")
    @app.task(name=TICK_TASK, queue=QUEUE, pass_context=True)
    async def tick(context: procrastinate.JobContext, timestamp: int) -> None:
        await _retry_stalled(app, settings.stalled_seconds)
        config = await asyncio.to_thread(job_runner.config)
        names = [a.name for a in config.accounts]
        if settings.accounts is not None:
            names = [n for n in names if n in settings.accounts]
        busy = await _pairs_in_queue(app)
        for name in names:
            for job in settings.jobs:
                if (name, job) not in busy and await defer(name, job):
                    log.info("account %s: %s chain started", name, job)

    return app


def _cron(seconds: int) -> str:
    """Every ``seconds`` (croniter reads a sixth field as seconds), or whole minutes."""
    if seconds >= 60:
        return f"*/{max(seconds // 60, 1)} * * * *"
    return f"* * * * * */{max(seconds, 1)}"


async def _pairs_in_queue(app: procrastinate.App) -> set[tuple[str, str]]:
    """(account, job) pairs with a job waiting or running."""
    rows = await app.connector.execute_query_all_async(
        "SELECT args FROM procrastinate_jobs WHERE task_name = %(task)s"
        " AND status IN ('todo', 'doing')",
        task=JOB_TASK,
    )
    pairs = set()
    for row in rows:
        args = row["args"]
        if isinstance(args, str):
            args = json.loads(args)
        pairs.add((str(args.get("account")), str(args.get("job"))))
    return pairs


async def _retry_stalled(app: procrastinate.App, stalled_seconds: float) -> None:
    """Hand the jobs of workers that stopped sending heartbeats back to the queue."""
    stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_seconds)
    for job in stalled:
        log.warning("job %s (%s) of a silent worker is retried", job.id, job.call_string)
        await app.job_manager.retry_job(job)


def run_worker(
    settings: WorkerSettings,
    *,
    on_result: Callable[[JobResult], None] | None = None,
    wait: bool = True,
) -> None:
    """Run a worker until SIGTERM/SIGINT (jobs in progress finish first)."""
    ensure_queue_schema(settings.url, settings.password)
    app = build_app(settings, on_result=on_result)
    app.run_worker(
        queues=[QUEUE],
        concurrency=settings.concurrency,
        name=settings.name,
        wait=wait,
        update_heartbeat_interval=settings.heartbeat_seconds,
        stalled_worker_timeout=settings.stalled_seconds,
        fetch_job_polling_interval=min(5.0, float(settings.tick_seconds)),
        delete_jobs="never" if settings.keep_jobs else "successful",
    )


def print_result(result: JobResult) -> None:
    """One JSON line per job on stdout (as ``ci-connector run`` prints)."""
    sys.stdout.write(json.dumps(result.to_dict(), sort_keys=True) + "\n")
    sys.stdout.flush()


def account_names(value: str, config: ConnectorConfig) -> tuple[str, ...] | None:
    """``all`` -> ``None``; else the comma-separated names, each checked against the config."""
    if value == "all":
        return None
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    for name in names:
        config.account(name)
    return names
