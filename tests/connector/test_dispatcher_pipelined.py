"""Pipelined ``dispatch_many``: with a client that takes calls from several threads, the
packed calls of rows already committed fly while later shipments are checked and stored.
Hosts must see exactly what one pass gives: the same results, the same calls, the same
ledger; and no row goes out before it is committed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import connector.dispatcher as dispatcher_module
from connector.dispatcher import _segments
from connector.models import Parcel, Shipment, ShipmentLine, StoredOrder
from connector.preflight import Candidate
from tests.connector.fakes import Host, make_host, make_line, make_record


def _records() -> list[dict[str, Any]]:
    records = [
        make_record("A", [make_line(1), make_line(2)]),  # two shipments of one order
        make_record("B", [make_line(3)], address1="1 Main St"),
        make_record("C", [make_line(4)], address1="2 Side St"),  # shares B's number
        make_record("D", [make_line(5, quantity=3)]),  # partial, then over-shipped
        make_record("E", [make_line(lid) for lid in range(10, 17)]),  # 7 numbers, limit 6
    ]
    records += [make_record(f"F{n}", [make_line(100 + n, quantity=2)]) for n in range(9)]
    return records


def _wave() -> list[Shipment]:
    wave = [
        Shipment.single("S-A1", "UPS", "1ZA1", {1: 1}),
        Shipment.single("S-B", "UPS", "1ZSHARED", {3: 1}),
        Shipment.single("S-A2", "UPS", "1ZA2", {2: 1}),
        Shipment.single("S-C", "UPS", "1ZSHARED", {4: 1}),
        Shipment("S-D1", "UPS", (Parcel("1ZD1", (ShipmentLine(5, 1),)),)),
        Shipment.single("S-UNKNOWN", "UPS", "1ZX", {999: 1}),
        Shipment.single("S-A1", "UPS", "1ZA1", {1: 1}),  # the same shipment again
        Shipment("S-D2", "UPS", (Parcel("1ZD2", (ShipmentLine(5, 3),)),)),
        Shipment.single("S-NOCOURIER", "Pigeon", "1ZP", {100: 2}),
    ]
    wave += [Shipment.single(f"S-E{lid}", "UPS", f"1ZE{lid}", {lid: 1}) for lid in range(10, 17)]
    wave += [Shipment.single(f"S-F{n}", "UPS", f"1ZF{n}", {100 + n: 2}) for n in range(1, 9)]
    wave.append(Shipment.single("S-REFUSED", "UPS", "1ZREFUSED", {100: 1}))
    return wave


def _run(tmp_path: Path, *, concurrent: bool) -> tuple[Host, Any, list[Any]]:
    host = make_host()
    acct = host.account(tmp_path, tracking_batch_size=2, ack_concurrency=3)
    ci = host.cis["us"]
    ci.concurrent_calls = concurrent  # type: ignore[attr-defined]
    ci.refuse_tracking.add("1ZREFUSED")
    for record in _records():
        ci.add(record)
    batch = host.pm.hook.oms_import_orders(account=acct)
    stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
    host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    results = host.pm.hook.oms_dispatch_many(account=acct, shipments=_wave())
    return host, acct, results


def _ledger_view(host: Host, acct: Any) -> list[tuple[Any, ...]]:
    ledger = host.plugin.ledger_for(acct)
    rows = [
        (r.shipment_id, r.ci_lineitemid, r.tracking, r.quantity, r.state, r.hold_kind, r.reason)
        for r in ledger.outbox_rows()
    ]
    shipped = [(ln.ci_lineitemid, ln.qty_shipped) for ln in ledger.lines()]
    return sorted(rows, key=repr) + sorted(shipped)


def test_a_pipelined_wave_reports_sends_and_records_what_one_pass_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuts: list[int] = []
    real = dispatcher_module._segments

    def spy(*args: Any) -> list[tuple[int, int]]:
        out = real(*args)
        cuts.append(len(out))
        return out

    monkeypatch.setattr(dispatcher_module, "_segments", spy)
    one_host, one_acct, one_pass = _run(tmp_path / "one", concurrent=False)
    assert cuts == []  # a client called from one thread: one pass, as before
    host, acct, pipelined = _run(tmp_path / "piped", concurrent=True)
    assert cuts
    assert cuts[0] > 2

    def view(results: list[Any]) -> list[tuple[Any, ...]]:
        return [
            (r.shipment_id, r.ci_lineitemid, r.outcome, r.reason, r.tracking_number, r.retry_at)
            for r in results
        ]

    assert view(pipelined) == view(one_pass)
    outcomes = {r.shipment_id: r.outcome.value for r in one_pass}
    # The wave exercises every cross-shipment check (and CI refusing one number).
    assert outcomes["S-B"] == outcomes["S-C"] == "held"
    assert outcomes["S-D2"] == "held"
    assert outcomes["S-D1"] == "accepted"
    assert outcomes["S-E16"] == "held"
    assert outcomes["S-E15"] == "accepted"
    assert outcomes["S-REFUSED"] == "rejected"
    assert outcomes["S-UNKNOWN"] == "held"

    def calls(h: Host) -> list[Any]:
        ci = h.cis["us"]
        return sorted((name, repr(payload)) for name, payload in ci.calls if "tracking" in name)

    # The same packed calls (their order may differ: several are in flight at once).
    assert calls(host) == calls(one_host)
    assert _ledger_view(host, acct) == _ledger_view(one_host, one_acct)


def test_no_row_is_sent_before_its_segment_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every tracking call carries rows the ledger already holds, committed, as sending."""
    seen: list[set[str]] = []
    host = make_host()
    acct = host.account(tmp_path, tracking_batch_size=2, ack_concurrency=3)
    ci = host.cis["us"]
    ci.concurrent_calls = True  # type: ignore[attr-defined]
    for record in _records():
        ci.add(record)
    batch = host.pm.hook.oms_import_orders(account=acct)
    stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
    host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    path = host.plugin.ledger_for(acct).path
    original = ci.tracking_notification

    def check_committed(items: Any) -> None:
        import sqlite3

        # A separate connection sees committed data only.
        with sqlite3.connect(path) as other:
            rows = other.execute("SELECT tracking, state FROM outbox").fetchall()
        committed = {t for t, state in rows if state in ("sending", "accepted")}
        seen.append({it.tracking for it in items} - committed)
        original(items)

    monkeypatch.setattr(ci, "tracking_notification", check_committed)
    wave = [Shipment.single(f"S-F{n}", "UPS", f"1ZF{n}", {100 + n: 2}) for n in range(9)]
    results = host.pm.hook.oms_dispatch_many(account=acct, shipments=wave)
    assert {r.outcome.value for r in results} == {"accepted"}
    assert len(seen) == 5
    assert all(not missing for missing in seen)


