"""The sync log beside the ledgers: entries, 0600, bounded, unreadable lines counted."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.dashboard import synclog
from connector.dashboard.synclog import make_entry, read_syncs, record_run, record_sync

WHEN = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
REPORT = {
    "account": "us",
    "orders_imported": 3,
    "lines_imported": 5,
    "held": 1,
    "errors": [],
    "transport_retries": {"503": 2},
    "duration_seconds": 1.5,
}


def test_entry_keeps_counts_retries_and_duration() -> None:
    entry = make_entry("us", WHEN, REPORT)
    assert entry["started_at"] == "2026-03-02T11:59:58.500000+00:00"
    assert entry["duration_seconds"] == 1.5
    assert entry["counts"]["lines_imported"] == 5
    assert entry["counts"]["orders_new"] == 0
    assert entry["transport_retries"] == {"503": 2}
    assert entry["ok"] is True
    failed = make_entry("uk", WHEN, None, "CI unreachable: check base_url")
    assert failed["ok"] is False
    assert failed["errors"] == ["CI unreachable: check base_url"]


def test_run_is_recorded_0600_newest_first(tmp_path: Path) -> None:
    record_run(tmp_path, [REPORT], [{"account": "uk", "error": "no token"}], WHEN)
    record_run(tmp_path, [{**REPORT, "lines_imported": 9}], [], WHEN)
    path = synclog.sync_log_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entries, bad = read_syncs(tmp_path)
    assert bad == 0
    assert [(e["account"], e["counts"]["lines_imported"]) for e in entries] == [
        ("us", 9),
        ("uk", 0),
        ("us", 5),
    ]
    assert [e["account"] for e in read_syncs(tmp_path, account="uk")[0]] == ["uk"]


def test_log_is_trimmed_to_the_newest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synclog, "MAX_ENTRIES", 3)
    for number in range(10):
        record_sync(tmp_path, make_entry("us", WHEN, {**REPORT, "lines_imported": number}))
    lines = synclog.sync_log_path(tmp_path).read_text().splitlines()
    assert len(lines) <= 6
    entries, _ = read_syncs(tmp_path, limit=100)
    assert entries[0]["counts"]["lines_imported"] == 9
    assert stat.S_IMODE(synclog.sync_log_path(tmp_path).stat().st_mode) == 0o600


def test_unreadable_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    record_sync(tmp_path, make_entry("us", WHEN, REPORT))
    with synclog.sync_log_path(tmp_path).open("a") as handle:
        handle.write("{not json\n[1, 2]\n\n")
    entries, bad = read_syncs(tmp_path)
    assert len(entries) == 1
    assert bad == 2


def test_missing_log_is_empty(tmp_path: Path) -> None:
    assert read_syncs(tmp_path / "nowhere") == ([], 0)
