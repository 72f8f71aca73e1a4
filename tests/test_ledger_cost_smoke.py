"""A tiny ``make bench-ledger`` run: the figures are complete and add up."""

from __future__ import annotations

import json

import pytest

from benchmarks import ledger_cost
from connector.ledger import sqlite as ledger_module


@pytest.mark.socket
def test_tiny_run_measures_the_ledger_and_restores_it(capsys: pytest.CaptureFixture[str]) -> None:
    original = ledger_module.Ledger.stage_rows
    assert ledger_cost.main(["--lines", "300"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["lines"] == figures["lines_marked_exported"] == 300
    assert 0 < figures["ledger_cpu_s"] <= figures["sync_main_thread_cpu_s"]
    assert figures["ledger_cpu_by_method_s"]["stage_rows"] > 0
    # Staging, delivery, binding and acknowledgement: at least one commit each.
    assert figures["commits"] >= 4
    assert figures["statements"] > figures["commits"]
    assert figures["ledger_file_mb"] > 0
    assert ledger_module.Ledger.stage_rows is original  # the class is left as it was
