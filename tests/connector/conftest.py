"""Fixtures shared by the engine tests (the fakes they use are in tests.connector.fakes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.connector.fakes import Imported, make_host, make_line, make_record


@pytest.fixture
def three_imported(tmp_path: Path) -> Imported:
    """Three one-line orders O1-O3 (lines 1-3) imported by a fresh fake host whose account
    acknowledges in batches of 2 (so three lines make two ``mark_exported`` calls)."""
    host = make_host()
    account = host.account(tmp_path, ack_batch_size=2)
    ci = host.cis["us"]
    for i in range(1, 4):
        ci.add(make_record(f"O{i}", [make_line(i)]))
    batch = host.pm.hook.oms_import_orders(account=account)
    return Imported(host, account, ci, batch)
