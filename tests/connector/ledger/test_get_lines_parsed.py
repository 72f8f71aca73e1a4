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
