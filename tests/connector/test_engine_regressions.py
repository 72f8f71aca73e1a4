"""Regression tests for engine bugs a reviewer confirmed (one section per bug)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from connector.ci.client import LineitemTrackingItem
from connector.errors import ChannelError, LedgerError
from connector.ledger import Ledger
from connector.models import HoldKind, LineOutcome, Parcel, Shipment, ShipmentLine, StoredOrder
from connector.secrets import Secret
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


# -- dispatch: a held row re-checked after its line was imported carries the line's ids -------


def _import_and_store(host: Any, acct: Any) -> None:
    batch = host.pm.hook.oms_import_orders(account=acct)
    stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
    host.pm.hook.oms_mark_exported(account=acct, stored=stored)


def test_held_unknown_line_redispatched_partial_goes_out_with_its_ids(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1, quantity=3)]))
    ship = Shipment.single("S1", "UPS", "1Z999AA10123456784", {1: 1})  # 1 of 3: partial
    first = host.pm.hook.oms_dispatch(account=acct, shipment=ship)
    assert [r.outcome for r in first] == [LineOutcome.HELD]
    _import_and_store(host, acct)
    again = host.pm.hook.oms_dispatch(account=acct, shipment=ship)
    assert [r.outcome for r in again] == [LineOutcome.ACCEPTED]
    row = host.plugin.ledger_for(acct).outbox_rows(shipment_id="S1")[0]
    assert (row.state, row.orderid, row.fulfillment_lineitem_id) == ("accepted", "A", "1300000001")
    calls = ci.calls_to("lineitem_tracking_notification")
    assert [[it.fulfillment_lineitem_id for it in call] for call in calls] == [["1300000001"]]


def test_rechecked_rows_count_towards_six_tracking_numbers_per_order(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1, quantity=10)]))
    ships = [Shipment.single(f"S{n}", "UPS", f"1ZTRACK{n}", {1: 1}) for n in range(6)]
    for ship in ships:  # all held: the line is not imported yet
        held = host.pm.hook.oms_dispatch(account=acct, shipment=ship)
        assert held[0].outcome is LineOutcome.HELD
    _import_and_store(host, acct)
    for ship in ships:
        assert host.pm.hook.oms_dispatch(account=acct, shipment=ship)[0].outcome is (
            LineOutcome.ACCEPTED
        )
    seventh = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S7", "UPS", "1ZTRACK7", {1: 1})
    )
    assert seventh[0].outcome is LineOutcome.HELD
    assert "more than 6 tracking numbers" in seventh[0].reason


def test_client_valueerror_holds_the_row_instead_of_escaping(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1, quantity=3), make_line(2, quantity=3)]))
    _import_and_store(host, acct)
    real = ci.lineitem_tracking_notification

    def picky(items: list[LineitemTrackingItem]) -> None:
        if any(it.tracking == "1ZBAD" for it in items):
            raise ValueError("tracking must not be '1ZBAD'")  # refused before any HTTP call
        real(items)

    ci.lineitem_tracking_notification = picky  # type: ignore[method-assign]
    ship = Shipment(
        "S1",
        "UPS",
        (
            Parcel("1ZGOOD", (ShipmentLine(1, 1),)),
            Parcel("1ZBAD", (ShipmentLine(2, 1),)),
        ),
    )
    results = host.pm.hook.oms_dispatch(account=acct, shipment=ship)
    outcomes = {r.tracking_number: r.outcome for r in results}
    assert outcomes == {"1ZGOOD": LineOutcome.ACCEPTED, "1ZBAD": LineOutcome.HELD}
    ledger = host.plugin.ledger_for(acct)
    bad = ledger.outbox_rows(shipment_id="S1", tracking="1ZBAD")[0]
    assert bad.state == "held"
    assert "tracking must not be '1ZBAD'" in bad.reason
    assert host.pm.hook.oms_flush_outbox(account=acct) == []  # nothing left stuck 'sending'
    assert any(h.ci_lineitemid == 2 and "1ZBAD" in h.reason for h in ledger.held_lines())


def test_flush_fills_missing_ids_of_rows_left_by_older_versions(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1, quantity=3)]))
    _import_and_store(host, acct)
    ledger = host.plugin.ledger_for(acct)
    ledger.insert_outbox(  # the shape the bug left behind: no order id, no Groupon line id
        shipment_id="S1",
        ci_lineitemid=1,
        tracking="1ZOLD",
        quantity=1,
        now=host.clock(),
        carrier_code="ups",
        endpoint="lineitem_tracking_notification",
        state="sending",
        attempts=1,
    )
    results = host.pm.hook.oms_flush_outbox(account=acct)
    assert [(r.ci_lineitemid, r.outcome) for r in results] == [(1, LineOutcome.ACCEPTED)]
    row = ledger.outbox_rows(shipment_id="S1")[0]
    assert (row.orderid, row.fulfillment_lineitem_id, row.state) == ("A", "1300000001", "accepted")


# -- ledger: SQLite errors surface as LedgerError with the real cause ---------------------------


def test_disk_full_during_import_is_a_ledger_error_naming_the_cause(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    for n in range(300):
        ci.add(make_record(f"O{n}", [make_line(n + 1)]))
    ledger = host.plugin.ledger_for(acct)
    pages = ledger._conn.execute("PRAGMA page_count").fetchone()[0]
    ledger._conn.execute(f"PRAGMA max_page_count={pages + 3}")  # a disk that fills up
    with pytest.raises(LedgerError, match="database or disk is full") as caught:
        host.pm.hook.oms_import_orders(account=acct)
    assert "cannot rollback" not in str(caught.value)


class _FullDisk:
    """A connection whose batched state write fails the way SQLITE_FULL does: SQLite has
    already rolled the transaction back when the error reaches Python."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._c, name)

    def _fail_state_write(self, sql: str) -> None:
        if sql.startswith("UPDATE lines SET state = ?"):
            self._c.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql: str, *args: Any) -> Any:
        self._fail_state_write(sql)  # set_line_states: one statement per state and 500 ids
        return self._c.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> Any:
        self._fail_state_write(sql)
        return self._c.executemany(sql, rows)


