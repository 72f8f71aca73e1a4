"""A quick ``make hostile`` run on its two fastest cases: the child runs, the JSON line is
complete, the redirect sends nothing to the other host. (No timing is asserted here: the
deadlines are measured by ``make hostile`` itself.)"""

from __future__ import annotations

import json

import pytest

from benchmarks import hostile


@pytest.mark.socket
def test_fast_cases_print_complete_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = hostile.main(["--cases", "redirect,html"])
    out = capsys.readouterr()
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert [c["case"] for c in summary["cases"]] == [
        "307 to another host",
        "max_retries = 0 on an HTML answer",
    ]
    for case in summary["cases"]:
        assert case["ran"], case
        assert case["token_leaked"] is False
        assert case["requests"] == 1
        assert case["error"] == case["expected_error"]
    assert summary["cases"][0]["other_host_requests"] == 0
    assert code == (0 if summary["all_met"] else 1)
    assert hostile.TOKEN not in out.out + out.err
