"""Rules on the simulated clock: auto-cancel (7/14 business days) and merchant thresholds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask.testing import FlaskClient

from mock_ci_server.state import SimState

from .conftest import SUPPLIER, body, get_orders, track

# Wednesday 12 June 2024, 10:00 UTC (05:00 in Chicago: before the 17:00 cut-off, so the clock
# starts that day); Juneteenth (Wed 19 June) is a US holiday. Deadlines fall at 23:59 Chicago
# time (04:59 UTC next day in summer): the capture rule of issue 12, which replaced "same time
# of day, N business days after the UTC date".
ORDER_AT = datetime(2024, 6, 12, 10, 0, tzinfo=UTC)


def _clock(api: FlaskClient, **payload: object) -> dict[str, object]:
    response = api.post("/_sim/clock", json=payload)
    assert response.status_code == 200, response.json
    result: dict[str, object] = response.json  # type: ignore[assignment]
    return result


def test_auto_cancel_after_7_business_days_skips_us_holiday(
    sim_state: SimState, api: FlaskClient
) -> None:
    sim_state.clock.set(ORDER_AT)
    ids = sim_state.seed(SUPPLIER, orders=2, seed=1, spread_hours=0)["ci_lineitemids"]
    # Without the holiday the 7th business day would be Fri 21 June (23:59 CDT).
    out = _clock(api, set="2024-06-22T05:00:00+00:00")
    assert out["auto_cancelled"] == []
    # 13,14,17,18,20,21,24 June: due Mon 24 June 23:59 CDT = Tue 25 June 04:59 UTC.
    out = _clock(api, set="2024-06-25T04:58:00+00:00")
    assert out["auto_cancelled"] == []
    out = _clock(api, advance_seconds=60)
    assert sorted(out["auto_cancelled"]) == sorted(ids)  # type: ignore[type-var]
    line = sim_state.line(ids[0])
    assert line is not None
    assert line.status == "cancelled"
    assert line.cancel_reason is not None
    assert "7 business days" in line.cancel_reason
    # Cancelled lines leave the default listing but stay in windows with their status.
    assert get_orders(api)["meta"]["no_of_items"] == 0
    window = get_orders(api, start_datetime="06/12/2024 09:00", end_datetime="06/12/2024 11:00")
    assert window["data"][0]["line_items"][0]["status"] == "cancelled"


def test_partially_shipped_cancelled_after_14_business_days(
    sim_state: SimState, api: FlaskClient
) -> None:
    sim_state.clock.set(ORDER_AT)
    ids = sim_state.seed(SUPPLIER, orders=2, seed=1, quantity=(2, 2), spread_hours=0)[
        "ci_lineitemids"
    ]
    partial = {"carrier": "ups", "ci_lineitem_id": ids[0], "tracking": "P1", "quantity": 1}
    full = {"carrier": "ups", "ci_lineitem_id": ids[1], "tracking": "P2"}
    assert track(api, [partial, full]) == {"success": True}
    assert _clock(api, set="2024-06-25T10:00:00+00:00")["auto_cancelled"] == []
    # 14 business days after Wed 12 June, Juneteenth skipped:
    # 13,14,17,18,20,21,24,25,26,27,28 June, 1,2,3 July -> Wed 3 July 23:59 CDT (04:59 UTC).
    assert _clock(api, set="2024-07-04T04:58:00+00:00")["auto_cancelled"] == []
    assert _clock(api, set="2024-07-04T04:59:00+00:00")["auto_cancelled"] == [ids[0]]
    shipped = sim_state.line(ids[1])
    assert shipped is not None
    assert shipped.status == "shipped"


def test_lazy_sweep_when_clock_moves_without_control_plane(
    sim_state: SimState, api: FlaskClient
) -> None:
    sim_state.clock.set(ORDER_AT)
    sim_state.seed(SUPPLIER, orders=3, seed=1, spread_hours=0)
    assert get_orders(api)["meta"]["no_of_items"] == 3
    sim_state.clock.advance(timedelta(days=30))
    assert get_orders(api)["meta"]["no_of_items"] == 0


def test_level_1_threshold_suspends_then_reinstate(sim_state: SimState, api: FlaskClient) -> None:
    sim_state.add_account(SUPPLIER, "T" * 31, merchant_level=1)
    # Bamboo boards and bottles at $15-$75: $1,000 is reached well before 100 units.
    result = sim_state.seed(SUPPLIER, orders=200, seed=7)
    assert result["suspended"] is True
    assert result["orders_refused"] > 0
    assert result["orders_created"] + result["orders_refused"] == 200
    account = body(api.get("/_sim/accounts"))["accounts"][0]
    assert account["suspended"] is True
    assert account["token"] == "********"
    assert account["events"][0]["event"] == "suspended"
    assert "level 1 threshold" in account["events"][0]["reason"]
    # While suspended nothing is created.
    again = sim_state.seed(SUPPLIER, orders=5, seed=8)
    assert (again["orders_created"], again["orders_refused"]) == (0, 5)
    reinstated = api.post(f"/_sim/accounts/{SUPPLIER}/reinstate").json
    assert reinstated is not None
    assert reinstated["account"]["suspended"] is False
    assert reinstated["account"]["cycle"]["units"] == 0  # the cycle restarts
    assert sim_state.seed(SUPPLIER, orders=2, seed=9)["orders_created"] == 2


def test_units_cap_and_cycle_expiry(sim_state: SimState) -> None:
    sim_state.add_account(SUPPLIER, "T" * 31, merchant_level=2)
    sim_state.seed(SUPPLIER, orders=10, seed=1, quantity=(4, 4))
    account = sim_state.accounts()[0]
    assert account["cycle"]["units"] == 40
    sim_state.clock.advance(timedelta(days=31))
    sim_state.seed(SUPPLIER, orders=1, seed=2, quantity=(4, 4))
    assert sim_state.accounts()[0]["cycle"]["units"] == 4  # a new 30-day cycle began


def test_manual_suspend_refuses_raw_records(sim_state: SimState, api: FlaskClient) -> None:
    assert (
        api.post(f"/_sim/accounts/{SUPPLIER}/suspend", json={"reason": "review"}).status_code == 200
    )
    record = {
        "orderid": "X1",
        "date": "03/04/2024 09:15AM UTC",
        "line_items": [{"ci_lineitemid": 800000001, "quantity": 1, "unit_price": 5}],
        "customer": {},
    }
    out = api.post("/_sim/seed", json={"supplier_id": SUPPLIER, "records": [record]}).json
    assert out is not None
    assert (out["orders_created"], out["orders_refused"]) == (0, 1)
