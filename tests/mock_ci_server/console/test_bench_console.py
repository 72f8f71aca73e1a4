"""A tiny ``make bench-ui`` run: every page answers and the JSON line is complete."""

from __future__ import annotations

import json

import pytest

from benchmarks import console_page


@pytest.mark.socket
def test_tiny_console_bench_prints_complete_json_last(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert console_page.main(["--lines", "300", "--repeats", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    figures = json.loads(last)
    assert figures["lines"] == 300
    expected = set(console_page.pages(console_page.build_state(300)[0], 300))
    assert set(figures["pages_ms"]) == expected | {"first search after seeding (cold)"}
    assert all(p["max"] > 0 for p in figures["pages_ms"].values())
    assert isinstance(figures["target_met"], bool)
