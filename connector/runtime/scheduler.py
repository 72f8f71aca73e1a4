"""The embedded scheduler of ``ci-connector run``: every account's jobs, one at a time, on
their intervals, in one process; stopping between jobs only.

Each (account, job) pair has a due time. The loop runs the pair due first, then schedules it
again one interval later (an import may ask to come back earlier, when lines held back by
``import_delay_minutes`` ripen; a job refused with ``AccountBusy`` is retried after a short
wait). :meth:`Scheduler.stop` (SIGTERM, Ctrl-C) lets the job in progress finish and then
returns: nothing is left half-done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connector.models import Account
from connector.runtime.jobs import JobResult

__all__ = ["BUSY_RETRY", "Scheduler", "interval_of"]

log = logging.getLogger("connector.runtime.scheduler")

BUSY_RETRY = timedelta(seconds=30)
"""How soon a job refused because another process worked the account runs again."""

PRUNE_INTERVAL = timedelta(days=1)


def interval_of(job: str, account: Account) -> timedelta:
    """The interval of ``job`` for ``account`` (from its options; prune runs daily)."""
    options = account.options
    minutes = {
        "import": options.import_interval_minutes,
        "flush": options.flush_interval_minutes,
        "sla": options.sla_interval_minutes,
    }.get(job)
    return PRUNE_INTERVAL if minutes is None else timedelta(minutes=minutes)


@dataclass
class _Slot:
    due: datetime
    account: Account
    job: str


class Scheduler:
    """Runs ``jobs`` for ``accounts``; see the module docstring.

    :param jobs: name -> function ``(account) -> JobResult`` (bound to a runtime already).
    :param clock: aware UTC now.
    :param on_result: called after every job (the CLI prints a line).
    """

    def __init__(
        self,
        accounts: Sequence[Account],
        jobs: Mapping[str, Callable[[Account], JobResult]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_result: Callable[[JobResult], None] | None = None,
    ) -> None:
        self.jobs = dict(jobs)
        self.clock = clock
        self.on_result = on_result or (lambda _r: None)
        self._stop = threading.Event()
        now = clock()
        # Every job of every account is due at once on start, in the order given.
        self.slots = [_Slot(now, a, j) for a in accounts for j in self.jobs]
        self.runs = 0

    def stop(self) -> None:
        """Finish the job in progress, then return from :meth:`run` (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, max_runs: int | None = None) -> int:
        """Run jobs until stopped (or ``max_runs`` jobs ran); returns how many ran."""
        while not self._stop.is_set() and self.slots:
            if max_runs is not None and self.runs >= max_runs:
                break
            slot = min(self.slots, key=lambda s: s.due)
            wait = (slot.due - self.clock()).total_seconds()
            if wait > 0 and self._stop.wait(wait):
                break
            result = self.jobs[slot.job](slot.account)
            self.runs += 1
            slot.due = self._next_due(slot, result)
            self.on_result(result)
        return self.runs

    def _next_due(self, slot: _Slot, result: JobResult) -> datetime:
        now = self.clock()
        if any("AccountBusy" in e for e in result.errors):
            return now + BUSY_RETRY
        due = now + interval_of(slot.job, slot.account)
        if result.next_due is not None:
            due = min(due, max(result.next_due, now))
        return due
