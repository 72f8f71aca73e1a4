"""``ci-connector worker``: the account jobs on procrastinate (a PostgreSQL task queue), so many
processes on many machines share the accounts of one configuration.

The jobs are :data:`connector.runtime.jobs.JOBS` (import, flush, sla, prune), the very
functions ``ci-connector run`` schedules in one process. Here each (account, job) pair is a
chain of procrastinate jobs of one task, :data:`JOB_TASK`:

* a job runs the job function, then defers the pair's next run at its due time (the job's
  interval, sooner when ``import_delay_minutes`` lines ripen, 30 s after ``AccountBusy``):
  a :data:`WAKE_TASK` job, without the account's lock, that queues the job when due;
* the periodic task :data:`TICK_TASK` (every ``tick_seconds``, deferred once per tick whatever
  the number of workers) starts a chain for every pair that has none waiting or running —
  on first start, after a config change, after a job failed for good — and hands the jobs of
  a worker that stopped sending heartbeats (SIGKILL, a lost machine) back to the queue.

One account is never worked by two jobs at once: every job of an account carries the
procrastinate ``lock`` ``account:<name>`` (jobs with one lock run one after the other, on any
worker), each pair at most one waiting job (``queueing_lock``), and every hook call inside
holds the account's own exclusion (a PostgreSQL advisory lock; see
:mod:`connector.runtime.pglock`).

Stopping (:class:`StopControl`): SIGTERM or Ctrl-C stops taking jobs and gives the jobs in
progress ``stop_seconds`` (10) to finish; past that their CI calls are cut short (a job cut
short is retried, like a killed one). The worker then hands its jobs back to the queue and
exits 0. When that cannot happen within ``settle_seconds`` more (the database is down or
hangs), it says so and exits 1 anyway: its jobs are retried by another worker once its
heartbeat is ``stalled_seconds`` old. A second signal exits at once. SIGKILL loses nothing:
the killed job is retried (its ledger claims expire or belong to a dead process, the advisory
lock died with its session), and every job function is safe to run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector.ci.bounded import CallScope
from connector.config import ConnectorConfig, load_config
from connector.errors import LedgerError
from connector.ledger.postgres import advisory_key, connect, display_url
from connector.runtime.jobs import JOBS, JobResult, JobRuntime
from connector.runtime.pglock import account_lock
from connector.runtime.scheduler import BUSY_RETRY, interval_of
from connector.secrets import Secret, redact

if TYPE_CHECKING:
    import procrastinate
    import psycopg

__all__ = [
    "JOB_TASK",
    "QUEUE",
    "TICK_TASK",
    "WAKE_TASK",
    "StopControl",
    "WorkerSettings",
    "build_app",
    "ensure_queue_schema",
    "run_worker",
]

log = logging.getLogger("connector.runtime.worker")

_WATCH_POLL = 0.05

QUEUE = "ci-connector"
JOB_TASK = "ci_connector.account_job"
WAKE_TASK = "ci_connector.account_due"
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
    :ivar stop_seconds / settle_seconds: see :class:`StopControl`.
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
    stop_seconds: float = 10.0
    settle_seconds: float = 5.0


def _queueing_lock(account: str, job: str) -> str:
    return f"{account}:{job}"


def _account_lock_name(account: str) -> str:
    return f"account:{account}"


# -- stopping ---------------------------------------------------------------------------------


class StopControl:
    """A bounded stop, whatever state the database is in.

    The first stop request (:meth:`request`) starts a watchdog thread: the jobs in progress
    get ``stop_seconds`` to end; past that the CI calls of each one are cut short (its
    :class:`~connector.ci.bounded.CallScope` is cancelled: the call in flight ends at once and
    every later one fails, which the jobs handle as a failed call) and they get
    ``settle_seconds`` more; then the worker has ``settle_seconds`` to hand its jobs back to
    the queue (:meth:`finished`). Past that the process exits 1 with a line saying why
    (``os._exit``: a thread stuck on an unreachable database cannot be joined). Cutting short
    is safe: every CI call is claimed in the ledger first and recorded idempotently, so a job
    cut short, or left "doing" in the queue, is retried and repeats nothing.

    :param say: where the stop's lines go (stderr by default).
    :param exit: how the watchdog ends the process (``os._exit``; tests replace it).
    """

    def __init__(
        self,
        name: str,
        stop_seconds: float = 10.0,
        settle_seconds: float = 5.0,
        *,
        say: Callable[[str], None] | None = None,
        exit: Callable[[int], None] = os._exit,
    ) -> None:
        self.name = name
        self.stop_seconds = stop_seconds
        self.settle_seconds = settle_seconds
        self._say = say or _say_stderr
        self._exit = exit
        # Re-entrant: request() runs in a signal handler, on the main thread, which may hold it.
        self._lock = threading.RLock()
        self._scopes: set[CallScope] = set()
        self._cut = False
        self._requests = 0
        self._listeners: list[Callable[[], object]] = []
        self.done = threading.Event()
        self.watchdog: threading.Thread | None = None

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        """Run one job's CI calls (in the calling thread) where a stop can cut them short."""
        scope = CallScope()
        with self._lock:
            self._scopes.add(scope)
            if self._cut:
                scope.cancel()
        try:
            with scope.active():
                yield
        finally:
            with self._lock:
                self._scopes.discard(scope)

    @property
    def requested(self) -> bool:
        return self._requests > 0

    def on_request(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` on the first stop request (at once if one came already)."""
        with self._lock:
            self._listeners.append(callback)
            now = self._requests > 0
        if now:
            callback()

    def running(self) -> int:
        with self._lock:
            return len(self._scopes)

    def request(self, why: str) -> bool:
        """A stop was asked for (a signal). Returns ``True`` the first time; a second request
        exits at once."""
        with self._lock:
            self._requests += 1
            first = self._requests == 1
        if not first:
            self._say(f"worker {self.name}: {why} again: exiting now without waiting")
            self._exit(1)
            return False
        # The lines are written by the watchdog thread: this may run in a signal handler,
        # interrupting a write to the same stream.
        self.watchdog = threading.Thread(
            target=self._watch, args=(why,), name="worker-stop", daemon=True
        )
        self.watchdog.start()
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()
        return True

    def cut(self) -> None:
        """Cut short the CI calls of every job in progress (and of any that starts later)."""
        with self._lock:
            self._cut = True
            scopes = list(self._scopes)
        for scope in scopes:
            scope.cancel()

    def was_cut(self, result: JobResult) -> bool:
        """Whether ``result`` is of a job that failed after its calls were cut short."""
        with self._lock:
            return self._cut and not result.ok

    def finished(self) -> None:
        """The worker handed its jobs back to the queue and is about to exit."""
        self.done.set()

    def _watch(self, why: str) -> None:
        # Polled: a job fetched just before the request may start after it, and the
        # hand-back only begins once no job runs.
        grace_end = time.monotonic() + self.stop_seconds
        running = self.running()
        self._say(
            f"worker {self.name}: {why}: stopping (no new jobs; "
            + (
                f"{running} job(s) in progress get up to {self.stop_seconds:g} s to finish)"
                if running
                else "no job in progress)"
            )
        )
        cut_at: float | None = None
        idle_since: float | None = None
        while not self.done.wait(_WATCH_POLL):
            now = time.monotonic()
            running = self.running()
            if running == 0:
                idle_since = idle_since if idle_since is not None else now
                if now - idle_since >= self.settle_seconds:
                    break  # the jobs are over; the hand-back to the queue did not come
                continue
            idle_since = None
            if cut_at is None and now >= grace_end:
                self._say(
                    f"worker {self.name}: {running} job(s) still running after "
                    f"{self.stop_seconds:g} s: cutting their CI calls short (a job cut short "
                    "is retried; nothing is sent twice)"
                )
                self.cut()
                cut_at = now
            if cut_at is not None and now - cut_at >= self.settle_seconds:
                break  # cut, and still not over: stuck on something else (the database)
        else:
            return
        running = self.running()
        self._say(
            f"worker {self.name}: could not hand its jobs back to the queue within "
            f"{self.settle_seconds:g} s (is the database reachable?): exiting now"
            + (f" with {running} job(s) unfinished" if running else "")
            + "; another worker retries them once this one's heartbeat is --stalled-seconds"
            " old, and ledger claims of this process are taken over (it is gone)"
        )
        self._exit(1)


def _say_stderr(text: str) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


# -- the job function side (runs in a worker thread) ------------------------------------------


class JobRunner:
    """Runs one job of one account in the calling thread: loads the config, builds a
    :class:`JobRuntime` (the reference host's store is a SQLite connection of this thread),
    runs the job function, and releases every ledger connection the plugins opened (so a
    worker holds connections only for the jobs in progress, however many accounts)."""

    def __init__(self, config_path: Path, stop: StopControl | None = None) -> None:
        self.config_path = config_path
        self.stop = stop
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
        guard = self.stop.job() if self.stop is not None else contextlib.nullcontext()
        try:
            with guard, JobRuntime(config.data_dir, facade, lock_factory=account_lock) as runtime:
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
        """Defer the pair's next job (``False``: one is already waiting).

        A run due later is a :data:`WAKE_TASK` job without the account's lock that defers
        the job itself when due: procrastinate runs the jobs of one lock in id order whatever
        their ``scheduled_at`` (its issue 1599), so a job chained minutes (a prune: a day)
        ahead with the lock would hold back every later job of the account until then."""
        if at is not None and at > datetime.now(UTC):
            configured = app.configure_task(
                WAKE_TASK, queue=QUEUE, queueing_lock=_queueing_lock(account, job), schedule_at=at
            )
        else:
            configured = app.configure_task(
                JOB_TASK,
                queue=QUEUE,
                lock=_account_lock_name(account),
                queueing_lock=_queueing_lock(account, job),
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
        stop = job_runner.stop
        if stop is not None and stop.was_cut(result):
            # Cut short by this worker's stop: whatever it left (claims, queued acks) is for
            # the next worker now, not at the next interval.
            await defer(account, job)
            return
        await defer(account, job, next_due(job, result, interval_of(job, acct), now))

    @app.task(name=WAKE_TASK, queue=QUEUE)
    async def account_due(account: str, job: str) -> None:
        # Running (not waiting) now, so the queueing lock is free for the job itself.
        await defer(account, job)

    @app.periodic(cron=_cron(settings.tick_seconds), periodic_id="tick")
    @app.task(name=TICK_TASK, queue=QUEUE, pass_context=True)
    async def tick(context: procrastinate.JobContext, timestamp: int) -> None:
        # One tick at a time over every worker. Two at once both saw a pair without a job,
        # and when a worker took the first one's job before the second deferred its own, the
        # queueing lock (it only covers waiting jobs) let the second in: the pair ran twice.
        held = await asyncio.to_thread(_tick_lock, settings.url, settings.password)
        if held is None:
            return  # another worker's tick is doing this very work
        try:
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
        finally:
            await asyncio.to_thread(held.close)  # ending the session frees the lock

    return app


def _cron(seconds: int) -> str:
    """Every ``seconds`` (croniter reads a sixth field as seconds), or whole minutes."""
    if seconds >= 60:
        return f"*/{max(seconds // 60, 1)} * * * *"
    return f"* * * * * */{max(seconds, 1)}"


def _tick_lock(url: str, password: Secret | None) -> psycopg.Connection[Any] | None:
    """A session holding the tick's advisory lock, or ``None`` when another session holds it
    (no wait: that tick does the work). A session lock, not procrastinate's job ``lock``: a
    tick job left "doing" by a killed worker would hold that one until the stalled-job retry,
    which only a tick runs."""
    conn = connect(url, password, role="tick")
    try:
        row = conn.execute(
            "SELECT pg_try_advisory_lock(%s)", (advisory_key("queue", "tick"),)
        ).fetchone()
    except BaseException:
        conn.close()
        raise
    if row is not None and row[0]:
        return conn
    conn.close()
    return None


async def _pairs_in_queue(app: procrastinate.App) -> set[tuple[str, str]]:
    """(account, job) pairs with a job waiting or running."""
    rows = await app.connector.execute_query_all_async(
        "SELECT args FROM procrastinate_jobs WHERE task_name IN (%(task)s, %(wake)s)"
        " AND status IN ('todo', 'doing')",
        task=JOB_TASK,
        wake=WAKE_TASK,
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
    stop: StopControl | None = None,
) -> None:
    """Run a worker until SIGTERM/SIGINT (see :class:`StopControl` for the bounded stop).

    The signal handlers are ours, from start to exit: procrastinate's own leave the default
    handlers in place while it shuts down (a signal then kills the process mid-hand-back) and
    its shutdown has no bound when the database does not answer."""
    ensure_queue_schema(settings.url, settings.password)
    stop = stop or StopControl(settings.name, settings.stop_seconds, settings.settle_seconds)
    app = build_app(settings, runner=JobRunner(settings.config_path, stop), on_result=on_result)

    def on_signal(signum: int, _frame: object) -> None:
        stop.request(signal.Signals(signum).name)

    import procrastinate

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        asyncio.run(_serve(app, settings, stop, wait=wait))
    except procrastinate.exceptions.ConnectorException as exc:
        cause = exc.__cause__ or exc
        raise LedgerError(
            redact(f"the job queue in {display_url(settings.url)} failed: {cause}".strip())
        ) from None
    finally:
        stop.finished()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


async def _serve(
    app: procrastinate.App, settings: WorkerSettings, stop: StopControl, *, wait: bool
) -> None:
    loop = asyncio.get_running_loop()
    async with app.open_async():
        task = asyncio.create_task(
            app.run_worker_async(
                queues=[QUEUE],
                concurrency=settings.concurrency,
                name=settings.name,
                wait=wait,
                update_heartbeat_interval=settings.heartbeat_seconds,
                stalled_worker_timeout=settings.stalled_seconds,
                fetch_job_polling_interval=min(5.0, float(settings.tick_seconds)),
                delete_jobs="never" if settings.keep_jobs else "successful",
                install_signal_handlers=False,
            )
        )
        # procrastinate takes a cancelled run for a stop: no new job, the running ones
        # awaited, the worker unregistered.
        stop.on_request(lambda: loop.call_soon_threadsafe(task.cancel))
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled() or not stop.requested:
                raise


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
