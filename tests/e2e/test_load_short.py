"""A short load run: 4 workers on 4 accounts against one simulator for ~8 s (benchmarks/load.py).

Asserts what the full run asserts: no errors, no lost update, no duplicate, no crossed supplier.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.load import run

pytestmark = [pytest.mark.socket, pytest.mark.slow, pytest.mark.timeout(120)]


def test_four_workers_eight_seconds(tmp_path: Path) -> None:
    figures = run(workers=4, seconds=8.0, workdir=tmp_path, orders_per_feed=10)
    assert figures["error_samples"] == []
    assert figures["errors"] == 0
    assert figures["lost"] == 0
    assert figures["duplicates"] == 0
    assert figures["crossed"] == 0
    assert figures["not_exported"] == 0
    assert figures["tracking_not_once"] == 0
    # Something real happened: every account imported continuously fed orders.
    assert figures["lines_imported"] >= 4 * 10 * 10
    assert figures["requests"] > 0
    assert figures["requests_per_s"] > 0
    assert figures["syncs"] >= 4
