"""A tiny ``make bench`` run: the JSON line is complete and its figures are sane."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import run
from benchmarks.bench_dispatch import CARRIER, shipment_plan, ups_number
from benchmarks.bench_import import page_stats
from benchmarks.floor import tracking_batches
from connector.tracking_formats import check_tracking_number

REQUIRED = {
    "import_lines_per_s",
    "import_ratio_to_floor",
    "dispatch_ratio_to_floor",
    "peak_rss_mb_10k",
    "peak_rss_mb_100k",
    "sim_seed_100k_s",
    "sim_page_ms_1k",
    "sim_page_ms_100k",
    "cores",
    "python",
    "targets_met",
}


@pytest.mark.socket
@pytest.mark.slow
def test_tiny_run_prints_complete_json_last(capsys: pytest.CaptureFixture[str]) -> None:
    code = run.main(["--lines", "1000", "--small", "200", "--sim-repeats", "3"])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    last = out.out.strip().splitlines()[-1]
    figures = json.loads(last)
    assert set(figures) >= REQUIRED
    assert set(figures["targets_met"]) == set(run.TARGETS)
    # The runs really moved every line: stored once, acknowledged, shipped in the simulator.
    assert figures["import_complete"] is True
    assert figures["dispatch_complete"] is True
    assert figures["dispatch_outcomes"] == {"accepted": 200}
    assert figures["import_floor_calls"] == {"get_orders": 4, "mark_exported": 10}
    assert figures["import_split_order_share"] >= 0.10
    for key in ("import_ratio_to_floor", "dispatch_ratio_to_floor", "import_lines_per_s"):
        assert math.isfinite(figures[key]), key
        assert figures[key] > 0, key
    # A child's RSS is its own (forkserver): a Python process, far below the parent's.
    assert 10 < figures["peak_rss_mb_10k"] < 2000
    assert 10 < figures["peak_rss_mb_100k"] < 2000
    assert 0 < figures["sim_page_ms_1k"] < 10_000
    assert figures["cores"] >= 1
    # Targets are judged from the figures, never hard-coded.
    assert figures["targets_met"]["import_ratio_to_floor"] is (
        figures["import_ratio_to_floor"] <= 1.5
    )
    assert "import 1,000 lines: connector / floor" in out.out


def test_targets_follow_the_figures() -> None:
    met = run.evaluate_targets(
        {
            "import_ratio_to_floor": 1.4,
            "peak_rss_mb_10k": 100.0,
            "peak_rss_mb_100k": 130.0,
            "dispatch_ratio_to_floor": 2.0,
            "sim_seed_100k_s": 12.0,
            "sim_page_ratio_100k_vs_1k": None,
        }
    )
    assert met == {
        "import_ratio_to_floor": True,
        "peak_rss_mb_10k": True,
        "peak_rss_mb_100k": True,
        "peak_rss_growth": False,
        "dispatch_ratio_to_floor": False,
        "sim_seed_100k_s": False,
        "sim_page_ratio": None,
    }


def test_plan_and_floor_send_the_connector_calls() -> None:
    def rec(orderid: str, *lines: tuple[int, int]) -> dict[str, object]:
        return {
            "orderid": orderid,
            "line_items": [{"ci_lineitemid": i, "quantity": q} for i, q in lines],
        }

    pages = [[rec("A", (1, 1)), rec("B", (2, 2))], [rec("A", (3, 1))]]
    plan = shipment_plan(pages)
    assert [s["lines"] for s in plan] == [[[1, 1], [3, 1]], [[2, 2]]]
    for shipment in plan:
        assert check_tracking_number(CARRIER, shipment["tracking"]).valid
    assert len({s["tracking"] for s in plan}) == 2
    calls = tracking_batches(plan, CARRIER, batch=1)
    assert [[i["ci_lineitem_id"] for i in c] for c in calls] == [[1], [3], [2]]
    stats = page_stats(pages)
    assert (stats["split_orders"], stats["orders"], stats["lines"]) == (1, 2, 3)
    assert ups_number(5) != ups_number(6)
