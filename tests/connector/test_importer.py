"""Import pipeline driven through the hooks, the way a host drives it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from connector.errors import CITransportError
from connector.importer import fallback_ship_by, split_windows
from connector.models import HoldKind, LineOutcome, StoredOrder
from tests.connector.fakes import (
    T0,
    Imported,
    fake_mappings,
    make_host,
    make_line,
    make_record,
)


def _store(host, acct, batch, prefix: str = "H"):  # type: ignore[no-untyped-def]
    stored = [
        StoredOrder(o.orderid, f"{prefix}-{o.orderid}", o.ci_lineitemids) for o in batch.orders
    ]
    return host.pm.hook.oms_mark_exported(account=acct, stored=stored)


def test_split_order_across_pages_is_merged_and_duplicates_staged_once(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    # 260 filler records push the second half of order "SPLIT" onto page 2.
    ci.add(make_record("SPLIT", [make_line(1, "SKU-1")]))
    for i in range(260):
        ci.add(make_record(f"F{i}", [make_line(1000 + i, "SKU-2")]))
    ci.add(make_record("SPLIT", [make_line(2, "SKU-2", quantity=2)]))
    ci.add(make_record("SPLIT", [make_line(2, "SKU-2", quantity=2)]))  # same line again
    assert len(ci.fetch_all()) == 2
    batch = host.pm.hook.oms_import_orders(account=acct)
    orders = {o.orderid: o for o in batch.orders}
    assert len(orders) == 261
    split = orders["SPLIT"]
    assert split.ci_lineitemids == (1, 2)
    assert [c.host_sku for ln in split.lines for c in ln.components] == ["HOST-1", "HOST-2"]
    assert split.total == 10 + 20  # one amount per distinct record; the duplicate once
    assert ci.calls_to("mark_exported") == []  # import never acknowledges


def test_nothing_acked_that_the_host_did_not_store(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1)]))
    ci.add(make_record("B", [make_line(2)]))
    batch = host.pm.hook.oms_import_orders(account=acct)
    only_a = [o for o in batch.orders if o.orderid == "A"]
    results = host.pm.hook.oms_mark_exported(
        account=acct, stored=[StoredOrder("A", "H-A", only_a[0].ci_lineitemids)]
    )
    assert [(r.ci_lineitemid, r.outcome) for r in results] == [(1, LineOutcome.ACCEPTED)]
    assert ci.exported == {1}
    again = host.pm.hook.oms_import_orders(account=acct)
    assert [o.orderid for o in again.orders] == ["B"]  # refused by host -> re-delivered
    assert ci.exported == {1}
    # A line never imported is refused, not acknowledged.
    bogus = host.pm.hook.oms_mark_exported(account=acct, stored=[StoredOrder("Z", "H", (99,))])
    assert bogus[0].outcome is LineOutcome.REJECTED
    assert "never imported" in bogus[0].reason


def test_crash_between_store_and_ack_reacks_without_redelivery(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    batch = host.pm.hook.oms_import_orders(account=acct)
    ci.fail("mark_exported", CITransportError("connection reset"))  # "crash" before the ack
    results = _store(host, acct, batch)
    assert {r.outcome for r in results} == {LineOutcome.QUEUED}
    # Fresh plugin on the same ledger file = process restart.
    restarted = make_host()
    restarted.cis["us"] = ci
    again = restarted.pm.hook.oms_import_orders(account=restarted.account(tmp_path))
    assert again.orders == ()
    assert ci.exported == {1, 2}
    dup = _store(restarted, acct, batch)
    assert {r.outcome for r in dup} == {LineOutcome.ALREADY_DONE}


def test_delivered_but_unconfirmed_is_redelivered(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1)]))
    first = host.pm.hook.oms_import_orders(account=acct)
    second = host.pm.hook.oms_import_orders(account=acct)
    assert [o.orderid for o in first.orders] == ["A"]
    assert second.orders == first.orders


def test_unmapped_sku_holds_whole_order_then_released(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1), make_line(2, "NEW-9", bom_sku="B-9")]))
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert batch.orders == ()
    held = {h.ci_lineitemid: h for h in batch.held}
    assert set(held) == {1, 2}
    assert {h.kind for h in held.values()} == {HoldKind.UNMAPPED_SKU}
    assert "'NEW-9'" in held[2].reason
    assert "sku_aliases.csv" in held[2].reason
    host.maps["us"] = fake_mappings(aliases={"SKU-1": [("HOST-1", 1)], "B-9": [("HOST-9", 2)]})
    released = host.pm.hook.oms_import_orders(account=acct)
    assert [o.orderid for o in released.orders] == ["A"]
    assert released.orders[0].lines[1].components[0].host_sku == "HOST-9"
    assert released.held == ()


def test_sku_fallback_uses_bom_sku(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path, sku_fallback="bom_sku")
    host.cis["us"].add(make_record("A", [make_line(1, "EAN-1", bom_sku="MY-REF")]))
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert batch.orders[0].lines[0].components[0].host_sku == "MY-REF"


def test_invalid_record_held_rest_imported(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    bad = make_record("BAD", [make_line(5)])
    bad["line_items"][0]["quantity"] = "lots"
    ci.add(bad)
    ci.add(make_record("BAD", [make_line(6)]))  # other record of the same order
    ci.add(make_record("GOOD", [make_line(7)]))
    ci.add({"orderid": "NOLINES"})
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert [o.orderid for o in batch.orders] == ["GOOD"]
    held = {h.ci_lineitemid: h for h in batch.held}
    assert held[5].kind is HoldKind.INVALID_PAYLOAD
    assert "quantity" in held[5].reason
    assert "lots" in held[5].reason
    assert held[6].kind is HoldKind.INVALID_PAYLOAD
    assert "held whole" in held[6].reason
    assert held[None].orderid == "NOLINES"


def test_import_delay_keeps_young_orders_staged(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path, import_delay_minutes=60)
    host.cis["us"].add(make_record("A", [make_line(1)], date=host.clock.now - timedelta(minutes=5)))
    assert host.pm.hook.oms_import_orders(account=acct).orders == ()
    host.clock.advance(minutes=60)
    assert [o.orderid for o in host.pm.hook.oms_import_orders(account=acct).orders] == ["A"]


def test_without_a_delay_an_order_dated_ahead_of_our_clock_is_imported(tmp_path: Path) -> None:
    """CI's clock may run ahead of ours; with no import delay nothing should wait for it."""
    host = make_host()
    acct = host.account(tmp_path)
    ahead = host.clock.now + timedelta(minutes=3)
    host.cis["us"].add(make_record("AHEAD", [make_line(1)], date=ahead))
    assert [o.orderid for o in host.pm.hook.oms_import_orders(account=acct).orders] == ["AHEAD"]