def test_automatic_rollback_by_sqlite_does_not_hide_the_error(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1)]))
    ledger = host.plugin.ledger_for(acct)
    real = ledger._conn
    ledger._conn = _FullDisk(real)  # type: ignore[assignment]
    with pytest.raises(ChannelError, match="database or disk is full"):
        host.pm.hook.oms_import_orders(account=acct)
    ledger._conn = real
    assert not real.in_transaction
    batch = host.pm.hook.oms_import_orders(account=acct)  # the ledger is usable again
    assert [o.orderid for o in batch.orders] == ["A"]


def test_raw_sqlite_error_inside_a_transaction_becomes_ledger_error(tmp_path: Path) -> None:
    host = make_host()
    ledger: Ledger = host.plugin.ledger_for(host.account(tmp_path))

    def failing_batch() -> None:
        with ledger.transaction():
            ledger.set_meta("kept", "no")
            ledger._conn.execute("SELECT * FROM nowhere")

    with pytest.raises(LedgerError, match="no such table: nowhere"):
        failing_batch()
    assert ledger.get_meta("kept") is None  # rolled back
    ledger.set_meta("after", "yes")  # not stuck inside a transaction
    assert ledger.get_meta("after") == "yes"


def test_ledger_error_messages_are_redacted(tmp_path: Path) -> None:
    token = "tok-LedgerCanary-0123456789abcdef"
    Secret(token)  # registers the value for redaction
    host = make_host()
    ledger = host.plugin.ledger_for(host.account(tmp_path))
    sql = 'SELECT * FROM "' + token + '"'  # noqa: S608 - SQLite echoes the name back
    with pytest.raises(LedgerError) as caught, ledger.transaction():
        ledger._conn.execute(sql)
    assert token not in str(caught.value)
    assert "no such table" in str(caught.value)


# -- confirm_cancellations: only what was reported, each id once ------------------------------


def test_confirm_rejects_a_line_cancelled_before_it_was_handed_over(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("U", [make_line(7, "NO-ALIAS")]))
    held = host.pm.hook.oms_import_orders(account=acct)  # unmapped SKU: held, not handed over
    assert held.orders == ()
    ci.cancel(7)
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert batch.cancellations == ()  # dropped silently, never reported
    results = host.pm.hook.oms_confirm_cancellations(account=acct, ci_lineitemids=[7, 7])
    assert [(r.ci_lineitemid, r.outcome) for r in results] == [
        (7, LineOutcome.REJECTED),
        (7, LineOutcome.REJECTED),
    ]
    assert "before it was handed to the host" in results[0].reason


def test_confirm_duplicate_id_in_one_call_is_accepted_once(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    _import_and_store(host, acct)
    ci.cancel(2)
    reported = host.pm.hook.oms_import_orders(account=acct)
    assert [c.ci_lineitemid for c in reported.cancellations] == [2]
    results = host.pm.hook.oms_confirm_cancellations(account=acct, ci_lineitemids=[2, 2, 1])
    assert [(r.ci_lineitemid, r.outcome) for r in results] == [
        (2, LineOutcome.ACCEPTED),
        (2, LineOutcome.ALREADY_DONE),
        (1, LineOutcome.REJECTED),
    ]
    assert host.pm.hook.oms_import_orders(account=acct).cancellations == ()
