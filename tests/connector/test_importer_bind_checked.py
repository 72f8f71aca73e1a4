"""mark_exported folds its binding checks into the binding's write (Ledger.bind_checked) and
reads only the lines it did not bind, to say why: the results, their order and the ledger's
rows are those of the checks made line by line, also when every line takes the read path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.errors import CITransportError
from connector.ledger import BoundLine, Ledger, ledger_path, open_ledger_file
from connector.models import LineOutcome, StoredOrder
from tests.connector.fakes import Imported


@pytest.mark.parametrize("path", ["folded", "read"])
def test_mixed_bindings_give_the_same_results_either_way(
    tmp_path: Path, three_imported: Imported, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    host, acct, ci, _ = three_imported.unpack()
    first = host.pm.hook.oms_mark_exported(account=acct, stored=[StoredOrder("O3", "H3", (3,))])
    assert [r.outcome for r in first] == [LineOutcome.ACCEPTED]
    if path == "read":
        # bind_checked binds nothing: every line goes through the read and the checks.
        def bind_nothing(self: Ledger, *args: Any, **kwargs: Any) -> dict[int, BoundLine]:
            return {}

        monkeypatch.setattr(Ledger, "bind_checked", bind_nothing)
    stored = [
        StoredOrder("O1", "H1", (1, 99)),  # 99: never imported
        StoredOrder("O1", "H-x", (2,)),  # line 2 is of O2: its first binding decides
        StoredOrder("O2", "H2", (2,)),
        StoredOrder("O3", "H3", (3,)),  # acknowledged already
        StoredOrder("O1", "H1-again", (1,)),  # a later binding of line 1: skipped
    ]
    results = host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    assert [(r.ci_lineitemid, r.outcome) for r in results] == [
        (1, LineOutcome.ACCEPTED),
        (99, LineOutcome.REJECTED),
        (2, LineOutcome.REJECTED),
        (3, LineOutcome.ALREADY_DONE),
    ]
    assert results[1].reason == "line 99 was never imported for account us: not acknowledged"
    assert results[2].reason == "line 2 belongs to order O2, not O1: not acknowledged"
    assert results[3].reason == "already marked exported in CI"
    assert ci.exported == {1, 3}
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    try:
        rows = ledger._query("SELECT ci_lineitemid, state, host_order_id, ack_owner FROM lines")
        assert sorted(tuple(r) for r in rows) == [
            (1, "acked", "H1", None),
            (2, "delivered", None, None),
            (3, "acked", "H3", None),
        ]
    finally:
        ledger.close()


def test_a_line_bound_before_is_bound_again_and_acknowledged(
    three_imported: Imported,
) -> None:
    # Stored already (CI unreachable the first time, one failure queued): bound again,
    # claimed in the same write and acknowledged.
    host, acct, ci, _ = three_imported.unpack()
    ci.fail("mark_exported", CITransportError("503 after retries"))
    stored = [StoredOrder("O1", "H1", (1,))]
    assert [r.outcome for r in host.pm.hook.oms_mark_exported(account=acct, stored=stored)] == [
        LineOutcome.QUEUED
    ]
    results = host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED]
    assert ci.exported == {1}
