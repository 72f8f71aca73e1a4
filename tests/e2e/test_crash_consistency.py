"""Crash consistency, inside `make test`: >= 10 SIGKILLs, every crash point at least once.

The same harness as ``make crash`` (benchmarks/crash.py) on a smaller seed; plus checks that the
invariant checker and the worker's shipment plan can actually fail or differ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.crash import CrashConfig, check_invariants, run_crash
from benchmarks.crash_worker import ACCOUNT_NAME, HOST_DB, plan_shipments, ups_tracking_number
from connector.crashpoints import POINTS
from connector.ledger.sqlite import ledger_path, open_ledger_file
from connector.reference_host.store import HostStore
from mock_ci_server.state import SimState

# sqlite_only: the SIGKILL harness drives the SQLite ledger file itself.
pytestmark = [pytest.mark.socket, pytest.mark.slow, pytest.mark.sqlite_only]


def test_sigkills_at_every_point_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    config = CrashConfig(kills=12, orders=60, seed=5, random_per_round=2, work_dir=tmp_path)
    result = run_crash(config)
    figures = result.to_dict()
    assert result.errors == [], figures
    assert result.clean_finish, figures
    assert result.kills >= 10, figures
    assert figures["points_missing"] == [], figures
    assert set(figures["points_covered"]) == set(POINTS)
    assert result.random_kills >= 1, figures
    assert (figures["lost"], figures["duplicates"], figures["pending_without_reason"]) == (
        0,
        0,
        0,
    ), figures["problems"]
    assert result.orders_seeded >= 60
    assert result.seconds < 90


def test_invariant_checker_reports_lost_lines_and_pending_rows(tmp_path: Path) -> None:
    state = SimState()
    state.clock.freeze()
    state.add_account("5", "tok-xyz-123456")
    seeded = state.seed("5", orders=3, seed=2, lines_per_order=(1, 2))["ci_lineitemids"]
    HostStore(tmp_path / HOST_DB).close()  # an empty host: nothing was imported
    ledger = open_ledger_file(ledger_path(tmp_path, ACCOUNT_NAME), ACCOUNT_NAME)
    try:
        now = state.clock.now()
        ledger.stage_line(ci_lineitemid=seeded[0], orderid="O", now=now, quantity=1)
        ledger.insert_outbox(
            shipment_id="S", ci_lineitemid=seeded[0], tracking="1Z", quantity=1, now=now
        )
    finally:
        ledger.close()
    inv = check_invariants(state, "5", tmp_path, seeded)
    assert inv.lost == len(seeded)
    assert inv.pending_without_reason == 2  # the pending outbox row and the staged line
    assert inv.duplicates == 0
    assert any(f"line {seeded[0]}" in p and "not in the host" in p for p in inv.problems)


def test_shipment_plan_is_deterministic_and_splits_multi_unit_lines() -> None:
    rows: list[dict[str, object]] = [
        {"orderid": "O2", "ci_lineitemid": 21, "quantity": 1, "shipped_quantity": 0},
        {"orderid": "O1", "ci_lineitemid": 12, "quantity": 3, "shipped_quantity": 0},
        {"orderid": "O1", "ci_lineitemid": 11, "quantity": 1, "shipped_quantity": 0},
        {"orderid": "O3", "ci_lineitemid": 31, "quantity": 2, "shipped_quantity": 2},
    ]
    plan = plan_shipments(rows)
    assert plan == plan_shipments(list(reversed(rows)))
    assert [s.shipment_id for s in plan] == ["S-O1-11", "S-O2-21"]
    first, second = plan[0].parcels
    assert first.tracking_number == ups_tracking_number(22)
    assert {(i.ci_lineitemid, i.quantity) for i in first.lines} == {(11, 1), (12, 2)}
    assert [(i.ci_lineitemid, i.quantity) for i in second.lines] == [(12, 1)]
    assert len(plan[1].parcels) == 1
    assert ups_tracking_number(22) != ups_tracking_number(23)
