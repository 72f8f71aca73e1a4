"""``get_lines(parsed=False)`` (issue 11, dispatch pre-flight): the raw record without the
parsed form, every other field as a full read; on both backends."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from connector.ledger import ledger_path, open_ledger_file

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_record_without_parsed_form(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    try:
        record = {"orderid": "A", "customer": {"name": "Giulia", "address1": "Via 14"}}
        ledger.stage_line(ci_lineitemid=1, orderid="A", now=T0, quantity=2, record=record)
        ledger.update_line(1, T0, parsed=json.dumps({"sku": "S-1"}), state="acked")
        full = ledger.get_lines([1, 99])[1]
        slim = ledger.get_lines([1, 99], parsed=False)
        assert list(slim) == [1]
        assert full.parsed == {"sku": "S-1"}
        assert slim[1].record == record
        assert slim[1].parsed is None
        assert slim[1] == replace(full, parsed=None)
    finally:
        ledger.close()


def test_lines_of_one_record_share_one_decoded_copy(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    try:
        record = {"orderid": "A", "customer": {"name": "Giulia"}, "line_items": [{}, {}]}
        other = {"orderid": "B", "customer": {"name": "Anna"}}
        for lid, rec in ((1, record), (2, record), (3, other)):
            ledger.stage_line(
                ci_lineitemid=lid, orderid=str(rec["orderid"]), now=T0, quantity=1, record=rec
            )
        slim = ledger.get_lines([1, 2, 3], parsed=False)
        assert slim[1].record == slim[2].record == record
        assert slim[1].record is slim[2].record
        assert slim[3].record == other
        full = ledger.get_lines([1, 2])
        assert full[1].record is not full[2].record  # full reads stay independent copies
    finally:
        ledger.close()
