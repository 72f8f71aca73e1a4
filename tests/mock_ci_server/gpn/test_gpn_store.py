"""GPNStore: seeding determinism, the seed's "Empty for" rules, rectification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from mock_ci_server.gpn.store import STATUSES_BY_TYPE, GPNRecord, GPNStore, GPNStoreError

START = datetime(2024, 2, 1, tzinfo=UTC)
END = datetime(2024, 3, 1, tzinfo=UTC)


def _store() -> GPNStore:
    store = GPNStore()
    store.add_client("c1", "tok-1")
    return store


def test_seed_is_deterministic_and_within_range() -> None:
    a, b = _store(), _store()
    rows_a = a.seed("c1", 200, 7, START, END)
    rows_b = b.seed("c1", 200, 7, START, END)
    assert [r.transaction_id for r in rows_a] == [r.transaction_id for r in rows_b]
    assert rows_a == rows_b
    assert {r.transaction_id for r in rows_a} != {
        r.transaction_id for r in _store().seed("c1", 200, 8, START, END)
    }
    for r in rows_a:
        assert START <= r.last_modified <= END
        assert r.transaction_status in STATUSES_BY_TYPE[r.transaction_type]
        if r.transaction_date is not None:
            assert START <= r.transaction_date <= r.last_modified


def test_seed_leaves_recent_sales_pending_and_old_ones_rectified() -> None:
    rows = _store().seed("c1", 400, 3, START, END)
    sales = [r for r in rows if r.transaction_type == "SALE"]
    recent = [r for r in sales if r.transaction_date and END - r.transaction_date < timedelta(2)]
    old = [r for r in sales if r.transaction_date and END - r.transaction_date >= timedelta(2)]
    assert recent
    assert old
    assert all(r.transaction_status == "PENDING" for r in recent)
    assert all(r.transaction_status != "PENDING" for r in old)


def test_empty_for_rules_per_type() -> None:
    rows = _store().seed("c1", 600, 11, START, END)
    seen = {r.transaction_type for r in rows}
    assert seen == set(STATUSES_BY_TYPE)
    for r in rows:
        t = r.transaction_type
        if t in ("BONUS", "PAYMENT"):
            assert r.transaction_date is None
            assert r.cart_id is None
            assert r.sid is None
            assert r.wid is None
            assert r.link_id is None
            assert r.support_id is None
        if t in ("BOUNTY", "BONUS", "PAYMENT"):
            assert r.order_id is None
            assert r.short_id is None
        if t in ("BOUNTY", "BOUNTY_REFUND", "BONUS", "PAYMENT"):
            assert r.cart_item_id is None
            assert r.permalink is None
            assert r.gross_amount is None
        if t in ("SALE", "REFUND", "BOUNTY", "BOUNTY_REFUND", "PAYMENT"):
            assert r.transaction_details is None
        else:
            assert r.transaction_details
        if t == "SALE" and r.transaction_status != "NON-COMMISSIONABLE":
            assert r.commission_category
        else:
            assert r.commission_category is None
        if r.transaction_status == "NON-COMMISSIONABLE":
            assert r.commission_details is None
            assert r.is_new_user is None
        assert (r.invoice_id is not None) == (r.transaction_status == "INVOICED")


def test_record_refuses_impossible_status() -> None:
    with pytest.raises(GPNStoreError, match="not possible for transactionType 'BONUS'"):
        GPNRecord("x", "BONUS", "PENDING", START, None, "USD", "US", 100)


def test_rectify_moves_old_pending_and_stamps_modified() -> None:
    store = _store()
    store.seed("c1", 300, 5, START, END)
    pending = [r for r in store.records("c1") if r.transaction_status == "PENDING"]
    assert pending
    now = END + timedelta(hours=72)
    stamp = END + timedelta(hours=1)
    moved = store.rectify(now, older_than=timedelta(hours=48), modified_at=stamp)
    assert sorted(moved) == sorted(r.transaction_id for r in pending)
    after = {r.transaction_id: r for r in store.records("c1")}
    statuses = {after[i].transaction_status for i in moved}
    assert statuses <= {"COMMISSIONABLE", "NON-COMMISSIONABLE"}
    assert all(after[i].last_modified == stamp for i in moved)
    assert store.rectify(now) == []  # nothing left to move


def test_rectify_keeps_young_pending() -> None:
    store = _store()
    store.add(
        "c1",
        GPNRecord("young", "SALE", "PENDING", END, END, "USD", "US", 100, gross_amount=Decimal(1)),
    )
    assert store.rectify(END + timedelta(hours=47)) == []
    assert store.rectify(END + timedelta(hours=49)) == ["young"]


def test_query_selects_on_last_modified_inclusive() -> None:
    store = _store()
    store.add("c1", GPNRecord("a", "PAYMENT", "INVOICED", START, None, "USD", "US", 1))
    store.add("c1", GPNRecord("b", "PAYMENT", "INVOICED", END, None, "USD", "US", 1))
    ids = [r.transaction_id for r in store.query("c1", START, END)]
    assert ids == ["a", "b"]
    assert store.query("c1", START + timedelta(seconds=1), END - timedelta(seconds=1)) == []


def test_unknown_client_and_reset() -> None:
    store = _store()
    with pytest.raises(GPNStoreError, match="unknown client_id 'nope'"):
        store.seed("nope", 1, 1, START, END)
    store.auth_skew = timedelta(seconds=1)
    store.reset()
    assert store.token_for("c1") is None
    assert store.auth_skew == timedelta(minutes=5)
    assert "tok-1" not in str(store.snapshot())
