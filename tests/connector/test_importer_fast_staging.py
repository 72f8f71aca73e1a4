"""Staging takes the fast parse path for clean records and stores what the full parser would.

The fast path (connector.ci.fast) must not change what lands in the ledger: the same
positional parsed form, a record text that reads back as the record, the same held reasons,
and a broken record's key independent of the order of its keys (it keys the broken-record
list across rounds)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import msgspec
import pytest

import connector.importer as importer_module
from connector.ci.records import ParsedRecord, RecordProblem
from connector.ci.schemas import parse_record_tolerant
from connector.importer import Importer, _line_fields, _record_head, _row_fields
from connector.ledger import open_ledger
from tests.connector.fakes import T0, fake_mappings, make_host, make_line, make_record

EXAMPLES = Path(__file__).parents[1] / "fixtures" / "ci-examples"


def _v4() -> list[dict[str, Any]]:
    page = json.loads((EXAMPLES / "get_orders_v4_page2_of_2.json").read_text("utf-8"))
    records: list[dict[str, Any]] = page["data"]
    return records


def _importer(tmp_path: Path) -> Importer:
    host = make_host()
    acct = host.account(tmp_path, watch_cancellations=False)
    return Importer(acct, host.cis["us"], open_ledger(acct), fake_mappings(), lambda: T0)


def _stage(imp: Importer, records: list[Any]) -> list[tuple[str, str | None, str]]:
    problems: list[tuple[str, str | None, str]] = []
    round_no = imp.ledger.begin_import_round()
    imp._stage_page(records, T0, round_no, problems)
    return problems


def _expected_fields(raw: dict[str, Any]) -> dict[int, list[Any]]:
    parsed = parse_record_tolerant(raw)
    assert isinstance(parsed, ParsedRecord)
    return {line.ci_lineitemid: _record_head(parsed) + _line_fields(line) for line in parsed.lines}


def _assert_staged_as_expected(imp: Importer, raw: dict[str, Any]) -> None:
    expected = _expected_fields(raw)
    rows = imp.ledger.get_lines(expected)
    assert set(rows) == set(expected)
    for lid, fields in expected.items():
        assert _row_fields(rows[lid]) == fields


def test_clean_records_never_reach_the_marshmallow_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [*_v4(), make_record("A", [make_line(1), make_line(2, "SKU-2", quantity=3)])]
    expected = {lid: f for r in records for lid, f in _expected_fields(r).items()}

    def refuse(raw: Any) -> ParsedRecord | RecordProblem:
        raise AssertionError("a clean record went through the slow parser")

    monkeypatch.setattr(importer_module, "parse_record", refuse)
    monkeypatch.setattr(importer_module, "parse_record_tolerant", refuse)
    imp = _importer(tmp_path)
    assert _stage(imp, records) == []
    rows = imp.ledger.get_lines(expected)
    assert {lid: _row_fields(row) for lid, row in rows.items()} == expected
    by_lid = {line["ci_lineitemid"]: r for r in records for line in r["line_items"]}
    for lid, row in rows.items():
        assert row.record == by_lid[lid]  # the stored text reads back as the record


def test_records_the_fast_path_defers_are_staged_as_before(tmp_path: Path) -> None:
    int_zip = copy.deepcopy(_v4()[0])
    int_zip["customer"]["zip"] = 10121  # marshmallow renders it as text; fast path defers
    nan_extra = copy.deepcopy(_v4()[1])
    nan_extra["intrinsic_value"] = math.nan  # a field nobody reads: parsed fast, text kept
    imp = _importer(tmp_path)
    assert _stage(imp, [int_zip, nan_extra]) == []
    _assert_staged_as_expected(imp, int_zip)
    _assert_staged_as_expected(imp, nan_extra)
    lid = nan_extra["line_items"][0]["ci_lineitemid"]
    record = imp.ledger.get_lines([lid])[lid].record
    assert record is not None
    assert math.isnan(record["intrinsic_value"])  # not turned into null by the encoder


def test_a_broken_record_is_held_with_the_full_parsers_reason(tmp_path: Path) -> None:
    bad = make_record("BAD", [make_line(5)])
    bad["line_items"][0]["quantity"] = "lots"
    problem = parse_record_tolerant(bad)
    assert isinstance(problem, RecordProblem)
    imp = _importer(tmp_path)
    assert _stage(imp, [bad]) == []
    row = imp.ledger.get_lines([5])[5]
    assert row.hold_reason == problem.reason
    assert _row_fields(row) == problem.reason


def test_a_broken_records_key_does_not_depend_on_key_order(tmp_path: Path) -> None:
    first = {"orderid": "NOLINES", "supplier": "X", "line_items": [], "amount": {"a": 1, "b": 2}}
    second = {"amount": {"b": 2, "a": 1}, "line_items": [], "supplier": "X", "orderid": "NOLINES"}
    imp = _importer(tmp_path)
    [(key_one, orderid, reason)] = _stage(imp, [first])
    [(key_two, _, _)] = _stage(imp, [second])
    assert key_one == key_two
    sorted_text = json.dumps(first, sort_keys=True, default=str)
    assert key_one == hashlib.sha256(sorted_text.encode("utf-8")).hexdigest()
    assert orderid == "NOLINES"
    assert "line_items" in reason


def _raw(records: list[Any]) -> list[Any]:
    """``records`` as ``CIClient.iter_raw_pages`` would leave them (CI-style JSON bytes)."""
    return list(msgspec.json.decode(json.dumps(records).encode(), type=list[msgspec.Raw]))


def _ledger_view(imp: Importer, lids: list[int]) -> dict[int, tuple[Any, ...]]:
    rows = imp.ledger.get_lines(lids)
    return {
        lid: (row.state, row.hold_reason, _row_fields(row), row.record) for lid, row in rows.items()
    }


def test_raw_records_are_staged_as_their_dicts_are(tmp_path: Path) -> None:
    clean = [*_v4(), make_record("A", [make_line(1), make_line(2, "SKU-2", quantity=3)])]
    int_zip = copy.deepcopy(_v4()[0])
    int_zip["customer"]["zip"] = 10121  # the typed decode defers: the dict paths decide
    for line in int_zip["line_items"]:
        line["ci_lineitemid"] += 1000
    bad = make_record("BAD", [make_line(5)])
    bad["line_items"][0]["quantity"] = "lots"  # held with marshmallow's reason
    nolines = {"orderid": "NOLINES", "line_items": [], "amount": {"b": 2, "a": 1}}
    records = [*clean, int_zip, bad, nolines]
    lids = [line["ci_lineitemid"] for r in records for line in r["line_items"]]
    by_dict = _importer(tmp_path / "dict")
    by_raw = _importer(tmp_path / "raw")
    problems = _stage(by_dict, copy.deepcopy(records))
    assert _stage(by_raw, _raw(records)) == problems  # same keys: the sorted dict text
    assert len(problems) == 1
    assert problems[0][1] == "NOLINES"
    assert _ledger_view(by_raw, lids) == _ledger_view(by_dict, lids)


def test_a_raw_records_text_is_its_bytes_and_reads_back(tmp_path: Path) -> None:
    records = _v4()
    imp = _importer(tmp_path)
    assert _stage(imp, _raw(records)) == []
    rows = imp.ledger.get_lines(line["ci_lineitemid"] for r in records for line in r["line_items"])
    by_lid = {line["ci_lineitemid"]: r for r in records for line in r["line_items"]}
    for lid, row in rows.items():
        assert row.record == by_lid[lid]
    texts = [t for (t,) in imp.ledger._conn.execute("SELECT record FROM records")]
    assert sorted(texts) == sorted(json.dumps(r) for r in records)


@pytest.mark.parametrize("raw", [False, True], ids=["dicts", "raw"])
def test_each_record_of_a_page_is_stored_once_under_its_lines_key(
    tmp_path: Path, raw: bool
) -> None:
    # The lines of one record name one stored copy; a record repeated on the page, an
    # equal copy of it (another object) and a broken record's lines too.
    two = make_record("A", [make_line(1), make_line(2, "SKU-2")])
    one = make_record("B", [make_line(3)])
    bad = make_record("BAD", [make_line(5), make_line(6)])
    bad["line_items"][0]["quantity"] = "lots"
    records = [two, one, copy.deepcopy(two), bad, one]
    imp = _importer(tmp_path)
    _stage(imp, _raw(records) if raw else records)
    keys = dict(imp.ledger._conn.execute("SELECT ci_lineitemid, record_key FROM lines"))
    assert keys[1] == keys[2]
    assert keys[5] == keys[6]
    assert len({keys[1], keys[3], keys[5]}) == 3
    stored = dict(imp.ledger._conn.execute("SELECT key, record FROM records"))
    assert sorted(stored) == sorted({keys[1], keys[3], keys[5]})
    assert json.loads(stored[keys[1]]) == two
    assert json.loads(stored[keys[3]]) == one
    assert json.loads(stored[keys[5]]) == bad
