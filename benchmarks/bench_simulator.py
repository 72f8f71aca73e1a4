"""Simulator benchmark: seeding 100,000 lines, and get_orders page time at 1,000 vs 100,000.

``run()`` returns the figures; ``python -m benchmarks.bench_simulator`` prints them as JSON.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from mock_ci_server.app import create_app
from mock_ci_server.state import SimState

SUPPLIER = "90001"
TOKEN = "BenchBenchBenchBenchBenchBench1"  # noqa: S105  (a simulator-only token)
NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


def _state(lines: int) -> tuple[SimState, float]:
    state = SimState()
    state.clock.set(NOW)
    state.add_account(SUPPLIER, TOKEN)
    started = time.perf_counter()
    result = state.seed(SUPPLIER, orders=lines, seed=1, spread_hours=20)
    elapsed = time.perf_counter() - started
    assert result["lines_created"] == lines
    return state, elapsed


def _queries(state: SimState) -> dict[str, dict[str, Any]]:
    total_pages = state.get_orders(SUPPLIER, TOKEN).no_of_pages
    return {
        "first_page": {"page": 1},
        "last_page": {"page": total_pages},
        "window_page": {"start_datetime": "03/04/2024 00:00", "end_datetime": "03/04/2024 06:00"},
    }


def _page_ms_pair(
    small: SimState, big: SimState, repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms per page kind for both states. The samples alternate small/big request by
    request, so a burst of load on the machine (2 shared cores) hits both sizes alike instead
    of one whole series: the ratio compares like with like."""
    clients = [create_app(state).test_client() for state in (small, big)]
    queries = [_queries(state) for state in (small, big)]
    samples: list[dict[str, list[float]]] = [{k: [] for k in q} for q in queries]
    for _ in range(repeats):
        for name in queries[0]:
            for side in (0, 1):
                params = {"supplier_id": SUPPLIER, "token": TOKEN, **queries[side][name]}
                started = time.perf_counter()
                response = clients[side].get("/api/v4/get_orders", query_string=params)
                samples[side][name].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
    small_ms, big_ms = (
        {k: round(statistics.median(v), 3) for k, v in side.items()} for side in samples
    )
    return small_ms, big_ms


def page_ratios(small_ms: dict[str, float], big_ms: dict[str, float]) -> dict[str, float]:
    """Each page kind's time at 100,000 lines over its time at 1,000, as measured."""
    return {k: big_ms[k] / small_ms[k] for k in small_ms if small_ms[k]}


def run(repeats: int = 30) -> dict[str, Any]:
    """Seed 1,000 and 100,000 lines; median ms per 250-record page (HTTP via test client)."""
    small, small_seed = _state(1_000)
    big, big_seed = _state(100_000)
    small_pages, big_pages = _page_ms_pair(small, big, repeats)
    return {
        "seed_1000_lines_s": round(small_seed, 3),
        "seed_100000_lines_s": round(big_seed, 3),
        "page_ms_1000_lines": small_pages,
        "page_ms_100000_lines": big_pages,
        "page_ratio_100k_vs_1k": {
            k: round(r, 2) for k, r in page_ratios(small_pages, big_pages).items()
        },
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
