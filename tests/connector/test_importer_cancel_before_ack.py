"""A line Groupon cancels after it was handed to the host but before CI took its ack.

Found by the concurrent crash run under load (``lost: line ... is in the host but not marked
exported in CI`` + ``pending: ... left delivered without a reason``): the host stored the
order, its ``mark_exported`` never landed (killed after the store, or ``AccountBusy``), then
Groupon cancelled a line. The importer skipped the cancelled ``delivered`` line, so it was
never re-delivered, never bound, never acknowledged: ``delivered`` forever. And a host whose
``mark_exported`` came after the cancellation was read was refused for that line.
"""

from __future__ import annotations

from pathlib import Path

from connector.ledger.sqlite import ledger_path, open_ledger_file
from connector.models import LineOutcome, StoredOrder
from tests.connector.fakes import make_host, make_line, make_record


def _store(host, acct, batch):  # type: ignore[no-untyped-def]
    stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
    return host.pm.hook.oms_mark_exported(account=acct, stored=stored)


def _states(data_dir: Path) -> dict[int, str]:
    ledger = open_ledger_file(ledger_path(data_dir, "us"), "us")
    try:
        return {lid: row.state for lid, row in ledger.get_lines([1, 2]).items()}
    finally:
        ledger.close()


def test_line_cancelled_after_store_before_ack_is_redelivered_and_acked(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    first = host.pm.hook.oms_import_orders(account=acct)
    assert [o.ci_lineitemids for o in first.orders] == [(1, 2)]
    # The host stores A and dies before mark_exported; Groupon then cancels line 2.
    ci.cancel(2)
    again = host.pm.hook.oms_import_orders(account=acct)
    # Handed over, never confirmed: offered again (the host dedupes), with its cancellation.
    assert [o.ci_lineitemids for o in again.orders] == [(1, 2)]
    assert [c.ci_lineitemid for c in again.cancellations] == [2]
    results = _store(host, acct, again)
    assert {r.ci_lineitemid: r.outcome for r in results} == {
        1: LineOutcome.ACCEPTED,
        2: LineOutcome.ACCEPTED,
    }
    assert ci.exported == {1, 2}
    host.pm.hook.oms_confirm_cancellations(account=acct, ci_lineitemids=[2])
    assert _states(tmp_path) == {1: "acked", 2: "acked"}
    later = host.pm.hook.oms_import_orders(account=acct)
    assert later.orders == ()
    assert later.cancellations == ()


def test_mark_exported_after_the_cancellation_was_read_binds_and_acks(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    first = host.pm.hook.oms_import_orders(account=acct)
    # Another process reads CI (line 2 now cancelled) while this host is still storing A.
    ci.cancel(2)
    host.pm.hook.oms_import_orders(account=acct)
    results = _store(host, acct, first)
    assert {r.ci_lineitemid: r.outcome for r in results} == {
        1: LineOutcome.ACCEPTED,
        2: LineOutcome.ACCEPTED,
    }
    assert ci.exported == {1, 2}
    assert _states(tmp_path) == {1: "acked", 2: "acked"}


def test_line_cancelled_before_handover_is_still_refused(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    ci.cancel(2)
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert [o.ci_lineitemids for o in batch.orders] == [(1,)]
    bogus = host.pm.hook.oms_mark_exported(account=acct, stored=[StoredOrder("A", "H-A", (1, 2))])
    assert {r.ci_lineitemid: r.outcome for r in bogus} == {
        1: LineOutcome.ACCEPTED,
        2: LineOutcome.REJECTED,
    }
    assert ci.exported == {1}
