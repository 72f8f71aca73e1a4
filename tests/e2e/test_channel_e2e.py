"""The Groupon channel end to end, driven the way a host drives it.

A plugin manager with the ``oms`` specs, the Groupon plugin registered, the reference host
calling the hooks through its typed facade, and the simulator behind CI's real API — reached
over a loopback socket and in process (``responses``), the same tests both ways.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.demo import ups_tracking_number
from connector.errors import CIAuthError, CIProtocolError, CITransportError
from connector.models import Account, HoldKind, LineOutcome, Shipment
from connector.plugin import GrouponPlugin
from connector.reference_host.facade import ChannelFacade
from connector.reference_host.host import ReferenceHost
from connector.secrets import Secret
from connector.testing.simulator import SimulatorHandle, make_account, running_simulator
from tests.e2e._support import simulator_host

TRANSPORTS = ["socket", "in_process"]


@dataclass
class Rig:
    sim: SimulatorHandle
    account: Account
    host: ReferenceHost
    facade: ChannelFacade
    plugin: GrouponPlugin
    workdir: Path

    def ship_all(self, courier: str = "UPS", start: int = 0) -> list[Any]:
        """One shipment per open host order, one UPS parcel each."""
        by_order: dict[str, dict[int, int]] = defaultdict(dict)
        for line in self.host.store.open_lines(self.account.name):
            by_order[str(line["host_order_id"])][int(str(line["ci_lineitemid"]))] = int(
                str(line["quantity"])
            )
        results = []
        for n, (host_order_id, lines) in enumerate(sorted(by_order.items())):
            shipment = Shipment.single(
                f"S-{host_order_id}", courier, ups_tracking_number(start + n), lines
            )
            results.extend(self.host.ship(self.account, shipment))
        return results


@pytest.fixture(params=TRANSPORTS)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    with running_simulator(request.param) as sim:
        sim.state.clock.freeze()
        account = make_account(sim, tmp_path)
        with simulator_host(sim, tmp_path) as (plugin, facade, host):
            yield Rig(sim, account, host, facade, plugin, tmp_path)


def _sim_lines_by_order(sim: SimulatorHandle) -> dict[str, set[int]]:
    out: dict[str, set[int]] = defaultdict(set)
    for line in sim.lines():
        out[line["orderid"]].add(line["ci_lineitemid"])
    return out


def _host_lines_by_order(rig: Rig) -> dict[str, set[int]]:
    db = rig.host.store._db  # the reference host's own SQLite connection
    out: dict[str, set[int]] = defaultdict(set)
    for orderid, lid in db.execute(
        "SELECT o.orderid, l.ci_lineitemid FROM orders o JOIN order_lines l USING (host_order_id)"
        " WHERE o.account = ?",
        (rig.account.name,),
    ):
        out[orderid].add(lid)
    return out


def test_full_round_trip_merges_split_orders_and_ships_every_line(rig: Rig) -> None:
    seeded = rig.sim.seed(orders=220, lines_per_order=(1, 3), quantity=(1, 3), split_share=0.5)
    assert seeded["lines_created"] > 250  # more than one page of records

    report = rig.host.sync(rig.account)
    assert report.ok, report.errors
    sim_orders = _sim_lines_by_order(rig.sim)
    # Every order arrived whole: the records of a split order were merged across pages.
    assert _host_lines_by_order(rig) == sim_orders
    assert report.orders_imported == len(sim_orders) == 220
    assert report.lines_marked_exported == seeded["lines_created"]
    assert all(line["exported"] for line in rig.sim.lines())
    assert rig.host.store.duplicates() == []

    results = rig.ship_all()
    assert Counter(r.outcome for r in results) == {LineOutcome.ACCEPTED: seeded["lines_created"]}
    lines = rig.sim.lines()
    assert {line["status"] for line in lines} == {"shipped"}
    assert all(len(line["tracking"]) == 1 for line in lines)

    # Nothing twice: a second sync imports nothing, a re-sent shipment changes nothing.
    again = rig.host.sync(rig.account)
    assert (again.orders_imported, again.lines_marked_exported) == (0, 0)
    resent = rig.ship_all()
    assert {r.outcome for r in resent} <= {LineOutcome.ALREADY_DONE}
    assert all(len(line["tracking"]) == 1 for line in rig.sim.lines())
    assert rig.host.store.duplicates() == []


def test_nothing_is_acknowledged_that_the_host_refused(rig: Rig) -> None:
    rig.sim.seed(orders=12, lines_per_order=(1, 2))
    refused = set(sorted(_sim_lines_by_order(rig.sim))[:4])
    rig.host.accept = lambda order: "out of stock" if order.orderid in refused else True
    report = rig.host.sync(rig.account)
    assert (report.orders_imported, report.orders_new) == (12, 8)  # handed over vs stored
    by_order = defaultdict(list)
    for line in rig.sim.lines():
        by_order[line["orderid"]].append(line["exported"])
    for orderid, flags in by_order.items():
        assert all(flags) is (orderid not in refused), orderid
        assert any(flags) is (orderid not in refused), orderid

    rig.host.accept = None  # stock arrived
    later = rig.host.sync(rig.account)
    assert (later.orders_imported, later.orders_new) == (4, 4)
    assert all(line["exported"] for line in rig.sim.lines())
    assert rig.host.store.duplicates() == []


def test_unmapped_sku_is_held_with_its_reason_then_released(rig: Rig) -> None:
    rig.sim.seed(orders=40, lines_per_order=(1, 2), unmapped_share=0.25)
    held_orders = {
        line["orderid"]
        for line in rig.sim.state.get_state(rig.sim.supplier_id, True)["lines"]
        if line["record"]["line_items"][0]["bom_sku"] == "DEMO-9999"
    }
    assert held_orders
    rig.host.sync(rig.account)
    held = rig.facade.held_lines(account=rig.account)
    assert {h.orderid for h in held} == held_orders
    assert all(h.kind is HoldKind.UNMAPPED_SKU for h in held)
    assert all("DEMO-9999" in h.reason and "sku_aliases.csv" in h.reason for h in held)
    # Held whole and never acknowledged: CI keeps the lines, the host has none of them.
    for line in rig.sim.lines():
        assert line["exported"] is (line["orderid"] not in held_orders)
    assert set(_host_lines_by_order(rig)).isdisjoint(held_orders)

    assert rig.account.mappings_dir is not None
    with (rig.account.mappings_dir / "sku_aliases.csv").open("a", encoding="utf-8") as fh:
        fh.write("DEMO-9999,HOST-GIFT-BOX,1\n")
    released = rig.host.sync(rig.account)
    assert released.orders_imported == len(held_orders)
    assert rig.facade.held_lines(account=rig.account) == []
    assert all(line["exported"] for line in rig.sim.lines())


def test_unmapped_courier_is_held_then_released_by_flush(rig: Rig) -> None:
    rig.sim.seed(orders=3)
    rig.host.sync(rig.account)
    results = rig.ship_all(courier="Pigeon Express")
    assert {r.outcome for r in results} == {LineOutcome.HELD}
    assert all("Pigeon Express" in r.reason and "couriers.csv" in r.reason for r in results)
    assert all(not line["tracking"] for line in rig.sim.lines())  # nothing reached Groupon

    assert rig.account.mappings_dir is not None
    with (rig.account.mappings_dir / "couriers.csv").open("a", encoding="utf-8") as fh:
        fh.write("US,Pigeon Express,,ups\n")
    flushed = rig.facade.flush_outbox(account=rig.account)
    assert {r.outcome for r in flushed} == {LineOutcome.ACCEPTED}
    assert {line["status"] for line in rig.sim.lines()} == {"shipped"}


def test_groupon_cancellation_reaches_the_host_once(rig: Rig) -> None:
    rig.sim.seed(orders=5, lines_per_order=(2, 2))
    rig.host.sync(rig.account)
    victim = rig.sim.lines()[0]["ci_lineitemid"]
    rig.sim.state.cancel_lines(rig.sim.supplier_id, [victim])

    report = rig.host.sync(rig.account)
    assert (report.cancellations, report.cancellations_applied) == (1, 1)
    host_line = rig.host.store.line(rig.account.name, victim)
    assert host_line is not None
    assert host_line["status"] == "cancelled"
    assert rig.host.sync(rig.account).cancellations == 0
    # Dispatching the cancelled line is refused before Groupon sees it.
    shipment = Shipment.single("S-cancelled", "UPS", ups_tracking_number(900), {victim: 1})
    [result] = rig.host.ship(rig.account, shipment)
    assert result.outcome in (LineOutcome.HELD, LineOutcome.REJECTED)
    assert "cancel" in result.reason


def test_two_accounts_side_by_side_stay_apart(rig: Rig) -> None:
    uk_token = rig.sim.add_account("90077", region="UK")
    uk = replace(
        rig.account, name="groupon-uk", supplier_id="90077", token=Secret(uk_token), region="UK"
    )
    rig.sim.seed(orders=6)
    rig.sim.state.seed("90077", orders=4, countries=["UK"])
    us_report = rig.host.sync(rig.account)
    uk_report = rig.host.sync(uk)
    assert (us_report.orders_imported, uk_report.orders_imported) == (6, 4)
    assert rig.host.store.count_orders(uk.name) == 4
    uk_line = rig.sim.state.get_state("90077")["lines"][0]
    shipment = Shipment.single("UK-1", "Royal Mail", "RR123456785GB", {uk_line["ci_lineitemid"]: 1})
    [result] = rig.host.ship(uk, shipment)
    assert result.outcome is LineOutcome.ACCEPTED, result.reason
    [after] = [
        ln
        for ln in rig.sim.state.get_state("90077")["lines"]
        if ln["ci_lineitemid"] == uk_line["ci_lineitemid"]
    ]
    assert after["tracking"][0]["carrier"].upper() == "RYM"
    # The UK line id means nothing to the US account.
    us_try = rig.host.ship(
        rig.account,
        Shipment.single("US-x", "UPS", ups_tracking_number(1), {after["ci_lineitemid"]: 1}),
    )
    assert us_try[0].outcome is LineOutcome.HELD


def test_hook_oms_channel_stats(rig: Rig) -> None:
    """The sync summary says what was retried and why (counters come from the hook)."""
    rig.sim.seed(orders=3)
    rig.sim.set_faults(
        [
            {"method": "GET", "path": "/api/*/get_orders", "status": 503, "count": 2},
            {"method": "POST", "path": "/api/*/mark_exported", "status": 429, "count": 1,
             "retry_after": 0},
        ]
    )  # fmt: skip
    before = rig.facade.channel_stats(account=rig.account)
    report = rig.host.sync(rig.account)
    assert report.orders_new == 3
    assert report.transport_retries == {"429": 1, "503": 2}
    after = rig.facade.channel_stats(account=rig.account)
    assert after["retries:503"] - before.get("retries:503", 0) == 2
    assert after["calls:get_orders"] > before.get("calls:get_orders", 0)
    assert rig.host.sync(rig.account).transport_retries == {}  # counted once, per sync
    assert rig.plugin.oms_channel_stats(replace(rig.account, channel="other")) is None


CANARY = "CanaryTok3nE2E0123456789abcdefg"


def test_canary_token_never_leaks_on_success_or_error_paths(
    rig: Rig, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The token is in every GET's query string; it must not reach a log, an error or output."""
    caplog.set_level(logging.DEBUG)
    canary_sim_token = rig.sim.add_account("90555", region="US")
    rig.sim.state.add_account("90555", CANARY, region="US")  # re-key it to the canary
    del canary_sim_token
    acct = replace(rig.account, name="canary", supplier_id="90555", token=Secret(CANARY))
    rig.sim.state.seed("90555", orders=3)
    messages: list[str] = []

    report = rig.host.sync(acct)  # success path
    assert report.orders_imported == 3
    messages += [repr(acct), repr(report.to_dict())]

    wrong = replace(acct, token=Secret(CANARY[::-1]))
    with pytest.raises(CIAuthError) as auth:
        rig.facade.import_orders(account=wrong)
    messages += [str(auth.value), repr(auth.value)]

    fast = replace(acct, options=replace(acct.options, max_retries=1, backoff_seconds=0.0))
    rig.sim.set_faults([{"method": "GET", "path": "/api/*/get_orders", "status": 503}])
    with pytest.raises(CITransportError) as transport:
        rig.facade.import_orders(account=fast)
    messages += [str(transport.value), repr(transport.value)]

    html = "<html><body>Bad gateway for token=" + CANARY + "</body></html>"
    rig.sim.set_faults(
        [{"method": "GET", "path": "/api/*/get_orders", "status": 200, "body": html}]
    )
    with pytest.raises(CIProtocolError) as protocol:
        rig.facade.import_orders(account=fast)
    messages += [str(protocol.value), repr(protocol.value)]
    rig.sim.set_faults([])

    for exc in (auth.value, transport.value, protocol.value):
        chained = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if chained is not None:
            messages.append(str(chained))
    out = capsys.readouterr()
    everything = "\n".join([*messages, caplog.text, out.out, out.err])
    assert "get_orders" in caplog.text  # the URLs were logged, redacted
    assert CANARY not in everything
    assert CANARY[::-1] not in everything


