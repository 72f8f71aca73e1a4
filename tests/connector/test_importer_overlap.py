"""Overlap with the network in the importer and the dispatcher (issue 11 point 3): one page read
ahead, ``ack_concurrency`` mark_exported batches in flight, packed tracking calls in flight;
results, queueing and claims as with one call after the other; no thread left behind."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connector.ci.client import OrdersPage, TrackingItem
from connector.errors import CITransportError
from connector.importer import Importer
from connector.models import LineOutcome, Shipment, StoredOrder
from tests.connector.fakes import FakeCI, Host, make_host, make_line, make_record


class SlowCI(FakeCI):
    """FakeCI that says it may be called from several threads, streams its pages, takes
    ``delay`` per call and records what ran when (and on which thread)."""

    concurrent_calls = True

    def __init__(self, delay: float = 0.03) -> None:
        super().__init__()
        self.delay = delay
        self.lock = threading.Lock()
        self.events: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.down: set[int] = set()  # a batch holding one of these finds CI unreachable
        self.interrupt: set[int] = set()  # ... raises KeyboardInterrupt (a Ctrl-C)
        self.fail_page: int | None = None
        self.threads: set[str] = set()

    def _enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)

    def _leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def iter_pages(self, window: tuple[datetime, datetime] | None = None) -> Iterator[OrdersPage]:
        pages = self.fetch_all(window)
        for number, page in enumerate(pages, start=1):
            self._enter()
            try:
                if number == self.fail_page:
                    raise CITransportError(f"CI get_orders: page {number} lost")
                with self.lock:
                    self.events.append(f"page {number}")
            finally:
                self._leave()
            yield page

    def mark_exported(self, ci_lineitemids: Sequence[int]) -> None:
        self._enter()
        try:
            with self.lock:
                self.events.append("mark")
            if self.interrupt & set(ci_lineitemids):
                raise KeyboardInterrupt
            if self.down & set(ci_lineitemids):
                raise CITransportError("connection reset")
            with self.lock:
                super().mark_exported(ci_lineitemids)
        finally:
            self._leave()

    def tracking_notification(self, items: Sequence[TrackingItem]) -> None:
        self._enter()
        try:
            with self.lock:
                super().tracking_notification(items)
        finally:
            self._leave()


def _rig(tmp_path: Path, ci: SlowCI, lines: int, **options: Any) -> tuple[Host, Any]:
    host = make_host()
    host.cis["us"] = ci
    acct = host.account(tmp_path, watch_cancellations=False, **options)
    for lid in range(1, lines + 1):
        ci.add(make_record(f"O{lid:04d}", [make_line(lid)]))
    return host, acct


def _import_all(host: Host, acct: Any) -> list[StoredOrder]:
    """Every order imported, as the host would report it stored."""
    stored: list[StoredOrder] = []
    while True:
        batch = host.pm.hook.oms_import_orders(account=acct)
        stored += [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
        if not batch.more:
            break
    return stored


def _store_all(host: Host, acct: Any) -> list[Any]:
    stored = _import_all(host, acct)
    results: list[Any] = host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    return results


def _our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("ci-ack", "ci-prefetch"))]


def test_at_most_one_page_is_read_ahead_of_the_page_being_staged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ci = SlowCI(delay=0.01)
    host, acct = _rig(tmp_path, ci, 5 * 250 + 10)  # 6 pages
    seen: list[tuple[int, int, int]] = []
    stage = Importer._stage_page

    def counting(self: Importer, records: Any, *args: Any, **kwargs: Any) -> None:
        number = len(seen) + 1
        # The next page is read while this one is staged (overlap) ...
        deadline = time.monotonic() + 5
        while number < 6 and ci.events.count(f"page {number + 1}") == 0:
            assert time.monotonic() < deadline, "page N+1 was not read while page N was staged"
            time.sleep(0.005)
        before = len([e for e in ci.events if e.startswith("page")])
        time.sleep(0.05)  # ... and never the one after it, however long staging takes
        after = len([e for e in ci.events if e.startswith("page")])
        seen.append((number, before, after))
        stage(self, records, *args, **kwargs)

    monkeypatch.setattr(Importer, "_stage_page", counting)
    host.pm.hook.oms_import_orders(account=acct)
    assert [n for n, _, _ in seen] == [1, 2, 3, 4, 5, 6]
    for number, before, after in seen:
        assert before == after == min(number + 1, 6), seen
    assert _our_threads() == []


def test_every_page_is_read_before_the_first_mark(tmp_path: Path) -> None:
    ci = SlowCI(delay=0.005)
    host, acct = _rig(tmp_path, ci, 40, ack_batch_size=5)
    ci.down = set(range(1, 41))  # the first acks are queued: the next import flushes them
    results = _store_all(host, acct)
    assert {r.outcome for r in results} == {LineOutcome.QUEUED}
    ci.down = set()
    for lid in range(41, 41 + 3 * 250):  # three more pages to read in the same import
        ci.add(make_record(f"O{lid:04d}", [make_line(lid)]))
    ci.events.clear()
    host.pm.hook.oms_import_orders(account=acct)
    pages = [i for i, e in enumerate(ci.events) if e.startswith("page")]
    marks = [i for i, e in enumerate(ci.events) if e == "mark"]
    assert len(pages) == 4  # 40 un-acked lines and 750 new ones
    assert len(marks) == 8
    assert max(pages) < min(marks)
    assert ci.exported == set(range(1, 41))


@pytest.mark.parametrize("concurrency", [1, 3, 5])
def test_ack_batches_in_flight_never_exceed_ack_concurrency(
    tmp_path: Path, concurrency: int
) -> None:
    ci = SlowCI(delay=0.05)
    host, acct = _rig(tmp_path, ci, 30, ack_batch_size=2, ack_concurrency=concurrency)
    results = _store_all(host, acct)
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED] * 30
    assert ci.exported == set(range(1, 31))
    assert ci.max_in_flight <= concurrency
    if concurrency > 1:
        assert ci.max_in_flight >= 2  # they did overlap (15 batches of 50 ms each)
    ledger = host.plugin.ledger_for(acct)
    assert ledger.summary()["lines"]["acked"] == 30
    assert _our_threads() == []


def _outcomes(results: list[Any]) -> list[tuple[int, LineOutcome, str]]:
    return [(r.ci_lineitemid, r.outcome, r.reason) for r in results]


def test_a_failing_batch_among_in_flight_ones_queues_what_one_at_a_time_queues(
    tmp_path: Path,
) -> None:
    runs = {}
    for concurrency in (1, 4):
        ci = SlowCI(delay=0.03)
        host, acct = _rig(tmp_path / str(concurrency), ci, 24, ack_batch_size=3)
        acct = host.account(
            tmp_path / str(concurrency),
            watch_cancellations=False,
            ack_batch_size=3,
            ack_concurrency=concurrency,
        )
        ci.down = {10}  # batch 4 of 8 (lines 10-12): CI unreachable
        ci.refuse_ack = {5}  # batch 2 (4-6): refused, resent one by one
        results = _store_all(host, acct)
        ledger = host.plugin.ledger_for(acct)
        runs[concurrency] = (
            _outcomes(results),
            sorted((lid, outcome) for lid, outcome, _ in ledger.ack_log()),
            ledger.summary()["lines"],
        )
        # Every claim ended: another owner can claim every line not acked.
        left = [lid for lid in range(1, 25) if ledger.get_lines([lid])[lid].state == "stored"]
        assert ledger.claim_acks(left, host.clock(), 600, owner="elsewhere:1:x") == left
        assert _our_threads() == []
    assert runs[4] == runs[1]
    outcomes = {lid: outcome for lid, outcome, _ in runs[1][0]}
    assert [lid for lid, o in outcomes.items() if o is LineOutcome.ACCEPTED] == [
        1,
        2,
        3,
        4,
        6,
        7,
        8,
        9,
    ]
    assert outcomes[5] is LineOutcome.REJECTED
    assert [lid for lid, o in outcomes.items() if o is LineOutcome.QUEUED] == list(range(10, 25))
    reasons = {reason for lid, _, reason in runs[4][0] if lid >= 10}
    assert reasons == {"CI unreachable, will retry: connection reset"}


def test_a_ctrl_c_during_acks_leaves_no_thread_and_no_claim(tmp_path: Path) -> None:
    ci = SlowCI(delay=0.03)
    host, acct = _rig(tmp_path, ci, 30, ack_batch_size=3, ack_concurrency=3)
    ci.interrupt = {7}  # batch 3 of 10
    with pytest.raises(KeyboardInterrupt):
        _store_all(host, acct)
    assert _our_threads() == []
    ledger = host.plugin.ledger_for(acct)
    left = [lid for lid in range(1, 31) if ledger.get_lines([lid])[lid].state == "stored"]
    assert 7 in left
    assert ledger.claim_acks(left, host.clock(), 600, owner="elsewhere:1:x") == left
    acked = {lid for lid in range(1, 31) if ledger.get_lines([lid])[lid].state == "acked"}
    assert {1, 2, 3, 4, 5, 6} <= acked  # the batches before it were recorded
    assert acked <= ci.exported  # nothing recorded that CI did not take


def test_a_failure_while_staging_leaves_no_prefetch_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ci = SlowCI(delay=0.05)
    host, acct = _rig(tmp_path, ci, 3 * 250)
    stage = Importer._stage_page
    calls = []

    def failing(self: Importer, records: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        stage(self, records, *args, **kwargs)

    monkeypatch.setattr(Importer, "_stage_page", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        host.pm.hook.oms_import_orders(account=acct)
    assert _our_threads() == []
    assert ci.events.count("page 3") <= 1  # at most the one page ahead was read


def test_a_read_error_on_the_prefetched_page_is_raised_as_before(tmp_path: Path) -> None:
    ci = SlowCI(delay=0.01)
    host, acct = _rig(tmp_path, ci, 3 * 250)
    ci.fail_page = 3
    with pytest.raises(CITransportError, match="CI get_orders: page 3 lost"):
        host.pm.hook.oms_import_orders(account=acct)
    assert _our_threads() == []
    ledger = host.plugin.ledger_for(acct)
    assert ledger.summary()["lines"]["staged"] == 500  # pages 1-2 staged, round not complete
    current, done = ledger.import_rounds()
    assert current != done
    ci.fail_page = None
    batch = host.pm.hook.oms_import_orders(account=acct)
    assert len(batch.orders) == 500  # max_orders_per_import, the next read completed


def test_ledger_writes_stay_on_the_calling_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ci = SlowCI(delay=0.02)
    host, acct = _rig(tmp_path, ci, 20, ack_batch_size=2, ack_concurrency=4)
    ledger = host.plugin.ledger_for(acct)
    writers: set[str] = set()
    record = type(ledger).record_acks

    def spy(self: Any, ids: Any, now: Any, **kw: Any) -> Any:
        writers.add(threading.current_thread().name)
        return record(self, ids, now, **kw)

    monkeypatch.setattr(type(ledger), "record_acks", spy)
    _store_all(host, acct)
    assert writers == {threading.current_thread().name}
    assert any(name.startswith("ci-ack") for name in ci.threads)  # HTTP went to workers


def test_packed_tracking_calls_are_in_flight_together(tmp_path: Path) -> None:
    ci = SlowCI(delay=0.05)
    host, acct = _rig(tmp_path, ci, 12, tracking_batch_size=2, ack_concurrency=3)
    _store_all(host, acct)
    shipments = [
        Shipment.single(f"S{lid}", "UPS", f"1Z{lid:016d}", {lid: 1}) for lid in range(1, 13)
    ]
    ci.max_in_flight = 0
    results = host.pm.hook.oms_dispatch_many(account=acct, shipments=shipments)
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED] * 12
    assert len(ci.calls_to("tracking_notification")) == 6
    assert 2 <= ci.max_in_flight <= 3
    assert {lid for lid, _ in ci.tracking} == set(range(1, 13))
    assert _our_threads() == []


def _in_place_of_the_bindings(
    monkeypatch: pytest.MonkeyPatch, host: Host, acct: Any, run: Callable[[], None]
) -> None:
    """``run()`` first whenever the account's ledger writes the bindings."""
    ledger_type = type(host.plugin.ledger_for(acct))
    bind = ledger_type.bind_checked

    def spy(self: Any, *args: Any, **kw: Any) -> Any:
        run()
        return bind(self, *args, **kw)

    monkeypatch.setattr(ledger_type, "bind_checked", spy)


