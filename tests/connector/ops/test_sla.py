from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connector.models import Account, AccountOptions, SlaRisk
from connector.ops.businessdays import BusinessCalendar
from connector.ops.sla import (
    LineStatus,
    SlaInputError,
    SlaLine,
    SlaState,
    SlaStatus,
    at_risk,
    cycle_time_report,
    evaluate,
    parse_datetime,
    risks_for_account,
    sla_lines_from_rows,
)
from connector.secrets import Secret

CT = ZoneInfo("America/Chicago")
FIVE_PM = time(17, 0)
US = BusinessCalendar("US")


def ct(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=CT).astimezone(UTC)


# Monday 2 March 2026, 10:00 CT: tracking due Tue 3 Mar 23:59 CT, movement by Thu 5 Mar,
# auto-cancel (7 BD) Wed 11 Mar 23:59 CT. (Issue 12/9: deadlines at 23:59 local, the CI
# capture's ship_by rule, not at the 17:00 cut-off; movement keeps the cut-off.)
BASE = SlaLine(
    account="us1",
    orderid="ORD-1",
    ci_lineitemid=101,
    order_time=ct(2026, 3, 2, 10),
    ship_by=None,
    quantity=2,
)


def judge(line: SlaLine, now: datetime, **kw: Any) -> SlaStatus:
    (status,) = evaluate([line], US, now, FIVE_PM, CT, **kw)
    return status


def test_on_time() -> None:
    s = judge(BASE, ct(2026, 3, 2, 12))
    assert s.state is SlaState.ON_TIME
    assert s.deadline == ct(2026, 3, 3, 23, 59)
    assert s.deadline_source == "computed"
    assert s.auto_cancel_at == ct(2026, 3, 11, 23, 59)
    assert s.business_days_to_auto_cancel == 7


def test_due_today() -> None:
    s = judge(BASE, ct(2026, 3, 3, 9))
    assert s.state is SlaState.DUE_TODAY
    assert "due today" in s.reason


def test_overdue() -> None:
    s = judge(BASE, ct(2026, 3, 4, 9))
    assert s.state is SlaState.OVERDUE
    assert s.business_days_to_auto_cancel == 5
    assert "was due Tue 2026-03-03 23:59 CST" in s.reason


def test_just_after_deadline_is_overdue_and_at_deadline_is_due() -> None:
    assert judge(BASE, ct(2026, 3, 3, 23, 59)).state is SlaState.DUE_TODAY
    assert judge(BASE, ct(2026, 3, 4, 0, 0)).state is SlaState.OVERDUE


def test_auto_cancel_soon_and_passed() -> None:
    soon = judge(BASE, ct(2026, 3, 9, 9))
    assert soon.state is SlaState.AUTO_CANCEL_SOON
    assert soon.business_days_to_auto_cancel == 2
    assert judge(BASE, ct(2026, 3, 9, 9), auto_cancel_warn_days=1).state is SlaState.OVERDUE
    passed = judge(BASE, ct(2026, 3, 12, 9))
    assert passed.state is SlaState.AUTO_CANCEL_SOON
    assert passed.business_days_to_auto_cancel == 0
    assert "passed" in passed.reason


def test_ship_by_from_ci_wins_over_computed_deadline() -> None:
    line = replace(BASE, ship_by=datetime(2026, 3, 6, 22, 59, tzinfo=UTC))
    s = judge(line, ct(2026, 3, 6, 9))
    assert s.deadline_source == "ship_by"
    assert s.deadline == datetime(2026, 3, 6, 22, 59, tzinfo=UTC)
    assert s.state is SlaState.DUE_TODAY  # would be overdue with the computed deadline


def test_partially_shipped_uses_14_business_days() -> None:
    line = replace(BASE, qty_shipped=1, tracking_uploaded_at=ct(2026, 3, 3, 9))
    s = judge(line, ct(2026, 3, 9, 9))
    assert line.effective_status is LineStatus.PARTIALLY_SHIPPED
    assert s.state is SlaState.OVERDUE
    assert s.auto_cancel_at == ct(2026, 3, 20, 23, 59)
    assert s.business_days_to_auto_cancel == 9
    assert "1 of 2 units" in s.reason


