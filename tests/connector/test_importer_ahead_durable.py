"""The chunk evaluated ahead (``oms_mark_exported`` while its CI calls are in flight) commits
its states without an fsync, and a durable commit of the same call follows before the hook
returns, so the next import hands it over only once it is on disk: the acknowledgements'
record, else an explicit ``Ledger.sync()`` (CI unreachable: nothing is recorded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.ledger import Ledger
from connector.models import LineOutcome
from tests.connector.test_importer_ahead import CHUNK, _rig, _store


def _commits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every outermost ledger transaction of the process, in order: ``deliver`` (the
    evaluation's state write), ``durable`` or ``unsynced`` (anything else)."""
    seen: list[str] = []
    begin = Ledger._begin
    states = Ledger.set_line_states

    def spy_begin(self: Ledger, durable: bool) -> None:
        seen.append("durable" if durable else "unsynced")
        begin(self, durable)

    def spy_states(self: Ledger, updates: Any, now: Any) -> None:
        if seen and seen[-1] in ("durable", "unsynced"):
            seen[-1] = "deliver-" + seen[-1]
        states(self, updates, now)

    monkeypatch.setattr(Ledger, "_begin", spy_begin)
    monkeypatch.setattr(Ledger, "set_line_states", spy_states)
    return seen


def _ahead(seen: list[str]) -> list[str]:
    """The commits from the evaluation ahead on."""
    start = next(i for i, c in enumerate(seen) if c.startswith("deliver-"))
    return seen[start:]


def test_the_evaluation_ahead_skips_its_fsync_and_the_record_after_it_syncs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, acct, _ = _rig(tmp_path, 3 * CHUNK)
    first = host.pm.hook.oms_import_orders(account=acct)
    seen = _commits(monkeypatch)
    synced: list[int] = []
    monkeypatch.setattr(Ledger, "sync", lambda self: synced.append(1))
    results = _store(host, acct, first)
    assert {r.outcome for r in results} == {LineOutcome.ACCEPTED}
    after = _ahead(seen)
    assert after[0] == "deliver-unsynced"
    assert "durable" in after[1:]  # the acknowledgements' record, before the hook returned
    assert synced == []  # no extra commit needed
    second = host.pm.hook.oms_import_orders(account=acct)
    assert len(second.orders) == CHUNK


def test_without_a_record_after_it_the_evaluation_ahead_is_synced_before_the_hook_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI unreachable: every acknowledgement is queued, nothing is recorded, and the chunk
    # evaluated meanwhile still waits for its hand-over: Ledger.sync makes it durable.
    host, acct, ci = _rig(tmp_path, 3 * CHUNK)
    first = host.pm.hook.oms_import_orders(account=acct)
    ci.down = set(range(1, 2 * CHUNK + 1))
    calls: list[str] = []
    sync = Ledger.sync

    def spy_sync(self: Ledger) -> None:
        calls.append("sync")
        sync(self)

    monkeypatch.setattr(Ledger, "sync", spy_sync)
    seen = _commits(monkeypatch)
    results = _store(host, acct, first)
    assert {r.outcome for r in results} == {LineOutcome.QUEUED}
    assert calls == ["sync"]
    after = _ahead(seen)
    assert after[0] == "deliver-unsynced"
    assert after[-1] == "durable"  # the sync: the last commit before the hook returned
    ci.down = set()
    second = host.pm.hook.oms_import_orders(account=acct)
    assert [o.orderid for o in second.orders] == [
        f"O{n:04d}" for n in range(CHUNK + 1, 2 * CHUNK + 1)
    ]


def test_sync_is_one_durable_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host, acct, _ = _rig(tmp_path, 1)
    ledger = host.plugin.ledger_for(acct)
    seen = _commits(monkeypatch)
    ledger.sync()
    ledger.sync()
    assert seen == ["durable", "durable"]