def test_segments_never_cut_through_a_line_a_number_or_an_order() -> None:
    class Line:
        def __init__(self, orderid: str) -> None:
            self.orderid = orderid

    owners: Any = [object() for _ in range(6)]
    checks = [
        ("UPS", "", Candidate(1, "T1", 1)),
        ("UPS", "", Candidate(2, "T2", 1)),  # order O1 with line 1
        ("UPS", "", Candidate(3, "T3", 1)),
        ("UPS", "", Candidate(4, "T3", 1)),  # shares T3
        ("UPS", "", Candidate(5, "T5", 1)),
        ("UPS", "", Candidate(6, "T6", 1)),
    ]
    lines: Any = {1: Line("O1"), 2: Line("O1"), 3: Line("O3"), 4: Line("O4")}
    lines.update({5: Line("O5"), 6: Line("O6")})
    assert _segments(checks, owners, lines, 1) == [(0, 2), (2, 4), (4, 5), (5, 6)]
    assert _segments(checks, owners, lines, 3) == [(0, 4), (4, 6)]
    # Two candidates of one shipment (lines 5 and 6 under one tracking each) stay together.
    same: Any = [*owners[:4], owners[4], owners[4]]
    assert _segments(checks, same, lines, 1) == [(0, 2), (2, 4), (4, 6)]


def test_a_failure_mid_wave_frees_the_rows_already_stored_for_the_next_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ledger error while a later segment is checked: the calls already in flight end, the
    rows stored before are released (no lease) and the error reaches the host; the next
    flush sends what is left and nothing is lost."""
    from connector.errors import LedgerError
    from connector.preflight import Preflight

    host = make_host()
    acct = host.account(tmp_path, tracking_batch_size=2, ack_concurrency=3)
    ci = host.cis["us"]
    ci.concurrent_calls = True  # type: ignore[attr-defined]
    for record in _records():
        ci.add(record)
    batch = host.pm.hook.oms_import_orders(account=acct)
    stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
    host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    real = Preflight.check_many
    seen: list[int] = []

    def failing(self: Preflight, *args: Any, **kwargs: Any) -> Any:
        seen.append(1)
        if len(seen) == 3:
            raise LedgerError("disk I/O error")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Preflight, "check_many", failing)
    wave = [Shipment.single(f"S-F{n}", "UPS", f"1ZF{n}", {100 + n: 2}) for n in range(9)]
    with pytest.raises(LedgerError):
        host.pm.hook.oms_dispatch_many(account=acct, shipments=wave)
    ledger = host.plugin.ledger_for(acct)
    rows = ledger.outbox_rows()
    assert [r.shipment_id for r in rows] == ["S-F0", "S-F1", "S-F2", "S-F3"]
    assert {r.state for r in rows} == {"sending"}
    assert ledger.outbox_leases() == {}
    monkeypatch.setattr(Preflight, "check_many", real)
    flushed = host.pm.hook.oms_flush_outbox(account=acct)
    assert {r.outcome.value for r in flushed} == {"accepted"}
    assert len(flushed) == 4
    again = host.pm.hook.oms_dispatch_many(account=acct, shipments=wave)
    assert [r.outcome.value for r in again] == ["already_done"] * 4 + ["accepted"] * 5