def test_shipped_and_cancelled() -> None:
    shipped = replace(BASE, qty_shipped=2, tracking_uploaded_at=ct(2026, 3, 4, 9))
    s = judge(shipped, ct(2026, 3, 20, 9))
    assert s.state is SlaState.SHIPPED
    assert s.tracking_late
    assert s.business_days_to_auto_cancel is None
    on_time = replace(shipped, tracking_uploaded_at=ct(2026, 3, 3, 9))
    assert not judge(on_time, ct(2026, 3, 20, 9)).tracking_late
    cancelled = replace(BASE, status=LineStatus.CANCELLED)
    c = judge(cancelled, ct(2026, 3, 20, 9))
    assert c.state is SlaState.CANCELLED
    assert not c.movement_late


def test_auto_cancel_counts_skip_thanksgiving() -> None:
    line = replace(BASE, order_time=ct(2026, 11, 25, 10))
    s = judge(line, ct(2026, 11, 30, 9))
    # 7 BD after Wed 25 Nov skipping Thu 26 (Thanksgiving) and the weekend: Mon 7 Dec
    assert s.auto_cancel_at == ct(2026, 12, 7, 23, 59)
    assert s.deadline == ct(2026, 11, 27, 23, 59)
    assert s.business_days_to_auto_cancel == 5
    partial = replace(line, qty_shipped=1)
    assert judge(partial, ct(2026, 11, 30, 9)).auto_cancel_at == ct(2026, 12, 16, 23, 59)


def test_movement_late_only_where_scans_are_known() -> None:
    shipped = replace(BASE, qty_shipped=2, tracking_uploaded_at=ct(2026, 3, 3, 9))
    now = ct(2026, 3, 10, 9)
    assert judge(shipped, now).movement_late is False  # no scan data: cannot judge
    assert judge(shipped, now, scans_reported=True).movement_late is True
    early_scan = replace(shipped, first_scan_at=ct(2026, 3, 4, 9))
    assert judge(early_scan, now, scans_reported=True).movement_late is False
    late_scan = replace(shipped, first_scan_at=ct(2026, 3, 6, 9))
    s = judge(late_scan, now)
    assert s.movement_late is True
    assert s.movement_deadline == ct(2026, 3, 5, 17)
    assert "movement" in s.reason


def test_closures_move_the_deadline() -> None:
    cal = BusinessCalendar("US", closures=[parse_datetime("2026-03-03").date()])
    (s,) = evaluate([BASE], cal, ct(2026, 3, 3, 18), FIVE_PM, CT)
    assert s.deadline == ct(2026, 3, 4, 23, 59)
    assert s.state is SlaState.ON_TIME


def test_evaluate_rejects_naive_now() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        evaluate([BASE], US, datetime(2026, 3, 3), FIVE_PM, CT)


def test_at_risk_orders_by_urgency_and_uses_auto_cancel_deadline() -> None:
    now = ct(2026, 3, 9, 9)
    lines = [
        replace(BASE, ci_lineitemid=1, order_time=ct(2026, 3, 9, 8)),  # on time
        replace(BASE, ci_lineitemid=2, order_time=ct(2026, 3, 6, 10)),  # due today (Mon)
        replace(BASE, ci_lineitemid=3, order_time=ct(2026, 3, 4, 10)),  # overdue
        BASE,  # 101: auto-cancel in 2 BD
        replace(BASE, ci_lineitemid=4, status=LineStatus.SHIPPED),
        replace(BASE, ci_lineitemid=5, status=LineStatus.CANCELLED),
    ]
    risks = at_risk(evaluate(lines, US, now, FIVE_PM, CT))
    assert all(isinstance(r, SlaRisk) for r in risks)
    assert [(r.ci_lineitemid, r.state) for r in risks] == [
        (101, "auto_cancel_soon"),
        (3, "overdue"),
        (2, "due_today"),
    ]
    assert risks[0].deadline == ct(2026, 3, 11, 23, 59)
    assert risks[0].business_days_to_auto_cancel == 2
    assert risks[1].deadline == ct(2026, 3, 5, 23, 59)
    assert risks[0].account == "us1"
    assert risks[0].orderid == "ORD-1"


def test_at_risk_window_widens_with_within_business_days() -> None:
    statuses = evaluate([BASE], US, ct(2026, 3, 6, 9), FIVE_PM, CT)  # 3 BD to auto-cancel
    assert statuses[0].state is SlaState.OVERDUE
    assert [r.business_days_to_auto_cancel for r in at_risk(statuses, 5)] == [3]
    on_time = evaluate([BASE], US, ct(2026, 3, 2, 11), FIVE_PM, CT)
    assert at_risk(on_time, 2) == []
    assert len(at_risk(on_time, 7)) == 1


