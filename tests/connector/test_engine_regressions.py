"""Regression tests for engine bugs a reviewer confirmed (one section per bug)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connector.models import HoldKind
from tests.connector.fakes import make_host, make_line, make_record

# -- window mode: a broken record fixed by CI releases its order -----------------------------


def _broken_record(orderid: str) -> dict[str, Any]:
    bad = make_line(2)
    bad["ci_lineitemid"] = "not-a-number"  # no readable line id: listed as a record problem
    return make_record(orderid, [bad])


def test_window_mode_problem_cleared_once_ci_fixes_the_record(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path, window_mode=True, lookback_hours=30, watch_cancellations=False)
    ci = host.cis["us"]
    ci.add(make_record("P", [make_line(1)]))
    broken = _broken_record("P")
    ci.add(broken)
    first = host.pm.hook.oms_import_orders(account=acct)
    assert first.orders == ()
    assert any(h.ci_lineitemid is None and h.orderid == "P" for h in first.held)

    broken["line_items"] = [make_line(2)]  # CI fixes the record
    host.clock.advance(minutes=20)  # the watermark window no longer covers the order date
    second = host.pm.hook.oms_import_orders(account=acct)
    assert [o.orderid for o in second.orders] == ["P"]
    assert second.orders[0].ci_lineitemids == (1, 2)
    assert second.held == ()
    assert host.plugin.ledger_for(acct).held_lines() == []


def test_window_mode_order_still_broken_stays_held_with_its_first_seen(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path, window_mode=True, lookback_hours=30, watch_cancellations=False)
    ci = host.cis["us"]
    ci.add(make_record("P", [make_line(1)]))
    ci.add(_broken_record("P"))
    ci.add(make_record("Q", [make_line(3)]))
    first = host.pm.hook.oms_import_orders(account=acct)
    assert [o.orderid for o in first.orders] == ["Q"]
    since = [h.since for h in first.held if h.ci_lineitemid is None]
    assert len(since) == 1

    host.clock.advance(minutes=20)
    second = host.pm.hook.oms_import_orders(account=acct)
    assert "P" not in [o.orderid for o in second.orders]
    problems = [h for h in second.held if h.ci_lineitemid is None]
    assert [(h.orderid, h.kind, h.since) for h in problems] == [
        ("P", HoldKind.INVALID_PAYLOAD, since[0])
    ]
    assert [h.kind for h in second.held if h.ci_lineitemid == 1] == [HoldKind.INVALID_PAYLOAD]


def test_discard_problems_keeps_listed_keys_and_other_orders(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ledger = host.plugin.ledger_for(acct)
    now = host.clock()
    ledger.add_problems([("k1", "A", "bad"), ("k2", "A", "bad"), ("k3", "B", "bad")], now)
    assert ledger.discard_problems(["A"], keep=["k2"]) == 1
    left = sorted((h.orderid, h.reason) for h in ledger.held_lines(lines=False, outbox=False))
    assert left == [("A", "bad"), ("B", "bad")]
    assert ledger.discard_problems([]) == 0


# -- hostile payloads: keys of mixed types never crash staging --------------------------------


def test_record_with_mixed_type_keys_is_staged_not_raised(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    record = make_record("M", [make_line(1)])
    record["customer"][7] = "int key"  # json.dumps(sort_keys=True) cannot order 7 vs "name"
    host.cis["us"].add(record)
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert [o.orderid for o in batch.orders] == ["M"]
    stored = host.plugin.ledger_for(acct).get_line(1)
    assert stored is not None
    assert stored.record is not None
    assert stored.record["customer"]["7"] == "int key"
