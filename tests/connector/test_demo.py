"""`ci-connector demo`: the full cycle on the embedded simulator, checked by its own figures."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from tracking_numbers import get_tracking_number

from connector.cli import main
from connector.demo import ups_tracking_number


def test_demo_json_figures_are_consistent(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--orders", "30", "--json", "--keep", str(tmp_path)])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["orders_imported"] == figures["orders_seeded"] == 30
    # Every line is in the host once and acknowledged in CI, including the released ones.
    assert figures["lines_marked_exported"] == figures["lines_imported"] >= 30
    assert figures["duplicates"] == 0
    # Every line was dispatched; the cancelled line and the unmapped-courier lines were refused.
    assert figures["lines_dispatched"] == figures["lines_imported"]
    assert (
        figures["tracking_accepted"] + figures["shipments_refused"] == figures["lines_dispatched"]
    )
    assert figures["shipments_refused"] >= 2
    assert figures["cancellations_reported"] == 1
    # The cancelled line had a shipment recorded in the host before CI refused its tracking,
    # so the host keeps a conflict for the operator instead of silently cancelling it.
    assert figures["cancellation_conflicts"] == 1
    assert (tmp_path / "host.sqlite3").exists()
    assert (tmp_path / "data" / "ledger-demo-us.sqlite3").exists()


def test_demo_explains_each_step(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--orders", "20", "--keep", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for step in range(1, 9):
        assert f"\n{step}. " in "\n" + result.output, step
    assert "has no alias" in result.output
    assert "the line is cancelled" in result.output
    assert "no Groupon carrier code" in result.output
    assert "Summary:" in result.output


def test_demo_tracking_numbers_are_valid_ups_numbers() -> None:
    numbers = {ups_tracking_number(n) for n in range(50)}
    assert len(numbers) == 50
    for number in numbers:
        found = get_tracking_number(number)
        assert found is not None
        assert found.valid
        assert found.courier.code == "ups"


def test_demo_removes_its_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # mkdtemp lands here
    result = CliRunner().invoke(main, ["demo", "--orders", "5", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["workdir"] is None
    assert list(tmp_path.iterdir()) == []  # nothing left behind
