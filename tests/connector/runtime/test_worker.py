"""``ci-connector worker`` end to end: real worker processes, the simulator over a socket, the
session's PostgreSQL (ledgers and the procrastinate queue in one database)."""

from __future__ import annotations

import itertools
import json
import secrets
import signal
import time
from collections import defaultdict
from contextlib import AbstractContextManager
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from benchmarks.scale import Scenario, scenario
from connector.cli import main
from connector.testing.postgres import PostgresServer
from mock_ci_server.app import create_app
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.state import SimState

pytestmark = [pytest.mark.socket, pytest.mark.slow, pytest.mark.timeout(240)]


def _jobs_by_status(scen: Scenario) -> dict[str, int]:
    with psycopg.connect(scen.db_url, autocommit=True) as conn:
        made = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        if made is None or not made[0]:
            return {}  # the worker has not created the queue yet
        rows = conn.execute(
            "SELECT status, COUNT(*) FROM procrastinate_jobs"
            " WHERE task_name = 'ci_connector.account_job' GROUP BY status"
        ).fetchall()
    return {str(status): int(n) for status, n in rows}


def _wait_for_a_running_job(scen: Scenario, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _jobs_by_status(scen).get("doing", 0) == 0:
        assert time.monotonic() < deadline, "no job started"
        assert all(p.poll() is None for p in scen.workers), "a worker exited"
        time.sleep(0.05)


def _overlaps(scen: Scenario) -> list[str]:
    """Jobs of one account whose runs overlap (from the queue's event log).

    Ordered by event id, not by ``at``: ``at`` is ``now()``, the start of the event's
    transaction, and a fetch's transaction may start before the previous job's finish
    commits (its query, planned and run later, then sees the job done): two jobs that ran
    one after the other could show overlapping times. Ids are taken when the event row is
    written, so a job's start (written once its fetch saw the lock free) comes after the
    previous job's end."""
    with psycopg.connect(scen.db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT j.args->>'account', e.job_id, e.type, e.id FROM procrastinate_events e"
            " JOIN procrastinate_jobs j ON j.id = e.job_id"
            " WHERE j.task_name = 'ci_connector.account_job'"
            " AND e.type IN ('started', 'succeeded', 'failed') ORDER BY e.id"
        ).fetchall()
    spans: dict[str, dict[int, list[object]]] = defaultdict(dict)
    for account, job_id, kind, at in rows:
        spans[account].setdefault(job_id, [None, None])[0 if kind == "started" else 1] = at
    bad = []
    for account, jobs in spans.items():
        ordered = sorted((s, e) for s, e in jobs.values() if s is not None and e is not None)
        for (_, end), (start, _) in itertools.pairwise(ordered):
            if start < end:  # type: ignore[operator]
                bad.append(account)
    return bad


def _one_account(
    pg: PostgresServer, tmp_path: Path, name: str, *, orders: int, latency_ms: int
) -> AbstractContextManager[Scenario]:
    """One seeded account, ``latency_ms`` on every CI call, a fresh database ``<name>_...``."""
    return scenario(
        pg,
        tmp_path,
        accounts=1,
        orders=orders,
        latency_ms=latency_ms,
        database=f"{name}_{secrets.token_hex(3)}",
    )


def _another_worker_finishes(scen: Scenario, name: str, log: Path) -> None:
    """A fresh worker (quick to retry a silent worker's jobs) exports every line; none is
    lost or stored twice."""
    scen.spawn(
        name, *("--jobs", "import", "--tick-seconds", "1", "--stalled-seconds", "3"), log=log
    )
    assert scen.wait_exported(150), log.read_text()[-3000:]
    figures = scen.audit()
    assert figures["lost"] == 0
    # A mark_exported in flight when a worker died may be sent again (CI cannot tell us
    # whether it arrived; it is idempotent there); no line is stored twice.
    assert figures["duplicates"] - figures["acked_twice"] == 0


def test_two_workers_share_the_accounts_and_work_each_once(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    with scenario(
        postgres_server,
        tmp_path,
        accounts=4,
        orders=4,
        latency_ms=20,
        database=f"w2_{secrets.token_hex(3)}",
    ) as scen:
        for name in ("a", "b"):
            scen.spawn(
                name,
                *("--jobs", "import,flush,sla", "--tick-seconds", "1", "--keep-jobs"),
                log=tmp_path / f"{name}.log",
            )
        assert scen.wait_exported(150), (tmp_path / "a.log").read_text()[-2000:]
        time.sleep(1.0)  # let the flush and sla chains run their first jobs too
        assert scen.stop_workers() == [0, 0]  # SIGTERM: a clean stop
        assert scen.audit() == {"lost": 0, "duplicates": 0, "acked_twice": 0}
        assert _overlaps(scen) == []
        statuses = _jobs_by_status(scen)
        assert statuses.get("doing", 0) == 0
        assert statuses.get("failed", 0) == 0
        assert statuses.get("succeeded", 0) >= 4  # every account imported
        # Each account imported exactly once between both processes (the next import is
        # 15 minutes later), and every job printed its JSON line.
        results = [
            json.loads(line)
            for name in ("a", "b")
            for line in (tmp_path / f"{name}.log").read_text().splitlines()
            if line.startswith("{")
        ]
        imports = sorted(r["account"] for r in results if r["job"] == "import")
        assert imports == ["acct000", "acct001", "acct002", "acct003"]
        assert all(r["ok"] for r in results), results


def test_sigterm_lets_the_job_in_progress_finish(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    # 300 ms on every CI call: an import takes well over a second, time to signal it.
    with _one_account(postgres_server, tmp_path, "term", orders=5, latency_ms=300) as scen:
        worker = scen.spawn(
            "t",
            *("--jobs", "import", "--tick-seconds", "1", "--keep-jobs", "--stop-seconds", "60"),
            log=tmp_path / "t.log",
        )
        _wait_for_a_running_job(scen)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(90) == 0
        log = (tmp_path / "t.log").read_text()
        statuses = _jobs_by_status(scen)
        assert statuses.get("doing", 0) == 0, log[-2000:]
        assert statuses.get("succeeded", 0) == 1, (statuses, log[-2000:])
        # Nothing half-done: the job that was running stored and acknowledged everything.
        assert scen.exported() == scen.total()
        assert scen.audit() == {"lost": 0, "duplicates": 0, "acked_twice": 0}
        assert '"ok": true' in log


def test_sigterm_cuts_a_long_job_short_after_stop_seconds_and_it_is_retried_at_once(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    # 1.5 s on every CI call: the import outlasts --stop-seconds 1 by far.
    with _one_account(postgres_server, tmp_path, "cut", orders=6, latency_ms=1500) as scen:
        worker = scen.spawn(
            "c",
            *("--jobs", "import", "--tick-seconds", "1", "--keep-jobs", "--stop-seconds", "1"),
            log=tmp_path / "c.log",
        )
        _wait_for_a_running_job(scen)
        time.sleep(0.5)  # inside the job: a CI call in flight
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert worker.wait(60) == 0
        took = time.monotonic() - started
        log = (tmp_path / "c.log").read_text()
        assert took < 1 + 5, (took, log[-3000:])
        assert "still running after 1 s: cutting their CI calls short" in log, log[-3000:]
        assert '"ok": false' in log, log[-3000:]
        # Its next run is queued for now, not at the next import interval (15 minutes).
        with psycopg.connect(scen.db_url, autocommit=True) as conn:
            waiting = conn.execute(
                "SELECT COUNT(*) FROM procrastinate_jobs WHERE task_name = %s"
                " AND status = 'todo' AND scheduled_at IS NULL",
                ("ci_connector.account_job",),
            ).fetchone()
        assert waiting == (1,)
        _another_worker_finishes(scen, "d", tmp_path / "d.log")


def test_sigkill_loses_nothing_and_another_worker_takes_over(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    with scenario(
        postgres_server,
        tmp_path,
        accounts=2,
        orders=6,
        latency_ms=300,
        database=f"kill_{secrets.token_hex(3)}",
    ) as scen:
        first = scen.spawn("k1", "--jobs", "import", "--tick-seconds", "1", log=tmp_path / "k1.log")
        _wait_for_a_running_job(scen)
        time.sleep(0.5)  # inside the job: CI calls in flight
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        scen.spawn(
            "k2",
            *("--jobs", "import", "--tick-seconds", "1", "--stalled-seconds", "3"),
            log=tmp_path / "k2.log",
        )
        assert scen.wait_exported(150), (tmp_path / "k2.log").read_text()[-2000:]
        # The killed job was left "doing"; the new worker saw its worker silent and retried it.
        assert "of a silent worker is retried" in (tmp_path / "k2.log").read_text()
        figures = scen.audit()
        # A mark_exported in flight at the kill may be sent again (CI cannot tell us whether it
        # arrived; it is idempotent there); no line is lost or stored twice.
        assert figures["lost"] == 0
        assert figures["duplicates"] - figures["acked_twice"] == 0


def test_worker_without_a_database_says_what_to_set(tmp_path: Path) -> None:
    config = tmp_path / "connector.toml"
    config.write_text('[[accounts]]\nname = "us"\nsupplier_id = "1"\ntoken_env = "TOK"\n')
    result = CliRunner().invoke(main, ["--config", str(config), "worker"], env={"TOK": "x" * 31})
    assert result.exit_code == 1
    assert "needs a PostgreSQL database: set [connector] ledger_url" in result.output
    assert "ci-connector run" in result.output


def test_commands_that_change_a_postgres_account_wait_for_the_advisory_lock(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL every command that works an account takes the same advisory lock as the
    hooks (a file lock would not exclude a worker on another machine)."""
    from connector.config import load_config
    from connector.runtime.pglock import PgAccountLock, account_lock

    state = SimState()
    state.add_account("68001", "pg-cli-SECRET-0123456789abcdefgh", region="US")
    state.seed("68001", orders=3, seed=2)
    server = serve_in_thread(create_app(state))
    monkeypatch.setenv("PG_CLI_TOKEN", "pg-cli-SECRET-0123456789abcdefgh")
    config = tmp_path / "connector.toml"
    config.write_text(
        f'[connector]\ndata_dir = "data"\nledger_url = "{postgres_url}"\n\n'
        f'[[accounts]]\nname = "us"\nsupplier_id = "68001"\nbase_url = "{server.url}"\n'
        'token_env = "PG_CLI_TOKEN"\n\n[accounts.options]\nsku_fallback = "sku"\n'
        "lock_timeout_seconds = 0.3\n",
        encoding="utf-8",
    )
    try:
        account = load_config(config).account("us")
        holder = account_lock(account)
        assert isinstance(holder, PgAccountLock)
        holder.acquire(5)  # a worker elsewhere works the account
        try:
            for args in (["sync"], ["reconcile", "--fix"], ["prune"]):
                result = CliRunner().invoke(main, ["--config", str(config), *args])
                assert result.exit_code == 1, (args, result.output)
                assert "account us is busy: pid" in result.output, (args, result.output)
        finally:
            holder.close()
        done = CliRunner().invoke(main, ["--config", str(config), "sync"])
        assert done.exit_code == 0, done.output
    finally:
        server.stop()


def test_crash_concurrent_mode_on_postgres_keeps_every_invariant(
    postgres_url: str, tmp_path: Path
) -> None:
    """`make crash --concurrent 3 --backend postgres`, short: three processes per account on
    the PostgreSQL ledger with SIGKILLs; nothing lost, sent or acknowledged twice."""
    from benchmarks.crash import CrashConfig, run_crash

    config = CrashConfig(
        kills=6, orders=40, seed=7, concurrent=3, work_dir=tmp_path, ledger_url=postgres_url
    )
    result = run_crash(config)
    figures = result.to_dict()
    assert result.errors == [], figures
    assert result.clean_finish, figures
    assert result.kills >= 6, figures
    assert figures["backends"] == ["postgres"]
    zeros = (
        "lost",
        "duplicates",
        "pending_without_reason",
        "tracking_sent_twice",
        "acked_twice",
        "qty_mismatch",
        "cancellations_missed",
    )
    assert {k: figures[k] for k in zeros} == dict.fromkeys(zeros, 0), figures["problems"]
