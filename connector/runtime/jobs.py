"""The account jobs: the same functions for ``ci-connector run`` (embedded scheduler, one
process, SQLite) and for a job-engine worker (many processes and machines).

Every job works one account, acts as the reference host (``ci-connector sync``'s host store in
``<data_dir>/reference-host.sqlite3``) and returns a :class:`JobResult`. A job is safe to run
again after a crash or beside another worker: each hook call holds the account's exclusion and
every outbound call is claimed in the ledger first (see ``docs/reliability.md``).

* :func:`import_job`: import -> store -> acknowledge -> notices -> flush (one sync cycle);
* :func:`flush_job`: re-send shipments the host recorded but never handed over, then flush
  the outbox (queued acknowledgements and tracking);
* :func:`sla_job`: refresh the SLA risks; each risk is kept as a host notice;
* :func:`prune_job`: retention (``retention_days``): customer details of finished lines go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connector.errors import ChannelError
from connector.ledger import Ledger, open_ledger
from connector.models import Account, LineOutcome
from connector.reference_host.facade import ChannelFacade
from connector.reference_host.host import HOST_DB_NAME, ReferenceHost
from connector.runtime.identity import REFERENCE_HOST, acting_as
from connector.runtime.locks import AccountLock
from connector.runtime.pglock import account_lock
from connector.secrets import redact

__all__ = [
    "JOBS",
    "JobResult",
    "JobRuntime",
    "account_ledger",
    "flush_job",
    "import_job",
    "next_import_due",
    "parse_job_names",
    "prune_job",
    "sla_job",
]

log = logging.getLogger("connector.runtime.jobs")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class JobResult:
    """What one job did: ``ok`` (no error), counts, errors, and (import only) when the next
    import is due earlier than its interval (``import_delay_minutes`` lines ripening)."""

    job: str
    account: str
    ok: bool = True
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    next_due: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "job": self.job,
            "account": self.account,
            "ok": self.ok,
            "counts": dict(self.counts),
            "errors": list(self.errors),
            "seconds": round(self.seconds, 3),
            "next_due": self.next_due.isoformat() if self.next_due else None,
        }


class JobRuntime:
    """What the jobs share in one process: the plugin facade and the reference host store.

    :param data_dir: the config's ``data_dir`` (the host store lives there).
    :param facade: the loaded channel plugins.
    :param clock: aware UTC now.
    :param lock_factory: the account exclusion for jobs that open the ledger themselves
        (prune); the default is the lock the plugin takes (file or PostgreSQL advisory).
    """

    def __init__(
        self,
        data_dir: Path,
        facade: ChannelFacade,
        *,
        clock: Callable[[], datetime] = _utcnow,
        lock_factory: Callable[[Account], AccountLock] | None = None,
    ) -> None:
        self.facade = facade
        self.clock = clock
        self.host = ReferenceHost(Path(data_dir) / HOST_DB_NAME, facade, clock=clock)
        # Default: the backend's lock (file beside a SQLite ledger, advisory in PostgreSQL).
        self.lock_factory = lock_factory or account_lock

    def close(self) -> None:
        self.host.close()

    def __enter__(self) -> JobRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def account_ledger(runtime: JobRuntime, account: Account) -> Iterator[Ledger]:
    """The account's ledger, opened and held under the account's exclusion."""
    lock = runtime.lock_factory(account)
    lock.acquire(account.options.lock_timeout_seconds)
    try:
        ledger = open_ledger(account)
        try:
            yield ledger
        finally:
            ledger.close()
    finally:
        lock.release()
        lock.close()


@contextmanager
def _job(name: str, account: Account) -> Iterator[JobResult]:
    result = JobResult(name, account.name)
    started = time.monotonic()
    try:
        with acting_as(REFERENCE_HOST):
            yield result
    except ChannelError as exc:
        result.ok = False
        result.errors.append(f"{type(exc).__name__}: {redact(str(exc))}")
    result.ok = result.ok and not result.errors
    result.seconds = time.monotonic() - started
    log.info(
        "account %s: %s %s %s", account.name, name, "ok" if result.ok else "failed", result.counts
    )


def import_job(runtime: JobRuntime, account: Account) -> JobResult:
    """One sync cycle of the reference host (import while ``more``, store, acknowledge,
    notices, flush)."""
    with _job("import", account) as result:
        report = runtime.host.sync(account)
        result.counts = {
            "orders_new": report.orders_new,
            "lines_imported": report.lines_imported,
            "lines_marked_exported": report.lines_marked_exported,
            "cancellations_applied": report.cancellations_applied,
            "held": report.held,
            "retried_ok": report.retried_ok,
            "still_queued": report.still_queued,
        }
        result.errors += report.errors
        result.next_due = next_import_due(runtime, account)
    return result


def next_import_due(runtime: JobRuntime, account: Account) -> datetime | None:
    """When lines held back by ``import_delay_minutes`` become old enough, if any."""
    delay = account.options.import_delay_minutes
    if delay <= 0:
        return None
    with account_ledger(runtime, account) as ledger:
        youngest = ledger.earliest_waiting_order_date()
    return None if youngest is None else youngest + timedelta(minutes=delay)


def flush_job(runtime: JobRuntime, account: Account) -> JobResult:
    """Re-send shipments never handed over, then flush queued acknowledgements and tracking."""
    with _job("flush", account) as result:
        redispatched = 0
        for shipment in runtime.host.store.undispatched_shipments(account.name):
            runtime.host.ship(account, shipment)
            redispatched += 1
        flushed = runtime.facade.flush_outbox(account=account)
        result.counts = {
            "redispatched": redispatched,
            "flushed": len(flushed),
            "accepted": sum(1 for r in flushed if r.outcome is LineOutcome.ACCEPTED),
            "queued": sum(1 for r in flushed if r.outcome is LineOutcome.QUEUED),
        }
    return result


def sla_job(runtime: JobRuntime, account: Account) -> JobResult:
    """Refresh the SLA risks; each new risk becomes a host notice (deduplicated)."""
    with _job("sla", account) as result:
        risks = runtime.facade.sla_at_risk(account=account, now=runtime.clock())
        new = 0
        for risk in risks:
            new += runtime.host.store.record_notice(
                account.name,
                f"sla_{risk.state}",
                risk.reason,
                ci_lineitemid=risk.ci_lineitemid,
                orderid=risk.orderid,
            )
        result.counts = {"at_risk": len(risks), "new_notices": new}
    return result


def prune_job(runtime: JobRuntime, account: Account) -> JobResult:
    """Retention: remove customer details of lines finished ``retention_days`` ago."""
    with _job("prune", account) as result:
        now = runtime.clock()
        with account_ledger(runtime, account) as ledger:
            pruned = ledger.prune(now - timedelta(days=account.options.retention_days), now)
        result.counts = {"pruned": pruned}
    return result


JOBS: dict[str, Callable[[JobRuntime, Account], JobResult]] = {
    "import": import_job,
    "flush": flush_job,
    "sla": sla_job,
    "prune": prune_job,
}
"""Every job by name (the worker registers one task per entry)."""


def parse_job_names(value: str) -> tuple[str, ...]:
    """Comma-separated job names (``--jobs`` of ``run`` and ``worker``), checked against
    :data:`JOBS`.

    :raises ValueError: a name is unknown, or none is given.
    """
    wanted = tuple(j.strip() for j in value.split(",") if j.strip())
    unknown = sorted(set(wanted) - set(JOBS))
    if unknown or not wanted:
        raise ValueError(
            f"unknown job(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(JOBS)}"
        )
    return wanted
