"""Regression: two `ci-connector sync` processes on one account (cron overlapping a manual
run). Before the cross-process exclusion and the ledger claims, every queued tracking row
was sent to CI twice, the ledger's shipped quantity doubled, lines were acknowledged twice and
a Groupon-side cancellation was reported 0 times. Checked against the simulator's own call
log, over a real socket, with two real processes started at the same moment."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.crash_worker import plan_shipments
from connector.ledger import open_ledger
from connector.plugin import GrouponPlugin
from connector.reference_host.facade import ChannelFacade
from connector.reference_host.host import HOST_DB_NAME, ReferenceHost
from connector.reference_host.plugins import get_plugin_manager
from connector.reference_host.store import HostStore
from connector.runtime.identity import REFERENCE_HOST, acting_as
from tests.connector.runtime._support import Setup
from tests.ledger_backends import LedgerBackend

pytestmark = [pytest.mark.socket, pytest.mark.slow]

SUPPLIER = "66001"
TOKEN = "two-procs-SECRET-0123456789abcdef"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def setup(simulated_account: Callable[..., Setup], ledger_backend: LedgerBackend) -> Setup:
    """Runs on both ledger backends: on PostgreSQL the config names the test's database
    (the processes then exclude each other with the advisory lock)."""
    return simulated_account(
        SUPPLIER,
        TOKEN,
        "TWO_PROCS_TOKEN",
        seed={"orders": 40, "seed": 11, "lines_per_order": (1, 3), "quantity": (1, 3)},
        options="ack_batch_size = 10\ntracking_batch_size = 10\n",
        ledger_url=ledger_backend.url,
    )


def _set_faults(setup: Setup, rules: list[dict[str, object]]) -> None:
    faults = setup.app.extensions["sim_faults"]  # type: ignore[attr-defined]
    faults.set_rules(rules)


def _prepare(setup: Setup) -> int:
    """Import everything, then ship every order but one while CI fails the tracking calls,
    so the outbox holds due rows; cancel a line of the unshipped order in CI; seed new
    orders. Returns the cancelled line id."""
    account = setup.account
    pm = get_plugin_manager(load_entrypoints=False)
    plugin = GrouponPlugin()
    pm.register(plugin, name="groupon")
    try:
        with (
            ReferenceHost(account.data_dir / HOST_DB_NAME, ChannelFacade(pm)) as host,
            acting_as(REFERENCE_HOST),
        ):
            report = host.sync(account)
            assert report.ok, report.errors
            open_lines = host.store.open_lines(account.name)
            kept = str(open_lines[0]["orderid"])
            _set_faults(setup, [{"path": "/api/*/*tracking_notification", "status": 503}])
            for shipment in plan_shipments([r for r in open_lines if str(r["orderid"]) != kept]):
                host.ship(account, shipment)
    finally:
        plugin.close()
    ledger = open_ledger(account)
    try:
        queued = ledger.outbox_rows(states=("retry",))
        assert len(queued) >= 30, "the tracking failures should have queued rows"
        past = datetime.now().astimezone() - timedelta(minutes=5)
        with ledger.transaction():
            for row in queued:
                ledger.update_outbox(row.id, past, next_attempt_at=past)
    finally:
        ledger.close()
    cancelled = next(int(r["ci_lineitemid"]) for r in open_lines if str(r["orderid"]) == kept)
    setup.state.cancel_lines(SUPPLIER, [cancelled])
    setup.state.seed(SUPPLIER, orders=30, seed=12, lines_per_order=(1, 3))
    # Slow calls, so the two processes overlap for sure.
    _set_faults(
        setup,
        [
            {"path": "/api/*/*tracking_notification", "latency_ms": 150},
            {"path": "/api/*/mark_exported", "latency_ms": 150},
        ],
    )
    return cancelled


def _sync_process(setup: Setup) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from connector.cli import main; main()",
            "--config",
            str(setup.config_path),
            "sync",
            "--json",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_syncs_on_one_account_send_nothing_twice(setup: Setup) -> None:
    cancelled = _prepare(setup)
    procs = [_sync_process(setup), _sync_process(setup)]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert TOKEN not in out + err

    sim = {ln["ci_lineitemid"]: ln for ln in setup.state.get_state(SUPPLIER)["lines"]}
    acked = Counter(
        lid for lid, ln in sim.items() for c in ln["calls"] if c["call"] == "mark_exported"
    )
    sent = Counter(
        (lid, c["tracking"])
        for lid, ln in sim.items()
        for c in ln["calls"]
        if c["call"].endswith("tracking_notification")
    )
    assert sent, "the queued tracking rows were flushed"
    assert {k: n for k, n in sent.items() if n > 1} == {}, "tracking sent twice"
    assert {k: n for k, n in acked.items() if n > 1} == {}, "lines acknowledged twice"
    assert all(ln["exported"] for ln in sim.values()), "every line acknowledged once"

    ledger = open_ledger(setup.account)
    try:
        lines = ledger.get_lines(sim, light=True)
        wrong = {
            lid: (row.qty_shipped, sim[lid]["shipped_quantity"])
            for lid, row in lines.items()
            if row.qty_shipped != sim[lid]["shipped_quantity"]
        }
        assert wrong == {}, "ledger shipped quantities differ from CI's"
        assert ledger.outbox_rows(states=("pending", "sending", "retry")) == []
        assert ledger.outbox_leases() == {}
    finally:
        ledger.close()

    with HostStore(setup.account.data_dir / HOST_DB_NAME) as store:
        status = store._db.execute(
            "SELECT status FROM order_lines WHERE ci_lineitemid = ?", (cancelled,)
        ).fetchone()[0]
    assert status == "cancelled", "the Groupon-side cancellation reached the host"