def test_cycle_time_report() -> None:
    lines = [
        replace(BASE, ci_lineitemid=1, delivered_at=BASE.order_time + timedelta(days=5)),
        # 8 elapsed days (not 8 days minus the DST hour: count in UTC)
        replace(BASE, ci_lineitemid=2, delivered_at=BASE.order_time + timedelta(days=8)),
        replace(
            BASE,
            ci_lineitemid=3,
            delivered_at=BASE.order_time + timedelta(days=30),
            status=LineStatus.CANCELLED,
        ),
        replace(BASE, ci_lineitemid=4),
    ]
    report = cycle_time_report(lines)
    assert report.n == 2
    assert report.avg_days == 6.5  # 5 and 8 days
    assert report.over_6 == 1
    assert report.meets_target is False
    empty = cycle_time_report([BASE])
    assert empty.avg_days is None
    assert empty.n == 0
    assert empty.meets_target is None


def test_status_to_dict_is_json_ready() -> None:
    d = judge(BASE, ct(2026, 3, 4, 9)).to_dict()
    assert d["state"] == "overdue"
    assert d["deadline"] == "2026-03-04T05:59:00+00:00"  # 23:59 CST (issue 12 rule)
    assert d["status"] == "open"
    assert d["business_days_to_auto_cancel"] == 5


# --- rows ------------------------------------------------------------------------------


def test_rows_parse_ci_and_iso_datetimes_and_status_aliases() -> None:
    rows = [
        {
            "account": "us1",
            "orderid": "A",
            "ci_lineitemid": "7",
            "order_date": "03/02/2026 04:00PM UTC",
            "ship_by_date": "03/06/2026 10:59PM UTC",
            "quantity": 1,
            "status": "Canceled",
        },
        {
            "orderid": "B",
            "ci_lineitemid": 8,
            "order_time": "2026-03-02T16:00:00Z",
            "quantity": "3",
            "qty_shipped": None,
            "tracking_uploaded_at": datetime(2026, 3, 3, 10),  # naive = UTC
            "status": "partially_shipped",
        },
    ]
    a, b = sla_lines_from_rows(rows, account="fallback")
    assert a.account == "us1"
    assert b.account == "fallback"
    assert a.ci_lineitemid == 7
    assert a.order_time == datetime(2026, 3, 2, 16, tzinfo=UTC)
    assert a.ship_by == datetime(2026, 3, 6, 22, 59, tzinfo=UTC)
    assert a.status is LineStatus.CANCELLED
    assert b.quantity == 3
    assert b.qty_shipped == 0
    assert b.tracking_uploaded_at == datetime(2026, 3, 3, 10, tzinfo=UTC)
    assert b.status is LineStatus.PARTIALLY_SHIPPED


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"status": "lost"}, r"row 1 \(ci_lineitemid 9\): field 'status' = 'lost'"),
        ({"order_time": "yesterday"}, r"field 'order_time' = 'yesterday': not a date-time"),
        ({"order_time": None}, r"field 'order_time' is missing"),
        ({"quantity": "two"}, r"field 'quantity' = 'two': not an integer"),
        ({"orderid": ""}, r"field 'orderid' is missing"),
        ({"account": None}, r"field 'account' is missing"),
        ({"quantity": -1}, r"line 9 \(order O\): quantity -1"),
    ],
)
def test_bad_rows_name_row_field_and_value(row: dict[str, Any], message: str) -> None:
    good: dict[str, Any] = {
        "account": "us1",
        "orderid": "O",
        "ci_lineitemid": 9,
        "order_time": "2026-03-02T16:00:00+00:00",
        "quantity": 1,
    }
    with pytest.raises(SlaInputError, match=message):
        sla_lines_from_rows([{**good, **row}])


def test_sla_line_refuses_naive_datetimes() -> None:
    with pytest.raises(SlaInputError, match=r"ship_by .* has no time zone"):
        replace(BASE, ship_by=datetime(2026, 3, 6, 12))


def test_risks_for_account_uses_the_account_options() -> None:
    rows = [
        {"orderid": "A", "ci_lineitemid": 1, "order_time": "2026-03-02T16:00:00Z", "quantity": 1}
    ]
    now = ct(2026, 3, 3, 16)
    central = Account("us1", "groupon", "S", Secret("tok-risk-1"), region="US")
    (risk,) = risks_for_account(central, rows, now)
    assert risk.state == "due_today"
    assert risk.account == "us1"
    # With 2026-03-03 closed the deadline moves to Wednesday: nothing at risk on Tuesday.
    closed = replace(central, options=AccountOptions(closures=("2026-03-03",)))
    assert risks_for_account(closed, rows, now) == []
