"""Crash consistency: SIGKILL a full connector cycle many times, then check nothing was lost or
duplicated.

``python -m benchmarks.crash --kills 60 --orders 300 --seed 1``

The simulator runs in this (parent) process on 127.0.0.1:0, so its state survives every kill.
Each child is ``python -m benchmarks.crash_worker`` (import, store, acknowledge, ship, flush
through the reference host). Work is seeded in waves; each wave is one *round* that walks the
pipeline in phase order, killing the child at each crash point of
:data:`connector.crashpoints.POINTS` (occurrence chosen at random) with a few kills after a
random delay mixed in, then re-runs the child without kills until a run finds nothing left.
Everything random comes from ``random.Random(seed)``.

Progress goes to stderr; the LAST stdout line is a JSON object with ``kills``, ``lost``,
``duplicates``, ``pending_without_reason`` and the run's figures. Exit 1 if an invariant is
broken, 2 if the harness could not reach the requested kills or a clean finish.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import secrets
import signal
import sqlite3
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench_import import unexported_count
from benchmarks.crash_worker import ACCOUNT_NAME, EXIT_IDLE, EXIT_WORKED, HOST_DB
from connector.crashpoints import ENV_VAR, POINTS
from connector.errors import LedgerError
from connector.ledger.sqlite import ledger_path, open_ledger_file
from mock_ci_server.app import create_app
from mock_ci_server.generator import PAGE_SIZE
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.state import SimState

__all__ = ["CrashConfig", "CrashResult", "KillSpec", "check_invariants", "main", "run_crash"]

REPO = Path(__file__).resolve().parents[1]
SUPPLIER_ID = "77001"
TOKEN_ENV = "CRASH_CI_TOKEN"  # noqa: S105 - the variable's name, not a token

# Upper bound of the occurrence drawn per point: how often a point is reached in one run.
_MAX_OCCURRENCE = {
    "fetch_page": 1,
    "after_stage": 1,
    "after_deliver": 1,
    "after_store": 1,
    "ack_sent": 3,
    "ack_recorded": 3,
    "host_shipment": 5,
    "after_outbox": 5,
    "tracking_sent": 6,
    "tracking_recorded": 6,
    "flush": 2,
}


@dataclass(frozen=True)
class CrashConfig:
    """What one crash run does.

    :ivar kills: SIGKILLs that must actually land (a child that finishes first does not count).
    :ivar orders: orders seeded, in waves (one per round); topped up with further waves of the
        same size only if the kills need more work than that.
    :ivar random_per_round: kills per round after a random delay instead of at a named point.
    :ivar cover_all_points: keep running rounds (bounded) until every point has killed once.
    :ivar batch_size: ``ack_batch_size`` and ``tracking_batch_size`` of the child's account.
    """

    kills: int = 60
    orders: int = 300
    seed: int = 1
    lines_per_order: tuple[int, int] = (1, 6)
    quantity: tuple[int, int] = (1, 3)
    split_share: float = 0.3
    random_per_round: int = 3
    cover_all_points: bool = True
    batch_size: int = 25
    clean_runs: int = 6
    child_timeout: float = 120.0
    work_dir: Path | None = None


@dataclass(frozen=True)
class KillSpec:
    """One planned kill: at ``point``'s ``occurrence``-th arrival, or after ``delay`` seconds."""

    point: str | None = None
    occurrence: int = 1
    delay: float | None = None

    def label(self) -> str:
        if self.point is not None:
            return f"{self.point}:{self.occurrence}"
        return f"delay {self.delay:.2f}s"


