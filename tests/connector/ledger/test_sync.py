"""``Ledger.sync``: one durable commit that writes a row (an empty transaction would sync
nothing), so commits made before it without their fsync are on disk after it; runs on both
backends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.ledger import Ledger, ledger_path, open_ledger_file

NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


def test_sync_commits_a_write_durably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    begins: list[bool] = []
    begin = type(ledger)._begin

    def spy(self: Ledger, durable: bool) -> None:
        begins.append(durable)
        begin(self, durable)

    monkeypatch.setattr(type(ledger), "_begin", spy)
    with ledger.transaction(durable=False):
        ledger.stage_line(ci_lineitemid=1, orderid="A", now=NOW, quantity=1)
    rounds = ledger.import_rounds()
    ledger.sync()
    ledger.sync()  # again: writes (and syncs) again
    assert begins == [False, True, True]
    assert ledger.get_meta("synced") == "1"
    assert ledger.import_rounds() == rounds  # nothing else changes
    assert ledger.get_line(1) is not None
    # Inside a transaction it joins it (and its durability), as every write does.
    begins.clear()
    with ledger.transaction():
        ledger.sync()
    assert begins == [True]