def test_ship_by_from_ci_else_weekday_fallback(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    friday = T0 + timedelta(days=4)
    due = T0 + timedelta(days=1, hours=5)
    host.cis["us"].add(make_record("A", [make_line(1, ship_by=due)]))
    host.cis["us"].add(make_record("B", [make_line(2)], date=friday))
    host.clock.now = friday + timedelta(hours=1)
    orders = {o.orderid: o for o in host.pm.hook.oms_import_orders(account=acct).orders}
    assert orders["A"].ship_by == due
    assert orders["B"].ship_by == friday + timedelta(days=3)  # Monday
    assert fallback_ship_by(T0) == T0 + timedelta(days=1)


def test_ack_batch_refused_is_isolated(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path, ack_batch_size=10)
    ci = host.cis["us"]
    for i in range(1, 6):
        ci.add(make_record(f"O{i}", [make_line(i)]))
    ci.refuse_ack = {3}
    batch = host.pm.hook.oms_import_orders(account=acct)
    results = {r.ci_lineitemid: r for r in _store(host, acct, batch)}
    assert results[3].outcome is LineOutcome.REJECTED
    assert "Invalid ci_lineitem_ids" in results[3].reason
    assert {i for i, r in results.items() if r.outcome is LineOutcome.ACCEPTED} == {1, 2, 4, 5}
    assert ci.exported == {1, 2, 4, 5}
    held = host.pm.hook.oms_held_lines(account=acct)
    assert [(h.ci_lineitemid, h.kind) for h in held] == [(3, HoldKind.REJECTED_BY_CI)]


def test_transport_error_queues_acks_then_flush_sends_them(three_imported: Imported) -> None:
    host, acct, ci, batch = three_imported.unpack()
    ci.fail("mark_exported", CITransportError("503 after retries"))
    results = _store(host, acct, batch)
    assert [r.outcome for r in results] == [LineOutcome.QUEUED] * 3
    assert "503" in results[0].reason
    assert ci.exported == set()
    flushed = host.pm.hook.oms_flush_outbox(account=acct)
    assert {(r.ci_lineitemid, r.outcome) for r in flushed} == {
        (1, LineOutcome.ACCEPTED),
        (2, LineOutcome.ACCEPTED),
        (3, LineOutcome.ACCEPTED),
    }
    assert ci.exported == {1, 2, 3}


def test_mark_exported_off_ledger_alone_prevents_redelivery(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path, mark_exported=False)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1)]))
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert [r.outcome for r in _store(host, acct, batch)] == [LineOutcome.ACCEPTED]
    assert ci.calls_to("mark_exported") == []
    assert host.pm.hook.oms_import_orders(account=acct).orders == ()


