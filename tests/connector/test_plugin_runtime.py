"""The plugin's per-account runtime: rebuilds, failures and concurrency (review findings)."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from connector.errors import LedgerError
from connector.models import CarrierEvent, CarrierEventKind, LineOutcome, StoredOrder
from tests.connector.fakes import T0, make_host, make_line, make_record


def test_a_failed_rebuild_keeps_the_working_runtime(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1)]))
    assert host.pm.hook.oms_held_lines(account=acct) == []
    (tmp_path / "file.txt").write_text("x")
    bad = dataclasses.replace(acct, data_dir=tmp_path / "file.txt" / "sub")
    with pytest.raises(LedgerError):
        host.pm.hook.oms_held_lines(account=bad)
    batch = host.pm.hook.oms_import_orders(account=acct)  # the good account still works
    assert [o.orderid for o in batch.orders] == ["A"]


def test_a_settings_change_waits_for_the_call_in_progress(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1)]))
    host.pm.hook.oms_import_orders(account=acct)
    gate, entered = threading.Event(), threading.Event()
    real = ci.mark_exported

    def slow(ids: list[int]) -> None:
        entered.set()
        gate.wait(5)
        real(ids)

    ci.mark_exported = slow  # type: ignore[method-assign]
    errors: list[Exception] = []

    def first() -> None:
        try:
            host.pm.hook.oms_mark_exported(account=acct, stored=[StoredOrder("A", "H", (1,))])
        except Exception as exc:  # the test reports it below
            errors.append(exc)

    worker = threading.Thread(target=first)
    worker.start()
    assert entered.wait(5)
    other = dataclasses.replace(acct, options=dataclasses.replace(acct.options, ack_batch_size=7))
    threading.Timer(0.3, gate.set).start()
    started = time.monotonic()
    host.pm.hook.oms_held_lines(account=other)  # must wait: same account, same ledger
    waited = time.monotonic() - started
    worker.join(5)
    assert errors == []
    assert waited >= 0.25
    line = host.plugin.ledger_for(other).get_line(1)
    assert line is not None
    assert line.state == "acked"


def test_events_for_a_line_never_handed_over_are_rejected(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    ci = host.cis["us"]
    ci.add(make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    ci.cancel(2)  # cancelled by Groupon before the host ever saw the order
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert [ln.ci_lineitemid for ln in batch.orders[0].lines] == [1]
    events = [
        CarrierEvent(1, CarrierEventKind.SCAN, T0),
        CarrierEvent(2, CarrierEventKind.SCAN, T0),
    ]
    results = host.pm.hook.oms_report_carrier_events(account=acct, events=events)
    assert [(r.ci_lineitemid, r.outcome) for r in results] == [
        (1, LineOutcome.ACCEPTED),
        (2, LineOutcome.REJECTED),
    ]
    assert "never handed to the host" in results[1].reason


def test_acknowledgements_do_not_wait_for_a_broken_mapping_file(tmp_path: Path) -> None:
    """An operator saving a half-edited CSV must not block acks of orders already stored."""
    from connector.errors import MappingError

    host = make_host()
    acct = host.account(tmp_path)
    host.cis["us"].add(make_record("A", [make_line(1)]))
    batch = host.pm.hook.oms_import_orders(account=acct)
    stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]

    def broken(_account: object) -> object:
        raise MappingError([])

    host.plugin._mappings_loader = broken  # the operator just saved a broken couriers.csv
    results = host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    assert [(r.ci_lineitemid, r.outcome) for r in results] == [(1, LineOutcome.ACCEPTED)]
    assert host.cis["us"].calls_to("mark_exported")
    with pytest.raises(Exception, match="mapping"):
        host.pm.hook.oms_import_orders(account=acct)  # a new import does need the tables
