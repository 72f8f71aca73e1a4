"""Dispatch: outbox, batching, endpoints, idempotency, rejection isolation, retries."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from connector.dispatcher import retry_delay
from connector.errors import CIProtocolError, CITransportError
from connector.models import HoldKind, LineOutcome, Parcel, Shipment, ShipmentLine, StoredOrder
from connector.runtime.identity import process_owner
from tests.connector.fakes import Host, fake_mappings, make_host, make_line, make_record


def _ready(tmp_path: Path, *records: dict, **options: object) -> tuple[Host, object]:  # type: ignore[type-arg]
    host = make_host()
    acct = host.account(tmp_path, **options)
    for rec in records:
        host.cis["us"].add(rec)
    batch = host.pm.hook.oms_import_orders(account=acct)
    stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
    host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    return host, acct


def test_full_lines_batched_into_tracking_notification(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, make_record("A", [make_line(1), make_line(2, "SKU-2", 2)]))
    results = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z001", {1: 1, 2: 2})
    )
    assert [(r.ci_lineitemid, r.outcome, r.tracking_number) for r in results] == [
        (1, LineOutcome.ACCEPTED, "1Z001"),
        (2, LineOutcome.ACCEPTED, "1Z001"),
    ]
    (items,) = host.cis["us"].calls_to("tracking_notification")
    assert [(i.ci_lineitemid, i.carrier, i.quantity) for i in items] == [
        (1, "ups", None),
        (2, "ups", None),
    ]
    line = host.plugin.ledger_for(acct).get_line(2)
    assert line.qty_shipped == 2


def test_dispatch_is_idempotent_by_shipment_id(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, make_record("A", [make_line(1)]))
    shipment = Shipment.single("S1", "UPS", "1Z001", {1: 1})
    host.pm.hook.oms_dispatch(account=acct, shipment=shipment)
    again = host.pm.hook.oms_dispatch(account=acct, shipment=shipment)
    assert [(r.outcome, r.reason) for r in again] == [
        (LineOutcome.ALREADY_DONE, "already accepted by CI")
    ]
    assert len(host.cis["us"].calls_to("tracking_notification")) == 1


def test_partial_shipment_uses_lineitem_tracking_notification(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, make_record("A", [make_line(1, quantity=3)]))
    shipment = Shipment(
        "S1",
        "UPS",
        (Parcel("1Z001", (ShipmentLine(1, 1),)), Parcel("1Z002", (ShipmentLine(1, 2),))),
    )
    results = host.pm.hook.oms_dispatch(account=acct, shipment=shipment)
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED, LineOutcome.ACCEPTED]
    (items,) = host.cis["us"].calls_to("lineitem_tracking_notification")
    assert [(i.fulfillment_lineitem_id, i.tracking, i.quantity) for i in items] == [
        ("1300000001", "1Z001", 1),
        ("1300000001", "1Z002", 2),
    ]
    assert host.cis["us"].calls_to("tracking_notification") == []


def test_partial_on_v2_falls_back_to_tracking_notification_with_quantity(tmp_path: Path) -> None:
    host = make_host()
    from dataclasses import replace

    acct = replace(host.account(tmp_path), api_version="v2")
    host.cis["us"].add(make_record("A", [make_line(1, quantity=3)]))
    batch = host.pm.hook.oms_import_orders(account=acct)
    host.pm.hook.oms_mark_exported(
        account=acct, stored=[StoredOrder("A", "H", batch.orders[0].ci_lineitemids)]
    )
    host.pm.hook.oms_dispatch(account=acct, shipment=Shipment.single("S1", "UPS", "1Z1", {1: 1}))
    (items,) = host.cis["us"].calls_to("tracking_notification")
    assert items[0].quantity == 1


def test_rejected_row_isolated_and_held_with_reason(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    host.cis["us"].refuse_tracking = {"1Z-BAD"}
    shipment = Shipment(
        "S1",
        "UPS",
        (Parcel("1Z-OK", (ShipmentLine(1, 1),)), Parcel("1Z-BAD", (ShipmentLine(2, 1),))),
    )
    results = {
        r.ci_lineitemid: r for r in host.pm.hook.oms_dispatch(account=acct, shipment=shipment)
    }
    assert results[1].outcome is LineOutcome.ACCEPTED
    assert results[2].outcome is LineOutcome.REJECTED
    assert "Invalid tracking number: 1Z-BAD" in results[2].reason
    # One batch call, then one single call per row to isolate.
    assert len(host.cis["us"].calls_to("tracking_notification")) == 3
    held = host.pm.hook.oms_held_lines(account=acct)
    assert [(h.ci_lineitemid, h.kind) for h in held] == [(2, HoldKind.REJECTED_BY_CI)]
    assert "1Z-BAD" in held[0].reason


def test_transport_error_retries_with_backoff_then_flush(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, make_record("A", [make_line(1)]))
    ci = host.cis["us"]
    ci.fail("tracking_notification", CITransportError("503"))
    results = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z1", {1: 1})
    )
    assert results[0].outcome is LineOutcome.QUEUED
    (row,) = host.plugin.ledger_for(acct).pending_outbox()
    assert row.state == "retry"
    assert row.next_attempt_at == host.clock.now + retry_delay(1)
    assert host.pm.hook.oms_flush_outbox(account=acct) == []  # not due yet
    host.clock.advance(seconds=61)
    flushed = host.pm.hook.oms_flush_outbox(account=acct)
    assert [(r.ci_lineitemid, r.outcome) for r in flushed] == [(1, LineOutcome.ACCEPTED)]
    assert ci.tracking == {(1, "1Z1"): 1}


def test_row_left_sending_by_crash_is_resent(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, make_record("A", [make_line(1)]))
    ci = host.cis["us"]
    ci.fail("tracking_notification", CIProtocolError("html page"))
    host.pm.hook.oms_dispatch(account=acct, shipment=Shipment.single("S1", "UPS", "1Z1", {1: 1}))
    ledger = host.plugin.ledger_for(acct)
    (row,) = ledger.pending_outbox()
    ledger.update_outbox(row.id, host.clock.now, state="sending")  # as a SIGKILL mid-call leaves it
    flushed = host.pm.hook.oms_flush_outbox(account=acct)
    assert [r.outcome for r in flushed] == [LineOutcome.ACCEPTED]
    assert ledger.outbox_rows(ids=[row.id])[0].attempts == 2


def test_unmapped_courier_held_then_released_by_flush(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, make_record("A", [make_line(1)]))
    results = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "Royal Mail", "RM1", {1: 1}, service="24")
    )
    assert results[0].outcome is LineOutcome.HELD
    assert "'Royal Mail'" in results[0].reason
    assert "couriers.csv" in results[0].reason
    assert host.pm.hook.oms_flush_outbox(account=acct) == []
    host.maps["us"] = fake_mappings(couriers=[("US", "Royal Mail", "", "usps")])
    flushed = host.pm.hook.oms_flush_outbox(account=acct)
    assert [(r.ci_lineitemid, r.outcome) for r in flushed] == [(1, LineOutcome.ACCEPTED)]
    (items,) = host.cis["us"].calls_to("tracking_notification")
    assert items[0].carrier == "usps"
    assert host.pm.hook.oms_held_lines(account=acct) == []


def test_retry_delay_grows_and_caps() -> None:
    assert retry_delay(1).total_seconds() == 60
    assert retry_delay(2).total_seconds() == 120
    assert retry_delay(50).total_seconds() == 3600


def test_row_handed_to_manual_upload_is_never_sent_by_the_api(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    host, acct = _ready(tmp_path, make_record("A", [make_line(1)]))
    shipment = Shipment.single("S1", "UPS", "1Z001", {1: 1})
    host.cis["us"].fail("tracking_notification", CITransportError("503"))
    [queued] = host.pm.hook.oms_dispatch(account=acct, shipment=shipment)
    assert queued.outcome is LineOutcome.QUEUED
    ledger = host.plugin.ledger_for(acct)
    [row] = ledger.outbox_rows()
    ledger.update_outbox(row.id, datetime.now(UTC), state="manual", reason="written to t.csv")
    calls_before = len(host.cis["us"].calls_to("tracking_notification"))
    assert host.pm.hook.oms_flush_outbox(account=acct) == []
    [again] = host.pm.hook.oms_dispatch(account=acct, shipment=shipment)
    assert again.outcome is LineOutcome.ALREADY_DONE
    assert "manual tracking upload" in again.reason
    assert len(host.cis["us"].calls_to("tracking_notification")) == calls_before


def test_one_shipment_costs_two_ledger_commits_before_and_after_the_call(tmp_path: Path) -> None:
    host, acct = _ready(tmp_path, make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    ledger = host.plugin.ledger_for(acct)
    statements: list[str] = []
    ledger._conn.set_trace_callback(statements.append)
    results = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z001", {1: 1, 2: 1})
    )
    ledger._conn.set_trace_callback(None)
    assert {r.outcome for r in results} == {LineOutcome.ACCEPTED}
    # Rows are inserted as 'sending' (committed before the call), then 'accepted'.
    assert sum(1 for s in statements if s.strip().upper() == "COMMIT") == 2
    (row_1, row_2) = ledger.outbox_rows(shipment_id="S1")
    assert (row_1.state, row_1.attempts) == ("accepted", 1)
    assert (row_2.state, row_2.attempts) == ("accepted", 1)


def test_only_the_acceptance_after_the_call_skips_fsync(tmp_path: Path) -> None:
    """The outbox commit before the tracking call is durable (synchronous FULL); the
    acceptance after it is not fsync'd (losing it leaves the rows 'sending', as a kill after
    the call does) and the connection is back at FULL afterwards."""
    host, acct = _ready(tmp_path, make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    ledger = host.plugin.ledger_for(acct)
    ci = host.cis["us"]
    events: list[str] = []
    send = ci.tracking_notification

    def traced(items: Any) -> None:
        events.append("CALL")
        send(items)

    ci.tracking_notification = traced  # type: ignore[method-assign]
    ledger._conn.set_trace_callback(lambda sql: events.append(" ".join(sql.split())))
    results = host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z001", {1: 1, 2: 1})
    )
    ledger._conn.set_trace_callback(None)
    assert {r.outcome for r in results} == {LineOutcome.ACCEPTED}
    call = events.index("CALL")
    before, after = events[:call], events[call + 1 :]
    # Durable: no level change around the outbox commit that precedes the call.
    assert "COMMIT" in before
    assert not any("synchronous" in s for s in before)
    relaxed = after.index("PRAGMA synchronous=NORMAL")
    accept = next(
        i for i, s in enumerate(after) if s.startswith("UPDATE outbox SET state = 'accepted'")
    )
    commit = after.index("COMMIT", accept)
    assert relaxed < after.index("BEGIN IMMEDIATE", relaxed) < accept < commit
    assert after[commit + 1] == "PRAGMA synchronous=FULL"
    assert ledger._conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_a_lost_acceptance_is_the_state_a_kill_after_the_call_leaves(tmp_path: Path) -> None:
    """What the disk holds if the relaxed acceptance commit is lost: the rows 'sending' with
    this process's lease, nothing shipped in the ledger, as crash point ``tracking_sent``
    leaves it; the next flush re-sends the same items (a no-op for CI) and records them."""
    host, acct = _ready(tmp_path, make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    ledger = host.plugin.ledger_for(acct)
    snapshot = tmp_path / "before-acceptance.sqlite3"
    record = ledger.record_tracking_accepted

    def lose(rows: Any, now: Any) -> list[int]:
        # The disk's last durable state: everything committed before this (relaxed) commit.
        target = sqlite3.connect(snapshot)
        ledger._conn.backup(target)
        target.close()
        recorded: list[int] = record(rows, now)
        return recorded

    ledger.record_tracking_accepted = lose
    host.pm.hook.oms_dispatch(
        account=acct, shipment=Shipment.single("S1", "UPS", "1Z001", {1: 1, 2: 1})
    )
    ledger.record_tracking_accepted = record
    lost = sqlite3.connect(snapshot)
    rows = lost.execute("SELECT state, attempts, lease_owner FROM outbox ORDER BY id").fetchall()
    shipped = lost.execute("SELECT SUM(qty_shipped) FROM lines").fetchone()[0]
    lost.close()
    assert rows == [("sending", 1, process_owner())] * 2
    assert shipped == 0
    # Back to that state in the live ledger (what a restart after the power loss reads).
    for row in ledger.outbox_rows(shipment_id="S1"):
        ledger.update_outbox(row.id, host.clock.now, state="sending")
    with ledger.transaction():
        ledger._conn.execute("UPDATE lines SET qty_shipped = 0")
    ledger.release_outbox(r.id for r in ledger.outbox_rows(shipment_id="S1"))
    flushed = host.pm.hook.oms_flush_outbox(account=acct)
    assert [r.outcome for r in flushed] == [LineOutcome.ACCEPTED] * 2
    first, again = host.cis["us"].calls_to("tracking_notification")
    assert [(i.ci_lineitemid, i.tracking) for i in again] == [
        (i.ci_lineitemid, i.tracking) for i in first
    ]
    assert [ledger.get_line(n).qty_shipped for n in (1, 2)] == [1, 1]
