"""`make crash --concurrent`, short: several processes per account with SIGKILLs; nothing lost,
nothing sent or acknowledged twice, quantities equal CI's, every cancellation reaches the host.
Plus checks that the re-send counter can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.crash import (
    SUPPLIER_ID,
    CrashConfig,
    Invariants,
    KillSpec,
    _count_resends,
    _Harness,
    check_invariants,
    run_crash,
)
from mock_ci_server.app import create_app
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.state import SimState

pytestmark = [pytest.mark.socket, pytest.mark.slow]


def test_three_processes_per_account_with_kills_keep_every_invariant(tmp_path: Path) -> None:
    config = CrashConfig(kills=6, orders=40, seed=7, concurrent=3, work_dir=tmp_path)
    result = run_crash(config)
    figures = result.to_dict()
    assert result.errors == [], figures
    assert result.clean_finish, figures
    assert result.kills >= 6, figures
    assert figures["concurrent_procs"] == 3
    assert figures["backends"] == ["sqlite"]
    assert figures["cancellations"] >= 1, figures
    zeros = (
        "lost",
        "duplicates",
        "pending_without_reason",
        "tracking_sent_twice",
        "acked_twice",
        "qty_mismatch",
        "cancellations_missed",
    )
    assert {k: figures[k] for k in zeros} == dict.fromkeys(zeros, 0), figures["problems"]


def _state_with_calls(calls: list[dict[str, object]]) -> tuple[SimState, int]:
    state = SimState()
    state.add_account("5", "tok-xyz-123456")
    lid = state.seed("5", orders=1, seed=2, lines_per_order=(1, 1))["ci_lineitemids"][0]
    line = state.line(lid)
    assert line is not None
    line.calls.extend(calls)
    return state, lid


def test_resend_counter_flags_a_resend_no_kill_explains() -> None:
    calls: list[dict[str, object]] = [
        {"call": "mark_exported"},
        {"call": "tracking_notification", "tracking": "1Z1"},
        {"call": "tracking_notification", "tracking": "1Z2"},
        {"call": "mark_exported"},
        {"call": "tracking_notification", "tracking": "1Z1"},
    ]
    state, lid = _state_with_calls(calls)
    inv = Invariants()
    _count_resends(state, [lid], [], inv)
    assert (inv.acked_twice, inv.tracking_sent_twice) == (1, 1)
    # A kill between the sends (its window: 2 calls before it, 3 once settled) explains them.
    explained = Invariants()
    _count_resends(state, [lid], [({lid: 2}, {lid: 3})], explained)
    assert (explained.acked_twice, explained.tracking_sent_twice) == (0, 0)
    # A kill after both sends explains nothing.
    late = Invariants()
    _count_resends(state, [lid], [({lid: 5}, {lid: 5})], late)
    assert (late.acked_twice, late.tracking_sent_twice) == (1, 1)


def test_line_cancelled_between_host_store_and_ack_is_still_acknowledged(tmp_path: Path) -> None:
    """The interleaving behind a failure of the run above on a loaded machine (2 lines 'in
    the host but not marked exported in CI' and 'left delivered without a reason'), made
    deterministic: the sync child dies after the host committed its orders and before
    mark_exported, then Groupon cancels two of those lines, then clean runs finish."""
    harness = _Harness(CrashConfig(orders=4, seed=3, concurrent=3), tmp_path, lambda _: None)
    harness.seed_wave(4)
    server = serve_in_thread(create_app(harness.state))
    try:
        out = harness.child(server.url, KillSpec(point="after_store"), role="sync")
        assert out.killed, out.stderr_tail
        assert harness.cancel_some() == 2  # both stored in the host, neither acknowledged
        harness.clean_up(server.url)
        inv = check_invariants(
            harness.state,
            SUPPLIER_ID,
            harness.data_dir,
            harness.line_ids,
            windows=harness.windows,
            cancelled=harness.cancelled,
        )
    finally:
        server.stop()
    assert harness.result.clean_finish, harness.result.errors
    assert (inv.lost, inv.pending_without_reason, inv.cancellations_missed) == (0, 0, 0), (
        inv.problems
    )
    assert all(harness.state.line(lid).exported for lid in harness.cancelled)  # type: ignore[union-attr]
