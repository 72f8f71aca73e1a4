"""Reconciliation against the real simulator, the real plugin (through pluggy) and the reference
host: provoke each finding, check it, heal it with ``fix``, let the next sync/flush finish the
job, and check that a second reconcile is clean."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.ci.client import CIClient
from connector.ledger import Ledger, open_ledger
from connector.models import Account, AccountOptions, LineOutcome, Shipment
from connector.ops.reconcile import (
    HostView,
    HostViewError,
    ReconcileReport,
    reconcile_account,
)
from connector.plugin import GrouponPlugin
from connector.reference_host.facade import ChannelFacade
from connector.reference_host.host import ReferenceHost
from connector.reference_host.plugins import get_plugin_manager
from connector.secrets import Secret
from mock_ci_server.app import create_app
from mock_ci_server.state import SimState
from mock_ci_server.transport import InProcessTransport

BASE = "http://ci.reconcile.invalid"
SUPPLIER = "77001"
TOKEN = "recon-SECRET-token-0123456789ab"
T0 = datetime(2024, 3, 6, 12, 0, tzinfo=UTC)  # a Wednesday


@dataclass
class World:
    """Simulator + plugin + reference host for one account, with a shared movable clock."""

    state: SimState
    app: Any
    account: Account
    plugin: GrouponPlugin
    host: ReferenceHost
    host_db: Path
    now: list[datetime]
    line_ids: list[int]

    def clock(self) -> datetime:
        return self.now[0]

    def advance(self, delta: timedelta) -> None:
        self.now[0] += delta
        self.state.clock.set(self.now[0])

    def faults(self, *rules: dict[str, Any]) -> None:
        self.app.extensions["sim_faults"].set_rules(list(rules))

    def reconcile(self, *, fix: bool = False, host: bool = True, **kw: Any) -> ReconcileReport:
        client = CIClient.for_account(self.account)
        ledger = open_ledger(self.account)
        view = HostView(self.host_db) if host else None
        try:
            return reconcile_account(
                self.account,
                client=client,
                ledger=ledger,
                host=view,
                fix=fix,
                clock=self.clock,
                **kw,
            )
        finally:
            client.close()
            ledger.close()
            if view is not None:
                view.close()

    def ledger(self) -> Ledger:
        return self.plugin.ledger_for(self.account)

    def ship(self, shipment_id: str, lid: int, tracking: str, courier: str = "UPS") -> Any:
        return self.host.ship(
            self.account, Shipment.single(shipment_id, courier, tracking, {lid: 1})
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    state = SimState()
    state.clock.set(T0)
    state.add_account(SUPPLIER, TOKEN, region="US")
    seeded = state.seed(SUPPLIER, orders=3, seed=7, spread_hours=30)
    app = create_app(state)
    account = Account(
        name="us",
        channel="groupon",
        supplier_id=SUPPLIER,
        token=Secret(TOKEN),
        region="US",
        base_url=BASE,
        data_dir=tmp_path,
        options=AccountOptions(
            sku_fallback="sku",
            max_retries=0,
            backoff_seconds=0.0,
            tracking_format_policy="off",
        ),
    )
    now = [T0]
    plugin = GrouponPlugin(clock=lambda: now[0])
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(plugin, name="groupon")
    host_db = tmp_path / "reference-host.sqlite3"
    with InProcessTransport(app, BASE):
        host = ReferenceHost(host_db, ChannelFacade(pm), clock=lambda: now[0])
        try:
            yield World(
                state, app, account, plugin, host, host_db, now, list(seeded["ci_lineitemids"])
            )
        finally:
            host.close()
            plugin.close()


def kinds(report: ReconcileReport) -> list[tuple[str, str, int | None]]:
    return [(f.check, f.kind, f.ci_lineitemid) for f in report.findings]


def test_after_a_normal_sync_everything_agrees(world: World) -> None:
    sync = world.host.sync(world.account)
    assert sync.lines_marked_exported == 3
    report = world.reconcile()
    assert report.clean, kinds(report)
    assert report.ci_exported == 3
    assert report.ci_lines_seen == 3
    assert report.windows_read == 8  # 7 days in 23 h slices
    assert report.counts()["exported_missing"] == {"found": 0, "fixed": 0, "remaining": 0}


def test_exported_in_ci_but_never_in_the_host_is_found_and_redelivered(world: World) -> None:
    lost = world.line_ids[0]
    # Someone marked the line exported without storing it (the plenty failure mode).
    world.state.mark_exported(SUPPLIER, TOKEN, [lost])
    world.host.sync(world.account)
    assert world.host.store.line("us", lost) is None

    report = world.reconcile()
    assert kinds(report) == [("exported_missing", "not_in_host", lost)]
    finding = report.findings[0]
    assert finding.fixable
    assert not finding.fixed
    assert finding.ledger_state is None
    assert "neither the ledger nor the host" in finding.detail
    assert not report.clean

    fixed = world.reconcile(fix=True)
    assert [f.fixed for f in fixed.findings] == [True]
    assert fixed.clean
    assert any(f"line {lost}: put back to 'staged'" in n for n in fixed.notes)
    assert world.ledger().get_line(lost).state == "staged"  # type: ignore[union-attr]

    sync = world.host.sync(world.account)
    assert sync.orders_new == 1
    assert sync.lines_imported == 1
    assert world.host.store.line("us", lost) is not None
    assert world.ledger().get_line(lost).state == "acked"  # type: ignore[union-attr]
    assert world.reconcile().clean


def test_host_losing_an_acked_line_is_found_only_with_the_host_db(world: World) -> None:
    world.host.sync(world.account)
    lost = world.line_ids[1]
    with sqlite3.connect(world.host_db) as db:
        db.execute("DELETE FROM order_lines WHERE ci_lineitemid = ?", (lost,))
    assert world.reconcile(host=False).clean  # without the host db, the ledger is trusted

    report = world.reconcile()
    assert kinds(report) == [("exported_missing", "not_in_host", lost)]
    assert report.findings[0].ledger_state == "acked"
    assert "the host does not have it" in report.findings[0].detail

    assert world.reconcile(fix=True).clean
    sync = world.host.sync(world.account)
    assert sync.orders_already_stored == 1  # the host replays idempotently into its order
    assert world.host.store.line("us", lost) is not None
    assert world.host.store.duplicates() == []
    assert world.reconcile().clean


def test_failed_mark_exported_leaves_stored_lines_that_fix_acknowledges(world: World) -> None:
    world.faults({"method": "POST", "path": "/api/*/mark_exported", "status": 500})
    sync = world.host.sync(world.account)
    assert sync.ack_queued == 3

    report = world.reconcile()
    assert sorted(kinds(report)) == [
        ("unacked", "stored_not_acked", i) for i in sorted(world.line_ids)
    ]
    assert all("no mark_exported was recorded" in f.detail for f in report.findings)

    # Still failing: --fix tries, records nothing as fixed, findings remain.
    still = world.reconcile(fix=True)
    assert not still.clean
    assert not any(f.fixed for f in still.findings)
    assert any("mark_exported re-sent: queued" in n for n in still.notes)

    world.faults()
    fixed = world.reconcile(fix=True)
    assert fixed.clean
    assert all(f.fixed for f in fixed.findings)
    assert all(world.state.line(i).exported for i in world.line_ids)  # type: ignore[union-attr]
    assert world.reconcile().clean


def test_a_lost_ack_record_is_resent(world: World) -> None:
    world.host.sync(world.account)
    lid = world.line_ids[2]
    world.ledger().update_line(lid, T0, state="stored")
    report = world.reconcile()
    assert kinds(report) == [("unacked", "stored_not_acked", lid)]
    assert world.reconcile(fix=True).clean
    assert world.ledger().get_line(lid).state == "acked"  # type: ignore[union-attr]
    assert world.ledger().ack_log(lid)[-1][1] == "accepted"
    assert world.reconcile().clean


def test_host_line_without_a_ledger_row_is_rebound_and_can_ship(world: World) -> None:
    world.host.sync(world.account)
    lid = world.line_ids[0]
    with sqlite3.connect(world.plugin.ledger_for(world.account).path) as db:
        db.execute("DELETE FROM lines WHERE ci_lineitemid = ?", (lid,))
    report = world.reconcile()
    assert kinds(report) == [("unacked", "host_line_unbound", lid)]

    assert world.reconcile(fix=True).clean
    row = world.ledger().get_line(lid)
    assert row is not None
    assert row.state == "acked"
    host_line = world.host.store.line("us", lid)
    assert host_line is not None
    assert row.host_order_id == host_line["host_order_id"]
    assert row.record is not None  # rebuilt from the CI window, so pre-flight has the address
    results = world.ship("S-rebound", lid, "1Z999AA10123456784")
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED]
    assert world.reconcile().clean


def test_stuck_tracking_is_requeued_and_the_next_flush_sends_it(world: World) -> None:
    world.host.sync(world.account)
    lid = world.line_ids[0]
    world.faults({"method": "POST", "path": "/api/*/tracking_notification", "status": 503})
    assert [r.outcome for r in world.ship("S-1", lid, "1Z999AA10123456784")] == [LineOutcome.QUEUED]
    assert world.reconcile().clean  # young rows are the normal flush's business

    world.advance(timedelta(hours=2))
    report = world.reconcile()
    assert kinds(report) == [("tracking", "tracking_stuck", lid)]
    assert report.findings[0].shipment_id == "S-1"
    assert "still retry" in report.findings[0].detail

    world.faults()
    fixed = world.reconcile(fix=True)
    assert [f.fixed for f in fixed.findings] == [True]
    (row,) = world.ledger().outbox_rows(shipment_id="S-1")
    assert row.state == "retry"
    assert row.next_attempt_at == world.now[0]
    flushed = world.host.facade.flush_outbox(account=world.account)
    assert [r.outcome for r in flushed] == [LineOutcome.ACCEPTED]
    assert world.state.line(lid).status == "shipped"  # type: ignore[union-attr]
    assert world.reconcile().clean


def test_rejected_and_held_tracking_need_an_operator(world: World) -> None:
    # CI approves only USPS for this supplier, so CI refuses what pre-flight lets through.
    world.state.add_account(SUPPLIER, TOKEN, region="US", approved_carriers=["usps"])
    world.host.sync(world.account)
    rejected, held = world.line_ids[0], world.line_ids[1]
    assert [r.outcome for r in world.ship("S-ups", rejected, "1Z999AA10123456784")] == [
        LineOutcome.REJECTED
    ]
    assert [r.outcome for r in world.ship("S-pigeon", held, "PIGEON-1", courier="Pigeon")] == [
        LineOutcome.HELD
    ]
    report = world.reconcile(fix=True)
    assert sorted(kinds(report)) == sorted(
        [("tracking", "tracking_rejected", rejected), ("tracking", "tracking_held", held)]
    )
    assert not report.clean
    assert not any(f.fixed or f.fixable for f in report.findings)
    by_kind = {f.kind: f for f in report.findings}
    assert "Tracking Update Form" in by_kind["tracking_rejected"].action
    assert "not an approved carrier" in by_kind["tracking_rejected"].detail
    assert "'Pigeon'" in by_kind["tracking_held"].action
    assert "couriers.csv" in by_kind["tracking_held"].action


def test_shipment_that_never_reached_the_plugin_is_dispatched(world: World) -> None:
    world.host.sync(world.account)
    lid = world.line_ids[1]
    shipment = Shipment.single("S-lost", "UPS", "1Z999AA10123456784", {lid: 1})
    world.host.store.create_shipment("us", shipment)  # crash before the dispatch hook
    report = world.reconcile()
    assert kinds(report) == [("tracking", "shipment_not_dispatched", lid)]
    assert report.findings[0].tracking == "1Z999AA10123456784"

    fixed = world.reconcile(fix=True)
    assert fixed.clean
    assert fixed.findings[0].fixed
    assert world.state.line(lid).status == "shipped"  # type: ignore[union-attr]
    assert world.reconcile().clean


def test_unconfirmed_host_line_is_bound_and_acked(world: World) -> None:
    # The host committed but crashed before mark_exported: ledger still says delivered.
    batch = world.host.facade.import_orders(account=world.account)
    world.host.store.store_batch("us", batch.orders)
    report = world.reconcile()
    assert sorted(kinds(report)) == [
        ("unacked", "host_line_unconfirmed", i) for i in sorted(world.line_ids)
    ]
    assert world.reconcile(fix=True).clean
    assert all(world.state.line(i).exported for i in world.line_ids)  # type: ignore[union-attr]
    assert world.reconcile().clean


def test_report_json_has_lists_and_counts_and_no_token(world: World) -> None:
    world.state.mark_exported(SUPPLIER, TOKEN, [world.line_ids[0]])
    world.host.sync(world.account)
    data = world.reconcile().to_dict()
    text = json.dumps(data)
    assert TOKEN not in text
    assert set(data["findings"]) == {
        "exported_missing",
        "unacked",
        "tracking",
        "unexported_unknown",
    }
    assert data["counts"]["exported_missing"] == {"found": 1, "fixed": 0, "remaining": 1}
    assert data["clean"] is False


def test_mark_exported_off_means_stored_is_normal(world: World) -> None:
    world.account = replace(
        world.account, options=replace(world.account.options, mark_exported=False)
    )
    world.host.sync(world.account)
    assert world.reconcile().clean


def test_bad_arguments_and_missing_host_db(world: World, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="days must be >= 1"):
        world.reconcile(days=0)
    with pytest.raises(HostViewError, match="does not exist"):
        HostView(tmp_path / "nope.sqlite3")
    junk = tmp_path / "junk.sqlite3"
    sqlite3.connect(junk).close()
    with HostView(junk) as view, pytest.raises(HostViewError, match="not a reference-host"):
        view.lines("us")


def test_stored_line_the_host_lost_is_not_acked_but_redelivered(world: World) -> None:
    # Not exported in CI yet (acks failing), so only the ledger/host comparison can see it.
    world.faults({"method": "POST", "path": "/api/*/mark_exported", "status": 500})
    world.host.sync(world.account)
    lost = world.line_ids[2]
    with sqlite3.connect(world.host_db) as db:
        db.execute("DELETE FROM order_lines WHERE ci_lineitemid = ?", (lost,))
    report = world.reconcile()
    assert ("exported_missing", "not_in_host", lost) in kinds(report)
    assert ("unacked", "stored_not_acked", lost) not in kinds(report)  # never ack it as is

    world.faults()
    assert world.reconcile(fix=True).clean
    assert not world.state.line(lost).exported  # type: ignore[union-attr]
    assert world.ledger().get_line(lost).state == "staged"  # type: ignore[union-attr]
    world.host.sync(world.account)
    assert world.host.store.line("us", lost) is not None
    assert world.state.line(lost).exported  # type: ignore[union-attr]
    assert world.reconcile().clean


def test_unexported_lines_unknown_to_the_ledger_are_reported_and_fixed(world: World) -> None:
    # Issue 9: before, reconcile said clean while CI listed lines no sync had ever imported
    # (window mode skipped a back-dated order) and Groupon later auto-cancelled them.
    report = world.reconcile()
    unknown = [f for f in report.findings if f.check == "unexported_unknown"]
    assert sorted(f.ci_lineitemid for f in unknown) == sorted(world.line_ids)
    assert all(f.kind == "unknown_to_ledger" and f.fixable for f in unknown)
    assert "un-exported but the ledger has never seen it" in unknown[0].detail

    fixed = world.reconcile(fix=True)
    assert all(f.fixed for f in fixed.findings if f.check == "unexported_unknown")
    assert {row.state for row in world.ledger().lines()} == {"staged"}
    sync = world.host.sync(world.account)
    assert sync.lines_marked_exported == len(world.line_ids)
    assert world.reconcile().clean


def test_young_unknown_lines_are_only_noted(world: World) -> None:
    report = world.reconcile(stale_minutes=10 * 24 * 60)
    assert not [f for f in report.findings if f.check == "unexported_unknown"]
    assert any("younger than" in note for note in report.notes)


def test_shipment_id_that_diverged_before_contract_v2_is_flagged(world: World) -> None:
    """A 0.1 host kept the first SHP-1 while the plugin held another: reconcile says so."""
    world.host.sync(world.account)
    first, other = world.line_ids[0], world.line_ids[1]
    assert [r.outcome for r in world.ship("S-div", first, "1Z999AA10123456784")] == [
        LineOutcome.ACCEPTED
    ]
    assert world.reconcile().clean
    # What a 0.1 host could end up with: its record of the id names another line.
    parcels = json.dumps([{"tracking_number": "1Z999AA10123456784",
                           "lines": [{"ci_lineitemid": other, "quantity": 1}]}])  # fmt: skip
    with world.host.store._db:
        world.host.store._db.execute(
            "UPDATE shipments SET parcels = ? WHERE shipment_id = 'S-div'", (parcels,)
        )
    report = world.reconcile()
    [finding] = report.findings
    assert (finding.check, finding.kind, finding.shipment_id) == (
        "tracking",
        "shipment_diverged",
        "S-div",
    )
    assert f"host-only (line, tracking) [({other}, '1Z999AA10123456784')]" in finding.detail
    assert not finding.fixable