@dataclass
class Invariants:
    """What the final state shows; every count must be 0."""

    lost: int = 0
    duplicates: int = 0
    pending_without_reason: int = 0
    held_with_reason: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class CrashResult:
    """Figures of a crash run (the JSON line)."""

    kills: int = 0
    point_kills: Counter[str] = field(default_factory=Counter)
    random_kills: int = 0
    attempts: int = 0
    runs: int = 0
    rounds: int = 0
    orders_seeded: int = 0
    lines_seeded: int = 0
    seconds: float = 0.0
    clean_finish: bool = True
    invariants: Invariants = field(default_factory=Invariants)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        inv = self.invariants
        return inv.lost == 0 and inv.duplicates == 0 and inv.pending_without_reason == 0

    def to_dict(self) -> dict[str, Any]:
        inv = self.invariants
        return {
            "kills": self.kills,
            "lost": inv.lost,
            "duplicates": inv.duplicates,
            "pending_without_reason": inv.pending_without_reason,
            "held_with_reason": inv.held_with_reason,
            "points_covered": dict(sorted(self.point_kills.items())),
            "points_missing": [p for p in POINTS if not self.point_kills.get(p)],
            "random_kills": self.random_kills,
            "attempts": self.attempts,
            "runs": self.runs,
            "rounds": self.rounds,
            "orders": self.orders_seeded,
            "lines": self.lines_seeded,
            "clean_finish": self.clean_finish,
            "seconds": round(self.seconds, 1),
            "problems": inv.problems[:20],
            "errors": self.errors[:20],
        }


@dataclass(frozen=True)
class _ChildOutcome:
    killed: bool
    returncode: int
    seconds: float
    stderr_tail: str


