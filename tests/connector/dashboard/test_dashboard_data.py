"""Dashboard data without a browser: SLA grouping, cycle shares, hints, currency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connector.dashboard.data import collect_account, currency_symbol, cycle_view, sla_view
from connector.dashboard.hints import DEFAULT_HINT, HINTS, hint_for
from connector.models import Account, AccountOptions, HoldKind
from connector.ops.sla import evaluate_account
from connector.ops.threshold import evaluate
from connector.secrets import Secret

NOW = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)  # Monday, 12:00 in Chicago


def _account(tmp_path: Path, level: int = 2) -> Account:
    return Account(
        "us1",
        "groupon",
        "SUP1",
        Secret("data-test-token-123456"),
        region="US",
        data_dir=tmp_path,
        options=AccountOptions(merchant_level=level),
    )


def _rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    # Three lines ordered last Tuesday (overdue, same deadline), two ordered Friday (due today).
    for i in range(3):
        rows.append(
            {"orderid": f"A{i}", "ci_lineitemid": 10 + i, "order_time": "2026-02-24T16:00:00Z"}
        )
    for i in range(2):
        rows.append(
            {"orderid": f"B{i}", "ci_lineitemid": 20 + i, "order_time": "2026-02-27T16:00:00Z"}
        )
    for row in rows:
        row["quantity"] = 1
        row["unit_price"] = "25.00"
    return rows


def test_sla_view_groups_same_hour_deadlines(tmp_path: Path) -> None:
    statuses = evaluate_account(_account(tmp_path), _rows(), NOW, 2)
    view = sla_view(statuses, NOW, 2)
    assert view.counts["overdue"] == 3
    assert view.counts["due_today"] == 2
    assert view.lane_counts == {"overdue": 3, "due_today": 2}
    assert sorted(d.count for d in view.dots) == [2, 3]
    assert sum(d.count for d in view.dots) == len(view.at_risk) == 5
    overdue = next(d for d in view.dots if d.lane == "overdue")
    assert overdue.x < view.now_x
    assert overdue.radius > next(d for d in view.dots if d.lane == "due_today").radius
    assert "3 line(s) overdue" in overdue.label
    assert all(0.0 <= d.x <= 1.0 for d in view.dots)
    assert len(view.day_ticks) >= 12


def test_cycle_view_places_now_and_projected_cap() -> None:
    start = NOW - timedelta(days=10)
    sales = [(start + timedelta(days=d), 10, Decimal("100")) for d in range(10)]
    report = evaluate(2, sales, [], NOW)
    view = cycle_view(report, "$", (0.8, 0.95))
    assert view.elapsed_share == pytest.approx(10 / 30, abs=0.01)
    assert report.projected_cap_at is not None
    assert view.projected_share is not None
    assert view.elapsed_share < view.projected_share <= 1.0


def test_every_hold_kind_has_a_hint() -> None:
    assert set(HINTS) == {k.value for k in HoldKind}
    assert hint_for("something_new") == DEFAULT_HINT
    assert "sku_aliases.csv" in hint_for("unmapped_sku")[0]


@pytest.mark.parametrize(
    ("region", "sign"), [("US", "$"), ("GB", "£"), ("UK", "£"), ("DE", "€"), ("IT", "€")]
)
def test_currency_from_region(region: str, sign: str) -> None:
    assert currency_symbol(region) == sign


def test_unreadable_ledger_is_an_account_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "ledger-us1.sqlite3").write_bytes(b"this is not a database" * 100)
    view = collect_account(None, _account(tmp_path), NOW)
    assert view.errors
    assert view.errors[0].startswith("ledger:")
    assert view.sla is None
