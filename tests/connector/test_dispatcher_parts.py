"""``oms_dispatch_many`` in parts (issue 11, waves): with calls in flight, a long call is
pre-flighted and committed part by part, and each part's full batches go out while the next
part is checked. Every row is committed before its call; the results and the calls are those
of the whole call in one part; a failure in a later part frees the earlier parts' rows for
the next flush and leaves no thread behind."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connector.dispatcher import _parts
from connector.errors import LedgerError
from connector.models import LineOutcome, Parcel, Shipment, ShipmentLine
from connector.preflight import Preflight
from tests.connector.fakes import Host, make_host, make_line, make_record
from tests.connector.test_importer_overlap import SlowCI, _store_all


def _ups(n: int) -> str:
    return f"1Z{n:016d}"


def _rig(tmp_path: Path, ci: SlowCI, **options: Any) -> tuple[Host, Any]:
    host = make_host()
    host.cis["us"] = ci
    acct = host.account(tmp_path, watch_cancellations=False, **options)
    return host, acct


def _imported(tmp_path: Path, lines: int, *, delay: float) -> tuple[SlowCI, Host, Any]:
    """``lines`` one-line orders imported and acknowledged; tracking batches of two, three
    calls in flight."""
    ci = SlowCI(delay=delay)
    host, acct = _rig(tmp_path, ci, tracking_batch_size=2, ack_concurrency=3)
    for lid in range(1, lines + 1):
        ci.add(make_record(f"O{lid:04d}", [make_line(lid)]))
    _store_all(host, acct)
    return ci, host, acct


def _our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ci-tracking")]


def test_each_part_is_committed_before_its_call_and_calls_overlap_later_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ci, host, acct = _imported(tmp_path, 12, delay=0.03)
    ledger_file = Path(host.plugin.ledger_for(acct).path)
    events: list[str] = []
    unseen: list[tuple[int, str]] = []
    check_many = Preflight.check_many

    def checking(self: Preflight, items: Any) -> Any:
        events.append("check")
        if events.count("check") == 4:
            # The last part: an earlier part's call is made while it is pre-flighted (without
            # overlap no call would start before every part was checked).
            deadline = time.monotonic() + 5
            while "call" not in events and time.monotonic() < deadline:
                time.sleep(0.005)
            events.append("last part checked")
        return check_many(self, items)

    notify = SlowCI.tracking_notification

    def committed_first(self: SlowCI, items: Any) -> None:
        # Seen from another connection: only what was committed.
        with sqlite3.connect(ledger_file) as other:
            for item in items:
                row = other.execute(
                    "SELECT state FROM outbox WHERE ci_lineitemid = ? AND tracking = ?",
                    (item.ci_lineitemid, item.tracking),
                ).fetchone()
                if row is None or row[0] != "sending":
                    unseen.append((item.ci_lineitemid, item.tracking))
        events.append("call")
        notify(self, items)

    monkeypatch.setattr(Preflight, "check_many", checking)
    monkeypatch.setattr(SlowCI, "tracking_notification", committed_first)
    ledger = host.plugin.ledger_for(acct)
    record = type(ledger).record_tracking_accepted
    recorded: list[list[int]] = []

    def recording(self: Any, rows: Any, now: Any) -> Any:
        recorded.append(sorted(lid for _, lid, _ in rows))
        return record(self, rows, now)

    monkeypatch.setattr(type(ledger), "record_tracking_accepted", recording)
    shipments = [Shipment.single(f"S{lid}", "UPS", _ups(lid), {lid: 1}) for lid in range(1, 13)]
    results = host.pm.hook.oms_dispatch_many(account=acct, shipments=shipments)

    assert [(r.ci_lineitemid, r.outcome) for r in results] == [
        (lid, LineOutcome.ACCEPTED) for lid in range(1, 13)
    ]
    assert unseen == []  # every item of every call was committed 'sending' before it
    assert events.count("check") == 4  # parts of 2, 6, 2 and 2 items (calls: 1, 3, 1, 1)
    assert events.index("call") < events.index("last part checked")  # overlap
    assert len(ci.calls_to("tracking_notification")) == 6
    assert {lid for lid, _ in ci.tracking} == set(range(1, 13))
    # Acceptances are recorded while later answers are awaited, each row once.
    assert len(recorded) > 1
    assert sorted(lid for rows in recorded for lid in rows) == list(range(1, 13))
    assert {r.state for r in ledger.outbox_rows()} == {"accepted"}
    assert _our_threads() == []


def _hazards(ci: SlowCI) -> list[Shipment]:
    """A wave whose checks across shipments matter: over-shipping, one number for two
    addresses, one shipment id twice, seven numbers for one order, an unknown line."""
    ci.add(make_record("O-QTY", [make_line(1, quantity=2)]))
    ci.add(make_record("O-A", [make_line(2)], address1="1 Main St"))
    ci.add(make_record("O-B", [make_line(3)], address1="9 Other Rd"))
    ci.add(make_record("O-SEVEN", [make_line(lid) for lid in range(10, 17)]))
    for lid in range(20, 32):
        ci.add(make_record(f"O{lid}", [make_line(lid)]))
    seven = [Shipment.single(f"P{lid}", "UPS", _ups(lid), {lid: 1}) for lid in range(10, 17)]
    filler = [Shipment.single(f"F{lid}", "UPS", _ups(lid), {lid: 1}) for lid in range(20, 32)]
    return [
        Shipment.single("Q1", "UPS", _ups(1), {1: 2}),
        filler[0],
        filler[1],
        seven[0],
        Shipment.single("Q2", "UPS", _ups(101), {1: 1}),  # over-ships line 1
        filler[2],
        Shipment.single("A", "UPS", _ups(200), {2: 1}),
        filler[3],
        seven[1],
        filler[4],
        Shipment.single("B", "UPS", _ups(200), {3: 1}),  # the same number, another address
        filler[5],
        seven[2],
        filler[6],
        Shipment.single("F20", "UPS", _ups(20), {20: 1}),  # the same shipment again
        seven[3],
        filler[7],
        Shipment.single("F21", "UPS", _ups(999), {21: 1}),  # the same id, other contents
        seven[4],
        filler[8],
        seven[5],
        filler[9],
        Shipment.single("X", "UPS", _ups(300), {9999: 1}),  # a line CI never sent
        seven[6],  # the seventh number of order O-SEVEN
        filler[10],
        Shipment(
            "M",
            "UPS",
            (
                Parcel(_ups(400), (ShipmentLine(30, 1),)),
                Parcel(_ups(401), (ShipmentLine(31, 1),)),
            ),
        ),
    ]


def _dispatch_hazards(tmp_path: Path, concurrency: int) -> tuple[list[Any], SlowCI, int]:
    ci = SlowCI(delay=0.005)
    host, acct = _rig(tmp_path, ci, tracking_batch_size=2, ack_concurrency=concurrency)
    shipments = _hazards(ci)
    _store_all(host, acct)
    parts: list[int] = []
    check_many = Preflight.check_many

    def counting(self: Preflight, items: Any) -> Any:
        parts.append(len(items))
        return check_many(self, items)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Preflight, "check_many", counting)
        results = host.pm.hook.oms_dispatch_many(account=acct, shipments=shipments)
    return results, ci, len(parts)


def test_results_and_calls_are_those_of_the_whole_call_in_one_part(tmp_path: Path) -> None:
    whole, ci_whole, parts_whole = _dispatch_hazards(tmp_path / "one", 1)
    split, ci_split, parts_split = _dispatch_hazards(tmp_path / "parts", 2)

    assert parts_whole == 1
    # Really cut: the lines and numbers shared above hold the first 18 shipments together,
    # the rest (and the seventh number of O-SEVEN) come in later parts.
    assert parts_split >= 3
    assert split == whole
    # The hazards did what they do in one part (not only "the same in both").
    outcome = {(r.shipment_id, r.ci_lineitemid): r.outcome for r in split}
    assert outcome[("Q2", 1)] is LineOutcome.HELD
    assert outcome[("A", 2)] is outcome[("B", 3)] is LineOutcome.HELD
    assert outcome[("P16", 16)] is LineOutcome.HELD
    assert outcome[("X", 9999)] is LineOutcome.HELD
    assert [r.outcome for r in split if r.shipment_id == "F20"] == [
        LineOutcome.ACCEPTED,
        LineOutcome.ALREADY_DONE,
    ]
    assert [r.outcome for r in split if r.shipment_id == "F21"][-1] is LineOutcome.REJECTED

    def items(ci: SlowCI) -> Counter[tuple[int, str]]:
        return Counter(
            (it.ci_lineitemid, it.tracking)
            for call in ci.calls_to("tracking_notification")
            for it in call
        )

    assert items(ci_split) == items(ci_whole)
    assert sorted(len(c) for c in ci_split.calls_to("tracking_notification")) == sorted(
        len(c) for c in ci_whole.calls_to("tracking_notification")
    )


def _shipment(sid: str, *parcels: tuple[str, dict[int, int]]) -> Shipment:
    return Shipment(
        sid,
        "UPS",
        tuple(
            Parcel(number, tuple(ShipmentLine(lid, q) for lid, q in lines.items()))
            for number, lines in parcels
        ),
    )


def test_parts_never_split_a_line_or_a_tracking_number() -> None:
    shipments = [
        _shipment("a", ("T1", {1: 1})),
        _shipment("b", ("T2", {2: 1})),
        _shipment("c", ("T3", {3: 1})),
        _shipment("d", ("T1", {4: 1})),  # T1 again: a..d stay together
        _shipment("e", ("T5", {5: 1})),
        _shipment("f", ("T6", {6: 1}), ("T7", {7: 1})),
        _shipment("g", ("T8", {6: 1})),  # line 6 again: f, g together
        _shipment("h", (" T9 ", {9: 1})),
        _shipment("i", ("T9", {10: 1})),  # the same number once stripped
        _shipment("j", ("T11", {11: 1})),
    ]
    parts = _parts(shipments, 1, 1)
    assert [[s.shipment_id for s in p] for p in parts] == [
        ["a", "b", "c", "d"],
        ["e"],
        ["f", "g"],
        ["h", "i"],
        ["j"],
    ]
    assert [[s.shipment_id for s in p] for p in _parts(shipments, 3, 3)] == [
        ["a", "b", "c", "d"],
        ["e", "f", "g"],
        ["h", "i", "j"],
    ]
    # Small, large, then small again at the end (11 items: 4 | 5 | 2 left, under 5 + 1).
    assert [[s.shipment_id for s in p] for p in _parts(shipments, 1, 5)] == [
        ["a", "b", "c", "d"],
        ["e", "f", "g", "h", "i"],
        ["j"],
    ]
    plain = [_shipment(f"s{n}", (f"N{n}", {n: 1})) for n in range(12)]
    assert [len(p) for p in _parts(plain, 1, 3)] == [1, 3, 3, 3, 1, 1]
    assert _parts(shipments, 100, 100) == [shipments]
    assert _parts([], 2, 2) == []


def test_a_failure_in_a_later_part_frees_the_earlier_parts_for_the_next_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ci, host, acct = _imported(tmp_path, 10, delay=0.02)
    ledger = host.plugin.ledger_for(acct)
    insert = type(ledger).insert_outbox_claimed
    seen = {"parts": 0}

    def failing(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen["parts"] += 1
        if seen["parts"] == 2:
            raise LedgerError("ledger: disk I/O error")
        return insert(self, *args, **kwargs)

    monkeypatch.setattr(type(ledger), "insert_outbox_claimed", failing)
    shipments = [Shipment.single(f"S{lid}", "UPS", _ups(lid), {lid: 1}) for lid in range(1, 11)]
    with pytest.raises(LedgerError, match="disk I/O error"):
        host.pm.hook.oms_dispatch_many(account=acct, shipments=shipments)
    assert _our_threads() == []
    rows = ledger.outbox_rows()
    # The first part was stored (and may have gone out); the second and later were not.
    assert sorted(r.ci_lineitemid for r in rows) == [1, 2]
    assert ledger.outbox_leases() == {}  # no claim left: the next flush may send them
    monkeypatch.undo()

    host.clock.advance(seconds=1)
    host.pm.hook.oms_flush_outbox(account=acct)
    again = host.pm.hook.oms_dispatch_many(account=acct, shipments=shipments)
    assert [r.outcome for r in again[:2]] == [LineOutcome.ALREADY_DONE] * 2
    assert [r.outcome for r in again[2:]] == [LineOutcome.ACCEPTED] * 8
    assert sorted(ci.tracking) == sorted((lid, _ups(lid)) for lid in range(1, 11))
    assert {r.state for r in ledger.outbox_rows()} == {"accepted"}


def test_a_wave_runs_with_fewer_young_collections_and_puts_the_threshold_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wave of hundreds of shipments churns like an import page: at CPython's default
    threshold it ran ~16 young collections a wave of 500 and, through their survivors, a full
    collection every few waves (see connector.runtime.collector)."""
    import gc

    from connector.runtime.collector import GEN0_THRESHOLD

    _ci, host, acct = _imported(tmp_path, 4, delay=0.0)
    seen: list[int] = []
    check_many = Preflight.check_many

    def checking(self: Preflight, items: Any) -> Any:
        seen.append(gc.get_threshold()[0])
        return check_many(self, items)

    monkeypatch.setattr(Preflight, "check_many", checking)
    before = gc.get_threshold()
    shipments = [Shipment.single(f"S{lid}", "UPS", _ups(lid), {lid: 1}) for lid in range(1, 5)]
    results = host.pm.hook.oms_dispatch_many(account=acct, shipments=shipments)

    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED] * 4
    raised = GEN0_THRESHOLD if 0 < before[0] < GEN0_THRESHOLD else before[0]
    assert seen
    assert set(seen) == {raised}
    assert gc.get_threshold() == before
