"""Schema v8: raw CI records kept once per record in ``records``, slim ``lines`` rows, and the
migration of ledgers that kept the record inline (runs on both backends)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.ledger import Ledger, ledger_path, open_ledger_file, record_key
from connector.ledger.migrations import MIGRATIONS

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _record(orderid: str, *lids: int) -> dict[str, Any]:
    return {
        "orderid": orderid,
        "date": "01/01/2024 09:15AM UTC",
        "customer": {"name": "Giulia Esempio", "address1": "Via 14", "phone": "3330001111"},
        "line_items": [
            {"ci_lineitemid": lid, "unit_price": 9.5, "gift_message": "for Anna"} for lid in lids
        ],
    }


def _raw(ledger: Ledger, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in ledger._query(sql, params)]


def _stage(ledger: Ledger, lid: int, record: dict[str, Any], **fields: Any) -> None:
    ledger.stage_line(
        ci_lineitemid=lid, orderid=record["orderid"], now=T0, quantity=2, record=record
    )
    if fields:
        ledger.update_line(lid, T0, **fields)


def test_lines_of_one_record_share_one_stored_copy(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    record = _record("A", 1, 2)
    _stage(ledger, 1, record)
    _stage(ledger, 2, record)
    _stage(ledger, 3, _record("B", 3))
    assert _raw(ledger, "SELECT COUNT(*) FROM records") == [(2,)]
    # The lines carry the key, never the text.
    assert _raw(ledger, "SELECT COUNT(*) FROM lines WHERE record IS NOT NULL") == [(0,)]
    keys = _raw(ledger, "SELECT record_key FROM lines ORDER BY ci_lineitemid")
    assert keys[0] == keys[1] != keys[2]
    assert keys[0][0] == record_key(json.dumps(record, sort_keys=True, default=str), 1)
    assert keys[2][0].startswith("3:")  # anchored on the record's first line id
    lines = ledger.get_lines([1, 2, 3])
    assert lines[1].record == record
    assert lines[2].record == record
    assert lines[3].record == _record("B", 3)
    assert [ln.record for ln in ledger.lines()] == [record, record, _record("B", 3)]
    # Reads for bindings, acks and cancellations do not touch the record.
    assert ledger.get_lines([1], light=True)[1].record is None


def test_update_line_record_goes_to_the_side_table(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    _stage(ledger, 1, _record("A", 1))
    newer = {**_record("A", 1), "shipping_method": "express"}
    ledger.update_line(1, T0, record=newer, quantity=3)
    row = ledger.get_line(1)
    assert row is not None
    assert row.record == newer
    assert row.quantity == 3


def test_prune_keeps_a_stripped_copy_and_drops_raw_records_no_line_names(
    tmp_path: Path,
) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    shared = _record("A", 1, 2)
    _stage(ledger, 1, shared, state="acked", qty_shipped=2)  # finished
    _stage(ledger, 2, shared, state="acked", qty_shipped=1)  # same record, still open
    _stage(ledger, 3, _record("C", 3), state="acked", qty_shipped=2)  # finished, alone
    _stage(ledger, 4, _record("D", 4))  # staged; its payload changes below
    ledger.update_line(4, T0, record=_record("D", 4, 5))  # the old copy is named by nobody
    assert _raw(ledger, "SELECT COUNT(*) FROM records") == [(4,)]
    later = T0 + timedelta(days=100)
    assert ledger.prune(later - timedelta(days=90), later) == 2
    lines = ledger.get_lines([1, 2, 3, 4])
    for lid in (1, 3):
        record = lines[lid].record
        assert record is not None
        assert "Giulia" not in json.dumps(record)
        assert "for Anna" not in json.dumps(record)
        assert record["line_items"][0]["unit_price"] == 9.5  # the threshold guard reads it
    assert lines[2].record == shared  # its line is open: the customer is still needed
    assert lines[4].record == _record("D", 4, 5)
    texts = [json.loads(t) for (t,) in _raw(ledger, "SELECT record FROM records")]
    raw_copies = [t for t in texts if "customer" in t]
    assert sorted(t["orderid"] for t in raw_copies) == ["A", "D"]  # C's raw copy went
    assert len(texts) == 4  # A raw, A stripped, C stripped, D's latest payload
    pruned = _raw(ledger, "SELECT COUNT(*) FROM records WHERE pruned_at IS NOT NULL")
    assert pruned == [(2,)]


def _v7_ledger(tmp_path: Path) -> Path:
    """A ledger at schema v7, records inline: a parsed line, a legacy line without parsed
    form (staged before v3), a pruned line and a line without record."""
    path = ledger_path(tmp_path, "us")
    old = open_ledger_file(path, "us", MIGRATIONS[:7])
    assert old.schema_version() == 7
    shared = _record("A", 1, 2)
    old.stage_line(ci_lineitemid=1, orderid="A", now=T0, quantity=2, record=shared)
    old.update_line(1, T0, parsed='["x"]', state="delivered")
    old.stage_line(ci_lineitemid=2, orderid="A", now=T0, quantity=1, record=shared)
    old.stage_line(ci_lineitemid=3, orderid="C", now=T0, quantity=1, record=_record("C", 3))
    old.update_line(3, T0, state="acked", qty_shipped=1)
    old.stage_line(ci_lineitemid=4, orderid="D", now=T0, quantity=1)
    later = T0 + timedelta(days=100)
    assert old.prune(later - timedelta(days=90), later) == 1
    assert _raw(old, "SELECT COUNT(*) FROM lines WHERE record IS NOT NULL") == [(3,)]
    old.close()
    return path


def test_v8_migration_moves_inline_records_without_loss(tmp_path: Path) -> None:
    path = _v7_ledger(tmp_path)
    before = open_ledger_file(path, "us", MIGRATIONS[:7])
    expected = before.get_lines([1, 2, 3, 4])
    before.close()

    ledger = open_ledger_file(path, "us", MIGRATIONS[:8])
    assert ledger.schema_version() == 8
    assert ledger.get_lines([1, 2, 3, 4]) == expected  # every column, the record included
    assert _raw(ledger, "SELECT COUNT(*) FROM lines WHERE record IS NOT NULL") == [(0,)]
    assert _raw(ledger, "SELECT key FROM records ORDER BY key") == [
        ("line:1",),
        ("line:2",),
        ("line:3",),
    ]
    assert _raw(ledger, "SELECT pruned_at IS NOT NULL FROM records WHERE key = 'line:3'") in (
        [(1,)],
        [(True,)],
    )
    assert expected[3].record is not None
    assert "customer" not in expected[3].record
    # The legacy line (no parsed form) still brings its raw record to evaluation.
    rows = {r.ci_lineitemid: r for r in ledger.eval_lines_of_orders(["A"])["A"]}
    assert rows[2].parsed is None
    assert rows[2].record == _record("A", 1, 2)
    assert rows[1].parsed == ["x"]
    assert rows[1].record is None  # parsed rows never read the record back
    # New writes go to the side table; the moved copies are shared by nobody else.
    ledger.stage_line(ci_lineitemid=5, orderid="A", now=T0, quantity=1, record=_record("A", 1, 2))
    assert ledger.get_lines([5])[5].record == _record("A", 1, 2)
    assert _raw(ledger, "SELECT COUNT(*) FROM records") == [(4,)]


@pytest.mark.sqlite_only
def test_unreported_cancellations_use_their_index(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    plan = " ".join(
        str(tuple(r))
        for r in ledger._query(
            "EXPLAIN QUERY PLAN SELECT ci_lineitemid FROM lines WHERE cancel_reported = 0"
            " AND ci_status IN ('cancelled', 'canceled')"
            " AND state IN ('delivered', 'stored', 'acked') ORDER BY ci_lineitemid"
        )
    )
    assert "lines_cancel_open" in plan, plan
    _stage(ledger, 1, _record("A", 1), state="stored", ci_status="cancelled")
    _stage(ledger, 2, _record("A", 2), state="stored")
    (row,) = ledger.unreported_cancellations()
    assert row.ci_lineitemid == 1
    assert row.record is None  # a light row: the cancellation needs ids only


def test_a_page_is_staged_in_multi_row_inserts_of_any_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connector.ledger.sqlite as ledger_module

    monkeypatch.setattr(ledger_module, "_VALUES_ROWS", 7)  # 20 lines: chunks of 7, 7 and 6
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    stamp = T0.isoformat()
    records = []
    inserts = []
    for lid in range(1, 21):
        text = json.dumps(_record(f"O{lid}", lid), sort_keys=True)
        key = record_key(text, lid)
        records.append((key, text))
        line = (lid, "us", f"O{lid}", None, key, '["x"]', stamp, None, 1, "SKU", None)
        inserts.append((*line, "staged", None, "", None, "open", stamp, stamp, 1))
    ledger.stage_rows(records=records, inserts=inserts)
    ledger.stage_rows(records=records[:3], inserts=inserts[:3])  # known: ignored
    lines = ledger.get_lines(range(1, 21))
    assert sorted(lines) == list(range(1, 21))
    assert all(line.record == _record(f"O{lid}", lid) for lid, line in lines.items())
    assert _raw(ledger, "SELECT COUNT(*) FROM records") == [(20,)]
    assert _raw(ledger, "SELECT COUNT(*) FROM lines WHERE pending_eval = 1") == [(20,)]
