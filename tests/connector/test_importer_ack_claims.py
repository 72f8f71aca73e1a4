"""mark_exported claims the lines it acknowledges with their binding (one row write); a
claim it could not use is released before it returns, so another process need not wait for
the lease to run out."""

from __future__ import annotations

from pathlib import Path

from connector.errors import CITransportError
from connector.ledger import ledger_path, open_ledger_file
from connector.models import LineOutcome, StoredOrder
from tests.connector.fakes import Imported

ELSEWHERE = "other-machine:4242:abcd"


def test_claims_of_queued_acks_are_released(tmp_path: Path, three_imported: Imported) -> None:
    host, acct, ci, batch = three_imported.unpack()
    ci.fail("mark_exported", CITransportError("503 after retries"))
    stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
    results = host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    assert [r.outcome for r in results] == [LineOutcome.QUEUED] * 3
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    try:
        owners = ledger._query("SELECT ci_lineitemid, state, ack_owner FROM lines")
        assert sorted(tuple(r) for r in owners) == [(i, "stored", None) for i in (1, 2, 3)]
        now = host.clock()
        assert ledger.claim_acks([1, 2, 3], now, 600, owner=ELSEWHERE) == [1, 2, 3]
    finally:
        ledger.close()


def test_acked_lines_hold_no_claim(tmp_path: Path, three_imported: Imported) -> None:
    host, acct, ci, batch = three_imported.unpack()
    stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
    results = host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED] * 3
    assert ci.exported == {1, 2, 3}
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    try:
        rows = ledger._query("SELECT state, ack_owner, ack_lease_until FROM lines")
        assert {tuple(r) for r in rows} == {("acked", None, None)}
    finally:
        ledger.close()