class _Harness:
    def __init__(self, config: CrashConfig, work_dir: Path, echo: Callable[[str], None]) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.echo = echo
        self.data_dir = work_dir / "data"
        self.logs = work_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.token = "".join(
            secrets.choice(string.ascii_letters + string.digits) for _ in range(32)
        )
        self.state = SimState()
        self.state.clock.freeze()
        self.state.add_account(SUPPLIER_ID, self.token, region="US", merchant_level=5)
        self.result = CrashResult()
        self.durations: list[float] = []
        self.last_attempt = 0.0
        self.startup = 0.0
        self.orderids: list[str] = []
        self.line_ids: list[int] = []

    # -- children ------------------------------------------------------------------------------

    def child(self, url: str, spec: KillSpec | None) -> _ChildOutcome:
        env = dict(os.environ)
        env[TOKEN_ENV] = self.token
        env.pop(ENV_VAR, None)
        if spec is not None and spec.point is not None:
            env[ENV_VAR] = f"{spec.point}:{spec.occurrence}"
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.crash_worker",
            "--url",
            url,
            "--supplier-id",
            SUPPLIER_ID,
            "--data-dir",
            str(self.data_dir),
            "--token-env",
            TOKEN_ENV,
            "--batch-size",
            str(self.config.batch_size),
        ]
        self.result.runs += 1
        log_path = self.logs / f"run-{self.result.runs:04d}.log"
        started = time.monotonic()
        with log_path.open("w+", encoding="utf-8") as err:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                cmd, cwd=REPO, env=env, stdout=err, stderr=subprocess.STDOUT
            )
            timeout = self.config.child_timeout
            if spec is not None and spec.delay is not None:
                try:
                    proc.wait(spec.delay)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.result.errors.append(f"run {self.result.runs} timed out after {timeout}s")
            err.seek(0)
            tail = err.read()[-2000:]
        seconds = time.monotonic() - started
        return _ChildOutcome(proc.returncode == -signal.SIGKILL, proc.returncode, seconds, tail)

    def needs_more(self) -> bool:
        if self.result.kills < self.config.kills:
            return True
        return self.config.cover_all_points and any(
            not self.result.point_kills.get(p) for p in POINTS
        )

    def typical_run(self) -> float:
        if not self.durations:
            return 2.0
        ordered = sorted(self.durations)
        return ordered[len(ordered) // 2]

    # -- seeding -------------------------------------------------------------------------------

    def seed_wave(self, orders: int) -> None:
        cfg = self.config
        out = self.state.seed(
            SUPPLIER_ID,
            orders=orders,
            seed=self.rng.randrange(1 << 30),
            lines_per_order=cfg.lines_per_order,
            quantity=cfg.quantity,
            split_share=cfg.split_share,
        )
        self.orderids += out["orderids"]
        self.line_ids += out["ci_lineitemids"]
        self.result.orders_seeded += out["orders_created"]
        self.result.lines_seeded += out["lines_created"]

    def unexported(self) -> int:
        return unexported_count(self.state, SUPPLIER_ID, self.token)

    # -- rounds --------------------------------------------------------------------------------

    def round_plan(self) -> list[KillSpec]:
        plan = [
            KillSpec(point, self.rng.randint(1, _MAX_OCCURRENCE.get(point, 1))) for point in POINTS
        ]
        for _ in range(self.config.random_per_round):
            # The delay is drawn when the kill comes up (see run_round); 0 marks "random".
            plan.insert(self.rng.randint(0, len(plan)), KillSpec(delay=0.0))
        return plan

    def random_delay(self) -> float:
        """A random moment inside the next run: the previous attempt of this round got that
        far with the same work ahead of it, so a fraction of its duration lands mid-cycle."""
        span = self.last_attempt or self.typical_run()
        # Interpreter start-up and imports: no connector code runs before the earliest point.
        floor = min(self.startup * 0.9, span * 0.5) if self.startup else span * 0.3
        return self.rng.uniform(floor, span * 0.95)

    def run_round(self, url: str, wave: int) -> None:
        self.result.rounds += 1
        if wave:
            self.seed_wave(wave)
        if self.result.rounds == 1:
            # A listing longer than one page, so "fetch_page" and split orders are exercised.
            for _ in range(20):
                if self.unexported() > PAGE_SIZE:
                    break
                self.seed_wave(10)
        self.last_attempt = 0.0
        self.echo(
            f"round {self.result.rounds}: +{wave} orders "
            f"({self.result.orders_seeded} seeded, {self.unexported()} lines unexported), "
            f"{self.result.kills}/{self.config.kills} kills so far"
        )
        for spec in self.round_plan():
            if not self.needs_more():
                break
            if self.result.kills >= self.config.kills and (
                spec.point is None or self.result.point_kills.get(spec.point)
            ):
                continue  # enough kills: only points never hit yet are still worth a run
            if spec.point == "fetch_page" and self.unexported() <= PAGE_SIZE:
                continue  # one page only: the point cannot be reached this round
            if spec.delay is not None:
                spec = KillSpec(delay=self.random_delay())
            self.result.attempts += 1
            out = self.child(url, spec)
            self.last_attempt = out.seconds
            if out.killed:
                self.result.kills += 1
                if spec.point is not None:
                    self.result.point_kills[spec.point] += 1
                    self.startup = min(self.startup or out.seconds, out.seconds)
                else:
                    self.result.random_kills += 1
                self.echo(f"  kill {self.result.kills}: {spec.label()} ({out.seconds:.2f}s)")
                continue
            if out.returncode not in (EXIT_IDLE, EXIT_WORKED):
                self.fail_run(out)
            elif out.returncode == EXIT_WORKED:
                self.durations.append(out.seconds)
            # The child got through a whole cycle: this round's work is done.
            self.echo(f"  {spec.label()}: not reached, run completed ({out.seconds:.2f}s)")
            break
        self.clean_up(url)

    def clean_up(self, url: str) -> None:
        """Run without kills until a run reports nothing left."""
        for _ in range(self.config.clean_runs):
            out = self.child(url, None)
            if out.returncode == EXIT_IDLE:
                return
            if out.returncode == EXIT_WORKED:
                self.durations.append(out.seconds)
                continue
            self.fail_run(out)
        self.result.clean_finish = False
        self.result.errors.append(
            f"round {self.result.rounds}: no idle run after {self.config.clean_runs} clean runs"
        )

    def fail_run(self, out: _ChildOutcome) -> None:
        last = out.stderr_tail.strip().splitlines()[-1:] or ["(no stderr)"]
        self.result.errors.append(f"run {self.result.runs} exit {out.returncode}: {last[0]}")
        self.echo(f"  run {self.result.runs} failed with exit {out.returncode}: {last[0]}")


def run_crash(config: CrashConfig, echo: Callable[[str], None] | None = None) -> CrashResult:
    """Run the whole crash experiment and check the invariants; see the module docstring."""
    say = echo or (lambda _line: None)
    started = time.monotonic()
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if config.work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="ci-connector-crash-")
        work_dir = Path(tmp.name)
    else:
        work_dir = config.work_dir
    try:
        harness = _Harness(config, work_dir, say)
        per_round = len(POINTS) + config.random_per_round
        rounds = max(1, math.ceil(config.kills / per_round))
        # The first wave is the biggest (40 %), so at least one listing spans several pages.
        first = config.orders if rounds == 1 else max(math.ceil(config.orders * 0.4), 1)
        wave = max((config.orders - first) // max(rounds - 1, 1), 1)
        plan = [first] + [wave] * (rounds - 1)
        server = serve_in_thread(create_app(harness.state))
        try:
            max_rounds = rounds * 3 + 4
            while harness.result.rounds < max_rounds and harness.needs_more():
                size = plan[harness.result.rounds] if harness.result.rounds < len(plan) else wave
                # Extra rounds (beyond the plan) get a wave big enough to reach every phase.
                if harness.result.rounds >= len(plan):
                    size = max(size, min(config.orders, 20))
                harness.run_round(server.url, size)
            try:
                harness.result.invariants = check_invariants(
                    harness.state, SUPPLIER_ID, harness.data_dir, harness.line_ids
                )
            except (LedgerError, sqlite3.Error) as exc:
                harness.result.clean_finish = False
                harness.result.errors.append(f"cannot check the invariants: {exc}")
        finally:
            server.stop()
        result = harness.result
        result.seconds = time.monotonic() - started
        say(f"logs of every run: {harness.logs}" if tmp is None else "done")
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def check_invariants(
    state: SimState, supplier_id: str, data_dir: Path, seeded: Sequence[int]
) -> Invariants:
    """Compare the simulator's per-line record, the host database and the ledger.

    * lost: a seeded line missing from the host (and not held with a reason), not marked
      exported in CI, or open in CI without tracking;
    * duplicates: an order or line stored twice; a line shipped (host, ledger or CI) beyond its
      quantity; a tracking number applied (non-no-op) more than once to a line; a line whose
      non-no-op tracking applications differ from the parcels the host shipped it in;
    * pending_without_reason: an outbox row still pending/sending/retry, a line the ledger has
      not finished (staged/delivered/stored) without a hold reason, a hold without a reason.
    """
    inv = Invariants()

    def problem(kind: str, text: str) -> None:
        inv.problems.append(f"{kind}: {text}")

    sim = {ln["ci_lineitemid"]: ln for ln in state.get_state(supplier_id)["lines"]}
    ledger = open_ledger_file(ledger_path(data_dir, ACCOUNT_NAME), ACCOUNT_NAME)
    db = sqlite3.connect(f"file:{data_dir / HOST_DB}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        host_lines = {
            r["ci_lineitemid"]: dict(r)
            for r in db.execute(
                "SELECT l.*, o.orderid FROM order_lines l JOIN orders o USING (host_order_id)"
            )
        }
        for r in db.execute(
            "SELECT 'order ' || orderid AS k, COUNT(*) AS n FROM orders GROUP BY account, orderid "
            "HAVING n > 1 UNION ALL SELECT 'line ' || ci_lineitemid, COUNT(*) FROM order_lines "
            "GROUP BY account, ci_lineitemid HAVING COUNT(*) > 1"
        ):
            inv.duplicates += 1
            problem("duplicate", f"{r['k']} stored {r['n']} times in the host")
        parcels: dict[int, Counter[str]] = {}
        for r in db.execute("SELECT parcels FROM shipments"):
            for parcel in json.loads(r["parcels"]):
                for item in parcel["lines"]:
                    parcels.setdefault(item["ci_lineitemid"], Counter())[
                        parcel["tracking_number"]
                    ] += item["quantity"]
        ledger_lines = ledger.get_lines(seeded)
        held = {h.ci_lineitemid: h for h in ledger.held_lines() if h.ci_lineitemid is not None}
        for lid in seeded:
            line = sim[lid]
            host = host_lines.get(lid)
            hold = held.get(lid)
            if hold is not None and hold.reason.strip():
                inv.held_with_reason += 1
                continue
            if host is None:
                inv.lost += 1
                problem("lost", f"line {lid} of order {line['orderid']} is not in the host")
                continue
            if not line["exported"]:
                inv.lost += 1
                problem("lost", f"line {lid} is in the host but not marked exported in CI")
            if line["status"] != "cancelled" and line["shipped_quantity"] < line["quantity"]:
                inv.lost += 1
                problem(
                    "lost",
                    f"line {lid}: CI has tracking for {line['shipped_quantity']} of "
                    f"{line['quantity']} units",
                )
            applied = Counter(
                c["tracking"]
                for c in line["calls"]
                if c.get("changed") and c["call"].endswith("tracking_notification")
            )
            shipped = parcels.get(lid, Counter())
            # A missing parcel is already counted as lost (open units in CI) above.
            if any(n > 1 for n in applied.values()) or set(applied) - set(shipped):
                inv.duplicates += 1
                problem(
                    "duplicate",
                    f"line {lid}: tracking applied {dict(applied)} vs host parcels {dict(shipped)}",
                )
            if (
                sum(shipped.values()) > line["quantity"]
                or host["shipped_quantity"] > host["quantity"]
            ):
                inv.duplicates += 1
                problem("duplicate", f"line {lid}: host shipped more than {line['quantity']}")
            row = ledger_lines.get(lid)
            if row is not None and row.qty_shipped > row.quantity:
                inv.duplicates += 1
                problem("duplicate", f"line {lid}: ledger shipped {row.qty_shipped}")
        for o in ledger.outbox_rows(states=("pending", "sending", "retry")):
            inv.pending_without_reason += 1
            problem(
                "pending",
                f"outbox row {o.id} line {o.ci_lineitemid} still {o.state} ({o.reason or '-'})",
            )
        for row in ledger.lines(("staged", "delivered", "stored")):
            if row.hold_kind is None or not row.hold_reason.strip():
                inv.pending_without_reason += 1
                problem("pending", f"line {row.ci_lineitemid} left {row.state} without a reason")
        for h in ledger.held_lines():
            if not h.reason.strip():
                inv.pending_without_reason += 1
                problem("pending", f"line {h.ci_lineitemid} held without a reason")
    finally:
        db.close()
        ledger.close()
    return inv


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.crash``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="benchmarks.crash", description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=60, help="SIGKILLs that must land")
    parser.add_argument("--orders", type=int, default=300, help="orders to seed (in waves)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--random-per-round", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--work-dir", type=Path, help="keep ledgers, host DB and logs here")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.orders < 1:
        parser.error("--kills and --orders must be >= 1")
    config = CrashConfig(
        kills=args.kills,
        orders=args.orders,
        seed=args.seed,
        random_per_round=args.random_per_round,
        batch_size=args.batch_size,
        work_dir=args.work_dir,
    )
    result = run_crash(config, echo=lambda line: print(line, file=sys.stderr, flush=True))
    for text in result.invariants.problems[:20] + result.errors[:20]:
        print(text, file=sys.stderr)
    print(json.dumps(result.to_dict(), sort_keys=True), flush=True)
    if not result.ok:
        return 1
    if result.kills < config.kills or not result.clean_finish or result.errors:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
