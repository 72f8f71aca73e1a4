"""One SLA truth (issue 9 item 6): the connector's deadlines follow the simulator's rule.

For every hour of 2024 (a leap year: both DST changes, every holiday, the year end into 2025)
an order is placed and both implementations are asked when tracking is due and when Groupon
auto-cancels (7 business days without tracking, 14 partially shipped):

* the simulator itself: orders seeded through ``SimState`` on its clock; its record's
  ``ship_by_date`` and the line's auto-cancel deadline, before and after a partial tracking;
* the connector: ``connector.ops.sla.evaluate`` (the ``sla`` command and ``oms_sla_at_risk``),
  with the deadline computed (no ``ship_by``) and the ``auto_cancel_at`` it reports.

This test imports both packages; the packages never import each other.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from connector.ops.businessdays import BusinessCalendar, parse_cutoff
from connector.ops.sla import LineStatus, SlaLine, evaluate, parse_datetime
from mock_ci_server.businessdays import REGION_ZONES, due_at
from mock_ci_server.state import SimState, TrackingRequest

YEAR_START = datetime(2024, 1, 1, tzinfo=UTC)
HOURS = 366 * 24
CUTOFF = parse_cutoff("17:00")
TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz01234"


def _connector(region: str) -> tuple[BusinessCalendar, ZoneInfo]:
    return BusinessCalendar(region), ZoneInfo(REGION_ZONES[region])


def _verdicts(
    region: str, orders: list[datetime], qty_shipped: int
) -> list[tuple[datetime, datetime | None]]:
    """(tracking deadline, auto_cancel_at) the connector reports for each order time."""
    calendar, tz = _connector(region)
    out = []
    for i, t in enumerate(orders):
        line = SlaLine(
            account=region,
            orderid=str(i),
            ci_lineitemid=i,
            order_time=t,
            ship_by=None,
            quantity=2,
            qty_shipped=qty_shipped,
            status=LineStatus.PARTIALLY_SHIPPED if qty_shipped else LineStatus.OPEN,
        )
        # Judged at the order time: what `sla` reports while the line is young.
        [verdict] = evaluate([line], calendar, t, CUTOFF, tz)
        out.append((verdict.deadline, verdict.auto_cancel_at))
    return out


# IT (the capture's region) runs end to end through SimState below; US compares with the rule
# function the state uses for ship_by and auto-cancel (`due_at`). Kept to two regions so the
# file stays well under 20 s on a shared machine.
@pytest.mark.parametrize("region", ["US"])
def test_rule_functions_agree_for_every_hour_of_a_year(region: str) -> None:
    orders = [YEAR_START + timedelta(hours=h) for h in range(HOURS)]
    open_verdicts = _verdicts(region, orders, qty_shipped=0)
    partial_verdicts = _verdicts(region, orders, qty_shipped=1)
    mismatches = []
    for t, (deadline, cancel_open), (_, cancel_partial) in zip(
        orders, open_verdicts, partial_verdicts, strict=True
    ):
        expected = (due_at(t, 1, region), due_at(t, 7, region), due_at(t, 14, region))
        if (deadline, cancel_open, cancel_partial) != expected:
            mismatches.append((t, (deadline, cancel_open, cancel_partial), expected))
    assert not mismatches, f"{len(mismatches)} hours disagree, first: {mismatches[:3]}"


@pytest.mark.parametrize("region", ["IT"])
def test_simulator_state_and_connector_agree_for_every_hour_of_a_year(region: str) -> None:
    started = time.perf_counter()
    state = SimState()
    state.add_account("90001", TOKEN, region=region)
    orders: list[datetime] = []
    sim_ship_by: list[datetime] = []
    sim_cancel_open: list[datetime | None] = []
    sim_cancel_partial: list[datetime | None] = []
    for h in range(HOURS):
        t = YEAR_START + timedelta(hours=h)
        state.clock.set(t)
        # quantity 2, so one tracked unit leaves the line partially shipped
        seeded = state.seed("90001", orders=1, seed=h, spread_hours=0, quantity=(2, 2))
        [line_id] = seeded["ci_lineitemids"]
        line = state.line(line_id)
        assert line is not None
        orders.append(line.order_date)
        sim_ship_by.append(parse_datetime(line.record["line_items"][0]["ship_by_date"]))
        sim_cancel_open.append(line.deadline)
        # Partial tracking moves the simulator's deadline to the 14-business-day rule.
        item = TrackingRequest(0, "ups", f"T{line_id}", quantity=1, ci_lineitemid=line_id)
        state.tracking_notification("90001", TOKEN, [item])
        assert line.status == "partially_shipped"
        sim_cancel_partial.append(line.deadline)
    assert orders[0] == YEAR_START
    assert orders[-1] == YEAR_START + timedelta(hours=HOURS - 1)
    open_verdicts = _verdicts(region, orders, qty_shipped=0)
    partial_verdicts = _verdicts(region, orders, qty_shipped=1)
    mismatches = []
    for i, t in enumerate(orders):
        connector = (open_verdicts[i][0], open_verdicts[i][1], partial_verdicts[i][1])
        simulator = (sim_ship_by[i], sim_cancel_open[i], sim_cancel_partial[i])
        if connector != simulator:
            mismatches.append((t, connector, simulator))
    assert not mismatches, f"{len(mismatches)} hours disagree, first: {mismatches[:3]}"
    # DST: the ship-by UTC time moves with local summer time.
    summer = orders.index(datetime(2024, 7, 1, 8, tzinfo=UTC))
    winter = orders.index(datetime(2024, 1, 8, 8, tzinfo=UTC))
    offset = {"US": 5, "IT": -2}[region]  # local 23:59 -> UTC hour in summer
    assert (sim_ship_by[summer].hour - 23) % 24 == offset % 24
    assert (sim_ship_by[winter].hour - 23) % 24 == (offset + 1) % 24
    assert time.perf_counter() - started < 60  # generous; it takes a few seconds
