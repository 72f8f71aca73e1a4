"""Ledger v4: carrier events (record, idempotence, summary, migration from v3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.errors import LedgerError
from connector.ledger import ledger_path, open_ledger_file
from connector.ledger.migrations import MIGRATIONS
from connector.models import CarrierEvent, CarrierEventKind

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
SCAN, DELIVERED = CarrierEventKind.SCAN, CarrierEventKind.DELIVERED


def test_record_is_idempotent_and_summary_takes_the_first_of_each_kind(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    cst = timezone(timedelta(hours=-6))
    events = [
        CarrierEvent(1, SCAN, T0 + timedelta(days=2), "1Z1"),
        CarrierEvent(1, SCAN, T0 + timedelta(days=1, microseconds=5), "1Z1"),
        CarrierEvent(1, DELIVERED, T0 + timedelta(days=4)),
        CarrierEvent(1, DELIVERED, (T0 + timedelta(days=4)).astimezone(cst)),  # same instant
        CarrierEvent(2, DELIVERED, T0 + timedelta(days=3)),
    ]
    assert ledger.record_carrier_events(events, T0) == [True, True, True, False, True]
    assert ledger.record_carrier_events(events[:1], T0) == [False]
    assert ledger.carrier_summary() == {
        1: (T0 + timedelta(days=1, microseconds=5), T0 + timedelta(days=4)),
        2: (None, T0 + timedelta(days=3)),
    }
    ledger.close()


def test_text_order_is_time_order_across_sub_second_values(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    whole = T0 + timedelta(seconds=1)
    fraction = T0 + timedelta(microseconds=500_000)
    ledger.record_carrier_events(
        [CarrierEvent(1, SCAN, whole), CarrierEvent(1, SCAN, fraction)], T0
    )
    assert ledger.carrier_summary()[1][0] == fraction
    ledger.close()


def test_a_naive_time_is_refused_and_nothing_of_the_batch_is_recorded(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    batch = [CarrierEvent(1, SCAN, T0), CarrierEvent(7, SCAN, datetime(2024, 3, 4, 9, 0))]
    with pytest.raises(ValueError, match=r"line 7: at 2024-03-04T09:00:00 has no time zone"):
        ledger.record_carrier_events(batch, T0)
    assert ledger.carrier_summary() == {}
    ledger.close()


def test_a_write_failure_is_a_ledger_error_and_rolls_back(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    bad = CarrierEvent(2, "lost", T0)  # type: ignore[arg-type]  # the CHECK refuses it
    with pytest.raises(LedgerError, match=r"CHECK constraint failed|violates check constraint"):
        ledger.record_carrier_events([CarrierEvent(1, SCAN, T0), bad], T0)
    assert ledger.carrier_summary() == {}
    ledger.close()


def test_v4_migration_adds_the_table_to_a_v3_ledger(tmp_path: Path) -> None:
    path = ledger_path(tmp_path, "us")
    old = open_ledger_file(path, "us", MIGRATIONS[:3])
    assert old.schema_version() == 3
    old.stage_line(ci_lineitemid=5, orderid="A", now=T0, order_date=T0, quantity=1)
    old.close()
    ledger = open_ledger_file(path, "us", MIGRATIONS[:4])
    assert ledger.schema_version() == 4
    assert ledger.get_line(5) is not None
    assert ledger.record_carrier_events([CarrierEvent(5, SCAN, T0)], T0) == [True]
    assert ledger._query("SELECT COUNT(*) AS n FROM carrier_events")[0]["n"] == 1
    ledger.close()
