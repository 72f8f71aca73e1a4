"""A tiny ``make bench-validation`` run: every variant agrees with marshmallow, figures are real."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import validation


@pytest.mark.socket
def test_tiny_run_prints_identical_counts_and_json_last(capsys: pytest.CaptureFixture[str]) -> None:
    code = validation.main(["--records", "120", "--repeats", "1"])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["records"] == 120
    assert figures["all_identical"] is True
    for name in (
        "marshmallow (tolerant schemas)",
        "msgspec convert dict -> Structs + rules",
        "msgspec decode bytes -> Structs + rules",
        "importer staging now (record_text + ledger_fields)",
        "importer staging now, msgspec-decoded page (no read-back)",
        "get_orders page body, json.loads (per record)",
        "get_orders page body, msgspec (per record)",
    ):
        assert figures[name]["identical"] == 120, name
        assert math.isfinite(figures[name]["us_median"]), name
        assert figures[name]["us_median"] > 0, name
    assert figures["target_met"] is (figures["staging_now_us_per_record"] <= 40.0)
    assert "120/120" in out