def test_sla_deadline_before_a_holiday_then_auto_cancel_reported(rig: Rig) -> None:
    """An order taken the day before Thanksgiving; no tracking; Groupon cancels it after 7
    business days and the connector tells the host."""
    clock = rig.sim.state.clock
    clock.set(datetime(2026, 11, 25, 15, 0, tzinfo=UTC))  # Wed 9:00 CT, before the cut-off
    template = rig.sim.seed(orders=1, spread_hours=0)["orderids"][0]
    del template
    record = rig.sim.state.get_state(rig.sim.supplier_id, True)["lines"][0]["record"]
    line_id = record["line_items"][0]["ci_lineitemid"]
    # CI's ship_by_date wins when present; drop it to exercise the business-day fallback.
    ledger_free = {**record, "orderid": "SLA-1", "line_items": [
        {**record["line_items"][0], "ci_lineitemid": line_id + 10_000, "ship_by_date": ""}
    ]}  # fmt: skip
    rig.sim.state.seed_records(rig.sim.supplier_id, [ledger_free])
    rig.host.sync(rig.account)
    target = line_id + 10_000

    def risks(at: datetime) -> dict[int, Any]:
        return {r.ci_lineitemid: r for r in rig.facade.sla_at_risk(account=rig.account, now=at)}

    # Tracking is due 1 business day later: Thanksgiving (Thu) does not count -> Fri 23:59 CT
    # (issue 12: 23:59 local, the capture's ship_by rule; was 17:00).
    due_today = risks(datetime(2026, 11, 27, 16, 0, tzinfo=UTC))[target]
    assert due_today.state == "due_today"
    assert due_today.deadline == datetime(2026, 11, 28, 5, 59, tzinfo=UTC)
    assert target not in risks(datetime(2026, 11, 25, 16, 0, tzinfo=UTC))

    clock.set(datetime(2026, 12, 4, 15, 0, tzinfo=UTC))  # 6 business days after the order
    late = risks(clock.now())[target]
    assert late.business_days_to_auto_cancel is not None
    assert late.business_days_to_auto_cancel <= 1
    # One SLA truth (issue 9): the reported auto-cancel moment is the simulator's, Mon 7 Dec
    # 23:59 CT (the 7th business day after Wed 25 Nov, Thanksgiving skipped).
    assert late.deadline == datetime(2026, 12, 8, 5, 59, tzinfo=UTC)
    assert rig.host.sync(rig.account).cancellations == 0  # not cancelled yet

    clock.set(datetime(2026, 12, 8, 5, 58, tzinfo=UTC))  # one minute before: still open
    assert next(ln for ln in rig.sim.lines() if ln["ci_lineitemid"] == target)["status"] == "open"
    clock.set(datetime(2026, 12, 8, 5, 59, tzinfo=UTC))  # the reported moment: cancelled
    state_line = next(ln for ln in rig.sim.lines() if ln["ci_lineitemid"] == target)
    assert state_line["status"] == "cancelled"
    report = rig.host.sync(rig.account)
    assert report.cancellations >= 1
    host_line = rig.host.store.line(rig.account.name, target)
    assert host_line is not None
    assert host_line["status"] == "cancelled"
    assert target not in risks(clock.now())


