"""The embedded scheduler: intervals, earlier imports for delayed orders, busy retries, stop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from connector.models import Account, AccountOptions
from connector.runtime.jobs import JobResult
from connector.runtime.scheduler import BUSY_RETRY, Scheduler, interval_of
from connector.secrets import Secret

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _account(name: str) -> Account:
    return Account(
        name=name,
        channel="groupon",
        supplier_id="1",
        token=Secret("t" * 31),
        data_dir=Path("unused"),
        options=AccountOptions(import_interval_minutes=10, flush_interval_minutes=3),
    )


def test_jobs_run_on_their_intervals_earliest_first() -> None:
    clock = FakeClock()
    ran: list[tuple[str, str, datetime]] = []

    def job(name: str):  # type: ignore[no-untyped-def]
        def run(account: Account) -> JobResult:
            ran.append((account.name, name, clock.now))
            clock.now += timedelta(seconds=1)
            return JobResult(name, account.name)

        return run

    sched = Scheduler(
        [_account("us"), _account("uk")],
        {"import": job("import"), "flush": job("flush")},
        clock=clock,
    )
    # The scheduler waits on its stop event: make waiting move the fake clock instead.
    sched._stop.wait = lambda t: (setattr(clock, "now", clock.now + timedelta(seconds=t)), False)[1]  # type: ignore[method-assign,assignment]
    sched.run(max_runs=8)
    assert [(a, j) for a, j, _ in ran[:4]] == [
        ("us", "import"),
        ("us", "flush"),
        ("uk", "import"),
        ("uk", "flush"),
    ]
    flushes = [t for a, j, t in ran if (a, j) == ("us", "flush")]
    assert flushes[1] - flushes[0] >= timedelta(minutes=3)
    assert flushes[1] - flushes[0] < timedelta(minutes=3, seconds=10)
    assert interval_of("prune", _account("us")) == timedelta(days=1)


def test_delayed_orders_bring_the_import_forward_and_busy_retries_soon() -> None:
    clock = FakeClock()
    results = iter(
        [
            JobResult("import", "us", next_due=T0 + timedelta(minutes=2)),
            JobResult("import", "us", ok=False, errors=["AccountBusy: account us is busy"]),
            JobResult("import", "us"),
        ]
    )
    times: list[datetime] = []

    def job(account: Account) -> JobResult:
        times.append(clock.now)
        return next(results)

    sched = Scheduler([_account("us")], {"import": job}, clock=clock)
    sched._stop.wait = lambda t: (setattr(clock, "now", clock.now + timedelta(seconds=t)), False)[1]  # type: ignore[method-assign,assignment]
    sched.run(max_runs=3)
    assert times == [T0, T0 + timedelta(minutes=2), T0 + timedelta(minutes=2) + BUSY_RETRY]


def test_stop_ends_the_loop_between_jobs() -> None:
    clock = FakeClock()
    calls: list[str] = []
    sched: Scheduler

    def job(account: Account) -> JobResult:
        calls.append(account.name)
        sched.stop()  # SIGTERM arrives during the job: the job still completes
        return JobResult("import", account.name)

    sched = Scheduler([_account("us"), _account("uk")], {"import": job}, clock=clock)
    assert sched.run() == 1
    assert calls == ["us"]