def test_ack_threads_start_while_the_bindings_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Started as the calls came, each thread waited for the GIL behind the calls already
    # running; started before the binding's transaction, they are ready when it commits.
    ci = SlowCI(delay=0.0)
    host, acct = _rig(tmp_path, ci, 20, ack_batch_size=2, ack_concurrency=3)
    seen: list[list[str]] = []
    _in_place_of_the_bindings(monkeypatch, host, acct, lambda: seen.append(sorted(_our_threads())))
    results = _store_all(host, acct)
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED] * 20
    assert seen == [["ci-ack-1", "ci-ack-2", "ci-ack-3"]]
    assert ci.exported == set(range(1, 21))
    assert _our_threads() == []


def test_a_binding_failure_leaves_no_ack_thread_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ci = SlowCI(delay=0.0)
    host, acct = _rig(tmp_path, ci, 20, ack_batch_size=2, ack_concurrency=3)
    stored = _import_all(host, acct)

    def broken() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    _in_place_of_the_bindings(monkeypatch, host, acct, broken)
    with pytest.raises(Exception, match="disk I/O error"):
        host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    assert _our_threads() == []
    assert ci.exported == set()
    monkeypatch.undo()
    results = host.pm.hook.oms_mark_exported(account=acct, stored=stored)
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED] * 20
    assert _our_threads() == []
