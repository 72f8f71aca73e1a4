"""``ci-connector worker`` stopped by an operator while its PostgreSQL is down: a server of
the test's own (the session's is shared by every test), taken down under a running job."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.testing.postgres import PostgresServer, running_postgres
from tests.connector.runtime.test_worker import (
    _another_worker_finishes,
    _jobs_by_status,
    _one_account,
    _wait_for_a_running_job,
)

pytestmark = [pytest.mark.socket, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


def test_sigterm_while_postgres_is_down_exits_promptly_and_loses_nothing(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    # 300 ms on every CI call: the import is in progress when the database goes.
    with _one_account(own_postgres, tmp_path, "down", orders=5, latency_ms=300) as scen:
        worker = scen.spawn("d", "--jobs", "import", "--tick-seconds", "1", log=tmp_path / "d.log")
        _wait_for_a_running_job(scen)
        own_postgres.stop()
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = worker.wait(60)
        finally:
            took = time.monotonic() - started
            own_postgres.start()
        log = (tmp_path / "d.log").read_text()
        # Bounded: --stop-seconds (10) + 5 s to cut the job's calls + 5 s to hand back; with
        # the database gone the job ends at once, so only the hand-back's 5 s are spent.
        assert took < 15, (took, log[-3000:])
        assert code == 1, (code, log[-3000:])  # not killed by the signal: it stopped itself
        assert "worker d: SIGTERM: stopping" in log, log[-3000:]
        assert "could not hand its jobs back to the queue within 5 s" in log, log[-3000:]
        # Nothing lost: another worker retries the job left "doing" once d's heartbeat is old.
        _another_worker_finishes(scen, "e", tmp_path / "e.log")
        assert scen.stop_workers()[-1] == 0
        assert _jobs_by_status(scen).get("doing", 0) == 0


def test_sigterm_while_postgres_hangs_exits_within_the_bound(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    """A database that stops answering (a partition, a hung host) rather than refusing:
    queries and connection attempts wait, so only the worker's own bound ends the stop."""
    with _one_account(own_postgres, tmp_path, "hang", orders=5, latency_ms=300) as scen:
        worker = scen.spawn(
            "h",
            *("--jobs", "import", "--tick-seconds", "1", "--stop-seconds", "2"),
            log=tmp_path / "h.log",
        )
        _wait_for_a_running_job(scen)
        own_postgres.pause()
        try:
            worker.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = worker.wait(60)
            took = time.monotonic() - started
        finally:
            own_postgres.resume()
        log = (tmp_path / "h.log").read_text()
        # --stop-seconds 2, then 5 s for the cut job to end, then 5 s to hand back.
        assert took < 2 + 5 + 5 + 3, (took, log[-3000:])
        assert code == 1, (code, log[-3000:])
        assert "worker h: SIGTERM: stopping" in log, log[-3000:]
        assert "could not hand its jobs back to the queue within 5 s" in log, log[-3000:]
        _another_worker_finishes(scen, "i", tmp_path / "i.log")
        assert scen.stop_workers()[-1] == 0
        assert _jobs_by_status(scen).get("doing", 0) == 0