def test_hook_oms_confirm_cancellations(tmp_path: Path) -> None:
    """A cancellation is reported until the host confirms it, then never again."""
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    _store(host, acct, host.pm.hook.oms_import_orders(account=acct))
    ci.cancel(2)
    first = host.pm.hook.oms_import_orders(account=acct)
    assert [(c.orderid, c.ci_lineitemid, c.host_order_id) for c in first.cancellations] == [
        ("A", 2, "H-A")
    ]
    # The host crashed before applying it: the next import reports it again.
    again = host.pm.hook.oms_import_orders(account=acct)
    assert [c.ci_lineitemid for c in again.cancellations] == [2]
    results = host.pm.hook.oms_confirm_cancellations(account=acct, ci_lineitemids=[2, 1])
    assert [(r.ci_lineitemid, r.outcome) for r in results] == [
        (2, LineOutcome.ACCEPTED),
        (1, LineOutcome.REJECTED),
    ]
    repeat = host.pm.hook.oms_confirm_cancellations(account=acct, ci_lineitemids=[2])
    assert [r.outcome for r in repeat] == [LineOutcome.ALREADY_DONE]
    assert host.pm.hook.oms_import_orders(account=acct).cancellations == ()
    # The re-read used a date window (< 24 h) around the order date.
    windows = [w for w in ci.calls_to("get_orders") if w is not None]
    assert windows
    assert all(b - a < timedelta(hours=24) for a, b in windows)


def test_window_mode_reads_windows_and_advances_watermark(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(
        tmp_path,
        window_mode=True,
        lookback_hours=30,
        watch_cancellations=False,
        window_catchup_minutes=180,
    )
    ci = host.cis["us"]
    ci.add(make_record("OLD", [make_line(1)], date=host.clock.now - timedelta(hours=29)))
    ci.add(make_record("NEW", [make_line(2)], date=host.clock.now - timedelta(hours=1)))
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert sorted(o.orderid for o in batch.orders) == ["NEW", "OLD"]
    windows = ci.calls_to("get_orders")
    # Two windows, then the first catch-up read of the un-exported listing (None).
    assert windows[-1] is None
    assert None not in windows[:-1]
    assert len(windows) == 3
    ledger = host.plugin.ledger_for(acct)
    assert ledger.get_watermark() == host.clock.now
    host.clock.advance(hours=2)
    ci.calls.clear()
    host.pm.hook.oms_import_orders(account=acct)
    (window,) = ci.calls_to("get_orders")
    assert window[0] == host.clock.now - timedelta(hours=2, minutes=30)


def test_failed_read_stages_nothing(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1)]))
    ci.fail("get_orders", CITransportError("timeout"))
    try:
        host.pm.hook.oms_import_orders(account=acct)
    except CITransportError:
        pass
    else:  # pragma: no cover - the fake raises
        raise AssertionError("expected the read failure to propagate")
    assert host.plugin.ledger_for(acct).summary()["lines"]["staged"] == 0
    assert list(host.plugin.ledger_for(acct).lines()) == []


def test_split_windows_are_under_24h() -> None:
    windows = split_windows(T0, T0 + timedelta(hours=50), 30)
    assert all(b - a <= timedelta(hours=23) for a, b in windows)
    assert windows[0][0] == T0
    assert windows[-1][1] == T0 + timedelta(hours=50)
