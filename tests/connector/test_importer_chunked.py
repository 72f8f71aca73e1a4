"""Streamed staging and chunked delivery (``ImportBatch.more``, ``max_orders_per_import``)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from connector.ci.client import OrdersPage, PageMeta
from connector.importer import Importer
from connector.ledger import open_ledger, open_ledger_file
from connector.ledger.migrations import MIGRATIONS
from connector.ledger.sqlite import ledger_path
from connector.models import ImportBatch, LineOutcome, StoredOrder
from tests.connector.fakes import T0, fake_mappings, make_host, make_line, make_record


def _store(host: Any, acct: Any, batch: ImportBatch) -> list[Any]:
    stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
    result: list[Any] = host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    return result


def _seed(ci: Any, orders: int, first_line: int = 1) -> None:
    for n in range(orders):
        ci.add(make_record(f"O{n:03d}", [make_line(first_line + n)]))


def test_chunks_of_at_most_max_orders_until_more_is_false(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path, max_orders_per_import=3)
    ci = host.cis["us"]
    _seed(ci, 7)
    sizes, flags, seen = [], [], []
    while True:
        batch = host.pm.hook.oms_import_orders(account=acct)
        sizes.append(len(batch.orders))
        flags.append(batch.more)
        seen += [o.orderid for o in batch.orders]
        _store(host, acct, batch)
        if not batch.more:
            break
    assert sizes == [3, 3, 1]
    assert flags == [True, True, False]
    assert sorted(seen) == [f"O{n:03d}" for n in range(7)]  # each order exactly once
    assert len(ci.calls_to("get_orders")) == 1  # one read of CI for the whole drain
    assert ci.exported == set(range(1, 8))


def test_drain_before_refetch_counts_get_orders_calls(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path, max_orders_per_import=2, watch_cancellations=False)
    ci = host.cis["us"]
    _seed(ci, 4)
    first = host.pm.hook.oms_import_orders(account=acct)
    _store(host, acct, first)
    ci.add(make_record("NEW", [make_line(500)]))  # appears while the first round drains
    second = host.pm.hook.oms_import_orders(account=acct)
    assert len(ci.calls_to("get_orders")) == 1  # drained from the ledger, CI not read
    assert "NEW" not in {o.orderid for o in second.orders}
    assert second.more is False
    _store(host, acct, second)
    third = host.pm.hook.oms_import_orders(account=acct)  # nothing left: read CI again
    assert len(ci.calls_to("get_orders")) == 2
    assert [o.orderid for o in third.orders] == ["NEW"]


def test_held_and_young_lines_do_not_block_a_new_read(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path, max_orders_per_import=1, import_delay_minutes=10_000)
    ci = host.cis["us"]
    ci.add(make_record("YOUNG", [make_line(1)]))
    ci.add(make_record("UNMAPPED", [make_line(2, "NO-ALIAS")]))
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert batch.orders == ()
    assert batch.more is False  # held/young lines are not deliverable work
    host.pm.hook.oms_import_orders(account=acct)
    assert len(ci.calls_to("get_orders")) == 2  # so the next call reads CI again


def test_crash_between_chunks_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path, max_orders_per_import=2)
    ci = host.cis["us"]
    _seed(ci, 5)
    stored: dict[str, int] = {}

    def store(h: Any, batch: ImportBatch) -> None:
        for o in batch.orders:
            stored[o.orderid] = stored.get(o.orderid, 0) + 1
        _store(h, acct, batch)

    store(host, host.pm.hook.oms_import_orders(account=acct))
    lost = host.pm.hook.oms_import_orders(account=acct)  # delivered, host "crashes" unstored
    assert len(lost.orders) == 2
    assert lost.more
    restarted = make_host()
    restarted.cis["us"] = ci
    for _ in range(6):  # the host loops on more, then runs a later sync
        batch = restarted.pm.hook.oms_import_orders(account=acct)
        store(restarted, batch)
    lost_ids = {o.orderid for o in lost.orders}
    assert set(stored) == {f"O{n:03d}" for n in range(5)}
    assert all(stored[o] == 1 for o in stored)  # the host saw each order once
    assert lost_ids <= set(stored)  # re-delivered after the crash, by a later read
    assert ci.exported == set(range(1, 6))


def test_reference_host_sync_loops_over_chunks_and_sums(tmp_path: Path) -> None:
    from connector.reference_host.facade import ChannelFacade
    from connector.reference_host.host import ReferenceHost

    host = make_host()
    acct = host.account(tmp_path, max_orders_per_import=4)
    ci = host.cis["us"]
    _seed(ci, 10)
    ci.add(make_record("TWO", [make_line(900), make_line(901, "SKU-2")]))
    with ReferenceHost(tmp_path / "host.sqlite3", ChannelFacade(host.pm)) as ref:
        report = ref.sync(acct)
        assert report.chunks == 3
        assert report.orders_imported == 11
        assert report.lines_imported == 12
        assert report.lines_marked_exported == 12
        assert ref.store.count_orders(acct.name) == 11
        assert ref.store.duplicates() == []
    assert len(ci.calls_to("get_orders")) == 1


class _StreamingCI:
    """Generates pages lazily, so the test measures only what the importer keeps."""

    def __init__(self, lines: int) -> None:
        self.lines = lines
        self.acked: list[int] = []

    def iter_pages(self, window: Any = None) -> Iterator[OrdersPage]:
        per_page = 250
        pages = (self.lines + per_page - 1) // per_page
        for number in range(pages):
            start = number * per_page
            records = [
                make_record(f"S{lid}", [make_line(lid + 1)])
                for lid in range(start, min(start + per_page, self.lines))
            ]
            yield OrdersPage(PageMeta(pages, number + 1, per_page, self.lines), records)

    def fetch_all(self, window: Any = None) -> list[OrdersPage]:
        return list(self.iter_pages(window))

    def mark_exported(self, ci_lineitemids: Any) -> None:
        self.acked.extend(ci_lineitemids)


def _staging_peak(tmp_path: Path, lines: int, host: Any) -> int:
    acct = host.account(tmp_path / str(lines), watch_cancellations=False)
    ledger = open_ledger(acct)
    importer = Importer(acct, _StreamingCI(lines), ledger, fake_mappings(), lambda: T0)
    gc.collect()
    tracemalloc.start()
    try:
        importer._fetch_and_stage(T0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ledger.summary()["lines"]["staged"] == lines
    ledger.close()
    return peak


def test_staging_memory_does_not_grow_with_the_listing(tmp_path: Path) -> None:
    host = make_host()
    small = _staging_peak(tmp_path, 2_500, host)
    large = _staging_peak(tmp_path, 10_000, host)
    # One page at a time: the peak grows by ~100 bytes per extra line (ledger bookkeeping),
    # while keeping every raw record would add ~8 KB per line (7,500 lines: ~60 MB). The bound
    # is absolute, so unrelated allocations of a few hundred KB in a full run cannot flip it.
    extra_lines = 10_000 - 2_500
    assert large - small < extra_lines * 500, (small, large)


def test_v3_migration_keeps_v2_rows_and_delivers_them(tmp_path: Path) -> None:
    host = make_host()
    acct = host.account(tmp_path)
    path = ledger_path(acct.data_dir, acct.name)
    old = open_ledger_file(path, acct.name, MIGRATIONS[:2])
    assert old.schema_version() == 2
    record = make_record("LEGACY", [make_line(7, quantity=2)])
    old.stage_line(
        ci_lineitemid=7,
        orderid="LEGACY",
        now=T0,
        record=record,
        order_date=datetime(2024, 3, 4, tzinfo=T0.tzinfo),
        quantity=2,
        sku="SKU-1",
    )
    old.close()

    ledger = open_ledger_file(path, acct.name)
    assert ledger.schema_version() == max(v for v, _ in MIGRATIONS)
    row = ledger.get_line(7)
    assert row is not None
    assert row.parsed is None
    assert row.record == record
    ledger.close()

    ci = host.cis["us"]
    ci.add(record)
    ci.exported.add(7)  # CI knows the line but no longer lists it: the ledger row alone
    batch = host.pm.hook.oms_import_orders(account=acct)
    (order,) = batch.orders
    assert order.orderid == "LEGACY"
    assert order.lines[0].quantity == 2
    assert [c.host_sku for c in order.lines[0].components] == ["HOST-1"]
    results = _store(host, acct, batch)
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED]
