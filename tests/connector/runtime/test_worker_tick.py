"""The worker's tick against a real queue (the session's PostgreSQL): two ticks at once, as two
workers run them, with a worker taking the first tick's jobs in between, start each chain once
(the cause of the intermittent two-workers test: an account imported twice)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connector.runtime import worker as worker_module
from connector.runtime.jobs import JobResult
from connector.runtime.worker import (
    JOB_TASK,
    QUEUE,
    TICK_TASK,
    JobRunner,
    WorkerSettings,
    build_app,
    ensure_queue_schema,
)

pytestmark = [pytest.mark.socket, pytest.mark.timeout(120)]


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "connector.toml"
    config.write_text(
        "".join(
            f'[[accounts]]\nname = "{name}"\nsupplier_id = "{n}"\ntoken_env = "TOK"\n\n'
            for n, name in enumerate(("a1", "a2"), start=1)
        ),
        encoding="utf-8",
    )
    return config


def test_two_ticks_at_once_start_each_chain_once(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = WorkerSettings(config_path=_config(tmp_path), url=postgres_url, jobs=("import",))
    ensure_queue_schema(postgres_url)
    app = build_app(settings, runner=JobRunner(settings.config_path))
    tick = app.tasks[TICK_TASK].func
    original = worker_module._pairs_in_queue
    reads: list[asyncio.Event] = []
    go: list[asyncio.Event] = []

    async def read_then_wait(app_: Any) -> set[tuple[str, str]]:
        busy = await original(app_)
        mine = len(reads)
        reads.append(asyncio.Event())
        go.append(asyncio.Event())
        reads[mine].set()
        await go[mine].wait()
        return busy

    monkeypatch.setattr(worker_module, "_pairs_in_queue", read_then_wait)

    async def scenario() -> None:
        async with app.open_async():
            first = asyncio.create_task(tick(None, timestamp=1))
            while not reads:
                await asyncio.sleep(0.01)
            await reads[0].wait()  # the first tick saw no chain
            second = asyncio.create_task(tick(None, timestamp=2))
            for _ in range(100):  # the second tick reads too, or gives way
                if len(reads) > 1 or second.done():
                    break
                await asyncio.sleep(0.02)
            go[0].set()
            await first  # the first tick deferred both chains' jobs...
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                # ...and a worker took them (procrastinate's fetch: todo -> doing).
                conn.execute(
                    "UPDATE procrastinate_jobs SET status = 'doing' WHERE task_name = %s",
                    (JOB_TASK,),
                )
            for event in go:
                event.set()
            await second

    asyncio.run(scenario())
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT args->>'account', COUNT(*) FROM procrastinate_jobs WHERE task_name = %s"
            " GROUP BY 1 ORDER BY 1",
            (JOB_TASK,),
        ).fetchall()
    assert rows == [("a1", 1), ("a2", 1)]


class _QuickRunner(JobRunner):
    """Runs no job: each one succeeds at once (only the queue's behaviour is under test)."""

    def run(self, account_name: str, job: str) -> JobResult:
        return JobResult(job, account_name)


def test_a_run_due_later_does_not_hold_back_the_accounts_other_jobs(
    postgres_url: str, tmp_path: Path
) -> None:
    """procrastinate runs the jobs of one lock in id order, whatever their ``scheduled_at``
    (procrastinate issue 1599): an import chained 15 minutes ahead, or a prune a day ahead,
    would hold every later job of the account (its flush, its SLA refresh) until then."""
    settings = WorkerSettings(
        config_path=_config(tmp_path), url=postgres_url, jobs=("import", "flush")
    )
    ensure_queue_schema(postgres_url)
    app = build_app(settings, runner=_QuickRunner(settings.config_path))
    account_job = app.tasks[JOB_TASK].func
    tick = app.tasks[TICK_TASK].func

    async def scenario() -> list[tuple[str, str]]:
        async with app.open_async():
            # a1's import ran: its next run is chained 15 minutes ahead.
            await account_job(None, account="a1", job="import")
            await tick(None, timestamp=1)  # starts the chains that have no job yet
            worker_id = await app.job_manager.register_worker()
            fetched = []
            while (job := await app.job_manager.fetch_job([QUEUE], worker_id)) is not None:
                fetched.append((str(job.task_kwargs["account"]), str(job.task_kwargs["job"])))
            return fetched

    fetched = asyncio.run(scenario())
    # Runnable now: a1's flush, and one of a2's two jobs (one account, one job at a time).
    assert ("a1", "flush") in fetched
    assert len([f for f in fetched if f[0] == "a2"]) == 1
    assert ("a1", "import") not in fetched  # not due for 15 minutes
