"""``mock-ci-server`` without the simulator extra says what to install (no traceback)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mock_ci_server import launch


def test_missing_flask_names_the_extra() -> None:
    # A fresh interpreter where flask cannot be imported (as without the extra).
    code = (
        "import sys; sys.modules['flask'] = None\nfrom mock_ci_server.launch import main\nmain()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "pip install 'groupon-ci-connector[simulator]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_with_the_stack_it_runs_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["mock-ci-server", "--help"])
    with pytest.raises(SystemExit) as info:
        launch.main()
    assert info.value.code == 0
