"""Contract v2 end to end (issue 10): the reference host and the Groupon plugin through
pluggy against the simulator, in process and over a real socket: ship before ack, batch
dispatch packed into few CI calls, retry timing and ``force``, void."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from connector.demo import ups_tracking_number
from connector.models import Account, LineOutcome, Shipment
from connector.reference_host.facade import ChannelFacade
from connector.reference_host.host import ReferenceHost
from connector.testing.simulator import SimulatorHandle, make_account, running_simulator
from tests.e2e._support import simulator_host


@dataclass
class Rig:
    sim: SimulatorHandle
    account: Account
    host: ReferenceHost
    facade: ChannelFacade


@pytest.fixture(params=["socket", "in_process"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    with running_simulator(request.param) as sim:
        sim.state.clock.freeze()
        sim.seed(orders=8, lines_per_order=(1, 2))
        account = make_account(sim, tmp_path, watch_cancellations=False, tracking_batch_size=4)
        with simulator_host(sim, tmp_path) as (_plugin, facade, host):
            yield Rig(sim, account, host, facade)
            host.close()


def _open(rig: Rig) -> dict[int, int]:
    return {
        int(str(r["ci_lineitemid"])): int(str(r["quantity"]))
        for r in rig.host.store.open_lines(rig.account.name)
    }


def test_ship_before_ack_is_sent_by_the_next_sync(rig: Rig) -> None:
    """The host committed a batch and crashed before the ack, then shipped a line of it."""
    batch = rig.facade.import_orders(account=rig.account)
    rig.host.store.store_batch(rig.account.name, batch.orders)  # committed, never acked
    lid, qty = next(iter(_open(rig).items()))
    [held] = rig.host.ship(
        rig.account, Shipment.single("EARLY", "UPS", ups_tracking_number(1), {lid: qty})
    )
    assert held.outcome is LineOutcome.HELD
    report = rig.host.sync(rig.account)  # re-delivered, stored idempotently, acked, flushed
    assert report.ok, report.errors
    assert report.retried_ok == 1
    assert rig.facade.held_lines(account=rig.account) == []
    [line] = [line for line in rig.sim.lines() if line["ci_lineitemid"] == lid]
    assert line["tracking"]


def test_a_wave_goes_out_in_few_calls_and_queued_rows_carry_retry_at(rig: Rig) -> None:
    # The fault below fails the first 3 requests: with calls in flight (ack_concurrency) they
    # would spread over several calls, each then retried fine. One call at a time keeps them on
    # the first call, which this test is about.
    options = replace(rig.account.options, ack_concurrency=1)
    rig = replace(rig, account=replace(rig.account, options=options))
    assert rig.host.sync(rig.account).ok
    lines = _open(rig)
    shipments = [
        Shipment.single(f"W-{lid}", "UPS", ups_tracking_number(100 + n), {lid: qty})
        for n, (lid, qty) in enumerate(sorted(lines.items()))
    ]
    before = rig.facade.channel_stats(account=rig.account).get("calls:tracking_notification", 0)
    # CI is down for the first wave call (every retry of it): the whole first call queues.
    rig.sim.set_faults(
        [{"method": "POST", "path": "/api/*/tracking_notification", "status": 503, "count": 3}]
    )
    results = rig.host.ship_many(rig.account, shipments)
    assert len(results) == len(lines)
    queued = [r for r in results if r.outcome is LineOutcome.QUEUED]
    accepted = [r for r in results if r.outcome is LineOutcome.ACCEPTED]
    assert len(queued) == 4  # one packed call of tracking_batch_size
    assert len(accepted) == len(lines) - 4
    now = rig.sim.state.clock.now()
    assert {r.retry_at for r in queued} == {now + timedelta(seconds=60)}
    calls = rig.facade.channel_stats(account=rig.account)["calls:tracking_notification"] - before
    # One call per tracking_batch_size rows (the failed one included), not one per shipment.
    assert calls == -(-len(lines) // 4)
    assert calls < len(shipments)
    rig.sim.set_faults([])
    assert rig.facade.flush_outbox(account=rig.account) == []  # not due yet
    forced = rig.facade.flush_outbox(account=rig.account, force=True)
    assert {r.outcome for r in forced} == {LineOutcome.ACCEPTED}
    assert all(line["tracking"] for line in rig.sim.lines())
    # The same wave again changes nothing; a reused id with other contents is refused.
    again = rig.host.ship_many(rig.account, shipments)
    assert {r.outcome for r in again} == {LineOutcome.ALREADY_DONE}
    other = replace(shipments[0], courier="FedEx")
    [refused] = rig.host.ship_many(rig.account, [other])
    assert refused.outcome is LineOutcome.REJECTED
    voided = rig.host.void(rig.account, shipments[0].shipment_id, "label reprinted")
    assert voided.withdrawn == ()
    assert len(voided.already_sent) == 1
