"""The next chunk evaluated while ``oms_mark_exported`` waits for CI (Importer.PreparedChunk):
handed over by the next ``oms_import_orders`` when nothing changed, evaluated again otherwise,
and never lost or handed over twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import connector.importer as importer_module
from connector.importer import PREPARED_TTL_SECONDS, Importer
from connector.ledger import open_ledger
from connector.models import LineOutcome, StoredOrder
from tests.connector.fakes import Host, fake_mappings, make_host, make_line, make_record
from tests.connector.test_importer_overlap import SlowCI

CHUNK = 10  # orders per oms_import_orders


def _rig(tmp_path: Path, orders: int, **options: Any) -> tuple[Host, Any, SlowCI]:
    ci = SlowCI(delay=0.002)
    host = make_host()
    host.cis["us"] = ci
    opts = {"max_orders_per_import": CHUNK, "ack_batch_size": 4, "ack_concurrency": 3}
    opts.update(options)
    acct = host.account(tmp_path, watch_cancellations=False, **opts)
    for n in range(1, orders + 1):
        ci.add(make_record(f"O{n:04d}", [make_line(2 * n - 1), make_line(2 * n)]))
    return host, acct, ci


def _store(host: Host, acct: Any, batch: Any) -> list[Any]:
    stored = [StoredOrder(o.orderid, f"H-{o.orderid}", o.ci_lineitemids) for o in batch.orders]
    return list(host.pm.hook.oms_mark_exported(account=acct, stored=stored))


def _states(acct: Any) -> Counter[str]:
    ledger = open_ledger(acct)
    try:
        return Counter(row.state for row in ledger.get_lines(range(1, 1000), light=True).values())
    finally:
        ledger.close()


def _count_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = Importer._deliver_chunk

    def counting(self: Importer, now: Any) -> Any:
        calls.append(1)
        return real(self, now)

    monkeypatch.setattr(Importer, "_deliver_chunk", counting)
    return calls


def test_the_next_chunk_is_evaluated_while_the_acks_are_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, acct, _ = _rig(tmp_path, 3 * CHUNK)
    first = host.pm.hook.oms_import_orders(account=acct)
    assert len(first.orders) == CHUNK
    assert first.more
    results = _store(host, acct, first)
    assert {r.outcome for r in results} == {LineOutcome.ACCEPTED}
    # The second chunk is evaluated already: its lines are handed over (delivered) ...
    assert _states(acct) == Counter(
        {"acked": 2 * CHUNK, "delivered": 2 * CHUNK, "staged": 2 * CHUNK}
    )
    evaluations = _count_evaluations(monkeypatch)
    second = host.pm.hook.oms_import_orders(account=acct)
    # ... and the next import hands it over without evaluating anything again.
    assert evaluations == []
    assert [o.orderid for o in second.orders] == [
        f"O{n:04d}" for n in range(CHUNK + 1, 2 * CHUNK + 1)
    ]
    assert second.more


def test_every_order_is_handed_over_once_as_without_evaluating_ahead(tmp_path: Path) -> None:
    def run(folder: Path, concurrency: int) -> tuple[list[str], Counter[str]]:
        host, acct, ci = _rig(folder, 5 * CHUNK + 3, ack_concurrency=concurrency)
        seen: list[str] = []
        outcomes: Counter[str] = Counter()
        while True:
            batch = host.pm.hook.oms_import_orders(account=acct)
            seen += [o.orderid for o in batch.orders]
            outcomes.update(r.outcome.value for r in _store(host, acct, batch))
            if not batch.more:
                break
        assert ci.exported == set(range(1, 2 * (5 * CHUNK + 3) + 1))
        return seen, outcomes

    ahead = run(tmp_path / "ahead", 3)
    serial = run(tmp_path / "serial", 1)  # one call at a time: nothing is evaluated ahead
    assert ahead == serial
    assert len(ahead[0]) == len(set(ahead[0])) == 5 * CHUNK + 3
    assert ahead[1] == Counter({"accepted": 2 * (5 * CHUNK + 3)})


@pytest.mark.parametrize("change", ["mappings", "age", "round"])
def test_a_prepared_chunk_is_evaluated_again_when_something_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    host, acct, _ = _rig(tmp_path, 3 * CHUNK)
    _store(host, acct, host.pm.hook.oms_import_orders(account=acct))
    if change == "mappings":  # an operator edited a CSV meanwhile: new tables
        host.maps["us"] = fake_mappings(aliases={"SKU-1": [("HOST-9", 1)]})
    elif change == "age":  # the host came back late
        later = importer_module.monotonic() + PREPARED_TTL_SECONDS + 1
        monkeypatch.setattr(importer_module, "monotonic", lambda: later)
    else:  # another process started a read of CI
        ledger = open_ledger(acct)
        try:
            ledger.complete_import_round(ledger.begin_import_round())
        finally:
            ledger.close()
    evaluations = _count_evaluations(monkeypatch)
    second = host.pm.hook.oms_import_orders(account=acct)
    assert evaluations == [1]
    orderids = sorted(o.orderid for o in second.orders)
    assert orderids == [f"O{n:04d}" for n in range(CHUNK + 1, 2 * CHUNK + 1)]
    if change == "mappings":  # evaluated with the new tables
        assert {c.host_sku for o in second.orders for ln in o.lines for c in ln.components} == {
            "HOST-9"
        }


def test_a_prepared_chunk_the_host_never_takes_is_handed_over_by_the_next_sync(
    tmp_path: Path,
) -> None:
    host, acct, ci = _rig(tmp_path, 2 * CHUNK)
    _store(host, acct, host.pm.hook.oms_import_orders(account=acct))
    assert _states(acct)["delivered"] == 2 * CHUNK  # the second chunk, evaluated ahead
    # The host process ends here; a new one (a new plugin) syncs until nothing is left.
    fresh = make_host()
    fresh.cis["us"] = ci
    fresh.maps["us"] = host.maps["us"]
    handed: list[str] = []
    for _ in range(3):
        batch = fresh.pm.hook.oms_import_orders(account=acct)
        handed += [o.orderid for o in batch.orders]
        _store(fresh, acct, batch)
    assert sorted(handed) == [f"O{n:04d}" for n in range(CHUNK + 1, 2 * CHUNK + 1)]
    assert ci.exported == set(range(1, 4 * CHUNK + 1))
    assert _states(acct) == Counter({"acked": 4 * CHUNK})


def test_nothing_is_evaluated_ahead_while_the_mappings_do_not_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.errors import MappingError

    host, acct, _ = _rig(tmp_path, 2 * CHUNK)
    first = host.pm.hook.oms_import_orders(account=acct)

    def broken(_acct: Any) -> Any:
        raise MappingError("couriers.csv line 3, column carrier_code: empty")

    monkeypatch.setattr(host.plugin, "_mappings_loader", broken)
    results = _store(host, acct, first)  # the acknowledgements go on regardless
    assert {r.outcome for r in results} == {LineOutcome.ACCEPTED}
    assert _states(acct)["delivered"] == 0


def test_the_last_ack_record_is_durable_when_a_chunk_waits_for_its_hand_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The next import hands a prepared chunk over without committing anything itself, so the
    # record before it keeps its fsync; the last chunk's record (nothing prepared) skips it.
    host, acct, _ = _rig(tmp_path, 2 * CHUNK)
    ledger = host.plugin.ledger_for(acct)
    seen: list[bool] = []
    record = type(ledger).record_acks

    def spy(self: Any, ids: Any, now: Any, *, durable: bool = True) -> Any:
        seen.append(durable)
        return record(self, ids, now, durable=durable)

    monkeypatch.setattr(type(ledger), "record_acks", spy)
    _store(host, acct, host.pm.hook.oms_import_orders(account=acct))
    assert _states(acct)["delivered"] == 2 * CHUNK  # the second chunk waits, evaluated
    assert seen[-1] is True
    seen.clear()
    last = host.pm.hook.oms_import_orders(account=acct)
    assert not last.more
    _store(host, acct, last)
    assert seen[-1] is False