def test_threshold_guard_warns_then_sees_the_cap_reached(rig: Rig) -> None:
    """Level 1 (100 units or $1,000 per 30 days): orders arrive one by one; the guard warns
    before the cap, the simulator suspends the account at the cap, the guard sees it reached."""
    from connector.cli.sla import load_sla_rows
    from connector.ops.threshold import evaluate, sales_from_rows

    rig.sim.state.add_account(rig.sim.supplier_id, rig.sim.token, region="US", merchant_level=1)
    clock = rig.sim.state.clock

    def guard() -> Any:
        rows = load_sla_rows(rig.account)
        return evaluate(1, sales_from_rows(rows), [], clock.now())

    warned = None
    for n in range(200):
        clock.advance(timedelta(minutes=10))
        seeded = rig.sim.seed(orders=1, seed=1000 + n, spread_hours=0)
        rig.host.sync(rig.account)
        report = guard()
        if warned is None and report.warnings:
            warned = report
        if seeded["suspended"]:
            break
    else:
        pytest.fail("the simulator never suspended the level-1 account")
    assert warned is not None
    assert not warned.cap_reached  # the warning came before the cap
    assert min(w.fraction for w in warned.warnings) == 0.8
    final = guard()
    assert final.cap_reached
    assert final.units >= 100 or final.sales >= 1000
    # Suspended: CI offers nothing new until Groupon reinstates the account.
    refused = rig.sim.seed(orders=5, seed=5000)
    assert refused["orders_refused"] == 5
    assert rig.host.sync(rig.account).orders_imported == 0


def test_host_test_kit_fixtures(
    groupon_simulator: SimulatorHandle, groupon_account: Account, oms_facade: ChannelFacade
) -> None:
    """The pytest fixtures shipped for host developers work as the README shows."""
    groupon_simulator.seed(orders=5, lines_per_order=(1, 2))
    batch = oms_facade.import_orders(account=groupon_account)
    assert len(batch.orders) == 5
    assert batch.orders[0].ship_to.name
    assert groupon_account.base_url == groupon_simulator.url
    assert groupon_simulator.url.startswith("http://127.0.0.1:")
    assert timedelta(0) <= datetime.now(UTC) - batch.orders[0].order_date < timedelta(days=3)
