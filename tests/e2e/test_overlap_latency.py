"""Overlap with the network end to end (issue 11 point 3): the reference host and the plugin
through pluggy against the simulator over a real socket, with latency injected on every CI
call, pages prefetched and acks and packed tracking calls in flight: every line stored once,
marked exported once, shipped once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from connector.demo import ups_tracking_number
from connector.models import LineOutcome, Shipment
from connector.testing.simulator import make_account, running_simulator
from tests.e2e._support import simulator_host

pytestmark = [pytest.mark.socket, pytest.mark.timeout(180)]


def test_latency_import_ack_and_dispatch_with_calls_in_flight(tmp_path: Path) -> None:
    with running_simulator("socket") as sim:
        sim.state.clock.freeze()
        sim.seed(orders=700, lines_per_order=(1, 2))  # ~1,000 lines: 4-5 pages
        sim.set_faults([{"path": "/api/*", "latency_ms": 20}])
        account = make_account(
            sim,
            tmp_path,
            watch_cancellations=False,
            ack_batch_size=50,
            tracking_batch_size=40,
            ack_concurrency=3,
        )
        with simulator_host(sim, tmp_path) as (plugin, facade, host):
            report = host.sync(account)
            assert report.ok, report.errors
            lines = sim.lines()
            assert len(lines) >= 900
            assert host.store.count_lines(account.name) == len(lines)
            assert host.store.duplicates() == []
            for line in lines:
                marks = [c for c in line["calls"] if c["call"].endswith("mark_exported")]
                assert line["exported"], line["ci_lineitemid"]
                assert len(marks) == 1, (line["ci_lineitemid"], marks)
            assert plugin.ledger_for(account).summary()["lines"]["acked"] == len(lines)

            open_lines = host.store.open_lines(account.name)
            shipments = [
                Shipment.single(
                    f"S-{row['ci_lineitemid']}",
                    "UPS",
                    ups_tracking_number(5000 + n),
                    {int(str(row["ci_lineitemid"])): int(str(row["quantity"]))},
                )
                for n, row in enumerate(open_lines)
            ]
            results = host.ship_many(account, shipments)
            assert {r.outcome for r in results} == {LineOutcome.ACCEPTED}
            shipped = {line["ci_lineitemid"]: line for line in sim.lines()}
            for row in open_lines:
                line = shipped[int(str(row["ci_lineitemid"]))]
                assert len(line["tracking"]) == 1
            stats = facade.channel_stats(account=account)
            assert stats["calls:tracking_notification"] == -(-len(shipments) // 40)
            host.close()
    assert not [t for t in threading.enumerate() if t.name.startswith(("ci-ack", "ci-pre"))]
