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


def _page_ms(state: SimState, repeats: int) -> dict[str, float]:
    client = create_app(state).test_client()
    total_pages = state.get_orders(SUPPLIER, TOKEN).no_of_pages
    queries: dict[str, dict[str, Any]] = {
        "first_page": {"page": 1},
        "last_page": {"page": total_pages},
        "window_page": {"start_datetime": "03/04/2024 00:00", "end_datetime": "03/04/2024 06:00"},
    }
    out: dict[str, float] = {}
    for name, extra in queries.items():
        params = {"supplier_id": SUPPLIER, "token": TOKEN, **extra}
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            response = client.get("/api/v4/get_orders", query_string=params)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        out[name] = round(statistics.median(samples), 3)
    return out


def run(repeats: int = 30) -> dict[str, Any]:
    """Seed 1,000 and 100,000 lines; median ms per 250-record page (HTTP via test client)."""
    small, small_seed = _state(1_000)
    big, big_seed = _state(100_000)
    small_pages = _page_ms(small, repeats)
    big_pages = _page_ms(big, repeats)
    return {
        "seed_1000_lines_s": round(small_seed, 3),
        "seed_100000_lines_s": round(big_seed, 3),
        "page_ms_1000_lines": small_pages,
        "page_ms_100000_lines": big_pages,
        "page_ratio_100k_vs_1k": {
            k: round(big_pages[k] / small_pages[k], 2) for k in small_pages if small_pages[k]
        },
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
