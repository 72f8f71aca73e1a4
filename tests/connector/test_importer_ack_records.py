"""Accepted ``mark_exported`` batches are recorded together (issue 11): fewer ledger
transactions, same results, nothing recorded that CI did not take."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.models import LineOutcome
from tests.connector.test_importer_overlap import SlowCI, _rig, _store_all


@pytest.mark.parametrize("concurrency", [1, 4])
def test_accepted_batches_share_record_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, concurrency: int
) -> None:
    ci = SlowCI(delay=0.0)
    host, acct = _rig(tmp_path, ci, 20, ack_batch_size=1, ack_concurrency=concurrency)
    ledger = host.plugin.ledger_for(acct)
    calls: list[list[int]] = []
    record = type(ledger).record_acks

    def spy(self: Any, ids: Any, now: Any, **kw: Any) -> Any:
        calls.append(list(ids))
        return record(self, ids, now, **kw)

    monkeypatch.setattr(type(ledger), "record_acks", spy)
    results = _store_all(host, acct)
    assert [(r.ci_lineitemid, r.outcome) for r in results] == [
        (lid, LineOutcome.ACCEPTED) for lid in range(1, 21)
    ]
    # 20 batches of one line: 16 + 4 per transaction, not 20 transactions.
    assert [len(ids) for ids in calls] == [16, 4]
    assert [lid for ids in calls for lid in ids] == list(range(1, 21))
    assert ledger.summary()["lines"]["acked"] == 20
    assert sorted(lid for lid, outcome, _ in ledger.ack_log() if outcome == "accepted") == list(
        range(1, 21)
    )


def test_the_last_record_of_mark_exported_skips_its_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hook returns after it: not durable (see Importer._ack); the 16-batch record before
    # it, with later calls still to make, stays durable.
    ci = SlowCI(delay=0.0)
    host, acct = _rig(tmp_path, ci, 20, ack_batch_size=1, ack_concurrency=3)
    ledger = host.plugin.ledger_for(acct)
    calls: list[tuple[int, bool]] = []
    record = type(ledger).record_acks

    def spy(self: Any, ids: Any, now: Any, durable: bool = True) -> Any:
        calls.append((len(ids), durable))
        return record(self, ids, now, durable=durable)

    monkeypatch.setattr(type(ledger), "record_acks", spy)
    results = _store_all(host, acct)
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED] * 20
    assert calls == [(16, True), (4, False)]
    assert ledger.summary()["lines"]["acked"] == 20


def test_batches_taken_before_an_unreachable_one_are_recorded_before_it_is_queued(
    tmp_path: Path,
) -> None:
    ci = SlowCI(delay=0.0)
    host, acct = _rig(tmp_path, ci, 6, ack_batch_size=1, ack_concurrency=1)
    ci.down = {4}
    results = _store_all(host, acct)
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED] * 3 + [LineOutcome.QUEUED] * 3
    ledger = host.plugin.ledger_for(acct)
    states = {lid: row.state for lid, row in ledger.get_lines(list(range(1, 7))).items()}
    assert states == {1: "acked", 2: "acked", 3: "acked", 4: "stored", 5: "stored", 6: "stored"}
    assert ci.exported == {1, 2, 3}


def test_import_and_mark_exported_run_with_fewer_collections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from connector.importer import Importer
    from connector.runtime.collector import GEN0_THRESHOLD

    ci = SlowCI(delay=0.0)
    host, acct = _rig(tmp_path, ci, 3)
    seen: list[int] = []
    for name in ("_deliver_chunk", "_ack"):
        original = getattr(Importer, name)

        def spy(self: Any, *args: Any, _original: Any = original, **kw: Any) -> Any:
            seen.append(gc.get_threshold()[0])
            return _original(self, *args, **kw)

        monkeypatch.setattr(Importer, name, spy)
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        _store_all(host, acct)
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)
    assert seen
    assert set(seen) == {GEN0_THRESHOLD}
