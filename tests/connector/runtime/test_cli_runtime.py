"""`ci-connector run` (SIGTERM / Ctrl-C finish the job in progress), `prune`, `hand-over`,
and `reconcile --fix` rebuilding a lost ledger, against the simulator over a socket."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from connector.cli import main
from connector.ledger import ledger_path, open_ledger
from connector.reference_host.host import HOST_DB_NAME
from connector.reference_host.store import HostStore
from tests.connector.runtime._support import Setup

pytestmark = [pytest.mark.socket, pytest.mark.slow]

SUPPLIER = "67001"
TOKEN = "run-cli-SECRET-0123456789abcdefgh"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def setup(simulated_account: Callable[..., Setup]) -> Setup:
    return simulated_account(SUPPLIER, TOKEN, "RUN_CLI_TOKEN", seed={"orders": 8, "seed": 4})


def cli(setup: Setup, *args: str) -> Result:
    result = CliRunner().invoke(main, ["--config", str(setup.config_path), *args])
    assert TOKEN not in result.output
    assert "Traceback" not in result.output
    return result


def _run_process(setup: Setup, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from connector.cli import main; main()",
            "--config",
            str(setup.config_path),
            "run",
            *args,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_finishes_the_job_in_progress_then_stops(setup: Setup, signum: int) -> None:
    faults = setup.app.extensions["sim_faults"]  # type: ignore[attr-defined]
    faults.set_rules([{"path": "/api/*/mark_exported", "latency_ms": 2500}])
    proc = _run_process(setup)
    deadline = time.monotonic() + 60
    # The ledger appears with the first hook call: the import job is under way.
    while not ledger_path(setup.account.data_dir, "us").exists():
        assert time.monotonic() < deadline, "run never started"
        time.sleep(0.05)
    time.sleep(1.5)  # inside the slow mark_exported call
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    jobs = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [(j["job"], j["ok"]) for j in jobs] == [("import", True)], (out, err)
    assert jobs[0]["counts"]["lines_marked_exported"] > 0
    assert "stopping after the job in progress" in err
    sim = setup.state.get_state(SUPPLIER)["lines"]
    assert all(line["exported"] for line in sim)  # nothing half-done
    ledger = open_ledger(setup.account)
    try:
        assert ledger.summary()["lines"]["stored"] == 0
    finally:
        ledger.close()


def test_run_max_runs_works_every_job_once(setup: Setup) -> None:
    proc = _run_process(setup, "--max-runs", "4")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    jobs = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [j["job"] for j in jobs] == ["import", "flush", "sla", "prune"]
    assert all(j["ok"] for j in jobs), jobs


def test_run_refuses_unknown_jobs(setup: Setup) -> None:
    result = cli(setup, "run", "--jobs", "import,nap")
    assert result.exit_code == 2
    assert "unknown job(s) nap" in result.output


def test_prune_reports_per_account(setup: Setup) -> None:
    assert cli(setup, "sync").exit_code == 0
    result = cli(setup, "prune", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["accounts"] == [{"account": "us", "retention_days": 90, "pruned": 0}]


def test_reconcile_fix_rebuilds_a_lost_ledger_and_sync_goes_on(setup: Setup) -> None:
    assert cli(setup, "sync").exit_code == 0
    ledger_path(setup.account.data_dir, "us").unlink()
    refused = cli(setup, "sync")
    assert refused.exit_code == 1
    # "was deleted" from the plugin that still had it open (CliRunner: one process),
    # "is missing" from a fresh process: either way refused, saying how to recover.
    assert "is missing" in refused.output or "was deleted" in refused.output
    assert "reconcile --fix --account us" in refused.output
    cli(setup, "reconcile", "--fix", "--days", "2")
    again = cli(setup, "sync", "--json")
    assert again.exit_code == 0, again.output
    with HostStore(setup.account.data_dir / HOST_DB_NAME) as store:
        dupes = store._db.execute(
            "SELECT COUNT(*) FROM (SELECT orderid FROM orders GROUP BY orderid HAVING COUNT(*) > 1)"
        ).fetchone()[0]
    assert dupes == 0


def test_hand_over_moves_the_account_to_another_host(setup: Setup) -> None:
    assert cli(setup, "sync").exit_code == 0  # the reference host owns the ledger now
    moved = cli(setup, "hand-over", "--account", "us", "--to", "odoo-prod")
    assert moved.exit_code == 0, moved.output
    assert "from reference-host to odoo-prod" in moved.output
    refused = cli(setup, "sync")
    assert refused.exit_code == 1
    assert "worked by host 'odoo-prod'" in refused.output


def test_commands_that_change_an_account_wait_for_its_holder(setup: Setup) -> None:
    from connector.runtime.locks import FileAccountLock, lock_path

    text = setup.config_path.read_text(encoding="utf-8")
    setup.config_path.write_text(text + "lock_timeout_seconds = 0.3\n", encoding="utf-8")
    holder = FileAccountLock(lock_path(setup.account.data_dir, "us"), "us")
    holder.acquire(1)  # another process works the account (flock: per open file)
    try:
        for args in (["sync"], ["reconcile", "--fix"], ["prune"]):
            result = cli(setup, *args)
            assert result.exit_code == 1, (args, result.output)
            assert "account us is busy: pid" in result.output, (args, result.output)
    finally:
        holder.release()
    assert cli(setup, "sync").exit_code == 0
