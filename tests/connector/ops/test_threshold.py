from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from connector.ops.threshold import (
    LEVEL_CAPS,
    CycleEvent,
    CycleEventKind,
    Sale,
    ThresholdInputError,
    evaluate,
    review_readiness,
    sales_from_rows,
)

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.mark.parametrize(
    ("level", "units", "sales"),
    [(1, 100, "1000"), (2, 200, "5000"), (3, 2500, "25000"), (4, 12500, "125000")],
)
def test_level_caps_and_warnings_per_level(level: int, units: int, sales: str) -> None:
    assert LEVEL_CAPS[level].max_units == units
    assert LEVEL_CAPS[level].max_sales == Decimal(sales)
    below = evaluate(level, [(day(0), units * 79 // 100, Decimal(1))], [], day(1))
    assert below.warnings == ()
    at80 = evaluate(level, [(day(0), units * 80 // 100, Decimal(1))], [], day(1))
    assert [(w.fraction, w.measure) for w in at80.warnings] == [(0.8, "units")]
    assert at80.units_share == 0.8
    at95 = evaluate(level, [(day(0), units * 95 // 100, Decimal(1))], [], day(1))
    assert [(w.fraction, w.measure) for w in at95.warnings] == [(0.8, "units"), (0.95, "units")]
    assert not at95.cap_reached
    full = evaluate(level, [(day(0), units, Decimal(1))], [], day(1))
    assert full.cap_reached
    assert full.units_headroom == 0


def test_sales_amount_cap_warns_independently_of_units() -> None:
    report = evaluate(1, [(day(0), 3, Decimal("400")), (day(1), 2, Decimal("560.50"))], [], day(2))
    assert report.units == 5
    assert report.sales == Decimal("960.50")
    assert report.sales_share == 0.9605
    assert [(w.fraction, w.measure) for w in report.warnings] == [(0.8, "sales"), (0.95, "sales")]
    assert report.sales_headroom == Decimal("39.50")
    assert "sales at 96% of the cap" in str(report.warnings[1])


def test_custom_warn_levels() -> None:
    report = evaluate(1, [(day(0), 50, Decimal(0))], [], day(1), warn_at=(0.5,))
    assert [w.fraction for w in report.warnings] == [0.5]


def test_level_5_is_uncapped() -> None:
    report = evaluate(5, [(day(0), 10**6, Decimal("9999999"))], [], day(1))
    assert report.max_units is None
    assert report.units_share is None
    assert report.warnings == ()
    assert report.cap_reached is False
    assert report.projected_cap_at is None
    assert report.units == 10**6


def test_cycle_starts_at_first_sale_and_runs_back_to_back() -> None:
    sales = [Sale(day(0), 10, Decimal(100)), Sale(day(31), 4, Decimal(40))]
    report = evaluate(1, sales, [], day(45))
    assert report.cycle_start == day(30)
    assert report.cycle_end == day(60)
    assert report.units == 4
    explicit = evaluate(1, sales, [CycleEvent(day(-5), CycleEventKind.FIRST_SALE)], day(10))
    assert explicit.cycle_start == day(-5)
    assert explicit.units == 10


def test_cycle_restarts_on_suspension_and_unsuspension() -> None:
    sales = [(day(0), 60, Decimal(600)), (day(5), 40, Decimal(400)), (day(20), 7, Decimal(70))]
    suspended = CycleEvent(day(5), CycleEventKind.SUSPENDED)
    report = evaluate(1, sales[:2], [suspended], day(6))
    assert report.suspended
    assert report.suspended_since == day(5)
    assert report.cycle_start == day(5)
    assert report.units == 40  # the sale at the suspension moment counts, earlier ones do not
    unsuspended = CycleEvent(day(12), CycleEventKind.UNSUSPENDED)
    after = evaluate(1, sales, [suspended, unsuspended], day(21))
    assert not after.suspended
    assert after.suspended_since is None
    assert after.cycle_start == day(12)
    assert after.units == 7
    # events in the future are ignored
    assert evaluate(1, sales, [CycleEvent(day(40), CycleEventKind.SUSPENDED)], day(21)).units == 107


def test_projection_is_linear_over_the_cycle_so_far() -> None:
    # 50 units and $250 in 10 days -> units cap (100) in 20 days, sales cap ($1000) in 40
    sales = [(day(0), 25, Decimal(125)), (day(9), 25, Decimal(125))]
    report = evaluate(1, sales, [], day(10))
    assert report.projected_cap_at == day(20)
    assert report.projected_within_cycle
    slow = evaluate(1, [(day(0), 10, Decimal(10))], [], day(10))
    assert slow.projected_cap_at == day(100)
    assert not slow.projected_within_cycle


def test_projection_reports_when_the_cap_was_reached() -> None:
    sales = [(day(0), 60, Decimal(0)), (day(3), 50, Decimal(0)), (day(4), 5, Decimal(0))]
    report = evaluate(1, sales, [], day(5))
    assert report.cap_reached
    assert report.projected_cap_at == day(3)


def test_no_pace_no_projection() -> None:
    assert evaluate(1, [(day(0), 5, Decimal(5))], [], day(0)).projected_cap_at is None
    empty = evaluate(1, [], [], day(0))
    assert empty.cycle_start is None
    assert empty.units == 0
    assert empty.projected_cap_at is None
    assert empty.units_share == 0.0


def test_sales_after_now_are_ignored() -> None:
    report = evaluate(1, [(day(0), 5, Decimal(5)), (day(3), 90, Decimal(5))], [], day(2))
    assert report.units == 5


def test_report_to_dict() -> None:
    d = evaluate(2, [(day(0), 170, Decimal("12.34"))], [], day(1)).to_dict()
    assert d["level"] == 2
    assert d["sales"] == "12.34"
    assert d["max_sales"] == "5000"
    assert d["units_headroom"] == 30
    assert d["warnings"] == [{"fraction": 0.8, "measure": "units", "share": 0.85}]
    assert d["cycle_start"] == "2026-03-01T12:00:00+00:00"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": 6}, "merchant level 6"),
        ({"warn_at": (1.5,)}, "warn level 1.5"),
        ({"now": datetime(2026, 3, 2)}, "now .* has no time zone"),
        ({"sales": [(day(0), -1, Decimal(1))]}, "sale 1: units -1"),
        ({"sales": [(day(0), 1, "abc")]}, "sale 1: amount 'abc'"),
        ({"sales": [("2026-03-01", 1, 1)]}, "sale 1: time '2026-03-01' is not a datetime"),
        ({"sales": [(day(0), 1)]}, r"sale 1: expected \(time, units, amount\)"),
    ],
)
def test_bad_input_is_named(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"level": 1, "sales": [], "events": [], "now": day(1)}
    args.update(kwargs)
    with pytest.raises(ThresholdInputError, match=message):
        evaluate(**args)  # type: ignore[arg-type]


def test_review_readiness() -> None:
    far = review_readiness(3, 10, open_tickets=2)
    assert far.ready is False
    assert far.delivered_share == 0.3
    assert far.steps[0].startswith("get 7 more order(s) marked delivered")
    assert "resolve 2 open customer ticket(s)" in far.steps
    unknown = review_readiness(10, 10)
    assert unknown.ready is None
    assert unknown.orders_ok
    assert any("count unknown" in s for s in unknown.steps)
    done = review_readiness(10, 10, open_tickets=0)
    assert done.ready is True
    assert done.steps == ("then keep both true for 4 to 8 consecutive days to expedite the review",)
    assert done.to_dict()["ready"] is True
    with pytest.raises(ThresholdInputError, match="delivered 5 / total 4"):
        review_readiness(5, 4)


def test_sales_from_rows() -> None:
    rows = [
        {
            "ci_lineitemid": 1,
            "order_time": "2026-03-01T12:00:00Z",
            "quantity": 2,
            "unit_price": "9.99",
        },
        {"order_date": "03/02/2026 09:15AM UTC", "quantity": "1", "amount": 5},
        {"order_time": "2026-03-01T12:00:00Z", "quantity": 9, "amount": 99, "status": "cancelled"},
    ]
    sales = sales_from_rows(rows)
    assert sales == [
        Sale(day(0), 2, Decimal("19.98")),
        Sale(datetime(2026, 3, 2, 9, 15, tzinfo=UTC), 1, Decimal(5)),
    ]
    with pytest.raises(ThresholdInputError, match=r"row 1 \(ci_lineitemid 4\): field 'unit_price'"):
        sales_from_rows([{"ci_lineitemid": 4, "order_time": T0, "quantity": 1, "unit_price": "x"}])
    with pytest.raises(ThresholdInputError, match="needs 'amount' or 'unit_price'"):
        sales_from_rows([{"order_time": T0, "quantity": 1}])
    with pytest.raises(ThresholdInputError, match="field 'order_time' = 'soon'"):
        sales_from_rows([{"order_time": "soon", "quantity": 1, "amount": 1}])
